"""Issue 22, item 1: no monitor event is lost when the link drops, the client times out or the
host process is killed part-way through a drain. The device deletes events once they are
acknowledged, so every event must reach the caller (or the journal) before its batch is
acknowledged. The fake device here keeps its event ring across connections, like a board
that stays powered while the host program is restarted."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from aiot import monitor as M
from aiot.device import protocol as P
from aiot.device.hil import Device, DeviceTimeout, SerialTransport

BATCH = 4


def _event(seq: int) -> bytes:
    rec = np.zeros(1, M.EVENT_DTYPE)
    rec["seq"], rec["type"], rec["timestamp_ms"], rec["channel"] = seq, 13, 1000 * seq, M.NO_CHANNEL
    return rec.tobytes()


class RingDevice:
    """A device with the documented EVENTS semantics (hold a batch until acknowledged by seq),
    serving one connection after another on the same port with the same ring. ``on_request(n)``
    is called with the count of EVENTS requests so far and may return "silent" (no answer)."""

    UP_BEFORE_S = 600.0  # how long it has been running when the test starts

    def __init__(self, n_events: int, on_request=None):
        self.booted = time.monotonic() - self.UP_BEFORE_S
        self.ring = list(range(n_events))
        self.held: list[int] = []
        self.requests: list[bytes] = []
        self.on_request = on_request or (lambda n: None)
        self.lock = threading.Lock()
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", 0))
        self.srv.listen(4)
        self.url = f"socket://127.0.0.1:{self.srv.getsockname()[1]}"
        self.stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def reboot(self, n_events: int) -> None:
        """Start again: uptime from 0, a fresh ring (seq from 0 again)."""
        with self.lock:
            self.booted = time.monotonic()
            self.ring, self.held = list(range(n_events)), []

    def _identity(self, f) -> bytes | None:
        """INFO and STATS answers (the device's identity and uptime, for a journal)."""
        from test_protocol_client import INFO

        if f.type == P.Msg.INFO:
            return P.encode_frame(f.type | P.RESPONSE, f.seq, P.pack_info(INFO))
        if f.type == P.Msg.STATS:
            import ctypes

            ticks = int((time.monotonic() - self.booted) * INFO.tick_hz)
            body = bytes([0, 0, ctypes.sizeof(M.Stats), ctypes.sizeof(M.ChannelInfo)]) + bytes(ctypes.sizeof(M.Stats))
            return P.encode_frame(f.type | P.RESPONSE, f.seq, body + struct.pack("<8IQ", *[0] * 8, ticks))
        return None

    def remaining(self) -> list[int]:
        return self.held + self.ring

    def _serve(self):
        self.srv.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = self.srv.accept()
            except OSError:
                continue
            self._session(conn)

    def _session(self, conn):
        conn.settimeout(0.05)
        dec = P.StreamDecoder()
        with conn:
            while not self.stop.is_set():
                try:
                    data = conn.recv(4096)
                except socket.timeout:
                    continue
                except OSError:
                    return
                if not data:
                    return
                for f in dec.feed(data):
                    if isinstance(f, P.Frame) and (answer := self._identity(f)) is not None:
                        try:
                            conn.sendall(answer)
                        except OSError:
                            return
                        continue
                    if not isinstance(f, P.Frame) or f.type != P.Msg.EVENTS:
                        continue
                    with self.lock:
                        self.requests.append(f.payload)
                        if self.on_request(len(self.requests)) == "silent":
                            continue
                        valid, ack = struct.unpack("<BH", f.payload)
                        if valid:
                            self.held = [s for s in self.held if s > ack]
                        while len(self.held) < BATCH and self.ring:
                            self.held.append(self.ring.pop(0))
                        body = struct.pack("<BBHI", len(self.held), len(self.ring), 0, 0)
                        body += b"".join(_event(s) for s in self.held)
                    try:
                        conn.sendall(P.encode_frame(f.type | P.RESPONSE, f.seq, body))
                    except OSError:
                        return

    def close(self):
        self.stop.set()
        self.srv.close()


@pytest.fixture
def ring_device():
    made = []

    def make(n, on_request=None):
        d = RingDevice(n, on_request)
        made.append(d)
        return d

    yield make
    for d in made:
        d.close()


def test_events_already_received_survive_a_timeout_mid_drain(ring_device):
    """The third EVENTS request gets no answer: the client used to raise and drop the 8 events
    it held, 4 of which the device had already deleted (acknowledged)."""
    silent = {"on": True}
    dev_side = ring_device(12, lambda n: "silent" if n >= 3 and silent["on"] else None)
    with Device(SerialTransport(dev_side.url), timeout=0.2, retries=1) as dev:
        with pytest.raises(DeviceTimeout):
            dev.events()
        silent["on"] = False  # the link comes back
        got = [e.seq for e in dev.events()]
    assert got == list(range(12))  # every event, in order, once


def test_iter_events_hands_a_batch_over_before_acknowledging_it(ring_device):
    dev_side = ring_device(12)
    with Device(SerialTransport(dev_side.url), timeout=0.5) as dev:
        it = dev.iter_events()
        first = [next(it) for _ in range(BATCH)]
        it.close()  # the caller stops (Ctrl-C, a crash) after seeing one batch
    assert [e.seq for e in first] == [0, 1, 2, 3]
    assert dev_side.requests == [b"\x00\x00\x00"]  # nothing acknowledged: the device still holds 0..3
    assert dev_side.remaining() == list(range(12))


_CLIENT = """
import sys
from aiot.device.hil import Device, SerialTransport
with Device(SerialTransport(sys.argv[1]), timeout=2.0) as dev:
    dev.events(journal=sys.argv[2])
"""


@pytest.mark.parametrize("kill_at", [1, 2, 3, 4, 5])
def test_a_client_killed_mid_drain_loses_no_event_with_a_journal(ring_device, tmp_path, kill_at):
    """SIGKILL the draining process when the device receives its ``kill_at``-th EVENTS request
    (the journal has then got the batches before it); a new client with the same journal then
    drains the rest. The journal holds every event once, in order."""
    journal = tmp_path / "events.jsonl"
    proc: list[subprocess.Popen] = []

    def on_request(n):
        if n == kill_at and proc:
            proc[0].send_signal(signal.SIGKILL)
            proc[0].wait()
            return "silent"
        return None

    dev_side = ring_device(18, on_request)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc.append(subprocess.Popen([sys.executable, "-c", _CLIENT, dev_side.url, str(journal)], env=env))
    assert proc[0].wait(timeout=60) == -signal.SIGKILL
    with Device(SerialTransport(dev_side.url), timeout=1.0) as dev:
        dev.events(journal=journal)
    seqs = [json.loads(line)["seq"] for line in journal.read_text().splitlines()]
    assert seqs == list(range(18))
    assert dev_side.remaining() == []


def test_aiot_monitor_shows_each_event_before_its_batch_is_acknowledged(ring_device):
    from aiot.commands.monitor import _poll

    dev_side = ring_device(6)
    shown: list[str] = []
    requests_when_shown: list[int] = []

    class Dev:  # the real client, with a STATS answer the fake does not serve
        def __init__(self, inner):
            self.inner = inner

        def stats(self):
            return {"configured": True, "monitor": {"phase": "RUNNING", "state": "NORMAL"}}

        def iter_events(self, **kw):
            return self.inner.iter_events(**kw)

        def events(self, **kw):
            return self.inner.events(**kw)

    def echo(line):
        shown.append(line)
        requests_when_shown.append(len(dev_side.requests))

    with Device(SerialTransport(dev_side.url), timeout=0.5) as dev:
        calls = iter([False, True])
        _poll(Dev(dev), lambda: next(calls), 0.0, None, time.monotonic(), echo)
    event_lines = [i for i, s in enumerate(shown) if "#" in s]
    assert len(event_lines) == 6
    # events 0-3 came in answer to request 1 and were shown before request 2 acknowledged them
    assert [requests_when_shown[i] for i in event_lines] == [1, 1, 1, 1, 2, 2]


def test_the_journal_writes_a_repeated_batch_once_and_new_events_always(tmp_path):
    from aiot.device.hil import EventJournal

    def ev(seq, t):
        return M.Event(timestamp_ms=t, seq=seq, type="ALERT_RAISED", channel=0, channels=(0,), severity=1,
                       state="ANOMALY", value=1.0)

    path = tmp_path / "j.jsonl"
    j = EventJournal(path)
    assert j.append([ev(0, 10), ev(1, 20)]) == [ev(0, 10), ev(1, 20)]
    assert j.append([ev(2, 30), ev(3, 40)]) == [ev(2, 30), ev(3, 40)]
    with path.open("a") as f:
        f.write('{"seq": 4, "timest')  # a kill in the middle of a line
    # a new process: the device sends its unacknowledged batch (2, 3) again, with 4 and 5 behind it
    again = EventJournal(path)
    assert again.append([ev(2, 30), ev(3, 40), ev(4, 50), ev(5, 60)]) == [ev(4, 50), ev(5, 60)]
    # later batches are never filtered, even if an event looks like an old one
    assert again.append([ev(0, 10)]) == [ev(0, 10)]
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line)["seq"])
        except ValueError:
            rows.append("cut")
    assert rows == [0, 1, 2, 3, "cut", 4, 5, 0]


def test_event_batches_is_public_and_hands_over_each_batch_before_its_ack(ring_device):
    """The gateway drains a Device batch by batch through the public ``event_batches``; the
    private name stays as an alias for code written against it."""
    dev_side = ring_device(6)
    with Device(SerialTransport(dev_side.url), timeout=0.5) as dev:
        assert Device._event_batches is Device.event_batches
        it = dev.event_batches()
        assert [e.seq for e in next(it)] == [0, 1, 2, 3]
        assert dev_side.requests == [b"\x00\x00\x00"]  # not acknowledged while the caller holds it
        assert [[e.seq for e in b] for b in it] == [[4, 5]]
    assert dev_side.remaining() == []


def _ev(seq, t):
    return M.Event(timestamp_ms=t, seq=seq, type="ALERT_RAISED", channel=0, channels=(0,), severity=1,
                   state="ANOMALY", value=1.0)


PUMP7 = {"board": "nucleo-f446re", "model": "pump7 0badf00d", "firmware": "0.1.0"}


@pytest.mark.parametrize("later, repeat_dropped", [
    ({**PUMP7, "boot": 1000.0, "uptime_s": 600.0}, True),     # the same boot: the unacknowledged batch again
    ({**PUMP7, "boot": 1000.8, "uptime_s": 600.0}, True),     # the same boot, read through a slow link
    ({**PUMP7, "boot": 1590.0, "uptime_s": 10.0}, False),     # the device rebooted: its own new events
    ({**PUMP7, "model": "pump8 12345678", "boot": 1000.0, "uptime_s": 600.0}, False),  # another model
    ({**PUMP7, "board": "nucleo-f767zi", "boot": 1000.0, "uptime_s": 600.0}, False),   # another board
])
def test_the_journal_drops_a_repeat_only_from_the_same_boot_of_the_same_device(tmp_path, later, repeat_dropped):
    """Issue 22: a fresh installation (another device, or the same one after a reboot) whose
    first events equal the journal's last lines exactly used to be taken for the repeat of an
    unacknowledged batch, and lost. The journal now keys each line by the device's identity
    (INFO's board, model and firmware) and boot (the host's clock minus STATS' uptime)."""
    from aiot.device.hil import EventJournal

    path = tmp_path / "j.jsonl"
    EventJournal(path, device={**PUMP7, "boot": 1000.0, "uptime_s": 60.0}).append([_ev(0, 10), _ev(1, 20)])
    written = EventJournal(path, device=later).append([_ev(0, 10), _ev(1, 20), _ev(2, 30)])
    assert [e.seq for e in written] == ([2] if repeat_dropped else [0, 1, 2])
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [d["seq"] for d in lines] == ([0, 1, 2] if repeat_dropped else [0, 1, 0, 1, 2])
    assert lines[-1]["device"]["board"] == later["board"] and lines[-1]["device"]["model"] == later["model"]


def test_a_device_drain_keys_its_journal_by_the_device_and_its_boot(ring_device, tmp_path):
    """Through Device: the journal's lines name the board, model and boot INFO and STATS gave;
    after a reboot (uptime back near 0) the same first events are written again, not dropped."""
    journal = tmp_path / "events.jsonl"
    dev_side = ring_device(2)
    with Device(SerialTransport(dev_side.url), timeout=0.5) as dev:
        dev.events(journal=journal)
    dev_side.reboot(2)  # a fresh start: the same first events (seq 0, 1, same timestamps)
    with Device(SerialTransport(dev_side.url), timeout=0.5) as dev:
        dev.events(journal=journal)
    lines = [json.loads(line) for line in journal.read_text().splitlines()]
    assert [d["seq"] for d in lines] == [0, 1, 0, 1]
    assert {d["device"]["board"] for d in lines} == {"fake-board"}
    assert lines[0]["device"]["boot"] < lines[2]["device"]["boot"]
