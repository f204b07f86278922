"""A model-free level-shift score, and how far it gets on SKAB picked three ways: a diagnosis
of the detector family, not a result (nothing here feeds a default or the device).

The device monitor scores each window by the model's reconstruction error in per-sample
noise units, which is close to a per-sensor *energy* test (docs/evaluation.md). A fault
that moves a sensor's level by a fraction of its sample noise for minutes is better seen
coherently: average the level first, then compare. Per sensor, the score here is

    z_c(t) = (mean of the last L valid samples of c  -  commissioned level of c)
             / spread of those L-sample means over the commissioning rows

The spread is measured, not derived as sigma / sqrt(L): a temperature wanders slowly, so
its L-means spread as much as its samples do; a vibration RMS is close to white, so its
L-means spread sqrt(L) times less. It is floored at ``floor_rel x |level|`` as the monitor
floors its noise. The row's score is the worst sensor's |z| (``max``) or the root mean
square over sensors (``rms``), divided by its own 99th percentile over the commissioning
rows; a row alerts when the score is above ``k``. Causal: a row's score uses that row and
the L - 1 before it. A row whose sensors all lack data in the last L rows has no score
(NaN) and never alerts.

Three ways of choosing (L, aggregation, floor, k), each scored on SKAB's test rows:
- the ceiling: the best F1 within each FAR budget, chosen on the rows it is scored on;
- leave-one-folder-out: per folder, the setting best on the other folders' test rows;
- the validation harness (`aiot tune`'s, with ``--recovery --warmup``: injected faults in
  pieces of anomaly-free.csv, SKAB's commissioning-row drift): the only pick that has not
  seen a test row, run on SKAB once per budget.

Run: python -m lab.level_shift SKAB_DIR [--far-budget PCT ...] [--save FILE]
"""

from __future__ import annotations

import contextlib
import itertools
import json
import sys
import warnings
from pathlib import Path

import numpy as np

from aiot.evaluate.metrics import Confusion, PhaseCounts, confusion, normal_phases

#: SKAB's protocol (and the harness's pieces): the first 400 rows commission
COMMISSION_ROWS = 400
#: the family's grid, simpler settings first (ties go to the earlier)
GRID = {
    "length": (5, 10, 20, 30, 60),
    "aggregate": ("max", "rms"),
    "floor_rel": (1e-3, 1e-2, 3e-2),
    "k": (1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 12.0, 16.0),
}


@contextlib.contextmanager
def _quiet_nan():
    """numpy warns 'All-NaN slice' / 'Mean of empty slice' for the rows and sensors that
    have no data; their NaN is the answer, not a problem."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def rolling_mean(values: np.ndarray, valid: np.ndarray, length: int) -> np.ndarray:
    """Per column, the mean of the valid samples among the last ``length`` rows (this row
    included); NaN where none of them is valid. Causal."""
    if length < 1:
        raise ValueError(f"rolling_mean: length must be >= 1, got {length}")
    ok = valid & np.isfinite(values)
    x = np.where(ok, values, 0.0)
    zero = np.zeros((1, x.shape[1]))
    total = np.cumsum(np.vstack([zero, x]), axis=0)
    count = np.cumsum(np.vstack([zero, ok.astype(np.float64)]), axis=0)
    lo = np.maximum(np.arange(x.shape[0]) + 1 - length, 0)
    hi = np.arange(x.shape[0]) + 1
    n = count[hi] - count[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (total[hi] - total[lo]) / np.maximum(n, 1.0), np.nan)


def scores(values: np.ndarray, valid: np.ndarray, commission: int, length: int, aggregate: str,
           floor_rel: float) -> np.ndarray:
    """The row scores of one recording (module doc), in units of the commissioning rows' own
    99th percentile. ``commission`` rows fit the levels and spreads."""
    if aggregate not in ("max", "rms"):
        raise ValueError(f"aggregate must be 'max' or 'rms', got {aggregate!r}")
    if commission < length + 1:
        raise ValueError(f"{commission} commissioning rows cannot give the spread of {length}-row means")
    means = rolling_mean(values, valid, length)
    head = np.where(valid[:commission] & np.isfinite(values[:commission]), values[:commission], np.nan)
    with _quiet_nan():
        level = np.nanmean(head, axis=0)
        spread = np.nanstd(means[length - 1:commission], axis=0)
    spread = np.fmax(spread, floor_rel * np.abs(level))
    spread = np.where(spread > 0, spread, np.nan)  # a flat, zero-level sensor cannot be scored
    z = np.abs(means - level) / spread
    with _quiet_nan():
        row = np.nanmax(z, axis=1) if aggregate == "max" else np.sqrt(np.nanmean(z * z, axis=1))
        ref = np.nanquantile(row[length - 1:commission], 0.99)
    if not np.isfinite(ref) or ref <= 0:
        return np.full(row.shape, np.nan)
    return row / ref


def grid() -> list[dict]:
    return [dict(zip(GRID, combo)) for combo in itertools.product(*GRID.values())]


def alerts(row_scores: np.ndarray, k: float) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.nan_to_num(row_scores, nan=-np.inf) > k


def score_recordings(recordings, commission: int = COMMISSION_ROWS, settings: list[dict] | None = None
                     ) -> list[tuple[dict, dict[str, Confusion]]]:
    """Every setting on every recording's rows after ``commission``: (knobs, {name: Confusion}),
    the form :mod:`lab.ceiling`'s selection takes."""
    settings = grid() if settings is None else settings
    per_setting: dict[int, dict[str, Confusion]] = {i: {} for i in range(len(settings))}
    by_score: dict[tuple, list[int]] = {}
    for i, s in enumerate(settings):
        by_score.setdefault((s["length"], s["aggregate"], s["floor_rel"]), []).append(i)
    for rec in recordings:
        labels = np.asarray(rec.labels)[commission:]
        for (length, aggregate, floor_rel), members in by_score.items():
            row = scores(rec.series.values, rec.series.valid, commission, length, aggregate, floor_rel)[commission:]
            for i in members:
                per_setting[i][rec.name] = confusion(labels, alerts(row, settings[i]["k"]))
    return [(settings[i], per_setting[i]) for i in range(len(settings))]


def phases(recordings, knobs: dict, commission: int = COMMISSION_ROWS) -> dict[str, float | None]:
    """Share of alerting rows before each fault, in it, and after it (test rows, pooled)."""
    counts: dict[str, PhaseCounts] = {}
    fault = PhaseCounts()
    for rec in recordings:
        s = alerts(scores(rec.series.values, rec.series.valid, commission, knobs["length"], knobs["aggregate"],
                          knobs["floor_rel"]), knobs["k"])
        y = np.asarray(rec.labels).astype(bool)
        for name, c in normal_phases(y, s, start=commission).items():
            counts[name] = counts.get(name, PhaseCounts()) + c
        fault = fault + PhaseCounts(int(y[commission:].sum()), int((y & s)[commission:].sum()))
    return {"before_fault": counts["before_fault"].share, "fault": fault.share,
            "after_fault": counts["after_fault"].share}


def _phase_text(p: dict) -> str:
    return "  ".join(f"{k} {'-' if v is None else f'{100 * v:.1f} %'}" for k, v in p.items())


def main(argv: list[str]) -> int:
    import argparse

    from aiot.errors import ToolkitError
    from aiot.data import readers
    from lab.ceiling import _line, best_within, leave_one_group_out, pooled
    from aiot.evaluate.tuning import SHAPE, harness, load_normal, pick, warmup_slopes

    ap = argparse.ArgumentParser(prog="python -m lab.level_shift",
                                 description="Diagnosis, not a result: a model-free level-shift score on SKAB, "
                                             "picked on its test rows, on the other folders, and on the harness.")
    ap.add_argument("skab", help="the SKAB data folder (valve1/, valve2/, other/, anomaly-free/)")
    ap.add_argument("--far-budget", type=float, action="append", metavar="PCT",
                    help="FAR budgets (default 5 10 20 30)")
    ap.add_argument("--save", metavar="FILE", help="write the figures as JSON")
    args = ap.parse_args(argv)
    budgets = [p / 100.0 for p in (args.far_budget or [5.0, 10.0, 20.0, 30.0])]
    if any(not 0.0 < b < 1.0 for b in budgets):
        ap.error("--far-budget is a percentage between 0 and 100 (exclusive)")
    root = Path(args.skab)
    try:
        ds = readers.read("skab", root)
        if ds.fleet_source is None:
            raise ToolkitError(f"{root}: no anomaly-free/ folder (the harness is cut from it)",
                               hint="point at SKAB's data folder")
        normal = load_normal(str(ds.fleet_source))
        # SKAB's warm-up as `aiot tune --warmup` takes it (tuning.skab_warmup), from the files read above
        warm = warmup_slopes([rec.series.head(SHAPE[0]) for rec in ds.recordings], normal.channels)
    except ToolkitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    half = normal.rows // 2  # as `aiot tune`: the pieces come from the second half
    pieces = harness(normal.slice(half, normal.rows), recovery=True, warmup=warm).recordings
    on_skab = score_recordings(ds.recordings)
    on_harness = score_recordings(pieces)
    out: dict = {"settings": len(on_skab), "ceiling": {}, "harness_picks": {}}
    print(f"LEVEL-SHIFT SCORE, {len(on_skab)} settings, SKAB test rows ({len(ds.recordings)} files)")
    print("CEILING - tuned on the test rows: an upper bound, not a result")
    for b in budgets:
        got = best_within(on_skab, b)
        out["ceiling"][f"{100 * b:g}"] = None if got is None else {"knobs": got[0], **got[1].as_dict()}
        print(f"  FAR <= {100 * b:g} %: " + ("no setting" if got is None else f"{_line(got[1])}  {got[0]}"))
    logo = leave_one_group_out(on_skab, 0.10)
    out["leave_one_folder_out_10"] = logo
    print("LEAVE-ONE-FOLDER-OUT at FAR <= 10 % (picked on the other folders' test rows):")
    for g, fold in logo["folds"].items():
        print(f"  {g}: " + (fold["note"] if fold["pick"] is None else
                            f"{_line(fold['held_out'])}  (on the others {_line(fold['picked_on'])})  {fold['pick']}"))
    print(f"  pooled: {_line(logo['pooled'])}")
    print(f"HARNESS PICKS ({len(pieces)} pieces, --recovery --warmup; no test row seen), each run on SKAB once:")
    harness_pooled = [(k, pooled(per)) for k, per in on_harness]
    for b in budgets:
        knobs, c = pick(harness_pooled, b)
        # each score_recordings call makes its own grid(): the same knobs, other objects
        skab = pooled(next(per for k, per in on_skab if k == knobs))
        fits = c.far is not None and c.far <= b
        out["harness_picks"][f"{100 * b:g}"] = {
            "knobs": knobs, "within_budget": fits, "harness": c.as_dict(), "skab": skab.as_dict(),
            "phases_harness": phases(pieces, knobs), "phases_skab": phases(ds.recordings, knobs)}
        print(f"  FAR <= {100 * b:g} %{'' if fits else ' (none within; best F1 overall)'}: {knobs}")
        print(f"    harness {_line(c)}   ->   SKAB {_line(skab)}")
        print(f"    alerting rows, harness: {_phase_text(out['harness_picks'][f'{100 * b:g}']['phases_harness'])}")
        print(f"    alerting rows, SKAB:    {_phase_text(out['harness_picks'][f'{100 * b:g}']['phases_skab'])}")
    if args.save:
        Path(args.save).write_text(json.dumps(out, indent=1, default=str))
        print(f"saved {args.save}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
