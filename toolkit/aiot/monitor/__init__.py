"""Python side of the on-device monitor (firmware/src/monitor): the very same C, built for
the host and driven through ctypes, plus the scorers and a simulated device to test against.

    from aiot.monitor import Monitor, PcaScorer
    mon = Monitor(channels=4, window=16, sample_period_ms=10_000, scorer=my_scorer)
    out = mon.run(timestamps_ms, values)        # values: (N, C) float, NaN = missing
    for ev in mon.events(): ...
"""

from __future__ import annotations

import ctypes
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from aiot.errors import ToolkitError
from aiot.paths import FIRMWARE

#: The host build's capacity: the widest a device can be built (a 52-sensor plant fits).
#: A firmware built for fewer channels takes the same settings packed for its capacity
#: (:func:`pack_config`).
MAX_CHANNELS = 64
#: AIOT_MONITOR_MAX_CHANNELS of a device build that does not set it (monitor.h)
DEVICE_CAPACITY = 8
MAX_WINDOW = 32
MAX_CALIBRATION = 64
MAX_AVERAGE = 16  #: AIOT_MONITOR_MAX_AVERAGE (monitor.h)
MAX_LEVEL = 8  #: AIOT_MONITOR_MAX_LEVEL (monitor.h)
EVENT_CAPACITY = 16
MAX_OUTPUTS_PER_PUSH = 2
NO_CHANNEL = 0xFF
def capacity_defines(channels: int) -> list[str]:
    """The -D a device image needs to hold ``channels`` sensors: none up to the default
    capacity (those images stay as they were), else AIOT_MONITOR_MAX_CHANNELS = ``channels``
    rounded up to even: a sample (monitor.h aiot_sample_t, 16 + 4 x capacity bytes on the
    wire) has a 64-bit mask, so an odd capacity would pad it and monitor.c refuses that. The
    spare slot is never used (num_channels says how many are)."""
    return [f"AIOT_MONITOR_MAX_CHANNELS={channels + channels % 2}"] if channels > DEVICE_CAPACITY else []


DEFINES = (
    f"AIOT_MONITOR_MAX_CHANNELS={MAX_CHANNELS}",
    f"AIOT_MONITOR_MAX_WINDOW={MAX_WINDOW}",
    f"AIOT_MONITOR_MAX_CALIBRATION={MAX_CALIBRATION}",
    f"AIOT_MONITOR_EVENT_CAPACITY={EVENT_CAPACITY}",
)

STATES = ("NORMAL", "ANOMALY", "NO_DATA", "DRIFT", "RECALIBRATING", "RECOVERING")
NORMAL, ANOMALY, NO_DATA, DRIFT, RECALIBRATING, RECOVERING = range(6)
PHASES = ("COMMISSIONING", "CALIBRATING", "ARMED")
EVENT_TYPES = {
    1: "COMMISSIONED",
    2: "CALIBRATED",
    3: "ALERT_RAISED",
    4: "ALERT_CLEARED",
    5: "SEVERITY_CHANGED",
    6: "DRIFT_DETECTED",
    7: "RECAL_STARTED",
    8: "RECAL_DONE",
    9: "RECAL_REJECTED",
    10: "BASELINE_LIMIT",
    11: "DATA_LOST",
    12: "DATA_RESTORED",
    13: "BASELINE_RESET",
    14: "RECOVERING",
    15: "COMMISSION_REJECTED",
    16: "CHANNEL_STUCK",
    17: "CALIBRATION_ALERT",
    18: "DRIFT_PERSISTENT",
    19: "TIME_RESET",
    20: "CHANNEL_LOST",
    21: "CHANNEL_BACK",
    22: "RECAL_GAIN",
    23: "ALERT_HELD",
}
#: aiot_monitor_channel_info_t.health flags
CH_STUCK, CH_CAL_ALERT, CH_NOT_COMMISSIONED, CH_LOST = 0x01, 0x02, 0x04, 0x08
OUT_LEARNING, OUT_GAP, OUT_SCORE_ERROR, OUT_ALERT, OUT_VOTE, OUT_PARTIAL = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20


def monitor_sources() -> list[Path]:
    """C sources of the monitor without the engine adapter (which needs a model)."""
    return [FIRMWARE / "src" / "monitor" / "monitor.c"]


def engine_adapter_source() -> Path:
    return FIRMWARE / "src" / "monitor" / "engine_adapter.c"


# ----------------------------------------------------------------- the settings table
#: The one declaration of every setting is the X-macro table in monitor.h
#: (AIOT_MONITOR_SETTINGS, AIOT_MONITOR_CHANNEL_SETTINGS); Python reads it from there.
HEADER = FIRMWARE / "include" / "aiot" / "monitor.h"
_C_TYPES = {"uint8_t": ctypes.c_uint8, "uint16_t": ctypes.c_uint16, "uint32_t": ctypes.c_uint32,
            "float": ctypes.c_float}
FLT_MAX = float(np.finfo(np.float32).max)
RANGE_CLOSED, RANGE_LO_OPEN, RANGE_HI_OPEN = 0, 1, 2


@dataclass(frozen=True)
class Setting:
    """One row of monitor.h's settings table."""

    name: str
    ctype: type
    default: float | int
    low: float | int
    high: float | int
    bounds: int  #: RANGE_CLOSED, RANGE_LO_OPEN or RANGE_HI_OPEN
    meaning: str
    per_channel: bool


def _c_value(text: str) -> float | int:
    """A literal or macro of the table as a number (what the host build sees)."""
    text = text.strip()
    names = {"AIOT_MONITOR_MAX_CHANNELS": MAX_CHANNELS, "AIOT_MONITOR_MAX_WINDOW": MAX_WINDOW,
             "AIOT_MONITOR_MAX_CALIBRATION": MAX_CALIBRATION, "AIOT_MONITOR_MAX_AVERAGE": MAX_AVERAGE,
             "AIOT_MONITOR_MAX_LEVEL": MAX_LEVEL, "FLT_MAX": FLT_MAX}
    if text in names:
        return names[text]
    if text.lower().startswith("0x"):
        return int(text.rstrip("uU"), 16)
    if re.fullmatch(r"[0-9]+[uU]?", text):
        return int(text.rstrip("uU"))
    return float(np.float32(float(text.rstrip("fF"))))


def _table(header_text: str, macro: str, per_channel: bool) -> list[Setting]:
    m = re.search(rf"#define {macro}\(X\)((?:.*\\\n)*.*\n)", header_text)
    if not m:
        raise ToolkitError(f"{HEADER}: no {macro}(X) table", hint="the firmware/ folder and the toolkit differ; reinstall")
    body = m.group(1).replace("\\\n", " ")
    row = re.compile(r'X\((\w+),\s*(\w+),\s*([^,]+),\s*([^,]+),\s*([^,]+),\s*AIOT_(RANGE_\w+),\s*"((?:[^"\\]|\\.)*)"\)')
    bounds = {"RANGE_CLOSED": RANGE_CLOSED, "RANGE_LO_OPEN": RANGE_LO_OPEN, "RANGE_HI_OPEN": RANGE_HI_OPEN}
    return [Setting(name, _C_TYPES[ctype], _c_value(d), _c_value(lo), _c_value(hi), bounds[b], doc, per_channel)
            for name, ctype, d, lo, hi, b, doc in row.findall(body)]


@lru_cache(maxsize=1)
def settings() -> tuple[Setting, ...]:
    """Every monitor setting in struct order, scalars then per-channel arrays (monitor.h)."""
    text = HEADER.read_text()
    return (*_table(text, "AIOT_MONITOR_SETTINGS", False), *_table(text, "AIOT_MONITOR_CHANNEL_SETTINGS", True))


def config_type(capacity: int = MAX_CHANNELS) -> type[ctypes.Structure]:
    """aiot_monitor_config_t of a build with AIOT_MONITOR_MAX_CHANNELS = ``capacity``."""
    return _config_type(int(capacity))


@lru_cache(maxsize=None)
def _config_type(capacity: int) -> type[ctypes.Structure]:
    fields = [(s.name, s.ctype * capacity if s.per_channel else s.ctype) for s in settings()]
    return type(f"Config{capacity}", (_ConfigBase,), {"_fields_": fields, "capacity": capacity})


class _ConfigBase(ctypes.Structure):
    """aiot_monitor_config_t: the fields are monitor.h's settings table, in its order."""

    capacity: int

    def as_dict(self) -> dict[str, float | int | list[float]]:
        """Every field but the padding; per-channel arrays as lists of the used channels."""
        out: dict = {}
        for name, kind in self._fields_:
            if name == "reserved":
                continue
            v = getattr(self, name)
            out[name] = [float(x) for x in v[: self.num_channels]] if hasattr(kind, "_length_") else v
        return out


#: The host build's config struct (capacity MAX_CHANNELS).
Config = config_type(MAX_CHANNELS)
_PER_CHANNEL_BYTES = sum(ctypes.sizeof(s.ctype) for s in settings() if s.per_channel)
#: the settings before the per-channel arrays, with the padding the C puts before them
_SCALAR_BYTES = ctypes.sizeof(config_type(1)) - _PER_CHANNEL_BYTES


def pack_config(cfg, capacity: int) -> bytes:
    """``cfg`` as the bytes a firmware built for ``capacity`` channels takes (CONFIG_SET)."""
    if cfg.num_channels > capacity:
        raise ToolkitError(f"{cfg.num_channels} channels configured; this firmware was built for at most {capacity}",
                           hint="rebuild it with AIOT_MONITOR_MAX_CHANNELS = \"64\" in the board file's [defines] "
                                "table (docs/monitor.md, 'Up to 64 sensors')")
    out = config_type(capacity)()
    for name, kind in type(cfg)._fields_:
        v = getattr(cfg, name)
        if hasattr(kind, "_length_"):
            getattr(out, name)[: cfg.num_channels] = list(v[: cfg.num_channels])
        else:
            setattr(out, name, v)
    return bytes(out)


def config_capacity(size: int) -> int:
    """The channel capacity of a firmware from the size of its aiot_monitor_config_t."""
    n, rest = divmod(size - _SCALAR_BYTES, _PER_CHANNEL_BYTES)
    if rest or not 1 <= n <= 64:
        raise ToolkitError(f"a monitor configuration of {size} bytes matches no build of this monitor.h",
                           hint="rebuild the firmware with this toolkit (aiot build)")
    return n


def unpack_config(data: bytes):
    """A device's config bytes (any capacity) as the host :data:`Config`."""
    src = config_type(config_capacity(len(data))).from_buffer_copy(data)
    out = Config()
    for name, kind in type(src)._fields_:
        v = getattr(src, name)
        if hasattr(kind, "_length_"):
            getattr(out, name)[: src.capacity] = list(v)
        else:
            setattr(out, name, v)
    return out


class ChannelInfo(ctypes.Structure):
    _fields_ = [
        ("baseline", ctypes.c_float),
        ("baseline0", ctypes.c_float),
        ("noise", ctypes.c_float),
        ("error_ref", ctypes.c_float),
        ("last_error", ctypes.c_float),
        ("last_deviation", ctypes.c_float),
        ("last_rest", ctypes.c_float),
        ("deviation_sd", ctypes.c_float),
        ("leverage", ctypes.c_float),
        ("mode", ctypes.c_uint8),
        ("health", ctypes.c_uint8),  # CH_* flags
        ("rejected", ctypes.c_uint16),  # commissioning samples rejected
    ]


class Stats(ctypes.Structure):
    _fields_ = [
        ("phase", ctypes.c_uint8),
        ("state", ctypes.c_uint8),
        ("alert", ctypes.c_uint8),
        ("events_pending", ctypes.c_uint8),
        ("windows", ctypes.c_uint32),
        ("rejected_samples", ctypes.c_uint32),
        ("score_errors", ctypes.c_uint32),
        ("events_dropped", ctypes.c_uint32),
        ("time_resets", ctypes.c_uint32),
    ]


def channel_health(info: ChannelInfo) -> dict:
    """The commissioning outcome and calibration state of one channel (ChannelInfo)."""
    return {"rejected_samples": int(info.rejected), "stuck": bool(info.health & CH_STUCK),
            "not_commissioned": bool(info.health & CH_NOT_COMMISSIONED),
            "calibration_alert": bool(info.health & CH_CAL_ALERT),
            "baseline": float(info.baseline0), "noise": float(info.noise)}


# numpy views of the wire structs (little-endian, packed exactly like the C layout).
SAMPLE_DTYPE = np.dtype([("timestamp_ms", "<u4"), ("reserved", "<u4"), ("valid_mask", "<u8"),
                         ("value", "<f4", (MAX_CHANNELS,))])
OUTPUT_DTYPE = np.dtype(
    [
        ("t_start_ms", "<u4"),
        ("t_end_ms", "<u4"),
        ("state", "u1"),
        ("severity", "u1"),
        ("flags", "u1"),
        ("top_channels", "u1", (3,)),
        ("reserved", "<u2"),
        ("score", "<f4"),
        ("p_value", "<f4"),
        ("confidence", "<f4"),
        ("quality", "<f4"),
    ]
)
EVENT_DTYPE = np.dtype(
    [
        ("timestamp_ms", "<u4"),
        ("seq", "<u2"),
        ("type", "u1"),
        ("channel", "u1"),
        ("channel_mask", "u1"),
        ("severity", "u1"),
        ("state", "u1"),
        ("channel_ext", "u1"),
        ("value", "<f4"),
    ]
)
#: One record of an EVENTS answer (docs/protocol.md): the event, then the confidence of the
#: window that emitted it (-1: none). Firmware built before it sends EVENT_DTYPE records.
WIRE_EVENT_DTYPE = np.dtype(EVENT_DTYPE.descr + [("confidence", "<f4")])
assert OUTPUT_DTYPE.itemsize == 32 and EVENT_DTYPE.itemsize == 16 and WIRE_EVENT_DTYPE.itemsize == 20

SCORE_FN = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ctypes.c_size_t, ctypes.POINTER(ctypes.c_float)
)

#: A Python scorer reconstructs one window: (window, channels) float32 -> same shape.
Scorer = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Event:
    timestamp_ms: int
    seq: int
    type: str
    channel: int | None
    channels: tuple[int, ...]
    severity: int
    state: str
    value: float
    #: the confidence of the window whose scoring emitted it; None when no scored window did
    #: (or the device's firmware predates the field)
    confidence: float | None = None

    @classmethod
    def from_record(cls, r, confidence: float = -1.0) -> "Event":
        """The event of one EVENT_DTYPE record with ``confidence`` (negative: none), or of one
        WIRE_EVENT_DTYPE record, which carries it."""
        conf = float(r["confidence"]) if "confidence" in (r.dtype.names or ()) else float(confidence)
        return cls(
            timestamp_ms=int(r["timestamp_ms"]), seq=int(r["seq"]),
            type=EVENT_TYPES.get(int(r["type"]), f"UNKNOWN_{int(r['type'])}"),
            channel=None if r["channel"] == NO_CHANNEL else int(r["channel"]),
            channels=event_channels(r),
            severity=int(r["severity"]),
            state=STATES[int(r["state"])] if int(r["state"]) < len(STATES) else str(int(r["state"])),
            value=float(r["value"]),
            confidence=conf if conf >= 0.0 else None,
        )


def event_channels(rec) -> tuple[int, ...]:
    """The channels an event record names (aiot_monitor_event_t in monitor.h): a bitmask of
    channels 0..7 when channel_ext is 0, else `channel` plus up to two channel numbers."""
    mask, ext = int(rec["channel_mask"]), int(rec["channel_ext"])
    if not ext & 0x80:
        return tuple(c for c in range(8) if mask >> c & 1)
    named = {int(rec["channel"]), mask, ext & 0x7F} - {NO_CHANNEL, 0x7F}
    return tuple(sorted(named))


def _declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    vp, sz = ctypes.c_void_p, ctypes.c_size_t
    lib.aiot_monitor_sizeof.restype = sz
    lib.aiot_monitor_config_sizeof.restype = sz
    lib.aiot_monitor_default_config.argtypes = [ctypes.POINTER(Config), ctypes.c_uint8, ctypes.c_uint8, ctypes.c_uint32]
    lib.aiot_monitor_check_config.argtypes = [ctypes.POINTER(Config)]
    lib.aiot_monitor_config_problem.argtypes = [ctypes.POINTER(Config)]
    lib.aiot_monitor_config_problem.restype = ctypes.c_char_p
    lib.aiot_monitor_init.argtypes = [vp, ctypes.POINTER(Config), vp, vp]
    lib.aiot_monitor_update_config.argtypes = [vp, ctypes.POINTER(Config)]
    lib.aiot_monitor_push.argtypes = [vp, vp, vp, sz]
    lib.aiot_monitor_push_batch.argtypes = [vp, vp, sz, vp, sz, ctypes.POINTER(sz)]
    lib.aiot_monitor_pop_event.argtypes = [vp, vp]
    lib.aiot_monitor_pop_event_confidence.argtypes = [vp, vp, ctypes.POINTER(ctypes.c_float)]
    lib.aiot_monitor_reset_baseline.argtypes = [vp]
    lib.aiot_monitor_reset_baseline.restype = None
    lib.aiot_monitor_channel_info.argtypes = [vp, ctypes.c_uint8, ctypes.POINTER(ChannelInfo)]
    lib.aiot_monitor_stats.argtypes = [vp, ctypes.POINTER(Stats)]
    lib.aiot_monitor_stats.restype = None
    return lib


@lru_cache(maxsize=None)
def _load(path: str) -> ctypes.CDLL:
    from aiot.target import hostbuild

    return _declare(hostbuild.load(Path(path)))


def library(extra_sources: Sequence[Path | str] = (), include_dirs: Iterable[Path | str] = (), name: str = "aiot_monitor") -> ctypes.CDLL:
    """Host build of the monitor (plus e.g. engine + model.c + engine adapter), loaded once."""
    from aiot.target import hostbuild

    path = hostbuild.compile_shared(
        [*monitor_sources(), *extra_sources], name=name, include_dirs=include_dirs, defines=DEFINES
    )
    return _load(str(path))


#: Each knob's allowed range, from monitor.h's settings table (the very bounds
#: aiot_monitor_check_config applies): (low, high, low_open, high_open); high None = any
#: finite value. Integer fields are also bounded by their C type (checked before packing:
#: ctypes would wrap -1 into 255 silently). Cross-field rules are in :data:`KNOB_ORDER_RULES`.
_TYPE_MAX = {ctypes.c_uint8: 0xFF, ctypes.c_uint16: 0xFFFF, ctypes.c_uint32: 0xFFFFFFFF, ctypes.c_float: FLT_MAX}
KNOB_RANGES: dict[str, tuple[float | None, float | None, bool, bool]] = {
    s.name: (s.low, None if s.high >= _TYPE_MAX[s.ctype] else s.high, s.bounds == RANGE_LO_OPEN,
             s.bounds == RANGE_HI_OPEN)
    for s in settings() if s.name != "reserved"
}
#: (smaller, larger): the knob ``smaller`` must not exceed ``larger`` (monitor.c).
KNOB_ORDER_RULES = (("persist_k", "persist_n"), ("clear_margin", "alert_margin"),
                    ("severity_major", "severity_critical"), ("step_threshold", "max_recal_step"))
_UINT_MAX = {ctypes.c_uint8: 0xFF, ctypes.c_uint16: 0xFFFF, ctypes.c_uint32: 0xFFFFFFFF}


def _range_text(lo, hi, lo_open: bool, hi_open: bool, top: int | None = None) -> str:
    def n(x) -> str:
        return str(int(x)) if float(x).is_integer() else f"{x:g}"

    hi = top if hi is None else hi
    if hi is None:
        return f"{'>' if lo_open else '>='} {n(lo)}"
    return f"{n(lo)}{' (exclusive)' if lo_open else ''} .. {n(hi)}{' (exclusive)' if hi_open else ''}"


def check_knob(key: str, value) -> float | int | list[float]:
    """One monitor knob checked against its allowed range (:data:`KNOB_RANGES`, the C type
    of its field), as the C will see it (floats rounded to float32); returns the value to
    pack: an int for integer fields, a float, or a list of floats for per-channel fields.
    The error names the knob, the value given and the allowed range."""
    fields = dict(Config._fields_)
    if key not in fields or key == "reserved":
        raise ToolkitError(f"unknown monitor knob {key!r}",
                           hint="known knobs: " + ", ".join(k for k in fields if k != "reserved"))
    kind = fields[key]
    lo, hi, lo_open, hi_open = KNOB_RANGES[key]
    if hasattr(kind, "_length_") and isinstance(value, dict):  # per-channel, by sensor name
        if not value or not all(isinstance(name, str) and name for name in value):
            raise ToolkitError(f"monitor knob {key!r} is {value!r}, expected {{sensor column: number, ...}} "
                               "('*': every other sensor)")
        return dict(zip(value, check_knob(key, list(value.values()))))
    if hasattr(kind, "_length_"):  # per-channel
        vals = [value] if np.ndim(value) == 0 else list(value)
        if not vals:
            raise ToolkitError(f"monitor knob {key!r} is {value!r}, expected a number (or one per channel)")
        out = []
        for v in vals:
            if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
                raise ToolkitError(f"monitor knob {key!r} is {value!r}, expected a number (or one per channel)")
            f = float(np.float32(v))
            if not (np.isfinite(f) and f >= lo and (hi is None or f <= hi)):
                raise ToolkitError(f"monitor knob {key!r} is {value!r}; each value must be finite and "
                                   + (f">= {lo:g}" if hi is None else f"in {_range_text(lo, hi, lo_open, hi_open)}"))
            out.append(f)
        return out if np.ndim(value) else out[0]
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ToolkitError(f"monitor knob {key!r} is {value!r}, expected a number")
    if kind in _UINT_MAX:  # integer fields: counts, flags
        top = _UINT_MAX[kind]
        if not np.isfinite(float(value)) or float(value) != int(value):
            raise ToolkitError(f"monitor knob {key!r} is {value!r}, expected a whole number "
                               f"in {_range_text(lo, hi, lo_open, hi_open, top)}")
        v = int(value)
        if v < lo or v > (top if hi is None else min(hi, top)):
            raise ToolkitError(f"monitor knob {key!r} is {value!r}; allowed: "
                               f"{_range_text(lo, hi, lo_open, hi_open, top)}")
        return v
    f = float(np.float32(value))  # what the C compares
    ok = bool(np.isfinite(f)) and (f > lo if lo_open else f >= lo)  # inf would switch the monitor off
    if ok and hi is not None:
        ok = f < hi if hi_open else f <= hi
    if not ok:
        raise ToolkitError(f"monitor knob {key!r} is {value!r}; allowed: {_range_text(lo, hi, lo_open, hi_open)}"
                           + (" (finite)" if hi is None else ""))
    return f


def by_sensor(knobs: dict, sensors: Sequence[str]) -> dict:
    """``knobs`` with every per-sensor setting given by sensor name (``{"pressure": 2.0,
    "*": 0.5}``: ``*`` is every sensor not named, else the setting's default) as one value
    per sensor of ``sensors``, in their order. A name that is not a sensor is an error."""
    out = dict(knobs)
    table = {s.name: s for s in settings()}
    for key, value in knobs.items():
        if not isinstance(value, dict) or key not in table or not table[key].per_channel:
            continue
        unknown = sorted(set(value) - set(sensors) - {"*"})
        if unknown:
            raise ToolkitError(f"monitor knob {key!r} names {', '.join(map(repr, unknown))}, not a sensor of this "
                               f"recording (its sensors: {', '.join(sensors)})",
                               hint="name sensor columns as the CSV header spells them, or '*' for every other one")
        rest = value.get("*", table[key].default)
        out[key] = [value.get(name, rest) for name in sensors]
    return out


def default_config(channels: int, window: int, sample_period_ms: int, **knobs: float | int) -> Config:
    """The C defaults (aiot_monitor_default_config) with ``knobs`` overridden. Every knob is
    checked on its own (:func:`check_knob`) and against the knobs it is ordered with
    before it is packed, so an error names the knob, the value and the allowed range."""
    if not 1 <= channels <= MAX_CHANNELS:
        raise ToolkitError(f"{channels} channels requested; the monitor handles 1..{MAX_CHANNELS}",
                           hint="merge or drop sensors")
    if not 2 <= window <= MAX_WINDOW:
        raise ToolkitError(f"window of {window} samples requested; the monitor handles 2..{MAX_WINDOW}")
    period_hi = KNOB_RANGES["sample_period_ms"][1]
    if not 1 <= sample_period_ms <= period_hi:
        raise ToolkitError(f"sample period {sample_period_ms} ms is outside 1..{period_hi} ms",
                           hint="give the sensors' sampling period in milliseconds")
    cfg = Config()
    library().aiot_monitor_default_config(ctypes.byref(cfg), channels, window, int(sample_period_ms))
    fields = dict(Config._fields_)
    checked = {}
    for key, value in knobs.items():
        try:
            checked[key] = check_knob(key, value)
        except ToolkitError as e:
            raise ToolkitError(f"invalid monitor configuration: {e.message}",
                               hint=e.hint or "see the knob ranges in firmware/include/aiot/monitor.h") from None
    for key, value in checked.items():
        kind = fields[key]
        if isinstance(value, dict):
            raise ToolkitError(f"monitor knob {key!r} is given by sensor name ({value!r}); here the sensors "
                               f"have no names", hint="give one value, or one per channel")
        if hasattr(kind, "_length_"):  # per-channel: one value for every channel, or one per channel
            vals = [value] * channels if np.ndim(value) == 0 else list(value)
            if len(vals) != channels:
                raise ToolkitError(f"monitor knob {key!r} has {len(vals)} values for {channels} channels",
                                   hint="give one value, or one per channel")
            value = kind(*vals)
        setattr(cfg, key, value)
    for small, large in KNOB_ORDER_RULES:
        a, b = getattr(cfg, small), getattr(cfg, large)
        if small in checked or large in checked:
            if not a <= b:
                def given(k: str, v) -> str:
                    return f"{k} {knobs[k]!r}" if k in knobs else f"{k} {v:g} (the default)"
                raise ToolkitError(f"invalid monitor configuration: {given(small, a)} is more than {given(large, b)}; "
                                   f"{small} must be at most {large}",
                                   hint="see the knob ranges in firmware/include/aiot/monitor.h")
    if cfg.level_windows and cfg.commission_samples < (cfg.level_windows + 1) * window:
        raise ToolkitError(
            f"invalid monitor configuration: level_windows {cfg.level_windows} needs at least "
            f"{(cfg.level_windows + 1) * window} commissioning samples ({cfg.level_windows + 1} windows of {window}: "
            f"the spread of {cfg.level_windows}-window means needs two of them); commission_samples is "
            f"{cfg.commission_samples}", hint="commission on more samples, or lower level_windows")
    if cfg.spread_score and not cfg.level_windows:
        raise ToolkitError("invalid monitor configuration: spread_score 1 needs level_windows > 0 (the spread z "
                           "is taken beside each sensor's level z; the energy score has none)",
                           hint="add level_windows 1 (the per-sensor level score), or leave spread_score 0")
    if cfg.residual_score and not cfg.level_windows:
        raise ToolkitError(f"invalid monitor configuration: residual_score {cfg.residual_score} needs level_windows > 0 "
                           "(the residual z is taken beside each sensor's level z; the energy score has none)",
                           hint="add level_windows 1 (the per-sensor level score), or leave residual_score 0")
    problem = config_problem(cfg)
    if problem:
        raise ToolkitError(f"{problem} (monitor refused: {cfg.as_dict()})",
                           hint="see the settings table in firmware/include/aiot/monitor.h")
    return cfg


def config_problem(cfg) -> str | None:
    """What the device would say of ``cfg`` (aiot_monitor_config_problem), or None if valid."""
    r = library().aiot_monitor_config_problem(ctypes.byref(cfg))
    return r.decode() if r else None


class Monitor:
    """One installation of the device monitor (C state in a ctypes buffer).

    ``scorer`` is either a Python callable reconstructing a (window, channels) array, or a
    native C function pointer (e.g. ``lib.aiot_monitor_engine_score``) from ``lib``.
    """

    def __init__(self, config: Config, scorer: Scorer | ctypes._CFuncPtr, lib: ctypes.CDLL | None = None):
        self.lib = lib or library()
        self.config = config
        self._state = ctypes.create_string_buffer(self.lib.aiot_monitor_sizeof())
        self._scorer_error: BaseException | None = None
        if callable(scorer) and not isinstance(scorer, ctypes._CFuncPtr):
            self._fn = SCORE_FN(self._trampoline(scorer))
            fn_ptr = ctypes.cast(self._fn, ctypes.c_void_p)
        else:
            self._fn = scorer
            fn_ptr = ctypes.cast(scorer, ctypes.c_void_p)
        if self.lib.aiot_monitor_init(self._state, ctypes.byref(config), fn_ptr, None) != 0:
            raise ToolkitError(f"invalid monitor configuration: {config.as_dict()}")

    def _trampoline(self, scorer: Scorer) -> Callable[..., int]:
        W, C = self.config.window, self.config.num_channels

        def call(_ctx: int, feats: ctypes.POINTER(ctypes.c_float), n: int, recon: ctypes.POINTER(ctypes.c_float)) -> int:
            try:
                x = np.ctypeslib.as_array(feats, shape=(n,)).reshape(W, C)
                y = np.asarray(scorer(x.copy()), dtype=np.float32).reshape(n)
                np.ctypeslib.as_array(recon, shape=(n,))[:] = y
                return 0
            except BaseException as e:  # an exception must not cross the C frames
                self._scorer_error = e
                return -2

        return call

    # ------------------------------------------------------------- pushing samples
    def samples(self, timestamps_ms: np.ndarray, values: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        """Pack arrays into aiot_sample_t records (NaN or valid=False means missing)."""
        values = np.asarray(values, dtype=np.float32)
        C = self.config.num_channels
        if values.ndim != 2 or values.shape[1] != C:
            raise ToolkitError(f"values have shape {values.shape}; expected (samples, {C})")
        ts = np.asarray(timestamps_ms)
        if ts.shape != (values.shape[0],):
            raise ToolkitError(f"{ts.shape[0] if ts.ndim else 0} timestamps for {values.shape[0]} samples")
        # NaN = missing; +-inf is sent as present, as a broken sensor would: the monitor treats
        # it as missing too, and counts it when it falls among the commissioning samples.
        present = ~np.isnan(values) if valid is None else (np.asarray(valid, bool) & ~np.isnan(values))
        rec = np.zeros(values.shape[0], dtype=SAMPLE_DTYPE)
        rec["timestamp_ms"] = (ts.astype(np.int64) & 0xFFFFFFFF).astype(np.uint32)
        rec["valid_mask"] = (present.astype(np.uint64) << np.arange(C, dtype=np.uint64)).sum(axis=1, dtype=np.uint64)
        rec["value"][:, :C] = np.where(present, values, 0.0)
        return rec

    def run(self, timestamps_ms: np.ndarray, values: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        """Push a whole stream; returns the outputs as an OUTPUT_DTYPE array."""
        rec = self.samples(timestamps_ms, values, valid)
        return self.push_records(rec)

    def push_records(self, rec: np.ndarray) -> np.ndarray:
        rec = np.ascontiguousarray(rec, dtype=SAMPLE_DTYPE)
        chunk = 4096
        outs: list[np.ndarray] = []
        # sized to the push: aiot.evaluate pushes a window at a time (it drains events in between)
        buf = np.zeros(min(chunk, len(rec)) * MAX_OUTPUTS_PER_PUSH, dtype=OUTPUT_DTYPE)
        i = 0
        while i < len(rec):
            part = rec[i : i + chunk]
            consumed = ctypes.c_size_t(0)
            n = self.lib.aiot_monitor_push_batch(
                self._state, part.ctypes.data, len(part), buf.ctypes.data, len(buf), ctypes.byref(consumed)
            )
            self._raise_scorer_error()
            if n < 0:
                raise ToolkitError(f"monitor rejected the samples (status {n})")
            outs.append(buf[:n].copy())
            i += consumed.value
        return np.concatenate(outs) if outs else np.zeros(0, dtype=OUTPUT_DTYPE)

    def push(self, timestamp_ms: int, values: Sequence[float], valid: Sequence[bool] | None = None) -> np.ndarray:
        """Push one sample; returns 0..2 outputs."""
        rec = self.samples(np.array([timestamp_ms]), np.asarray([values], dtype=np.float32),
                           None if valid is None else np.asarray([valid]))
        out = np.zeros(MAX_OUTPUTS_PER_PUSH, dtype=OUTPUT_DTYPE)
        n = self.lib.aiot_monitor_push(self._state, rec.ctypes.data, out.ctypes.data, len(out))
        self._raise_scorer_error()
        if n < 0:
            raise ToolkitError(f"monitor rejected the sample at {timestamp_ms} ms (status {n})")
        return out[:n].copy()

    def _raise_scorer_error(self) -> None:
        if self._scorer_error is not None:
            err, self._scorer_error = self._scorer_error, None
            if isinstance(err, ToolkitError):
                raise err
            raise ToolkitError(f"the scorer raised {type(err).__name__}: {err}",
                               hint="the window was reported as NO_DATA; fix the scorer") from err

    # ------------------------------------------------------------- inspection
    def events(self) -> list[Event]:
        """Drain the ring buffer (oldest first)."""
        out: list[Event] = []
        ev = np.zeros(1, dtype=EVENT_DTYPE)
        conf = ctypes.c_float()
        while self.lib.aiot_monitor_pop_event_confidence(self._state, ev.ctypes.data, ctypes.byref(conf)):
            out.append(Event.from_record(ev[0], conf.value))
        return out

    def stats(self) -> dict[str, int | str]:
        st = Stats()
        self.lib.aiot_monitor_stats(self._state, ctypes.byref(st))
        return {
            "phase": PHASES[st.phase],
            "state": STATES[st.state],
            "alert": st.alert,
            "events_pending": st.events_pending,
            "windows": st.windows,
            "rejected_samples": st.rejected_samples,
            "score_errors": st.score_errors,
            "events_dropped": st.events_dropped,
            "time_resets": st.time_resets,
        }

    def channel(self, c: int) -> ChannelInfo:
        info = ChannelInfo()
        if self.lib.aiot_monitor_channel_info(self._state, c, ctypes.byref(info)) != 0:
            raise ToolkitError(f"channel {c} out of range 0..{self.config.num_channels - 1}")
        return info

    def commissioning(self) -> list[dict]:
        """Per channel, what commissioning made of it (for report.json): the samples it
        rejected (spikes, outliers, non-finite), whether it looked stuck, whether it could
        not be commissioned, and whether its drift compensation hit its tolerance since."""
        return [channel_health(self.channel(c)) for c in range(self.config.num_channels)]

    def update_config(self, **knobs: float | int) -> None:
        cfg = Config.from_buffer_copy(self.config)
        fields = dict(Config._fields_)
        for k, v in knobs.items():
            v = check_knob(k, v)
            if hasattr(fields.get(k), "_length_"):  # per-channel: one value, or one per channel
                vals = [v] * cfg.num_channels if np.ndim(v) == 0 else list(v)
                if len(vals) != cfg.num_channels:
                    raise ToolkitError(f"monitor knob {k!r} has {len(vals)} values for {cfg.num_channels} channels")
                getattr(cfg, k)[: cfg.num_channels] = vals
            else:
                setattr(cfg, k, v)
        if self.lib.aiot_monitor_update_config(self._state, ctypes.byref(cfg)) != 0:
            raise ToolkitError(f"monitor refused the new knobs {knobs}",
                               hint="structural knobs (channels, window, period, learning lengths) need a new Monitor")
        self.config = cfg

    def reset_baseline(self) -> None:
        self.lib.aiot_monitor_reset_baseline(self._state)


# ----------------------------------------------------------------- scorers
class PcaScorer:
    """Linear autoencoder (PCA) over flattened windows: a small, dependency-free model that
    speaks the same reconstruction contract as the int8 engine."""

    def __init__(self, mean: np.ndarray, components: np.ndarray):
        self.mean = np.asarray(mean, np.float32)
        self.components = np.asarray(components, np.float32)  # (k, W*C), orthonormal rows

    @classmethod
    def fit(cls, windows: np.ndarray, k: int = 8) -> "PcaScorer":
        x = np.asarray(windows, np.float64).reshape(len(windows), -1)
        if len(x) <= k:
            raise ToolkitError(f"{len(x)} training windows for {k} components", hint="give it more normal data")
        mean = x.mean(axis=0)
        _, _, vt = np.linalg.svd(x - mean, full_matrices=False)
        return cls(mean, vt[:k])

    def __call__(self, window: np.ndarray) -> np.ndarray:
        x = window.reshape(-1).astype(np.float32) - self.mean
        return (self.mean + (x @ self.components.T) @ self.components).reshape(window.shape)


def extract_windows(config: Config, timestamps_ms: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Feature windows exactly as the device normalizes them (after commissioning), for
    training: (n_windows, window, channels). Uses a pass-through model, so no adaptation."""
    captured: list[np.ndarray] = []

    def capture(x: np.ndarray) -> np.ndarray:
        captured.append(x.copy())
        return x

    Monitor(config, capture).run(timestamps_ms, values)
    if not captured:
        return np.zeros((0, config.window, config.num_channels), np.float32)
    return np.stack(captured)


class SimulatedDevice:
    """What a board running the monitor firmware looks like to the host: push batches of
    samples, get outputs, drain events, reset the baseline. The QEMU/serial device offers
    the same methods, so evaluations can run against either."""

    name = "host"

    def __init__(self, config: Config, scorer: Scorer | ctypes._CFuncPtr, lib: ctypes.CDLL | None = None,
                 batch: int = 64):
        self.monitor = Monitor(config, scorer, lib)
        self.config = config
        self.batch = batch
        self._events: list[Event] = []

    def push(self, timestamps_ms: np.ndarray, values: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
        """Send the samples in PUSH-sized batches, draining events after each like a host."""
        rec = self.monitor.samples(timestamps_ms, values, valid)
        outs = []
        for i in range(0, len(rec), self.batch):
            outs.append(self.monitor.push_records(rec[i : i + self.batch]))
            self._events.extend(self.monitor.events())
        return np.concatenate(outs) if outs else np.zeros(0, dtype=OUTPUT_DTYPE)

    def events(self) -> list[Event]:
        out, self._events = self._events + self.monitor.events(), []
        return out

    def reset_baseline(self) -> None:
        self.monitor.reset_baseline()
