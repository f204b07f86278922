"""The device's events reach the user: `aiot evaluate` on the monitor writes, per file, every
event the device emitted (time in the recording's clock, row, type, sensor by name, value
with its unit), their counts, and how many its ring dropped. Hand-made recordings whose
events are known from how they were made, 1 sample a minute (so the 60-minute lost time is
60 rows), streamed through the host build of the monitor with one small fleet model."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import numpy as np
import pytest

from aiot.data import format_time

PERIOD_S = 60.0
T0 = 1_583_712_000.0  # 2020-03-09T00:00:00Z
SENSORS = ["pump_pressure", "bearing_temp", "motor_current"]
LEVEL, SPREAD = np.array([4.0, 60.0, 12.0]), np.array([0.05, 0.5, 0.1])
ROWS, COMMISSION = 1000, 400
SILENT_FROM = 600  # lost.csv: bearing_temp sends nothing from this row to the end (400 min)
RESET_AT, BACK_S = 700, 1800.0  # reset.csv: the clock steps back 30 minutes at this row
SPIKES = (50, 90, 130)  # commission.csv: pump_pressure spikes among its commissioning samples
STUCK = 12.5  # commission.csv: motor_current reads exactly this through its commissioning rows
RAMP_ROWS, RAMP_PER_H = 3000, 0.1  # ramp.csv: bearing_temp climbs 0.1 an hour from the end of commissioning
FLAKY = [(450 + 100 * k, 450 + 100 * k + 80) for k in range(5)]  # flaky.csv: bearing_temp silent 80 min, back 20


def _normal(rows: int, seed: int) -> np.ndarray:
    return LEVEL + SPREAD * np.random.default_rng(seed).standard_normal((rows, len(SENSORS)))


def _write(path: Path, t: np.ndarray, v: np.ndarray) -> None:
    lines = ["timestamp," + ",".join(SENSORS)]
    for ts, row in zip(t, v):
        lines.append(format_time(ts) + "," + ",".join("" if np.isnan(x) else f"{x:.4f}" for x in row))
    path.write_text("\n".join(lines) + "\n")


def _times(rows: int = ROWS) -> np.ndarray:
    return T0 + PERIOD_S * np.arange(rows)


def ramp_values() -> np.ndarray:
    v = _normal(RAMP_ROWS, 6)
    v[:, 1] += RAMP_PER_H * (np.arange(RAMP_ROWS) - COMMISSION).clip(0) * PERIOD_S / 3600.0
    return v


def make_data(root: Path) -> tuple[Path, Path]:
    """(folder of test recordings, fleet recording of normal operation)."""
    data = root / "data"
    data.mkdir()
    fleet = root / "fleet.csv"
    _write(fleet, _times(1500), _normal(1500, 1))

    v = _normal(ROWS, 2)
    v[SILENT_FROM:, 1] = np.nan
    _write(data / "lost.csv", _times(), v)

    t = _times()
    t[RESET_AT:] -= BACK_S + PERIOD_S  # row RESET_AT is BACK_S before the row above it
    _write(data / "reset.csv", t, _normal(ROWS, 3))

    v = _normal(ROWS, 4)
    v[list(SPIKES), 0] += 100.0
    v[:COMMISSION, 2] = STUCK
    _write(data / "commission.csv", _times(), v)

    _write(data / "ramp.csv", _times(RAMP_ROWS), ramp_values())

    v = _normal(ROWS, 5)
    for a, b in FLAKY:
        v[a:b, 1] = np.nan
    _write(data / "flaky.csv", _times(), v)
    return data, fleet


def run_evaluate(data: Path, fleet: Path, out: Path, target: str = "host") -> dict:
    from aiot.evaluate.run import evaluate

    evaluate(data=data, fmt="generic", out=out, fleet=fleet, target=target, train_rows=COMMISSION, epochs=2,
             jobs=1)
    doc = json.loads((out / "report.json").read_text())
    return {f["file"]: f for f in doc["files"]}


@pytest.fixture(scope="module")
def host_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("events")
    data, fleet = make_data(root)
    return root, run_evaluate(data, fleet, root / "out")


def _of(f: dict, kind: str) -> list[dict]:
    return [e for e in f["events"] if e["type"] == kind]


def _iso_of_row(row: int, t: np.ndarray | None = None) -> str:
    return format_time(T0 + PERIOD_S * row if t is None else t[row])


@pytest.mark.slow
def test_a_sensor_silent_for_good_is_reported_lost_once_by_name(host_run):
    _, files = host_run
    f = files["lost.csv"]
    [lost] = _of(f, "CHANNEL_LOST")
    assert lost["sensor"] == "bearing_temp"
    # lost once 60 minutes (60 rows) have passed without its data, known within one window (8 rows)
    assert SILENT_FROM + 59 <= lost["row"] <= SILENT_FROM + 60 + 8
    assert lost["time"] == _iso_of_row(lost["row"])  # the recording's own clock
    assert lost["unit"] == "minutes" and 60 <= lost["value"] <= 60 + 8
    assert not _of(f, "CHANNEL_BACK")
    assert f["event_counts"]["CHANNEL_LOST"] == 1


@pytest.mark.slow
def test_a_sensor_that_comes_and_goes_is_lost_and_back_once_per_spell(host_run):
    _, files = host_run
    f = files["flaky.csv"]
    lost, back = _of(f, "CHANNEL_LOST"), _of(f, "CHANNEL_BACK")
    assert len(lost) == len(back) == len(FLAKY)
    for (a, b), lo, ba in zip(FLAKY, lost, back):
        assert lo["sensor"] == ba["sensor"] == "bearing_temp"
        # back at the end of the first whole window of 8 rows it sends in: within two windows
        assert a + 59 <= lo["row"] <= a + 60 + 8 and b <= ba["row"] < b + 16
        assert ba["unit"] == "minutes" and 80 - 8 <= ba["value"] <= 80 + 8  # how long it was silent


@pytest.mark.slow
def test_a_slow_ramp_past_the_commissioned_span_is_a_calibration_alert_naming_the_sensor(host_run):
    """A ramp slow enough to be tracked as drift (0.1 an hour: 0.2 of bearing_temp's spread)
    is compensated until the compensation passes the sensor's commissioned span (the default
    tolerance: max - min of its commissioning samples, the first half of the commissioning
    rows); then CALIBRATION_ALERT names it, and it is scored against its commissioned
    baseline again: it alerts. On the way, 12 hours in DRIFT gives DRIFT_PERSISTENT."""
    _, files = host_run
    f = files["ramp.csv"]
    span = float(np.ptp(np.round(ramp_values()[: COMMISSION // 2, 1], 4)))  # as written to the CSV
    [cal] = _of(f, "CALIBRATION_ALERT")
    assert cal["sensor"] == "bearing_temp" and cal["unit"] == "sensor units"
    assert span < cal["value"] <= span + 0.1  # what it had absorbed when it passed the span
    assert cal["row"] >= COMMISSION + span / RAMP_PER_H * 60  # not before the ramp has climbed that far
    assert cal["time"] == _iso_of_row(cal["row"])
    [persistent] = _of(f, "DRIFT_PERSISTENT")
    assert persistent["sensor"] == "bearing_temp" and persistent["unit"] == "hours"
    assert 12.0 <= persistent["value"] < 12.0 + 8 / 60  # drift_alarm_hours, counted in 8-minute windows
    [drift, *_] = _of(f, "DRIFT_DETECTED")
    assert drift["sensor"] == "bearing_temp" and persistent["row"] - drift["row"] in range(12 * 60 - 8, 12 * 60 + 9)
    raised = _of(f, "ALERT_RAISED")
    assert raised and raised[0]["row"] > cal["row"] and raised[0]["sensor"] == "bearing_temp"


@pytest.mark.slow
def test_a_clock_stepping_back_is_one_time_reset_at_its_row(host_run):
    _, files = host_run
    [reset] = _of(files["reset.csv"], "TIME_RESET")
    t = _times()
    t[RESET_AT:] -= BACK_S + PERIOD_S
    assert reset["row"] == RESET_AT and reset["time"] == _iso_of_row(RESET_AT, t)
    assert reset["value"] == BACK_S and reset["unit"] == "s" and reset["sensor"] is None


@pytest.mark.slow
def test_commissioning_events_name_the_spiking_and_the_stuck_sensor(host_run):
    _, files = host_run
    f = files["commission.csv"]
    [rejected] = _of(f, "COMMISSION_REJECTED")
    assert rejected["sensor"] == "pump_pressure" and rejected["value"] == len(SPIKES)
    assert rejected["unit"] == "samples"
    [stuck] = _of(f, "CHANNEL_STUCK")
    assert stuck["sensor"] == "motor_current" and stuck["value"] == STUCK and stuck["unit"] == "sensor units"
    for e in (rejected, stuck):  # known when commissioning ends: inside the commissioning rows
        assert max(SPIKES) < e["row"] < COMMISSION and e["time"] == _iso_of_row(e["row"])
    # the other files had nothing to reject and nothing stuck
    for name in ("lost.csv", "reset.csv", "flaky.csv", "ramp.csv"):
        assert not _of(files[name], "COMMISSION_REJECTED") and not _of(files[name], "CHANNEL_STUCK")


@pytest.mark.slow
def test_every_event_from_commissioning_on_is_there_none_dropped_and_counted(host_run):
    _, files = host_run
    for f in files.values():
        ev = f["events"]
        assert ev[0]["type"] == "COMMISSIONED" and f["events_dropped"] == 0
        # the device numbers its events: no hole, so none was lost between two drains
        assert [e["seq"] for e in ev] == list(range(len(ev)))
        assert f["event_counts"] == dict(collections.Counter(e["type"] for e in ev))
        for e in ev:  # each at a row of the file, at that row's time (the device's stamps are sample times)
            assert set(e) >= {"time", "row", "type", "sensor", "sensors", "value", "unit", "severity"}
            assert 0 <= e["row"] < (RAMP_ROWS if f["file"] == "ramp.csv" else ROWS)
            if f["file"] != "reset.csv":
                assert e["time"] == _iso_of_row(e["row"])


@pytest.mark.slow
def test_the_printed_summary_names_the_first_service_events_and_counts_the_rest(host_run):
    from click.testing import CliRunner

    from aiot.cli import main

    root, _ = host_run
    res = CliRunner().invoke(main, ["evaluate", "--data", str(root / "data"), "--format", "generic", "--fleet",
                                    str(root / "fleet.csv"), "--target", "host", "--train-rows", str(COMMISSION),
                                    "--epochs", "2", "--jobs", "1", "--out", str(root / "cli")])
    assert res.exit_code == 0, res.output
    [line] = [x for x in res.output.splitlines() if x.startswith("device events:")]
    # files in name order: commission.csv's two, then flaky.csv's first spell; 2 + 5 x 2 + 1 + 2 + 1 in all
    assert line.startswith("device events: pump_pressure commissioning samples rejected (commission.csv, "
                           f"{_iso_of_row(207)}), motor_current stuck (commission.csv, ")
    assert "bearing_temp lost (flaky.csv, " in line and line.endswith("; and 13 more in report.json")


@pytest.mark.slow
def test_events_the_ring_dropped_are_counted_and_said(host_run, monkeypatch, capsys):
    """Drained only once a file has been streamed, flaky.csv's 20 events (4 per spell:
    DATA_LOST, CHANNEL_LOST, DATA_RESTORED, CHANNEL_BACK) overflow the 16-event ring: the
    4 oldest are lost, and the report says so instead of a clean list."""
    from aiot.evaluate import events, monitor_device

    root, _ = host_run
    data = root / "flaky_only"
    data.mkdir()
    (data / "flaky.csv").write_text((root / "data" / "flaky.csv").read_text())
    monkeypatch.setattr(monitor_device, "DRAIN_WINDOWS", 10**6)
    files = run_evaluate(data, root / "fleet.csv", root / "dropped")
    f = files["flaky.csv"]
    assert f["events_dropped"] == 4 * len(FLAKY) - 16
    streamed = [e for e in f["events"] if e["row"] >= COMMISSION]
    assert len(streamed) == 16 and streamed[0]["seq"] == 2 + 4  # COMMISSIONED, CALIBRATED, then the 4 lost
    agg = json.loads((root / "dropped" / "report.json").read_text())["aggregate"]["device_events"]
    assert agg["dropped"] == {"flaky.csv": 4}
    assert "event ring overflowed, 4 event(s) lost in flaky.csv" in events.summary_line(agg)
    page = (root / "dropped" / "report.html").read_text()
    assert "4 events the device emitted were lost" in page


@pytest.mark.qemu
@pytest.mark.slow
def test_the_firmware_in_qemu_reports_the_same_events_as_the_host_build(host_run, tmp_path, monkeypatch):
    """The same monitor C on mps2-an386 in QEMU, drained over the serial protocol, reports
    the same events at the same rows as the host build (a lost sensor, its coming and going)."""
    import shutil

    if not shutil.which("qemu-system-arm") or not shutil.which("arm-none-eabi-gcc"):
        pytest.skip("needs qemu-system-arm and arm-none-eabi-gcc")
    root, host = host_run
    data = tmp_path / "data"
    data.mkdir()
    for name in ("flaky.csv", "lost.csv"):
        (data / name).write_text((root / "data" / name).read_text())
    qemu = run_evaluate(data, root / "fleet.csv", tmp_path / "qemu", target="qemu:mps2-an386")
    for name in ("flaky.csv", "lost.csv"):
        assert qemu[name]["events"] == host[name]["events"] and len(host[name]["events"]) >= 5
        assert qemu[name]["events_dropped"] == 0


def test_the_printed_line_names_three_service_events_then_counts_and_says_nothing_without_them():
    from aiot.evaluate.events import summary_line

    def ev(sensor, kind, file, time):
        return {"sensor": sensor, "type": kind, "file": file, "time": time}

    service = [ev("s1", "CHANNEL_LOST", "a.csv", "T1"), ev(None, "TIME_RESET", "a.csv", "T2"),
               ev("s2", "CALIBRATION_ALERT", "b.csv", "T3"), ev("s2", "DRIFT_PERSISTENT", "b.csv", "T4"),
               ev("s1", "CHANNEL_BACK", "a.csv", "T5")]
    assert summary_line({"service": service, "dropped": {}}) == (
        "device events: s1 lost (a.csv, T1), clock stepped back (a.csv, T2), s2 calibration alert (b.csv, T3); "
        "and 2 more in report.json")
    assert summary_line({"service": service[:1], "dropped": {}}) == "device events: s1 lost (a.csv, T1)"
    assert summary_line({"service": [], "dropped": {}}) == "" and summary_line(None) == ""
    dropped = summary_line({"service": [], "dropped": {"c.csv": 7}})
    assert dropped.startswith("device events: no service event; WARNING") and "7 event(s) lost in c.csv" in dropped


@pytest.mark.parametrize("kind, state, value, unit", [
    # a remount changed the sensor's gain (an accelerometer's coupling, a loose mount): a gain
    ("RECAL_GAIN", "DRIFT", 1.1856, "gain (x)"),
    # the score is back, this sensor is not: how far from its baseline
    ("ALERT_HELD", "ANOMALY", 5.2245, "noise units"),
])
def test_what_the_sensor_needs_is_a_service_event_with_its_unit(kind, state, value, unit):
    """RECAL_GAIN and ALERT_HELD are listed with the service events (an ordinary RECAL_DONE is
    not), each with its value's unit."""
    from types import SimpleNamespace

    from aiot.evaluate.events import service_events
    from aiot.evaluate.outputs import DeviceEvent

    series = SimpleNamespace(channels=["vibration", "bearing_temp"], iso_time=True)
    ev = DeviceEvent(row=2100, time=T0 + 21590.0, type=kind, channel=0, channels=(0,), value=value,
                     severity=0, state=state, seq=5)
    done = DeviceEvent(row=1900, time=T0 + 19350.0, type="RECAL_DONE", channel=0, channels=(0,), value=1.12,
                       severity=0, state="DRIFT", seq=4)
    [e] = service_events(series, SimpleNamespace(events=[done, ev]))
    assert (e["type"], e["sensor"], e["value"], e["unit"]) == (kind, "vibration", value, unit)
