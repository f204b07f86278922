"""`aiot rollout`: a model release to a group of devices through their gateways, canary first.

    r = Rollout.start(broker, site="plant-3", release="pump-ae-1.1.0", image=signed_bytes,
                      devices=["pump01", ..., "pump53"], canary=0.05, state=Path("build/rollout/R.json"))
    r.run(progress=print)        # canary, wait for every canary's trial, then the rest

1. **Canary**: the first ``ceil(canary x N)`` devices in sorted order (at least one) get an
   ``update`` command (:mod:`aiot.fleet.commands`) on ``aiot/<site>/<device>/cmd``, QoS 1,
   retained (a gateway that is down or not yet subscribed gets it when it connects).
2. The rollout waits for every canary's final outcome on ``aiot/<site>/<device>/update``.
   Any ``reverted``, ``refused`` or ``trial timeout``, or no outcome within
   ``canary_timeout``, **halts**: the rest is never sent, and the state names the device and why.
3. **The rest**, in waves (``wave``: ``"double"``, each wave twice the one before, the
   first twice the canary; or a share of the group, ``"25%"``; or a count). Each wave waits
   up to ``timeout`` for its outcomes; a failure, or an online device not answering (unless
   it is the last wave), **halts** before the next wave. A device that is *offline* (its
   gateway reports its link down, or the gateway itself offline, and it has not started the
   update) is not waited for: it is listed as waiting, and its gateway delivers the update
   when it returns (``--status`` shows it later).
4. **A halt withdraws** the commands of devices sent to that have not ended: the retained
   command is cleared with an MQTT user property ``withdraw: <command id>``; a gateway that
   journaled it but has not started it drops it and reports ``withdrawn``, so a device that
   returns later does not install a halted release. An update already started (being sent,
   or on trial) runs to its end: its device decides its trial by itself, and a partly
   sent package would be left half-written for nothing; its outcome is reported.

The state (phase, who was sent what, every outcome) is a JSON file rewritten atomically
on each change, so an interrupted rollout can be resumed or shown. The rollout's MQTT
session is persistent, so outcomes published while it was not running are delivered when
it resumes. A command is cleared (an empty retained message) once its device answered.
With a registry, each device whose trial passed is recorded as running the release.
"""

from __future__ import annotations

import fnmatch
import json
import math
import os
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from aiot.errors import ToolkitError
from aiot.fleet.commands import FINAL, update_command
from aiot.fleet.topics import now_iso

PHASES = ("canary", "rest", "done", "halted")
#: Seconds a rollout halted by a timeout waits for its gateways to report the withdrawals.
WITHDRAW_WAIT = 10.0


def canary_count(spec: str | float | int, total: int, option: str = "--canary") -> int:
    """How many canaries: ``"5%"`` or a fraction (ceil of that share) or ``"3"`` (a count);
    at least one, at most ``total``."""
    text = str(spec).strip()
    try:
        if text.endswith("%"):
            n = math.ceil(float(text[:-1]) / 100.0 * total)
        elif isinstance(spec, float) or "." in text:
            n = math.ceil(float(text) * total)
        else:
            n = int(text)
    except ValueError:
        raise ToolkitError(f"{option} {spec!r} is neither a share nor a count",
                           hint=f"give a share ({option} 5%) or a number of devices ({option} 3)"
                                + (" or 'double'" if option == "--wave" else "")) from None
    if n < 0 or (text.endswith("%") and not 0 <= float(text[:-1]) <= 100):
        raise ToolkitError(f"{option} {spec!r} is out of range", hint="a share 0-100% or a count >= 1")
    return max(1, min(total, n))


def waves(spec: str | float | int, canary: int, rest: list[str]) -> list[list[str]]:
    """The devices after the canary, in waves: ``"double"`` (each wave twice the one before,
    the first twice the canary), a share of the whole group (``"25%"``) or a count (``"10"``)."""
    total = canary + len(rest)
    out, i, size = [], 0, canary
    while i < len(rest):
        if str(spec).strip().lower() == "double":
            size *= 2
        else:
            size = canary_count(spec, total, "--wave")
        out.append(rest[i:i + size])
        i += size
    return out


def resolve_group(spec: str, known: list[str]) -> list[str]:
    """A device group: a file of device ids (one per line, ``#`` comments), or a glob over
    the ``known`` device ids of the site (``pump-*``). Sorted, without repeats."""
    from aiot.fleet.topics import topic_level

    p = Path(spec)
    if p.is_file():
        ids = []
        for i, line in enumerate(p.read_text().splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if line:
                try:
                    ids.append(topic_level(line, "device id"))
                except ToolkitError as e:
                    raise ToolkitError(f"{p}:{i}: {e.message}", hint=e.hint) from None
        if not ids:
            raise ToolkitError(f"{p}: no device ids in the file", hint="one device id per line")
        return sorted(set(ids))
    ids = sorted(d for d in set(known) if fnmatch.fnmatchcase(d, spec))
    if not ids:
        raise ToolkitError(f"no device of the site matches {spec!r} (known: {len(known)} device(s)"
                           + (f", e.g. {', '.join(sorted(known)[:3])}" if known else "") + ")",
                           hint="give a file of device ids (--devices group.txt) or a glob such as --devices 'pump-*'; "
                                "devices are known from their gateways' retained status messages")
    return ids


def known_devices(broker, site: str, timeout: float = 10.0, settle: float = 1.0) -> list[str]:
    """Device ids of ``site`` with a retained status (every gateway sets one per device).

    Ends as soon as the broker has handed every retained status over. MQTT marks no end of
    them, so the same SUBSCRIBE also takes a topic of this client's own (a marker), and once
    it is acknowledged the client publishes one message there: a broker queues a new
    subscription's retained messages before it reads the client's next packet and delivers
    a client's messages in order (mosquitto does), so the marker comes back after the last
    status. If the broker refuses the marker (an ACL: a failed SUBACK or PUBACK for it), it
    waits ``settle`` s after the SUBACK instead (the fixed wait this replaced); ``timeout``
    bounds it all, should the marker never come back."""
    import secrets

    import paho.mqtt.client as mqtt

    from aiot.fleet.topics import topic

    statuses = topic(site, "+", "status")
    marker = f"aiot-rollout/{secrets.token_hex(6)}/end-of-retained"
    seen: set[str] = set()
    changed = threading.Event()
    got: dict[str, object] = {}  # suback (when), end (the marker came back), no_marker, error

    def on_connect(cl, _u, _flags, reason_code, _props):
        if reason_code.is_failure:
            got["error"] = f"the broker refused the connection: {reason_code}"
        else:
            cl.subscribe([(statuses, 1), (marker, 1)])
        changed.set()

    def on_subscribe(cl, _u, _mid, reason_codes, _props):
        got["suback"] = time.monotonic()
        if reason_codes[0].is_failure:
            got["error"] = f"the broker refused the subscription to {statuses}: {reason_codes[0]}"
        elif len(reason_codes) < 2 or reason_codes[1].is_failure:
            got["no_marker"] = True
        else:
            cl.publish(marker, b"end", qos=1)
        changed.set()

    def on_publish(_c, _u, _mid, reason_code, _props):
        if reason_code.is_failure:
            got["no_marker"] = True
            changed.set()

    def on_message(_c, _u, m):
        if m.topic == marker:
            got["end"] = True
            changed.set()
        elif m.payload:  # an empty retained message clears a status: no device there any more
            seen.add(m.topic.split("/")[2])

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    _login(c, broker)
    c.on_connect, c.on_subscribe, c.on_publish, c.on_message = on_connect, on_subscribe, on_publish, on_message
    try:
        c.connect(broker[0], broker[1], keepalive=10)
    except OSError as e:
        raise ToolkitError(f"cannot reach the broker {broker[0]}:{broker[1]}: {e}",
                           hint="is it running? check --mqtt mqtt://HOST:PORT") from None
    c.loop_start()
    deadline = time.monotonic() + timeout
    try:
        while not got.get("end") and "error" not in got:
            now = time.monotonic()
            if now >= deadline or (got.get("no_marker") and now >= got["suback"] + settle):
                break
            changed.wait(min(deadline, got["suback"] + settle if got.get("no_marker") else deadline) - now)
            changed.clear()
    finally:
        c.disconnect()
        c.loop_stop()
    if "error" in got:
        raise ToolkitError(f"cannot list the devices of site {site}: {got['error']}",
                           hint="let this MQTT user read aiot/SITE/+/status, or give a file of device ids "
                                "(--devices group.txt)")
    return sorted(seen)


def _login(client, broker) -> None:
    if getattr(broker, "username", None):
        client.username_pw_set(broker.username, broker.password)
    if getattr(broker, "tls", False):
        client.tls_set()


@dataclass
class Halt:
    device: str | None
    reason: str


class Rollout:
    """One rollout, its state in ``path`` (JSON)."""

    def __init__(self, path: Path, state: dict):
        self.path, self.state = Path(path), state
        self._lock = threading.Lock()
        self._changed = threading.Event()
        self._reach: dict[str, dict] = {}  # device -> its gateway's retained link / status words
        self._client = None
        self.registry = None

    # --- state ------------------------------------------------------------------------------

    @classmethod
    def start(cls, path: Path, *, site: str, release: str, image: bytes, devices: list[str], canary,
              wave="double", trial_timeout: float = 120.0) -> "Rollout":
        if Path(path).exists():
            raise ToolkitError(f"{path}: a rollout state is already there",
                               hint=f"resume it (aiot rollout --resume --state {path}), show it (--status), "
                                    "or give another --state")
        from aiot.fleet.topics import topic_level

        for d in devices:
            topic_level(d, "device id")
        devices = sorted(set(devices))
        n = canary_count(canary, len(devices))
        rid = f"{release}@{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%SZ')}-{os.urandom(2).hex()}"
        state = {"id": rid, "site": site, "release": release, "phase": "canary", "started": now_iso(), "updated": now_iso(),
                 "canary": devices[:n], "rest": devices[n:], "waves": waves(wave, n, devices[n:]), "wave": 0,
                 "trial_timeout": trial_timeout,
                 "sent": {}, "outcomes": {}, "progress": {}, "halted": None, "image_path": None}
        r = cls(path, state)
        r.image = image
        image_path = Path(path).with_suffix(".bin")
        image_path.parent.mkdir(parents=True, exist_ok=True)
        image_path.write_bytes(image)  # resume needs the bytes; the state file names them
        state["image_path"] = image_path.name
        r.save()
        return r

    @classmethod
    def load(cls, path: Path) -> "Rollout":
        try:
            state = json.loads(Path(path).read_text())
            r = cls(path, state)
            r.image = (Path(path).parent / state["image_path"]).read_bytes()
        except FileNotFoundError as e:
            raise ToolkitError(f"{e.filename}: no such rollout state",
                               hint="start one: aiot rollout --release REL --devices GROUP --mqtt URL") from None
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ToolkitError(f"{path}: not an aiot rollout state ({e})", hint="point --state at the file "
                               "aiot rollout wrote (build/rollout/*.json)") from None
        return r

    def save(self) -> None:
        self.state["updated"] = now_iso()
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.state, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.path)

    @property
    def devices(self) -> list[str]:
        return self.state["canary"] + self.state["rest"]

    def summary(self) -> dict:
        s = self.state
        out = s["outcomes"]
        passed = sorted(d for d, o in out.items() if FINAL.get(o["outcome"]))
        failed = {d: f"{o['outcome']}: {o['reason']}" if o.get("reason") else o["outcome"]
                  for d, o in sorted(out.items()) if not FINAL.get(o["outcome"], True) and o["outcome"] != "withdrawn"}
        waiting = sorted(d for d in s["sent"] if d not in out)
        return {"waves": [len(w) for w in self._waves()], "wave": s.get("wave", 0),
                "withdrawn": sorted(d for d, o in out.items() if o["outcome"] == "withdrawn"), "id": s["id"], "release": s["release"], "site": s["site"], "phase": s["phase"],
                "halted": s["halted"], "canary": s["canary"], "devices": len(self.devices),
                "sent": len(s["sent"]), "passed": passed, "failed": failed, "waiting": waiting,
                "not_sent": sorted(d for d in self.devices if d not in s["sent"]),
                "started": s["started"], "updated": s["updated"]}

    def _waves(self) -> list[list[str]]:
        return self.state.get("waves", [self.state["rest"]] if self.state["rest"] else [])

    # --- MQTT -------------------------------------------------------------------------------

    def connect(self, broker) -> None:
        """A persistent session subscribed to the site's update outcomes."""
        import hashlib

        import paho.mqtt.client as mqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        from aiot.fleet.topics import topic

        cid = "aiot-rollout-" + hashlib.sha256(self.state["id"].encode()).hexdigest()[:16]
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cid, protocol=mqtt.MQTTv5)
        _login(c, broker)
        c.reconnect_delay_set(0.1, 2.0)
        subscribed = threading.Event()
        # outcomes, and (retained) each device's link and its gateway's status: who is offline
        c.on_connect = lambda cl, *_a: cl.subscribe([(topic(self.state["site"], "+", kind), 1)
                                                     for kind in ("update", "link", "status")])
        c.on_subscribe = lambda *_a: subscribed.set()
        c.on_message = self._on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 7 * 86400
        try:
            c.connect(broker[0], broker[1], keepalive=10, clean_start=False, properties=props)
        except OSError as e:
            raise ToolkitError(f"cannot reach the broker {broker[0]}:{broker[1]}: {e}",
                               hint="is it running? check --mqtt mqtt://HOST:PORT") from None
        c.loop_start()
        if not subscribed.wait(10.0):
            c.loop_stop()
            raise ToolkitError(f"the broker {broker[0]}:{broker[1]} did not take the subscription to update outcomes",
                               hint="check the broker's access rules for aiot/SITE/+/update")
        self._client = c

    def close(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None

    def _on_message(self, _c, _u, msg) -> None:
        try:
            m = json.loads(msg.payload)
        except ValueError:
            return
        if not isinstance(m, dict):
            return
        device, kind = msg.topic.split("/")[2], msg.topic.rsplit("/", 1)[-1]
        if kind in ("link", "status"):  # retained: the last word of the device's gateway
            with self._lock:
                self._reach.setdefault(device, {})[kind] = m.get(kind)
            self._changed.set()
            return
        if m.get("rollout") != self.state["id"]:
            return
        if device not in self.state["canary"] and device not in self.state["rest"]:
            return
        with self._lock:
            self.state["progress"].setdefault(device, [])
            if m["outcome"] not in self.state["progress"][device]:
                self.state["progress"][device].append(m["outcome"])
            if m.get("final") and device not in self.state["outcomes"]:
                self.state["outcomes"][device] = {"outcome": m["outcome"], "reason": m.get("reason"),
                                                  "time": m.get("gateway_time"), "message": m.get("id")}
                self._clear_command(_c, device)  # the callback's client: self._client may not be set yet
                if FINAL.get(m["outcome"]) and self.registry is not None:
                    self._record(device)
            self.save()
        self._changed.set()

    def _record(self, device: str) -> None:
        try:
            rel = self.registry.get(self.state["release"])
            # the device checked the package's model ABI against its firmware before running it
            self.registry.promote(self.state["release"], device=device, firmware_abi=rel["abi"])
        except ToolkitError as e:  # in MQTT's thread: kept in the state, never raised there
            self.state.setdefault("registry_errors", {})[device] = e.message

    def _clear_command(self, client, device: str) -> None:
        from aiot.fleet.topics import topic

        client.publish(topic(self.state["site"], device, "cmd"), b"", qos=1, retain=True)

    def _send(self, devices: list[str], progress: Callable[[str], None]) -> None:
        from aiot.fleet.topics import topic

        s = self.state
        for d in devices:
            if d in s["sent"]:
                continue
            cmd = update_command(f"{s['id']}/{d}", self.image, release=s["release"], rollout=s["id"],
                                 trial_timeout=s["trial_timeout"])
            info = self._client.publish(topic(s["site"], d, "cmd"), json.dumps(cmd), qos=1, retain=True)
            info.wait_for_publish(10.0)
            if not info.is_published():
                raise ToolkitError(f"the broker did not acknowledge the command for {d}",
                                   hint="check the broker; then aiot rollout --resume --state " + str(self.path))
            with self._lock:
                s["sent"][d] = now_iso()
                self.save()
        progress(f"sent the update to {len(devices)} device(s): {', '.join(devices[:5])}"
                 + (" ..." if len(devices) > 5 else ""))

    def offline(self, device: str) -> bool:
        """``device`` has not started this rollout's update and its gateway says it cannot
        reach it (link down) or is itself offline (its last will)."""
        with self._lock:
            reach = self._reach.get(device, {})
            started = bool(self.state["progress"].get(device))
        return not started and (reach.get("link") == "down" or reach.get("status") == "offline")

    def _wait(self, devices: list[str], timeout: float, halt_on_failure: bool,
              progress: Callable[[str], None], offline_ok: bool = False) -> Halt | None:
        """Until every device of ``devices`` has its final outcome (with ``offline_ok``: every
        one that is not offline), a failure (with ``halt_on_failure``) or ``timeout``."""
        deadline = time.monotonic() + timeout
        reported: set[str] = set()
        while True:
            self._changed.clear()
            with self._lock:
                out = dict(self.state["outcomes"])
            for d in devices:
                if d in out and d not in reported:
                    reported.add(d)
                    o = out[d]
                    progress(f"{d}: {o['outcome']}" + (f" ({o['reason']})" if o.get("reason") else "")
                             + f"  [{len(reported)}/{len(devices)}]")
                    if halt_on_failure and not FINAL.get(o["outcome"]):
                        return Halt(d, f"{o['outcome']}" + (f": {o['reason']}" if o.get("reason") else ""))
            away = [d for d in devices if d not in out and offline_ok and self.offline(d)]
            if len(reported) + len(away) == len(devices):
                if away:
                    progress(f"offline, not waited for (their gateways deliver the update when they return): "
                             f"{', '.join(away[:5])}" + (" ..." if len(away) > 5 else ""))
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                missing = [d for d in devices if d not in out and d not in away]
                return Halt(None, f"no outcome within {timeout:.0f} s from {len(missing)} device(s): "
                                  f"{', '.join(missing[:5])}" + (" ..." if len(missing) > 5 else ""))
            self._changed.wait(min(left, 1.0))

    def _withdraw(self, progress: Callable[[str], None]) -> None:
        """A halted rollout takes back the commands of devices that have not ended: the
        retained command is cleared, and the clear names the command, so a gateway that
        journaled it but has not started it (the device's link is down) drops it and
        reports ``withdrawn``. A command already started (sending, on trial) runs to its end."""
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        from aiot.fleet.topics import topic

        s = self.state
        with self._lock:
            open_ = [d for d in s["sent"] if d not in s["outcomes"]]
        for d in open_:
            props = Properties(PacketTypes.PUBLISH)
            props.UserProperty = [("withdraw", f"{s['id']}/{d}")]
            info = self._client.publish(topic(s["site"], d, "cmd"), b"", qos=1, retain=True, properties=props)
            info.wait_for_publish(10.0)
        if open_:
            progress(f"withdrew the command of {len(open_)} device(s) not ended: {', '.join(open_[:5])}"
                     + (" ..." if len(open_) > 5 else "") + " (those not started never install it)")

    def _halt(self, halt: Halt, wave: list[str], timeout: float, progress: Callable[[str], None]) -> dict:
        s = self.state
        with self._lock:
            s["phase"], s["halted"] = "halted", {"device": halt.device, "reason": halt.reason}
            self.save()
        not_sent = [d for d in self.devices if d not in s["sent"]]
        progress(f"HALTED: {halt.device + ': ' if halt.device else ''}{halt.reason}; "
                 f"nothing sent to the other {len(not_sent)} device(s)")
        self._withdraw(progress)
        open_ = [d for d in wave if d not in s["outcomes"]]
        if open_:  # those already sent to are reported as they end (withdrawn, or their trial's verdict);
            # after a timeout only the withdrawals are awaited (a gateway that is up reports them at once)
            self._wait(open_, timeout if halt.device else min(timeout, WITHDRAW_WAIT), False, progress)
        return self.summary()

    def run(self, broker, *, canary_timeout: float = 600.0, timeout: float = 3600.0,
            progress: Callable[[str], None] = lambda _t: None) -> dict:
        """Canary, then the other devices wave by wave; returns the summary. A failure, or a
        wave (or the canary) not answered in its timeout, halts before the next wave.
        Resumes from the saved phase and wave."""
        s = self.state
        if s["phase"] in ("done", "halted"):
            return self.summary()
        self.connect(broker)
        try:
            if s["phase"] == "canary":
                progress(f"rollout {s['id']}: {s['release']} to {len(self.devices)} device(s) of site {s['site']}, "
                         f"canary {len(s['canary'])}, then waves of {', '.join(str(len(w)) for w in self._waves())}")
                self._send(s["canary"], progress)
                halt = self._wait(s["canary"], canary_timeout, True, progress)
                if halt is not None:
                    return self._halt(halt, s["canary"], canary_timeout, progress)
                with self._lock:
                    s["phase"] = "rest"
                    self.save()
                progress(f"every canary passed its trial; sending to the other {len(s['rest'])} device(s) "
                         f"in {len(self._waves())} wave(s)")
            waves_ = self._waves()
            for k in range(s.get("wave", 0), len(waves_)):
                with self._lock:
                    s["wave"] = k
                    self.save()
                wave, last = waves_[k], k == len(waves_) - 1
                progress(f"wave {k + 1}/{len(waves_)}: {len(wave)} device(s)")
                self._send(wave, progress)
                # an offline device does not hold a wave up; the last wave waits for everyone sent to
                # (an offline device may return meanwhile), up to the timeout
                late = [d for d in s["sent"] if d not in s["outcomes"] and d not in wave] if last else []
                halt = self._wait(wave + sorted(late), timeout, True, progress, offline_ok=not last)
                if halt is not None and (halt.device is not None or not last):
                    return self._halt(halt, wave, timeout, progress)
                if halt is not None:  # the last wave, no failure: devices offline get it when they return
                    progress(f"still waiting: {halt.reason} (offline? their gateways deliver the update when they "
                             f"return; aiot rollout --status --state {self.path} shows it)")
                    return self.summary()
            with self._lock:
                waiting = [d for d in s["sent"] if d not in s["outcomes"]]
                if not waiting:
                    s["phase"] = "done"
                self.save()
            if waiting:
                progress(f"still waiting: {', '.join(sorted(waiting)[:5])}" + (" ..." if len(waiting) > 5 else "")
                         + f" (offline; aiot rollout --status --state {self.path} shows them later)")
            return self.summary()
        finally:
            self.close()
