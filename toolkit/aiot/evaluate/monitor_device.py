"""The device targets: the firmware's monitor (firmware/src/monitor) with the generated
int8 engine as its score function, on the host (aiot.monitor, same C) or in QEMU
(aiot.device.hil over the serial protocol).

The models they run (fleet or per installation, in the monitor's noise units), the monitor
knobs and the firmware image are the product's, in aiot.installation; they are imported
here under the names the evaluation has always used.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aiot.data import Series
from aiot.errors import ToolkitError
from aiot.evaluate.outputs import DeviceEvent, Outputs
from aiot.installation import (  # noqa: F401  (the evaluation's names for the product's pieces)
    EVAL_KNOBS, FLOOR_KNOB, PCA_KNOB, MAX_PERIOD_MS, PERIOD_TOLERANCE, RECIPE, SEGMENT_ROWS,
    _device_normalized, config_knobs, device_file_model, device_fleet_model, firmware_elf, firmware_sources_sha,
    firmware_size, fleet_floors, fleet_spread, floored_noise, installation_config, installation_period_ms, normal_only,
    min_commissioning_rows, monitor_knobs, validated_knobs)


#: Rows pushed between two drains of the device's event ring, in windows: the ring
#: (AIOT_MONITOR_EVENT_CAPACITY, 16) overwrites its oldest event when full. A window emits
#: a few events (per-sensor ones at most one per sensor), so draining after every window
#: keeps them all on a device of a few sensors; one of many sensors can still fill the ring
#: in one window (52 sensors lost at once), which the device counts (events_dropped) and
#: the report says.
DRAIN_WINDOWS = 1


def _unwrap_ms(t_u32: np.ndarray, near_ms: int) -> np.ndarray:
    """Device times (32-bit milliseconds, wrapping every 49.7 days), in the order the device
    gave them within a run of rising time, as times on the recording's clock: each wrap adds
    2**32, and the first lands in the 2**32 period nearest ``near_ms`` (the run's start)."""
    t = t_u32.astype(np.int64)
    if not t.size:
        return t
    wraps = np.concatenate([[0], np.cumsum(np.diff(t) < 0)])
    first = int(round((near_ms - int(t[0])) / 2**32))
    return t + (first + wraps) * 2**32


def _rows_from_windows(ts_ms: np.ndarray, outs: np.ndarray, channels: int, since_ms: int | None = None) -> Outputs:
    """Each row carries the newest window output the device had emitted by that row's time.
    ``ts_ms``: the rows' times on the recording's clock (ms, one run of rising time); the
    outputs' device times are unwrapped onto it (:func:`_unwrap_ms`), from ``since_ms``, the
    time of the first sample behind them (default: the first row's)."""
    from aiot import monitor as M

    n = ts_ms.size
    t_end = _unwrap_ms(outs["t_end_ms"], since_ms if since_ms is not None else int(ts_ms[0]) if n else 0)
    idx = np.searchsorted(t_end, ts_ms, side="right") - 1 if len(outs) else np.full(n, -1)
    score, conf = np.full(n, np.nan), np.zeros(n)
    alert = np.zeros(n, np.int8)
    chs = np.zeros((n, channels))
    rows = np.flatnonzero(idx >= 0)
    o = outs[idx[rows]]
    # state names by code: the monitor's states, then "commissioning" (learning) and "warmup" (no output yet)
    names = [s.lower() for s in M.STATES] + ["commissioning", "warmup"]
    code = np.full(n, len(names) - 1)
    code[rows] = np.where(o["flags"] & M.OUT_LEARNING, len(names) - 2, o["state"])
    score[rows] = o["score"]
    conf[rows] = o["confidence"]
    alert[rows] = (o["flags"] & M.OUT_ALERT) != 0
    top = o["top_channels"][:, 0].astype(np.int64)
    named = (top != M.NO_CHANNEL) & (top < channels)
    chs[rows[named], top[named]] = 1.0
    return Outputs([names[k] for k in code.tolist()], score, conf, alert, chs)


def _host_library(model_dir: Path, memo: bool = False):
    """The host build of the monitor with ``model_dir``'s generated engine; ``memo``: its
    engine served through the score memo (firmware/port/host/score_memo.c, its own library)."""
    import ctypes

    from aiot import monitor as M
    from aiot.codegen import engine_sources
    from aiot.paths import FIRMWARE
    from aiot.target import hostbuild

    c_dir = Path(model_dir) / "c"
    sources = [c_dir / "model.c", *engine_sources(), M.engine_adapter_source()]
    if not memo:
        return M.library(sources, include_dirs=[c_dir], name="aiot_eval_monitor")
    path = hostbuild.compile_shared([*M.monitor_sources(), *sources, FIRMWARE / "port" / "host" / "score_memo.c"],
                                    name="aiot_eval_monitor_memo", include_dirs=[c_dir],
                                    defines=(*M.DEFINES, "AIOT_APP_UPDATE"))
    lib = M._load(str(path))
    lib.aiot_score_memo_reset.argtypes = [ctypes.c_size_t, ctypes.c_size_t]
    lib.aiot_score_memo_counts.argtypes = [ctypes.POINTER(ctypes.c_uint64)]
    return lib


class ScoreMemo:
    """One model's engine with a memo of its outputs by their exact int8 inputs, for running
    many alert settings over the same recording (:mod:`aiot.evaluate.tuning`). The monitor C
    runs whole for every setting; an input the engine has already answered (every byte
    equal) gets that answer back without running the engine again, so the outputs are those
    of the plain build, byte for byte. One memo per model (its library's state); memory
    2 x ``limit`` x the model's input bytes at most; :meth:`clear` empties it (between
    recordings)."""

    def __init__(self, model_dir: Path, capacity: int = 1 << 14, limit: int = 1 << 18):
        self.model_dir = Path(model_dir).resolve()
        self.lib = _host_library(model_dir, memo=True)
        self.capacity, self.limit = capacity, limit
        self.clear()

    def clear(self) -> None:
        if self.lib.aiot_score_memo_reset(self.capacity, self.limit) != 0:
            raise MemoryError(f"score memo of {self.capacity} inputs")

    def counts(self) -> dict:
        import ctypes

        out = (ctypes.c_uint64 * 3)()
        self.lib.aiot_score_memo_counts(out)
        return {"hits": int(out[0]), "misses": int(out[1]), "not_stored": int(out[2])}

    def close(self) -> None:
        self.lib.aiot_score_memo_reset(0, 0)

    def __enter__(self) -> "ScoreMemo":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class MonitorDevice:
    """The monitor + generated int8 engine; ``backend`` "host" (ctypes) or a board (QEMU).

    Built at commissioning time, when the installation's channels and sample period are
    known; commissioning = pushing the first rows (the monitor learns on the device).
    """

    def __init__(self, model_dir: Path, window: int, backend: str = "host", knobs: dict | None = None,
                 firmware: str | None = None, memo: ScoreMemo | None = None):
        if memo is not None and backend != "host":
            raise ToolkitError("a score memo runs on the host build only", hint="use backend host")
        if memo is not None and memo.model_dir != Path(model_dir).resolve():
            raise ToolkitError(f"the score memo holds {memo.model_dir}'s reconstructions, not {model_dir}'s",
                               hint="one ScoreMemo per model")
        self.memo = memo
        self.target = backend
        self.firmware = firmware
        self.model_dir = Path(model_dir)
        self.window = window
        self.knobs = config_knobs(self.model_dir, knobs)
        self.dev = None
        self.config = None
        self.channels = 0
        self._t0 = None
        self._pending = None
        self.events: list[DeviceEvent] = []  #: every event drained so far, placed in the recording

    def _open(self, head: Series) -> None:
        from aiot import monitor as M

        self.channels = len(head.channels)
        self.config = installation_config(head, self.window, self.knobs)
        if self.target == "host":
            lib = _host_library(self.model_dir) if self.memo is None else self.memo.lib
            self.dev = M.SimulatedDevice(self.config, lib.aiot_monitor_engine_score, lib)
        elif self.target.startswith("qemu:"):
            from aiot.target.boards import get_board
            from aiot.device.hil import open_device

            board = get_board(self.target.split(":", 1)[1])
            elf = Path(self.firmware) if self.firmware else firmware_elf(self.model_dir, board.name)
            self._ctx = open_device(board, elf)
            self.dev = self._ctx.__enter__()
            self.dev.configure(self.config, fresh=True)
        else:
            raise ToolkitError(f"unknown device target '{self.target}'", hint="use host or qemu:BOARD")

    def close(self) -> None:
        ctx, self._ctx = getattr(self, "_ctx", None), None
        if ctx is not None:
            ctx.__exit__(None, None, None)

    def _ms(self, series: Series, rows: slice) -> np.ndarray:
        if self._t0 is None:
            self._t0 = float(series.timestamps[0])
        return np.round((series.timestamps[rows] - self._t0) * 1000.0).astype(np.int64)

    def _values(self, series: Series, rows: slice) -> np.ndarray:
        return np.where(series.valid[rows], series.values[rows], np.nan)

    def commission(self, head: Series) -> dict:
        """Push the commissioning rows but the labelled ones: the installation commissions on its
        normal running (:func:`normal_only`); to the device they are a stretch without samples."""
        self._open(head)
        ts = self._ms(head, slice(0, head.rows))
        vals = self._values(head, slice(0, head.rows))
        keep = np.ones(head.rows, bool) if head.labels is None else np.asarray(head.labels) == 0
        self._pending = self._push(ts[keep], vals[keep], np.flatnonzero(keep))  # commissioning + calibration on the device
        return {"monitor_config": self.config.as_dict(), "commissioning_outputs": int(len(self._pending)),
                "commissioning": self._commissioning()}

    def _push(self, ts: np.ndarray, vals: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """Push rows (``rows``: their numbers in the file) and return the window outputs, draining the
        device's events every DRAIN_WINDOWS windows of rows (the host build and a board at the
        same rows, so both drop the same events if any): into :attr:`events`, each at the row
        it came with. A board says in each PUSH answer whether events wait (no EVENTS request
        when none do); the host build is drained every time (a function call)."""
        from aiot import monitor as M

        step = max(1, DRAIN_WINDOWS * self.window)
        outs = []
        mon = getattr(self.dev, "monitor", None)  # the host build: its samples packed once, pushed a step at a time
        rec = mon.samples(ts, vals) if mon is not None else None
        for a in range(0, ts.size, step):
            b = min(a + step, ts.size)
            if mon is not None:
                outs.append(mon.push_records(rec[a:b]))
                drained = mon.events()
            else:
                outs.append(self.dev.push(ts[a:b], vals[a:b]))
                drained = self.dev.events() if self.dev.events_pending else []
            self.events.extend(self._place(ev, ts[a:b], rows[a:b]) for ev in drained)
        # filled in place: concatenating a structured dtype checks its fields once per part
        whole, k = np.empty(sum(len(o) for o in outs), dtype=M.OUTPUT_DTYPE), 0
        for o in outs:
            whole[k : k + len(o)] = o
            k += len(o)
        return whole

    def _place(self, ev, ts: np.ndarray, rows: np.ndarray) -> DeviceEvent:
        """``ev`` (emitted while the file's ``rows`` with times ``ts`` were pushed) at its row
        and its time in the recording's clock: device time is 32-bit milliseconds since the
        file's first row, unwrapped to the rows' own (they can be before it after a time reset)."""
        ms = int(_unwrap_ms(np.array([ev.timestamp_ms], np.uint32), int(ts[-1]))[0])
        i = int(np.clip(np.searchsorted(ts, ms, side="right") - 1, 0, ts.size - 1))
        return DeviceEvent(row=int(rows[i]), time=self._t0 + ms / 1000.0, type=ev.type, channel=ev.channel,
                           channels=tuple(ev.channels), value=float(ev.value), severity=int(ev.severity),
                           state=ev.state, seq=int(ev.seq))

    def _events_dropped(self) -> int:
        """Events the device's ring overwrote before they were drained (its stats)."""
        mon = getattr(self.dev, "monitor", None)  # the host build
        if mon is not None:
            return int(mon.stats()["events_dropped"])
        return int(self.dev.stats().get("monitor", {}).get("events_dropped", 0))

    def _commissioning(self) -> list[dict]:
        """Per channel: samples the device rejected while commissioning, stuck or not (report.json)."""
        from aiot import monitor as M

        mon = getattr(self.dev, "monitor", None)  # the host build
        if mon is not None:
            return mon.commissioning()
        return [M.channel_health(M.ChannelInfo(**{k: v for k, v in ch.items()}))  # a board: its STATS records
                for ch in self.dev.stats().get("channels", [])]

    def stream(self, series: Series, start: int) -> Outputs:
        ts = self._ms(series, slice(start, series.rows))
        vals = self._values(series, slice(start, series.rows))
        # a clock that steps back is a time reset on the device (TIME_RESET; it goes on from the
        # new time). Outputs are matched to rows by time, which only works within a run of rising
        # time (device time is 32-bit and wraps: _unwrap_ms): each run is pushed on its own so its
        # outputs are known. Pushing the whole stream gives the same outputs, but a step back
        # shorter than a window leaves no mark in their times to cut them apart again.
        cuts = [0, *(np.flatnonzero(np.diff(ts) < 0) + 1).tolist(), ts.size]
        parts = []
        try:
            for a, b in zip(cuts[:-1], cuts[1:]):
                outs = self._push(ts[a:b], vals[a:b], np.arange(start + a, start + b))
                since = None
                if a == 0 and self._pending is not None:  # the commissioning's outputs, from its first row
                    outs, since = np.concatenate([self._pending, outs]), 0
                parts.append(_rows_from_windows(ts[a:b], outs, self.channels, since))
            dropped = self._events_dropped()
        finally:
            self.close()
        out = parts[0] if len(parts) == 1 else Outputs(
            [x for p in parts for x in p.state], *(np.concatenate([getattr(p, f) for p in parts])
                                                  for f in ("score", "confidence", "alert", "channel_scores")))
        out.events, out.events_dropped = self.events, dropped
        return out
