"""The gateway against a real MQTT broker (mosquitto): every device event arrives exactly
once after de-duplication, in order, through broker outages, a gateway killed with -9 and
a dropped device link. The event source is a fake device that keeps events the way the
firmware does (each batch until the next EVENTS request acknowledges it)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from aiot.errors import ToolkitError

pytest.importorskip("paho.mqtt", reason="the fleet extra is not installed: pip install -e '.[fleet]'")

MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
SITE = "plant-1"
TYPES = [  # a plausible life: (event type, state after it)
    ("COMMISSIONED", "NORMAL"), ("CALIBRATED", "NORMAL"), ("ALERT_RAISED", "ANOMALY"),
    ("SEVERITY_CHANGED", "ANOMALY"), ("ALERT_CLEARED", "NORMAL"), ("DRIFT_DETECTED", "DRIFT"),
    ("RECAL_DONE", "NORMAL"), ("DATA_LOST", "NO_DATA"), ("DATA_RESTORED", "NORMAL"),
]


# --- a broker ---------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """mosquitto on a loopback port, with persistence (a stopped broker keeps its sessions).

    Started as root, mosquitto drops to the user ``mosquitto`` unless told otherwise, which
    cannot write into pytest's tmp_path (mode 700): it then saved nothing on stop, silently,
    and came back with no sessions and no queued messages -- the consumer lost whatever the
    gateway had delivered around a short outage. So as root it stays root (the ``user``
    option only matters to a root process), and :meth:`stop` checks it did save."""

    def __init__(self, workdir: Path, extra_conf: str = ""):
        self.port = free_port()
        self.dir = workdir
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence true\n"
                             f"persistence_location {workdir}/\nlog_dest file {workdir}/mosquitto.log\n"
                             + ("user root\n" if hasattr(os, "geteuid") and os.geteuid() == 0 else "")
                             + extra_conf)
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.port}: {(self.dir / 'mosquitto.log').read_text()}")

    def reload(self) -> None:
        """SIGHUP: mosquitto reads its configuration again (its ACL file too), connections stay."""
        self.proc.send_signal(signal.SIGHUP)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: mosquitto saves its sessions and queued messages
            self.proc.wait(5)
            saved = self.dir / "mosquitto.db"
            if not saved.exists():  # the tests' premise: a restarted broker has its sessions back
                log = self.dir / "mosquitto.log"
                raise RuntimeError(f"mosquitto did not save its sessions to {saved}: "
                                   f"{log.read_text() if log.exists() else 'no log written either'}")
        self.proc = None


@pytest.fixture
def broker(tmp_path):
    if MOSQUITTO is None:
        pytest.skip("mosquitto is not installed (apt-get install -y mosquitto, or make setup)")
    b = Broker(tmp_path)
    b.start()
    yield b
    b.stop()


class Consumer:
    """A subscriber with a persistent session: what a fleet back-end sees."""

    def __init__(self, broker: Broker):
        import paho.mqtt.client as mqtt
        from paho.mqtt.properties import Properties
        from paho.mqtt.packettypes import PacketTypes

        self.messages: list[tuple[str, dict, bool]] = []
        self.lock = threading.Lock()
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="consumer", protocol=mqtt.MQTTv5)
        self.client.reconnect_delay_set(0.05, 0.3)

        def on_connect(c, _u, _f, rc, _p):
            c.subscribe(f"aiot/{SITE}/#", qos=1)

        def on_message(_c, _u, msg):
            with self.lock:
                self.messages.append((msg.topic, json.loads(msg.payload), bool(msg.retain)))

        self.client.on_connect, self.client.on_message = on_connect, on_message
        self.client.connect("127.0.0.1", broker.port, keepalive=5, clean_start=False, properties=props)
        self.client.loop_start()

    def journaled(self, device: str) -> list[dict]:
        """The journaled messages of ``device`` in arrival order (duplicates included)."""
        with self.lock:
            return [p for t, p, _r in self.messages if t.startswith(f"aiot/{SITE}/{device}/") and "id" in p]

    def events_after_dedup(self, device: str) -> list[dict]:
        seen, out = set(), []
        for p in self.journaled(device):
            if p["id"] not in seen:
                seen.add(p["id"])
                out.append(p)
        return out

    def wait_events(self, device: str, count: int, timeout: float) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = [p for p in self.events_after_dedup(device) if "seq" in p and p["kind"] != "state"]
            if len(got) >= count:
                return got
            time.sleep(0.05)
        return [p for p in self.events_after_dedup(device) if "seq" in p and p["kind"] != "state"]

    def status(self, device: str) -> list[str]:
        with self.lock:
            return [p["status"] for t, p, _r in self.messages if t == f"aiot/{SITE}/{device}/status"]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


# --- a device ------------------------------------------------------------------------------------


class FakeHardware:
    """The device's memory: events made so far and what was acknowledged. ``state_file``
    keeps it outside the gateway's process (a board lives on when the gateway dies)."""

    BATCH = 8  # events per EVENTS answer

    def __init__(self, total: int, per_poll: int = 3, state_file: Path | None = None):
        self.total, self.per_poll, self.state_file = total, per_poll, state_file
        self.made, self.acked = 0, -1  # events 0..acked are forgotten
        self.broken = False
        self.uptime = 0
        if state_file is not None and state_file.exists():
            self.made, self.acked, self.uptime = json.loads(state_file.read_text())

    def _save(self) -> None:
        if self.state_file is not None:
            tmp = self.state_file.with_suffix(".tmp")
            tmp.write_text(json.dumps([self.made, self.acked, self.uptime]))
            os.replace(tmp, self.state_file)

    @staticmethod
    def event(seq: int):
        from aiot.monitor import Event

        kind, state = TYPES[seq % len(TYPES)]
        return Event(timestamp_ms=1000 * seq, seq=seq, type=kind, channel=seq % 2, channels=(seq % 2,),
                     severity=2 if kind.startswith(("ALERT_R", "SEV")) else 0, state=state, value=float(seq))

    def reboot(self) -> None:
        """A reset: the RAM ring and the seq counter start again, and so does the uptime."""
        self.made, self.acked, self.uptime = 0, -1, 0

    def request(self, ack: int | None) -> list:
        """One EVENTS request: acknowledge up to ``ack``, answer the oldest kept batch."""
        if self.broken:
            raise ToolkitError("no answer from fake-device (link down)")
        self.uptime += 1
        if ack is not None:
            self.acked = max(self.acked, ack)
        self._save()
        first = self.acked + 1
        return [self.event(s) for s in range(first, min(first + self.BATCH, self.made))]

    def produce(self) -> None:
        self.made = min(self.total, self.made + self.per_poll)
        self._save()


class FakeLink:
    """What aiot.device.hil.Device offers the gateway: a generator of event batches whose
    acknowledgement rides on the request for the next batch; the acknowledgement state is the
    client's (lost when the link is reopened)."""

    def __init__(self, hw: FakeHardware):
        self.hw = hw
        self.ack: int | None = None

    def info(self) -> dict:
        return {"board": "fake", "model_name": "pump", "firmware_version": "test"}

    def stats(self) -> dict:
        if self.hw.broken:
            raise ToolkitError("no answer from fake-device (link down)")
        return {"link": {"uptime_ticks": self.hw.uptime}, "configured": True}

    def event_batches(self):
        self.hw.produce()
        while True:
            batch = self.hw.request(self.ack)
            if not batch:
                return
            yield batch
            self.ack = batch[-1].seq  # only once the next batch is asked for


def check_exactly_once(got: list[dict], total: int) -> None:
    """Every event 0..total-1 once, in order, numbered 1, 2, ... without a gap."""
    seqs = [p["seq"] for p in got]
    missing = sorted(set(range(total)) - set(seqs))
    assert seqs == list(range(total)), f"missing {len(missing)}: {missing[:5]}...{missing[-5:]}"
    ns = [p["n"] for p in got]
    assert ns == sorted(ns) and len(set(ns)) == len(ns)


def until(pred, timeout: float = 10.0) -> bool:
    """Wait for ``pred()`` (polled every 10 ms) at most ``timeout`` s; whether it came true.
    The tests wait for what they need to have happened, never for a fixed time."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def make_gateway(tmp_path: Path, broker: Broker, hw: FakeHardware, device: str = "pump7"):
    from aiot.fleet.gateway import Gateway

    gw = Gateway(tmp_path / "journal.db", broker.url, site=SITE, gateway_id="gw1")
    gw.add(device, lambda: FakeLink(hw), sensors=["pressure", "flow"], poll=0.01, stats_every=0,
           reopen_after=0.05, uptime_every=0.05)
    return gw


# --- tests ---------------------------------------------------------------------------------------


def test_events_arrive_in_order_with_kinds_and_retained_status(tmp_path, broker):
    consumer = Consumer(broker)
    hw = FakeHardware(total=40)
    gw = make_gateway(tmp_path, broker, hw).start()
    try:
        got = consumer.wait_events("pump7", 40, 10)
    finally:
        gw.stop(drain=2)
        consumer.close()
    check_exactly_once(got, 40)
    raised = next(p for p in got if p["event"] == "ALERT_RAISED")
    assert raised["kind"] == "alert" and raised["severity"] == 2 and raised["severity_name"] == "major"
    assert raised["sensors"] == ["pressure"] and raised["top_sensor"] == "pressure"
    assert {p["kind"] for p in got} == {"alert", "calibration", "drift", "data"}
    states = [p["state"] for p in consumer.events_after_dedup("pump7") if p["kind"] == "state"]
    assert states[:3] == ["NORMAL", "ANOMALY", "NORMAL"]
    assert consumer.status("pump7")[0] == "online" and consumer.status("pump7")[-1] == "offline"


def test_every_monitor_event_goes_to_a_documented_kind():
    """A consumer subscribes to the kinds docs/fleet.md lists: every event the monitor emits
    (monitor.h's types, issue 19's calibration alert, lost sensor, time reset and gain remount
    among them) reaches one of them, none only the generic `event` fallback."""
    from aiot import monitor as mon
    from aiot.fleet.gateway import EVENT_KINDS

    documented = {"alert", "drift", "calibration", "data"}
    missing = {t for t in mon.EVENT_TYPES.values() if EVENT_KINDS.get(t) not in documented}
    assert not missing, f"events without a documented kind: {sorted(missing)}"
    assert EVENT_KINDS["CALIBRATION_ALERT"] == EVENT_KINDS["RECAL_GAIN"] == "drift"
    assert EVENT_KINDS["CHANNEL_LOST"] == EVENT_KINDS["TIME_RESET"] == "data"
    assert EVENT_KINDS["CHANNEL_STUCK"] == "calibration"


def test_broker_outage_loses_nothing(tmp_path, broker):
    consumer = Consumer(broker)
    hw = FakeHardware(total=600, per_poll=2)
    gw = make_gateway(tmp_path, broker, hw).start()
    try:
        consumer.wait_events("pump7", 30, 10)
        broker.stop()
        time.sleep(1.0)  # the device keeps making events; the gateway journals them
        during = hw.made
        broker.start()
        got = consumer.wait_events("pump7", 600, 30)
    finally:
        gw.stop(drain=2)
        consumer.close()
    assert during > 60, "the outage should have lasted while events were made"
    check_exactly_once(got, 600)


def test_a_broker_outage_of_tens_of_ms_while_events_flow_fast_loses_nothing(tmp_path, broker):
    """The broker stopped and started again within about 50 ms, three times, while the device
    makes events three times faster than above, each time stopped while messages are still
    waiting for their PUBACK: the gateway's connection drops, it reconnects at once, and every
    event still arrives exactly once after de-duplication, in order (events 37-95 were
    reported lost: the test broker, as root, had not kept its sessions; see Broker)."""
    consumer = Consumer(broker)
    hw = FakeHardware(total=600, per_poll=6)
    gw = make_gateway(tmp_path, broker, hw).start()
    publisher = gw.bridges[0].publisher
    try:
        for k in range(3):
            consumer.wait_events("pump7", 30 * (k + 1), 10)
            before = publisher.connections
            for _attempt in range(3):  # an outage the client slept through cut nothing: another one
                assert until(lambda: gw.journal.backlog("pump7") > 0), "messages waiting for a PUBACK at the stop"
                broker.stop()
                time.sleep(0.05)
                broker.start()
                if until(lambda: publisher.connections > before, 5):
                    break
        got = consumer.wait_events("pump7", 600, 30)
    finally:
        gw.stop(drain=2)
        consumer.close()
    assert publisher.connections >= 4, "each outage should have cut the gateway's connection"
    check_exactly_once(got, 600)


def test_a_message_the_broker_refuses_is_kept_and_sent_again_not_forgotten(tmp_path):
    """An MQTT 5 broker may answer a PUBLISH with a PUBACK that refuses it (reason code 0x80
    or more: not authorized, quota exceeded...): that message did not reach the broker. Here
    the broker's ACL refuses the device's alert topic until an operator fixes the ACL (and
    the broker reloads it): the alerts refused meanwhile stay in the journal, the gateway
    says why, and once the ACL is fixed every message arrives, none missing (in ``n`` order
    once sorted: those after a refused one may come first, docs/fleet.md)."""
    if MOSQUITTO is None:
        pytest.skip("mosquitto is not installed (apt-get install -y mosquitto, or make setup)")
    acl = tmp_path / "acl"
    acl.write_text(f"topic readwrite #\ntopic deny aiot/{SITE}/pump7/alert\n")
    b = Broker(tmp_path, extra_conf=f"acl_file {acl}\n")
    b.start()
    consumer = Consumer(b)
    hw = FakeHardware(total=40)
    gw = make_gateway(tmp_path, b, hw).start()
    publisher = gw.bridges[0].publisher
    try:
        said_why = until(lambda: "Not authorized" in (publisher.last_error or ""), 10)
        why = publisher.last_error
        time.sleep(0.3)  # a refusal the gateway took for delivery would be marked published by now
        backlog = gw.journal.backlog("pump7")
        assert not any(p["kind"] == "alert" for p in consumer.journaled("pump7"))
        acl.write_text("topic readwrite #\n")
        b.reload()
        got = consumer.wait_events("pump7", 40, 15)
    finally:
        gw.stop(drain=2)
        consumer.close()
        b.stop()
    check_exactly_once(sorted(got, key=lambda p: p["n"]), 40)
    assert {p["kind"] for p in got} >= {"alert"}
    every = sorted(p["n"] for p in consumer.events_after_dedup("pump7"))  # state messages too
    assert every == list(range(1, every[-1] + 1)), "a journaled message is missing"
    assert said_why, f"the gateway should say the broker refused a message: {why}"
    assert backlog > 0, "refused messages are not published: they stay in the journal's backlog"
    assert publisher.refusals >= 1 and "Not authorized" in publisher.last_refusal


def test_device_link_drop_resent_events_are_journaled_once(tmp_path, broker):
    consumer = Consumer(broker)
    hw = FakeHardware(total=200, per_poll=2)
    gw = make_gateway(tmp_path, broker, hw).start()
    bridge = gw.bridges[0]
    try:
        consumer.wait_events("pump7", 20, 10)
        for k in range(3):
            hw.broken = True
            until(lambda: bridge.link_drops > k)  # the bridge saw the link drop
            hw.broken = False
            asked = hw.uptime  # EVENTS requests answered so far
            until(lambda: hw.uptime > asked)  # the link reopened: the device is asked again
        got = consumer.wait_events("pump7", 200, 20)
    finally:
        gw.stop(drain=2)
        consumer.close()
    assert bridge.link_drops >= 3
    check_exactly_once(got, 200)


def test_a_rebooted_device_repeating_seqs_and_timestamps_is_not_taken_for_a_resend(tmp_path, broker):
    consumer = Consumer(broker)
    hw = FakeHardware(total=30, per_poll=5)
    gw = make_gateway(tmp_path, broker, hw).start()
    try:
        assert len(consumer.wait_events("pump7", 30, 10)) == 30
        hw.broken = True  # the board resets: the link drops, and it comes back with seq 0 again
        until(lambda: gw.bridges[0].link_drops >= 1)
        hw.reboot()
        hw.broken = False
        got = consumer.wait_events("pump7", 60, 10)
    finally:
        gw.stop(drain=2)
        consumer.close()
    assert [p["seq"] for p in got] == list(range(30)) * 2
    assert [p["boot"] for p in got] == [0] * 30 + [1] * 30


def test_journal_before_ack_resend_after_crash_is_dropped(tmp_path):
    """A batch journaled whose ack never reached the device comes again: journaled once."""
    from aiot.fleet.journal import Journal
    from aiot.fleet.gateway import event_messages, event_origin

    j = Journal(tmp_path / "j.db")
    evs = [FakeHardware.event(s) for s in range(5)]
    items = [it for e in evs for it in event_messages(e, [], None)]
    first = j.append("d", items)
    j.close()
    j = Journal(tmp_path / "j.db")  # the gateway restarted
    assert j.append("d", items) == []
    assert [m.n for m in j.unpublished("d")] == [m.n for m in first]
    assert {m.payload["id"].split("-")[0] for m in first} == {j.epoch}
    assert event_origin(evs[0]) == "0:0:0:COMMISSIONED" != event_origin(evs[0], boot=1)


def test_bridge_journals_a_batch_before_the_device_sees_its_ack(tmp_path):
    """If journaling fails, the batch is not acknowledged: the device still holds it."""
    from aiot.fleet.gateway import drain_events

    hw = FakeHardware(total=10, per_poll=10)
    link = FakeLink(hw)

    def failing(batch):
        raise OSError("disk full")

    with pytest.raises(OSError):
        drain_events(link, failing)
    assert hw.acked == -1
    seen = []
    assert drain_events(FakeLink(hw), seen.extend) == 10
    assert [e.seq for e in seen] == list(range(10))


def test_an_alert_from_a_device_sampling_its_own_sensors_carries_the_devices_confidence(tmp_path):
    """No replay: the gateway never sees the device's window outputs, only its events; the
    alert carries the confidence of the window that raised it (monitor.h:
    aiot_monitor_event_t.confidence), the other messages none."""
    import numpy as np

    from aiot import monitor as M
    from aiot.fleet.gateway import DeviceBridge, drain_events
    from aiot.fleet.journal import Journal

    learn = 160 + 32 * 8  # commissioning and calibration samples
    device = M.Monitor(M.default_config(2, 8, 1000, commission_samples=160, calibration_windows=32,
                                        persist_k=3, persist_n=5), lambda w: np.zeros_like(w))
    x = np.random.default_rng(13).normal(size=(learn + 70 * 8, 2)).astype(np.float32)
    x[learn + 20 * 8 : learn + 40 * 8] += 6.0  # a fault, then the machine is back
    outputs = device.run(np.arange(len(x)) * 1000, x)  # the device sampling its own sensors

    class Publisher:
        def wake(self) -> None:
            pass

    journal = Journal(tmp_path / "j.db")
    bridge = DeviceBridge("pump7", lambda: device, journal, Publisher(), sensors=["a", "b"])
    assert drain_events(device, bridge.journal_batch) > 0
    sent = [m.payload for m in journal.unpublished("pump7")]
    journal.close()
    alerts = [p for p in sent if p["kind"] == "alert"]
    assert {"ALERT_RAISED", "ALERT_CLEARED"} <= {p["event"] for p in alerts}
    by_end = {int(o["t_end_ms"]): float(o["confidence"]) for o in outputs}
    for p in alerts:
        assert p["confidence"] is not None and abs(p["confidence"] - by_end[p["timestamp_ms"]]) <= 0.5 / 254 + 1e-6
    assert all(p["confidence"] is None for p in sent if p["kind"] == "calibration")


GATEWAY_SCRIPT = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {tests!r})
    from pathlib import Path
    from test_gateway import FakeHardware, FakeLink, SITE
    from aiot.fleet.gateway import Gateway
    hw = FakeHardware(total={total}, per_poll=2, state_file=Path({state!r}))
    gw = Gateway({journal!r}, {url!r}, site=SITE, gateway_id="gw1")
    gw.add("pump7", lambda: FakeLink(hw), poll=0.01, stats_every=0, uptime_every=0.05)
    gw.start()
    while True:
        time.sleep(1)
""")


def test_gateway_killed_mid_publish_loses_nothing(tmp_path, broker):
    consumer = Consumer(broker)
    total = 400
    script = tmp_path / "gw.py"
    script.write_text(GATEWAY_SCRIPT.format(tests=str(Path(__file__).parent), total=total,
                                            state=str(tmp_path / "device.json"), journal=str(tmp_path / "j.db"),
                                            url=broker.url))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(Path(__file__).parents[1] / "toolkit"),
                                                        os.environ.get("PYTHONPATH", "")]))
    procs = []
    try:
        for kill_at in (60, 200):
            p = subprocess.Popen([sys.executable, str(script)], env=env)
            procs.append(p)
            consumer.wait_events("pump7", kill_at, 20)
            p.send_signal(signal.SIGKILL)
            p.wait(5)
        p = subprocess.Popen([sys.executable, str(script)], env=env)
        procs.append(p)
        got = consumer.wait_events("pump7", total, 30)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(5)
        consumer.close()
    check_exactly_once(got, total)
    statuses = consumer.status("pump7")
    assert statuses.count("offline") >= 2, f"the last will should announce each killed gateway: {statuses}"


def test_broker_addresses_with_tls_and_credentials_and_bad_ones(monkeypatch):
    from aiot.fleet.gateway import parse_broker

    b = parse_broker("mqtt://10.0.0.5")
    assert (b.host, b.port, b.tls, b.username) == ("10.0.0.5", 1883, False, None)
    monkeypatch.setenv("AIOT_MQTT_PASSWORD", "s3cret")
    b = parse_broker("mqtts://gw%40plant:@broker.example")
    assert (b.host, b.port, b.tls, b.username, b.password) == ("broker.example", 8883, True, "gw@plant", "s3cret")
    for bad in ("http://x", "mqtt://", "mqtt://h:99999"):
        with pytest.raises(ToolkitError) as e:
            parse_broker(bad)
        assert bad in e.value.message and "mqtt://HOST" in e.value.hint


def test_a_real_device_client_has_each_batch_journaled_before_the_request_that_acknowledges_it():
    """drain_events over aiot.device.hil.Device, against a device on a socket that holds each
    batch until acknowledged (docs/protocol.md, EVENTS)."""
    import struct

    from aiot.device import protocol as P
    from aiot.device.hil import Device, SerialTransport
    from aiot.fleet.gateway import drain_events
    from test_protocol_client import FakeDevice, _event, reply

    ring, held, acks = list(range(10)), [], []

    def handler(f):
        nonlocal held
        if f.type != P.Msg.EVENTS:
            return None
        valid, ack = struct.unpack("<BH", f.payload)
        acks.append(ack if valid else None)
        if valid:
            held = [s for s in held if s > ack]
        while len(held) < 4 and ring:
            held.append(ring.pop(0))
        return reply(f, struct.pack("<BBHI", len(held), len(ring), 0, 0) + b"".join(_event(s) for s in held))

    fd = FakeDevice(handler)
    dev = Device(SerialTransport(fd.url), timeout=0.5)
    seen = []

    def journal(batch):
        seen.append(([e.seq for e in batch], list(acks)))  # the acks the device had when the batch came

    try:
        assert drain_events(dev, journal) == 10
    finally:
        dev.close()
        fd.close()
    assert [b for b, _ in seen] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    for batch, acks_then in seen:  # no batch acknowledged before the journal had it
        assert all(a is None or a < batch[0] for a in acks_then)
    assert acks[-1] == 9  # and after the journal, each one was


def test_a_gateway_of_many_devices_stops_in_about_one_round_not_one_per_device(tmp_path, broker):
    """Each bridge finishes the round it is in before it stops (here a replay that takes
    0.4 s a chunk, as a paced pump does). The gateway tells every bridge to stop first and
    then waits for them, so 12 devices stop in about one round; one after the other took
    up to a round each (the 53-device rollout test spent 6 s in two gateways' stop)."""
    from aiot.fleet.gateway import Gateway

    class PacedSource(FakeLink):
        def push(self, ts, values):
            return []

    def paced():
        while True:
            time.sleep(0.4)
            yield [], []

    hws = [FakeHardware(total=0) for _ in range(12)]
    gw = Gateway(tmp_path / "journal.db", broker.url, site=SITE, gateway_id="gw1")
    bridges = [gw.add(f"pump{i}", lambda hw=hw: PacedSource(hw), poll=0.01, stats_every=0, replay=paced())
               for i, hw in enumerate(hws)]
    gw.start()
    try:
        assert until(lambda: all(hw.uptime >= 2 for hw in hws)), "every bridge serves its device"
        t0 = time.monotonic()
        gw.stop(drain=0)
        took = time.monotonic() - t0
    finally:
        for b in bridges:
            b.stop(0)
    assert not any(b._thread.is_alive() for b in bridges)
    assert took < 1.5, f"12 bridges in rounds of 0.4 s took {took:.2f} s to stop"
