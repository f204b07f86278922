"""Two slots and the update record (firmware/src/update/slots.c, host build over a simulated
NOR flash): power cut at every flash operation of an update, resumed transfers after link
drops, trials that revert by themselves."""

from __future__ import annotations

import random

import pytest

pytest.importorskip("imgtool")

from aiot.lifecycle import device as D  # noqa: E402
from aiot.lifecycle import package as P  # noqa: E402
from aiot.lifecycle.firmware import region_sectors  # noqa: E402
from aiot.target.boards import get_board  # noqa: E402

SCHEMA = P.schema_id(["pressure", "flow", "temperature"], 8)
SECTOR = 2048
TRIAL_RUNS = 3


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    """Three signed releases of ~12 KB each (distinct weights), and the trusted key."""
    d = tmp_path_factory.mktemp("rel")
    key = P.generate_key(d / "release.pem")
    rng = random.Random(5)
    out = []
    for v in (1, 2, 3):
        body = P.build_container({"name": "pump-ae"}, tflite=bytes(rng.randrange(256) for _ in range(12_000)),
                                 golden=[([1, 2, 3], [3, 2, 1])], schema=SCHEMA, model_version=v)
        out.append(P.sign(body, key, version=f"1.{v}.0", out=d / f"r{v}.bin"))
    return P.public_key(key), out


def _device(pub) -> D.SimulatedDevice:
    return D.SimulatedDevice(pub, slot_size=32 * 1024, sector_size=SECTOR, program_align=8, schema_id=SCHEMA,
                             trial_runs_needed=TRIAL_RUNS)


# The drivers' program unit (firmware/port/*/flash.c): STM32F4/F7 x32 words, G0 double words, nRF52 words.
PROGRAM_UNIT = {"nucleo-f446re": 4, "nucleo-f767zi": 4, "nucleo-g071rb": 8, "nrf52840-dk": 4}


def _board_device(pub, board: str) -> D.SimulatedDevice:
    """The update logic over a board's own [update] layout: its areas and the sector table
    its flash driver is built with (on the F446, 16 KB record sectors and 128 KB slot sectors)."""
    b = get_board(board)
    return D.SimulatedDevice(pub, slot_size=b.update.slot_size, sector_size=b.update.sector_size,
                             program_align=PROGRAM_UNIT[board], areas=b.update.offsets(), sectors=region_sectors(b),
                             schema_id=SCHEMA, trial_runs_needed=TRIAL_RUNS)


def _install(dev, image, chunk=512):
    """Update, reboot into the trial, pass it: the release is confirmed."""
    assert dev.update(image, chunk) == 0
    assert dev.boot() == 0
    for _ in range(TRIAL_RUNS):
        assert dev.trial_report(0) == 0


def _digest(image, pub):
    return D.verify(image, pub, schema_id=SCHEMA).digest


def _update_sequence(dev, image):
    """Everything a field update does to flash, ignoring failures (power may be off)."""
    dev.boot()
    dev.update(image, 512)
    dev.boot()
    for _ in range(TRIAL_RUNS):
        dev.trial_report(0)


@pytest.mark.parametrize("layout", ["2 KB sectors", "nucleo-f446re"])
@pytest.mark.parametrize("phase", ["into empty slot", "over the older release"])
def test_power_cut_at_every_flash_operation_leaves_old_or_new(releases, phase, layout):
    pub, (r1, r2, r3) = releases
    dev = _device(pub) if layout == "2 KB sectors" else _board_device(pub, layout)
    dev.boot()
    _install(dev, r1)
    old, new = r1, r2
    if phase == "over the older release":  # slot 0 holds r1, r2 confirmed in slot 1: r3 overwrites r1
        _install(dev, r2)
        old, new = r2, r3
    base = bytes(dev.mem)
    want = {_digest(old, pub): "old", _digest(new, pub): "new"}

    dev.cut_power_at(-1)
    _update_sequence(dev, new)
    total_ops = dev.flash_ops()
    assert want[dev.running_digest()] == "new"
    assert total_ops > 20

    outcomes = {"old": 0, "new": 0}
    for cut in range(total_ops):
        dev.mem[:] = base
        dev.cut_power_at(cut)
        _update_sequence(dev, new)
        dev.cut_power_at(-1)  # power back
        assert dev.boot() == 0, f"cut at op {cut}: boot failed"
        now = want.get(dev.running_digest())  # raises if the running slot does not verify
        assert now is not None, f"cut at op {cut}: runs neither the old nor the new release"
        while dev.record.state == 1:  # a trial survived the cut: let it finish
            assert dev.trial_report(0) == 0
        after = want.get(dev.running_digest())
        assert after is not None, f"cut at op {cut}: neither after the trial"
        outcomes[after] += 1
        if after == "old":  # the update can simply be sent again
            _install(dev, new)
            assert want[dev.running_digest()] == "new", f"cut at op {cut}: retry failed"
    assert outcomes["old"] + outcomes["new"] == total_ops
    print(f"power-cut sweep ({layout}, {phase}): {total_ops} cut points, {outcomes['old']} -> old, {outcomes['new']} -> new")
    assert outcomes["old"] > 0 and outcomes["new"] > 0  # both sides of the commit point were cut


@pytest.mark.parametrize("seed", range(10))
def test_transfer_resumes_from_the_acknowledged_offset_after_link_drops(releases, seed):
    pub, (r1, _, _) = releases
    dev = _device(pub)
    dev.boot()
    rng = random.Random(seed)
    chunk = 256
    assert dev.begin(len(r1)) == 0
    acked, device_next, drops, sends = 0, 0, 0, 0
    while acked < len(r1):
        data = r1[acked : acked + chunk]
        fate = rng.random()
        sends += 1
        if fate < 0.15:  # request lost on the way: the device never saw it
            drops += 1
        elif fate < 0.30:  # device wrote it, answer lost: host resends the same chunk
            code, _ = dev.write(acked, data)
            assert code == 0
            device_next = max(device_next, acked + len(data))
            drops += 1
        elif fate < 0.40:  # link gone; host reconnects and asks where to resume (empty chunk)
            code, nxt = dev.write(0, b"")
            assert code == 0 and nxt == device_next
            acked = nxt
            drops += 1
        else:
            code, nxt = dev.write(acked, data)
            assert code == 0 and nxt == acked + len(data)
            acked = device_next = nxt
    assert drops > 0
    print(f"seed {seed}: {len(r1)} bytes in {sends} sends, {drops} drops, all resumed")
    assert dev.finish() == 0
    assert dev.boot() == 0 and dev.running() == 0
    assert dev.slot_image(0) == r1


def test_chunk_past_the_acknowledged_offset_is_refused(releases):
    pub, (r1, _, _) = releases
    dev = _device(pub)
    dev.boot()
    assert dev.write(0, r1[:256])[0] == D.CODES["NOT_STARTED"]
    assert dev.begin(len(r1)) == 0
    assert dev.write(512, r1[512:768]) == (D.CODES["BAD_OFFSET"], 0)
    assert dev.finish() == D.CODES["INCOMPLETE"]
    assert dev.begin(10 ** 7) == D.CODES["TOO_LARGE"]


def test_golden_mismatch_reverts_at_once_and_says_why(releases):
    pub, (r1, r2, _) = releases
    dev = _device(pub)
    dev.boot()
    _install(dev, r1)
    assert dev.update(r2) == 0
    assert dev.boot() == 0 and dev.running() == 1
    assert dev.begin(len(r1)) == D.CODES["BUSY"]  # no second update during a trial
    assert dev.trial_report(0) == 0
    assert dev.trial_report(D.CODES["GOLDEN_MISMATCH"]) == 0
    assert dev.running() == 0 and dev.running_digest() == _digest(r1, pub)
    assert dev.record.last_reason == D.CODES["GOLDEN_MISMATCH"] and dev.record.reverted_slot == 1
    assert dev.boot() == 0 and dev.running() == 0  # and it stays reverted


def test_reset_during_the_trial_reverts(releases):
    pub, (r1, r2, _) = releases
    dev = _device(pub)
    dev.boot()
    _install(dev, r1)
    assert dev.update(r2) == 0
    assert dev.boot() == 0 and dev.running() == 1
    dev.trial_report(0)
    assert dev.boot() == 0  # watchdog reset before the trial was confirmed
    assert dev.running() == 0 and dev.record.last_reason == D.CODES["TRIAL_RESET"]


def test_refused_package_leaves_the_running_release(releases, tmp_path):
    pub, (r1, _, _) = releases
    key = P.generate_key(tmp_path / "k.pem")
    foreign = P.sign(P.build_container({}, tflite=b"x" * 100, schema=SCHEMA, model_version=9), key,
                     version="9.0.0", out=tmp_path / "f.bin")
    dev = _device(pub)
    dev.boot()
    _install(dev, r1)
    assert dev.update(foreign) == D.CODES["WRONG_KEY"]
    flipped = bytearray(r1)
    flipped[3000] ^= 4
    assert dev.update(bytes(flipped)) == D.CODES["BAD_HASH"]
    assert dev.boot() == 0 and dev.running() == 0 and dev.running_digest() == _digest(r1, pub)


@pytest.mark.parametrize("board", sorted(PROGRAM_UNIT))
def test_an_update_installs_over_each_real_boards_layout(board, tmp_path):
    """Transfer, trial, confirmation and a second update into the other slot, with the
    board's own areas and sector table (G071's 6 KB slots take a 5 KB release)."""
    key = P.generate_key(tmp_path / "k.pem")
    pub = P.public_key(key)
    rng = random.Random(7)
    rel = [P.sign(P.build_container({"name": "pump-ae"}, tflite=bytes(rng.randrange(256) for _ in range(4_500)),
                                    golden=[([1, 2, 3], [3, 2, 1])], schema=SCHEMA, model_version=v),
                  key, version=f"1.{v}.0", out=tmp_path / f"r{v}.bin") for v in (1, 2)]
    dev = _board_device(pub, board)
    assert dev.boot() == 0
    for image, slot in zip(rel, (0, 1)):
        _install(dev, image)
        assert dev.running() == slot and dev.running_digest() == _digest(image, pub)
    big = bytes(get_board(board).update.slot_size + 1)
    assert D.REASONS[dev.begin(len(big))] == "TOO_LARGE"


def test_the_flash_refuses_anything_outside_the_update_areas(releases):
    """On the F446 the region spans the firmware's own sectors 3-5 (between the records in
    sectors 1-2 and the slots in 6-7): the sector table keeps every erase and program out of them."""
    pub, _ = releases
    dev = _board_device(pub, "nucleo-f446re")
    rec1, slot0, slot1 = 0x4000, 0x3C000, 0x5C000  # offsets from 0x08004000
    assert dev.erase(0x8000) == -2            # sector 3: firmware
    assert dev.erase(slot0 + 0x1000) == -2    # inside sector 6, not its start
    assert dev.program(rec1 + 0x3FFC, bytes(8)) == -2   # record sector 2 running into sector 3
    assert dev.program(0x8000, bytes(4)) == -2
    assert dev.program(rec1 + 2, bytes(4)) == -2        # misaligned for x32 programming
    assert dev.program(slot1 - 4, bytes(8)) == 0        # slot 0's sector 6 into slot 1's sector 7: both listed
    assert dev.program(slot0, bytes(16)) == 0
    assert dev.erase(slot0) == 0              # the whole 128 KB sector, not 16 KB
    assert bytes(dev.mem[slot0 : slot0 + 0x20000]) == b"\xff" * 0x20000
    assert bytes(dev.mem[slot1 : slot1 + 4]) == bytes(4)  # the next sector is untouched
