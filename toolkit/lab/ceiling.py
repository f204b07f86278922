"""The ceiling of the device's settings grid on a labelled benchmark: every setting of the
grid that `aiot tune` searches, scored on the benchmark's TEST rows themselves.

It answers one question: when a target is missed, is it the settings' fault (the validation
harness picked badly) or the detector's (no setting of the grid reaches the target, however
it is picked)? It prints
- the ceiling: the best F1 within each FAR budget, chosen on the rows it is scored on;
- leave-one-group-out: for each folder of the benchmark, the setting picked (same rule) on
  the other folders' test rows, scored on the held-out folder; pooled, an estimate of how
  settings tuned on other installations' labelled faults carry over.

NEITHER IS A RESULT, and nothing here feeds a default or an alert-settings file: settings
chosen here have seen labelled test rows. docs/evaluation.md reports them as a diagnosis.

Run: python -m lab.ceiling SKAB_DIR [--per-file] [--far-budget PCT ...] [--transfer-budget PCT]
         [--save FILE]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable

from aiot.evaluate.metrics import Confusion

#: (knobs, confusion per recording name), as :func:`tuning.score_monitor_files` returns
Scored = list[tuple[dict, dict[str, Confusion]]]


def pooled(per_file: dict[str, Confusion], keep: Callable[[str], bool] = lambda name: True) -> Confusion:
    return sum((c for name, c in per_file.items() if keep(name)), Confusion())


def best_within(results: Scored, budget: float, keep: Callable[[str], bool] = lambda name: True
                ) -> tuple[dict, Confusion] | None:
    """The setting with the best pooled F1 among those whose pooled FAR (over the recordings
    ``keep`` accepts) is within ``budget`` (:func:`tuning.pick`, so ties go to the earlier:
    the grid lists simpler settings first). None when no setting is within the budget."""
    from aiot.evaluate.tuning import fits, pick

    ok = [(knobs, c) for knobs, c in ((k, pooled(per, keep)) for k, per in results) if fits(c, budget)]
    return pick(ok, budget) if ok else None


def group_of(name: str) -> str:
    """A recording's group: its folder (SKAB: valve1 / valve2 / other)."""
    return name.split("/", 1)[0] if "/" in name else ""


def leave_one_group_out(results: Scored, budget: float, group: Callable[[str], str] = group_of) -> dict:
    """Per group: the setting picked on the other groups, its F1/FAR there, and the held-out
    group's confusion under it; ``pooled`` sums the held-out confusions."""
    names = sorted({n for _, per in results for n in per})
    folds, total = {}, Confusion()
    for g in sorted({group(n) for n in names}):
        pick = best_within(results, budget, lambda n, g=g: group(n) != g)
        if pick is None:
            folds[g] = {"pick": None, "note": f"no setting within FAR {100 * budget:g} % on the other groups"}
            continue
        knobs, picked_on = pick
        per = next(p for k, p in results if k is knobs)
        held = pooled(per, lambda n, g=g: group(n) == g)
        total = total + held
        folds[g] = {"pick": knobs, "picked_on": picked_on.as_dict(), "held_out": held.as_dict()}
    return {"folds": folds, "pooled": total.as_dict()}


def score_skab(root: Path, per_file: bool, window: int = 8, fixed: dict | None = None) -> Scored:
    """Every setting of the device grid on SKAB's test rows (the host build of the monitor),
    with the models `aiot evaluate --target host` uses: one per file on its first 400 rows, or
    the fleet model of anomaly-free.csv. ``fixed``: monitor config fields set in every
    setting (to switch a mechanism off and see what it costs)."""
    from aiot.data import sha256_file
    from aiot.errors import ToolkitError
    from aiot.data import readers
    from aiot.evaluate.tuning import monitor_grid, monitor_models, score_monitor_files

    ds = readers.read("skab", root)
    grid = [{**k, **(fixed or {})} for k in monitor_grid(per_file)]
    if per_file:
        models = monitor_models(ds, window, grid)
    else:
        if ds.fleet is None:
            raise ToolkitError(f"{root}: no anomaly-free/ folder (the fleet recording)", hint="or use --per-file")
        models = monitor_models(ds, window, grid, ds.fleet, sha256_file(ds.fleet_source))
    return score_monitor_files(ds, models, window, grid, label="settings on the test rows")


def _line(c: Confusion | dict) -> str:
    d = c.as_dict() if isinstance(c, Confusion) else c
    return f"F1 {d['f1']:.3f}  FAR {100 * d['far']:.2f} %  MAR {100 * d['mar']:.2f} %"


def main(argv: list[str]) -> int:
    import argparse

    from aiot.errors import ToolkitError

    ap = argparse.ArgumentParser(prog="python -m lab.ceiling",
                                 description="Diagnosis, not a result: the device grid tuned on SKAB's test rows.")
    ap.add_argument("skab", help="the SKAB data folder (valve1/, valve2/, other/, anomaly-free/)")
    ap.add_argument("--per-file", action="store_true", help="one model per file (else the fleet model)")
    ap.add_argument("--far-budget", type=float, action="append", metavar="PCT",
                    help="FAR budgets for the ceiling (default 5 10 20 30)")
    ap.add_argument("--transfer-budget", type=float, default=10.0, metavar="PCT",
                    help="FAR budget of the leave-one-folder-out picks (default 10, the SKAB target's FAR)")
    ap.add_argument("--set", dest="fixed", action="append", default=[], metavar="FIELD=VALUE",
                    help="a monitor config field set in every setting, e.g. max_recal_step=0.5 (repeatable)")
    ap.add_argument("--save", metavar="FILE", help="write every setting's per-file confusion as JSON")
    args = ap.parse_args(argv)
    budgets = [p / 100.0 for p in (args.far_budget or [5.0, 10.0, 20.0, 30.0])]
    transfer = args.transfer_budget / 100.0
    fixed = {}
    for item in args.fixed:
        field, _, value = item.partition("=")
        try:
            fixed[field.strip()] = float(value)
        except ValueError:
            ap.error(f"--set {item}: give FIELD=NUMBER")
    if any(not 0.0 < b < 1.0 for b in [*budgets, transfer]):
        ap.error("--far-budget is a percentage between 0 and 100 (exclusive)")
    from aiot.evaluate.pipeline import quiet_worker

    quiet_worker()
    try:
        results = score_skab(Path(args.skab), args.per_file, fixed=fixed)
    except ToolkitError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    model = "one model per file" if args.per_file else "fleet model"
    if fixed:
        model += f", every setting with {fixed}"
    print(f"CEILING ({model}, {len(results)} settings) - tuned on the test rows: an upper bound, not a result")
    for b in budgets:
        pick = best_within(results, b)
        print(f"  FAR <= {100 * b:g} %: " + ("no setting" if pick is None else f"{_line(pick[1])}  {pick[0]}"))
    logo = leave_one_group_out(results, transfer)
    print(f"LEAVE-ONE-FOLDER-OUT at FAR <= {100 * transfer:g} % (picked on the other folders' test rows):")
    for g, fold in logo["folds"].items():
        if fold["pick"] is None:
            print(f"  {g}: {fold['note']}")
        else:
            print(f"  {g}: {_line(fold['held_out'])}  (on the others {_line(fold['picked_on'])})  {fold['pick']}")
    print(f"  pooled: {_line(logo['pooled'])}")
    if args.save:
        Path(args.save).write_text(json.dumps(
            [{"knobs": k, "files": {n: c.as_dict() for n, c in per.items()}} for k, per in results], indent=1))
        print(f"saved {args.save}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
