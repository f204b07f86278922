"""Load multi-sensor time series from CSV into one small, honest structure.

Missing samples stay missing (NaN + mask): "no data" is not "no event". Anything a user
can fix (bad header, stray text in a numeric column, time going backwards) raises a
ToolkitError that names the file, the line and the column.
"""

from __future__ import annotations

import csv
import hashlib
import math
import sys
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Sequence

import numpy as np

from aiot.errors import ToolkitError

#: Cell texts read as "sample missing" (case-insensitive), never as an error.
MISSING_TOKENS = frozenset({"", "nan", "na", "n/a", "null", "none", "-"})
#: Columns tried, in order, when the timestamp column is not named.
TIMESTAMP_CANDIDATES = ("timestamp", "datetime", "time", "date")
#: Columns tried, in order, when the label column is "auto".
LABEL_CANDIDATES = ("label", "anomaly")
#: Annotation columns that are never used as sensor channels unless asked for by name.
ANNOTATION_COLUMNS = frozenset({"label", "anomaly", "changepoint", "fault", "incident"})
AUTO = "auto"
#: Inputs are refused above these sizes before they are read (a sensor CSV of years at 1 Hz
#: is tens of MB): a mistaken path to a disk image or a log must not fill the memory first.
MAX_CSV_BYTES = 256 << 20
MAX_LINE_BYTES = 1 << 20
#: Consecutive rows further apart than this many sample periods have lost rows between
#: them (a gap). Up to 2 periods is a clock slip, not a gap: a logger whose true period
#: is a little over 1 s and whose timestamps are whole seconds skips a second now and
#: then without losing a sample (SKAB does this every ~20 rows).
GAP_FACTOR = 2.5
#: Numeric timestamps are seconds. From this size on (their median, either sign) they are no
#: plausible seconds since 1970 (1e11 s is over 3,000 years) but are milliseconds (from 1e11),
#: microseconds (1e14) or nanoseconds (1e17) since 1970, as loggers often write them: read as
#: seconds, the sample period comes out 1000x (or more) too long, so a warning says so. From
#: 1e20 no unit since 1970 fits either.
EPOCH_UNITS = ((1e17, "nanoseconds", 1e9), (1e14, "microseconds", 1e6), (1e11, "milliseconds", 1e3))
EPOCH_NO_UNIT = 1e20


@dataclass
class Series:
    """A multi-channel time series as read from one file.

    ``values`` is (N, C) float64 with NaN where a sample is missing; ``valid`` is the
    matching boolean mask (kept explicitly so callers never test NaN by accident).
    """

    timestamps: np.ndarray  #: (N,) float64 seconds (UNIX epoch for dates, as-is for numbers)
    values: np.ndarray  #: (N, C) float64
    valid: np.ndarray  #: (N, C) bool
    labels: np.ndarray | None  #: (N,) int8, 0 normal / 1 fault, or None when unlabelled
    channels: list[str]
    source: Path | None = None
    iso_time: bool = False  #: timestamps were dates (write back as ISO-8601 UTC)
    meta: dict = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return int(self.values.shape[0])

    @property
    def sample_period_s(self) -> float:
        """Median spacing of the timestamps (1.0 for fewer than two rows)."""
        if self.rows < 2:
            return 1.0
        return float(np.median(np.diff(self.timestamps)))

    def digest(self, rows: int | None = None) -> str:
        """SHA-256 of the first ``rows`` rows (all by default): timestamps, values, validity
        mask and labels. The content key of the models trained on them (not of channel names,
        source or settings, which keys add beside it)."""
        h = hashlib.sha256()
        end = self.rows if rows is None else rows
        labels = self.labels[:end] if self.labels is not None else np.zeros(0)
        for a in (self.timestamps[:end], self.values[:end], self.valid[:end], labels):
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()

    def missing_count(self) -> int:
        return int((~self.valid).sum())

    def gap_count(self) -> int:
        """Steps between consecutive rows longer than GAP_FACTOR sample periods (lost rows)."""
        if self.rows < 2:
            return 0
        return int((np.diff(self.timestamps) > GAP_FACTOR * self.sample_period_s).sum())

    def slip_count(self) -> int:
        """Steps of 1.5 to GAP_FACTOR periods: clock slips, not gaps (see GAP_FACTOR)."""
        if self.rows < 2:
            return 0
        step = np.diff(self.timestamps) / self.sample_period_s
        return int(((step > 1.5) & (step <= GAP_FACTOR)).sum())

    def head(self, rows: int) -> "Series":
        """The first ``rows`` rows (a view-free copy)."""
        return self.slice(0, rows)

    def slice(self, start: int, stop: int) -> "Series":
        return Series(
            timestamps=self.timestamps[start:stop].copy(),
            values=self.values[start:stop].copy(),
            valid=self.valid[start:stop].copy(),
            labels=None if self.labels is None else self.labels[start:stop].copy(),
            channels=list(self.channels),
            source=self.source,
            iso_time=self.iso_time,
            meta=dict(self.meta),
        )


def sha256_file(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _sniff_delimiter(header_line: str) -> str:
    # SKAB and European spreadsheets use ';' (often with ',' as decimal mark inside
    # cells), so the separator with more hits in the header wins.
    counts = {d: header_line.count(d) for d in (";", ",", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def parse_time(text: str) -> float:
    """ISO-8601 date-time (naive means UTC) or plain seconds -> float seconds.

    Raises ValueError when ``text`` is neither.
    """
    s = text.strip()
    try:
        v = float(s)
    except ValueError:
        pass
    else:
        if not math.isfinite(v):
            raise ValueError("timestamp is not finite")
        return v
    return _iso_seconds(s)


def format_time(seconds: float) -> str:
    """Float UNIX seconds -> ISO-8601 UTC with a 'Z' (milliseconds only when needed)."""
    dt = datetime.fromtimestamp(float(seconds), tz=timezone.utc)
    if dt.microsecond:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_value(cell: str, decimal_comma: bool) -> float | None:
    """A sensor cell -> float; NaN when missing; None when it is not a number."""
    s = cell.strip()
    if s.lower() in MISSING_TOKENS:
        return math.nan
    if decimal_comma:
        s = s.replace(",", ".")
    try:
        v = float(s)
    except ValueError:
        return None
    if math.isnan(v):
        return math.nan
    if not math.isfinite(v):
        return None
    return v


def _find_column(header: list[str], name: str) -> int | None:
    lowered = [h.strip().lower() for h in header]
    try:
        return lowered.index(name.strip().lower())
    except ValueError:
        return None


def parse_channels(text: str | None) -> list[str] | None:
    """A comma-separated list of sensor columns (``--channels``) -> their names; ``None``
    (the option not given) -> ``None``, every sensor column. A given list that names no
    column (``''``, ``','``) is an error, never "all channels"."""
    if text is None:
        return None
    names = [c.strip() for c in text.split(",") if c.strip()]
    if not names:
        raise ToolkitError(f"no channels requested (--channels '{text}')",
                           hint="list at least one sensor column, e.g. --channels vib_rms_1,temperature, or leave "
                                "--channels out to use every sensor column")
    return names


def check_input_file(path: Path, expected: str = "a CSV file", max_bytes: int | None = MAX_CSV_BYTES) -> int:
    """Refuse, before opening it, what reading ``path`` would hang on or choke on: a FIFO,
    device or socket (open() blocks on a FIFO for ever), a symbolic link loop, a folder, or
    a file larger than ``max_bytes``. Returns the file's size."""
    import errno
    import os
    import stat

    try:
        st = os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise ToolkitError(f"{path}: a symbolic link loop (the link points, through other links, back to "
                               "itself)", hint=f"point the link at the real file (ls -l {path})") from None
        if e.errno == errno.ENOENT:
            dangling = os.path.islink(path)
            raise ToolkitError(f"{path}: {'a symbolic link to a missing file' if dangling else 'no such file'}",
                               hint="check the --data path") from None
        raise ToolkitError(f"{path}: cannot be read ({e.strerror})", hint="check the path and its permissions") from None
    if stat.S_ISDIR(st.st_mode):
        raise ToolkitError(f"{path}: is a directory, expected {expected}")
    if not stat.S_ISREG(st.st_mode):
        kind = ("a FIFO (named pipe)" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "not a file")
        raise ToolkitError(f"{path}: {kind}, not a regular file; expected {expected}",
                           hint="save the data to a file first, then pass that file")
    if max_bytes is not None and st.st_size > max_bytes:
        raise ToolkitError(f"{path}: {st.st_size:,} bytes, more than the {max_bytes:,} this step reads",
                           hint="is it the right file? Split a long recording into files of a few days each")
    return st.st_size


def load_csv(
    path: Path | str,
    channels: Sequence[str] | None = None,
    label_column: str | None = AUTO,
    timestamp_column: str | None = AUTO,
    min_rows: int = 1,
) -> Series:
    """Read a CSV with a header row into a :class:`Series`.

    - Separator ``,``, ``;`` or tab is detected from the header; with ``;`` a decimal
      comma inside cells is accepted.
    - ``timestamp_column``: "auto" tries timestamp/datetime/time/date; ``None`` uses the
      row number as seconds. Values are ISO-8601 (naive = UTC) or numeric seconds and
      must strictly increase.
    - ``label_column``: "auto" uses a "label" or "anomaly" column when present (else the
      series is unlabelled); a name must exist; ``None`` ignores labels. Labels are 0/1.
    - ``channels``: sensor columns to read, in this order; default is every other column
      except annotations (label, anomaly, changepoint, ...).
    - Empty cells and nan/NA/null are missing samples (NaN, mask False), never errors.
    """
    path = Path(path)
    check_input_file(path, "a CSV file", MAX_CSV_BYTES)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise ToolkitError(
            f"{path}: not a UTF-8 text file (byte {e.start})", hint="export the data as UTF-8 CSV"
        ) from e
    lines = text.splitlines()
    long = next((i for i, ln in enumerate(lines) if len(ln) > MAX_LINE_BYTES), None)
    if long is not None:
        raise ToolkitError(f"{path}: line {long + 1} is {len(lines[long]):,} characters long, more than the "
                           f"{MAX_LINE_BYTES:,} a CSV line may have", hint="is this a CSV with one row per sample "
                                                                           "and a line break after each?")
    first = next((i for i, ln in enumerate(lines) if ln.strip()), None)
    if first is None:
        raise ToolkitError(f"{path}: file is empty", hint="expected a header row and one row per sample")
    delimiter = _sniff_delimiter(lines[first])
    decimal_comma = delimiter == ";"

    reader = csv.reader(lines, delimiter=delimiter)
    header: list[str] | None = None
    rows: list[tuple[int, list[str]]] = []
    try:
        for row in reader:
            if not row or not "".join(row).strip():
                continue
            if header is None:
                header = [c.strip() for c in row]
                continue
            rows.append((reader.line_num, row))
    except csv.Error as e:  # e.g. a field beyond the csv module's size limit
        raise ToolkitError(f"{path}:{reader.line_num}: unreadable CSV ({e})", hint="check quoting on that line") from e
    assert header is not None
    _check_header(path, header, lines[first])

    # -- which column is what
    if timestamp_column == AUTO:
        ts_idx = next((i for c in TIMESTAMP_CANDIDATES if (i := _find_column(header, c)) is not None), None)
        if ts_idx is None:
            raise ToolkitError(
                f"{path}: no timestamp column (looked for {', '.join(TIMESTAMP_CANDIDATES)}); "
                f"columns are: {', '.join(header)}",
                hint="rename the time column to 'timestamp' (aiot train and aiot commission also take "
                     "--timestamp-column NAME)",
            )
    elif timestamp_column is None:
        ts_idx = None
    else:
        ts_idx = _find_column(header, timestamp_column)
        if ts_idx is None:
            raise ToolkitError(
                f"{path}: timestamp column '{timestamp_column}' not found; columns are: {', '.join(header)}"
            )

    if label_column == AUTO:
        lab_idx = next((i for c in LABEL_CANDIDATES if (i := _find_column(header, c)) is not None), None)
    elif label_column is None:
        lab_idx = None
    else:
        lab_idx = _find_column(header, label_column)
        if lab_idx is None:
            raise ToolkitError(
                f"{path}: label column '{label_column}' not found; columns are: {', '.join(header)}",
                hint="pass the right label column name, or none for unlabelled data",
            )

    if channels is None:
        skip = {ts_idx, lab_idx}
        ch_idx = [
            i for i, h in enumerate(header) if i not in skip and h.strip().lower() not in ANNOTATION_COLUMNS
        ]
        if not ch_idx:
            raise ToolkitError(f"{path}: no sensor columns besides time and label; columns are: {', '.join(header)}")
    else:
        if len(channels) == 0:
            raise ToolkitError("no channels requested", hint="list at least one sensor column")
        missing = [c for c in channels if _find_column(header, c) is None]
        if missing:
            raise ToolkitError(
                f"{path}: column(s) {', '.join(repr(c) for c in missing)} not found; "
                f"columns are: {', '.join(header)}",
                hint="column names must match the header (case-insensitive)",
            )
        ch_idx = [_find_column(header, c) for c in channels]  # type: ignore[misc]
        if lab_idx is not None and lab_idx in ch_idx:
            how = "found automatically" if label_column == AUTO else "given as the label column"
            raise ToolkitError(
                f"{path}: column '{header[lab_idx]}' is the label column ({how}), not a sensor channel: "
                "the model would see the answer it is meant to find",
                hint=f"leave '{header[lab_idx]}' out of --channels; if it really is a sensor, name the label "
                     "column with --label-column (or 'none' for unlabelled data)",
            )
        dup = sorted({header[i] for i in ch_idx if ch_idx.count(i) > 1})
        if dup:
            raise ToolkitError(f"channel(s) {', '.join(dup)} requested more than once", hint="list each column once")
    names = [header[i] for i in ch_idx]

    if len(rows) < min_rows:
        raise ToolkitError(
            f"{path}: {len(rows)} data row(s), need at least {min_rows}",
            hint="use a longer recording (or a smaller --window)",
        )

    fast = _parse_vectorized(rows, len(header), ts_idx, ch_idx, lab_idx, decimal_comma)
    if fast is not None:
        ts, values, labels, any_iso = fast
    else:
        ts, values, labels, any_iso = _parse_rows(path, rows, header, delimiter, ts_idx, ch_idx, lab_idx,
                                                  decimal_comma, auto_channels=channels is None)

    if ts_idx is not None and len(rows) > 1:
        bad = np.nonzero(np.diff(ts) <= 0)[0]
        if bad.size:
            i = int(bad[0])
            raise ToolkitError(
                f"{path}:{rows[i + 1][0]}: time does not increase "
                f"('{rows[i + 1][1][ts_idx].strip()}' after '{rows[i][1][ts_idx].strip()}' on line {rows[i][0]})",
                hint="sort the rows by time and remove duplicated samples",
            )

    if ts_idx is not None and not any_iso:
        note = epoch_unit_warning(path, header[ts_idx], ts)
        if note:
            sys.stderr.write(f"warning: {note}\n")
    return Series(
        timestamps=ts,
        values=values,
        valid=~np.isnan(values),
        labels=labels,
        channels=names,
        source=path,
        iso_time=any_iso,
    )


def epoch_unit_warning(path: Path, column: str, ts: np.ndarray) -> str | None:
    """A warning (or None) for numeric timestamps too large to be seconds since 1970
    (:data:`EPOCH_UNITS`): they are read as seconds all the same (they may be a counter that
    simply starts high), but the sample period, the gaps and the monitor's clock are then
    off by the unit's factor."""
    if ts.size == 0:
        return None
    typical = float(np.median(np.abs(ts)))  # a few small leading values (0, 1, 2 ...) do not hide the rest
    period = float(np.median(np.diff(ts))) if ts.size > 1 else None
    start = (f"{path}: column '{column}' holds numbers like {np.median(ts):.6g}, read as seconds: as seconds since "
             "1970 that is more than 3,000 years away")
    if typical >= EPOCH_NO_UNIT:
        return (f"{start}, and no smaller unit since 1970 fits either. Check the column (is it a timestamp?); "
                "timestamps are seconds or ISO-8601 dates (2024-01-31T12:00:00Z)")
    for low, unit, per_s in EPOCH_UNITS:
        if typical >= low:
            shown = f"; the sample period is read as {period:g} s ({period / per_s:g} s if they are {unit})" \
                if period is not None else ""
            return (f"{start}, so they look like {unit} since 1970{shown}. Convert them to seconds or to ISO-8601 "
                    "dates (2024-01-31T12:00:00Z) if they are")
    return None


_Parsed = tuple[np.ndarray, np.ndarray, "np.ndarray | None", bool]


def _float_or_missing(cell: str) -> float:
    try:
        return float(cell)
    except ValueError:
        if cell.strip().lower() in MISSING_TOKENS:
            return math.nan
        raise


def _floats(cells: Sequence[str], decimal_comma: bool, missing_ok: bool) -> np.ndarray | None:
    """Whole column at once; None when any cell needs the careful path (error or oddity)."""
    if decimal_comma:
        cells = [c.replace(",", ".") for c in cells]
    try:
        v = np.fromiter(map(float, cells), np.float64, len(cells))
    except ValueError:
        if not missing_ok:
            return None
        try:
            v = np.fromiter(map(_float_or_missing, cells), np.float64, len(cells))
        except ValueError:
            return None
    if np.isinf(v).any() or (not missing_ok and np.isnan(v).any()):
        return None
    return v


def _iso_seconds(cell: str) -> float:
    s = cell.strip()
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    dt = datetime.fromisoformat(s)
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.timestamp()


def _parse_vectorized(rows: list[tuple[int, list[str]]], width: int, ts_idx: int | None, ch_idx: list[int],
                      lab_idx: int | None, decimal_comma: bool) -> _Parsed | None:
    """Fast path for well-formed files (one pass per column, no per-cell bookkeeping).
    Returns None whenever anything is unusual; :func:`_parse_rows` then finds and reports it."""
    if not rows or any(len(r) != width for _, r in rows):
        return None
    cols = list(zip(*(r for _, r in rows)))
    n = len(rows)
    values = np.empty((n, len(ch_idx)), dtype=np.float64)
    for j, k in enumerate(ch_idx):
        v = _floats(cols[k], decimal_comma, missing_ok=True)
        if v is None:
            return None
        values[:, j] = v
    labels = None
    if lab_idx is not None:
        lv = _floats(cols[lab_idx], decimal_comma, missing_ok=False)
        if lv is None or not np.isin(lv, (0.0, 1.0)).all():
            return None
        labels = lv.astype(np.int8)
    if ts_idx is None:
        return np.arange(n, dtype=np.float64), values, labels, False
    ts = _floats(cols[ts_idx], False, missing_ok=False)
    if ts is not None:
        return ts, values, labels, False
    try:
        ts = np.fromiter(map(_iso_seconds, cols[ts_idx]), np.float64, n)
    except (ValueError, OverflowError, OSError):
        return None
    return ts, values, labels, True


def _parse_rows(path: Path, rows: list[tuple[int, list[str]]], header: list[str], delimiter: str,
                ts_idx: int | None, ch_idx: list[int], lab_idx: int | None, decimal_comma: bool,
                auto_channels: bool) -> _Parsed:
    """Row by row; the first bad cell stops with its line and column."""
    n, c = len(rows), len(ch_idx)
    ts = np.empty(n, dtype=np.float64)
    values = np.empty((n, c), dtype=np.float64)
    labels = np.zeros(n, dtype=np.int8) if lab_idx is not None else None
    any_iso = False
    for r, (line_no, row) in enumerate(rows):
        if len(row) != len(header):
            raise ToolkitError(
                f"{path}:{line_no}: {len(row)} field(s), the header has {len(header)}",
                hint=f"each row needs one value per column, separated by '{delimiter}'",
            )
        if ts_idx is None:
            ts[r] = float(r)
        else:
            cell = row[ts_idx].strip()
            if not cell:
                raise ToolkitError(
                    f"{path}:{line_no}: column '{header[ts_idx]}' is empty",
                    hint="every row needs a timestamp; leave sensor cells empty for missing samples instead",
                )
            try:
                ts[r] = parse_time(cell)
            except ValueError:
                raise ToolkitError(
                    f"{path}:{line_no}: column '{header[ts_idx]}': '{cell}' is not a timestamp",
                    hint="use ISO-8601 (2024-01-31T12:00:00Z) or numeric seconds",
                ) from None
            any_iso = any_iso or not _is_number(cell)
        for j, k in enumerate(ch_idx):
            v = _parse_value(row[k], decimal_comma)
            if v is None:
                hint = "sensor cells must be numbers; leave a cell empty (or write NaN) for a missing sample"
                if auto_channels:
                    hint += ("; if this is not a sensor column, drop it from the file (aiot train can also pick "
                             "the sensor columns with --channels)")
                raise ToolkitError(
                    f"{path}:{line_no}: column '{header[k]}': '{row[k].strip()}' is not a number", hint=hint
                )
            values[r, j] = v
        if labels is not None:
            labels[r] = _parse_label(path, line_no, header[lab_idx], row[lab_idx], decimal_comma)  # type: ignore[index]
    return ts, values, labels, any_iso


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _check_header(path: Path, header: list[str], raw: str) -> None:
    def looks_like_data(cell: str) -> bool:
        try:
            parse_time(cell)  # numbers and dates are values, never column names
        except ValueError:
            return False
        return True

    if any(looks_like_data(h) for h in header if h):
        raise ToolkitError(
            f"{path}:1: no header row (first line is '{raw.strip()[:60]}')",
            hint="the first line must name the columns, e.g. timestamp,vib_rms_1,...,label",
        )
    seen: set[str] = set()
    for h in header:
        key = h.lower()
        if not h:
            raise ToolkitError(f"{path}:1: the header has an empty column name", hint="name every column")
        if key in seen:
            raise ToolkitError(f"{path}:1: column '{h}' appears twice in the header", hint="rename one of them")
        seen.add(key)


def _parse_label(path: Path, line_no: int, column: str, cell: str, decimal_comma: bool) -> int:
    v = _parse_value(cell, decimal_comma)
    if v is None or math.isnan(v) or v not in (0.0, 1.0):
        raise ToolkitError(
            f"{path}:{line_no}: column '{column}': label '{cell.strip()}' is not 0 or 1",
            hint="labels are 0 (normal) or 1 (fault) on every row; drop the label column for unlabelled data",
        )
    return int(v)


def write_csv(path: Path | str, series: Series, label_column: str = "label", decimals: int = 4) -> Path:
    """Write ``series`` as ``timestamp,<channels...>[,label]``; missing samples become empty cells."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        f = open(path, "w", newline="", encoding="utf-8")
    except OSError as e:
        raise ToolkitError(f"{path}: cannot write ({e.strerror})", hint="choose a writable file path") from e
    with f:
        w = csv.writer(f)
        w.writerow(["timestamp", *series.channels, *([label_column] if series.labels is not None else [])])
        for r in range(series.rows):
            t = format_time(series.timestamps[r]) if series.iso_time else repr(float(series.timestamps[r]))
            cells = [
                f"{series.values[r, j]:.{decimals}f}" if series.valid[r, j] else "" for j in range(len(series.channels))
            ]
            if series.labels is not None:
                cells.append(str(int(series.labels[r])))
            w.writerow([t, *cells])
    return path
