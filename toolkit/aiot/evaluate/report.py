"""Write what an evaluation found: predictions.csv (one row per sample), report.json
(settings, per-file incidents, alerts and the device's events, pooled metrics) and
report.html (a self-contained page a person reads: hand-written SVG per file on a dated time
axis, no plotting dependency, and what the device reported)."""

from __future__ import annotations

import csv
import html
import json
import math
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from aiot.data import GAP_FACTOR, format_time
from aiot.evaluate import events as device_events
from aiot.evaluate.metrics import Confusion
from aiot.evaluate.pipeline import FileResult


def _t(series, row: int) -> str | float:
    ts = float(series.timestamps[row])
    return format_time(ts) if series.iso_time else ts


def _num(x: float | None, nd: int = 6) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return round(float(x), nd)


def write_predictions(path: Path, results: list[FileResult]) -> Path:
    """file, timestamp, label, state, score, confidence, alert per row (commissioning rows too)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["file", "timestamp", "label", "state", "score", "confidence", "alert"])
        for r in results:
            s, o, start = r.recording.series, r.outputs, r.start
            labels = r.recording.labels
            for row in range(s.rows):
                t = _t(s, row)
                if row < start:
                    w.writerow([r.recording.name, t, int(labels[row]), "commissioning", "", "", 0])
                    continue
                i = row - start
                sc = o.score[i]
                w.writerow([
                    r.recording.name, t, int(labels[row]), o.state[i],
                    f"{sc:.6g}" if math.isfinite(sc) else "", f"{o.confidence[i]:.3f}", int(o.alert[i]),
                ])
    return path


def file_json(r: FileResult) -> dict:
    s = r.recording.series
    return {
        "file": r.recording.name,
        "rows": s.rows,
        "commissioning_rows": r.start,
        "test_rows": s.rows - r.start,
        "channels": s.channels,
        "commissioning": {k: v for k, v in r.commissioning.items() if k != "normalization"},
        "metrics": r.confusion.as_dict(),
        "false_alarms_by_phase": {k: v.as_dict() for k, v in r.phases.items()},
        "nab": None if r.nab is None else {**r.nab.__dict__},
        "nab_every_alert_row": None if r.nab_rows is None else {**r.nab_rows.__dict__},
        "incidents": [
            {
                "start": _t(s, i.start), "end": _t(s, i.end), "start_row": i.start, "end_row": i.end,
                "detected": i.detected,
                "first_alert": None if i.first_alert is None else _t(s, i.first_alert),
                "delay_rows": i.delay_rows, "delay_s": _num(i.delay_s, 3),
            }
            for i in r.incidents
        ],
        "alerts": [
            {
                "start": _t(s, a.start), "end": _t(s, a.end), "start_row": a.start, "end_row": a.end,
                "true": a.true, "sensors": a.sensors,
            }
            for a in r.alerts
        ],
        # what the device's monitor emitted from the start of commissioning (evaluate/events.py)
        **device_events.file_events(s, r.outputs),
        "notes": r.recording.meta,
    }


def write_json(path: Path, results: list[FileResult], summary: dict, settings: dict, context: dict) -> Path:
    doc = {"settings": settings, **context, "aggregate": summary, "files": [file_json(r) for r in results]}
    path.write_text(json.dumps(doc, indent=2, default=_default) + "\n", encoding="utf-8")
    return path


def _default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return None if not np.isfinite(o) else float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


# -- HTML: drawing ------------------------------------------------------------------
# Every panel of a file shares one time axis; traces are drawn at one pixel column each
# (min and max of the rows the column covers), so the page stays light for long
# recordings and a one-row spike still shows.

_WIDTH, _LEFT, _RIGHT = 940, 84, 12
PLOT_COLUMNS = _WIDTH - _LEFT - _RIGHT  #: pixel columns a trace is drawn at
_SCORE_H, _SENSOR_H, _LANE_H, _CAPTION = 110, 52, 14, 15
_MAX_SENSORS = 6
_MAX_LISTED = 50  #: alerts listed under a figure (all of them are in report.json)

COLOURS = {
    "score": "#1c3d7a", "trace": "#1c7ed6", "threshold": "#e8590c", "commissioning": "#ececec",
    "incident_detected": "#d3f9d8", "incident_missed": "#ffe3e3", "alert_true": "#2f9e44",
    "alert_false": "#e03131", "label": "#868e96", "frame": "#adb5bd", "grid": "#f1f3f5",
    "sensor_lost": "#0b7285",
}

#: State lane colours; when a pixel column holds several states the first listed wins
#: (an ANOMALY row is never hidden by the NORMAL rows around it).
STATE_COLOURS = {
    "anomaly": "#c92a2a", "no_data": "#212529", "gap": "#495057", "recovering": "#fcc419",
    "drift": "#4c6ef5", "recalibrating": "#ae3ec9", "commissioning": "#adb5bd", "warmup": "#dee2e6",
    "normal": "#b2f2bb",
}
_OTHER_STATE = "#e9ecef"

#: What each state means, for the legend (the monitor's states: docs/monitor.md).
STATE_WORDS = {
    "normal": "scored, no alert", "anomaly": "alert latched", "recovering": "alert ended on its way back, "
    "still off normal (no alert)", "drift": "a sensor's baseline is being tracked",
    "recalibrating": "a sensor re-learns its level after a step", "no_data": "too few valid samples or a gap",
    "gap": "no complete window (timestamp gap)", "commissioning": "commissioning / calibration (learning)",
    "warmup": "first window still filling",
}


def pixel_columns(t: np.ndarray, t0: float, t1: float, width: int = PLOT_COLUMNS) -> np.ndarray:
    """The pixel column (0..width-1) each timestamp falls in, on an axis from t0 to t1."""
    span = max(float(t1) - float(t0), 1e-12)
    return np.clip(((np.asarray(t, float) - t0) / span * width).astype(np.int64), 0, width - 1)


def min_max_columns(values: np.ndarray, cols: np.ndarray, width: int = PLOT_COLUMNS) -> tuple[np.ndarray, np.ndarray]:
    """(min, max) of the finite values in each pixel column; NaN where a column holds none."""
    v = np.asarray(values, float)
    ok = np.isfinite(v)
    lo, hi = np.full(width, np.inf), np.full(width, -np.inf)
    np.minimum.at(lo, cols[ok], v[ok])
    np.maximum.at(hi, cols[ok], v[ok])
    lo[~np.isfinite(lo)] = np.nan
    hi[~np.isfinite(hi)] = np.nan
    return lo, hi


def bridged_columns(t: np.ndarray, cols: np.ndarray, period: float, width: int = PLOT_COLUMNS) -> np.ndarray:
    """Columns no row falls in only because the rows are sparser than the pixels (True), as
    opposed to a real gap in the recording (a step longer than GAP_FACTOR sample periods)."""
    out = np.zeros(width, bool)
    empty = np.nonzero(np.bincount(cols, minlength=width)[:width] == 0)[0]
    if empty.size == 0 or np.any(np.diff(cols) < 0):
        return out
    after = np.searchsorted(cols, empty, side="left")
    ok = (after > 0) & (after < cols.size)
    step = np.full(empty.size, np.inf)
    step[ok] = t[after[ok]] - t[after[ok] - 1]
    out[empty] = step <= GAP_FACTOR * period
    return out


def _trace(lo: np.ndarray, hi: np.ndarray, y, colour: str, cls: str, bridged: np.ndarray | None = None) -> str:
    """One vertical stroke per column from its min to its max, stretched to meet the previous
    column's range so the trace reads as a line; broken where the recording has a gap or the
    value is missing."""
    d, prev = [], None
    for c in range(lo.size):
        if not np.isfinite(lo[c]):
            if bridged is None or not bridged[c]:
                prev = None
            continue
        a, b = float(lo[c]), float(hi[c])
        if prev is not None:
            a, b = min(a, prev[1]), max(b, prev[0])
        y1, y2 = y(b), y(a)
        if y2 - y1 < 1:
            y2 = y1 + 1
        d.append(f"M{_LEFT + c + 0.5:.1f} {y1:.1f}V{y2:.1f}")
        prev = (float(lo[c]), float(hi[c]))
    return (f'<path class="{cls}" d="{"".join(d)}" stroke="{colour}" stroke-width="1" fill="none" '
            f'shape-rendering="crispEdges"/>') if d else ""


def _line(x: np.ndarray, v: np.ndarray, y, broken: np.ndarray, colour: str, cls: str) -> str:
    """Fewer rows than pixel columns: a line through the rows themselves, broken where a value
    is missing or the recording has a gap (``broken``: the step into that row is one)."""
    d, pen = [], False
    for i in range(v.size):
        if not np.isfinite(v[i]):
            pen = False
            continue
        d.append(f"{'L' if pen and not broken[i] else 'M'}{x[i]:.1f} {y(float(v[i])):.1f}")
        pen = True
    return f'<path class="{cls}" d="{"".join(d)}" stroke="{colour}" stroke-width="1" fill="none"/>' if d else ""


def _nice_step(span: float, n: int) -> float:
    raw = span / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    return next((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), 10 * mag)


def _fmt(v: float) -> str:
    """An axis value: 25,000 / 25.8 / 0.026 / 1.2e-05."""
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e9 or a < 1e-3:
        return f"{v:.3g}"
    return f"{v:,.0f}" if a >= 1000 else f"{v:.4g}"


def linear_ticks(lo: float, hi: float, n: int = 3) -> list[float]:
    """Round values spanning lo..hi (about n of them)."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo] if math.isfinite(lo) else []
    step = _nice_step(hi - lo, n)
    first = math.ceil(lo / step - 1e-9) * step
    return [round(first + k * step, 12) for k in range(int((hi - first) / step + 1e-9) + 1)]


_TIME_STEPS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 2 * 3600, 3 * 3600, 6 * 3600,
               12 * 3600, 86400, 2 * 86400, 7 * 86400, 14 * 86400, 30 * 86400)


def time_ticks(t0: float, t1: float, dated: bool, most: int = 9) -> list[tuple[float, str, str]]:
    """(time, label, date under it or "") for an axis from t0 to t1: round clock times (UTC)
    when ``dated``, round numbers otherwise; the date is written under the first tick and
    wherever the day changes."""
    span = max(t1 - t0, 1e-9)
    if dated:
        step = next((s for s in _TIME_STEPS if span / s <= most), _TIME_STEPS[-1] * math.ceil(span / most / _TIME_STEPS[-1]))
    else:
        step = _nice_step(span, most - 1)
    first = math.ceil(t0 / step - 1e-9) * step
    first = round(first, 6)  # sub-second steps: no 0.30000000000000004
    out, last_day = [], None
    k = 0
    while first + k * step <= t1 + 1e-9:
        t = first + k * step
        k += 1
        if not dated:
            out.append((t, _fmt(t), ""))
            continue
        dt = datetime.fromtimestamp(t, tz=timezone.utc)
        label = dt.strftime("%H:%M:%S" if step < 60 else "%H:%M" if step < 86400 else "%b %d")
        if step < 1:
            label += f".{dt.microsecond // 1000:03d}"
        day = dt.strftime("%Y-%m-%d")
        out.append((t, label, day if day != last_day else ""))
        last_day = day
    return out


def _rect(x0: float, x1: float, y: float, h: float, fill: str, tip: str = "", cls: str = "") -> str:
    c = f' class="{cls}"' if cls else ""
    t = f"<title>{html.escape(tip)}</title>" if tip else ""
    return (f'<rect{c} x="{x0:.1f}" y="{y:.1f}" width="{max(x1 - x0, 1):.1f}" height="{h:.1f}" fill="{fill}" '
            f'shape-rendering="crispEdges">{t}</rect>')


def _text(x: float, y: float, s: str, anchor: str = "start", size: int = 10, fill: str = "#343a40") -> str:
    return f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" fill="{fill}">{html.escape(s)}</text>'


def threshold_of(r: FileResult) -> tuple[float | None, str]:
    """(threshold on the drawn score, what the score is): the reference target's fitted
    threshold, or 1 on the monitor, whose score is the window error over its alert threshold."""
    c = r.commissioning
    if isinstance(c.get("threshold"), (int, float)):
        return float(c["threshold"]), "score (log scale)"
    if "monitor_config" in c:
        return 1.0, "score, x alert threshold (log scale)"
    return None, "score (log scale)"


def _row_states(r: FileResult) -> np.ndarray:
    return np.array(["commissioning"] * r.start + [str(x).lower() for x in r.outputs.state], dtype=object)


def state_columns(states: np.ndarray, cols: np.ndarray, width: int = PLOT_COLUMNS,
                  bridged: np.ndarray | None = None) -> list[str | None]:
    """The state each pixel column shows: the first of :data:`STATE_COLOURS` among its rows
    (any other state name when none of those is there); a column no row falls in keeps the
    state before it when ``bridged`` (:func:`bridged_columns`), else None."""
    shown: list[str | None] = [None] * width
    for name in [*STATE_COLOURS, *sorted(set(states) - set(STATE_COLOURS))]:
        for c in np.unique(cols[states == name]):
            if shown[c] is None:
                shown[c] = name
    if bridged is not None:
        for c in range(1, width):
            if shown[c] is None and bridged[c]:
                shown[c] = shown[c - 1]
    return shown


def sensors_to_draw(r: FileResult) -> tuple[list[str], str]:
    """The sensors the alerts name (most often named first), or the first channels when no
    alert names one; with a note on what was left out."""
    count: dict[str, int] = {}
    for a in r.alerts:
        for name in a.sensors:
            count[name] = count.get(name, 0) + 1
    chans = r.recording.series.channels
    if count:
        names, most = sorted(count, key=lambda n: (-count[n], chans.index(n) if n in chans else 0)), _MAX_SENSORS
        note = "the sensors the alerts name, most often named first"
    else:
        names, most = list(chans), _MAX_SENSORS // 2
        note = "no alert names a sensor, so the first channels"
    left = names[most:]
    if left:
        note += f" (not drawn: {', '.join(left)})"
    return names[:most], note


def _svg(r: FileResult, rule: dict | None = None) -> str:
    """One file: score with threshold, the named sensors' raw traces, state / label / alert
    lanes, all over one dated time axis; commissioning and labelled incidents shaded."""
    s, o = r.recording.series, r.outputs
    t = s.timestamps.astype(float)
    t0, t1 = float(t[0]), float(t[-1]) if s.rows > 1 else float(t[0]) + 1.0
    cols = pixel_columns(t, t0, t1)
    bridged = bridged_columns(t, cols, s.sample_period_s)
    sparse = s.rows <= PLOT_COLUMNS  # a line through the rows; else min/max per pixel column
    broken = np.concatenate(([True], np.diff(t) > GAP_FACTOR * s.sample_period_s))
    X = lambda tt: _LEFT + (float(tt) - t0) / max(t1 - t0, 1e-12) * PLOT_COLUMNS  # noqa: E731
    xr = lambda row: X(t[row])  # noqa: E731
    xend = lambda row: X(t[row + 1]) if row + 1 < s.rows else _LEFT + PLOT_COLUMNS  # noqa: E731
    parts: list[str] = []
    y = 0.0

    def backdrop(top: float, h: float) -> None:
        parts.append(_rect(_LEFT, _LEFT + PLOT_COLUMNS, top, h, "#fff"))
        if r.start:
            parts.append(_rect(_LEFT, xend(r.start - 1), top, h, COLOURS["commissioning"]))
        for i in r.incidents:
            parts.append(_rect(xr(i.start), xend(i.end), top, h,
                               COLOURS["incident_detected" if i.detected else "incident_missed"]))

    def trace(v: np.ndarray, yfun, colour: str, cls: str) -> None:
        if sparse:
            parts.append(_line(_LEFT + (t - t0) / max(t1 - t0, 1e-12) * PLOT_COLUMNS, v, yfun, broken, colour, cls))
        else:
            parts.append(_trace(*min_max_columns(v, cols), yfun, colour, cls, bridged))

    def frame(top: float, h: float) -> None:
        parts.append(f'<rect x="{_LEFT}" y="{top:.1f}" width="{PLOT_COLUMNS}" height="{h:.1f}" fill="none" '
                     f'stroke="{COLOURS["frame"]}" shape-rendering="crispEdges"/>')

    # score
    thr, what = threshold_of(r)
    parts.append(_text(_LEFT, y + 11, what, size=11))
    if thr:
        parts.append(_text(_LEFT + PLOT_COLUMNS, y + 11, f"- - - alert threshold {_fmt(thr)}", "end", size=11,
                           fill=COLOURS["threshold"]))
    y += _CAPTION
    top, h = y, _SCORE_H
    backdrop(top, h)
    sc = np.full(s.rows, np.nan)
    sc[r.start:] = o.score
    pos = sc[np.isfinite(sc) & (sc > 0)]
    if pos.size or thr:
        ref = [float(pos.min()), float(pos.max())] if pos.size else [thr, thr]
        floor = min(ref[0], thr or ref[0])
        floor = max(floor, (thr or ref[1]) * 1e-3, 1e-9)
        lo = math.floor(math.log10(floor) - 0.15)  # room under the lowest score or the threshold
        hi = math.ceil(math.log10(max(ref[1], (thr or 0) * 2, floor * 10)))
        hi = max(hi, lo + 1)

        def ys(v: float) -> float:  # zero and tiny scores sit on the floor
            f = (math.log10(max(v, 10.0 ** lo)) - lo) / (hi - lo)
            return top + h - 1 - (h - 2) * min(max(f, 0.0), 1.0)

        for k in range(lo, hi + 1):
            yy = ys(10.0 ** k)
            parts.append(f'<line x1="{_LEFT}" x2="{_LEFT + PLOT_COLUMNS}" y1="{yy:.1f}" y2="{yy:.1f}" '
                         f'stroke="{COLOURS["grid"]}" shape-rendering="crispEdges"/>')
            parts.append(_text(_LEFT - 4, yy + 3, _fmt(10.0 ** k), "end"))
        trace(np.where(sc > 0, sc, np.where(np.isfinite(sc), 10.0 ** lo, np.nan)), ys, COLOURS["score"], "score")
        if thr:
            yy = round(ys(thr)) + 0.5
            parts.append(f'<line class="threshold" x1="{_LEFT}" x2="{_LEFT + PLOT_COLUMNS}" y1="{yy:.1f}" '
                         f'y2="{yy:.1f}" stroke="{COLOURS["threshold"]}" stroke-width="1.5" stroke-dasharray="6 3">'
                         f'<title>alert threshold {thr:.4g}</title></line>')
    frame(top, h)
    y += h + 6

    # sensors
    names, _ = sensors_to_draw(r)
    for name in names:
        j = s.channels.index(name) if name in s.channels else None
        parts.append(_text(_LEFT, y + 11, f"{name} (raw)", size=11))
        y += _CAPTION
        top, h = y, _SENSOR_H
        backdrop(top, h)
        if j is not None:
            v = np.where(s.valid[:, j], s.values[:, j], np.nan)
            fin = v[np.isfinite(v)]
            if fin.size:
                vlo, vhi = float(fin.min()), float(fin.max())
                if vhi <= vlo:
                    vlo, vhi = vlo - 1, vhi + 1
                pad = 0.05 * (vhi - vlo)
                vlo, vhi = vlo - pad, vhi + pad

                def yv(val: float, top=top, h=h, vlo=vlo, vhi=vhi) -> float:
                    return top + h - 1 - (h - 2) * (val - vlo) / (vhi - vlo)

                ticks = linear_ticks(vlo, vhi, 3)
                if len(ticks) < 2:  # a narrow range: its two ends, to 3 significant digits
                    ticks = [float(f"{vlo + pad:.3g}"), float(f"{vhi - pad:.3g}")]
                for tick in ticks:
                    parts.append(_text(_LEFT - 4, yv(tick) + 3, _fmt(tick), "end"))
                trace(v, yv, COLOURS["trace"], "sensor")
        frame(top, h)
        y += h + 6

    # lanes: state, labelled faults, alerts
    states = _row_states(r)
    shown = state_columns(states, cols, bridged=bridged)
    y += 2
    parts.append(_text(_LEFT - 4, y + 11, "state", "end"))
    c = 0
    while c < PLOT_COLUMNS:
        e = c
        while e + 1 < PLOT_COLUMNS and shown[e + 1] == shown[c]:
            e += 1
        if shown[c] is not None:
            parts.append(_rect(_LEFT + c, _LEFT + e + 1, y, _LANE_H, STATE_COLOURS.get(shown[c], _OTHER_STATE),
                               shown[c].upper(), cls=f"state-{shown[c]}"))
        c = e + 1
    y += _LANE_H + 3
    spells = lost_spells(r)
    if spells:  # a sensor the device left out (CHANNEL_LOST until CHANNEL_BACK or the end)
        parts.append(_text(_LEFT - 4, y + 11, "sensor lost", "end"))
        for name, since, until in spells:
            x0, x1 = X(since), X(until) if until is not None else _LEFT + PLOT_COLUMNS
            tip = (f"{name} lost from {_when_t(s, since)} "
                   + (f"to {_when_t(s, until)} (CHANNEL_BACK)" if until is not None else "to the end of the recording")
                   + ": the device monitored the other sensors without it")
            parts.append(_rect(x0, x1, y, _LANE_H, COLOURS["sensor_lost"], tip, cls="sensor-lost"))
            if x1 - x0 >= 7 * len(name):
                parts.append(_text(x0 + 3, y + 11, name, size=9, fill="#fff"))
        y += _LANE_H + 3
    parts.append(_text(_LEFT - 4, y + 11, "labelled fault", "end"))
    for i in r.incidents:
        parts.append(_rect(xr(i.start), xend(i.end), y + 2, _LANE_H - 4, COLOURS["label"],
                           f"labelled fault rows {i.start}-{i.end}: {'detected' if i.detected else 'MISSED'}"))
    y += _LANE_H + 3
    parts.append(_text(_LEFT - 4, y + 11, "alerts", "end"))
    for k, a in enumerate(r.alerts, 1):
        tip = (f'A{k}: {"true" if a.true else "FALSE"} alert rows {a.start}-{a.end}; '
               f'sensors: {", ".join(a.sensors) or "-"}; {alert_end(r, a, rule)}')
        x0, x1 = xr(a.start), xend(a.end)
        parts.append(_rect(x0, x1, y, _LANE_H, COLOURS["alert_true" if a.true else "alert_false"], tip,
                           cls="alert-true" if a.true else "alert-false"))
        if len(r.alerts) <= 30:
            right = x1 + 22 <= _LEFT + PLOT_COLUMNS  # the name beside the bar, inside the figure
            parts.append(_text(x1 + 2 if right else x0 - 2, y + 11, f"A{k}", "start" if right else "end", size=9))
    y += _LANE_H + 4

    # time axis
    parts.append(f'<line x1="{_LEFT}" x2="{_LEFT + PLOT_COLUMNS}" y1="{y:.1f}" y2="{y:.1f}" stroke="#495057" '
                 f'shape-rendering="crispEdges"/>')
    for tt, label, day in time_ticks(t0, t1, s.iso_time):
        xx = round(X(tt)) + 0.5
        parts.append(f'<line x1="{xx:.1f}" x2="{xx:.1f}" y1="{y:.1f}" y2="{y + 4:.1f}" stroke="#495057"/>')
        parts.append(_text(xx, y + 15, label, "middle"))
        if day:
            parts.append(_text(xx, y + 27, day, "middle", fill="#868e96"))
    parts.append(_text(_LEFT + PLOT_COLUMNS, y + 27, "time (UTC)" if s.iso_time else "time (s)", "end",
                       fill="#868e96"))
    y += 32
    head = (f'<svg class="file-plot" width="{_WIDTH}" height="{y:.0f}" viewBox="0 0 {_WIDTH} {y:.0f}" '
            f'xmlns="http://www.w3.org/2000/svg" font-family="sans-serif">')
    return head + "".join(parts) + "</svg>"


def _when(series, row: int) -> str:
    """A row's time for a person: 2020-03-09 10:00:09 (UTC), or the file's own number."""
    v = _t(series, row)
    return v.replace("T", " ").rstrip("Z") if isinstance(v, str) else f"{v:g}"


def _when_t(series, seconds: float) -> str:
    """A time in the recording's clock for a person, as :func:`_when` writes a row's."""
    v = device_events.when(series, seconds)
    return v.replace("T", " ").rstrip("Z") if isinstance(v, str) else f"{v:g}"


def lost_spells(r: FileResult) -> list[tuple[str, float, float | None]]:
    """(sensor, lost at, back at or None) for each CHANNEL_LOST the device reported, its
    CHANNEL_BACK the next one for the same sensor."""
    out, open_ = [], {}
    for e in r.outputs.events or []:
        if e.type == "CHANNEL_LOST":
            open_[e.channel] = len(out)
            out.append([device_events.sensor_name(r.recording.series, e.channel), e.time, None])
        elif e.type == "CHANNEL_BACK" and e.channel in open_:
            out[open_.pop(e.channel)][2] = e.time
    return [tuple(x) for x in out]


def events_section(r: FileResult) -> str:
    """"What the device reported": the service events (:data:`.events.SERVICE`) with time and
    sensor, a warning when its event ring dropped some, and the count of every event type."""
    out, s = r.outputs, r.recording.series
    if out.events is None:
        return ""
    warn = (f"<p><b>Warning:</b> {out.events_dropped:,} events the device emitted were lost (its event ring "
            "overflowed before they were read); the events below lack them.</p>" if out.events_dropped else "")
    service = [e for e in out.events if e.type in device_events.SERVICE]
    rows = []
    for e in service[:_MAX_LISTED]:
        unit = device_events.UNITS.get(e.type)
        value = f"{e.value:.4g} {unit}" if unit else ""
        rows.append(f"<tr><td>{html.escape(_when_t(s, e.time))}</td><td>{e.type}</td>"
                    f"<td>{html.escape(device_events.sensor_name(s, e.channel) or '-')}</td>"
                    f"<td>{html.escape(value)}</td><td>{html.escape(device_events.SERVICE[e.type][1])}</td></tr>")
    table = ("<table class='list device-events'><tr><th>time</th><th>event</th><th>sensor</th><th>value</th>"
             "<th>what it means</th></tr>" + "".join(rows) + "</table>"
             + (f"<p class='note'>... and {len(service) - _MAX_LISTED:,} more (report.json lists them all).</p>"
                if len(service) > _MAX_LISTED else "")) if rows else \
        "<p>No service event: no sensor lost, stuck, spiking while commissioning, long in drift or past its " \
        "calibration tolerance; no clock step.</p>"
    counts = ", ".join(f"{k} x{n}" for k, n in device_events.event_counts(out.events).items())
    return (f"<h4>What the device reported</h4>{warn}{table}<p class='note'>All its events, from commissioning on: "
            f"{html.escape(counts) or 'none'} (each with its time, row, sensor and value in report.json).</p>")


def ending_text(summary: dict) -> str:
    """Runs to failure, in one sentence: of the recordings that end inside a labelled fault,
    at the end of how many the alert is still on (and which not); "" when there is none."""
    end = summary.get("ending_on_a_fault") or {}
    if not end.get("files"):
        return ""
    silent = summary.get("ending_on_a_fault_silent") or []
    return (f"{end['files']} recording(s) end on a labelled fault: the alert is still on at the end of "
            f"{end['alerting_at_the_end']}" + (f" (not: {', '.join(silent[:5])}{' ...' if len(silent) > 5 else ''})"
                                               if silent else ""))


def _ending(summary: dict) -> str:
    text = ending_text(summary)
    return f"<p><b>Runs to failure:</b> {html.escape(text)}.</p>" if text else ""


def early_warning_text(summary: dict) -> str:
    """The early-warning lead the figures were counted with (--early-warning), in one
    sentence; "" when there was none."""
    lead_s = summary.get("early_warning_s") or 0.0
    if not lead_s:
        return ""
    w = summary.get("early_warning_rows") or {}
    return (f"an alert that starts up to {duration(lead_s)} before a labelled onset detects it (--early-warning); "
            f"{w.get('rows', 0):,} rows within the lead before an onset ({w.get('alerting', 0):,} alerting) are "
            "neither normal nor fault: not in F1, FAR or MAR")


def _early_warning(summary: dict) -> str:
    text = early_warning_text(summary)
    return f"<p><b>Early warning:</b> {html.escape(text)}.</p>" if text else ""


def duration(seconds: float) -> str:
    """A duration in words: 90 s, 12.5 min, 36.0 h (its size; the sign is the caller's)."""
    s = abs(float(seconds))
    if s < 120:
        return f"{s:g} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def alert_end(r: FileResult, a, rule: dict | None = None) -> str:
    """Why an alert ended, in words: the state the device went into on the row after it; the
    numbers from the monitor's configuration, or from the reference target's ``rule``."""
    if a.end + 1 >= r.recording.series.rows:
        return "still on at the end of the recording"
    after = str(r.outputs.state[a.end + 1 - r.start]).lower()
    cfg = r.commissioning.get("monitor_config") or {}
    n = cfg.get("persist_n", (rule or {}).get("clear_after"))
    ratio = cfg.get("recover_ratio", (rule or {}).get("recover_ratio"))
    words = {
        "recovering": "the score fell back under "
                      + (f"{ratio:.2g} x its peak" if isinstance(ratio, (int, float)) and ratio else "a share of its peak")
                      + (f" for {n} windows" if n else "")
                      + ": on its way back (RECOVERING, still off normal, no alert)",
        "normal": "the score stayed under the clear level" + (f" for {n} windows" if n else "") + " (cleared to NORMAL)",
        "no_data": "the data stopped: too few valid samples or a timestamp gap (NO_DATA)",
        "gap": "a timestamp gap: no complete window",
        "drift": "cleared; a sensor's baseline is now tracked as drift (DRIFT)",
        "recalibrating": "a sensor re-learns its level after a step (RECALIBRATING)",
        "commissioning": "the device started learning again (commissioning)",
    }
    return "ended: " + words.get(after, f"next state {after.upper()}")




def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.2f} %"


def _model_line(model: dict) -> str:
    if model.get("sha256"):
        return f"model {html.escape(str(model['sha256'])[:12])}"
    return "one model per file, trained on its own commissioning rows (each named below)"


def _own_model(commissioning: dict) -> str:
    """A file's own model (``--per-file``): its hash and size, and on QEMU its firmware image's."""
    m = commissioning.get("model")
    if not m:
        return ""
    fw = m.get("firmware") or {}
    image = (f"; firmware image {fw['flash_total']:,} bytes flash / {fw['ram_total']:,} bytes RAM"
             if "flash_total" in fw and "ram_total" in fw else "")
    return (f"<p>Own model {html.escape(str(m.get('sha256', ''))[:12])}, {m.get('tflite_bytes', 0):,}-byte "
            f".tflite{image}.</p>")


def _picked(context: dict) -> str:
    """Where the alert settings came from when they were not the validated defaults."""
    src = context.get("alert_settings")
    if not src:
        return "<p>Alert settings: the validated defaults (FAR budget 10 % on the validation harness).</p>"
    by = src.get("picked_by", {})
    val = by.get("validation", {})
    budget = by.get("far_budget")
    return (f"<p>Alert settings from <code>{html.escape(str(src.get('file')))}</code>"
            + (f", picked at a validation FAR budget of {100 * budget:g} %" if isinstance(budget, (int, float)) else "")
            + (f" (validation F1 {val['f1']:.3f}, FAR {_pct(val.get('far'))})" if isinstance(val.get("f1"), float) else "")
            + ".</p>")


_PHASE_WORDS = {"before_fault": "before the first fault", "between_faults": "between faults",
                "after_fault": "after the last fault", "no_fault_in_file": "in files without a fault"}


def phases_text(phases: dict) -> str:
    """Where the false alarms fall (drift before a fault, or its tail after one), in words;
    "" when no phase has rows."""
    return "; ".join(f"{_PHASE_WORDS[k]} {_pct(v['share'])} of {v['rows']:,} rows" for k, v in phases.items() if v["rows"])


def _phases_line(phases: dict) -> str:
    text = phases_text(phases)
    return f"<p>Normal test rows alerting (false alarms): {text}.</p>" if text else ""


def _not_scored(lines: list[str]) -> str:
    """Labels the run could not score (:func:`.pipeline.not_scored`), as warnings."""
    return "".join(f"<p><b>Warning:</b> {html.escape(line)}.</p>" for line in lines)


def _skipped(files: list[dict]) -> str:
    """Files ``--skip-bad-files`` left out of the run, with why."""
    if not files:
        return ""
    items = "".join(f"<li>{html.escape(f['file'])}: {html.escape(f['reason'])}</li>" for f in files)
    return f"<p><b>Warning:</b> {len(files)} file(s) skipped, not in these results:</p><ul>{items}</ul>"


def _dropped(files: dict) -> str:
    """Files whose device's event ring overflowed: their event lists lack what it dropped."""
    if not files:
        return ""
    return (f"<p><b>Warning:</b> the device's event ring overflowed: {sum(files.values()):,} events the device "
            "emitted were lost, in " + html.escape(", ".join(f"{k} ({n})" for k, n in files.items())) + ".</p>")


def _f1(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _confusion_row(name: str, m, incidents: str, false_alerts: int, bold: bool = False, anchor: str = "") -> str:
    label = f'<a href="#{anchor}">{html.escape(name)}</a>' if anchor else html.escape(name)
    cells = [label, incidents, str(false_alerts), f"{m.tp:,}", f"{m.fp:,}", f"{m.tn:,}", f"{m.fn:,}",
             _f1(m.f1), _pct(m.far), _pct(m.mar)]
    tag = "th" if bold else "td"
    return "<tr>" + "".join(f"<{tag}>{c}</{tag}>" for c in cells) + "</tr>"


DEFINITIONS = """<h2>What the figures mean</h2>
<ul class="defs">
<li><b>TP / FP / TN / FN</b> count streamed (test) rows: TP a labelled-fault row the device alerted on, FP a
normal row it alerted on, TN a normal row it kept quiet on, FN a labelled-fault row it kept quiet on.</li>
<li><b>F1</b> = TP / (TP + (FP + FN) / 2): one number for catching fault rows without false alarms (1 is perfect).</li>
<li><b>FAR</b> (false alarm rate) = FP / (FP + TN): the share of normal rows that raised an alert.</li>
<li><b>MAR</b> (missed alarm rate) = FN / (FN + TP): the share of labelled-fault rows left silent.</li>
<li><b>NAB</b> (standard profile, normalized): each alert onset inside a labelled window earns more the earlier it
comes, an onset outside every window costs, scaled so 0 is a detector that never alerts and 100 a perfect one.</li>
<li><b>Pooled</b>: TP, FP, TN, FN summed over all files, then divided (as SKAB computes its leaderboard).</li>
</ul>"""


def _legend(results: list[FileResult]) -> str:
    seen = {str(x).lower() for r in results for x in r.outputs.state} | ({"commissioning"} if results else set())
    states = [k for k in STATE_COLOURS if k in seen] + sorted(seen - set(STATE_COLOURS))
    sw = lambda colour: f'<span class="sw" style="background:{colour}"></span>'  # noqa: E731
    lost = (f'<li>{sw(COLOURS["sensor_lost"])}sensor lost lane (when the device lost one): from its '
            "CHANNEL_LOST to its CHANNEL_BACK or the end, named; the device monitored the other sensors "
            "without it</li>" if any(lost_spells(r) for r in results) else "")
    items = "".join(f"<li>{sw(STATE_COLOURS.get(k, _OTHER_STATE))}{html.escape(k.upper())}: "
                    f"{html.escape(STATE_WORDS.get(k, 'a state of the device'))}</li>" for k in states)
    return f"""<h2>How to read the plots</h2>
<p>Each file has one figure; all its panels share the time axis at the bottom (UTC for dated files).</p>
<ul class="legend">
<li>{sw(COLOURS["commissioning"])}grey background: commissioning rows (learnt from, never scored)</li>
<li>{sw(COLOURS["incident_detected"])}/{sw(COLOURS["incident_missed"])}shaded: a labelled fault, green when the device
alerted inside it, red when it was missed</li>
<li>{sw(COLOURS["score"])}score, with the <span style="color:{COLOURS["threshold"]}">dashed alert threshold</span>:
the device alerts when enough windows in a row score above it</li>
<li>{sw(COLOURS["trace"])}raw sensor values of the sensors the alerts name, in the file's own units</li>
<li>state lane, the device's state row by row:<ul>{items}</ul></li>
{lost}<li>{sw(COLOURS["label"])}labelled fault lane: the label column's 1-runs</li>
<li>{sw(COLOURS["alert_true"])}/{sw(COLOURS["alert_false"])}alerts: green overlaps a labelled fault (true),
red does not (false); A1, A2... are listed under the figure with why each ended</li>
</ul>
<p class="note">Drawing: a file with more rows than the plot's {PLOT_COLUMNS} pixel columns is drawn one
column per {PLOT_COLUMNS}th of its time span; a column shows the minimum and the maximum of all the rows it covers, so a one-row spike is never lost and a
long recording stays a light page. The state lane shows, per column, the most serious state among its rows
(ANOMALY before NO_DATA before RECOVERING ... before NORMAL); over the commissioning rows it reads
COMMISSIONING throughout (what the device answered while learning them is not scored, nor kept). Every
row's value is in predictions.csv.</p>"""


def _file_section(r: FileResult, rule: dict | None, anchor: str) -> str:
    s = r.recording.series
    names, note = sensors_to_draw(r)
    inc = []
    for i in r.incidents:
        if not i.detected:
            verdict = "<b>MISSED</b>"
        elif i.delay_s is None:
            verdict = "detected"
        elif i.delay_s < 0:  # an early warning, or within the tolerance of a late label
            verdict = f"detected {duration(i.delay_s)} before its onset"
        else:
            verdict = f"detected after {duration(i.delay_s)}"
        inc.append(f"<tr><td>{_when(s, i.start)}</td><td>{_when(s, i.end)}</td>"
                   f"<td>{duration(s.timestamps[i.end] - s.timestamps[i.start])}</td><td>{verdict}</td></tr>")
    al = []
    for k, a in enumerate(r.alerts[:_MAX_LISTED], 1):
        kind = "true" if a.true else "<b>false</b>"
        al.append(f"<tr><td>A{k}</td><td>{_when(s, a.start)}</td><td>{_when(s, a.end)}</td>"
                  f"<td>{duration(s.timestamps[a.end] - s.timestamps[a.start])}</td><td>{kind}</td>"
                  f"<td>{html.escape(', '.join(a.sensors) or '-')}</td><td>{html.escape(alert_end(r, a, rule))}</td></tr>")
    inc_table = ("<table class='list'><tr><th>labelled fault from</th><th>to</th><th>lasting</th><th>verdict</th></tr>"
                 + "".join(inc) + "</table>") if inc else "<p>No labelled fault in the streamed rows.</p>"
    al_table = ("<table class='list'><tr><th></th><th>alert from</th><th>to</th><th>lasting</th><th>kind</th>"
                "<th>sensors named</th><th>how it ended</th></tr>" + "".join(al) + "</table>"
                + (f"<p class='note'>... and {len(r.alerts) - _MAX_LISTED:,} more alerts (report.json lists them "
                   "all).</p>" if len(r.alerts) > _MAX_LISTED else "")) if al else "<p>No alert.</p>"
    m = r.confusion
    return (f"<section class='file' id='{anchor}'><h3>{html.escape(r.recording.name)}</h3>{_own_model(r.commissioning)}"
            f"<p class='note'>{s.rows:,} rows, {_when(s, 0)} to {_when(s, s.rows - 1)}; commissioned on the first "
            f"{r.start:,}; TP {m.tp:,}, FP {m.fp:,}, TN {m.tn:,}, FN {m.fn:,}. Sensors drawn: {html.escape(note)}.</p>"
            f"{_svg(r, rule)}{inc_table}{al_table}{events_section(r)}</section>")


_STYLE = """body{font-family:sans-serif;margin:2em auto;max-width:960px;color:#212529;line-height:1.35}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ced4da;padding:2px 8px;text-align:right}
td:first-child,th:first-child{text-align:left}table.confusion td{white-space:nowrap}table.list td,table.list th{text-align:left;font-size:90%}
.sw{display:inline-block;width:.9em;height:.9em;margin-right:.3em;vertical-align:-1px;border:1px solid #adb5bd}
.note{color:#495057;font-size:90%}section.file{margin-top:2em;border-top:1px solid #dee2e6}
ul.legend li,ul.defs li{margin:.15em 0}"""


def write_html(path: Path, results: list[FileResult], summary: dict, settings: dict, context: dict) -> Path:
    """The report a person reads: the pooled figures with their definitions, then per file a
    dated figure (score, threshold, the named sensors, state lane, labels, alerts) and the
    list of its labelled faults and alerts, with why each alert ended. Self-contained."""
    t = summary["test_rows"]
    rows = [_confusion_row(r.recording.name, r.confusion, f"{sum(i.detected for i in r.incidents)}/{len(r.incidents)}",
                           sum(not a.true for a in r.alerts), anchor=f"file-{k}") for k, r in enumerate(results)]
    pooled = sum((r.confusion for r in results), Confusion())
    rows.append(_confusion_row("all files (pooled)", pooled,
                               f"{summary['incidents_detected']}/{summary['incidents']}", summary["false_alerts"],
                               bold=True))
    nab = summary.get("nab_standard")
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>aiot evaluate: {html.escape(str(context.get("data", "")))}</title>
<style>{_STYLE}</style></head><body>
<h1>Evaluation: {html.escape(str(context.get("data", "")))}</h1>
<p>Target <b>{html.escape(settings["target"])}</b>, {_model_line(context.get("model", {}))}.
Pooled over all test rows: <b>F1 {'' if t['f1'] is None else f"{t['f1']:.3f}"}</b>, FAR {_pct(t['far'])}, MAR {_pct(t['mar'])};
NAB (standard) {'n/a' if nab is None else f"{nab:.1f}"};
incidents detected {summary['incidents_detected']}/{summary['incidents']}, false alerts {summary['false_alerts']}.</p>
{_phases_line(summary.get("false_alarms_by_phase", {}))}
{_early_warning(summary)}
{_ending(summary)}
{_not_scored(summary.get("labels_not_scored", []))}
{_skipped(summary.get("skipped_files", []))}
{_dropped((summary.get("device_events") or {}).get("dropped", {}))}
<p class="note">Protocol: {html.escape(str(context.get("protocol", "each file commissioned on its first rows, then streamed row by row; metrics over the streamed rows, pooled over files.")))}</p>
<table class="confusion"><tr><th>file</th><th>incidents detected</th><th>false alerts</th><th>TP</th><th>FP</th>
<th>TN</th><th>FN</th><th>F1</th><th>FAR</th><th>MAR</th></tr>
{''.join(rows)}</table>
{DEFINITIONS}
{_legend(results)}
{''.join(_file_section(r, settings.get("rule"), f"file-{k}") for k, r in enumerate(results))}
<h2>Settings</h2>{_picked(context)}<pre>{html.escape(json.dumps(settings, indent=2, default=_default))}</pre>
</body></html>
"""
    path.write_text(doc, encoding="utf-8")
    return path
