"""Readers for SKAB / NAB / generic recordings, and their errors on broken input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aiot.errors import ToolkitError
from aiot.data import readers

FIX = Path(__file__).parent / "fixtures" / "eval"


def test_skab_reads_experiments_in_natural_order_and_keeps_fleet_apart():
    ds = readers.read("skab", FIX / "skab_mini")
    assert [r.name for r in ds.recordings] == ["valve1/0.csv", "valve1/2.csv", "valve1/10.csv"]
    r0 = ds.recordings[0]
    assert r0.series.channels == ["s1", "s2"]  # changepoint is an annotation, not a sensor
    assert r0.labels.tolist() == [0] * 8 + [1, 1, 1] + [0]
    assert ds.fleet is not None and ds.fleet.rows == 10 and ds.fleet.labels is None
    assert ds.fleet_source.name == "anomaly-free.csv"


def test_skab_single_file():
    ds = readers.read("skab", FIX / "skab_mini" / "valve1" / "10.csv")
    assert [r.name for r in ds.recordings] == ["10.csv"]
    assert ds.fleet is None


def test_nab_windows_become_row_windows_and_labels():
    ds = readers.read("nab", FIX / "nab_mini", FIX / "nab_mini" / "labels.json")
    (r,) = ds.recordings
    assert r.name == "realKnown/a.csv"
    assert r.windows == [(10, 14)]  # 07:10 .. 07:14 on a one-per-minute series
    assert np.nonzero(r.labels)[0].tolist() == [10, 11, 12, 13, 14]


@pytest.mark.parametrize(
    "labels, match",
    [
        ("labels_only_unknown_files.json", "match no data file.*realKnown/zzz.csv"),
        ("labels_missing_file.json", "no entry for data file 'realKnown/a.csv'"),
        ("labels_overlap.json", "overlapping windows"),
        ("labels_bad_time.json", "window 0.*not a pair of timestamps"),
        ("labels_truncated.json", "not valid JSON"),
        ("does_not_exist.json", "labels file not found"),
    ],
)
def test_nab_label_file_errors(labels, match):
    with pytest.raises(ToolkitError, match=match):
        readers.read("nab", FIX / "nab_mini", FIX / "nab_mini" / labels)


def test_nab_labels_of_files_not_in_the_data_are_warned_about_and_kept_out(capsys):
    # NAB's combined_windows.json names 58 files; a user keeps a few of them: the others'
    # entries are said (count, first names) and recorded, the files present are labelled
    ds = readers.read("nab", FIX / "nab_mini", FIX / "nab_mini" / "labels_unknown_file.json")
    (r,) = ds.recordings
    assert r.name == "realKnown/a.csv" and r.windows == []
    assert ds.labels_without_data == ["realKnown/zzz.csv"]
    err = capsys.readouterr().err
    assert "1 entry(ies) name no file of" in err and "realKnown/zzz.csv" in err


def test_nab_data_folder_below_the_labels_keys_still_matches_them():
    # --data NAB/data/realKnownCause with NAB's labels keyed 'realKnownCause/x.csv'
    ds = readers.read("nab", FIX / "nab_mini" / "data" / "realKnown", FIX / "nab_mini" / "labels.json")
    (r,) = ds.recordings
    assert r.name == "a.csv" and r.windows == [(10, 14)]
    assert ds.labels_without_data == []


def test_nab_needs_labels():
    with pytest.raises(ToolkitError, match="needs --labels"):
        readers.read("nab", FIX / "nab_mini")


def test_generic_files_must_share_channels():
    with pytest.raises(ToolkitError, match="two.csv: sensor columns.*differ"):
        readers.read("generic", FIX / "generic_mixed")


def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(ToolkitError, match="no such file or folder"):
        readers.read("generic", tmp_path / "nope")
    with pytest.raises(ToolkitError, match="no .csv files"):
        readers.read("skab", tmp_path)
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(ToolkitError, match="not a .csv file"):
        readers.read("generic", tmp_path / "x.txt")


def test_skab_with_only_anomaly_free_data_is_an_error():
    with pytest.raises(ToolkitError, match="no experiment file"):
        readers.read("skab", FIX / "skab_mini" / "anomaly-free")


def test_skab_rejects_labels_option_and_unknown_format():
    with pytest.raises(ToolkitError, match="not used with --format skab"):
        readers.read("skab", FIX / "skab_mini", FIX / "nab_mini" / "labels.json")
    with pytest.raises(ToolkitError, match="unknown --format"):
        readers.read("kdd", FIX / "skab_mini")


def test_generic_with_nab_style_windows():
    ds = readers.read("generic", FIX / "nab_mini" / "data", FIX / "nab_mini" / "labels.json")
    (r,) = ds.recordings
    assert r.windows == [(10, 14)] and int(r.labels.sum()) == 5


def test_window_between_samples_is_reported_not_dropped_silently(tmp_path):
    (tmp_path / "labels.json").write_text('{"realKnown/a.csv": [["2014-04-10 07:10:20", "2014-04-10 07:10:40"]]}')
    ds = readers.read("nab", FIX / "nab_mini", tmp_path / "labels.json")
    r = ds.recordings[0]
    assert r.windows == [] and len(r.meta["windows_without_rows"]) == 1


def _skab_copy(tmp_path, header_of_0: str) -> Path:
    """skab_mini with valve1/0.csv's header replaced (its rows keep their cells)."""
    import shutil

    root = tmp_path / "skab"
    shutil.copytree(FIX / "skab_mini", root)
    f = root / "valve1" / "0.csv"
    lines = f.read_text().splitlines()
    f.write_text("\n".join([header_of_0] + lines[1:]) + "\n")
    return root


def test_an_experiment_file_missing_a_sensor_column_is_named_with_the_column(tmp_path):
    root = _skab_copy(tmp_path, "datetime;s1;s2;anomaly;changepoint")
    f = root / "valve1" / "0.csv"  # without its s2 column (the 3rd)
    f.write_text("\n".join(";".join(ln.split(";")[:2] + ln.split(";")[3:]) for ln in f.read_text().splitlines()) + "\n")
    with pytest.raises(ToolkitError) as e:
        readers.read("skab", root)
    assert e.value.message.startswith("valve1/0.csv: sensor columns differ from anomaly-free/anomaly-free.csv's")
    assert "missing 's2'" in e.value.message


def test_a_renamed_column_in_an_experiment_file_blames_that_file_not_the_fleet(tmp_path):
    root = _skab_copy(tmp_path, "datetime;s1;extra;anomaly;changepoint")
    with pytest.raises(ToolkitError) as e:
        readers.read("skab", root)
    msg = e.value.message
    assert msg.startswith("valve1/0.csv:") and "missing 's2'" in msg and "extra 'extra'" in msg


def test_the_first_file_is_checked_against_the_fleet_recording_too(tmp_path):
    # every experiment file lacks s2: they agree among themselves, not with the fleet's sensors
    import shutil

    root = tmp_path / "skab"
    shutil.copytree(FIX / "skab_mini", root)
    for f in (root / "valve1").glob("*.csv"):
        rows = [ln.split(";") for ln in f.read_text().splitlines()]
        f.write_text("\n".join(";".join(r[:2] + r[3:]) for r in rows) + "\n")
    with pytest.raises(ToolkitError, match="valve1/0.csv: sensor columns differ.*missing 's2'"):
        readers.read("skab", root)


def test_experiment_files_may_list_the_fleets_sensors_in_another_order(tmp_path):
    import shutil

    root = tmp_path / "skab"
    shutil.copytree(FIX / "skab_mini", root)
    fleet = root / "anomaly-free" / "anomaly-free.csv"
    rows = [ln.split(";") for ln in fleet.read_text().splitlines()]
    fleet.write_text("\n".join(";".join([r[0], r[2], r[1]]) for r in rows) + "\n")
    ds = readers.read("skab", root)
    assert ds.fleet.channels == ["s1", "s2"] and ds.recordings[0].series.channels == ["s1", "s2"]


def test_evaluate_reading_options_reach_the_loader(tmp_path):
    # issue 19: --strict-time refuses a clock that steps back; a bad --label-map and a label
    # column given to a format that names its own are usage errors, before any training
    from click.testing import CliRunner

    from aiot.cli import main

    p = tmp_path / "site.csv"
    p.write_text("timestamp,a,status\n" + "".join(f"{t},{t % 3},normal\n" for t in (0, 1, 2, 3, 1, 2)))
    run = lambda *a: CliRunner().invoke(main, ["evaluate", "--data", str(p), "--out", str(tmp_path / "o"), *a])  # noqa: E731
    r = run("--strict-time", "--label-column", "status")
    assert r.exit_code == 2 and "site.csv:6" in r.output and "does not increase" in r.output
    r = run("--label-column", "status", "--label-map", "normal=2")
    assert r.exit_code == 2 and "'normal=2' is not VALUE=0 or VALUE=1" in r.output
    r = CliRunner().invoke(main, ["evaluate", "--data", str(tmp_path), "--format", "skab", "--label-column", "status",
                                  "--out", str(tmp_path / "o")])
    assert r.exit_code == 2 and "--label-column / --label-map go with --format generic" in r.output
    assert not (tmp_path / "o").exists()


def _repeated_hour(tmp_path, windows: list[list[str]]):
    """A NAB folder with one file, one sample a minute from 00:00 to 03:59 (rows 0..239),
    whose clock then steps back an hour (a repeated hour) and runs 03:00 .. 05:59 (rows
    240..419), labelled with ``windows``."""
    import datetime as dt
    import json

    t0 = dt.datetime(2014, 4, 10)
    times = [t0 + dt.timedelta(minutes=i) for i in range(240)] + \
            [t0 + dt.timedelta(hours=3, minutes=i) for i in range(180)]
    d = tmp_path / "data" / "realKnown"
    d.mkdir(parents=True)
    (d / "a.csv").write_text("timestamp,value\n" + "".join(f"{t:%Y-%m-%d %H:%M:%S},{i % 7}\n"
                                                           for i, t in enumerate(times)))
    (tmp_path / "labels.json").write_text(json.dumps({"realKnown/a.csv": windows}))
    return readers.read("nab", tmp_path, tmp_path / "labels.json").recordings[0]


@pytest.mark.parametrize("window, rows", [
    (["2014-04-10 04:30:00", "2014-04-10 04:40:00"], (330, 340)),  # after the step: its only pass
    (["2014-04-10 00:10:00", "2014-04-10 00:20:00"], (10, 20)),    # before it, never repeated
    # open when the clock first reaches its start, closed when the clock first passes its end:
    # a step back inside it keeps it open (one incident, the repeated hour included)
    (["2014-04-10 03:50:00", "2014-04-10 04:10:00"], (230, 310)),
])
def test_label_windows_are_matched_in_file_order_when_the_clock_steps_back(tmp_path, window, rows):
    r = _repeated_hour(tmp_path, [window])
    assert r.windows == [rows]
    assert np.flatnonzero(r.labels).tolist() == list(range(rows[0], rows[1] + 1))
    assert "windows_ambiguous" not in r.meta


def test_a_label_window_inside_a_repeated_hour_takes_its_first_pass_and_says_so(tmp_path, capsys):
    r = _repeated_hour(tmp_path, [["2014-04-10 03:30:00", "2014-04-10 03:45:00"]])
    err = capsys.readouterr().err
    assert "'realKnown/a.csv' window 2014-04-10T03:30:00Z .. 2014-04-10T03:45:00Z" in err
    assert "rows 210..225" in err
    assert r.windows == [(210, 225)]  # the second pass (rows 270..285) has the same times
    assert int(r.labels.sum()) == 16
    assert r.meta["windows_ambiguous"] == [["2014-04-10T03:30:00Z", "2014-04-10T03:45:00Z"]]
