"""The gateway's command path: model updates sent through the broker to a device.

A command is one JSON object on ``aiot/<site>/<device>/cmd`` (QoS 1, retained, so a
gateway that was away, or starts for the first time, still gets it):

    {"kind": "update", "id": "<rollout>-<device>", "rollout": "<rollout id>", "release": "pump-ae-1.1.0",
     "sha256": "<hex SHA-256 of the release file>", "image": "<base64 of the release file>",
     "trial_timeout": 120}

:class:`CommandListener` holds one MQTT session per gateway (persistent: clean_start off,
a session expiry), journals each command (SQLite, fsync'd) before the broker learns it
arrived, and wakes the device's bridge. A command id runs once, however often it is
delivered. :func:`run_commands` is called by the bridge between event drains, on the
device's open link: it sends the package with the lifecycle client (which resumes a
transfer the link cut), drains the device's events once more (its RAM is lost at the
reset), reboots it into the trial and reads the device's verdict. Each step is recorded
in the journal, so a gateway restarted mid-update resumes where it was; each outcome is a
journaled message on ``aiot/<site>/<device>/update`` with the same at-least-once ids as
events: ``accepted``, ``trial passed``, ``reverted`` (the device's reason), ``refused``
(why), ``trial timeout``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import threading
import time
from typing import Callable

from aiot.fleet.journal import Journal

#: Outcomes that end a command, and whether the device runs the release afterwards.
FINAL = {"trial passed": True, "reverted": False, "refused": False, "trial timeout": False, "withdrawn": False}
DEFAULT_TRIAL_TIMEOUT = 120.0


def update_command(cid: str, image: bytes, *, release: str, rollout: str | None = None,
                   trial_timeout: float = DEFAULT_TRIAL_TIMEOUT) -> dict:
    """The command that asks a gateway to install the release ``image`` on one device."""
    return {"kind": "update", "id": cid, "rollout": rollout, "release": release,
            "sha256": hashlib.sha256(image).hexdigest(), "image": base64.b64encode(image).decode(),
            "trial_timeout": trial_timeout}


def command_problem(body: dict) -> str | None:
    """Why a command cannot run (None: it can)."""
    if body.get("kind") != "update":
        return f"unknown command kind {body.get('kind')!r} (this gateway runs 'update')"
    try:
        image = base64.b64decode(body.get("image") or "", validate=True)
    except (binascii.Error, ValueError, TypeError):
        return "the release bytes are not valid base64"
    if not image:
        return "the command carries no release bytes"
    if hashlib.sha256(image).hexdigest() != body.get("sha256"):
        return "the release bytes do not match the command's sha256 (damaged on the way)"
    return None


def outcome(journal: Journal, device: str, cid: str, body: dict, what: str, reason: str | None = None,
            **extra) -> None:
    """Journal one step or outcome of a command as an ``update`` message (once per step)."""
    from aiot.fleet.topics import now_iso

    payload = {"command": cid, "rollout": body.get("rollout"), "release": body.get("release"),
               "sha256": body.get("sha256"), "outcome": what, "reason": reason, "final": what in FINAL,
               "gateway_time": now_iso(), **extra}
    journal.append(device, [("update", payload, f"cmd:{cid}:{what}")])


def run_commands(journal: Journal, device: str, source, drain: Callable[[], None], wake: Callable[[], None],
                 rebooted: Callable[[], None] = lambda: None) -> None:
    """Advance ``device``'s pending commands on its open link ``source``; returns while a
    trial is still running (called again on the next round). A link error propagates
    (the bridge reopens the link, and the step is resumed). ``rebooted`` is called right
    after this reboots the device, before anything of its new boot is read."""
    from aiot.lifecycle.client import NoUpdates, UpdateClient, UpdateRefused, image_digest, reason_name

    for cid, body, state, since in journal.pending_commands(device):
        if state == "pending":
            problem = command_problem(body)
            if problem is None and not hasattr(source, "request"):
                problem = "this device's link takes no model updates"
            if problem is not None:
                outcome(journal, device, cid, body, "refused", problem)
                journal.set_command_state(cid, "done")
                wake()
                continue
            if not journal.claim_command(cid):  # withdrawn meanwhile (a halted rollout)
                continue
            outcome(journal, device, cid, body, "accepted")
            wake()
            state, since = "sending", time.time()
        image = base64.b64decode(body["image"])
        up = UpdateClient(source)
        if state == "sending":
            try:
                up.send(image)  # resumes a transfer of the same package the device holds
            except UpdateRefused as e:
                outcome(journal, device, cid, body, "refused", f"{e.name}: {e.hint}" if e.hint else e.name)
                journal.set_command_state(cid, "done")
                wake()
                continue
            except NoUpdates as e:
                outcome(journal, device, cid, body, "refused", e.message)
                journal.set_command_state(cid, "done")
                wake()
                continue
            drain()  # the reset loses what the device holds in RAM: its events are journaled first
            journal.set_command_state(cid, "trial")
            state, since = "trial", time.time()
            up.reboot()
            rebooted()
        st = up.status()
        new = image_digest(image)[:8]
        detail = {"running_slot": st.running, "trial_runs": st.trial_runs, "trial_runs_needed": st.trial_runs_needed}
        if st.running_digest() == new and not st.trial:
            outcome(journal, device, cid, body, "trial passed", **detail)
        elif st.running_digest() == new:  # still on trial: the device confirms or reverts by itself
            if time.time() - since <= float(body.get("trial_timeout") or DEFAULT_TRIAL_TIMEOUT):
                return  # the next round looks again
            outcome(journal, device, cid, body, "trial timeout",
                    f"{st.trial_runs}/{st.trial_runs_needed} trial runs after {time.time() - since:.0f} s", **detail)
        else:
            outcome(journal, device, cid, body, "reverted", reason_name(st.last_reason) if st.last_reason else
                    "the device does not run the release after its reboot", **detail)
        journal.set_command_state(cid, "done")
        wake()


class CommandListener:
    """One persistent MQTT session per gateway, subscribed to its devices' command topics."""

    def __init__(self, journal: Journal, site: str, devices: dict[str, Callable[[], None]], broker, gateway_id: str,
                 session_expiry: int = 7 * 86400):
        self.journal, self.site, self.devices = journal, site, devices  # device -> wake its bridge
        self.broker, self.gateway_id, self.session_expiry = broker, gateway_id, session_expiry
        self.received = 0
        self.last_error: str | None = None
        self.subscribed = threading.Event()
        self._client = None

    def start(self) -> "CommandListener":
        import paho.mqtt.client as mqtt
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        from aiot.fleet.topics import topic

        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"aiot-{self.gateway_id}-cmd",
                        protocol=mqtt.MQTTv5, manual_ack=True)
        if getattr(self.broker, "username", None):
            c.username_pw_set(self.broker.username, self.broker.password)
        if getattr(self.broker, "tls", False):
            c.tls_set()
        c.reconnect_delay_set(0.1, 2.0)

        def on_connect(client, _u, _flags, reason_code, _props):
            if reason_code.is_failure:
                self.last_error = f"broker refused the command session: {reason_code}"
                return
            if self.devices:
                client.subscribe([(topic(self.site, d, "cmd"), 1) for d in sorted(self.devices)])

        def on_subscribe(_c, _u, _mid, _codes, _props):
            self.subscribed.set()

        def on_disconnect(_c, _u, _flags, reason_code, _props):
            self.subscribed.clear()
            self.last_error = f"command session disconnected: {reason_code}"

        c.on_connect, c.on_subscribe, c.on_disconnect, c.on_message = on_connect, on_subscribe, on_disconnect, self._on_message
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.session_expiry
        c.connect_async(self.broker[0], self.broker[1], keepalive=10, clean_start=False, properties=props)
        c.loop_start()
        self._client = c
        return self

    def _on_message(self, _c, _u, msg) -> None:
        # Acknowledged (PUBACK) only once journaled: a command the broker counts as
        # delivered is on disk; one that could not be journaled comes again.
        parts = msg.topic.split("/")
        device = parts[2] if len(parts) == 4 else None
        if device not in self.devices or not msg.payload:  # an empty retained message clears a command
            withdraw = dict(getattr(msg.properties, "UserProperty", None) or []).get("withdraw")
            if device in self.devices and withdraw:  # ... and names one to take back if it has not started
                try:
                    got = self.journal.withdraw_command(withdraw)
                    if got is not None:
                        outcome(self.journal, got[0], withdraw, got[1], "withdrawn",
                                "the rollout halted before this device started the update")
                        self.devices[device]()
                except Exception as e:  # noqa: BLE001 -- not acknowledged: delivered again on the next session
                    self.last_error = f"{msg.topic}: cannot withdraw the command {withdraw}: {e}"
                    return
            _c.ack(msg.mid, msg.qos)  # every message is acknowledged: unacknowledged ones block the session
            return
        try:
            body = json.loads(msg.payload)
            if not isinstance(body, dict) or not isinstance(body.get("id"), str) or not body["id"]:
                raise ValueError("no command id")
        except ValueError as e:
            self.last_error = f"{msg.topic}: not a command ({e}); ignored"
            _c.ack(msg.mid, msg.qos)
            return
        try:
            if self.journal.add_command(device, body["id"], body):
                self.received += 1
                self.devices[device]()
        except Exception as e:  # noqa: BLE001 -- not acknowledged: the broker delivers it again on the next session
            self.last_error = f"{msg.topic}: cannot journal the command: {e}"
            return
        _c.ack(msg.mid, msg.qos)

    def stop(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None
