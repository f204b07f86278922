"""Load multi-sensor time series from CSV into one small, honest structure.

Missing samples stay missing (NaN + mask): "no data" is not "no event". Anything a user
can fix (bad header, stray text in a numeric column) raises a ToolkitError that names the
file, the line and the column. Real recordings as they come are read, not refused: a clock
that steps back (a repeated hour, an NTP correction) is a time reset, as the device sees it
(counted, warned about, the gap clock restarts there); duplicated timestamps are counted.
``strict_time`` refuses both. A status column (text, or 0/1 under a status-like name) is
never read as a sensor: it is the label column when named so, else left out with a warning.
"""

from __future__ import annotations

import csv
import hashlib
import math
import re
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
#: ``time_format`` names for numbers since 1970 in another unit than seconds (divisor to s).
UNIX_FORMATS = {"unix_s": 1.0, "unix_ms": 1e3, "unix_us": 1e6, "unix_ns": 1e9}
#: Words read as labels in a text status column (case-insensitive); others need ``label_map``.
LABEL_WORDS = {
    **dict.fromkeys(("0", "normal", "ok", "good", "healthy", "false", "no", "off"), 0),
    **dict.fromkeys(("1", "fault", "faulty", "anomaly", "abnormal", "alarm", "broken", "failure", "failed",
                     "error", "true", "yes", "on"), 1),
}
#: Name parts that mark a column as a machine status, not a measurement (a 0/1 column so
#: named is left out of the sensors).
STATUS_WORDS = frozenset({"status", "state", "alarm", "fault", "failure", "anomaly", "label", "class", "target",
                          "broken", "incident", "event", "condition", "health", "mode"})


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
        """Median spacing of the timestamps that move forward (1.0 for fewer than two rows):
        duplicated timestamps and clock resets are not the sample period."""
        if self.rows < 2:
            return 1.0
        step = np.diff(self.timestamps)
        step = step[step > 0]
        return float(np.median(step)) if step.size else 1.0

    def breaks(self) -> np.ndarray:
        """(N-1,) bool: the step from row i to i+1 breaks the stream, a gap (lost rows) or a
        clock that stepped back (a time reset). No window spans a break."""
        if self.rows < 2:
            return np.zeros(0, bool)
        step = np.diff(self.timestamps)
        return (step > GAP_FACTOR * self.sample_period_s) | (step < 0)

    def time_reset_count(self) -> int:
        """Steps where the clock went back (a repeated hour, an NTP correction)."""
        return int((np.diff(self.timestamps) < 0).sum()) if self.rows > 1 else 0

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


#: The delimiter :func:`_sniff_delimiter` names for fields separated by runs of blanks.
BLANKS = " "


def _sniff_delimiter(header_line: str) -> str:
    # SKAB and European spreadsheets use ';' (often with ',' as decimal mark inside
    # cells), so the separator with more hits in the header wins. None of them but several
    # words: a Fortran / MATLAB export, fields separated by runs of blanks.
    counts = {d: header_line.count(d) for d in (";", ",", "\t")}
    best = max(counts, key=lambda d: counts[d])
    if counts[best]:
        return best
    return BLANKS if len(header_line.split()) > 1 else ","


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


def clock_options(csv_options: dict | None) -> dict:
    """Of the reading options (--strict-time, --time-format, --label-column, --label-map), those
    that apply to a recording of normal running read beside the data (a fleet recording: its
    labels are never read)."""
    return {k: v for k, v in (csv_options or {}).items() if k in ("strict_time", "time_format")}


def load_csv(
    path: Path | str,
    channels: Sequence[str] | None = None,
    label_column: str | None = AUTO,
    timestamp_column: str | None = AUTO,
    min_rows: int = 1,
    strict_time: bool = False,
    time_format: str | None = None,
    label_map: dict[str, int] | None = None,
) -> Series:
    """Read a CSV with a header row into a :class:`Series`.

    - Separator ``,``, ``;`` or tab is detected from the header; with ``;`` a decimal
      comma inside cells is accepted.
    - ``timestamp_column``: "auto" tries timestamp/datetime/time/date; ``None`` uses the
      row number as seconds. Values are ISO-8601 (naive = UTC) or numeric seconds, or as
      ``time_format`` says (a strptime format like ``%d/%m/%Y %H:%M:%S``, naive = UTC, or
      unix_s / unix_ms / unix_us / unix_ns). A step back is a time reset and a repeated time
      a duplicate: both counted in ``meta`` and warned about; ``strict_time`` refuses them.
    - ``label_column``: "auto" uses a "label" or "anomaly" column when present (else the
      series is unlabelled); a name must exist; ``None`` ignores labels. Labels are 0/1, or
      words (:data:`LABEL_WORDS`, or ``label_map`` {value: 0 or 1}, case-insensitive).
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
    if delimiter == BLANKS:  # any run of blanks (spaces, tabs) is one separator; none at the ends
        lines = [",".join(ln.split()) for ln in lines]

    reader = csv.reader(lines, delimiter="," if delimiter == BLANKS else delimiter)
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
    index_note = None
    if _is_row_index(header, rows):  # pandas' to_csv wrote its row index: not a measurement
        index_note = (f"column 1 ('{header[0]}') counts the rows ({rows[0][1][0].strip()}, "
                      f"{rows[1][1][0].strip() if len(rows) > 1 else '...'}, ...): a row index (pandas writes "
                      "one), left out of the sensors")
        header = header[1:]
        rows = [(n, r[1:]) for n, r in rows]
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

    status_notes: list[str] = []
    if channels is None:
        skip = {ts_idx, lab_idx}
        ch_idx = [
            i for i, h in enumerate(header) if i not in skip and h.strip().lower() not in ANNOTATION_COLUMNS
        ]
        for i in list(ch_idx):
            note = _status_column(header[i], (r[i] for _, r in rows if i < len(r)), decimal_comma)
            if not note and rows and all(i >= len(r) or r[i].strip().lower() in MISSING_TOKENS for _, r in rows):
                note = (f"column '{header[i]}' has no value in any row: nothing to learn or monitor, left out of the "
                        "sensors")
            if note:
                ch_idx.remove(i)
                status_notes.append(note)
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

    if time_format is not None and ts_idx is None:
        raise ToolkitError(f"{path}: --time-format given but no timestamp column is read",
                           hint="name the time column with --timestamp-column, or drop --time-format")
    parse_ts = _time_parser(time_format)
    words = _label_words(label_map)
    fast = _parse_vectorized(rows, len(header), ts_idx, ch_idx, lab_idx, decimal_comma, parse_ts, words)
    if fast is not None:
        ts, values, labels, any_iso = fast
    else:
        ts, values, labels, any_iso = _parse_rows(path, rows, header, delimiter, ts_idx, ch_idx, lab_idx,
                                                  decimal_comma, auto_channels=channels is None,
                                                  parse_ts=parse_ts, time_format=time_format, words=words,
                                                  label_map_given=label_map is not None)
    if time_format is not None:
        any_iso = True  # dates, whatever their spelling: written back as ISO-8601

    meta: dict = {}
    if ts_idx is not None and len(rows) > 1:
        step = np.diff(ts)
        back, same = np.nonzero(step < 0)[0], np.nonzero(step == 0)[0]
        if strict_time and (back.size or same.size):
            i = int(min(np.concatenate((back, same))))
            raise ToolkitError(
                f"{path}:{rows[i + 1][0]}: time does not increase "
                f"('{rows[i + 1][1][ts_idx].strip()}' after '{rows[i][1][ts_idx].strip()}' on line {rows[i][0]})",
                hint="sort the rows by time and remove duplicated samples, or drop --strict-time to read a clock "
                     "that steps back as a time reset (as the device does)",
            )
        meta.update(time_resets=int(back.size), duplicate_timestamps=int(same.size))
        if back.size:
            i = int(back[0])
            meta["first_time_reset_line"] = rows[i + 1][0]
            sys.stderr.write(
                f"warning: {path}:{rows[i + 1][0]}: time steps back ('{rows[i + 1][1][ts_idx].strip()}' after "
                f"'{rows[i][1][ts_idx].strip()}'), {back.size} time(s) in the file: each is read as a time reset, as "
                "the device sees it (the stream restarts there; no window spans it). --strict-time refuses such "
                "a file\n")
        if same.size:
            i = int(same[0])
            sys.stderr.write(
                f"warning: {path}:{rows[i + 1][0]}: {same.size} duplicated timestamp(s) (first "
                f"'{rows[i + 1][1][ts_idx].strip()}'): the rows are kept; the device drops a sample whose time "
                "does not move (counted as rejected). --strict-time refuses such a file\n")
    if index_note:
        sys.stderr.write(f"warning: {path}: {index_note}\n")
        meta["row_index_left_out"] = index_note
    for note in status_notes:
        sys.stderr.write(f"warning: {path}: {note}\n")
    if status_notes:
        meta["status_columns_left_out"] = status_notes

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
        meta=meta,
    )


def _status_column(name: str, cells, decimal_comma: bool) -> str | None:
    """Why column ``name`` is a machine status and not a sensor (None when it is a sensor):
    under a status-like name (:data:`STATUS_WORDS`), every filled cell is text (NORMAL /
    BROKEN ...) or 0 and 1. A mostly numeric column with a stray word is a sensor with a bad
    cell, and a text column under another name (notes) stops the read: both reported as such."""
    if not {p for p in re.split(r"[^a-z]+", name.lower()) if p} & STATUS_WORDS:
        return None  # other text columns stop the read at their first cell, with the way out in the hint
    distinct = {c.strip() for c in cells} - {""}
    distinct = {c for c in distinct if c.lower() not in MISSING_TOKENS}
    if not distinct:
        return None
    numbers = {c for c in distinct if _parse_value(c, decimal_comma) is not None}
    tip = (f"if it marks faults, pass --label-column {name} (its values are read as labels: 0/1, normal/fault "
           "and the like, or map them with --label-map VALUE=0,VALUE=1)")
    if not numbers:
        shown = ", ".join(sorted(distinct)[:4]) + (", ..." if len(distinct) > 4 else "")
        return f"column '{name}' holds text ({shown}), a status, not a measurement: left out of the sensors; {tip}"
    if numbers == distinct and {_parse_value(c, decimal_comma) for c in numbers} <= {0.0, 1.0}:
        return f"column '{name}' holds only 0 and 1 under a status name: left out of the sensors; {tip}"
    return None


def _time_parser(time_format: str | None):
    """cell -> seconds for ``time_format`` (None: ISO-8601 or numeric seconds, :func:`parse_time`)."""
    if time_format is None:
        return None
    if time_format in UNIX_FORMATS:
        per_s = UNIX_FORMATS[time_format]

        def unix(cell: str) -> float:
            v = float(cell)
            if not math.isfinite(v):
                raise ValueError("timestamp is not finite")
            return v / per_s

        return unix

    def dated(cell: str) -> float:
        dt = datetime.strptime(cell.strip(), time_format)
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        return dt.timestamp()

    return dated


def _label_words(label_map: dict[str, int] | None) -> dict[str, int]:
    if label_map is None:
        return LABEL_WORDS
    bad = {k: v for k, v in label_map.items() if v not in (0, 1)}
    if bad:
        raise ToolkitError(f"--label-map: {', '.join(f'{k}={v}' for k, v in bad.items())}: a label is 0 or 1",
                           hint="map each value to 0 (normal) or 1 (fault), e.g. --label-map NORMAL=0,BROKEN=1")
    return {str(k).strip().lower(): int(v) for k, v in label_map.items()}


def parse_label_map(text: str | None) -> dict[str, int] | None:
    """``--label-map NORMAL=0,BROKEN=1,RECOVERING=1`` -> {value: label}; None when not given."""
    if text is None:
        return None
    out: dict[str, int] = {}
    for part in (p for p in text.split(",") if p.strip()):
        key, eq, val = part.rpartition("=")
        if not eq or not key.strip() or val.strip() not in ("0", "1"):
            raise ToolkitError(f"--label-map: '{part.strip()}' is not VALUE=0 or VALUE=1",
                               hint="e.g. --label-map NORMAL=0,BROKEN=1,RECOVERING=1")
        out[key.strip()] = int(val.strip())
    if not out:
        raise ToolkitError("--label-map is empty", hint="e.g. --label-map NORMAL=0,BROKEN=1")
    return out


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
                      lab_idx: int | None, decimal_comma: bool, parse_ts=None,
                      words: dict[str, int] = LABEL_WORDS) -> _Parsed | None:
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
        if lv is not None and np.isin(lv, (0.0, 1.0)).all():
            labels = lv.astype(np.int8)
        else:  # words (normal / fault ...): each distinct value looked up once
            table = {c: words.get(c.strip().lower()) for c in set(cols[lab_idx])}
            if any(v is None for v in table.values()):
                return None
            labels = np.fromiter((table[c] for c in cols[lab_idx]), np.int8, n)
    if ts_idx is None:
        return np.arange(n, dtype=np.float64), values, labels, False
    if parse_ts is not None:
        try:
            return np.fromiter(map(parse_ts, cols[ts_idx]), np.float64, n), values, labels, True
        except (ValueError, OverflowError, OSError):
            return None
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
                auto_channels: bool, parse_ts=None, time_format: str | None = None,
                words: dict[str, int] = LABEL_WORDS, label_map_given: bool = False) -> _Parsed:
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
                hint="each row needs one value per column, separated by blanks (a date with a blank inside is two "
                     "fields there: write it 2018-04-01T00:00:00, or separate the fields with commas)"
                if delimiter == BLANKS else f"each row needs one value per column, separated by '{delimiter}'",
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
                ts[r] = parse_time(cell) if parse_ts is None else parse_ts(cell)
            except (ValueError, OverflowError, OSError):
                if parse_ts is not None:
                    raise ToolkitError(
                        f"{path}:{line_no}: column '{header[ts_idx]}': '{cell}' does not fit the time format "
                        f"'{time_format}'",
                        hint="fix the cell, or give the --time-format the file uses (a strptime format such as "
                             "'%d/%m/%Y %H:%M:%S', or unix_s / unix_ms / unix_us / unix_ns)",
                    ) from None
                raise ToolkitError(
                    f"{path}:{line_no}: column '{header[ts_idx]}': '{cell}' is not a timestamp",
                    hint="use ISO-8601 (2024-01-31T12:00:00Z) or numeric seconds, or say how the file writes "
                         "time with --time-format (e.g. '%d/%m/%Y %H:%M:%S', unix_ms)",
                ) from None
            any_iso = any_iso or not _is_number(cell)
        for j, k in enumerate(ch_idx):
            v = _parse_value(row[k], decimal_comma)
            if v is None:
                hint = "sensor cells must be numbers; leave a cell empty (or write NaN) for a missing sample"
                if auto_channels:
                    hint += ("; if this is not a sensor column, drop it from the file (aiot train can also pick "
                             "the sensor columns with --channels); if it marks faults, name it with --label-column")
                raise ToolkitError(
                    f"{path}:{line_no}: column '{header[k]}': '{row[k].strip()}' is not a number", hint=hint
                )
            values[r, j] = v
        if labels is not None:
            labels[r] = _parse_label(path, line_no, header[lab_idx], row[lab_idx], decimal_comma,  # type: ignore[index]
                                     words, label_map_given)
    return ts, values, labels, any_iso


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _is_row_index(header: list[str], rows: list[tuple[int, list[str]]]) -> bool:
    """The first column is a row index as pandas writes one: no name (or 'Unnamed: 0' after a
    round trip through pandas) and integers that count up by one from the first row."""
    if not header or not (header[0] == "" or re.fullmatch(r"unnamed: ?\d+", header[0].lower())) or not rows:
        return False
    try:
        start = int(rows[0][1][0])
        return all(len(r) > 0 and int(r[0]) == start + k for k, (_, r) in enumerate(rows))
    except ValueError:
        return False


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


def _parse_label(path: Path, line_no: int, column: str, cell: str, decimal_comma: bool,
                 words: dict[str, int] = LABEL_WORDS, label_map_given: bool = False) -> int:
    word = words.get(cell.strip().lower())
    if word is not None:
        return word
    v = _parse_value(cell, decimal_comma)
    if v is None or math.isnan(v) or v not in (0.0, 1.0):
        known = "0, 1 or a value --label-map names" if label_map_given else "0 or 1 (or normal/fault, ok/alarm and the like)"
        raise ToolkitError(
            f"{path}:{line_no}: column '{column}': label '{cell.strip()}' is not {known}",
            hint=f"labels are 0 (normal) or 1 (fault) on every row; map other values with --label-map "
                 f"VALUE=0,VALUE=1 (e.g. --label-map {cell.strip() or 'VALUE'}=1); drop the label column for "
                 "unlabelled data",
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
