"""Write what an evaluation found: predictions.csv (one row per sample), report.json
(settings, per-file incidents and alerts, pooled metrics) and report.html (hand-written
SVG per file, no plotting dependency)."""

from __future__ import annotations

import csv
import html
import json
import math
from pathlib import Path

import numpy as np

from aiot.data import format_time
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


# -- HTML ---------------------------------------------------------------------------

_W, _H, _PAD = 900, 140, 4


def _svg(r: FileResult) -> str:
    """Score (log scale) with threshold, labelled incidents shaded, alerts as a bar below."""
    s, o = r.recording.series, r.outputs
    n = s.rows
    x = lambda row: _PAD + (_W - 2 * _PAD) * row / max(n - 1, 1)  # noqa: E731
    parts = [f'<svg width="{_W}" height="{_H + 24}" viewBox="0 0 {_W} {_H + 24}" xmlns="http://www.w3.org/2000/svg">',
             f'<rect x="0" y="0" width="{_W}" height="{_H}" fill="#fafafa" stroke="#ccc"/>',
             f'<rect x="0" y="0" width="{x(r.start):.1f}" height="{_H}" fill="#eee"><title>commissioning</title></rect>']
    for i in r.incidents:
        cls = "#2a2" if i.detected else "#d22"
        parts.append(f'<rect x="{x(i.start):.1f}" y="0" width="{max(x(i.end) - x(i.start), 1):.1f}" height="{_H}" '
                     f'fill="{cls}" fill-opacity="0.15"><title>incident rows {i.start}-{i.end}'
                     f'{" detected" if i.detected else " MISSED"}</title></rect>')
    thr = r.commissioning.get("threshold")
    sc = o.score
    finite = sc[np.isfinite(sc) & (sc > 0)]
    if finite.size:
        lo = math.log10(max(float(finite.min()), 1e-6))
        hi = math.log10(max(float(finite.max()), thr or 0, 1e-6))
        span = max(hi - lo, 1e-6)
        def y(v: float) -> float:  # log scale, clamped into the plot (zero scores sit on the floor)
            f = (math.log10(max(v, 1e-6)) - lo) / span
            return _H - _PAD - (_H - 2 * _PAD) * min(max(f, 0.0), 1.0)

        step = max(1, len(sc) // 1200)  # at most ~1200 points per plot
        pts, segs = [], []
        for i in range(0, len(sc), step):
            v = sc[i : i + step]
            v = v[np.isfinite(v)]
            if v.size == 0:
                if pts:
                    segs.append(pts)
                pts = []
                continue
            pts.append(f"{x(r.start + i):.1f},{y(float(v.max())):.1f}")
        if pts:
            segs.append(pts)
        for seg in segs:
            parts.append(f'<polyline fill="none" stroke="#246" stroke-width="1" points="{" ".join(seg)}"/>')
        if thr:
            parts.append(f'<line x1="0" x2="{_W}" y1="{y(thr):.1f}" y2="{y(thr):.1f}" stroke="#c60" '
                         f'stroke-dasharray="4 3"><title>threshold {thr:.4g}</title></line>')
    for a in r.alerts:
        col = "#2a2" if a.true else "#d22"
        tip = f'{"true" if a.true else "FALSE"} alert rows {a.start}-{a.end}; sensors: {", ".join(a.sensors) or "-"}'
        parts.append(f'<rect x="{x(a.start):.1f}" y="{_H + 6}" width="{max(x(a.end) - x(a.start), 2):.1f}" height="12" '
                     f'fill="{col}"><title>{html.escape(tip)}</title></rect>')
    parts.append("</svg>")
    return "".join(parts)


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


def write_html(path: Path, results: list[FileResult], summary: dict, settings: dict, context: dict) -> Path:
    t = summary["test_rows"]
    rows = []
    for r in results:
        m = r.confusion
        det = sum(i.detected for i in r.incidents)
        false_alerts = sum(not a.true for a in r.alerts)
        rows.append(
            f"<tr><td>{html.escape(r.recording.name)}</td><td>{det}/{len(r.incidents)}</td>"
            f"<td>{false_alerts}</td><td>{'' if m.f1 is None else f'{m.f1:.3f}'}</td>"
            f"<td>{_pct(m.far)}</td><td>{_pct(m.mar)}</td></tr>"
        )
    plots = []
    for r in results:
        lines = []
        for i in r.incidents:
            verdict = f"detected after {i.delay_s:g} s" if i.detected and i.delay_s is not None else (
                "detected" if i.detected else "<b>missed</b>")
            lines.append(f"<li>incident {_t(r.recording.series, i.start)} .. {_t(r.recording.series, i.end)}: {verdict}</li>")
        for a in r.alerts:
            kind = "true alert" if a.true else "<b>false alert</b>"
            lines.append(f"<li>{kind} {_t(r.recording.series, a.start)} .. {_t(r.recording.series, a.end)}"
                         f" (sensors: {html.escape(', '.join(a.sensors) or '-')})</li>")
        plots.append(f"<h3>{html.escape(r.recording.name)}</h3>{_own_model(r.commissioning)}{_svg(r)}"
                     f"<ul>{''.join(lines)}</ul>")
    doc = f"""<!doctype html><html><head><meta charset="utf-8"><title>aiot evaluate</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:960px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}td:first-child{{text-align:left}}</style></head><body>
<h1>Evaluation: {html.escape(str(context.get("data", "")))}</h1>
<p>Target <b>{html.escape(settings["target"])}</b>, {_model_line(context.get("model", {}))}.
Pooled over all test rows: <b>F1 {'' if t['f1'] is None else f"{t['f1']:.3f}"}</b>, FAR {_pct(t['far'])}, MAR {_pct(t['mar'])};
NAB (standard) {'' if summary['nab_standard'] is None else f"{summary['nab_standard']:.1f}"};
incidents detected {summary['incidents_detected']}/{summary['incidents']}, false alerts {summary['false_alerts']}.</p>
{_phases_line(summary.get("false_alarms_by_phase", {}))}
{_not_scored(summary.get("labels_not_scored", []))}
{_skipped(summary.get("skipped_files", []))}
<p>Plot legend: grey = commissioning rows, shaded = labelled incident (green detected, red missed),
blue = score (log scale), dashed = threshold, bars below = alerts (green true, red false).</p>
<table><tr><th>file</th><th>incidents detected</th><th>false alerts</th><th>F1</th><th>FAR</th><th>MAR</th></tr>
{''.join(rows)}</table>
{''.join(plots)}
<h2>Settings</h2>{_picked(context)}<pre>{html.escape(json.dumps(settings, indent=2, default=_default))}</pre>
</body></html>
"""
    path.write_text(doc, encoding="utf-8")
    return path
