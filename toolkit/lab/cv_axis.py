"""What one axis of a device grid brought to a cross-validation: the same folds, budgets and
choice rule (aiot.evaluate.crossval) re-run from `aiot tune --out DIR`'s scores.json with the
axis held at one value, beside the run as it was. Nothing is scored again and nothing new is
chosen on held-out rows: each fold still picks on the other folds only, among fewer settings.

Run: python -m lab.cv_axis build/cv-resid residual_score 0
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def held_out(run_dir: Path, keep=lambda knobs: True) -> dict:
    """The cross-validation of ``run_dir`` over the settings ``keep`` accepts: held-out
    figures per data set, TEP's per-fault detection, and each fold's pick."""
    from aiot.evaluate.crossval import METRIC, Source, cross_validate
    from aiot.evaluate.metrics import Confusion

    doc = json.loads((run_dir / "crossval.json").read_text())
    scores = json.loads((run_dir / "scores.json").read_text())
    folds = {n: f["fold"] for f in doc["folds"] for n in f["files"]}
    budgets = doc["far_budget"] if isinstance(doc["far_budget"], dict) else {doc["format"]: doc["far_budget"]}
    joint = isinstance(doc["far_budget"], dict)
    sources = [Source(name, frozenset(n for n in folds if not joint or n.startswith(name + ":")), budget,
                      METRIC.get(name, "f1")) for name, budget in budgets.items()]
    scored = [(s["setting"], {n: Confusion(*v) for n, v in s["files"].items()})
              for s in scores if keep(s["setting"])]
    cv = cross_validate(scored, folds, sources=sources)
    by_file = cv.held_out_by_file()
    out = {"settings": len(scored), "folds": {f.name: scored[f.setting][0] for f in cv.folds}, "held_out": {}}
    for s in sources:
        figure, far = s.figure(by_file, set(by_file))
        out["held_out"][s.name] = {"figure": figure, "far": far}
        if s.metric == "detection":
            from aiot.data.tep import benchmark

            mine = sorted(n for n in by_file if n in s.files)
            b = benchmark([(n, by_file[n].tp, by_file[n].fn, by_file[n].fp, by_file[n].tn) for n in mine])
            out["held_out"][s.name]["by_fault"] = b["detection_rate_by_fault"]
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path, help="an `aiot tune --labels ... --out DIR` folder (crossval.json, scores.json)")
    ap.add_argument("knob", help="the grid axis, e.g. residual_score")
    ap.add_argument("value", type=float, help="the value to hold it at (a setting without the knob has 0)")
    a = ap.parse_args(argv)
    for label, keep in (("as run", lambda k: True),
                        (f"{a.knob} held at {a.value:g}", lambda k: float(k.get(a.knob, 0)) == a.value)):
        r = held_out(a.run, keep)
        figs = "; ".join(f"{n} {v['figure']:.3f} at {100 * v['far']:.2f} % false alarms" for n, v in r["held_out"].items())
        print(f"{label} ({r['settings']} settings): held out {figs}")
        for fold, knobs in r["folds"].items():
            print(f"    {fold}: {a.knob} {knobs.get(a.knob, 0)}  {json.dumps(knobs)}")


if __name__ == "__main__":
    main()
