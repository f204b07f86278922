"""The device app (firmware/src/app/app.c) built for the host and driven in-process: request
dispatch without QEMU, and the build-time monitor configuration (AIOT_APP_CHANNELS/WINDOW/
PERIOD_MS), which the QEMU suite's firmware does not use."""

from __future__ import annotations

import ctypes
import shutil
import struct
import tempfile

import numpy as np
import pytest

from aiot.target import hostbuild
from aiot import paths
from aiot import monitor as M
from aiot.device import protocol as P

PORT = paths.FIRMWARE / "port" / "host" / "port.c"


class HostApp:
    """The device app compiled for the host; ``model_c``: generated model C to build in
    (default: without a model)."""

    def __init__(self, *defines: str, include_dirs: tuple = (), model_c=None):
        from aiot.codegen import engine_sources

        fw = paths.FIRMWARE
        srcs = [PORT, *sorted((fw / "src" / "protocol").glob("*.c")), fw / "src" / "app" / "app.c",
                fw / "src" / "monitor" / "monitor.c"]
        model = ["AIOT_NO_MODEL=1"]
        if model_c is not None:
            srcs += [model_c / "model.c", fw / "src" / "monitor" / "engine_adapter.c", *engine_sources()]
            include_dirs, model = (*include_dirs, model_c), []
        so = hostbuild.compile_shared(srcs, name="aiot_app_host", include_dirs=[fw / "src", *include_dirs],
                                      defines=[*model, 'AIOT_BOARD_NAME="host"', "AIOT_CPU_HZ=1000000u",
                                               *defines])
        # A private copy: dlopen() of the same path shares one instance (and its statics).
        self._dir = tempfile.TemporaryDirectory()
        private = shutil.copy(so, f"{self._dir.name}/libapp.so")
        self.lib = hostbuild.load(private)
        self.lib.host_feed.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        self.lib.host_take.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
        self.lib.host_take.restype = ctypes.c_size_t
        self.lib.aiot_app_init()
        self.seq = 0

    def feed(self, data: bytes) -> int:
        return self.lib.host_feed(data, len(data))

    def frames(self) -> list:
        buf = ctypes.create_string_buffer(1 << 16)
        n = self.lib.host_take(buf, len(buf))
        return P.StreamDecoder().feed(buf.raw[:n])

    def request(self, type_: int, payload: bytes = b"") -> P.Frame:
        self.seq = (self.seq + 1) & 0xFF
        assert self.feed(P.encode_frame(type_, self.seq, payload)) == -1
        got = self.frames()
        assert len(got) == 1 and got[0].seq == self.seq, got
        return got[0]


def test_info_without_model():
    app = HostApp()
    f = app.request(P.Msg.INFO)
    assert f.type == P.Msg.INFO | P.RESPONSE
    info = P.unpack_info(f.payload)
    assert (info.board, info.model_name, info.has_model, info.has_monitor) == ("host", "", False, True)
    assert (info.tick_hz, info.cpu_hz, info.max_payload) == (1_000_000, 1_000_000, 1024)
    err = app.request(P.Msg.INFER, b"\x01")
    assert err.type == P.Msg.ERROR and P.unpack_error(err.payload)[:2] == (P.ErrorCode.NO_MODEL, P.Msg.INFER)


def test_unconfigured_by_default():
    app = HostApp()
    f = app.request(P.Msg.CONFIG_GET)
    assert f.payload[0] == 0 and set(f.payload[4:]) == {0}


def test_build_time_monitor_configuration():
    app = HostApp("AIOT_APP_CHANNELS=2", "AIOT_APP_WINDOW=4", "AIOT_APP_PERIOD_MS=100")
    f = app.request(P.Msg.CONFIG_GET)
    assert f.payload[0] == 1
    cfg = M.unpack_config(f.payload[4:])  # the app is built for 8 channels
    assert (cfg.num_channels, cfg.window, cfg.sample_period_ms) == (2, 4, 100)
    assert bytes(cfg) == bytes(M.default_config(2, 4, 100))  # the monitor's defaults otherwise
    # PUSH works without a CONFIG_SET: 8 samples at 100 ms -> 2 windows.
    recs = b"".join(struct.pack("<IB2f", 100 * i, 0b11, 1.0, 2.0) for i in range(8))
    f = app.request(P.Msg.PUSH, struct.pack("<HBB", 8, 2, 0) + recs)
    consumed, n_out, _pending = struct.unpack_from("<HBB", f.payload)
    out = np.frombuffer(f.payload[4:], M.OUTPUT_DTYPE)
    assert consumed == 8 and n_out == 2 and list(out["t_start_ms"]) == [0, 400] and list(out["t_end_ms"]) == [300, 700]


def test_boot_configuration_from_the_header_aiot_commission_writes(tmp_path):
    """Built with AIOT_APP_BOOT_CONFIG the app boots with the generated configuration, every
    field bit for bit (floats written as exact hexadecimal literals), and takes samples
    without a CONFIG_SET."""
    from aiot.commission import HEADER, render_boot_config

    cfg = M.default_config(3, 4, 250, alert_margin=2.5, clear_margin=2.25, persist_k=2, persist_n=4,
                           recover_ratio=0.9, commission_samples=8, calibration_windows=4,
                           level_windows=0, spread_score=0, residual_score=0,  # 8 commissioning samples: too few for the level score
                           noise_floor=[0.1, 0.0, 1e-7], noise_floor_rel=[1e-3, 0.3333333, 0.0])
    (tmp_path / HEADER).write_text(render_boot_config(cfg))
    app = HostApp("AIOT_APP_BOOT_CONFIG", include_dirs=(tmp_path,))
    f = app.request(P.Msg.CONFIG_GET)
    assert f.payload[0] == 1
    got = M.unpack_config(f.payload[4:])  # the app is built for 8 channels
    assert bytes(got) == bytes(cfg) and bytes(got) != bytes(M.default_config(3, 4, 250))
    recs = b"".join(struct.pack("<IB3f", 250 * i, 0b111, 1.0, 2.0, 3.0) for i in range(8))
    f = app.request(P.Msg.PUSH, struct.pack("<HBB", 8, 3, 0) + recs)
    consumed, n_out, _pending = struct.unpack_from("<HBB", f.payload)
    assert consumed == 8 and n_out == 2  # commissioning: 2 windows of 4 (learning) answered


def test_exit_answers_then_stops():
    app = HostApp()
    assert app.feed(P.encode_frame(P.Msg.EXIT, 9, b"\x2a")) == 42
    got = app.frames()
    assert got == [P.Frame(P.Msg.EXIT | P.RESPONSE, 9, b"")]
    bad = app.request(P.Msg.EXIT, b"")
    assert P.unpack_error(bad.payload)[0] == P.ErrorCode.BAD_PAYLOAD


def test_link_counters_count_each_kind_of_broken_frame():
    app = HostApp()
    wire = bytearray(P.encode_frame(P.Msg.INFO, 1))
    wire[-2] ^= 0x10  # CRC
    app.feed(bytes(wire) + b"\x05\x01\x02\x00" + b"\x03\x01\x05\x01\x00")  # + truncated block + too short
    app.feed(P.encode_frame(P.Msg.INFO, 2, b"\x01" * 1100))                # too large
    app.frames()
    app.request(0x33)                                                       # unknown type
    f = app.request(P.Msg.STATS)
    link = struct.unpack_from("<8I", f.payload, 4 + f.payload[2])
    frames_ok, bad_crc, bad_length, bad_encoding, too_large, unknown, bad_payload, other = link
    assert (bad_crc, bad_length, bad_encoding, too_large, unknown, bad_payload) == (1, 1, 1, 1, 1, 0)
    assert frames_ok == 2  # the unknown-type request and this STATS


def test_config_set_then_get_round_trips_the_clear_band():
    """A setting added to the table travels in CONFIG_SET and comes back in CONFIG_GET;
    a band beyond its bound is refused by the device itself, naming it."""
    app = HostApp()
    cfg = M.default_config(2, 4, 100, clear_band=7)
    f = app.request(P.Msg.CONFIG_SET, M.pack_config(cfg, 8) + b"\x01")
    assert f.type == P.Msg.CONFIG_SET | P.RESPONSE
    got = M.unpack_config(app.request(P.Msg.CONFIG_GET).payload[4:])
    assert got.clear_band == 7 and bytes(got) == bytes(cfg)
    cfg.clear_band = 12  # past its bound: only the C can refuse it here
    f = app.request(P.Msg.CONFIG_SET, M.pack_config(cfg, 8))
    code, req, detail = P.unpack_error(f.payload)
    assert (code, req) == (P.ErrorCode.BAD_PAYLOAD, P.Msg.CONFIG_SET) and "clear_band" in detail
    assert M.unpack_config(app.request(P.Msg.CONFIG_GET).payload[4:]).clear_band == 7


def test_config_set_then_get_round_trips_the_spread_score():
    """spread_score travels in CONFIG_SET and comes back; without a per-sensor score
    (level_windows 0) the device itself refuses it, naming the rule."""
    app = HostApp()
    cfg = M.default_config(2, 4, 100, level_windows=1, spread_score=1)
    f = app.request(P.Msg.CONFIG_SET, M.pack_config(cfg, 8) + b"\x01")
    assert f.type == P.Msg.CONFIG_SET | P.RESPONSE
    got = M.unpack_config(app.request(P.Msg.CONFIG_GET).payload[4:])
    assert got.spread_score == 1 and bytes(got) == bytes(cfg)
    cfg.level_windows = 0
    f = app.request(P.Msg.CONFIG_SET, M.pack_config(cfg, 8))
    code, req, detail = P.unpack_error(f.payload)
    assert (code, req) == (P.ErrorCode.BAD_PAYLOAD, P.Msg.CONFIG_SET) and "spread_score needs level_windows" in detail
    assert M.unpack_config(app.request(P.Msg.CONFIG_GET).payload[4:]).spread_score == 1


def test_switching_the_spread_score_starts_a_fresh_installation():
    """Its commissioned window spreads and calibration set belong to the score: a CONFIG_SET
    that only switches it is a new installation (answer 1), never refused as a live update."""
    app = HostApp()
    cfg = M.default_config(2, 4, 100, level_windows=1, spread_score=0)  # off, then switched on
    assert app.request(P.Msg.CONFIG_SET, M.pack_config(cfg, 8) + b"\x01").payload == b"\x01"
    cfg.alert_margin = 4.0  # a live knob: updated in place
    assert app.request(P.Msg.CONFIG_SET, M.pack_config(cfg, 8)).payload == b"\x00"
    cfg.spread_score = 1
    f = app.request(P.Msg.CONFIG_SET, M.pack_config(cfg, 8))
    assert f.type == P.Msg.CONFIG_SET | P.RESPONSE and f.payload == b"\x01"
    assert M.unpack_config(app.request(P.Msg.CONFIG_GET).payload[4:]).spread_score == 1


def _invalid_config() -> bytes:
    cfg = M.default_config(2, 4, 100)
    cfg.persist_k = cfg.persist_n + 1
    return M.pack_config(cfg, 8)  # the app is built for 8 channels


@pytest.mark.parametrize("payload,why", [
    (b"", "CONFIG_SET takes"),
    (b"\x00" * 10, "CONFIG_SET takes"),
    (_invalid_config(), "invalid monitor configuration"),
    (_invalid_config() + b"\x02", "CONFIG_SET takes"),  # fresh flag must be 0 or 1
])
def test_config_set_refusals(payload, why):
    app = HostApp()
    f = app.request(P.Msg.CONFIG_SET, payload)
    code, req, detail = P.unpack_error(f.payload)
    assert (code, req) == (P.ErrorCode.BAD_PAYLOAD, P.Msg.CONFIG_SET) and why in detail
    assert app.request(P.Msg.CONFIG_GET).payload[0] == 0  # still unconfigured
