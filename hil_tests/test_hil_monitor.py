"""Streaming through the on-device monitor: configuration, gaps and drift, event buffering.

The reference for every output is the host build of the very same monitor C with the very
same generated model (aiot.monitor + the engine adapter), fed the same samples; the
scenario below is designed so that the behaviour to look for (a gap, a drifting channel,
an alert) is known from the input, independent of either implementation."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from aiot import codegen
from aiot import monitor as M
from aiot.device import protocol as P
from aiot.device.hil import DeviceError

CHANNELS, WINDOW, PERIOD = 3, 8, 1000
GAP_START, GAP_MS = 400, 30_000


def config(**knobs):
    return M.default_config(CHANNELS, WINDOW, PERIOD, **{"commission_samples": 80, "calibration_windows": 24, **knobs})


def scenario(seed=1):
    """900 samples: missing values, a 30 s gap, a slow drift then a step on channel 0, a spike on 1."""
    rng = np.random.default_rng(seed)
    n = 900
    ts = np.arange(n, dtype=np.int64) * PERIOD
    v = rng.normal(0, 1, (n, CHANNELS)).astype(np.float32) * np.array([0.5, 2.0, 1.0], np.float32)
    v += np.array([50, -20, 3], np.float32)
    ts[GAP_START:] += GAP_MS
    v[150:160, 2] = np.nan
    v[450:750, 0] += np.linspace(0, 3.0, 300, dtype=np.float32)  # 6 noise units over 5 minutes
    v[750:, 0] += 3.0
    v[800:830, 1] += 16.0                                         # 8 noise units
    return ts, v


@pytest.fixture(scope="session")
def host_monitor_lib(model_c):
    return M.library(extra_sources=[*codegen.engine_sources(), model_c / "model.c", M.engine_adapter_source()],
                     include_dirs=[model_c], name="hil_monitor_model")


@pytest.fixture
def monitor_device(device, require_model):
    if require_model.input_bytes != CHANNELS * WINDOW:
        pytest.skip(f"the monitor tests need a {CHANNELS}x{WINDOW}-feature model (hil_tests/fixtures/ae24)")
    assert device.configure(config(), fresh=True) is True
    return device



def _assert_same_outputs(out, want) -> None:
    """The device's window outputs equal the host build's, every field bit for bit (the
    monitor uses no libm function whose rounding differs between C libraries)."""
    assert len(out) == len(want)
    for field in ("t_start_ms", "t_end_ms", "state", "severity", "flags", "top_channels"):
        assert np.array_equal(out[field], want[field]), field
    for field in ("score", "p_value", "confidence", "quality"):
        assert np.array_equal(out[field].view(np.uint32), want[field].view(np.uint32)), field

def test_config_roundtrip_and_live_update(monitor_device):
    dev = monitor_device
    assert bytes(dev.config) == bytes(config())
    tuned = config(alert_margin=2.5, clear_margin=2.5)  # the clear level at most the alert level
    assert dev.configure(tuned) is False  # same structure: a live update, no re-commissioning
    assert bytes(dev.config) == bytes(tuned)
    assert dev.configure(config(calibration_windows=30)) is True  # structure changed


@pytest.mark.parametrize("bad,why", [
    (dict(window=4), "x window"),              # 3 x 4 != the model's 24 features
    (dict(persist_k=6, persist_n=5), "persist_k more than persist_n"),  # the device names the setting
    (dict(alert_margin=float("inf")), "alert_margin out of range"),  # would switch the monitor off
    (dict(sample_period_ms=2**31), "sample_period_ms out of range"),
    (dict(clear_band=0), "clear_band out of range"),  # an older host's padding byte: refused, not a band
    (dict(level_windows=0, spread_score=1), "spread_score needs level_windows"),  # no per-sensor score to add it to
    (dict(level_windows=0, spread_score=0, residual_score=1), "residual_score needs level_windows"),  # the same
])
def test_config_refused_keeps_the_running_one(monitor_device, bad, why):
    dev = monitor_device
    cfg = config()
    for k, v in bad.items():
        setattr(cfg, k, v)
    raw = M.pack_config(cfg, dev._config_capacity())  # the firmware's own struct size
    with pytest.raises(DeviceError) as e:
        dev.request(P.Msg.CONFIG_SET, raw)
    assert e.value.code == P.ErrorCode.BAD_PAYLOAD and why in e.value.detail
    with pytest.raises(DeviceError) as e:
        dev.request(P.Msg.CONFIG_SET, raw[:-1])
    assert e.value.code == P.ErrorCode.BAD_PAYLOAD
    assert bytes(dev.config) == bytes(config())


def test_push_payload_errors(monitor_device):
    dev = monitor_device
    rec = struct.pack("<IB3f", 1000, 7, 1.0, 2.0, 3.0)
    for payload in (b"\x01", struct.pack("<HBB", 1, 2, 0) + rec, struct.pack("<HBB", 2, 3, 0) + rec):
        with pytest.raises(DeviceError) as e:
            dev.request(P.Msg.PUSH, payload)
        assert e.value.code == P.ErrorCode.BAD_PAYLOAD
    assert dev.stats()["monitor"]["windows"] == 0  # nothing was pushed


def test_streaming_with_gaps_and_drift_matches_host_monitor(monitor_device, host_monitor_lib, board):
    dev = monitor_device
    ts, v = scenario()
    out = dev.push(ts, v)
    events = dev.events()

    host = M.Monitor(config(), host_monitor_lib.aiot_monitor_engine_score, host_monitor_lib)
    want = host.run(ts, v)
    want_events = host.events()
    _assert_same_outputs(out, want)
    assert [(e.type, e.seq, e.timestamp_ms, e.channel, e.confidence) for e in events] == \
           [(e.type, e.seq, e.timestamp_ms, e.channel, e.confidence) for e in want_events]
    assert any(e.confidence is not None for e in events if e.type == "ALERT_RAISED")

    # What the input was designed to show, independent of either implementation:
    gap_end = GAP_START * PERIOD + GAP_MS
    gaps = out[(out["flags"] & M.OUT_GAP) != 0]
    assert len(gaps) == 1 and GAP_START * PERIOD <= gaps["t_start_ms"][0] < gaps["t_end_ms"][0] < gap_end
    assert gaps["state"][0] == M.NO_DATA
    types = [e.type for e in events]
    assert "DATA_LOST" in types and "DATA_RESTORED" in types
    # The drifting channel is noticed (tracked, recalibrated or alerted on: the monitor's
    # policy decides which), and nothing points at it before the drift starts.
    drift_start = 450 * PERIOD + GAP_MS
    ch0 = [e for e in events if e.channel == 0]
    assert ch0 and all(e.timestamp_ms >= drift_start for e in ch0)
    assert any(e.type == "ALERT_RAISED" for e in events)
    anomalous = out[out["state"] == M.ANOMALY]
    assert anomalous["t_start_ms"].min() >= 450 * PERIOD + GAP_MS  # no alarm while the plant is clean
    spike = (anomalous["t_end_ms"] >= 800 * PERIOD + GAP_MS) & (anomalous["t_start_ms"] < 830 * PERIOD + GAP_MS)
    assert spike.any()
    stats = dev.stats()
    assert stats["monitor"]["phase"] == "ARMED" and stats["monitor"]["events_dropped"] == 0
    print(f"\n{board.name}: {len(v)} samples -> {len(out)} outputs, {len(events)} events, "
          f"{dev.counters.requests} requests")


def _streams_like_the_host(dev, host_lib, cfg, ts, v):
    """Push (ts, v) into the device configured with ``cfg`` and into a host build of the same
    C and model: the same outputs and the same events. Returns the device's outputs and events."""
    out = dev.push(ts, v)
    events = dev.events()
    host = M.Monitor(cfg, host_lib.aiot_monitor_engine_score, host_lib)
    want = host.run(ts, v)
    _assert_same_outputs(out, want)
    assert [(e.type, e.seq, e.timestamp_ms, e.channel, e.value) for e in events] == \
           [(e.type, e.seq, e.timestamp_ms, e.channel, e.value) for e in host.events()]
    return out, events


def test_the_residual_score_streams_like_the_host_with_the_int8_model(monitor_device, host_monitor_lib):
    """residual_score on the board's generated int8 model: each sensor also scores the model's
    residual of it. Same outputs (states, top channels, scores) and events as the host build of
    the same C and model; the spike on channel 1 (8 noise units) alerts."""
    dev = monitor_device
    cfg = config(level_windows=1, spread_score=1, residual_score=1)
    assert dev.configure(cfg, fresh=True) is True and dev.config.residual_score == 1
    ts, v = scenario()
    out, _ = _streams_like_the_host(dev, host_monitor_lib, cfg, ts, v)
    anomalous = out[out["state"] == M.ANOMALY]
    assert ((anomalous["t_end_ms"] >= 800 * PERIOD + GAP_MS) & (anomalous["t_start_ms"] < 830 * PERIOD + GAP_MS)).any()


def test_window_outputs_are_the_host_builds_bit_for_bit(monitor_device, host_monitor_lib):
    """Issue 19: host and device answer byte for byte the same. Every field of every window
    record, the floats too: the p-value's exponential tail beyond the calibration scores (the
    spike and the step on channel 0 go past them) and the confidence's stability discount
    (the drift moves a baseline) must not hang on the C library's expf, which differs by an
    ULP between glibc and newlib (SKAB, 7 Dec: p_value and confidence in 32 of 34 files)."""
    dev = monitor_device
    ts, v = scenario()
    out = dev.push(ts, v)
    host = M.Monitor(config(), host_monitor_lib.aiot_monitor_engine_score, host_monitor_lib)
    want = host.run(ts, v)
    assert (want["p_value"] < 1.0 / (24 + 1)).any()  # some windows beyond every calibration score
    assert len(out) == len(want)
    differ = np.flatnonzero([a.tobytes() != b.tobytes() for a, b in zip(out, want)])
    assert differ.size == 0, (f"{differ.size} of {len(out)} windows differ, first {differ[0]}: "
                              f"device {out[differ[0]]}, host {want[differ[0]]}")


def test_a_lost_sensor_leaves_the_others_monitored_like_the_host(monitor_device, host_monitor_lib):
    """Channel 2 goes silent for good at sample 300; after channel_lost_minutes (1 here) it is
    lost (CHANNEL_LOST) and the others are scored without it: the spike on channel 1 at 800
    alerts. Same outputs and events as the host build of the same C and model."""
    dev = monitor_device
    cfg = config(channel_lost_minutes=1)
    assert dev.configure(cfg, fresh=True) is True and dev.config.channel_lost_minutes == 1
    ts, v = scenario()
    v[300:, 2] = np.nan
    out, events = _streams_like_the_host(dev, host_monitor_lib, cfg, ts, v)
    assert [e.channel for e in events if e.type == "CHANNEL_LOST"] == [2]
    anomalous = out[out["state"] == M.ANOMALY]
    assert ((anomalous["t_end_ms"] >= 800 * PERIOD + GAP_MS) & (anomalous["t_start_ms"] < 830 * PERIOD + GAP_MS)).any()
    assert (out["flags"][out["t_start_ms"] > 400 * PERIOD + GAP_MS] & M.OUT_PARTIAL).all()


def _events_raw(dev, ack=None):
    payload = struct.pack("<BH", 1, ack) if ack is not None else b"\x00\x00\x00"
    f = dev.request(P.Msg.EVENTS, payload)
    count, pending, size, dropped = struct.unpack_from("<BBHI", f.payload)
    assert size == M.WIRE_EVENT_DTYPE.itemsize  # each record: the event, then its confidence
    return np.frombuffer(f.payload[8:], dtype=M.WIRE_EVENT_DTYPE), pending, dropped


def test_event_buffering_is_retry_safe_and_lossless(monitor_device):
    dev = monitor_device  # fresh installation: empty ring, seqs from 0
    for _ in range(12):
        dev.reset_baseline()  # 12 events wait on the device: more than one batch of 8
    first, pending, dropped = _events_raw(dev)
    again, _, _ = _events_raw(dev)  # a retry without ack (answer "lost"): the same batch
    assert len(first) == 8 and pending == 4 and dropped == 0
    assert first.tobytes() == again.tobytes()
    second, pending, _ = _events_raw(dev, ack=int(first["seq"][-1]))
    assert len(second) == 4 and pending == 0
    again, _, _ = _events_raw(dev, ack=int(first["seq"][-1]))  # retry of the second request
    assert again.tobytes() == second.tobytes()
    assert list(first["seq"]) + list(second["seq"]) == list(range(12))
    assert len(_events_raw(dev, ack=11)[0]) == 0  # all acknowledged: nothing held any more
    assert dev.events() == []


def test_event_ring_overflow_is_counted(monitor_device):
    dev = monitor_device  # fresh installation: empty ring, seqs from 0
    n = M.EVENT_CAPACITY + 4
    for _ in range(n):
        dev.reset_baseline()  # one BASELINE_RESET event each, nothing drained in between
    events = dev.events()
    # The ring keeps the newest EVENT_CAPACITY; the 4 oldest were overwritten and counted.
    assert [e.seq for e in events] == list(range(4, n))
    assert {e.type for e in events} == {"BASELINE_RESET"}
    assert dev.events_dropped == 4


def test_reset_baseline_restarts_commissioning(monitor_device):
    dev = monitor_device
    ts, v = scenario()
    dev.push(ts[:100], v[:100])  # commissioning takes 80 samples
    assert dev.stats()["monitor"]["phase"] != "COMMISSIONING"
    dev.events()
    dev.reset_baseline()
    assert dev.stats()["monitor"]["phase"] == "COMMISSIONING"
    assert [e.type for e in dev.events()] == ["BASELINE_RESET"]


def test_monitor_requests_need_a_configuration(fresh_device):
    for t, payload in ((P.Msg.PUSH, b"\x00\x00\x03\x00"), (P.Msg.EVENTS, b"\x00\x00\x00"), (P.Msg.RESET_BASELINE, b"")):
        with pytest.raises(DeviceError) as e:
            fresh_device.request(t, payload)
        assert e.value.code == P.ErrorCode.MONITOR_ERROR and "CONFIG_SET" in e.value.detail
    assert fresh_device.config is None
    assert fresh_device.stats()["configured"] is False




# ----------------------------------------------------------------- 64 channels (issue 19)
WIDE = 64


@pytest.fixture(scope="module")
def wide_device(pytestconfig):
    """mps2-an386 in QEMU running firmware built for 64 channels, without a model (the
    monitor's baseline score): what a 52-variable process plant needs."""
    import shutil

    from aiot import paths
    from aiot.device.hil import open_device
    from aiot.target.boards import get_board
    from aiot.target.firmware import build

    if pytestconfig.getoption("--transport") != "qemu":
        pytest.skip("builds its own 64-channel firmware: QEMU only")
    if not (shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc")):
        pytest.skip("qemu-system-arm and arm-none-eabi-gcc needed (make setup)")
    board = get_board("mps2-an386")
    elf = build(board, paths.build_dir() / "hil" / "mps2-an386-64ch", None,
                defines=[f"AIOT_MONITOR_MAX_CHANNELS={WIDE}"]).elf
    with open_device(board=board, elf=elf, transport="qemu") as dev:
        yield dev


def zero_model(window):
    return np.zeros_like(window)


def test_sixty_four_channels_commission_and_stream_like_the_host(wide_device):
    """64 sensors through the framed protocol: 16 + 4 x 64 = 268-byte samples (3 per PUSH
    frame), the 1,116-byte configuration with a drift rate bound per sensor (two CONFIG_PART
    frames, read back by offset), and the same outputs and events as the host build of the
    same C. The fault is on channels 48..55 (worst 52), named by the device."""
    dev = wide_device
    # the energy score of each window alone names the worst sensor (52, twice the shift); under the
    # header's level score (level 3, 80 commissioning samples) the first alert named 49 (7 Dec)
    cfg = M.default_config(WIDE, WINDOW, PERIOD, commission_samples=80, calibration_windows=16, clip=30.0,
                           max_drift_rate=[0.25 + c for c in range(WIDE)], level_windows=0, spread_score=0, residual_score=0,
                           score_average=0)
    assert dev.configure(cfg, fresh=True) is True
    assert bytes(dev.config) == bytes(cfg) and dev.config.max_drift_rate[63] == 63.25
    rng = np.random.default_rng(5)
    n = 80 + 16 * WINDOW + 40 * WINDOW
    ts = np.arange(n, dtype=np.int64) * PERIOD
    v = (rng.normal(0, 1, (n, WIDE)) + np.arange(WIDE)).astype(np.float32)
    fault = 80 + 16 * WINDOW + 10 * WINDOW
    v[fault:, 48:56] += 10.0
    v[fault:, 52] += 10.0
    v[30:35, 40] = np.nan  # missing values on a high channel: the mask's upper bytes
    v[50, 63] = 1e20       # garbage among the commissioning samples of the last channel
    out = dev.push(ts, v)
    events = dev.events()

    host = M.Monitor(cfg, zero_model)
    want = host.run(ts, v)
    want_events = host.events()
    _assert_same_outputs(out, want)
    assert [(e.type, e.seq, e.channel, e.value) for e in events] == \
           [(e.type, e.seq, e.channel, e.value) for e in want_events]
    types = [e.type for e in events]
    assert types[:2] == ["COMMISSIONED", "COMMISSION_REJECTED"] and events[1].channel == 63
    raised = [e for e in events if e.type == "ALERT_RAISED"]
    assert raised and raised[0].channel == 52 and raised[0].timestamp_ms >= fault * PERIOD
    stats = dev.stats()
    assert stats["monitor"]["phase"] == "ARMED"
    assert len(stats["channels"]) == WIDE  # every channel's record, over as many STATS answers as it takes
    assert stats["channels"][0]["rejected"] == 0


def test_stats_carry_every_channel_of_a_wide_installation_like_the_host(wide_device):
    """One STATS answer holds 23 channel records (1 KiB frames); the host asks for the rest
    (protocol 1.3: STATS [first channel u8]), so the commissioning outcome of all 64 sensors
    reaches it, equal to the host build's: sensor 50, stuck through commissioning, and 63,
    with a garbage sample, are past the first answer (TEP in QEMU, 7 Dec: report.json had the
    commissioning health of 23 of its 52 sensors, the host build's all 52)."""
    dev = wide_device
    cfg = M.default_config(WIDE, WINDOW, PERIOD, commission_samples=80, calibration_windows=16)
    assert dev.configure(cfg, fresh=True) is True
    rng = np.random.default_rng(11)
    n = 80 + 16 * WINDOW + 4 * WINDOW
    ts = np.arange(n, dtype=np.int64) * PERIOD
    v = (rng.normal(0, 1, (n, WIDE)) + np.arange(WIDE)).astype(np.float32)
    v[:, 50] = 7.0
    v[50, 63] = 1e20
    dev.push(ts, v)
    host = M.Monitor(cfg, zero_model)
    host.run(ts, v)
    records = dev.stats()["channels"]
    assert len(records) == WIDE
    for c in range(WIDE):
        ci = host.channel(c)
        want = {k: getattr(ci, k) for k, _t in M.ChannelInfo._fields_ if k != "reserved"}
        assert records[c] == want, c
    health = host.commissioning()
    assert health[50]["stuck"] and health[63]["rejected_samples"] == 1
    assert not any(h["stuck"] for c, h in enumerate(health) if c != 50)
    with pytest.raises(DeviceError) as e:  # the first channel is one byte
        dev.request(P.Msg.STATS, b"\x17\x00")
    assert e.value.code == P.ErrorCode.BAD_PAYLOAD and "first channel" in e.value.detail


def test_the_spread_score_names_an_oscillating_sensor_like_the_host(wide_device):
    """spread_score on 64 channels: sensor 37 starts oscillating +-6 noise units around its
    level (its window means do not move); the device alerts on it with the same outputs and
    events as the host build."""
    dev = wide_device
    cfg = M.default_config(WIDE, WINDOW, PERIOD, commission_samples=80, calibration_windows=16, clip=30.0,
                           level_windows=1, spread_score=1)
    assert dev.configure(cfg, fresh=True) is True
    assert dev.config.spread_score == 1
    rng = np.random.default_rng(7)
    n = 80 + 16 * WINDOW + 30 * WINDOW
    ts = np.arange(n, dtype=np.int64) * PERIOD
    v = (rng.normal(0, 1, (n, WIDE)) + np.arange(WIDE)).astype(np.float32)
    fault = 80 + 16 * WINDOW + 10 * WINDOW
    v[fault:, 37] += np.where(np.arange(n - fault) % 2 == 0, 6.0, -6.0).astype(np.float32)
    out = dev.push(ts, v)
    events = dev.events()
    host = M.Monitor(cfg, zero_model)
    want = host.run(ts, v)
    _assert_same_outputs(out, want)
    assert [(e.type, e.seq, e.channel, e.value) for e in events] == \
           [(e.type, e.seq, e.channel, e.value) for e in host.events()]
    raised = [e for e in events if e.type == "ALERT_RAISED"]
    assert raised and raised[0].channel == 37 and raised[0].timestamp_ms >= fault * PERIOD


def test_a_truncated_or_out_of_order_configuration_is_refused_and_the_old_one_stays(wide_device):
    """CONFIG_PART (docs/protocol.md): the device applies a set only when the part flagged
    last completes it; otherwise it says why and keeps running the configuration it had."""
    import zlib

    dev = wide_device
    old = M.default_config(WIDE, WINDOW, PERIOD, commission_samples=80, calibration_windows=16)
    assert dev.configure(old, fresh=True) is True
    new = bytes(M.default_config(WIDE, WINDOW, PERIOD, commission_samples=80, calibration_windows=16,
                                 max_drift_rate=[5.0] * WIDE))
    crc, total = zlib.crc32(new), len(new)

    def part(offset: int, end: int, last: bool) -> bytes:
        return P.CONFIG_PART_HEAD.pack(offset, total, crc, P.CONFIG_PART_LAST if last else 0, 0) + new[offset:end]

    first = dev.request(P.Msg.CONFIG_PART, part(0, 500, False)).payload
    assert first == struct.pack("<HBB", 500, 0, 0)  # held, not applied
    with pytest.raises(DeviceError) as e:  # truncated: the last part ends short of the whole
        dev.request(P.Msg.CONFIG_PART, part(500, 1000, True))
    assert e.value.code == P.ErrorCode.BAD_PAYLOAD and f"ends at 1000 of {total}" in e.value.detail
    assert bytes(dev.config) == bytes(old)
    dev.request(P.Msg.CONFIG_PART, part(0, 400, False))
    with pytest.raises(DeviceError) as e:  # out of order: the third part before the second
        dev.request(P.Msg.CONFIG_PART, part(800, total, True))
    assert "out of order" in e.value.detail and "the running configuration stays" in e.value.detail
    assert bytes(dev.config) == bytes(old)
    assert dev.configure(M.unpack_config(new)) is False  # the whole set, in order: a live update
    assert bytes(dev.config) == new
