"""Choose alert settings on labelled recordings by cross-validation, so that no file is ever
scored with settings chosen on it (`aiot tune --labels DATA`).

Protocol: every setting of the grid is run once on every file (the fleet model trained on the
format's normal recording only, each file commissioned on its first rows, scored on the
rest), giving one confusion per (setting, file). The files are split into folds (by folder:
SKAB's valve1 / valve2 / other; one file per fold; or N groups of files dealt in turn in the
data set's order: TEP's by fault number, k mod N). For each fold, the setting is picked on
the OTHER folds' test rows only and scored on this fold's test rows. Each data set is judged
by its own figure and its own false-alarm budget: SKAB and generic data by pooled F1 with
FAR = FP / (FP + TN) within the budget, TEP by the mean per-file detection rate over its
faults with the false alarm rate of its normal rows within the budget. The pick is the
setting whose data sets are all within their budgets (if none is: every setting, flagged)
with the best mean of those figures, each data set weighing the same whatever its rows.
The held-out figure pools these scores: each file counted once, by settings that never saw
it. The settings written out are the same choice made on all files (what a user ships);
their figure on all files is in-sample and labelled so.

Scenario gate (device target, on unless --no-scenario-gate): a setting may be picked only if
the seeded scenario suite still passes its acceptance with the setting's monitor knobs (15/15
faults, 0 false alerts, 59/59 gaps as NO_DATA). Each choice walks its ranking from the best
down and takes the first setting that passes; the ones above it are reported as gated out,
with the suite's verdict. The suite is synthetic and never one of the scored rows, so the
constraint is the same in every fold and on all files.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from aiot.errors import ToolkitError
from aiot.evaluate.metrics import Confusion

FOLD_KINDS = ("folder", "file", "incident", "N (a number of groups, 2 or more)")
#: Each format's folds when --folds is not given: SKAB's folders; TEP's 22 files in 3 groups by
#: fault number (k mod 3: d00 d03 .. d21 / d01 d04 .. d19 / d02 d05 .. d20), fixed before any result
DEFAULT_FOLDS = {"skab": "folder", "tep": "3", "generic": "folder"}
#: Each format's false-alarm budget when --far-budget is not given (the issue's targets)
DEFAULT_BUDGET = {"skab": 0.10, "tep": 0.05, "generic": 0.10}
#: Each format's own figure: "detection" (TEP: mean per-file detection rate over the faults,
#: aiot.data.tep.benchmark) or "f1" (pooled F1 over the rows: SKAB, generic)
METRIC = {"tep": "detection"}


def folds_of(names: list[str], by: str) -> dict[str, str]:
    """Each file's fold: its first folder (``by="folder"``), itself (``"file"``; with
    ``"incident"`` the names are the parts of the files, :func:`.metrics.incident_cuts`, each
    its own fold), or for a number N one of N groups, the files dealt in turn in the order
    given (``"3"``: files 1, 4, 7 .. in group1of3)."""
    if by in ("file", "incident"):
        return {n: n for n in names}
    if by == "folder":
        return {n: n.split("/", 1)[0] if "/" in n else "." for n in names}
    if str(by).isdigit() and int(by) >= 2:
        k = int(by)
        return {n: f"group{i % k + 1}of{k}" for i, n in enumerate(names)}
    raise ToolkitError(f"unknown --folds '{by}'", hint=f"use one of: {', '.join(FOLD_KINDS)}")


@dataclass(frozen=True)
class Source:
    """One labelled data set of a cross-validation: its files (as named in the folds), its
    false-alarm budget and its figure (:data:`METRIC`)."""

    name: str
    files: frozenset
    budget: float
    metric: str = "f1"

    def figure(self, per_file: dict[str, Confusion], names: set[str]) -> tuple[float | None, float | None]:
        """(its figure, its false alarm rate) over its files among ``names``."""
        mine = [n for n in sorted(self.files) if n in names]
        if self.metric == "detection":
            from aiot.data.tep import benchmark

            b = benchmark([(n, per_file[n].tp, per_file[n].fn, per_file[n].fp, per_file[n].tn) for n in mine])
            return b["detection_rate"], b["false_alarm_rate"]
        c = _pooled(per_file, set(mine))
        return c.f1, c.far

    def describe(self, per_file: dict[str, Confusion], names: set[str]) -> dict:
        m, far = self.figure(per_file, names)
        return {"metric": "detection_rate" if self.metric == "detection" else "f1", "value": m, "far": far,
                "far_budget": self.budget, "within_far_budget": far is None or far <= self.budget}


def choose_sources(scored: list[tuple[object, dict[str, Confusion]]], names: set[str],
                   sources: list[Source]) -> tuple[int, bool]:
    """The index of the setting picked on ``names``: among those whose every data set (with
    files among ``names``) keeps its false alarm rate within its budget, the best mean of the
    data sets' figures (ties: the earlier, simpler setting); if none is within every budget,
    the best mean among all, and False."""
    c = choose_gated(scored, names, sources)
    return c.index, c.within_budget


#: A gate: a setting -> what keeps it from being picked (empty: it may be), e.g. the
#: scenario suite's acceptance failures (aiot.evaluate.scenarios.ScenarioGate).
Gate = Callable[[object], list]


@dataclass
class Choice:
    index: int
    within_budget: bool
    gate_passed: bool = True  #: False: no setting passed the gate, ``index`` is the ungated pick
    gated_out: list[tuple[int, list]] = field(default_factory=list)  #: ranked above the pick, and why


def choose_gated(scored: list[tuple[object, dict[str, Confusion]]], names: set[str], sources: list[Source],
                 gate: Gate | None = None) -> Choice:
    """:func:`choose_sources` under ``gate``: the settings ranked as it ranks them (those
    within every budget first, each group by the best mean of the figures, ties to the
    earlier setting) and the first that passes ``gate`` picked; ``gate`` is called lazily,
    from the best down, so only the settings above the pick and the pick itself are judged.
    If none passes, the ungated pick, flagged (every setting is then judged)."""
    present = [s for s in sources if s.files & names]
    means, ok = [], set()
    for i, (_, per) in enumerate(scored):
        figs = [(s, *s.figure(per, names)) for s in present]
        means.append(sum((m or 0.0) for _, m, _ in figs) / max(len(figs), 1))
        if all(far is None or far <= s.budget for s, _, far in figs):
            ok.add(i)
    ranking = sorted(range(len(scored)), key=lambda i: (bool(ok) and i not in ok, -means[i], i))
    if gate is None:
        return Choice(ranking[0], bool(ok))
    gated = []
    for i in ranking:
        why = list(gate(scored[i][0]))
        if not why:
            return Choice(i, i in ok, True, gated)
        gated.append((i, why))
    return Choice(ranking[0], bool(ok), False, gated)


def _pooled(per_file: dict[str, Confusion], names: set[str]) -> Confusion:
    return sum((c for n, c in per_file.items() if n in names), Confusion())


def choose(scored: list[tuple[object, dict[str, Confusion]]], names: set[str], budget: float) -> tuple[int, Confusion, bool]:
    """The index of the setting with the best pooled F1 over ``names`` among those whose
    pooled FAR there is within ``budget`` (ties: the earlier, simpler setting of the grid),
    its pooled confusion, and whether it is within the budget (else: best F1 overall): the
    pick of :func:`choose_sources` with all of ``names`` as one data set."""
    i, ok = choose_sources(scored, names, [Source("all", frozenset(names), budget)])
    return i, _pooled(scored[i][1], names), ok


@dataclass
class Fold:
    name: str
    files: list[str]
    setting: int  #: index into the grid, chosen on the other folds
    train: Confusion  #: the setting on the other folds' test rows (what it was chosen on)
    test: Confusion  #: the setting on this fold's test rows (never seen when choosing)
    within_budget: bool
    test_by_file: dict[str, Confusion] = field(default_factory=dict)
    train_by_data: dict[str, dict] = field(default_factory=dict)  #: each data set's figure it was chosen on
    train_files: list[str] = field(default_factory=list)  #: the files whose rows the setting was chosen on
    gated_out: list[tuple[int, list]] = field(default_factory=list)  #: better on the other folds, failed the gate
    gate_passed: bool = True


@dataclass
class CrossValidation:
    folds: list[Fold]
    held_out: Confusion  #: the folds' test confusions pooled: every file once, scored blind
    final: int  #: the setting chosen on all files (the one to ship)
    final_in_sample: Confusion
    final_within_budget: bool
    final_by_data: dict[str, dict] = field(default_factory=dict)
    final_gated_out: list[tuple[int, list]] = field(default_factory=list)
    final_gate_passed: bool = True

    def held_out_by_file(self) -> dict[str, Confusion]:
        return {n: c for f in self.folds for n, c in f.test_by_file.items()}


def cross_validate(scored: list[tuple[object, dict[str, Confusion]]], folds: dict[str, str],
                   budget: float | None = None, sources: list[Source] | None = None,
                   gate: Gate | None = None) -> CrossValidation:
    """Leave one fold out over ``scored`` ([(setting, {file: confusion})], every setting on
    every file of ``folds``). Needs at least two folds. ``sources``: the data sets, each
    judged by its own figure and budget (:func:`choose_sources`); else all files are one
    data set judged by pooled F1 within ``budget``. ``gate``: a constraint every choice
    keeps (:func:`choose_gated`); it must not look at the scored rows."""
    if sources is None:
        sources = [Source("all", frozenset(folds), budget)]
    names = set(folds)
    groups = sorted(set(folds.values()))
    if len(groups) < 2:
        raise ToolkitError(f"one fold only ({groups[0] if groups else 'no file'}): nothing to hold out",
                           hint="cross-validate by file (--folds file) or, one file with several labelled "
                                "incidents, by incident (--folds incident); or give data in more than one folder")
    out, held = [], Confusion()
    for g in groups:
        test = {n for n in names if folds[n] == g}
        train = names - test
        c = choose_gated(scored, train, sources, gate)
        i = c.index
        per = {n: c for n, c in scored[i][1].items() if n in test}
        t = sum(per.values(), Confusion())
        held = held + t
        out.append(Fold(g, sorted(test), i, _pooled(scored[i][1], train), t, c.within_budget, per,
                        {s.name: s.describe(scored[i][1], train) for s in sources if s.files & train}, sorted(train),
                        c.gated_out, c.gate_passed))
    c = choose_gated(scored, names, sources, gate)
    final = c.index
    return CrossValidation(out, held, final, _pooled(scored[final][1], names), c.within_budget,
                           {s.name: s.describe(scored[final][1], names) for s in sources}, c.gated_out, c.gate_passed)


def _rates(c: Confusion) -> dict:
    return {"f1": c.f1, "far": c.far, "mar": c.mar, "tp": c.tp, "fp": c.fp, "tn": c.tn, "fn": c.fn}


def report(cv: CrossValidation, settings: list, describe, context: dict, tep: bool | set[str] = False,
           datasets: dict[str, set[str]] | None = None, gate: dict | None = None) -> dict:
    """The cross-validation as a JSON document: every fold (its held-out files, the files its
    setting was chosen on, with ``gate`` (how the scenario gate was run, or None: off) the
    settings it gated out and why), the held-out figure, the final pick."""
    def gated(f_gated: list, passed: bool) -> dict:
        if gate is None:
            return {}
        return {"gated_out": [{"setting": describe(settings[i]), "scenario_suite": why} for i, why in f_gated],
                "passes_scenario_gate": passed}

    doc = {
        **context,
        "protocol": __doc__.split("\n\n", 1)[1].replace("\n", " ").strip(),
        "folds": [{"fold": f.name, "files": f.files, "chosen_on": f.train_files,
                   "setting": describe(settings[f.setting]),
                   "chosen_on_other_folds": _rates(f.train), "chosen_on_other_folds_by_data": f.train_by_data,
                   "held_out": _rates(f.test), "within_far_budget": f.within_budget,
                   **gated(f.gated_out, f.gate_passed),
                   **({"tep_held_out": _tep(f.test_by_file, tep)} if _tep(f.test_by_file, tep) else {})}
                  for f in cv.folds],
        "held_out": _rates(cv.held_out),
        "settings": describe(settings[cv.final]),
        **{("settings_" + k if k == "gated_out" else k): v for k, v in gated(cv.final_gated_out,
                                                                              cv.final_gate_passed).items()},
        "settings_on_all_files_in_sample": {**_rates(cv.final_in_sample), "within_far_budget": cv.final_within_budget,
                                            "by_data": cv.final_by_data,
                                            "note": "chosen and scored on the same rows: not a result"},
    }
    doc["scenario_gate"] = {"on": False} if gate is None else {"on": True, **gate}
    held = cv.held_out_by_file()
    if datasets and len(datasets) > 1:  # one data set's files pooled alone, each scored blind as above
        doc["held_out_by_data"] = {d: _rates(sum((held[n] for n in names), Confusion())) for d, names in datasets.items()}
    if tep:
        doc["tep_held_out"] = _tep(held, tep)
    return doc


def _tep(per_file: dict[str, Confusion], tep: bool | set[str]) -> dict | None:
    """TEP's figures (aiot.data.tep.benchmark) of the TEP files among ``per_file``, or None."""
    from aiot.data.tep import benchmark

    rows = [(n, c.tp, c.fn, c.fp, c.tn) for n, c in per_file.items() if tep is True or (tep and n in tep)]
    return benchmark(rows) if rows else None


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.2f} %"


def _f1(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _by_data(figs: dict[str, dict]) -> str:
    return "; ".join(f"{d} {'detection' if r['metric'] == 'detection_rate' else 'F1'} {_f1(r['value'])} "
                     f"FAR {_pct(r['far'])}{'' if r['within_far_budget'] else ' (over its budget)'}"
                     for d, r in figs.items())


def _gate_lines(gated: list[dict], passed: bool, gate_on: bool, picked: dict | None = None) -> str:
    """The fold table's line on the settings the scenario gate kept from a pick: each
    combination of the monitor knobs the suite ran with, once, with its verdict; the knobs
    it shares with the pick ``picked`` are left out (the line says what made it fail)."""
    from aiot.evaluate.scenarios import scenario_knobs

    if not gate_on:
        return ""
    seen: dict[str, str] = {}
    for g in gated:
        knobs = scenario_knobs({k: v for k, v in g["setting"].items() if k != "window"})[0]
        shown = {k: v for k, v in knobs.items() if (picked or {}).get(k) != v} or knobs
        seen.setdefault(", ".join(f"{k} {v}" for k, v in shown.items()) or "the defaults",
                        "; ".join(g["scenario_suite"]))
    items = [f"{k}: {v}" for k, v in seen.items()]
    more = f" ... and {len(items) - 4} more combination(s)" if len(items) > 4 else ""
    head = ("\n  NO SETTING passes the seeded scenarios: this is the ungated pick" if not passed else "")
    body = (f"\n  gated out by the seeded scenarios (knobs that differ from the pick): {' | '.join(items[:4])}{more}"
            if items else "")
    return head + body


def print_report(doc: dict, out=None) -> None:
    out = out or sys.stdout
    gate_on = doc.get("scenario_gate", {}).get("on", False)
    for f in doc["folds"]:
        tr, te = f["chosen_on_other_folds"], f["held_out"]
        note = "" if f["within_far_budget"] else "  (no setting within the FAR budget on the other folds)"
        by = f.get("chosen_on_other_folds_by_data", {})
        chosen = (_by_data(by) if len(by) > 1 or any(r["metric"] != "f1" for r in by.values())
                  else f"F1 {_f1(tr['f1'])} FAR {_pct(tr['far'])}")
        t = f.get("tep_held_out")
        tep = (f"; TEP detection {_f1(t['detection_rate'])} over {t['faults']} fault(s), false alarms "
               f"{_pct(t['false_alarm_rate'])}") if t else ""
        print(f"fold {f['fold']} ({len(f['files'])} file(s)): chosen on the others {chosen}; held out F1 "
              f"{_f1(te['f1'])} FAR {_pct(te['far'])} MAR {_pct(te['mar'])}{tep}{note}\n"
              f"  settings {json.dumps(f['setting'])}"
              f"{_gate_lines(f.get('gated_out', []), f.get('passes_scenario_gate', True), gate_on, f['setting'])}",
              file=out)
    h = doc["held_out"]
    print(f"held out, every file once: F1 {_f1(h['f1'])}  FAR {_pct(h['far'])}  MAR {_pct(h['mar'])}", file=out)
    for d, r in doc.get("held_out_by_data", {}).items():
        print(f"  {d}: F1 {_f1(r['f1'])}  FAR {_pct(r['far'])}  MAR {_pct(r['mar'])}", file=out)
    if doc.get("tep_held_out"):
        t = doc["tep_held_out"]
        print(f"TEP held out: mean detection rate {_f1(t['detection_rate'])} over {t['faults']} faults "
              f"({_f1(t['detection_rate_without_3_9_15'])} without 3, 9, 15), false alarms "
              f"{_pct(t['false_alarm_rate'])} of normal rows", file=out)
    s = doc["settings_on_all_files_in_sample"]
    by = s.get("by_data", {})
    by = f"; {_by_data(by)}" if len(by) > 1 or any(r["metric"] != "f1" for r in by.values()) else ""
    gated = _gate_lines(doc.get("settings_gated_out", []), doc.get("passes_scenario_gate", True), gate_on,
                        doc["settings"])
    print(f"settings chosen on all files: {json.dumps(doc['settings'])}\n"
          f"  (in-sample F1 {_f1(s['f1'])} FAR {_pct(s['far'])}{by}: chosen on these rows, not a result){gated}",
          file=out)
    g = doc.get("scenario_gate", {})
    print(f"scenario gate: {'on, ' + str(g.get('suite_runs')) + ' suite run(s)' if g.get('on') else 'off'}"
          f"{'' if g.get('on') or not g.get('why') else ' (' + g['why'] + ')'}", file=out)


def _score(data: Path, fmt: str, target: str, windows: tuple[int, ...], jobs: int, level_only: bool,
           csv_options: dict | None, fixed_knobs: dict | None = None, folds_by: str = "folder",
           per_file: bool = False, fleet: Path | None = None,
           early_warning_s: float = 0.0) -> tuple[list, list[str], int, str, dict | None]:
    """Every (window, setting) of ``target``'s grid on every labelled file of ``data``:
    [((window, setting), {file: confusion})] in grid order, the file names (with ``folds_by``
    "incident": the files' parts, one labelled incident each), the commissioning rows, and
    the model: "fleet" (trained on the data set's normal recording), or "per-file" (one per
    file on its own commissioning rows, as `aiot commission` makes it: ``per_file``, or data
    without a normal recording), and the normal recording the fleet model was built from
    ({"path", "sha256"}; None for per-file models). ``fleet``: that recording, instead of
    the data set's own (as `aiot evaluate --fleet`). ``early_warning_s``: the rows that long
    before each labelled onset are neither normal nor fault (as `aiot evaluate --early-warning`)."""
    from aiot.data import readers, sha256_file
    from aiot.evaluate import tuning
    from aiot.evaluate.metrics import incident_cuts
    from aiot.evaluate.pipeline import Settings
    from aiot.progress import step

    with step(f"reading {data} ({fmt})"):
        # generic files without a fleet recording: one model per file, each with its own sensors
        ds = readers.read(fmt, Path(data), csv_options=csv_options,
                          same_sensors=fleet is not None)
        if fleet is not None:
            ds.fleet, ds.fleet_source = readers.fleet_recording(fleet, ds.recordings[0].series.channels,
                                                                csv_options), Path(fleet)
    if not any(r.labels.any() for r in ds.recordings):
        raise ToolkitError(f"{data}: no labelled fault in any file: nothing to choose settings on",
                           hint="give labelled recordings, or tune on normal data: aiot tune NORMAL.csv")
    if early_warning_s:
        from aiot.evaluate.incidents import lead_rows

        for r in ds.recordings:
            r.lead = lead_rows(r.labels, r.series.timestamps, early_warning_s)
    own = per_file or ds.fleet is None
    fleet_sha = None if own else sha256_file(ds.fleet_source)  # once: the models' cache key and the report's record
    if own and not per_file:
        print(f"{data}: no normal recording beside the files: one model per file, trained on its own "
              "commissioning rows (as `aiot commission` makes it)", file=sys.stderr)
    scored: list = []
    commission = 0
    for window in windows:
        settings = Settings(format=fmt, window=window, jobs=jobs)
        commission = settings.commissioning_rows(min(r.series.rows for r in ds.recordings))
        cuts = ({r.name: incident_cuts(r.labels[commission:]) for r in ds.recordings} if folds_by == "incident"
                else {})
        if target == "device":
            grid = tuning.monitor_grid(per_file=own, level_only=level_only, fixed=fixed_knobs)
            if own:
                models = tuning.monitor_models(ds, window, grid, commission=commission, jobs=jobs)
            else:
                models = tuning.monitor_models(ds, window, grid, ds.fleet, fleet_sha, commission=commission)
            part = tuning.score_monitor_files(ds, models, window, grid, jobs=jobs, commission=commission, cuts=cuts)
        else:
            from aiot.evaluate.pipeline import fleet_package

            grid = tuning.grid()
            package = (tuning.installation_models(ds, "reference", window, jobs=jobs, commission=commission) if own
                       else fleet_package(ds.fleet, ds.fleet_source, settings))
            with step(f"{len(grid)} reference rules at window {window} on {len(ds.recordings)} file(s)"):
                part = tuning.score_rules_files(ds, package, grid, commission, cuts=cuts)
        scored += [((window, k), per) for k, per in part]
        names = list(part[0][1])  # the files, or with incident folds their parts, in order
    recording = None if own else {"path": str(ds.fleet_source), "sha256": fleet_sha}
    return scored, names, commission, "per-file" if own else "fleet", recording


def run(data: Path | list[Path], fmt: str | list[str], target: str, windows: int | tuple[int, ...],
        budget: float | list[float] | None, folds_by: str | list[str] | None, save: Path | None, jobs: int = 2,
        level_only: bool = False, csv_options: dict | None = None, fixed_knobs: dict | None = None,
        scenario_gate=True, per_file: bool = False, fleets: list[Path | None] | None = None,
        early_warning_s: float = 0.0) -> dict:
    """Score the grid of ``target`` ("device": the monitor's knobs; "reference": the
    reference rule) at each of ``windows`` on every labelled file of ``data`` (the window is
    one more axis of the grid, chosen inside each fold like the rest), cross-validate, print
    and return the report; with ``save``, write SAVE/crossval.json and the settings file for
    `aiot evaluate --alert-settings`.

    Several data sets (``data``, ``fmt``, ``folds_by`` and ``budget`` lists, paired in order;
    None: each format's default, :data:`DEFAULT_FOLDS`, :data:`DEFAULT_BUDGET`) are one
    cross-validation: their files named ``FORMAT:file``, their folds side by side, and each
    fold's setting chosen on every other fold, each data set judged by its own figure within
    its own budget (:func:`choose_sources`).

    ``scenario_gate``: True (the device target: every pick passes the seeded scenario suite,
    :class:`aiot.evaluate.scenarios.ScenarioGate`), False (off), or a ScenarioGate to use.
    ``per_file``: one model per file on its own commissioning rows (what `aiot commission`
    ships) even where a normal recording would train a fleet model; data without one always
    does. ``folds_by`` "incident": each file's scored rows cut into parts of one labelled
    incident each (:func:`.metrics.incident_cuts`), every part its own fold: one long
    labelled history is enough. ``fleets``: each data set's normal recording for the fleet
    model (None: the data set's own, if it has one), recorded in the report and the picks.
    ``early_warning_s``: labels that mark the failure itself; the rows that long before each
    onset are neither normal nor fault in every figure (`aiot evaluate --early-warning`)."""
    windows = (windows,) if isinstance(windows, int) else tuple(windows)
    data = [data] if isinstance(data, (str, Path)) else list(data)
    fmts = [fmt] * len(data) if isinstance(fmt, str) else list(fmt)
    fold_kinds = [folds_by] * len(data) if folds_by is None or isinstance(folds_by, str) else list(folds_by)
    fold_kinds = [DEFAULT_FOLDS.get(f, "folder") if k is None else k for f, k in zip(fmts, fold_kinds)]
    budgets = [budget] * len(data) if budget is None or isinstance(budget, (int, float)) else list(budget)
    budgets = [DEFAULT_BUDGET.get(f, 0.10) if b is None else float(b) for f, b in zip(fmts, budgets)]
    if not len(data) == len(fmts) == len(fold_kinds) == len(budgets):
        raise ToolkitError(f"{len(data)} --labels, {len(fmts)} --format, {len(fold_kinds)} --folds, "
                           f"{len(budgets)} --far-budget",
                           hint="give one --format (and one --folds and --far-budget, or one for all, or none) per "
                                "--labels, in the same order")
    joint = len(data) > 1
    scored: list = []
    folds: dict[str, str] = {}
    datasets: dict[str, set[str]] = {}
    commission = {}
    models: set[str] = set()
    sources: list[Source] = []
    recordings: dict[str, dict] = {}
    for d, f, by, b, fleet in zip(data, fmts, fold_kinds, budgets, fleets or [None] * len(data)):
        part, names, rows, model, recording = _score(d, f, target, windows, jobs, level_only, csv_options,
                                                     fixed_knobs, by, per_file, fleet, early_warning_s)
        models.add(model)
        if recording is not None:
            recordings[f] = recording
        tag = f"{f}:" if joint else ""
        if tag[:-1] in datasets:
            raise ToolkitError(f"--format {f} given twice", hint="one data set per format")
        datasets[tag[:-1] or f] = {tag + n for n in names}
        sources.append(Source(tag[:-1] or f, frozenset(tag + n for n in names), b, METRIC.get(f, "f1")))
        commission[f] = rows
        folds.update({tag + n: tag + g for n, g in folds_of(names, by).items()})
        part = [(k, {tag + n: c for n, c in per.items()}) for k, per in part]
        scored = part if not scored else [(k, {**a, **b}) for (k, a), (_, b) in zip(scored, part)]

    target_kind = target

    def describe(setting) -> dict:
        window, k = setting
        return {"window": window, **(k if target_kind == "device" else k.to_json())}

    if save is not None:  # every setting on every file, before any choice: what the folds are chosen from
        Path(save).mkdir(parents=True, exist_ok=True)
        (Path(save) / "scores.json").write_text(json.dumps(
            [{"setting": {"window": w, **(k if target == "device" else k.to_json())},
              "files": {n: [c.tp, c.fp, c.tn, c.fn] for n, c in per.items()}} for (w, k), per in scored]) + "\n")
    gate = None
    gate_off_why = "--no-scenario-gate"
    if target != "device":
        gate_off_why = "the reference rule is not the monitor the scenarios run"
    elif scenario_gate is not False:
        from aiot.evaluate.scenarios import ScenarioGate

        gate = ScenarioGate() if scenario_gate is True else scenario_gate
    cv = cross_validate(scored, folds, sources=sources, gate=None if gate is None else lambda s: gate.failures(s[1]))
    context = {"tool": "aiot tune --labels", "data": [str(d) for d in data] if joint else str(data[0]),
               "format": fmts if joint else fmts[0], "target": target, "windows": list(windows),
               "model": "per-file" if models == {"per-file"} else "fleet" if models == {"fleet"} else "mixed",
               **({"fleet_recording": recordings if joint else recordings[fmts[0]]} if recordings else {}),
               "commissioning_rows": commission,
               "far_budget": {s.name: s.budget for s in sources} if joint else budgets[0],
               "figure": {s.name: "mean detection rate over the faults" if s.metric == "detection" else "pooled F1"
                          for s in sources},
               "folds_by": fold_kinds if joint else fold_kinds[0], "grid_size": len(scored),
               "grid": "level-shift score only (level_windows > 0)" if level_only else "full",
               "early_warning_s": early_warning_s}
    tep = datasets.get("tep", set()) if joint else (fmts[0] == "tep")
    doc = report(cv, [k for k, _ in scored], describe, context, tep=tep, datasets=datasets,
                 gate=None if gate is None else gate.describe())
    if gate is None:
        doc["scenario_gate"]["why"] = gate_off_why
    print_report(doc)
    if save is not None:
        from aiot.evaluate.alert_settings import AlertSettings, save as save_settings

        save = Path(save)
        save.mkdir(parents=True, exist_ok=True)
        (save / "crossval.json").write_text(json.dumps(doc, indent=2) + "\n")
        picked_by = {**context, "validation": {**doc["held_out"], "kind": "cross-validated, held out"},
                     "report": str(save / "crossval.json")}
        window, final = scored[cv.final][0]
        kind = "reference" if target == "reference" else "device"
        s = (AlertSettings(kind, window, rule=final, picked_by=picked_by) if kind == "reference"
             else AlertSettings(kind, window, knobs=final, picked_by=picked_by))
        far = "-".join(f"{100 * b:g}" for b in budgets)
        own = "-per-file" if context["model"] == "per-file" else ""
        path = save_settings(save / f"{kind}{own}-w{window}-cv-far{far}.json", s)
        print(f"saved {save / 'crossval.json'} and {path}")
    return doc
