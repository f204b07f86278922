"""CSV loading (broken inputs included), synthetic pump data and window features."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from aiot.data import synth
from aiot.data import Series, load_csv, parse_channels, parse_time, write_csv
from aiot.errors import ToolkitError
from aiot.model.features import CLIP, Normalization, fit_normalization, make_windows, quantize_input

CSV = Path(__file__).parent / "fixtures" / "csv"
SKAB = Path(__file__).resolve().parents[2] / "shared" / "data" / "skab"
PUMP_COLUMNS = ["vib_rms_1", "vib_rms_2", "motor_current", "temperature"]


def _error(path: Path, **kw) -> ToolkitError:
    with pytest.raises(ToolkitError) as e:
        load_csv(path, **kw)
    return e.value


# -- load_csv: broken inputs ----------------------------------------------------------


def test_missing_file_is_named():
    e = _error(CSV / "does_not_exist.csv")
    assert "does_not_exist.csv" in e.message and "no such file" in e.message


@pytest.mark.parametrize("name", ["empty.csv", "blank_lines.csv"])
def test_empty_file(name):
    e = _error(CSV / name)
    assert name in e.message and "empty" in e.message


def test_no_header_row():
    e = _error(CSV / "no_header.csv")
    assert "no header" in e.message and e.hint


def test_header_only_has_too_few_rows():
    e = _error(CSV / "header_only.csv", min_rows=8)
    assert "0 data row(s)" in e.message and "8" in e.message


def test_requested_column_missing_lists_what_exists():
    e = _error(CSV / "missing_column.csv", channels=PUMP_COLUMNS)
    assert "'motor_current'" in e.message
    for existing in ("timestamp", "vib_rms_1", "vib_rms_2", "temperature", "label"):
        assert existing in e.message


def test_non_numeric_value_names_value_line_and_column():
    e = _error(CSV / "non_numeric.csv")
    assert "non_numeric.csv:4" in e.message  # header is line 1, the bad row is the 3rd data row
    assert "'motor_current'" in e.message and "'seven'" in e.message
    assert "missing" in e.hint  # tells the user how to mark a missing sample instead
    assert "--channels" in e.hint  # columns were auto-selected: maybe it is not a sensor at all
    e = _error(CSV / "non_numeric.csv", channels=["motor_current"])
    assert "'seven'" in e.message and "--channels" not in e.hint


def test_infinite_value_is_an_error_not_a_sample():
    e = _error(CSV / "infinite_value.csv")
    assert ":3" in e.message and "'inf'" in e.message


@pytest.mark.parametrize("name,line", [("non_monotonic.csv", 4), ("duplicate_time.csv", 3)])
def test_time_must_increase_with_strict_time(name, line):
    e = _error(CSV / name, strict_time=True)
    assert f"{name}:{line}" in e.message and "does not increase" in e.message
    assert "sort" in e.hint


def test_ragged_row():
    e = _error(CSV / "ragged.csv")
    assert "ragged.csv:3" in e.message and "4 field(s)" in e.message and "6" in e.message


def test_label_must_be_0_or_1():
    e = _error(CSV / "bad_label.csv")
    assert "bad_label.csv:3" in e.message and "'2'" in e.message


def test_bad_and_empty_timestamps():
    e = _error(CSV / "bad_timestamp.csv")
    assert "bad_timestamp.csv:3" in e.message and "'yesterday'" in e.message
    e = _error(CSV / "empty_timestamp.csv")
    assert "empty_timestamp.csv:3" in e.message and "empty" in e.message


def test_duplicate_column_name():
    e = _error(CSV / "duplicate_column.csv")
    assert "vib_rms_1" in e.message and "twice" in e.message


def test_no_timestamp_column_lists_columns_unless_disabled():
    e = _error(CSV / "no_timestamp.csv")
    assert "no timestamp column" in e.message and "vib_rms_1, motor_current" in e.message
    s = load_csv(CSV / "no_timestamp.csv", timestamp_column=None)
    assert s.timestamps.tolist() == [0.0, 1.0]


def test_channel_requested_twice():
    e = _error(CSV / "missing_values.csv", channels=["vib_rms_1", "VIB_RMS_1"])
    assert "vib_rms_1" in e.message and "more than once" in e.message


def test_explicit_label_column_must_exist():
    e = _error(CSV / "missing_column.csv", label_column="fault_flag")
    assert "'fault_flag'" in e.message


def test_not_utf8():
    e = _error(CSV / "utf16.csv")
    assert "UTF-8" in e.message


def test_directory_is_not_a_csv(tmp_path):
    assert "directory" in _error(tmp_path).message


# -- load_csv: accepted inputs --------------------------------------------------------


def test_missing_values_are_kept_as_nan_with_mask():
    s = load_csv(CSV / "missing_values.csv")
    assert s.rows == 5  # no row dropped
    expected_missing = {(1, 0), (2, 1), (2, 3), (3, 2)}  # '', 'NaN', 'NA', 'null'
    got_missing = {(int(r), int(c)) for r, c in zip(*np.nonzero(~s.valid))}
    assert got_missing == expected_missing
    assert all(math.isnan(s.values[r, c]) for r, c in expected_missing)
    assert s.values[4].tolist() == [1.4, 2.4, 7.4, 30.4]
    assert s.labels.tolist() == [0, 0, 0, 1, 1]
    assert s.timestamps.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_semicolon_separator_iso_dates_and_decimal_comma():
    s = load_csv(CSV / "semicolon.csv")
    assert s.channels == ["Accelerometer1RMS", "Current", "Temperature"]  # anomaly/changepoint are not sensors
    assert s.labels.tolist() == [0, 0, 1]  # from 'anomaly'
    assert s.values[1, 0] == pytest.approx(0.0261697)  # '0,0261697'
    # 2020-03-09 10:14:33 UTC, computed by hand: 18330 days * 86400 + 10:14:33
    assert s.timestamps[0] == 18330 * 86400 + 10 * 3600 + 14 * 60 + 33
    assert np.diff(s.timestamps).tolist() == [1.0, 1.0]


def test_channel_selection_keeps_requested_order():
    s = load_csv(CSV / "missing_values.csv", channels=["temperature", "VIB_RMS_1"], label_column=None)
    assert s.channels == ["temperature", "vib_rms_1"]
    assert s.values[0].tolist() == [30.0, 1.0]
    assert s.labels is None


def test_parse_time_variants():
    assert parse_time("1970-01-01T00:01:00Z") == 60.0
    assert parse_time("1970-01-01 00:01:00") == 60.0  # naive = UTC
    assert parse_time("1970-01-01T01:01:00+01:00") == 60.0
    assert parse_time("12.5") == 12.5
    with pytest.raises(ValueError):
        parse_time("noon")


@pytest.mark.skipif(not (SKAB / "valve1" / "0.csv").is_file(), reason="SKAB data not present")
def test_reads_a_real_skab_file():
    path = SKAB / "valve1" / "0.csv"
    s = load_csv(path)
    header = path.read_text().splitlines()[0].split(";")
    assert s.channels == [h for h in header if h not in ("datetime", "anomaly", "changepoint")]
    assert s.rows == len(path.read_text().splitlines()) - 1
    assert s.labels is not None and 0 < s.labels.sum() < s.rows
    assert s.sample_period_s == 1.0 and s.valid.all()
    steps = np.diff(s.timestamps)
    assert s.slip_count() == (steps == 2).sum() > 0 and s.gap_count() == (steps > 2.5).sum()


# -- synthetic pump data --------------------------------------------------------------


def test_synth_is_deterministic_per_seed():
    a, b = synth.pump_dataset(seed=3, hours=1), synth.pump_dataset(seed=3, hours=1)
    c = synth.pump_dataset(seed=4, hours=1)
    assert np.array_equal(a.series.values, b.series.values, equal_nan=True)
    assert not np.array_equal(a.series.values, c.series.values, equal_nan=True)


def test_synth_faults_are_labelled_where_the_sensors_deviate():
    ds = synth.pump_dataset(seed=0, hours=2)
    s, tr = ds.series, ds.train_rows
    assert s.channels == PUMP_COLUMNS and s.rows == 7200 and tr == 3600
    assert s.labels[:tr].sum() == 0  # training part is normal
    expected = np.zeros(s.rows, bool)
    for inc in ds.incidents:
        assert tr <= inc.start_row < inc.stop_row <= s.rows
        expected[inc.start_row : inc.stop_row] = True
    assert np.array_equal(s.labels.astype(bool), expected)
    assert {i.name for i in ds.incidents} == {"imbalance", "bearing_wear"}

    mean = np.nanmean(s.values[:tr], axis=0)
    std = np.nanstd(s.values[:tr], axis=0)

    def z(rows: slice) -> np.ndarray:
        return (np.nanmean(s.values[rows], axis=0) - mean) / std

    signature = {"imbalance": ["vib_rms_1", "vib_rms_2"], "bearing_wear": ["vib_rms_1", "temperature"]}
    for inc in ds.incidents:
        late = slice((inc.start_row + inc.stop_row) // 2, inc.stop_row)
        for ch in signature[inc.name]:
            assert z(late)[PUMP_COLUMNS.index(ch)] > 3, (inc.name, ch)
    normal_test = np.nonzero(~expected[tr:])[0] + tr
    assert np.all(np.abs((np.nanmean(s.values[normal_test], axis=0) - mean) / std) < 2)


def test_synth_dropout_is_missing_and_not_a_fault():
    ds = synth.pump_dataset(seed=0, hours=1)
    a, b = ds.dropout_rows
    assert b - a == 20
    assert not ds.series.valid[a:b, 3].any() and ds.series.valid[a:b, :3].all()
    assert ds.series.labels[a:b].sum() == 0
    assert ds.series.missing_count() == 20


def test_synth_csv_round_trip(tmp_path):
    ds = synth.write_csv(tmp_path / "pump.csv", seed=1, hours=1)
    s = load_csv(tmp_path / "pump.csv")
    assert s.channels == PUMP_COLUMNS
    assert np.array_equal(s.values, ds.series.values, equal_nan=True)
    assert np.array_equal(s.valid, ds.series.valid)
    assert np.array_equal(s.timestamps, ds.series.timestamps)
    assert np.array_equal(s.labels, ds.series.labels)
    first = (tmp_path / "pump.csv").read_text().splitlines()[1]
    assert first.startswith("2026-01-05T00:00:00Z,")


def test_synth_rejects_silly_lengths():
    with pytest.raises(ToolkitError):
        synth.pump_dataset(hours=0.1)


def test_synth_cli(tmp_path):
    from aiot.cli import main

    r = CliRunner().invoke(main, ["synth", "--out", str(tmp_path / "p.csv"), "--hours", "1", "--seed", "2"])
    assert r.exit_code == 0, r.output
    assert "imbalance" in r.output and "bearing_wear" in r.output
    assert load_csv(tmp_path / "p.csv").rows == 3600


def test_write_csv_numeric_time_and_missing_cells(tmp_path):
    s = Series(
        timestamps=np.array([0.0, 0.5]), values=np.array([[1.0, np.nan], [2.0, 3.0]]),
        valid=np.array([[True, False], [True, True]]), labels=None, channels=["a", "b"],
    )
    p = write_csv(tmp_path / "x.csv", s, decimals=2)
    assert p.read_text().splitlines() == ["timestamp,a,b", "0.0,1.00,", "0.5,2.00,3.00"]


# -- features: hand-computed cases ----------------------------------------------------


def _series(values, timestamps=None, labels=None) -> Series:
    v = np.asarray(values, dtype=np.float64)
    t = np.arange(len(v), dtype=np.float64) if timestamps is None else np.asarray(timestamps, dtype=np.float64)
    return Series(timestamps=t, values=v, valid=~np.isnan(v),
                  labels=None if labels is None else np.asarray(labels, np.int8), channels=["a", "b"])


def test_normalization_and_time_major_windows_by_hand():
    # a: 1 2 3 4 -> mean 2.5, std sqrt(1.25); b: 10 10 10 50 -> mean 20, std sqrt(300)
    s = _series([[1, 10], [2, 10], [3, 10], [4, 50]])
    norm = fit_normalization(s)
    assert norm.mean.tolist() == pytest.approx([2.5, 20.0])
    assert norm.std.tolist() == pytest.approx([1.118034, 17.320508])
    w = make_windows(s, norm, window=2)
    assert w.end_rows.tolist() == [1, 2, 3]
    assert w.complete.all()
    # last window = rows 2, 3 flattened time-major: [a2, b2, a3, b3]
    assert w.x[2].tolist() == pytest.approx([0.447214, -0.577350, 1.341641, 1.732051], abs=1e-6)
    assert w.x[0].tolist() == pytest.approx([-1.341641, -0.577350, -0.447214, -0.577350], abs=1e-6)
    assert w.x.dtype == np.float32
    assert not w.x.flags.writeable  # overlapping windows share memory


def test_normalization_ignores_missing_and_handles_constant_channels():
    v = np.array([[1.0, 5.0], [np.nan, 5.0], [3.0, 5.0], [8.0, 5.0]])
    norm = fit_normalization(_series(v))
    assert norm.mean[0] == pytest.approx(np.nanmean(v[:, 0]))
    assert norm.std[0] == pytest.approx(np.nanstd(v[:, 0]), rel=1e-6)
    assert norm.std[1] == 1.0  # constant channel: no division by zero


def test_channel_without_any_training_sample_is_an_error():
    with pytest.raises(ToolkitError, match="'?b'?.*no valid sample|b have no valid sample"):
        fit_normalization(_series([[1.0, np.nan], [2.0, np.nan]]))


def test_features_are_clipped():
    norm = Normalization(mean=np.array([0.0, 0.0]), std=np.array([1.0, 1.0]))
    w = make_windows(_series([[100.0, -100.0], [0.5, 0.0]]), norm, window=1)
    assert w.x.tolist() == [[CLIP, -CLIP], [0.5, 0.0]]


def test_windows_with_missing_samples_or_time_gaps_are_incomplete():
    norm = Normalization(mean=np.zeros(2), std=np.ones(2))
    w = make_windows(_series([[0, 0], [np.nan, 0], [0, 0], [0, 0], [0, 0]]), norm, window=2)
    assert w.complete.tolist() == [False, False, True, True]
    # rows at t = 0 1 2 5 6: the step 2 -> 5 is a gap in time
    s = _series(np.zeros((5, 2)), timestamps=[0, 1, 2, 5, 6])
    w = make_windows(s, norm, window=2)
    assert w.complete.tolist() == [True, True, False, True]
    assert s.gap_count() == 1 and s.slip_count() == 0
    # t = 0 1 3 4: one skipped second is a clock slip (whole-second stamps of a ~1.05 s logger)
    s = _series(np.zeros((4, 2)), timestamps=[0, 1, 3, 4])
    assert make_windows(s, norm, window=2).complete.all()
    assert s.gap_count() == 0 and s.slip_count() == 1


def test_window_labels_come_from_the_last_row():
    norm = Normalization(mean=np.zeros(2), std=np.ones(2))
    w = make_windows(_series(np.zeros((4, 2)), labels=[0, 1, 0, 0]), norm, window=2)
    assert w.labels.tolist() == [1, 0, 0]
    assert w.any_fault.tolist() == [True, True, False]


def test_too_few_rows_for_a_window():
    norm = Normalization(mean=np.zeros(2), std=np.ones(2))
    with pytest.raises(ToolkitError, match="too few for one window of 8"):
        make_windows(_series(np.zeros((5, 2))), norm, window=8)


def test_quantize_input_rounds_half_away_from_zero_and_saturates():
    x = np.array([0.25, -0.25, 0.74, 100.0, -100.0, 0.0])
    # scale 0.5, zero point -1: 0.5 -> 1 -> 0; -0.5 -> -1 -> -2; 1.48 -> 1 -> 0; clamp; clamp; -1
    assert quantize_input(x, 0.5, -1).tolist() == [0, -2, 0, 127, -128, -1]


def test_mangled_csv_never_crashes(tmp_path):
    """Random edits of a valid file give a Series or a ToolkitError, nothing else."""
    rng = np.random.default_rng(0)
    base = (CSV / "missing_values.csv").read_text()
    alphabet = list(",;\n\t0123456789.-+eEaNZT:\" \x00")
    outcomes = set()
    for i in range(300):
        text = list(base)
        for _ in range(int(rng.integers(1, 6))):
            pos = int(rng.integers(0, len(text) + 1))
            op = rng.integers(0, 3)
            if op == 0 and text:
                del text[min(pos, len(text) - 1)]
            elif op == 1:
                text.insert(pos, str(rng.choice(alphabet)))
            else:
                text[pos:pos] = text[max(0, pos - 10) : pos]
        p = tmp_path / f"m{i}.csv"
        p.write_text("".join(text))
        try:
            load_csv(p)
            outcomes.add("ok")
        except ToolkitError as e:
            assert str(p) in e.message
            outcomes.add("error")
    assert outcomes == {"ok", "error"}  # the edits do exercise both paths


@pytest.mark.parametrize("name", ["missing_values.csv", "semicolon.csv", "synth"])
def test_fast_and_careful_parsers_agree(name, tmp_path):
    import csv as _csv

    from aiot import data as d

    if name == "synth":
        path = tmp_path / "s.csv"
        synth.write_csv(path, seed=0, hours=1)
    else:
        path = CSV / name
    delim = ";" if name == "semicolon.csv" else ","
    lines = path.read_text().splitlines()
    reader = _csv.reader(lines, delimiter=delim)
    header = next(reader)
    rows = [(reader.line_num, r) for r in reader]
    lab = 4 if name == "semicolon.csv" else len(header) - 1
    ch = [i for i in range(1, len(header)) if i != lab and header[i] != "changepoint"]
    fast = d._parse_vectorized(rows, len(header), 0, ch, lab, delim == ";")
    slow = d._parse_rows(path, rows, header, delim, 0, ch, lab, delim == ";", auto_channels=True)
    assert fast is not None
    for f, s in zip(fast[:3], slow[:3]):
        assert np.array_equal(f, s, equal_nan=True)
    assert fast[3] == slow[3]


def test_more_column_errors(tmp_path):
    e = _error(CSV / "missing_values.csv", timestamp_column="time_s")
    assert "'time_s' not found" in e.message and "timestamp" in e.message
    only_meta = tmp_path / "meta.csv"
    only_meta.write_text("timestamp,label,changepoint\n0,0,0\n")
    assert "no sensor columns" in _error(only_meta).message
    with pytest.raises(ToolkitError, match="no channels requested"):
        load_csv(CSV / "missing_values.csv", channels=[])
    blank_name = tmp_path / "blank.csv"
    blank_name.write_text("timestamp,,b\n0,1,2\n")
    assert "empty column name" in _error(blank_name).message


def test_the_label_column_is_refused_as_a_sensor_channel(tmp_path):
    f = tmp_path / "lab.csv"
    f.write_text("timestamp,vib,Anomaly,fault_code\n0,1.0,0,0\n1,1.1,1,1\n")
    e = _error(f, channels=["anomaly", "vib"])  # found by auto-detection (any case)
    assert "'Anomaly'" in e.message and "label column" in e.message and str(f) in e.message
    assert "--channels" in e.hint and "--label-column" in e.hint
    e = _error(f, channels=["vib", "fault_code"], label_column="fault_code")  # named as the label column
    assert "'fault_code'" in e.message and "label column" in e.message
    # not the label column: still a channel when asked for by name
    s = load_csv(f, channels=["vib", "Anomaly"], label_column=None)
    assert s.channels == ["vib", "Anomaly"] and s.labels is None and s.values[1, 1] == 1.0


@pytest.mark.parametrize("text", ["", ",", " , ,", " "])
def test_a_channel_list_that_names_no_column_is_an_error_not_all_channels(text):
    with pytest.raises(ToolkitError, match="no channels requested") as e:
        parse_channels(text)
    assert "--channels" in e.value.hint


def test_channel_lists_parse_to_their_names():
    assert parse_channels(None) is None  # option not given: every sensor column
    assert parse_channels(" vib_rms_1, temperature ,") == ["vib_rms_1", "temperature"]


def test_field_beyond_the_csv_limit(tmp_path):
    p = tmp_path / "huge.csv"
    p.write_text('timestamp,a\n0,1\n1,"' + "9" * 200_000 + '"\n')
    e = _error(p)
    assert "huge.csv:3" in e.message and "unreadable CSV" in e.message


def test_normalization_must_fit_the_data():
    norm = Normalization(mean=np.zeros(3), std=np.ones(3))
    with pytest.raises(ToolkitError, match="3 channel"):
        make_windows(_series(np.zeros((4, 2))), norm, window=2)


def test_synth_cli_unwritable_out(tmp_path):
    from aiot.cli import main

    (tmp_path / "afile").write_text("x")
    r = CliRunner().invoke(main, ["synth", "--out", str(tmp_path / "afile" / "p.csv"), "--hours", "1"])
    assert r.exit_code == 2 and "cannot write" in r.output and "Traceback" not in r.output
    assert (tmp_path / "afile").read_text() == "x"


def test_hints_name_the_verbs_that_have_the_option_they_suggest(tmp_path):
    # tune and evaluate read CSVs too but have no --channels / --timestamp-column: a hint that
    # only says "pass --channels" sends their users to an option that does not exist
    p = tmp_path / "notes.csv"
    p.write_text("timestamp,a,note\n0,1,ok\n1,2,ok\n")
    with pytest.raises(ToolkitError) as e:
        load_csv(p)
    assert "column 'note'" in e.value.message
    assert "drop it from the file" in e.value.hint and "aiot train" in e.value.hint
    p.write_text("when,a\n0,1\n1,2\n")
    with pytest.raises(ToolkitError) as e:
        load_csv(p)
    assert "rename the time column to 'timestamp'" in e.value.hint
    assert "aiot train and aiot commission" in e.value.hint


@pytest.mark.parametrize("start, step, unit, period", [
    (1_700_000_000_000, 1000, "milliseconds", "read as 1000 s (1 s if they are milliseconds)"),
    (1_700_000_000_000_000, 10_000, "microseconds", "read as 10000 s (0.01 s if they are microseconds)"),
    (1_700_000_000_000_000_000, 10**8, "nanoseconds", "read as 1e+08 s (0.1 s if they are nanoseconds)"),
])
def test_epoch_timestamps_in_a_smaller_unit_are_read_as_seconds_with_a_warning(tmp_path, capsys, start, step, unit,
                                                                               period):
    p = tmp_path / "ms.csv"
    p.write_text("timestamp,a\n" + "".join(f"{start + i * step},{i}\n" for i in range(5)))
    s = load_csv(p)
    assert s.timestamps[1] - s.timestamps[0] == pytest.approx(step)  # as before: numbers are seconds
    err = capsys.readouterr().err
    assert err.startswith(f"warning: {p}: column 'timestamp' holds numbers like ") and f"like {unit} since 1970" in err
    assert period in err and "ISO-8601" in err


@pytest.mark.parametrize("cells, says", [
    ([f"{-1_700_000_000_000 + i * 1000}" for i in range(5)], "look like milliseconds since 1970"),  # before 1970
    (["0", "1", "2"] + [f"{1_700_000_000_000 + i * 1000}" for i in range(7)], "look like milliseconds"),
    ([f"{1e300 * (i + 1)!r}" for i in range(5)], "no smaller unit since 1970 fits either"),
])
def test_the_epoch_warning_holds_for_negative_mixed_and_absurd_values(tmp_path, capsys, cells, says):
    p = tmp_path / "t.csv"
    p.write_text("timestamp,a\n" + "".join(f"{c},{i}\n" for i, c in enumerate(cells)))
    load_csv(p)
    err = capsys.readouterr().err
    assert says in err and "more than 3,000 years away" in err and "year 5000" not in err, err


@pytest.mark.parametrize("cells", [
    [f"{1_700_000_000 + i}" for i in range(5)],  # seconds since 1970
    [f"{i * 0.5}" for i in range(5)],  # seconds from the start
    [f"2024-01-31T12:00:0{i}Z" for i in range(5)],  # dates
    [f"{99_999_999_990 + i}" for i in range(5)],  # just under 1e11 s (year 5138), the largest plausible
])
def test_plausible_seconds_and_dates_raise_no_warning(tmp_path, capsys, cells):
    p = tmp_path / "s.csv"
    p.write_text("timestamp,a\n" + "".join(f"{c},{i}\n" for i, c in enumerate(cells)))
    load_csv(p)
    assert capsys.readouterr().err == ""


def test_a_series_digest_changes_with_each_part_of_its_content_and_only_with_it():
    def series(**change):
        s = Series(timestamps=np.arange(4.0), values=np.ones((4, 2)), valid=np.ones((4, 2), bool),
                   labels=np.zeros(4, np.int8), channels=["a", "b"])
        for k, v in change.items():
            getattr(s, k)[v] = 1 - getattr(s, k)[v]  # flip one entry
        return s

    base = series().digest()
    assert series().digest() == base
    renamed = series()
    renamed.channels, renamed.source = ["x", "y"], Path("other.csv")  # names and source key beside it
    assert renamed.digest() == base
    changed = {series(timestamps=3).digest(), series(values=(3, 1)).digest(), series(valid=(3, 1)).digest(),
               series(labels=3).digest()}
    assert base not in changed and len(changed) == 4
    unlabelled = series()
    unlabelled.labels = None
    assert unlabelled.digest() != base
    # the first rows only: a change after them does not count
    assert series(values=(3, 1)).digest(3) == series().digest(3) != base
    assert series().head(3).digest() == series().digest(3)


# -- real recordings as they come (issue 19): clocks that step back, duplicates, formats ------


def _write(tmp_path: Path, text: str, name: str = "rec.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _minutes(stamps: list[str], values=None) -> str:
    rows = [f"2026-03-29T{t}:00Z,{1.0 + 0.1 * i if values is None else values[i]}" for i, t in enumerate(stamps)]
    return "timestamp,temp\n" + "\n".join(rows) + "\n"


def test_a_clock_stepping_back_is_a_time_reset_counted_and_warned_not_a_refused_file(tmp_path, capsys):
    # an NTP correction: 01:00..01:05, then the clock is set back to 01:02 and goes on
    stamps = ["01:00", "01:01", "01:02", "01:03", "01:04", "01:05", "01:02", "01:03", "01:04"]
    s = load_csv(_write(tmp_path, _minutes(stamps)))
    assert s.rows == 9  # every row kept, in file order: nothing lost
    assert s.meta["time_resets"] == 1 and s.meta["duplicate_timestamps"] == 0
    assert s.meta["first_time_reset_line"] == 8  # header line 1, the 7th data row
    assert s.sample_period_s == 60.0
    err = capsys.readouterr().err
    assert "rec.csv:8" in err and "steps back" in err and "--strict-time" in err
    # windows never span the reset: the gap clock restarts there (as on the device)
    norm = Normalization(np.zeros(1), np.ones(1))
    w = make_windows(s, norm, 3)
    # windows end at rows 2..8; those holding rows 5 and 6 together (ending at 6, 7) are incomplete
    assert w.complete.tolist() == [True, True, True, True, False, False, True]


def test_duplicate_timestamps_are_counted_and_do_not_zero_the_sample_period(tmp_path, capsys):
    stamps = ["02:00", "02:00", "02:01", "02:01", "02:02", "02:02", "02:03"]
    s = load_csv(_write(tmp_path, _minutes(stamps)))
    assert s.rows == 7 and s.meta["duplicate_timestamps"] == 3 and s.meta["time_resets"] == 0
    assert s.sample_period_s == 60.0  # the spacing of the steps that move, not the median 0
    assert "3 duplicated timestamp" in capsys.readouterr().err


def test_a_repeated_hour_is_a_time_reset(tmp_path):
    # local time written without an offset, the night the clocks go back: 02:00..02:59 twice
    text = "timestamp,temp\n" + "".join(f"2026-10-25 0{h}:{m:02d}:00,{20 + m / 100}\n"
                                        for h in (1, 2, 2, 3) for m in (0, 30))
    s = load_csv(_write(tmp_path, text))
    assert s.rows == 8 and s.meta["time_resets"] == 1


def test_strict_time_refuses_a_clock_that_steps_back(tmp_path):
    p = _write(tmp_path, _minutes(["01:00", "01:02", "01:01"]))
    e = _error(p, strict_time=True)
    assert "rec.csv:4" in e.message and "does not increase" in e.message


def test_irregular_sampling_is_read_with_gaps_counted(tmp_path):
    s = load_csv(_write(tmp_path, _minutes(["01:00", "01:01", "01:02", "01:03", "01:09", "01:10", "01:11"])))
    assert s.rows == 7 and s.gap_count() == 1 and s.meta["time_resets"] == 0


@pytest.mark.parametrize("fmt,cells,expect", [
    ("%d/%m/%Y %H:%M:%S", ["31/01/2024 12:00:00", "31/01/2024 12:00:05"], [1706702400.0, 1706702405.0]),
    ("%d.%m.%Y %H:%M", ["31.01.2024 12:00", "31.01.2024 12:01"], [1706702400.0, 1706702460.0]),
    ("unix_ms", ["1706702400000", "1706702400500"], [1706702400.0, 1706702400.5]),
    ("unix_s", ["1706702400", "1706702401"], [1706702400.0, 1706702401.0]),
])
def test_time_format(tmp_path, fmt, cells, expect):
    p = _write(tmp_path, "time,temp\n" + "".join(f"{c},1.0\n" for c in cells))
    s = load_csv(p, time_format=fmt)
    assert s.timestamps.tolist() == expect


def test_a_cell_that_does_not_fit_the_time_format_names_line_and_format(tmp_path):
    p = _write(tmp_path, "time,temp\n31/01/2024 12:00:00,1\n2024-01-31 12:00:05,2\n")
    e = _error(p, time_format="%d/%m/%Y %H:%M:%S")
    assert "rec.csv:3" in e.message and "%d/%m/%Y %H:%M:%S" in e.message and "--time-format" in e.hint


def test_a_text_status_column_is_never_a_sensor_and_is_warned_about(tmp_path, capsys):
    p = _write(tmp_path, "timestamp,temp,machine_status\n1,20.0,NORMAL\n2,20.1,NORMAL\n3,25.0,BROKEN\n")
    s = load_csv(p, label_column=None)
    assert s.channels == ["temp"] and s.labels is None
    err = capsys.readouterr().err
    assert "machine_status" in err and "--label-column machine_status" in err


def test_a_zero_one_status_column_is_never_a_sensor(tmp_path, capsys):
    p = _write(tmp_path, "timestamp,temp,fault_status\n1,20.0,0\n2,20.1,0\n3,25.0,1\n")
    s = load_csv(p)
    assert s.channels == ["temp"]
    assert "fault_status" in capsys.readouterr().err


def test_a_text_status_column_as_labels_with_the_usual_words(tmp_path):
    p = _write(tmp_path, "timestamp,temp,status\n1,20.0,normal\n2,20.1,OK\n3,25.0,fault\n4,25.0,Alarm\n")
    s = load_csv(p, label_column="status")
    assert s.labels.tolist() == [0, 0, 1, 1] and s.channels == ["temp"]


def test_a_label_value_map(tmp_path):
    p = _write(tmp_path, "timestamp,temp,machine_status\n1,20,NORMAL\n2,21,BROKEN\n3,22,RECOVERING\n")
    e = _error(p, label_column="machine_status")
    assert "'RECOVERING'" in e.message and "--label-map" in e.hint
    s = load_csv(p, label_column="machine_status", label_map={"normal": 0, "broken": 1, "recovering": 1})
    assert s.labels.tolist() == [0, 1, 1]


def test_a_pandas_row_index_is_never_a_sensor_and_is_warned_about(tmp_path, capsys):
    # pandas' to_csv writes its row index first, under an empty name (or 'Unnamed: 0' once re-exported):
    # Kaggle's pump sensor recording comes that way. Counting rows is not a measurement.
    rows = "".join(f"{i},2024-01-31T12:00:{i:02d}Z,{20 + i % 3}.5,1.{i}\n" for i in range(5))
    for name in ("", "Unnamed: 0"):
        p = _write(tmp_path, f"{name},timestamp,temp,flow\n" + rows)
        s = load_csv(p)
        assert s.channels == ["temp", "flow"] and s.values[:, 0].tolist() == [20.5, 21.5, 22.5, 20.5, 21.5]
        err = capsys.readouterr().err
        assert "row index" in err and "left out of the sensors" in err
    # the same column, if it does not count rows, is no index: an empty name still stops the read
    p = _write(tmp_path, ",timestamp,temp\n3,2024-01-31T12:00:00Z,1\n7,2024-01-31T12:00:01Z,2\n")
    e = _error(p)
    assert "empty column name" in e.message


def test_a_column_without_a_single_value_is_never_a_sensor_and_is_warned_about(tmp_path, capsys):
    # Kaggle's pump sensor recording has a sensor column that is empty in every row: nothing to learn from,
    # nothing to monitor; the other sensors run. A column with one value is a sensor (mostly missing).
    p = _write(tmp_path, "timestamp,temp,sensor_15,flow\n0,20.0,,1\n1,20.1,nan,1.1\n2,20.2,,1.2\n")
    s = load_csv(p)
    assert s.channels == ["temp", "flow"]
    err = capsys.readouterr().err
    assert "sensor_15" in err and "no value in any row" in err
    p = _write(tmp_path, "timestamp,temp,sensor_15\n0,20.0,\n1,20.1,3.5\n")
    assert load_csv(p).channels == ["temp", "sensor_15"]
    # asked for by name (a model's sensors), it is read as it is: the caller says what is missing
    p = _write(tmp_path, "timestamp,temp,sensor_15\n0,20.0,\n1,20.1,\n")
    assert load_csv(p, channels=["temp", "sensor_15"]).channels == ["temp", "sensor_15"]


def test_fields_separated_by_spaces_are_read_like_commas(tmp_path):
    # Fortran / MATLAB exports (a turbofan's cycles, a test rig's logs): runs of blanks between
    # fields, blanks at the ends of lines; it used to read as one column named "cycle  s1   s2"
    p = tmp_path / "rig.csv"
    p.write_text("time  s1   s2   label \n 1  0.5  10.25  0 \n2 0.75 10.5 0\n3\t1.0   10.75 1   \n")
    s = load_csv(p)
    assert s.channels == ["s1", "s2"] and s.labels.tolist() == [0, 0, 1]
    assert s.values.tolist() == [[0.5, 10.25], [0.75, 10.5], [1.0, 10.75]]
    assert s.timestamps.tolist() == [1.0, 2.0, 3.0]
    # a date with a blank inside is two fields there: the row is refused with the line and why
    q = tmp_path / "dated.csv"
    q.write_text("timestamp s1\n2018-04-01 00:00:00 1.0\n")
    e = _error(q)
    assert "dated.csv:2" in e.message and "separated by blanks" in (e.hint or "")


def test_a_file_without_a_header_line_is_named_whatever_separates_its_fields(tmp_path):
    p = tmp_path / "noheader.csv"
    p.write_text("1 1 0.0003 -0.0000 100.0 518.99\n1 2 0.0007 0.0003 100.0 518.72\n")
    e = _error(p)
    assert "no header row" in e.message
