"""Monitor configurations larger than one frame (CONFIG_PART, CONFIG_GET by offset;
docs/protocol.md): the device app built for the host with 64 channels of capacity, so its
configuration (1,116 bytes with a drift rate per sensor) does not fit a 1 KiB frame. A set
is applied only when its last part arrives and the whole checks out; a truncated, out of
order, mixed or invalid set is refused with the reason and the old configuration runs on."""

from __future__ import annotations

import ctypes
import math
import struct
import zlib

import numpy as np
import pytest

from aiot import monitor as M
from aiot.device import protocol as P
from aiot.device.hil import Device

from test_protocol_app import HostApp
from test_protocol_large_infer import HostTransport

WIDE, WINDOW, PERIOD = 64, 4, 1000


@pytest.fixture(scope="module")
def wide_app_factory():
    # Built once (the host build is cached); each test gets a fresh, private instance.
    return lambda: HostApp(f"AIOT_MONITOR_MAX_CHANNELS={WIDE}")


def wide_config(**knobs) -> M.Config:
    rates = [0.25 + 0.5 * c for c in range(WIDE)]  # a different rate bound on every sensor
    return M.default_config(WIDE, WINDOW, PERIOD, commission_samples=40, calibration_windows=8,
                            max_drift_rate=rates, **knobs)


def test_a_64_channel_configuration_does_not_fit_one_frame():
    size = ctypes.sizeof(M.config_type(WIDE))
    assert size == 1116 and size + 1 > P.DEFAULT_MAX_PAYLOAD


def test_per_sensor_rates_round_trip_in_parts_and_a_live_update_keeps_the_installation(wide_app_factory):
    t = HostTransport(wide_app_factory())
    dev = Device(t, timeout=1.0)
    cfg = wide_config()
    assert dev.configure(cfg, fresh=True) is True
    assert bytes(dev.config) == bytes(cfg)
    assert list(dev.config.max_drift_rate[:3]) == [0.25, 0.75, 1.25]
    sent = t.sent_frames()
    parts = [f for f in sent if f.type == P.Msg.CONFIG_PART]
    assert len(parts) == math.ceil(1116 / (1024 - P.CONFIG_PART_HEAD.size)) == 2
    assert not [f for f in sent if f.type == P.Msg.CONFIG_SET]
    assert max(len(f.payload) for f in sent) <= 1024
    gets = [f for f in sent if f.type == P.Msg.CONFIG_GET]
    assert any(len(f.payload) == 4 for f in gets)  # the rest of the configuration read by offset

    # The device streams with it; then a new rate for one sensor is a live update.
    rng = np.random.default_rng(1)
    n = 40 + 8 * WINDOW + 4 * WINDOW
    v = rng.normal(0, 1, (n, WIDE)).astype(np.float32)
    dev.push(np.arange(n) * PERIOD, v)
    assert dev.stats()["monitor"]["phase"] == "ARMED"
    rates = list(cfg.max_drift_rate[:WIDE])
    rates[63] = 9.0
    assert dev.configure(_with_rates(cfg, rates)) is False  # a live update
    assert dev.config.max_drift_rate[63] == 9.0 and dev.stats()["monitor"]["phase"] == "ARMED"


def _with_rates(cfg: M.Config, rates: list[float]) -> M.Config:
    out = M.Config.from_buffer_copy(cfg)
    out.max_drift_rate[: len(rates)] = rates
    return out


def test_parts_can_be_forced_on_a_small_configuration():
    """An 8-channel configuration fits one frame and goes in one CONFIG_SET (old firmware
    keeps working); in parts of 50 bytes it arrives the same."""
    t = HostTransport(HostApp())
    dev = Device(t, timeout=1.0)
    cfg = M.default_config(3, WINDOW, PERIOD, max_drift_rate=[1.0, 2.0, 3.0])
    assert dev.configure(cfg, fresh=True) is True
    assert [f.type for f in t.sent_frames()].count(P.Msg.CONFIG_SET) == 1
    cfg2 = M.default_config(3, WINDOW, PERIOD, max_drift_rate=[4.0, 5.0, 6.0])
    assert dev.configure(cfg2, part_bytes=50) is False
    assert bytes(dev.config) == bytes(cfg2)
    parts = [f for f in t.sent_frames() if f.type == P.Msg.CONFIG_PART]
    assert len(parts) == math.ceil(ctypes.sizeof(M.config_type(8)) / 50)


def _part(offset: int, data: bytes, *, total: int | None = None, crc: int | None = None, last: bool = False,
          fresh: bool = False) -> bytes:
    flags = (P.CONFIG_PART_LAST if last else 0) | (P.CONFIG_PART_FRESH if fresh else 0)
    return P.CONFIG_PART_HEAD.pack(offset, 1116 if total is None else total,
                                   zlib.crc32(data) if crc is None else crc, flags, 0)


def _configured(app: HostApp) -> bytes:
    """The app's whole configuration, read by offset."""
    first = app.request(P.Msg.CONFIG_GET).payload
    total = struct.unpack_from("<H", first, 2)[0]
    data = first[4:]
    while len(data) < total:
        data += app.request(P.Msg.CONFIG_GET, struct.pack("<HH", len(data), total - len(data))).payload[4:]
    return data


def _refused(app: HostApp, payload: bytes, why: str) -> None:
    f = app.request(P.Msg.CONFIG_PART, payload)
    code, req, detail = P.unpack_error(f.payload)
    assert (code, req) == (P.ErrorCode.BAD_PAYLOAD, P.Msg.CONFIG_PART), detail
    assert why in detail and "the running configuration stays" in detail, detail


def _send(app: HostApp, data: bytes, cuts: list[int], **kw) -> P.Frame:
    crc = zlib.crc32(data)
    f = None
    for i, (a, b) in enumerate(zip(cuts, cuts[1:])):
        last = i == len(cuts) - 2
        f = app.request(P.Msg.CONFIG_PART, _part(a, data, crc=crc, last=last, **kw) + data[a:b])
    return f


@pytest.mark.parametrize("case", ["truncated", "out_of_order", "mixed_sets", "wrong_total", "bad_crc", "invalid",
                                  "empty"])
def test_a_partial_or_inconsistent_set_is_refused_and_the_old_configuration_stays(wide_app_factory, case):
    app = wide_app_factory()
    old = bytes(wide_config())
    f = _send(app, old, [0, 600, 1116], fresh=True)
    assert f.type == P.Msg.CONFIG_PART | P.RESPONSE and f.payload == struct.pack("<HBB", 1116, 1, 1)
    assert _configured(app) == old

    new = bytes(_with_rates(wide_config(), [7.0] * WIDE))
    crc = zlib.crc32(new)
    if case == "truncated":  # the part flagged last ends before the configuration does
        assert app.request(P.Msg.CONFIG_PART, _part(0, new) + new[:500]).payload == struct.pack("<HBB", 500, 0, 0)
        _refused(app, _part(500, new, last=True) + new[500:1000], "truncated: the last part ends at 1000 of 1116")
    elif case == "out_of_order":  # the third part before the second
        app.request(P.Msg.CONFIG_PART, _part(0, new) + new[:400])
        _refused(app, _part(800, new, last=True) + new[800:], "out of order: a part at offset 800 while the device "
                                                               "holds 400 of 1116 bytes")
    elif case == "mixed_sets":  # a part of another configuration after this one's first
        other = bytes(wide_config(alert_margin=5.0))
        app.request(P.Msg.CONFIG_PART, _part(0, new) + new[:600])
        _refused(app, _part(600, other, last=True) + other[600:], "belongs to another configuration")
    elif case == "wrong_total":  # a host built for another capacity
        _refused(app, _part(0, new, total=220) + new[:220], "configuration of 220 bytes; this firmware's is 1116")
    elif case == "bad_crc":  # every part announces a CRC the assembled bytes do not have
        app.request(P.Msg.CONFIG_PART, _part(0, new, crc=crc ^ 1) + new[:600])
        _refused(app, _part(600, new, crc=crc ^ 1, last=True) + new[600:], "CRC-32 differs")
    elif case == "invalid":  # whole and consistent, but the monitor refuses it
        bad = bytearray(new)
        off = M.Config.max_drift_rate.offset + 4 * 5
        bad[off:off + 4] = struct.pack("<f", float("inf"))
        bad = bytes(bad)
        app.request(P.Msg.CONFIG_PART, _part(0, bad) + bad[:600])
        _refused(app, _part(600, bad, last=True) + bad[600:], "max_drift_rate out of range")
    else:
        _refused(app, _part(0, new), "at least one byte")
    assert _configured(app) == old  # nothing applied
    # A refusal discards what was held: the rest of the new set alone is refused too,
    _refused(app, _part(600, new, last=True) + new[600:], "holds 0 of 1116")
    # and the whole set sent again from offset 0 applies (a live update: same structure).
    f = _send(app, new, [0, 600, 1116])
    assert f.payload == struct.pack("<HBB", 1116, 1, 0)
    assert _configured(app) == new


def test_the_last_part_sent_again_applies_the_same_configuration(wide_app_factory):
    """Its answer was lost: the host sends it again (a retry) and gets the same answer."""
    app = wide_app_factory()
    cfg = bytes(wide_config())
    _send(app, cfg, [0, 600, 1116], fresh=True)
    again = app.request(P.Msg.CONFIG_PART, _part(600, cfg, last=True) + cfg[600:])
    assert again.payload == struct.pack("<HBB", 1116, 1, 0) and _configured(app) == cfg


def test_parts_fit_the_frame_limit_the_device_announced():
    """Firmware built for 300-byte frames: the client asks INFO first and cuts the
    configuration into parts of at most 290 bytes of it."""
    t = HostTransport(HostApp(f"AIOT_MONITOR_MAX_CHANNELS={WIDE}", "AIOT_FRAME_MAX_PAYLOAD=300u"))
    dev = Device(t, timeout=1.0)
    cfg = wide_config()
    assert dev.configure(cfg, fresh=True) is True and bytes(dev.config) == bytes(cfg)
    sent = t.sent_frames()
    assert max(len(f.payload) for f in sent) <= 300
    assert [f.type for f in sent].count(P.Msg.CONFIG_PART) == math.ceil(1116 / 290)
