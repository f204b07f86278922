"""The gateway with the real firmware in QEMU: a commissioned image is fed a recording with a
fault, its events reach the broker in order with severity, sensors and confidence, and when
QEMU dies the gateway boots it again and counts a new boot (its events are new, not
re-sends)."""

from __future__ import annotations

import time

import pytest

from aiot.testing import have_arm_toolchain, have_qemu

pytest.importorskip("paho.mqtt", reason="the fleet extra is not installed: pip install -e '.[fleet]'")
pytestmark = [pytest.mark.slow, pytest.mark.qemu,
              pytest.mark.skipif(not (have_arm_toolchain() and have_qemu()), reason="needs arm-none-eabi-gcc and QEMU")]

from test_fleet_dask import write_installation  # noqa: E402
from test_gateway import SITE, Consumer, broker  # noqa: E402,F401  (broker: the fixture)


def test_qemu_device_alert_reaches_the_broker_and_a_qemu_restart_is_a_new_boot(tmp_path, broker, monkeypatch):
    from aiot.commission import commission
    from aiot.fleet.gateway import Gateway, device_opener, replay_chunks

    monkeypatch.setenv("AIOT_CACHE_DIR", str(tmp_path / "cache"))
    write_installation(tmp_path / "pump.csv", 450, (440, 450), seed=1)
    doc = commission(tmp_path / "pump.csv", "mps2-an386", tmp_path / "img", rows=400, epochs=3)
    write_installation(tmp_path / "replay.csv", 900, (600, 700), seed=1)

    consumer = Consumer(broker)
    gw = Gateway(tmp_path / "journal.db", broker.url, site=SITE, gateway_id="gw1")
    bridge = gw.add("pump1", device_opener("qemu", "mps2-an386", doc["elf"]), sensors=["a", "b", "c"],
                    replay=replay_chunks(tmp_path / "replay.csv"), poll=0.05, stats_every=0, uptime_every=0.2,
                    reopen_after=0.1)
    gw.start()
    try:
        deadline = time.monotonic() + 60
        # the state message (kind "state") carries the event's name too and is sent just before
        # the alert message itself: wait for the alert message
        while time.monotonic() < deadline and not any(
                p.get("kind") == "alert" and p.get("event") == "ALERT_RAISED"
                for p in consumer.events_after_dedup("pump1")):
            time.sleep(0.1)
        first = consumer.events_after_dedup("pump1")
        while not bridge.replay_done and time.monotonic() < deadline:
            time.sleep(0.1)
        # the device dies (QEMU killed); the bridge boots a new one and replays nothing more
        time.sleep(0.5)
        bridge.replay = replay_chunks(tmp_path / "replay.csv")
        bridge.replay_done = False
        bridge.source.transport.qemu.proc.kill()
        while time.monotonic() < deadline and not any(
                p.get("boot") == 1 and p.get("event") == "COMMISSIONED" for p in consumer.events_after_dedup("pump1")):
            time.sleep(0.1)
    finally:
        gw.stop(drain=2)
        consumer.close()
    raised = [p for p in first if p["kind"] == "alert" and p["event"] == "ALERT_RAISED"]
    assert raised, f"no alert in {[p.get('event') for p in first]}"
    a = raised[0]
    assert a["kind"] == "alert" and a["severity"] >= 1 and a["sensors"] and 0.0 <= a["confidence"] <= 1.0
    assert 600_000 <= a["timestamp_ms"] <= 700_000  # inside the fault
    events = [p for p in consumer.events_after_dedup("pump1") if p["kind"] in ("alert", "calibration", "drift", "data")]
    assert [p["event"] for p in events][:2] == ["COMMISSIONED", "CALIBRATED"]
    assert [p["n"] for p in events] == sorted(p["n"] for p in events)
    boot1 = [p for p in events if p["boot"] == 1]
    assert boot1 and boot1[0]["event"] == "COMMISSIONED" and boot1[0]["seq"] == 0
    assert bridge.link_drops >= 1

