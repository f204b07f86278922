"""Read a recorded installation (or many) for evaluation: SKAB, NAB or generic CSV.

Every reader returns :class:`Recording` objects in a stable order: one per file, with row
labels (1 = inside a labelled incident) and, where the format has them, NAB windows.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from aiot.data import Series, check_input_file, format_time, load_csv, parse_time
from aiot.errors import ToolkitError

FORMATS = ("skab", "nab", "tep", "generic")
#: A labels file (NAB's combined_windows.json form) larger than this is refused before reading:
#: NAB's own is 9 kB; a few hundred bytes per labelled window
MAX_LABELS_BYTES = 64 << 20
#: SKAB's folder of normal-operation data: the fleet training set, never a test file.
SKAB_FLEET_DIR = "anomaly-free"


@dataclass
class Recording:
    """One installation's recording, ready to be commissioned and streamed."""

    name: str  #: path relative to the data root, '/'-separated (the key used in reports)
    series: Series
    windows: list[tuple[int, int]] | None = None  #: NAB windows as row pairs (inclusive)
    meta: dict = field(default_factory=dict)
    #: rows neither normal nor fault when scored (an early-warning lead before each labelled
    #: onset: evaluate.incidents.lead_rows); None: every row counts as labelled
    lead: np.ndarray | None = None

    @property
    def labels(self) -> np.ndarray:
        if self.series.labels is None:
            return np.zeros(self.series.rows, dtype=np.int8)
        return self.series.labels


@dataclass
class Dataset:
    recordings: list[Recording]
    fleet: Series | None = None  #: normal-operation data for a fleet model, when the format has it
    fleet_source: Path | None = None
    #: files left out with ``skip_bad`` (name, why), in the order met; never silently
    skipped: list[tuple[str, str]] = field(default_factory=list)
    #: entries of the --labels windows file that name no file of the data (warned about)
    labels_without_data: list[str] = field(default_factory=list)


#: Loader findings (:func:`aiot.data.load_csv`'s ``meta``) copied into each file's report notes.
FILE_NOTES = ("time_resets", "first_time_reset_line", "duplicate_timestamps", "status_columns_left_out",
              "row_index_left_out")
#: The hint's addition on a file a folder run could leave out.
SKIP_HINT = "aiot evaluate --skip-bad-files evaluates the other files and lists this one as skipped"


def skip_reason(message: str, hint: str | None) -> str:
    """Why a file was left out, as listed: the error and, where it has one, what to do."""
    return f"{message} (to fix: {hint})" if hint else message


def with_skip_hint(e: ToolkitError, files: int) -> ToolkitError:
    """``e``, about one of ``files`` files, with :data:`SKIP_HINT` added to its hint when
    there are others to evaluate without it."""
    if files < 2:
        return e
    return ToolkitError(e.message, hint=f"{e.hint}; or: {SKIP_HINT}" if e.hint else SKIP_HINT, exit_code=e.exit_code)


def _load_each(files: list[Path], root: Path, load, skipped: list[tuple[str, str]] | None) -> list[Recording]:
    """``load(path)`` for each of ``files`` (at least one), as Recordings. A file that cannot
    be read stops the run (its error gains :data:`SKIP_HINT`), or with ``skipped`` (a list) is
    put there with the reason and left out; none left is an error (:func:`none_left`)."""
    recs = []
    for f in files:
        try:
            series = _readable(load, f)
            # what the loader met in the file's clock and columns goes into the report's notes
            notes = {k: v for k, v in series.meta.items() if v and k in FILE_NOTES}
            recs.append(Recording(_rel(f, root), series, meta=notes))
        except ToolkitError as e:
            if skipped is None:
                raise with_skip_hint(e, len(files)) from None
            skipped.append((_rel(f, root), skip_reason(e.message, e.hint)))
    if not recs:
        raise none_left(root, skipped)
    return recs


def _readable(load, f: Path):
    """``load(f)``, with a file the system cannot read (no permission, an I/O error on a failing
    disk or share, a link to nowhere) as a ToolkitError naming it, like any other file that
    cannot be read."""
    if f.is_symlink() and not f.exists():
        raise ToolkitError(f"{f}: a link to {f.readlink()}, which does not exist",
                           hint="mount or restore what it points at, or remove the link")
    try:
        return load(f)
    except OSError as e:
        raise ToolkitError(f"{f}: cannot be read ({e.strerror or e})",
                           hint="check the file's permissions, and the disk or share it is on") from None


def check_fleet_file(path: Path, option: str = "--fleet") -> Path:
    """``path`` if it is a file, else an error naming it and ``option`` (how the user gave it);
    callable before the data is read."""
    path = Path(path)
    if not path.is_file():
        raise ToolkitError(f"{path}: no such file" if not path.exists() else f"{path}: not a file",
                           hint=f"check the {option} path (a CSV of normal operation with the data's sensor columns)")
    return path


def fleet_recording(path: Path, channels: list[str], csv_options: dict | None = None, option: str = "--fleet"):
    """A recording of the fleet's normal running given beside the data (``option``: how the
    user gave it): its columns ``channels`` (each must be there) in that order, its labels
    never read, the clock options (--strict-time, --time-format) of ``csv_options``."""
    from aiot.data import clock_options

    path = check_fleet_file(path, option)
    try:
        fleet = load_csv(path, channels=list(channels), label_column=None, **clock_options(csv_options))
    except ToolkitError as e:
        raise ToolkitError(e.message if e.message.startswith(str(path)) else f"{path}: {e.message}",
                           hint=e.hint or f"{option}: the fleet's recording needs every sensor column of the "
                                          "data's") from None
    # a column there but empty (read by name, it is kept): the model would learn nothing of the
    # sensor, and its noise floors would be NaN
    empty = [c for c, any_value in zip(fleet.channels, fleet.valid.any(axis=0)) if not any_value]
    if empty:
        raise ToolkitError(f"{path}: sensor(s) {', '.join(empty)}: no value in any row of the fleet's recording",
                           hint=f"{option} must record every sensor of the data: fix the recording, or leave those "
                                "sensors' columns out of the data too")
    return fleet


def none_left(root: Path, skipped: list[tuple[str, str]], limit: int | None = None) -> ToolkitError:
    """The error when ``--skip-bad-files`` left nothing to evaluate: how many, and the first
    file's reason (without the option, the run stops at each in turn, naming it); ``limit``:
    the run was of the folder's first files only (``--limit``)."""
    name, why = skipped[0]
    which = "every file" if limit is None else f"each of the first {limit} file(s) (--limit {limit})"
    return ToolkitError(f"{root}: {which} was left out ({len(skipped)}); the first, {name}: {why}",
                        hint="fix the files (run without --skip-bad-files to stop at each in turn), or point --data "
                             "at good ones")


def natural_key(rel: str) -> list:
    # valve1/2.csv before valve1/10.csv
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", rel)]


def _csv_files(root: Path, what: str) -> list[Path]:
    if not root.exists():
        raise ToolkitError(f"{root}: no such file or folder", hint=f"point --data at {what}")
    if root.is_file():
        if root.suffix.lower() != ".csv":
            raise ToolkitError(f"{root}: not a .csv file", hint=f"point --data at {what}")
        return [root]
    # a link to nowhere (a recording on a share not mounted) is a file that cannot be read, not
    # one that is not there: without a word, the run would cover fewer files than the folder has
    files = sorted((p for p in root.rglob("*.csv") if p.is_file() or (p.is_symlink() and not p.exists())),
                   key=lambda p: natural_key(p.relative_to(root).as_posix()))
    if not files:
        raise ToolkitError(f"{root}: no .csv files in this folder (searched sub-folders too)", hint=f"point --data at {what}")
    return files


def _rel(path: Path, root: Path) -> str:
    return path.name if root.is_file() else path.relative_to(root).as_posix()


def _column_diff(cols: list[str], ref_cols: list[str], ordered: bool = True) -> str | None:
    """What differs between sensor columns ``cols`` and ``ref_cols``, in words (None: nothing)."""
    low = [c.lower() for c in cols]
    ref_low = [c.lower() for c in ref_cols]
    if low == ref_low or (not ordered and sorted(low) == sorted(ref_low) and len(set(low)) == len(low)):
        return None
    missing = [c for c in ref_cols if c.lower() not in low]
    extra = [c for c in cols if c.lower() not in ref_low]
    parts = []
    if missing:
        parts.append(f"missing {', '.join(repr(c) for c in missing)}")
    if extra:
        parts.append(f"extra {', '.join(repr(c) for c in extra)}")
    return "; ".join(parts) or f"the same columns in another order ({', '.join(cols)})"


def _most_shared(recs: list[Recording]) -> Recording:
    """The first file with the sensor columns (in order, case aside) that most files have: the
    reference the others are checked against, so that one odd file, even the first, is the
    one named (and with --skip-bad-files left out), not all the others."""
    keys = [tuple(c.lower() for c in r.series.channels) for r in recs]
    counts = Counter(keys)
    most = max(counts.values())
    return next(r for r, k in zip(recs, keys) if counts[k] == most)


def _check_same_channels(recs: list[Recording], ref_name: str | None = None, ref_cols: list[str] | None = None,
                         skipped: list[tuple[str, str]] | None = None) -> list[Recording]:
    """Every file has the sensor columns most files have (:func:`_most_shared`), in their
    order; with ``ref_cols`` (the fleet recording's), every file has those columns (in any
    order: the fleet recording is read in the files' order), in the order most of them have.
    Returns the files that do: with ``skipped`` (a
    list) the others are put there with the reason, otherwise the first stops the run."""
    order_ref = None
    if ref_cols is None:
        first = _most_shared(recs)
        ref_name, ref_cols, ordered = first.name, first.series.channels, True
    else:
        ordered = False
        fitting = [r for r in recs if _column_diff(r.series.channels, ref_cols, ordered=False) is None]
        order_ref = _most_shared(fitting) if fitting else None
    kept = []
    for r in recs:
        diff = _column_diff(r.series.channels, ref_cols, ordered)
        if diff is None and order_ref is not None:  # the fleet's columns, in the order most files have
            diff = _column_diff(r.series.channels, order_ref.series.channels)
            name, cols = order_ref.name, order_ref.series.channels
        else:
            name, cols = ref_name, ref_cols
        if diff is None:
            kept.append(r)
            continue
        e = ToolkitError(
            f"{r.name}: sensor columns differ from {name}'s: {diff} ({name} has {', '.join(cols)})",
            hint="one evaluation runs one model: every file needs the same sensor columns in the same order",
        )
        if skipped is None:
            raise with_skip_hint(e, len(recs))
        skipped.append((r.name, skip_reason(e.message, e.hint)))
    return kept


def read_skab(root: Path, skip_bad: bool = False, csv_options: dict | None = None) -> Dataset:
    """SKAB: ';'-separated files with datetime, 8 sensors, ``anomaly`` and ``changepoint``.

    The ``anomaly-free`` folder, when present, is the fleet training set, not a test file
    (never skipped: a fleet recording that cannot be read stops the run).
    """
    root = Path(root)
    files = _csv_files(root, "SKAB's data folder (with valve1/, valve2/, other/ and anomaly-free/)")
    fleet_files = [f for f in files if f.parent.name == SKAB_FLEET_DIR]
    fleet_file = fleet_files[-1] if fleet_files else None
    tests = [f for f in files if f.parent.name != SKAB_FLEET_DIR]
    if not tests:
        raise ToolkitError(f"{root}: only anomaly-free data, no experiment file to evaluate on",
                           hint="point --data at SKAB's data folder (valve1/, valve2/, other/)")
    skipped: list[tuple[str, str]] | None = [] if skip_bad else None
    opts = _time_options(csv_options)
    recs = _load_each(tests, root, lambda f: load_csv(f, label_column="anomaly", **opts), skipped)
    fleet = None
    if fleet_file is not None:
        # every experiment file against the fleet recording's sensors, before anything is trained;
        # read once, then put in the files' column order
        everything = _readable(lambda f: load_csv(f, label_column=None, **opts), fleet_file)
        recs = _check_same_channels(recs, _rel(fleet_file, root), everything.channels, skipped)
        if not recs:
            raise none_left(root, skipped)
        order = [[c.lower() for c in everything.channels].index(c.lower()) for c in recs[0].series.channels]
        fleet = replace(everything, values=everything.values[:, order], valid=everything.valid[:, order],
                                    channels=[everything.channels[i] for i in order])
    else:
        recs = _check_same_channels(recs, skipped=skipped)
    return Dataset(recs, fleet, fleet_file, skipped or [])


def read_generic(root: Path, labels_file: Path | None = None, label_column: str | None = "auto",
                 skip_bad: bool = False, csv_options: dict | None = None, same_sensors: bool = True) -> Dataset:
    """One CSV or a folder of them: a timestamp column, sensor columns, an optional label column.

    With ``labels_file`` (NAB's combined_windows.json form), incidents come from its time
    windows instead of a label column. ``same_sensors`` False: the files may have different
    sensor columns (each installation runs its own model: no fleet recording, no given model).
    """
    root = Path(root)
    files = _csv_files(root, "a CSV file or a folder of CSV files")
    skipped: list[tuple[str, str]] | None = [] if skip_bad else None
    opts = dict(csv_options or {})
    label_column = opts.pop("label_column", label_column)
    recs = _load_each(files, root, lambda f: load_csv(f, label_column=None if labels_file else label_column, **opts),
                      skipped)
    if same_sensors:
        recs = _check_same_channels(recs, skipped=skipped)
    unmatched = []
    if labels_file is not None:
        unmatched = _apply_windows(recs, labels_file, left_out={name for name, _ in skipped or []})
    return Dataset(recs, skipped=skipped or [], labels_without_data=unmatched)


def read_nab(root: Path, labels_file: Path | None, skip_bad: bool = False, csv_options: dict | None = None) -> Dataset:
    """NAB: ``timestamp,value`` files under ``data/<folder>/``; windows from combined_windows.json."""
    root = Path(root)
    if labels_file is None:
        raise ToolkitError(
            "--format nab needs --labels (NAB's labels/combined_windows.json)",
            hint="pass --labels path/to/NAB/labels/combined_windows.json",
        )
    if root.is_dir() and (root / "data").is_dir():
        root = root / "data"  # accept NAB's repository root as well as its data folder
    files = _csv_files(root, "NAB's data folder (data/<folder>/<file>.csv)")
    skipped: list[tuple[str, str]] | None = [] if skip_bad else None
    opts = _time_options(csv_options)
    recs = _load_each(files, root, lambda f: load_csv(f, label_column=None, timestamp_column="timestamp", **opts),
                      skipped)
    unmatched = _apply_windows(recs, labels_file, every_file=True, left_out={name for name, _ in skipped or []})
    return Dataset(recs, skipped=skipped or [], labels_without_data=unmatched)


def _time_options(csv_options: dict | None) -> dict:
    """The reading options a fixed format still takes from the user (its label column is its own)."""
    opts = dict(csv_options or {})
    if opts.get("label_column", "auto") != "auto" or opts.get("label_map") is not None:
        raise ToolkitError("--label-column / --label-map go with --format generic (this format names its labels)",
                           hint="drop them, or read the files with --format generic")
    opts.pop("label_column", None)
    opts.pop("label_map", None)
    return opts


def read(fmt: str, root: Path, labels_file: Path | None = None, skip_bad: bool = False,
         csv_options: dict | None = None, same_sensors: bool = True) -> Dataset:
    """``skip_bad``: a file that cannot be read, or whose sensor columns differ from the
    others', is left out and listed in ``Dataset.skipped`` (with why) instead of stopping the
    run. ``csv_options``: :func:`aiot.data.load_csv` keywords from the command line
    (strict_time, time_format; generic also label_column, label_map). ``same_sensors``
    False (generic files, each with its own model): the files' sensors may differ."""
    if fmt == "skab":
        if labels_file is not None:
            raise ToolkitError("--labels is not used with --format skab (labels are SKAB's 'anomaly' column)",
                               hint="drop --labels")
        return read_skab(root, skip_bad, csv_options)
    if fmt == "nab":
        return read_nab(root, labels_file, skip_bad, csv_options)
    if fmt == "tep":
        if labels_file is not None:
            raise ToolkitError("--labels is not used with --format tep (labels are the files' 'label' column)",
                               hint="drop --labels")
        return read_tep(root, skip_bad, csv_options)
    if fmt == "generic":
        return read_generic(root, labels_file, skip_bad=skip_bad, csv_options=csv_options, same_sensors=same_sensors)
    raise ToolkitError(f"unknown --format '{fmt}'", hint=f"use one of: {', '.join(FORMATS)}")


def load_windows(labels_file: Path) -> dict[str, list[tuple[float, float]]]:
    """NAB's combined_windows.json -> {relative path: [(start_s, end_s), ...]}."""
    labels_file = Path(labels_file)
    if not labels_file.exists() and not labels_file.is_symlink():
        raise ToolkitError(f"{labels_file}: labels file not found", hint="pass NAB's labels/combined_windows.json")
    # a FIFO would block for ever, a huge file would be read whole before the JSON check
    check_input_file(labels_file, "a labels JSON file (NAB's combined_windows.json form)", MAX_LABELS_BYTES)
    try:
        doc = json.loads(labels_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ToolkitError(f"{labels_file}: not valid JSON ({e})",
                           hint='expected {"folder/file.csv": [["start", "end"], ...], ...}') from None
    if not isinstance(doc, dict):
        raise ToolkitError(f"{labels_file}: top level is a {type(doc).__name__}, expected an object",
                           hint='expected {"folder/file.csv": [["start", "end"], ...], ...}')
    out: dict[str, list[tuple[float, float]]] = {}
    for key, wins in doc.items():
        if not isinstance(wins, list):
            raise ToolkitError(f"{labels_file}: entry '{key}' is not a list of [start, end] pairs")
        parsed = []
        for k, w in enumerate(wins):
            if not (isinstance(w, list) and len(w) == 2 and all(isinstance(t, (str, int, float)) for t in w)):
                raise ToolkitError(f"{labels_file}: '{key}' window {k}: expected [start, end], got {w!r}")
            try:
                a, b = parse_time(str(w[0])), parse_time(str(w[1]))
            except ValueError:
                raise ToolkitError(f"{labels_file}: '{key}' window {k}: {w!r} is not a pair of timestamps",
                                   hint="use ISO-8601 times like NAB's '2014-04-10 07:15:00.000000'") from None
            if b < a:
                raise ToolkitError(f"{labels_file}: '{key}' window {k} ends before it starts: {w!r}")
            parsed.append((a, b))
        parsed.sort()
        for k in range(1, len(parsed)):
            if parsed[k][0] <= parsed[k - 1][1]:
                raise ToolkitError(f"{labels_file}: '{key}' has overlapping windows", hint="merge them into one")
        out[str(key).replace("\\", "/")] = parsed
    return out


def _window_rows(ts: np.ndarray, a: float, b: float, after: int = 0) -> tuple[int, int]:
    """The rows of the time window [a, b] as a person reads the file from row ``after`` on:
    it opens at the first row whose time reaches ``a`` and closes before the first later row
    whose time passes ``b``. On a clock that only moves forward these are the rows with times
    in [a, b]; a clock that steps back inside the window keeps it open (one incident), and a
    repeated stretch elsewhere does not reopen it. ``hi < lo``: no row inside (between two
    samples, or past the file's end)."""
    opened = np.flatnonzero(ts[after:] >= a)
    if not opened.size:
        return len(ts), len(ts) - 1
    lo = after + int(opened[0])
    closed = np.flatnonzero(ts[lo:] > b)
    return lo, (lo + int(closed[0]) - 1 if closed.size else len(ts) - 1)


def _key_of(name: str, windows: dict, labels_file: Path) -> str | None:
    """The labels entry of data file ``name``: its own path, else the one entry whose path
    ends with it (--data a folder below the labels' root: NAB/data/realKnownCause with keys
    'realKnownCause/x.csv'). Two such entries are ambiguous: an error naming both."""
    if name in windows:
        return name
    below = [k for k in windows if k.endswith("/" + name)]
    if len(below) > 1:
        raise ToolkitError(f"{labels_file}: data file '{name}' could be entry {below[0]!r} or {below[1]!r}",
                           hint="point --data at the folder the entries' paths start from")
    return below[0] if below else None


def _apply_windows(recs: list[Recording], labels_file: Path, every_file: bool = False,
                   left_out: set[str] = frozenset()) -> list[str]:
    """Turn time windows into row windows and row labels. Each file takes its entry
    (:func:`_key_of`); entries of files not in the data (a labels file of a whole benchmark,
    a few of its files kept) are warned about and returned; none matching any file is an
    error (the wrong folder)."""
    windows = load_windows(labels_file)
    keys = {r.name: _key_of(r.name, windows, labels_file) for r in recs}
    used = set(keys.values()) | {_key_of(n, windows, labels_file) for n in left_out}
    unknown = sorted(k for k in windows if k not in used)
    if unknown and not any(keys.values()):
        names = sorted(keys)
        raise ToolkitError(
            f"{labels_file}: no entry names a file of the data: {len(unknown)} entry(ies) match no data file, e.g. "
            + ", ".join(f"'{k}'" for k in unknown[:3]) + (f" (data files look like '{names[0]}')" if names else ""),
            hint="keys must be paths relative to the --data folder (or one of its parents); check you passed the "
                 "matching data folder",
        )
    if unknown:
        sys.stderr.write(
            f"warning: {labels_file}: {len(unknown)} entry(ies) name no file of {len(recs)} in the data, so their "
            f"windows are not scored: {', '.join(unknown[:3])}{' ...' if len(unknown) > 3 else ''} "
            "(report.json: aggregate.label_entries_without_data)\n")
    windows = {r.name: windows[keys[r.name]] for r in recs if keys[r.name] is not None}
    for r in recs:
        if r.name not in windows:
            if every_file:
                raise ToolkitError(f"{labels_file}: no entry for data file '{r.name}'",
                                   hint='add "%s": [] if the file has no anomaly' % r.name)
            r.windows = []
            r.series.labels = np.zeros(r.series.rows, dtype=np.int8)
            continue
        ts = r.series.timestamps
        labels = np.zeros(r.series.rows, dtype=np.int8)
        rows: list[tuple[int, int]] = []
        after = 0  # windows are read in file order, each after the previous one
        first, last = ts.min(), ts.max()  # not ts[0], ts[-1]: the clock may step back
        for a, b in windows[r.name]:
            if b < first or a > last:  # before or after the whole recording
                r.meta.setdefault("windows_outside_data", []).append([format_time(a), format_time(b)])
                continue
            lo, hi = _window_rows(ts, a, b, after)
            if hi < lo:  # the window falls between samples: nothing to detect, but say so
                r.meta.setdefault("windows_without_rows", []).append([a, b])
                continue
            inside = (ts >= a) & (ts <= b)
            if inside[:lo].any() or inside[hi + 1:].any():  # a clock that stepped back repeats its times
                r.meta.setdefault("windows_ambiguous", []).append([format_time(a), format_time(b)])
                sys.stderr.write(
                    f"warning: {labels_file}: '{r.name}' window {format_time(a)} .. {format_time(b)}: the file's "
                    f"clock passes these times more than once (it steps back); labelled: rows {lo}..{hi}, from "
                    "the first time the clock reaches the start to the first time it passes the end, in file "
                    "order. Label by row (a label column) if the incident is elsewhere\n")
            rows.append((lo, hi))
            labels[lo : hi + 1] = 1
            after = hi + 1
        r.windows = rows
        r.series.labels = labels
    return unknown


def read_tep(root: Path, skip_bad: bool = False, csv_options: dict | None = None):
    """The TEP folder as a Dataset: test/dNN.csv (label column ``label``) as recordings in
    fault order, normal.csv as the fleet recording (its labels ignored)."""
    from aiot.data import load_csv
    from aiot.data.tep import fault_number

    root = Path(root)
    if root.is_file() or not root.exists():
        raise ToolkitError(f"{root}: not a folder" if root.exists() else f"{root}: no such folder",
                           hint="point --data at the TEP folder that holds normal.csv and test/dNN.csv")
    fleet_file, test_dir = root / "normal.csv", root / "test"
    files = sorted((f for f in test_dir.glob("*.csv") if fault_number(f.name) is not None),
                   key=lambda f: fault_number(f.name)) if test_dir.is_dir() else []
    if not fleet_file.is_file() or not files:
        missing = "normal.csv" if not fleet_file.is_file() else "test/d00.csv .. test/d21.csv"
        raise ToolkitError(f"{root}: no {missing}",
                           hint="point --data at the TEP folder that holds normal.csv and test/dNN.csv")
    opts = _time_options(csv_options)
    skipped: list[tuple[str, str]] | None = [] if skip_bad else None
    recs = _load_each(files, root, lambda f: load_csv(f, label_column="label", **opts), skipped)
    fleet = _readable(lambda f: load_csv(f, label_column=None, **opts), fleet_file)
    recs = _check_same_channels(recs, "normal.csv", fleet.channels, skipped)
    if not recs:
        raise none_left(root, skipped or [])
    lower = [c.lower() for c in fleet.channels]
    order = [lower.index(c.lower()) for c in recs[0].series.channels]  # the fleet in the files' column order
    fleet = replace(fleet, values=fleet.values[:, order], valid=fleet.valid[:, order],
                    channels=[fleet.channels[i] for i in order])
    return Dataset(recs, fleet, fleet_file, skipped or [])
