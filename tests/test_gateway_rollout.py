"""The site's devices as `aiot rollout --devices GLOB` finds them: from the retained status
each gateway keeps per device, against a real broker (mosquitto), ending as soon as the
broker has handed every retained status over, not after a fixed wait."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from test_gateway import MOSQUITTO, SITE, Broker, broker  # noqa: E402,F401  (broker: the fixture)

pytest.importorskip("paho.mqtt", reason="the fleet extra is not installed: pip install -e '.[fleet]'")


def retain_statuses(broker: Broker, devices: list[str], site: str = SITE) -> None:
    """What gateways leave on the broker: one retained status per device (an empty one: cleared)."""
    import paho.mqtt.client as mqtt

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="gateways", protocol=mqtt.MQTTv5)
    c.connect("127.0.0.1", broker.port)
    c.loop_start()
    try:
        infos = [c.publish(f"aiot/{site}/{d}/status", b'{"status": "online"}', qos=1, retain=True) for d in devices]
        for info in infos:
            info.wait_for_publish(5)
    finally:
        c.disconnect()
        c.loop_stop()


def test_known_devices_ends_once_the_retained_statuses_are_in_not_after_a_fixed_second(broker):
    from aiot.fleet.gateway import parse_broker
    from aiot.fleet.rollout import known_devices

    devices = [f"pump-{i:03d}" for i in range(300)]  # more than mosquitto sends a client at once (20)
    retain_statuses(broker, devices + ["fan-1"])
    retain_statuses(broker, ["pump-999"], site="other-site")
    t0 = time.monotonic()
    got = known_devices(parse_broker(broker.url), SITE)
    took = time.monotonic() - t0
    assert got == sorted(devices + ["fan-1"])
    assert took < 1.0, f"took {took:.2f} s: the retained statuses were all in long before"


def test_known_devices_of_a_site_without_devices_is_empty_and_quick(broker):
    from aiot.fleet.gateway import parse_broker
    from aiot.fleet.rollout import known_devices

    t0 = time.monotonic()
    assert known_devices(parse_broker(broker.url), SITE) == []
    assert time.monotonic() - t0 < 1.0


def test_known_devices_where_the_broker_refuses_the_end_marker_waits_and_still_finds_them(tmp_path):
    """An ACL that lets the rollout read statuses but not use the marker topic: the end of
    the retained messages cannot be seen, so it waits the settle time after the SUBACK
    (bounded), and finds every device."""
    from aiot.fleet.gateway import parse_broker
    from aiot.fleet.rollout import known_devices

    if MOSQUITTO is None:
        pytest.skip("mosquitto is not installed (apt-get install -y mosquitto, or make setup)")
    acl = tmp_path / "acl"
    acl.write_text("topic readwrite aiot/#\n")
    b = Broker(tmp_path, extra_conf=f"acl_file {acl}\n")
    b.start()
    try:
        devices = [f"pump-{i}" for i in range(40)]
        retain_statuses(b, devices)
        t0 = time.monotonic()
        got = known_devices(parse_broker(b.url), SITE, settle=0.5, timeout=5.0)
        took = time.monotonic() - t0
    finally:
        b.stop()
    assert got == sorted(devices)
    assert 0.5 <= took < 4.0, f"took {took:.2f} s"

