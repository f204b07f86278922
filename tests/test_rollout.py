"""Fleet rollout of model updates (issue 24, part 3): host-built devices (the firmware's own
app, update service and trial, over a simulated flash, in this process) and QEMU boards
behind gateways that take update commands from a real broker (mosquitto), and `aiot rollout`
sending a release canary first."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from aiot.errors import ToolkitError

pytest.importorskip("paho.mqtt", reason="the fleet extra is not installed: pip install -e '.[fleet]'")
pytest.importorskip("imgtool")

from aiot.testing import have_arm_toolchain, have_qemu  # noqa: E402
from ae24_kit import ae24_kit  # noqa: E402
from test_gateway import broker  # noqa: E402,F401  (the fixture)

SITE = "plant-9"
#: A monitor configured at boot (3 sensors, window 8: the ae24 model's 24 inputs), as a device
#: installed on a pump is: the gateway reads its events from the start.
MONITOR = ("AIOT_APP_CHANNELS=3", "AIOT_APP_WINDOW=8", "AIOT_APP_PERIOD_MS=1000")
#: Samples that commission the monitor (monitor.h's default commission_samples: no model run),
#: then windows enough for the default trial (AIOT_UPDATE_TRIAL_RUNS = 16, the golden vectors
#: the first, 4 runs per scored window with 3 sensors: docs/lifecycle.md "Trial period").
TRIAL_SAMPLES = 360 + 4 * 8


def _pump(seed: int = 0, chunk: int = 100, pause: float = 0.05, start_s: int = 0):
    """A pump's 3 sensors, endless and paced: what a gateway replays to its device (the bridge's
    ``replay``). The device is sent nothing else; its trials confirm from the monitor's windows."""
    rng = np.random.default_rng(seed)
    t = start_s
    while True:
        yield np.arange(t, t + chunk) * 1000, (1 + 0.1 * rng.standard_normal((chunk, 3))).astype(np.float32)
        t += chunk
        time.sleep(pause)


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    """A release key, the ae24 model's C, the host build of the firmware with both compiled
    in (the default trial: golden vectors, then model runs), a good and a bad release, and a
    registry holding them."""
    from aiot.device.host import HostFirmware
    from aiot.lifecycle import package as P
    from aiot.lifecycle.registry import Registry

    d = tmp_path_factory.mktemp("rollout")
    ae = ae24_kit(d)
    key, tfl, x, y = ae["key"], ae["tfl"], ae["x"], ae["y"]  # y: tflite-micro's, never the code under test's
    bad_y = y.copy()
    bad_y[0, 0] = np.int8(bad_y[0, 0] ^ 0x40)  # a release whose golden vectors this model cannot reproduce

    def release(version, golden_y):
        body = P.build_container({"name": "ae24"}, tflite=tfl, golden=list(zip(x, golden_y)),
                                 schema=P.schema_id(["a", "b", "c"], 8), model_version=int(version.split(".")[1]))
        return P.sign(body, key, version=version, out=d / f"ae24-{version}.bin")

    reg = Registry(d / "registry")
    good, bad = release("1.1.0", y), release("1.2.0", bad_y)
    reg.add(good, name="ae24", version="1.1.0")
    reg.add(bad, name="ae24", version="1.2.0")
    fw = HostFirmware(d / "model-c", public_key=P.public_key(key), defines=MONITOR)
    return {"dir": d, "key": key, "good": good, "bad": bad, "fw": fw, "registry": reg, "model_c": d / "model-c"}


class Recorder:
    """Every update outcome on the site, in the order the broker delivered them."""

    def __init__(self, broker):
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, dict]] = []
        self.lock = threading.Lock()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        ready = threading.Event()
        self.client.on_connect = lambda c, *_a: c.subscribe(f"aiot/{SITE}/+/update", 1)
        self.client.on_subscribe = lambda *_a: ready.set()
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", broker.port, keepalive=5)
        self.client.loop_start()
        assert ready.wait(5)

    def _on_message(self, _c, _u, msg):
        with self.lock:
            self.messages.append((msg.topic.split("/")[2], json.loads(msg.payload)))

    def outcomes(self, rollout: str | None = None) -> list[tuple[str, str, str]]:
        """(device, outcome, message id) in arrival order, duplicates dropped."""
        seen, out = set(), []
        with self.lock:
            for dev, p in self.messages:
                if p["id"] not in seen and (rollout is None or p["rollout"] == rollout):
                    seen.add(p["id"])
                    out.append((dev, p["outcome"], p.get("reason")))
        return out

    def wait(self, pred, timeout: float = 20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred(self.outcomes()):
                return self.outcomes()
            time.sleep(0.05)
        return self.outcomes()

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()


def _publish_command(broker, device: str, body: dict) -> None:
    import paho.mqtt.client as mqtt

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    c.publish(f"aiot/{SITE}/{device}/cmd", b"" if body is None else json.dumps(body), qos=1,
              retain=True).wait_for_publish(5)
    c.disconnect()
    c.loop_stop()


def _status(board):
    """The device's own update status, over a second link (the gateway keeps its own)."""
    from aiot.device.hil import Device
    from aiot.lifecycle.client import UpdateClient

    return UpdateClient(Device(board.transport())).status()


def _requests(board) -> list[int]:
    """A counter of the requests ``board`` is sent from now on (by any link to it)."""
    count = [0]
    feed = board.feed

    def counted(data):
        count[0] += 1
        return feed(data)

    board.feed = counted
    return count


def _served(count: list[int], requests: int = 10, timeout: float = 10.0) -> None:
    """Wait until ``requests`` more requests reached the device (a few rounds of its bridge:
    each round runs the device's pending commands after the replay and the events)."""
    deadline, want = time.monotonic() + timeout, count[0] + requests
    while count[0] < want:
        assert time.monotonic() < deadline, f"the gateway sent the device only {count[0] - want + requests} requests"
        time.sleep(0.02)


def _shut(gw, rec, boards) -> None:
    """Stop a test's gateway and recorder, power its host devices off."""
    gw.stop(drain=1)
    if rec is not None:
        rec.close()
    for b in boards:
        b.close()


def _gateway(tmp_path, broker, name, boards, *, replay=True, **kw):
    """``replay``: each device is streamed a pump's samples (:func:`_pump`), as in the field;
    a callable: the replay of each device is ``replay(index)``; False: none."""
    from aiot.fleet.gateway import Gateway

    gw = Gateway(tmp_path / f"{name}.db", broker.url, site=SITE, gateway_id=name, commands=True)
    for i, (dev_id, opener) in enumerate(boards):
        gw.add(dev_id, opener, stats_every=0, poll=0.1, reopen_after=0.2, uptime_every=1.0,
               replay=(replay(i) if callable(replay) else _pump(i)) if replay else None, **kw)
    return gw


# --- the host-built device -------------------------------------------------------------------


def test_host_device_runs_the_update_service_of_the_firmware(kit):
    """The host build is the firmware's own C: a release goes to the inactive slot, REBOOT
    restarts the app with its RAM gone and its flash kept, the good release passes its golden
    vectors and is confirmed by the monitor's windows over the samples it is sent, the bad
    one reverts at boot (GOLDEN_MISMATCH), by the device itself."""
    from aiot.device.hil import Device
    from aiot.lifecycle.client import NO_SLOT, UpdateClient, image_digest

    board = kit["fw"].power_on("h1")
    try:
        dev = Device(board.transport())
        up = UpdateClient(dev)
        assert up.status().running == NO_SLOT and dev.info().model_name == "ae24"
        st = up.send(kit["good"])
        assert st.trial and st.trial_boots == 0
        up.reboot()
        assert board.boots == 2
        st = up.status()
        assert (st.running_digest(), st.trial, st.self_test) == (image_digest(kit["good"])[:8], True, 0)
        samples = next(_pump(chunk=TRIAL_SAMPLES, pause=0))
        dev.push(*samples)
        st = up.status()
        assert (st.running_digest(), st.trial, st.last_reason) == (image_digest(kit["good"])[:8], False, 0), st
        up.send(kit["bad"])
        up.reboot()
        st = up.status()
        assert st.running_digest() == image_digest(kit["good"])[:8]  # the bad one reverted at boot
        assert (st.last_reason, st.self_test) == (17, 17)  # GOLDEN_MISMATCH
        board.link_up = False
        with pytest.raises(Exception, match="link is down"):
            dev.info(refresh=True)
    finally:
        board.close()


# --- the gateway's command path ----------------------------------------------------------------


def test_gateway_applies_update_commands_and_reports_each_outcome(kit, broker, tmp_path):
    """Commands through the broker: a good release passes its trial, damaged bytes are
    refused by the gateway, a device whose link is down gets its update when the link
    returns, a command sent while the gateway was down runs when it starts (retained
    + persistent session), and cleared commands (empty retained messages) do not block the
    session. Every outcome is an at-least-once `update` message."""
    from aiot.fleet.commands import update_command
    from aiot.lifecycle.client import image_digest

    boards = {n: kit["fw"].power_on(n) for n in ("u1", "u2", "u3")}
    rec = Recorder(broker)
    boards["u3"].link_up = False
    _publish_command(broker, "u1", update_command("c1", kit["good"], release="ae24-1.1.0"))  # before the gateway runs
    damaged = update_command("c2", kit["good"], release="ae24-1.1.0")
    damaged["sha256"] = "0" * 64
    gw = _gateway(tmp_path, broker, "gwa", [(n, b.opener()) for n, b in boards.items()]).start()
    try:
        for _ in range(25):  # cleared commands (empty retained messages), more than the broker keeps in flight
            _publish_command(broker, "u2", None)
        _publish_command(broker, "u2", damaged)
        _publish_command(broker, "u3", update_command("c3", kit["good"], release="ae24-1.1.0"))
        got = rec.wait(lambda o: {("u1", "trial passed"), ("u2", "refused")} <= {(d, w) for d, w, _r in o})
        assert ("u1", "accepted", None) in got and ("u1", "trial passed", None) in got, got
        assert [r for d, w, r in got if d == "u2"] == ["the release bytes do not match the command's sha256 "
                                                        "(damaged on the way)"]
        assert not [o for o in got if o[0] == "u3"]  # its link is down: nothing happened yet
        boards["u3"].link_up = True
        got = rec.wait(lambda o: ("u3", "trial passed") in {(d, w) for d, w, _r in o})
        assert ("u3", "trial passed", None) in got, got
        assert _status(boards["u3"]).running_digest() == image_digest(kit["good"])[:8]
        assert _status(boards["u2"]).running == 0xFF  # refused: still the built-in model
    finally:
        _shut(gw, rec, boards.values())


def test_a_link_dropped_mid_transfer_resumes_and_a_restarted_gateway_carries_on(kit, broker, tmp_path):
    """The link of w1 drops after a few chunks: the bridge reopens it and the transfer resumes
    at the device's offset (one UPDATE_BEGIN in all). w2 had been sent its package and
    rebooted when its gateway died (its command journaled at the 'trial' step): the next
    gateway only asks the device's status and reports the outcome, sending nothing again."""
    from aiot.device import protocol as P
    from aiot.device.hil import Device
    from aiot.device.host import HostTransport
    from aiot.fleet.commands import update_command
    from aiot.fleet.journal import Journal
    from aiot.lifecycle.client import UPDATE_BEGIN, UPDATE_CHUNK, UpdateClient

    boards = {n: kit["fw"].power_on(n) for n in ("w1", "w2")}
    sent: dict[str, list[int]] = {"w1": [], "w2": []}
    drops = {"left": 1}

    class Counted(HostTransport):  # records each request's type; w1's link drops once, at its 4th chunk
        def write(self, data: bytes) -> None:
            types = [f.type for f in P.StreamDecoder().feed(bytes(data)) if isinstance(f, P.Frame)]
            if self.board.name == "w1" and UPDATE_CHUNK in types and sent["w1"].count(UPDATE_CHUNK) == 3 \
                    and drops["left"]:
                drops["left"] -= 1
                raise ToolkitError("w1: link dropped (test)")
            sent[self.board.name] += types
            super().write(data)

    # w2: the package sent and the device rebooted into its trial by a gateway that then died
    up = UpdateClient(Device(boards["w2"].transport()))
    up.send(kit["good"])
    up.reboot()
    j = Journal(tmp_path / "gww.db")
    body = update_command("w2-cmd", kit["good"], release="ae24-1.1.0")
    assert j.add_command("w2", "w2-cmd", body)
    j.set_command_state("w2-cmd", "trial")
    j.close()

    rec = Recorder(broker)
    gw = _gateway(tmp_path, broker, "gww", [(n, b.opener(Counted)) for n, b in boards.items()]).start()
    try:
        _publish_command(broker, "w1", update_command("w1-cmd", kit["good"], release="ae24-1.1.0"))
        got = rec.wait(lambda o: {("w1", "trial passed"), ("w2", "trial passed")} <= {(d, w) for d, w, _r in o})
        assert {("w1", "trial passed", None), ("w2", "trial passed", None)} <= set(got), got
        assert [w for d, w, _r in got if d == "w1"] == ["accepted", "trial passed"]
        assert drops["left"] == 0 and gw.bridges[0].link_drops >= 1
        assert sent["w1"].count(UPDATE_BEGIN) == 1  # resumed, not begun again
        assert UPDATE_BEGIN not in sent["w2"] and UPDATE_CHUNK not in sent["w2"]
    finally:
        _shut(gw, rec, boards.values())


def test_events_the_device_holds_before_the_reboot_are_journaled_not_lost(kit, broker, tmp_path):
    """An event raised during the transfer (the monitor commissions while the package is
    being written) is still in the device's RAM when the gateway reboots it into the trial:
    the gateway drains the device's events first, so the event reaches the broker."""
    from aiot.device import protocol as P
    from aiot.device.hil import Device
    from aiot.device.host import HostTransport
    from aiot.fleet.commands import update_command
    from aiot.lifecycle.client import UPDATE_FINISH

    board = kit["fw"].power_on("e1")
    rng = np.random.default_rng(0)

    class CommissionDuringTransfer(HostTransport):
        def write(self, data: bytes) -> None:
            if any(isinstance(f, P.Frame) and f.type == UPDATE_FINISH for f in P.StreamDecoder().feed(bytes(data))):
                side = Device(HostTransport(self.board))  # the pump's own samples: enough to commission
                side.push(np.arange(400) * 1000, 1 + 0.1 * rng.standard_normal((400, 3)))
            super().write(data)

    seen: list[dict] = []
    rec = Recorder(broker)
    rec.client.subscribe(f"aiot/{SITE}/e1/calibration", 1)
    rec.client.on_message = lambda _c, _u, m: seen.append(json.loads(m.payload)) if "calibration" in m.topic \
        else rec._on_message(_c, _u, m)
    def after_the_reboot(_i):
        """The pump's samples once the device runs its trial (nothing before), from 10^4 s on:
        the trial's own events are told apart from the one held before the reboot by time."""
        while board.boots < 2:
            yield np.zeros(0, np.int64), np.zeros((0, 3), np.float32)
            time.sleep(0.05)
        yield from _pump(1, start_s=10_000)

    gw = _gateway(tmp_path, broker, "gwe", [("e1", board.opener(CommissionDuringTransfer))],
                  replay=after_the_reboot).start()
    try:
        _publish_command(broker, "e1", update_command("e1-cmd", kit["good"], release="ae24-1.1.0"))
        rec.wait(lambda o: ("e1", "trial passed") in {(d, w) for d, w, _r in o})
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(seen) < 2:
            time.sleep(0.05)
        assert board.boots == 2  # it was rebooted into the trial
        # the event held before the reboot (its samples' time, boot 0), then the trial's own
        # commissioning on the replayed samples
        first, then = seen[0], seen[1]
        assert (first["event"], first["boot"], first["timestamp_ms"] < 10_000_000) == ("COMMISSIONED", 0, True), seen
        assert (then["event"], then["timestamp_ms"] >= 10_000_000) == ("COMMISSIONED", True), seen
    finally:
        _shut(gw, rec, [board])


def test_a_reboot_the_gateway_commands_starts_a_new_boot_so_repeated_events_are_not_dropped(kit, broker, tmp_path):
    """The device rebooted into its trial runs afresh: its events may repeat the numbers,
    times and types of events from before the reboot (the same samples replayed from time 0
    commission it again at the same sample). The gateway that rebooted it knows a new boot
    began, so the trial's events are new messages (boot 1), not dropped as re-sends."""
    from aiot.fleet.commands import update_command

    board = kit["fw"].power_on("r1")

    def same_samples_again(_i):
        """The pump's samples from time 0; after the reboot, the same samples from time 0 again."""
        replay = _pump(1)
        while board.boots < 2:
            yield next(replay)
        yield from _pump(1)

    seen: list[dict] = []
    rec = Recorder(broker)
    rec.client.subscribe(f"aiot/{SITE}/r1/calibration", 1)
    rec.client.on_message = lambda _c, _u, m: seen.append(json.loads(m.payload)) if "calibration" in m.topic \
        else rec._on_message(_c, _u, m)
    gw = _gateway(tmp_path, broker, "gwr", [("r1", board.opener())], replay=same_samples_again).start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not any(p.get("event") == "COMMISSIONED" for p in seen):
            time.sleep(0.05)
        _publish_command(broker, "r1", update_command("r1-cmd", kit["good"], release="ae24-1.1.0"))
        rec.wait(lambda o: ("r1", "trial passed") in {(d, w) for d, w, _r in o})
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and sum(p.get("event") == "COMMISSIONED" for p in seen) < 2:
            time.sleep(0.05)
        assert board.boots == 2
        commissioned = [(p["boot"], p["seq"], p["timestamp_ms"]) for p in seen if p.get("event") == "COMMISSIONED"]
        assert len(commissioned) == 2 and commissioned[0][0] == 0 and commissioned[1][0] == 1, seen
        assert commissioned[0][1:] == commissioned[1][1:]  # the same seq and time: told apart by the boot alone
    finally:
        _shut(gw, rec, [board])


def test_an_interrupted_rollout_resumes_with_the_outcomes_published_meanwhile(kit, broker, tmp_path):
    """The rollout stops right after sending to its canary (Ctrl-C); the canary's outcome is
    published while nothing listens. --resume (Rollout.load + run) gets it from its
    persistent session, goes on to the rest, and ends done."""
    from aiot.fleet.gateway import parse_broker
    from aiot.fleet.rollout import Rollout

    boards = {n: kit["fw"].power_on(n) for n in ("r1", "r2", "r3")}
    rec = Recorder(broker)
    gw = _gateway(tmp_path, broker, "gwr", [(n, b.opener()) for n, b in boards.items()]).start()
    url = parse_broker(broker.url)
    try:
        r = Rollout.start(tmp_path / "r.json", site=SITE, release="ae24-1.1.0", image=kit["good"],
                          devices=list(boards), canary="1", trial_timeout=30)

        def interrupted(*_a, **_k):
            raise KeyboardInterrupt

        r._wait = interrupted  # stops as Ctrl-C would, right after the canary was sent
        with pytest.raises(KeyboardInterrupt):
            r.run(url, canary_timeout=30, timeout=30)
        rec.wait(lambda o: ("r1", "trial passed") in {(d, w) for d, w, _r in o})
        again = Rollout.load(tmp_path / "r.json")
        assert again.state["phase"] == "canary" and list(again.state["sent"]) == ["r1"]
        assert again.state["outcomes"] == {}  # nothing listened when it was published
        summary = again.run(url, canary_timeout=30, timeout=30)
        assert summary["phase"] == "done" and summary["passed"] == ["r1", "r2", "r3"], summary
        assert [d for d, w, _r in rec.outcomes(again.state["id"]) if w == "accepted"].count("r1") == 1  # sent once
    finally:
        _shut(gw, rec, boards.values())


# --- the rollout ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def qemu_fw(kit):
    if not (have_arm_toolchain() and have_qemu()):
        pytest.skip("needs arm-none-eabi-gcc and QEMU")
    from aiot.lifecycle import package as P
    from aiot.lifecycle.firmware import build_update_firmware
    from aiot.target.boards import get_board

    board = get_board("mps2-an386")
    # one image for the three boards; each boots in a folder of its own (its update region file)
    return build_update_firmware(board, kit["dir"] / "fw-qemu", kit["model_c"], public_key=P.public_key(kit["key"]),
                                 defines=MONITOR).elf


@pytest.mark.slow
@pytest.mark.qemu
def test_rollout_canary_first_then_the_rest_and_a_failed_canary_halts(kit, qemu_fw, broker, tmp_path):
    """50 host-built devices and 3 QEMU boards behind two gateways. A good release reaches all
    53, the canary's trials passing before any other device is sent anything; one device
    offline during the rollout (in a wave before the last) is not waited for and gets it when it returns. Then a release that fails its
    golden vectors reverts on the canary and halts the rollout: no other device is touched."""
    from aiot.fleet.gateway import device_opener
    from aiot.fleet.rollout import Rollout
    from aiot.fleet.gateway import parse_broker
    from aiot.lifecycle.client import image_digest

    hosts = {f"pump-h{i:02d}": kit["fw"].power_on(f"pump-h{i:02d}") for i in range(1, 51)}
    qemus = [f"pump-q{i}" for i in range(1, 4)]
    opener = {n: b.opener() for n, b in hosts.items()}
    opener.update({q: device_opener("qemu", "mps2-an386", qemu_fw, workdir=tmp_path / q) for q in qemus})
    names = sorted(opener)
    offline = "pump-h40"  # in the third wave (3 canaries, then waves of 6, 12, 24, 8): not waited for
    hosts[offline].link_up = False
    def pump(i):  # 53 devices on the test machine: larger batches, less often
        return _pump(i, chunk=200, pause=0.2)

    gw1 = _gateway(tmp_path, broker, "gw1", [(n, opener[n]) for n in names[0::2]], replay=pump)
    gw2 = _gateway(tmp_path, broker, "gw2", [(n, opener[n]) for n in names[1::2]], replay=pump)
    rec = Recorder(broker)
    url = parse_broker(broker.url)
    gw1.start(), gw2.start()
    try:
        r = Rollout.start(tmp_path / "good.json", site=SITE, release="ae24-1.1.0", image=kit["good"],
                          devices=names, canary="5%", trial_timeout=30)
        r.registry = kit["registry"]
        assert r.state["canary"] == ["pump-h01", "pump-h02", "pump-h03"]  # ceil(5% of 53), sorted ids
        assert [len(w) for w in r.state["waves"]] == [6, 12, 24, 8] and offline in r.state["waves"][2]
        done: dict = {}
        t = threading.Thread(target=lambda: done.setdefault("summary", r.run(url, canary_timeout=60, timeout=90)))
        t.start()
        got = rec.wait(lambda o: len({d for d, w, _r in o if w == "trial passed"}) >= 52, timeout=90)
        assert offline not in {d for d, _w, _r in got}
        hosts[offline].link_up = True  # it comes back: its gateway delivers the pending command
        t.join(60)
        summary = done["summary"]
        assert summary["phase"] == "done" and summary["passed"] == names, summary
        assert not summary["failed"] and not summary["waiting"]

        got = rec.outcomes(r.state["id"])
        canary = set(r.state["canary"])
        last_canary = max(i for i, (d, w, _r) in enumerate(got) if d in canary and w == "trial passed")
        first_rest = min(i for i, (d, _w, _r) in enumerate(got) if d not in canary)
        assert last_canary < first_rest, got[: first_rest + 1]
        assert [d for d, w, _r in got if w == "trial passed"][-1] == offline  # the last, once it returned
        assert {d for d, w, _r in got if w == "trial passed"} == set(names)
        good = image_digest(kit["good"])[:8]
        assert all(_status(b).running_digest() == good for b in hosts.values())
        assert {d: v["release"] for d, v in kit["registry"].devices().items()} == {n: "ae24-1.1.0" for n in names}

        # a bad release: the canary's device reverts it, the rollout halts
        bad = Rollout.start(tmp_path / "bad.json", site=SITE, release="ae24-1.2.0", image=kit["bad"],
                            devices=names, canary="5%", trial_timeout=30)
        bad.registry = kit["registry"]
        summary = bad.run(url, canary_timeout=60, timeout=60)
        assert summary["phase"] == "halted" and summary["halted"]["device"] in canary, summary
        assert "GOLDEN_MISMATCH" in summary["halted"]["reason"]
        assert summary["not_sent"] == sorted(set(names) - canary)
        time.sleep(1.0)  # anything the gateways would still send
        touched = {d for d, _w, _r in rec.outcomes(bad.state["id"])}
        assert touched and touched <= canary, touched
        assert all(_status(b).running_digest() == good for b in hosts.values())  # reverted or never sent
        assert {v["release"] for v in kit["registry"].devices().values()} == {"ae24-1.1.0"}
        shown = Rollout.load(tmp_path / "bad.json").summary()
        assert shown["phase"] == "halted" and shown["halted"] == summary["halted"]
    finally:
        gw1.stop(drain=2)
        gw2.stop(drain=2)
        rec.close()
        for b in hosts.values():
            b.close()


# --- groups, the canary's size, the verb -----------------------------------------------------------


def test_canary_size_is_a_share_rounded_up_or_a_count_and_at_least_one():
    from aiot.errors import ToolkitError
    from aiot.fleet.rollout import canary_count

    assert [canary_count("5%", 53), canary_count("5%", 10), canary_count("0%", 10), canary_count("100%", 7)] == [3, 1, 1, 7]
    assert [canary_count("3", 10), canary_count("30", 10), canary_count(0.2, 10)] == [3, 10, 2]
    for bad in ("five", "150%", "-1"):
        with pytest.raises(ToolkitError, match="--canary"):
            canary_count(bad, 10)


def test_groups_from_a_file_or_a_glob_over_the_known_devices(tmp_path):
    from aiot.errors import ToolkitError
    from aiot.fleet.rollout import resolve_group

    f = tmp_path / "group.txt"
    f.write_text("# line 1: a comment\npump-b\npump-a  # trailing comment\n\npump-b\n")
    assert resolve_group(str(f), []) == ["pump-a", "pump-b"]
    f.write_text("pump-a\npump b\n")
    with pytest.raises(ToolkitError, match=r"group.txt:2: device id 'pump b' cannot be an MQTT topic level"):
        resolve_group(str(f), [])
    assert resolve_group("pump-*", ["pump-2", "fan-1", "pump-1"]) == ["pump-1", "pump-2"]
    with pytest.raises(ToolkitError, match="no device of the site matches 'mill-\\*'") as e:
        resolve_group("mill-*", ["pump-1"])
    assert "--devices" in e.value.hint


def test_aiot_rollout_verb_end_to_end_and_status(kit, broker, tmp_path, monkeypatch):
    """`aiot rollout` on three host devices found by a glob over the site's retained status:
    the summary as JSON, exit 0, the state shown by --status; an unknown release is refused
    with a hint before anything is sent."""
    from click.testing import CliRunner

    from aiot.cli import main

    monkeypatch.chdir(tmp_path)
    boards = {n: kit["fw"].power_on(n) for n in ("v1", "v2", "v3")}
    gw = _gateway(tmp_path, broker, "gwv", [(n, b.opener()) for n, b in boards.items()]).start()
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not all(b.publisher.connections for b in gw.bridges):
            time.sleep(0.05)
        args = ["rollout", "--devices", "v*", "--canary", "1", "--mqtt", broker.url, "--site", SITE,
                "--registry", str(kit["dir"] / "registry")]
        res = CliRunner().invoke(main, [*args, "--release", "ae24-9.9.9"])
        assert res.exit_code != 0 and "neither a release file nor a release of the registry" in res.output
        res = CliRunner().invoke(main, [*args, "--release", str(kit["dir"] / "ae24-1.1.0.bin"), "--state",
                                        "r.json", "--json", "sum.json", "--canary-timeout", "30", "--timeout", "30"])
        assert res.exit_code == 0, res.output
        summary = json.loads((tmp_path / "sum.json").read_text())
        assert (summary["phase"], summary["passed"], summary["canary"]) == ("done", ["v1", "v2", "v3"], ["v1"])
        res = CliRunner().invoke(main, ["rollout", "--status", "--state", "r.json"])
        assert res.exit_code == 0 and "done" in res.output and "3 passed, 0 failed" in res.output, res.output
        boards["v3"].link_up = False  # offline: the rollout stops waiting for it, exit 3
        res = CliRunner().invoke(main, [*args, "--release", str(kit["dir"] / "ae24-1.1.0.bin"), "--state",
                                        "r2.json", "--json", "sum2.json", "--timeout", "2"])
        summary = json.loads((tmp_path / "sum2.json").read_text())
        assert res.exit_code == 3 and (summary["phase"], summary["waiting"]) == ("rest", ["v3"]), res.output
        assert "waiting for: v3" in res.output
    finally:
        _shut(gw, None, boards.values())


# --- waves, and a halted rollout's commands withdrawn ----------------------------------------------


def test_waves_after_the_canary_double_or_a_share_or_a_count():
    from aiot.fleet.rollout import waves

    rest = [f"d{i:02d}" for i in range(2, 54)]  # 53 devices, canary 1 ... 3
    assert [len(w) for w in waves("double", 3, rest[2:])] == [6, 12, 24, 8]
    assert [len(w) for w in waves("double", 1, rest)] == [2, 4, 8, 16, 22]
    assert [len(w) for w in waves("25%", 1, rest)] == [14, 14, 14, 10]  # ceil(25% of 53)
    assert [len(w) for w in waves("20", 1, rest)] == [20, 20, 12]
    assert sum(waves("double", 1, rest), []) == rest and waves("double", 3, []) == []
    with pytest.raises(ToolkitError, match="--wave 'half'"):
        waves("half", 1, rest)


def test_the_rest_goes_in_waves_each_waiting_for_the_outcomes_of_the_one_before(kit, broker, tmp_path):
    """7 devices, canary 1, doubling waves: 2, then 4. No device of a wave hears anything
    before every device of the wave before has its final outcome."""
    from aiot.fleet.gateway import parse_broker
    from aiot.fleet.rollout import Rollout

    names = [f"wv{i}" for i in range(1, 8)]
    boards = {n: kit["fw"].power_on(n) for n in names}
    rec = Recorder(broker)
    gw = _gateway(tmp_path, broker, "gwwv", [(n, b.opener()) for n, b in boards.items()]).start()
    try:
        r = Rollout.start(tmp_path / "w.json", site=SITE, release="ae24-1.1.0", image=kit["good"],
                          devices=names, canary="1", trial_timeout=30)
        assert r.state["waves"] == [["wv2", "wv3"], ["wv4", "wv5", "wv6", "wv7"]]
        summary = r.run(parse_broker(broker.url), canary_timeout=30, timeout=30)
        assert summary["phase"] == "done" and summary["passed"] == names, summary
        got = rec.outcomes(r.state["id"])
        for before, after in ((["wv1"], ["wv2", "wv3"]), (["wv2", "wv3"], ["wv4", "wv5", "wv6", "wv7"])):
            last_end = max(i for i, (d, w, _r) in enumerate(got) if d in before and w == "trial passed")
            first_heard = min(i for i, (d, _w, _r) in enumerate(got) if d in after)
            assert last_end < first_heard, got
    finally:
        _shut(gw, rec, boards.values())


def _fleet(kit, broker, tmp_path, gateway: str, names: list[str], offline: str):
    """Host devices ``names`` behind one gateway, ``offline``'s link down; with a recorder."""
    boards = {n: kit["fw"].power_on(n) for n in names}
    boards[offline].link_up = False
    rec = Recorder(broker)
    return boards, rec, _gateway(tmp_path, broker, gateway, [(n, b.opener()) for n, b in boards.items()]).start()


def test_an_offline_device_does_not_hold_its_wave_up_and_gets_the_release_when_it_returns(kit, broker, tmp_path):
    """Waves of 2 after a canary of 1; ho3 of the first wave is offline (its gateway reports
    its link down): the rollout does not wait for it, sends the next wave, and ho3 installs
    the release when its link returns, before the last wave's wait ends."""
    from aiot.fleet.gateway import parse_broker
    from aiot.fleet.rollout import Rollout

    names = [f"ho{i}" for i in range(1, 6)]
    boards, rec, gw = _fleet(kit, broker, tmp_path, "gwho", names, offline="ho3")
    try:
        r = Rollout.start(tmp_path / "o.json", site=SITE, release="ae24-1.1.0", image=kit["good"],
                          devices=names, canary="1", wave="2", trial_timeout=30)
        done: dict = {}
        t = threading.Thread(target=lambda: done.setdefault(
            "summary", r.run(parse_broker(broker.url), canary_timeout=30, timeout=30)))
        t.start()
        got = rec.wait(lambda o: {"ho4", "ho5"} <= {d for d, w, _r in o if w == "trial passed"}, timeout=30)
        assert "ho3" not in {d for d, _w, _r in got}, got  # the next wave went on without it
        boards["ho3"].link_up = True
        t.join(40)
        summary = done["summary"]
        assert summary["phase"] == "done" and summary["passed"] == names, summary
        assert [d for d, w, _r in rec.outcomes(r.state["id"]) if w == "trial passed"][-1] == "ho3"
    finally:
        _shut(gw, rec, boards.values())


def test_a_halted_rollout_withdraws_the_command_of_a_device_offline_which_never_installs_it(kit, broker, tmp_path):
    """Waves of 2 after a canary of 1. In the first wave hw2 refuses the release (its firmware
    serves another sensor schema) and hw3 is offline: the rollout halts on hw2, the last wave
    is never sent, and hw3's command (journaled by its gateway, not started) is withdrawn.
    When hw3's link returns it does not install the halted release."""
    from aiot.device.host import HostFirmware
    from aiot.fleet.gateway import parse_broker
    from aiot.fleet.rollout import Rollout
    from aiot.lifecycle import package as P

    names = [f"hw{i}" for i in range(1, 6)]
    other = HostFirmware(kit["model_c"], public_key=P.public_key(kit["key"]), defines=MONITOR, schema_id=7)
    boards = {n: (other if n == "hw2" else kit["fw"]).power_on(n) for n in names}
    boards["hw3"].link_up = False
    rec = Recorder(broker)
    gw = _gateway(tmp_path, broker, "gwhw", [(n, b.opener()) for n, b in boards.items()]).start()
    try:
        r = Rollout.start(tmp_path / "h.json", site=SITE, release="ae24-1.1.0", image=kit["good"],
                          devices=names, canary="1", wave="2", trial_timeout=30)
        summary = r.run(parse_broker(broker.url), canary_timeout=30, timeout=30)
        assert summary["phase"] == "halted" and summary["halted"]["device"] == "hw2", summary
        assert "refused" in summary["halted"]["reason"], summary
        assert summary["passed"] == ["hw1"] and summary["not_sent"] == ["hw4", "hw5"], summary
        asked = _requests(boards["hw3"])
        boards["hw3"].link_up = True  # it returns: its gateway has nothing left to run
        _served(asked)  # a few rounds of its bridge on the open link
        assert gw.journal.pending_commands("hw3") == []  # nothing claimed, nothing sending
        assert [w for d, w, _r in rec.outcomes(r.state["id"]) if d == "hw3"] == ["withdrawn"]
        assert _status(boards["hw3"]).running == 0xFF  # still the built-in model
        assert summary["withdrawn"] == ["hw3"] and list(summary["failed"]) == ["hw2"] and not summary["waiting"]
        assert not {d for d, _w, _r in rec.outcomes(r.state["id"])} & {"hw4", "hw5"}
        assert Rollout.load(tmp_path / "h.json").summary()["withdrawn"] == ["hw3"]
    finally:
        _shut(gw, rec, boards.values())


def test_a_canary_that_reverts_halts_and_withdraws_the_other_canarys_command(kit, broker, tmp_path):
    """A release with wrong golden vectors, canary of 2: hc1 reverts it, hc2 is offline. The
    rollout halts on hc1 at once (no waiting out the timeout), hc2's command is withdrawn and
    hc2, back online, never installs it; hc3 is never sent anything."""
    from aiot.fleet.gateway import parse_broker
    from aiot.fleet.rollout import Rollout

    names = ["hc1", "hc2", "hc3"]
    boards, rec, gw = _fleet(kit, broker, tmp_path, "gwhc", names, offline="hc2")
    try:
        r = Rollout.start(tmp_path / "c.json", site=SITE, release="ae24-1.2.0", image=kit["bad"],
                          devices=names, canary="2", trial_timeout=30)
        t0 = time.monotonic()
        summary = r.run(parse_broker(broker.url), canary_timeout=60, timeout=60)
        assert time.monotonic() - t0 < 30, "the halt waited out the canary timeout"
        assert summary["phase"] == "halted" and summary["halted"]["device"] == "hc1", summary
        assert "GOLDEN_MISMATCH" in summary["halted"]["reason"] and summary["not_sent"] == ["hc3"], summary
        asked = _requests(boards["hc2"])
        boards["hc2"].link_up = True
        _served(asked)  # a few rounds of its bridge on the open link
        assert gw.journal.pending_commands("hc2") == []  # nothing claimed, nothing sending
        assert [w for d, w, _r in rec.outcomes(r.state["id"]) if d == "hc2"] == ["withdrawn"]
        assert _status(boards["hc2"]).running == 0xFF  # still the built-in model
        assert summary["withdrawn"] == ["hc2"] and summary["failed"].keys() == {"hc1"}, summary
    finally:
        _shut(gw, rec, boards.values())
