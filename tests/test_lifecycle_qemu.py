"""Model updates end to end on the emulated mps2-an386: the firmware's UPDATE_* requests,
the trial after a reboot (golden vectors replayed on the device), refusals the host
reports, resumed transfers, and power cuts (QEMU killed) with the update region kept in
a host file as flash would keep it."""

from __future__ import annotations

import os
import pickle
import shutil

import numpy as np
import pytest

pytest.importorskip("imgtool")
pytestmark = [pytest.mark.qemu, pytest.mark.slow,  # the module builds its firmware (~15 s)
              pytest.mark.skipif(not (shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc")),
                                 reason="needs qemu-system-arm and arm-none-eabi-gcc")]

from aiot.device.hil import open_device  # noqa: E402
from aiot.lifecycle import package as P  # noqa: E402
from aiot.lifecycle.client import NO_SLOT, UpdateClient, UpdateRefused, image_digest  # noqa: E402
from aiot.lifecycle.sweep import CUT_EXIT, SweepKit, UpdateSweep, cut_define, write_cut  # noqa: E402
from aiot.paths import ROOT  # noqa: E402
from aiot.target.boards import get_board  # noqa: E402

AE24 = ROOT / "hil_tests" / "fixtures" / "ae24"
SCHEMA = P.schema_id(["a", "b", "c"], 8)
TRIAL_RUNS = 3
DEVICE_ID = "build-qemu-0042"  # written at build time: mps2-an386 has no unique id register


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    """Release key, a firmware built with it (ae24 model compiled in), and packages."""
    from aiot.codegen import generate
    from aiot.lifecycle.firmware import build_update_firmware
    from aiot.model.reference import TflmReference

    d = tmp_path_factory.mktemp("upd")
    key = P.generate_key(d / "release.pem")
    tfl = (AE24 / "model.tflite").read_bytes()
    generate(AE24 / "model.tflite", d / "model-c", name="ae24")
    board = get_board("mps2-an386")
    flash = d / "flash.bin"
    # With the opt-in power cut (aiot.lifecycle.sweep): no cut file, no cut; the same image for every test.
    fw = build_update_firmware(board, d / "fw", d / "model-c", public_key=P.public_key(key), trial_runs=TRIAL_RUNS,
                               flash_file=flash, device_id=DEVICE_ID, defines=[cut_define(d / "cut.bin")])
    x = np.load(AE24 / "vectors.npz")["x_int8"].reshape(-1, 24)[:4]
    y = TflmReference(tfl).run(x)  # the golden reference, never the code under test

    signed: dict[bytes, bytes] = {}

    def release(version, golden_y=y, key_file=key, **kw):
        """The release signed once per module: the tests ask for the same few releases again
        and again, and each signature is an imgtool process (~0.5-0.9 s). Same inputs, same
        bytes (Ed25519 signatures are deterministic)."""
        made = pickle.dumps((version, np.asarray(golden_y), str(key_file), sorted(kw.items())))
        if made not in signed:
            args = dict(tflite=tfl, golden=list(zip(x, golden_y)), schema=SCHEMA, model_version=int(version.split(".")[1]))
            args.update(kw)
            signed[made] = P.sign(P.build_container({"name": "ae24"}, **args), key_file, version=version,
                                  out=d / f"{version}.bin")
        return signed[made]

    return {"dir": d, "board": board, "elf": fw.elf, "flash": flash, "release": release, "x": x, "y": y, "key": key,
            "cut": d / "cut.bin"}


@pytest.fixture
def erased(kit):
    kit["flash"].unlink(missing_ok=True)  # a device fresh from the factory: built-in model only
    return kit


def _session(kit):
    return open_device(board=kit["board"], elf=kit["elf"])


def _confirm(dev, up, x):
    """Reboot into the trial and run the model until the trial is confirmed."""
    up.reboot()
    st = up.status()
    assert st.trial and st.trial_boots == 1 and st.self_test == 0, st
    for _ in range(TRIAL_RUNS):
        dev.infer(x[0])
    return up.status()


def test_update_runs_a_trial_and_confirms(erased):
    kit = erased
    image = kit["release"]("1.1.0")
    with _session(kit) as dev:
        up = UpdateClient(dev)
        assert up.status().running == NO_SLOT
        st = up.send(image)
        assert st.trial and st.trial_boots == 0  # verified; waits for the next boot
        st = _confirm(dev, up, kit["x"])
        assert not st.trial and st.running == 0 and st.running_digest() == image_digest(image)[:8]
    with _session(kit) as dev:  # power cycle: the confirmed release stays
        st = UpdateClient(dev).status()
        assert st.running == 0 and not st.trial and st.last_reason == 0


def test_golden_mismatch_reverts_by_itself(erased):
    kit = erased
    wrong = kit["release"]("1.2.0", golden_y=np.zeros((4, 24), np.int8) + 5)  # not what the model computes
    with _session(kit) as dev:
        up = UpdateClient(dev)
        up.send(wrong)
        up.reboot()
        st = up.status()
        assert st.running == NO_SLOT and not st.trial
        assert st.self_test == 17 and st.last_reason == 17 and st.reverted_slot == 0  # GOLDEN_MISMATCH


@pytest.mark.parametrize("case", ["other key", "bit flip", "truncated", "other ABI", "other schema"])
def test_refused_packages_are_reported_and_change_nothing(erased, case):
    kit = erased
    good = kit["release"]("1.1.0")
    if case == "other key":
        image = kit["release"]("1.3.0", key_file=P.generate_key(kit["dir"] / f"other-{id(case)}.pem"))
        want = "WRONG_KEY"
    elif case == "bit flip":
        image = bytearray(good)
        image[P.IMAGE_HEADER_SIZE + 200] ^= 1
        image, want = bytes(image), "BAD_HASH"
    elif case == "truncated":
        image, want = good[:-40], "TRUNCATED"
    elif case == "other ABI":
        image, want = kit["release"]("1.4.0", abi=P.MODEL_ABI + 1), "WRONG_ABI"
    else:
        image, want = kit["release"]("1.5.0", schema=P.schema_id(["a", "b"], 12)), "WRONG_SCHEMA"
    with _session(kit) as dev:
        up = UpdateClient(dev)
        if case == "other schema":  # the installation's schema comes from the release it runs
            up.send(good)
            _confirm(dev, up, kit["x"])
        before = up.status()
        with pytest.raises(UpdateRefused) as e:
            up.send(image)
        assert e.value.name == want and want in str(e.value) and e.value.hint
        after = up.status()
        assert after.running == before.running and not after.trial


def test_transfer_resumes_from_the_device_offset(erased):
    kit = erased
    image = kit["release"]("1.1.0")

    class LinkDropped(Exception):
        pass

    def drop_at_half(done, total):
        if done >= total // 2:
            raise LinkDropped

    with _session(kit) as dev:
        with pytest.raises(LinkDropped):
            UpdateClient(dev).send(image, progress=drop_at_half)
        again = UpdateClient(dev)  # a new host session: knows nothing of the first
        st = again.send(image)
        assert again.resumed_from is not None and again.resumed_from >= len(image) // 2
        assert st.trial and st.slot_bytes[0] == len(image)


@pytest.mark.slow
@pytest.mark.parametrize("cut", ["mid-transfer", "after finish", "during trial", "after confirm"])
def test_power_cut_leaves_old_or_new(erased, cut):
    """QEMU killed at a point of the update (old = 1.1.0 confirmed, new = 1.6.0)."""
    kit = erased
    old, new = kit["release"]("1.1.0"), kit["release"]("1.6.0")
    with _session(kit) as dev:
        up = UpdateClient(dev)
        up.send(old)
        _confirm(dev, up, kit["x"])

        def kill_half(done, total):
            if done >= total // 2:
                dev.transport.qemu.proc.kill()
                raise ConnectionError("power cut")

        if cut == "mid-transfer":
            with pytest.raises(Exception):
                up.send(new, progress=kill_half)
        else:
            up.send(new)
            if cut != "after finish":
                up.reboot()
                assert up.status().trial_boots == 1  # the trial boot happened before the cut
                if cut == "after confirm":
                    for _ in range(TRIAL_RUNS):
                        dev.infer(kit["x"][0])
            dev.transport.qemu.proc.kill()
    digests = {image_digest(old)[:8]: "old", image_digest(new)[:8]: "new"}
    with _session(kit) as dev:
        up = UpdateClient(dev)
        st = up.status()
        if st.trial:  # the cut came before the trial's first boot: it runs now
            assert st.trial_boots == 1
            for _ in range(TRIAL_RUNS):
                dev.infer(kit["x"][0])
            st = up.status()
        got = digests.get(st.running_digest())
        want = {"mid-transfer": "old", "after finish": "new", "during trial": "old", "after confirm": "new"}[cut]
        assert got == want, st
        if cut == "during trial":
            assert st.last_reason == 18  # TRIAL_RESET: the reset is why it reverted
        assert dev.infer(kit["x"][0]).output.shape == (24,)


def _sweep(kit, old, new, older=None):
    """The cut sweep over this module's firmware: ``old`` confirmed (after ``older``), then
    the update to ``new`` counted once (its flash operations, traced into the cut file)."""
    sw = UpdateSweep(SweepKit(kit["board"], kit["elf"], kit["flash"], kit["cut"], kit["release"](old),
                              kit["release"](new), kit["x"], kit["y"], TRIAL_RUNS,
                              older=kit["release"](older) if older else None))
    sw.ops = sw.prepare()
    kit["cut"].unlink()  # the other tests run without counting
    return sw


@pytest.fixture(scope="module")
def sweep(kit):
    return _sweep(kit, "1.1.0", "1.6.0")  # the new release goes into the empty slot 1


@pytest.fixture(scope="module")
def sweep_reuse(kit):
    return _sweep(kit, "1.6.0", "1.14.0", older="1.1.0")  # into slot 0, over 1.1.0


def test_a_cut_flash_operation_is_left_half_done_and_the_device_stops(sweep):
    """AIOT_FLASH_CUT_FILE: the armed operation writes the first half of its bytes (a program:
    the package's bytes; an erase: 0xFF, the second half keeps what it held) to the flash
    file, then QEMU exits with the cut's code; nothing after it is written."""
    kit = sweep.kit
    slot = sweep.areas[3]  # the package is written from the slot's start

    def chunk(o):
        return kit.new[o.offset - slot:o.offset - slot + o.length]

    # a program whose both halves differ from erased flash (the header's padding is 0xFF)
    program = next(o for o in sweep.ops if o.kind == "program" and o.area == "slot 1"
                   and b"\xff" * (o.length // 2) not in (chunk(o)[:o.length // 2], chunk(o)[o.length // 2:]))
    erase = next(o for o in sweep.ops if o.kind == "erase" and o.area == "slot 1")
    for op in (program, erase):
        base = bytearray(sweep.base)
        if op is erase:  # the sector held something (a stale release would): all bits programmed
            base[op.offset:op.offset + op.length] = bytes(op.length)
        kit.flash.write_bytes(base)
        write_cut(kit.cut, op.index)
        with sweep._open() as dev:
            with pytest.raises(Exception):
                sweep._update(dev)
            assert dev.transport.wait_exit(10.0)[0] == CUT_EXIT
        flash, half = kit.flash.read_bytes(), op.length // 2
        assert int.from_bytes(kit.cut.read_bytes()[4:8], "little") == op.index + 1  # counted up to the cut, not beyond
        got = flash[op.offset:op.offset + op.length]
        if op is program:
            assert got[:half] == chunk(op)[:half] and got[half:] == b"\xff" * half
        else:
            assert got[:half] == b"\xff" * half and got[half:] == bytes(half)
        assert flash[op.offset + op.length:] == bytes(base[op.offset + op.length:])  # nothing written after it
    kit.cut.unlink()


@pytest.mark.parametrize("scenario", ["sweep", "sweep_reuse"])
def test_power_cut_at_flash_operations_leaves_old_or_new(request, scenario):
    """The update cut at flash operations (the first erase and program of each area in each
    phase; every operation with AIOT_QEMU_SWEEP=1), into an empty slot or over an older
    release, then a boot with no cut: the device runs exactly the old or the new release
    (never the older one, never none) and INFER answers tflite-micro's output. A cut before the trial's
    first boot record is written leaves the old release; during that write, the trial runs
    again (new); during the confirmation's write, the reset reverts (old, TRIAL_RESET)."""
    from aiot.lifecycle.sweep import covering_points

    sweep = request.getfixturevalue(scenario)
    ops = sweep.ops
    points = range(len(ops)) if os.environ.get("AIOT_QEMU_SWEEP") == "1" else covering_points(ops)
    covered = {(ops[k].kind, ops[k].area) for k in points}
    slot = "slot 1" if scenario == "sweep" else "slot 0"
    assert covered >= {(k, a) for k in ("erase", "program") for a in (slot, "record 0", "record 1")}, covered
    want = {"transfer": "old", "reboot into trial": "new", "trial runs": "old"}
    for k in points:
        r = sweep.cut(ops[k])
        assert r.recovered and r.ended == want[r.op.phase], r
        assert r.trial_resumed == (r.op.phase == "reboot into trial"), r
        if r.op.phase == "trial runs":
            assert r.last_reason == 18, r  # TRIAL_RESET


def test_release_monitor_configuration_takes_effect(erased):
    """A release carries the installation's monitor settings: after the update they are
    the device's configuration; settings the monitor refuses fail the trial."""
    from aiot import monitor as M

    kit = erased
    capacity = 8  # the firmware's AIOT_MONITOR_MAX_CHANNELS (monitor.h default): CONFIG_SET's layout
    cfg = M.default_config(3, 8, 1000, alert_margin=2.5, clear_margin=2.5)  # clear level at most the alert level
    image = kit["release"]("1.7.0", monitor_config=M.pack_config(cfg, capacity))
    bad = M.default_config(3, 8, 1000)
    bad.window = 9  # 3 x 9 != the model's 24 inputs: the device refuses it
    refused = kit["release"]("1.8.0", monitor_config=M.pack_config(bad, capacity))
    with _session(kit) as dev:
        up = UpdateClient(dev)
        up.send(image)
        _confirm(dev, up, kit["x"])
        got = dev.config
        assert got is not None and bytes(got) == bytes(cfg)
        up.send(refused)
        up.reboot()
        st = up.status()
        assert not st.trial and st.running == 0 and st.last_reason == 19  # SELF_TEST: reverted to 1.7.0
        assert bytes(dev.config) == bytes(cfg)


SKAB_FREE = ROOT.parent / "shared" / "data" / "skab" / "anomaly-free" / "anomaly-free.csv"


def test_a_field_device_that_only_pushes_a_recording_confirms_its_trial(erased):
    """No INFER: a release carrying its monitor configuration boots on trial, then the
    device is only sent a recording (SKAB's anomaly-free pump, 3 sensors) through PUSH. The
    commissioning windows run no model; the first scored window's runs (the window and one
    probe per sensor) bring the trial to TRIAL_RUNS and the device confirms it by itself."""
    from aiot import monitor as M

    if not SKAB_FREE.exists():
        pytest.skip(f"needs the SKAB recording at {SKAB_FREE}")
    kit = erased
    rows = np.loadtxt(SKAB_FREE, delimiter=";", skiprows=1, usecols=(1, 3, 4), max_rows=120, dtype=np.float32)
    cfg = M.default_config(3, 8, 1000, commission_samples=64)
    image = kit["release"]("1.12.0", monitor_config=M.pack_config(cfg, 8))
    with _session(kit) as dev:
        up = UpdateClient(dev)
        up.send(image)
        up.reboot()
        st = up.status()
        assert st.trial and st.trial_runs == 1 and st.trial_runs_needed == TRIAL_RUNS, st  # the golden vectors
        t = np.arange(len(rows), dtype=np.int64) * 1000
        out = dev.push(t[:64], rows[:64])
        assert len(out) == 8 and up.status().trial  # 8 commissioning windows: no model run
        out = dev.push(t[64:72], rows[64:72])
        assert len(out) == 1 and not out["flags"][0] & M.OUT_SCORE_ERROR, out
        st = up.status()
        assert not st.trial and st.running == 0 and st.last_reason == 0, st
        assert st.running_digest() == image_digest(image)[:8]
        out = dev.push(t[72:], rows[72:])  # confirmed: the monitor goes on as it was
        assert len(out) == 6 and not (out["flags"] & M.OUT_SCORE_ERROR).any(), out


def test_a_trial_time_holds_confirmation_back_until_it_has_passed(kit):
    """AIOT_UPDATE_TRIAL_MS=10000 (the emulated board's SysTick): the trial has its runs
    within a second of the reboot (a recording PUSHed) but stays on trial; it confirms by
    itself once 10 s of the device's clock have passed, checked after each request."""
    import time

    from aiot import monitor as M
    from aiot.lifecycle.firmware import build_update_firmware

    if not SKAB_FREE.exists():
        pytest.skip(f"needs the SKAB recording at {SKAB_FREE}")
    d = kit["dir"]
    flash = d / "flash-ms.bin"
    flash.unlink(missing_ok=True)
    elf = build_update_firmware(kit["board"], d / "fw-ms", d / "model-c", public_key=P.public_key(kit["key"]),
                                trial_runs=TRIAL_RUNS, flash_file=flash, device_id=DEVICE_ID,
                                defines=["AIOT_UPDATE_TRIAL_MS=10000u"]).elf
    rows = np.loadtxt(SKAB_FREE, delimiter=";", skiprows=1, usecols=(1, 3, 4), max_rows=72, dtype=np.float32)
    image = kit["release"]("1.13.0", monitor_config=M.pack_config(M.default_config(3, 8, 1000, commission_samples=64), 8))
    with open_device(board=kit["board"], elf=elf) as dev:
        up = UpdateClient(dev)
        up.send(image)
        up.reboot()
        booted = time.monotonic()
        dev.push(np.arange(72) * 1000, rows)  # 8 commissioning windows, then one scored: 1 + 4 runs
        st = up.status()
        assert st.trial and st.trial_runs >= TRIAL_RUNS, st  # the runs are there, the time is not
        while st.trial and time.monotonic() - booted < 60:
            time.sleep(0.1)
            st = up.status()  # the trial is decided after every request, this one included
        waited = time.monotonic() - booted
        assert not st.trial and st.last_reason == 0 and st.running_digest() == image_digest(image)[:8], st
        assert waited >= 10 - 3, waited  # the device's 10 s began before the reboot's answer (< 3 s)


def _other_network(tfl: bytes) -> bytes:
    """ae24 with different weights: the first dense layer's int8 weights negated in the file
    (a valid .tflite computing something else)."""
    from aiot.model import tflite

    g = tflite.load(tfl)
    w = g.tensors[g.operators[0].inputs[1]].data.astype(np.int8).tobytes()
    at = tfl.find(w)
    assert at > 0 and tfl.find(w, at + 1) < 0
    neg = (-np.frombuffer(w, np.int8).astype(np.int16)).clip(-127, 127).astype(np.int8).tobytes()
    return tfl[:at] + neg + tfl[at + len(w):]


def test_package_runs_its_own_network_from_data(erased):
    """A package carrying its model as data (PLAN): the trial replays the golden vectors on
    the package's own network, walked from flash, bit for bit; a different network than
    the compiled-in one passes there (and would fail on the compiled-in model)."""
    from aiot.lifecycle.plan import build_plan
    from aiot.model.reference import TflmReference

    kit = erased
    tfl = (AE24 / "model.tflite").read_bytes()
    other = _other_network(tfl)
    x = kit["x"]
    y_other = TflmReference(other).run(x).reshape(len(x), -1)
    assert not np.array_equal(y_other, TflmReference(tfl).run(x).reshape(len(x), -1))
    same = kit["release"]("1.9.0", plan=build_plan(tfl))
    changed = kit["release"]("1.10.0", tflite=other, golden_y=y_other, plan=build_plan(other))
    changed_no_plan = kit["release"]("1.11.0", tflite=other, golden_y=y_other)
    with _session(kit) as dev:
        up = UpdateClient(dev)
        up.send(same)
        st = _confirm(dev, up, x)
        assert st.golden_path == 2 and st.running == 0 and not st.trial
        up.send(changed)
        up.reboot()
        st = up.status()
        assert st.trial and st.self_test == 0 and st.golden_path == 2  # its own network reproduced them
        for _ in range(TRIAL_RUNS):
            dev.infer(x[0])
        assert up.status().running == 1
        up.send(changed_no_plan)  # the same network without its plan: only the compiled-in model can run it
        up.reboot()
        st = up.status()
        assert st.running == 1 and st.last_reason == 17 and st.golden_path == 1


@pytest.fixture(scope="module")
def model_b():
    """Another small dense autoencoder over the same 24 inputs (24 -> 16 -> 8 -> 4 -> 8 ->
    24, random weights): a network the firmware was not built with. Converted once and
    committed (tests/fixtures/lifecycle/make_model_b.py): no TensorFlow in this module."""
    return (ROOT / "tests" / "fixtures" / "lifecycle" / "model_b.tflite").read_bytes()


def test_release_network_serves_infer_info_and_reverts(erased, model_b):
    """Device running the compiled-in ae24 (A) takes a release of another network (B) as
    data: during its trial and once confirmed, INFER answers tflite-micro's outputs for B
    byte for byte and INFO names B; a trial that is reset reverts to A's outputs and INFO."""
    import zlib

    from aiot.lifecycle.plan import build_plan
    from aiot.model.reference import TflmReference

    kit = erased
    tfl_a = (AE24 / "model.tflite").read_bytes()
    x = np.load(AE24 / "vectors.npz")["x_int8"].reshape(-1, 24)[:12]
    y_a = TflmReference(tfl_a).run(x).reshape(len(x), -1)
    y_b = TflmReference(model_b).run(x).reshape(len(x), -1)
    assert not np.array_equal(y_a, y_b)
    release_b = P.sign(P.build_container({"name": "pump-ae-b"}, tflite=model_b, golden=list(zip(x[:4], y_b[:4])),
                                         schema=SCHEMA, model_version=1, plan=build_plan(model_b)),
                       kit["key"], version="2.1.0", out=kit["dir"] / "b-2.1.0.bin")

    def outputs(dev):
        return np.stack([dev.infer(row).output.reshape(-1) for row in x])

    with _session(kit) as dev:
        up = UpdateClient(dev)
        info_a = dev.info()
        assert info_a.model_name == "ae24" and info_a.model_hash == zlib.crc32(tfl_a)
        np.testing.assert_array_equal(outputs(dev), y_a)
        # B on trial, then a reset before it is confirmed: reverts to A.
        up.send(release_b)
        up.reboot()
        st = up.status()
        assert st.trial and st.serving_plan, st
        assert dev.info().model_name == "pump-ae-b"
        up.reboot()
        st = up.status()
        assert st.running == NO_SLOT and st.last_reason == 18 and not st.serving_plan  # TRIAL_RESET
        np.testing.assert_array_equal(outputs(dev), y_a)
        info = dev.info()
        assert (info.model_name, info.model_hash, info.num_layers) == ("ae24", info_a.model_hash, info_a.num_layers)
        # B again, confirmed: B serves.
        up.send(release_b)
        st = _confirm(dev, up, x)
        assert not st.trial and st.running == 0 and st.serving_plan, st
        np.testing.assert_array_equal(outputs(dev), y_b)
        info = dev.info()
        assert info.model_name == "pump-ae-b" and info.model_hash == zlib.crc32(model_b)
        assert (info.input_bytes, info.output_bytes, info.num_layers) == (24, 24, 5)
        ref = TflmReference(model_b).input_details["quantization_parameters"]
        assert info.input_scale == np.float32(ref["scales"][0]) and info.input_zero_point == int(ref["zero_points"][0])
    with _session(kit) as dev:  # power cycle: the confirmed release still serves
        assert UpdateClient(dev).status().serving_plan
        np.testing.assert_array_equal(outputs(dev), y_b)
        assert dev.info().model_name == "pump-ae-b"
        # The monitor scores with B too: the same stream gives what the host build of the
        # monitor with B's generated C gives (and not what it gives with A's).
        from aiot import codegen
        from aiot import monitor as M

        def host(tfl, name):
            c = kit["dir"] / f"{name}-c"
            codegen.generate(tfl, c, name=name)
            lib = M.library(extra_sources=[*codegen.engine_sources(), c / "model.c", M.engine_adapter_source()],
                            include_dirs=[c], name=f"lifecycle_monitor_{name}")
            return M.Monitor(cfg, lib.aiot_monitor_engine_score, lib).run(ts, v)

        # the energy score (the model's reconstruction error): the header's level score does not come from the model
        cfg = M.default_config(3, 8, 1000, commission_samples=80, calibration_windows=24, level_windows=0,
                               spread_score=0, residual_score=0)
        rng = np.random.default_rng(3)
        ts = np.arange(600, dtype=np.int64) * 1000
        v = (rng.normal(0, 1, (600, 3)) * [0.5, 2.0, 1.0] + [50, -20, 3]).astype(np.float32)
        v[450:, 0] += 4.0
        assert dev.configure(cfg, fresh=True) is True
        out = dev.push(ts, v)
    want_b, want_a = host(model_b, "model_b"), host(tfl_a, "model_a")
    assert len(out) == len(want_b) > 0
    np.testing.assert_allclose(out["score"], want_b["score"], rtol=1e-5, atol=1e-6)
    assert np.array_equal(out["state"], want_b["state"])
    assert not np.allclose(out["score"], want_a["score"], rtol=1e-5, atol=1e-6)


def test_update_records_the_device_by_its_info_id(erased, tmp_path):
    """The registry keys a device by the id its INFO answer reports (protocol 1.1; on this
    board the id the firmware was built with), not by a name the user types; a --label is
    kept as an alias, and `aiot models` finds the device by either."""
    from click.testing import CliRunner

    from aiot.cli import main
    from aiot.lifecycle.registry import Registry

    with _session(erased) as dev:
        info = dev.info()
        from aiot.device.protocol import PROTO_MINOR

        # the id is in INFO since 1.1; this firmware speaks the current minor version
        assert PROTO_MINOR >= 1 and (info.proto_minor, info.device_id) == (PROTO_MINOR, DEVICE_ID)
    reg = Registry(tmp_path / "registry")
    rel = reg.add(erased["release"]("1.20.0"), name="ae24", version="1.20.0")
    runner = CliRunner()
    r = runner.invoke(main, ["update", "--board", "mps2-an386", "--qemu", "--elf", str(erased["elf"]), "--release",
                             str(reg.root / rel.entry["file"]), "--registry", str(reg.root), "--label", "pump-7"],
                      catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert f"registry: device {DEVICE_ID} (pump-7) runs ae24-1.20.0 (on trial)" in r.output
    dev_rec = reg.devices()[DEVICE_ID]
    assert dev_rec["release"] == "ae24-1.20.0" and dev_rec["labels"] == ["pump-7"] and dev_rec["firmware_abi"] == P.MODEL_ABI
    assert reg.device("pump-7")[0] == DEVICE_ID  # the label is an alias of the INFO id
    listed = runner.invoke(main, ["models", "list", "--registry", str(reg.root)]).output
    assert f"device {DEVICE_ID} (pump-7): runs ae24-1.20.0" in listed


def test_sweep_command_refuses_a_real_board_and_bad_points(tmp_path, capsys):
    """The sweep's command: a real board (its flash is no host file) and a --points list
    that is not numbers are refused with what to do, before anything is built."""
    from aiot.lifecycle.sweep import main

    assert main(["--board", "nucleo-f446re", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "emulated boards only" in err and "--board mps2-an386" in err
    assert main(["--points", "1,x", "--out", str(tmp_path)]) == 2
    assert "--points" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())
