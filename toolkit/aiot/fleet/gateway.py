"""`aiot gateway`: bridge devices to an MQTT 5.0 broker, store-and-forward.

Per device, two threads:

* the *bridge* reads the device (events, periodic STATS; optionally replays a recording
  into it) and journals every message (:mod:`aiot.fleet.journal`, fsync'd) *before* the
  device is allowed to forget it: the EVENTS request that acknowledges a batch is only
  sent once the batch's transaction committed. A device link that drops is reopened;
  events the device sends again are recognised (seq, timestamp, type) and dropped.
* the *publisher* owns one MQTT connection whose last will sets the device's retained
  status to offline, and sends the journal in order, QoS 1, a bounded number in flight.
  A message counts as published on a PUBACK that accepts it; after a lost connection
  everything not yet PUBACKed is sent again from the journal (a fresh session each time, so
  nothing is also re-sent by the client library behind our back): at-least-once, in order,
  with a message id (``<journal epoch>-<device>-<n>``) consumers de-duplicate on. A PUBACK
  that refuses a message (MQTT 5 reason code 0x80 or more: not authorized, quota
  exceeded...) does not count: the publisher holds the device's queue there and sends the
  refused message again, every 0.2 s doubling to ``backoff_max``, until it is accepted.

Topics: ``aiot/<site>/<device-id>/<kind>``; kinds: status and info (retained), alert,
state, drift, calibration, data, stats, update. Every payload is one JSON object (docs/fleet.md).
With ``commands=True`` the gateway also takes model updates from ``.../cmd``
(:mod:`aiot.fleet.commands`) and applies them between event drains.
"""

from __future__ import annotations

import collections
import json
import socket
import threading
import time
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import urlsplit

from aiot.errors import ToolkitError
from aiot.fleet.journal import Journal
from aiot.fleet.topics import now_iso, topic, topic_level  # noqa: F401 -- topic_level: part of this module's API

#: Monitor event type -> message kind (the topic's last level).
EVENT_KINDS = {
    "ALERT_RAISED": "alert", "ALERT_CLEARED": "alert", "SEVERITY_CHANGED": "alert", "RECOVERING": "alert",
    "ALERT_HELD": "alert",
    "DRIFT_DETECTED": "drift", "RECAL_STARTED": "drift", "RECAL_DONE": "drift", "RECAL_REJECTED": "drift",
    "BASELINE_LIMIT": "drift", "RECAL_GAIN": "drift", "CALIBRATION_ALERT": "drift", "DRIFT_PERSISTENT": "drift",
    "COMMISSIONED": "calibration", "CALIBRATED": "calibration", "BASELINE_RESET": "calibration",
    "COMMISSION_REJECTED": "calibration", "CHANNEL_STUCK": "calibration",
    "DATA_LOST": "data", "DATA_RESTORED": "data", "CHANNEL_LOST": "data", "CHANNEL_BACK": "data",
    "TIME_RESET": "data",
}
SEVERITIES = ("none", "minor", "major", "critical")  # monitor.h: aiot_monitor_output_t.severity


@dataclass(frozen=True)
class Broker:
    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None

    def __iter__(self):  # (host, port), for connect(*broker)
        return iter((self.host, self.port))

    def __getitem__(self, i: int):
        return (self.host, self.port)[i]


def parse_broker(url: str) -> Broker:
    """``mqtt://[USER[:PASSWORD]@]HOST[:PORT]`` (port 1883) or ``mqtts://...`` (TLS with the
    system's CAs, port 8883). The password may also come from AIOT_MQTT_PASSWORD, so it
    need not be on the command line."""
    import os
    from urllib.parse import unquote

    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    tls = parts.scheme == "mqtts"
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError:
        port = -1
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname or not 1 <= port <= 65535:
        raise ToolkitError(f"{url}: not an MQTT broker address",
                           hint="give --mqtt mqtt://HOST[:PORT] (or mqtts://USER@HOST for TLS), "
                                "e.g. mqtt://127.0.0.1:1883")
    password = unquote(parts.password) if parts.password else os.environ.get("AIOT_MQTT_PASSWORD")
    return Broker(parts.hostname, port, tls, unquote(parts.username) if parts.username else None,
                  password if parts.username else None)


# --- what the bridge turns into messages ----------------------------------------------------


def event_origin(ev, boot: int = 0) -> str:
    """The device's own identity of an event (in its ``boot``-th run): what it sends again
    when an acknowledgement was lost."""
    return f"{boot}:{ev.seq}:{ev.timestamp_ms}:{ev.type}"


def event_messages(ev, sensors: list[str], last_state: str | None,
                   confidence: float | None = None, boot: int = 0) -> list[tuple[str, dict, str]]:
    """One monitor event as journal items ``(kind, payload, origin)``: its own message, and a
    ``state`` message first when the device's state changed with it."""
    def sensor(c: int) -> str:
        return sensors[c] if c < len(sensors) else f"ch{c}"

    origin = event_origin(ev, boot)
    body = {"event": ev.type, "seq": ev.seq, "boot": boot, "timestamp_ms": ev.timestamp_ms, "state": ev.state,
            "severity": ev.severity, "severity_name": SEVERITIES[ev.severity] if ev.severity < 4 else None,
            "value": ev.value, "sensors": [sensor(c) for c in ev.channels],
            "top_sensor": None if ev.channel is None else sensor(ev.channel), "confidence": confidence,
            "gateway_time": now_iso()}
    out = []
    if ev.state != last_state:
        out.append(("state", {"state": ev.state, "previous": last_state, "event": ev.type, "seq": ev.seq,
                              "timestamp_ms": ev.timestamp_ms, "gateway_time": body["gateway_time"]},
                    origin + ":state"))
    out.append((EVENT_KINDS.get(ev.type, "event"), body, origin))
    return out


def drain_events(source, on_batch: Callable[[list], None]) -> int:
    """Every event ``source`` holds, handed to ``on_batch`` batch by batch *before* the
    device may drop it. aiot.device.hil.Device yields one batch per EVENTS answer and sends
    the request that acknowledges it only when asked for the next batch, so each batch is
    journaled first; if ``on_batch`` raises, the batch stays on the device. A source without
    batches (the host-built SimulatedDevice, in this process) hands its events over in one go."""
    batches = getattr(source, "event_batches", None)
    if batches is None:
        batch = list(source.events())
        if batch:
            on_batch(batch)
        return len(batch)
    count = 0
    for batch in batches():
        if batch:
            on_batch(batch)
            count += len(batch)
    return count


def _jsonable(obj):
    if is_dataclass(obj):
        return {k: _jsonable(v) for k, v in asdict(obj).items()}
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    return obj


def device_opener(kind: str, where: str, elf: Path | None = None, baud: int | None = None,
                  workdir: Path | None = None) -> Callable[[], object]:
    """A function that opens (again, after a drop) a device: ``kind`` serial (``where`` is
    the port) or qemu (``where`` is the board, booting ``elf`` in ``workdir``, where the
    emulated board keeps its update region: one folder per device), after the INFO handshake."""
    def open_source():
        from aiot.device.hil import Device, make_transport

        if workdir is not None:
            Path(workdir).mkdir(parents=True, exist_ok=True)
        t = make_transport(kind, board=where if kind == "qemu" else None, elf=elf,
                           port=where if kind == "serial" else None, baud=baud, cwd=workdir)
        dev = Device(t)
        try:
            dev.info()  # a device that does not answer is retried by the bridge
        except BaseException:
            dev.close()
            raise
        return dev
    return open_source


def replay_chunks(path: Path, chunk: int = 32, csv_options: dict | None = None) -> Iterator[tuple]:
    """A recording's samples as (timestamps ms from its start, values) chunks to PUSH.
    ``csv_options``: how to read it (:func:`aiot.data.load_csv` keywords; a label column is
    never sent as a sensor). Default: as before, labels ignored."""
    import numpy as np

    from aiot.data import load_csv

    s = load_csv(path, **{"label_column": None, **(csv_options or {})})
    ts = np.round((s.timestamps - s.timestamps[0]) * 1000.0).astype(np.int64)
    vals = np.where(s.valid, s.values, np.nan)
    for i in range(0, s.rows, chunk):
        yield ts[i : i + chunk], vals[i : i + chunk]


# --- publisher ----------------------------------------------------------------------------------


class Publisher:
    """One device's MQTT connection: retained status/info, and the journal in order."""

    def __init__(self, journal: Journal, device: str, site: str, broker: Broker, gateway_id: str,
                 window: int = 64, backoff_max: float = 2.0):
        self.journal, self.device, self.site = journal, device, site
        self.broker, self.gateway_id = broker, gateway_id
        self.window = window
        self.backoff_max = backoff_max
        self.retained: dict[str, dict] = {}  # kind -> payload, sent again on every connection
        self.connected = threading.Event()
        self.connections = 0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._acks: collections.deque = collections.deque()
        self._thread = threading.Thread(target=self._run, name=f"publish-{device}", daemon=True)
        self.last_error: str | None = None
        self.refusals = 0  # PUBACKs that refused a journal message (each one is sent again)
        self.last_refusal: str | None = None
        self.prune_every = 30.0  # seconds between prunes of published messages
        self._next_prune = time.monotonic() + self.prune_every

    def start(self) -> "Publisher":
        self._thread.start()
        return self

    def wake(self) -> None:
        self._wake.set()

    def set_retained(self, kind: str, payload: dict) -> None:
        self.retained[kind] = payload
        self.wake()

    def stop(self, timeout: float = 5.0, *, wait: bool = True) -> None:
        """Stop publishing (``wait``: and wait for it, at most ``timeout`` s)."""
        self._stop.set()
        self._wake.set()
        if wait:
            self._thread.join(timeout)

    def _status(self, online: bool, reason: str) -> bytes:
        return json.dumps({"status": "online" if online else "offline", "device": self.device,
                           "gateway": self.gateway_id, "reason": reason, "time": now_iso()}).encode()

    def _client(self):
        import paho.mqtt.client as mqtt

        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"aiot-{self.gateway_id}-{self.device}",
                        protocol=mqtt.MQTTv5, reconnect_on_failure=False)
        c.will_set(topic(self.site, self.device, "status"), self._status(False, "gateway connection lost"),
                   qos=1, retain=True)
        if getattr(self.broker, "username", None):
            c.username_pw_set(self.broker.username, self.broker.password)
        if getattr(self.broker, "tls", False):
            c.tls_set()  # the system's CA certificates
        c.max_inflight_messages_set(self.window)
        c.max_queued_messages_set(0)

        def on_connect(_c, _u, _flags, reason_code, _props):
            if not reason_code.is_failure:
                self.connected.set()
            else:
                self.last_error = f"broker refused the connection: {reason_code}"
            self._wake.set()

        def on_disconnect(_c, _u, _flags, reason_code, _props):
            self.connected.clear()
            self.last_error = f"disconnected: {reason_code}"
            self._wake.set()

        def on_publish(_c, _u, mid, reason_code, _props):
            self._acks.append((mid, reason_code))  # only recorded here: the publishing thread does the rest
            self._wake.set()

        c.on_connect, c.on_disconnect, c.on_publish = on_connect, on_disconnect, on_publish
        return c

    def _run(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            client = self._client()
            try:
                client.connect(*self.broker, keepalive=10, clean_start=True)
            except (OSError, socket.timeout) as e:
                self.last_error = f"cannot reach {self.broker[0]}:{self.broker[1]}: {e}"
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.backoff_max)
                continue
            client.loop_start()
            try:
                if self.connected.wait(5.0):
                    self.connections += 1
                    backoff = 0.1
                    self._session(client)
            finally:
                if self._stop.is_set() and self.connected.is_set():
                    client.publish(topic(self.site, self.device, "status"),
                                   self._status(False, "gateway stopped"), qos=1, retain=True).wait_for_publish(2.0)
                    client.disconnect()
                client.loop_stop()
                self.connected.clear()
                self._acks.clear()
            if not self._stop.is_set():
                self._stop.wait(backoff)

    def _session(self, client) -> None:
        """Send until the connection drops: retained status and info, then the journal."""
        sent_retained: dict[str, dict] = {}
        client.publish(topic(self.site, self.device, "status"), self._status(True, "connected"), qos=1, retain=True)
        # [mid, Message, accepted] in send order; by_mid: the ones awaiting a PUBACK, by their
        # current mid (a refused message goes again under a new one)
        inflight: collections.deque = collections.deque()
        by_mid: dict[int, list] = {}
        refused: list[list] = []  # entries the broker refused, to send again at retry_at
        held: set[int] = set()  # numbers refused and not accepted since: nothing new goes out meanwhile
        retry_wait, retry_at = 0.1, 0.0
        cursor = None  # the last message number handed to the client
        while self.connected.is_set() and not self._stop.is_set():
            self._wake.clear()  # before looking: a wake-up from now on is not lost
            for kind, payload in list(self.retained.items()):
                if sent_retained.get(kind) is not payload:
                    client.publish(topic(self.site, self.device, kind), json.dumps(payload), qos=1, retain=True)
                    sent_retained[kind] = payload
            while self._acks:  # drained after the publishes that made them: every journal mid is in by_mid
                mid, reason = self._acks.popleft()
                entry = by_mid.pop(mid, None)
                if entry is None:  # a retained message's: its mid may come again after 65535 more
                    continue
                if reason.is_failure:  # the broker did not take it: it is not published
                    m = entry[1]
                    self.refusals += 1
                    self.last_error = self.last_refusal = (
                        f"the broker refused message {m.n} ({topic(self.site, self.device, m.kind)}): "
                        f"{reason}; it stays in the journal and is sent again")
                    if not held:
                        retry_wait = min(retry_wait * 2, self.backoff_max)
                        retry_at = time.monotonic() + retry_wait
                    refused.append(entry)
                    held.add(m.n)
                else:
                    entry[2] = True
                    held.discard(entry[1].n)
            if not held:
                retry_wait = 0.1
            done = None
            while inflight and inflight[0][2]:
                done = inflight.popleft()[1].n
            if done is not None:
                self.journal.mark_published(self.device, done)
                if time.monotonic() >= self._next_prune:  # the journal keeps only what may still matter
                    self.journal.prune()
                    self._next_prune = time.monotonic() + self.prune_every
            if refused and time.monotonic() >= retry_at:  # in their order, in their place in `inflight`
                for entry in sorted(refused, key=lambda e: e[1].n):
                    m = entry[1]
                    info = client.publish(topic(self.site, self.device, m.kind), json.dumps(m.payload), qos=1)
                    if info.rc != 0:
                        return
                    entry[0] = info.mid
                    by_mid[info.mid] = entry
                refused.clear()
            room = self.window - len(inflight)
            if room > 0 and not held:
                for m in self.journal.unpublished(self.device, after=cursor, limit=room):
                    info = client.publish(topic(self.site, self.device, m.kind), json.dumps(m.payload), qos=1)
                    if info.rc != 0:  # the connection went away under us: start over from the journal
                        return
                    entry = [info.mid, m, False]
                    inflight.append(entry)
                    by_mid[info.mid] = entry
                    cursor = m.n
            self._wake.wait(min(0.5, max(0.0, retry_at - time.monotonic())) if refused else 0.5)


# --- bridge ---------------------------------------------------------------------------------------


class DeviceBridge:
    """Read one device into the journal; reopen its link when it drops."""

    def __init__(self, device: str, open_source: Callable[[], object], journal: Journal, publisher: Publisher,
                 sensors: list[str] | None = None, stats_every: float = 10.0, poll: float = 0.2,
                 replay: Iterator[tuple] | None = None, reopen_after: float = 1.0, uptime_every: float = 5.0):
        self.device, self.open_source, self.journal, self.publisher = device, open_source, journal, publisher
        self.sensors = list(sensors or [])
        self.stats_every, self.poll, self.reopen_after = stats_every, poll, reopen_after
        # how often the device's uptime is read (a STATS request) to tell a restart from a re-send
        self.uptime_every = uptime_every
        self.replay = replay
        self.journaled = 0
        self.link_drops = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._confidence: collections.OrderedDict = collections.OrderedDict()  # window end ms -> confidence
        last = journal.last(device, "state")
        self._state = last["state"] if last else None
        self._thread = threading.Thread(target=self._run, name=f"bridge-{device}", daemon=True)
        self.replay_done = replay is None
        self._boot = 0
        self.source = None
        self.commands = False  # run model-update commands (the Gateway's CommandListener feeds them)
        self._wake = threading.Event()  # a command arrived: do not wait for the next poll

    def start(self) -> "DeviceBridge":
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0, *, wait: bool = True) -> None:
        """Stop after the current round (``wait``: and wait for it, at most ``timeout`` s)."""
        self._stop.set()
        self._wake.set()
        if wait:
            self._thread.join(timeout)

    def wake(self) -> None:
        self._wake.set()

    def journal_batch(self, batch: list) -> None:
        """Journal one batch of device events (fsync'd) -- called before the device's ack."""
        items = []
        for ev in batch:
            # the device's own (the confidence of the window that emitted the event); from firmware
            # whose events do not carry it, the window output's when this gateway PUSHes the samples
            confidence = getattr(ev, "confidence", None)
            if confidence is None and EVENT_KINDS.get(ev.type) == "alert":
                confidence = self._confidence.get(ev.timestamp_ms)
            items += event_messages(ev, self.sensors, self._state, confidence, self._boot)
            self._state = ev.state
        self.journaled += len(self.journal.append(self.device, items))
        self.publisher.wake()

    def _remember_confidence(self, outputs) -> None:
        for o in outputs:
            self._confidence[int(o["t_end_ms"])] = float(o["confidence"])
        while len(self._confidence) > 4096:
            self._confidence.popitem(last=False)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                source = self.open_source()
            except ToolkitError as e:
                self._link_down(f"cannot open the device: {e.message}")
                continue
            self.source = source  # the open device, for diagnostics
            try:
                self._serve(source)
            except ToolkitError as e:
                self.link_drops += 1
                self._link_down(f"device link lost: {e.message}")
            finally:
                close = getattr(source, "close", None)
                if close is not None:
                    try:
                        close()
                    except Exception:  # noqa: BLE001 -- a dead link may fail to close; it is gone either way
                        pass

    def _link_down(self, why: str) -> None:
        self.last_error = why
        self.publisher.set_retained("link", {"device": self.device, "link": "down", "reason": why,
                                                      "time": now_iso()})
        self._stop.wait(self.reopen_after)

    def _check_boot(self, stats: dict) -> None:
        uptime = (stats.get("link") or {}).get("uptime_ticks")
        if uptime is not None:
            self._boot = self.journal.boot(self.device, int(uptime))

    def _rebooted(self) -> None:
        """This gateway rebooted the device (into a trial): its events from now on are a new boot's."""
        self._boot = self.journal.restarted(self.device)

    def _serve(self, source) -> None:
        info = getattr(source, "info", None)
        if info is not None:
            self.publisher.set_retained("info", {"device": self.device, "sensors": self.sensors,
                                                 **_jsonable(info()), "time": now_iso()})
        stats = getattr(source, "stats", None)
        if stats is not None:  # a device that restarted since it was last seen starts a new boot
            self._check_boot(stats())
        self.publisher.set_retained("link", {"device": self.device, "link": "up", "boot": self._boot,
                                             "time": now_iso()})
        next_stats = next_uptime = time.monotonic()
        while not self._stop.is_set():
            if self.replay is not None and not self.replay_done:
                try:
                    ts, values = next(self.replay)
                    self._remember_confidence(source.push(ts, values))
                except StopIteration:
                    self.replay_done = True
            drain_events(source, self.journal_batch)
            now = time.monotonic()
            if stats is not None and ((self.stats_every and now >= next_stats) or now >= next_uptime):
                st = stats()
                self._check_boot(st)  # a reset (watchdog) while the link stayed up: its uptime went down
                next_uptime = now + self.uptime_every
                if self.stats_every and now >= next_stats:
                    next_stats = now + self.stats_every
                    self.journal.append(self.device, [("stats", {"stats": _jsonable(st), "boot": self._boot,
                                                                 "gateway_time": now_iso()}, None)])
                    self.publisher.wake()
            if self.commands:  # between drains, with every event the device held journaled
                from aiot.fleet.commands import run_commands

                run_commands(self.journal, self.device, source, lambda: drain_events(source, self.journal_batch),
                             self.publisher.wake, rebooted=self._rebooted)
            if self.replay_done or self.replay is None:
                self._wake.wait(self.poll)
                self._wake.clear()


class Gateway:
    """Bridges for several devices, one journal, one broker."""

    def __init__(self, journal: Path | str, broker: str | Broker, site: str = "default",
                 gateway_id: str | None = None, window: int = 64, commands: bool = False):
        self.site = topic_level(site, "site")
        self.broker = parse_broker(broker) if isinstance(broker, str) else broker
        self.gateway_id = topic_level(gateway_id or socket.gethostname().split(".")[0] or "gateway", "gateway id")
        self.journal = Journal(journal)
        self.window = window
        self.bridges: list[DeviceBridge] = []
        self.commands = commands  # take model updates from aiot/<site>/<device>/cmd (aiot.fleet.commands)
        self.listener = None

    def add(self, device: str, open_source: Callable[[], object], **bridge_kw) -> DeviceBridge:
        topic_level(device, "device id")
        pub = Publisher(self.journal, device, self.site, self.broker, self.gateway_id, self.window)
        bridge = DeviceBridge(device, open_source, self.journal, pub, **bridge_kw)
        bridge.commands = self.commands
        self.bridges.append(bridge)
        return bridge

    def start(self) -> "Gateway":
        for b in self.bridges:
            b.publisher.start()
            b.start()
        if self.commands:
            from aiot.fleet.commands import CommandListener

            self.listener = CommandListener(self.journal, self.site, {b.device: b.wake for b in self.bridges},
                                            self.broker, self.gateway_id).start()
        return self

    def stop(self, drain: float = 0.0) -> int:
        """Stop reading devices, then give the publishers up to ``drain`` seconds to empty
        the journal; returns how many messages are left (the next run sends them)."""
        if self.listener is not None:
            self.listener.stop()
        # every bridge (then every publisher) is told first and waited for after: each ends
        # the round it is in, so N devices stop in about one round, not N of them
        for b in self.bridges:
            b.stop(wait=False)
        for b in self.bridges:
            b.stop()
        deadline = time.monotonic() + drain
        while drain and self.journal.backlog() and time.monotonic() < deadline:
            time.sleep(0.05)
        for b in self.bridges:
            b.publisher.stop(wait=False)
        for b in self.bridges:
            b.publisher.stop()
        left = self.journal.backlog()
        self.journal.close()
        return left
