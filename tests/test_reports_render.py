"""The report pages as a person sees them: headless Chromium renders each page, and the
tests check what it rendered (the DOM after load, and the pixels of a screenshot), not the
HTML string. The evaluate report is built from a hand-made run whose every row is known."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from aiot.data import Series
from aiot.data.readers import Recording
from aiot.evaluate import incidents as inc
from aiot.evaluate import pipeline, report
from aiot.evaluate.device import Outputs
from aiot.evaluate.metrics import confusion, normal_phases

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (make test installs it)")
WIDTH = 1000  # browser window, CSS pixels


def _chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / f"profile-{len(list(tmp_path.glob('profile-*')))}"  # fresh each run
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", "--hide-scrollbars", "--force-device-scale-factor=1", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


#: Appended to a copy of the page: records where each figure landed (page coordinates) and
#: the page height, as attributes --dump-dom prints. Adds nothing visible.
_PROBE = """<script>
document.querySelectorAll("svg").forEach(function (s) {
  var r = s.getBoundingClientRect();
  s.setAttribute("data-box", [r.left + scrollX, r.top + scrollY, r.width, r.height].join(","));
});
document.body.setAttribute("data-height", document.documentElement.scrollHeight);
</script>"""


def rendered(page: Path, tmp_path: Path) -> tuple[str, np.ndarray]:
    """(DOM after the page's load, screenshot of the whole page as (H, W, 3) uint8)."""
    from PIL import Image

    probe = tmp_path / f"probe-{page.name}"
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    dom = _chromium(tmp_path, f"--window-size={WIDTH},800", "--dump-dom", probe.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    height = int(re.search(r'data-height="(\d+)"', dom.stdout).group(1))
    png = tmp_path / f"{page.stem}.png"
    shot = _chromium(tmp_path, f"--window-size={WIDTH},{height}", f"--screenshot={png}", page.as_uri())
    assert shot.returncode == 0 and png.is_file(), shot.stderr[-2000:]
    return dom.stdout, np.asarray(Image.open(png).convert("RGB"))


def boxes(dom: str, cls: str) -> list[tuple[int, int, int, int]]:
    """(left, top, width, height) of each rendered <svg class=cls>, in page pixels."""
    out = []
    for tag in re.findall(r"<svg[^>]*>", dom):
        if f'class="{cls}"' in tag:
            x, y, w, h = (float(v) for v in re.search(r'data-box="([^"]+)"', tag).group(1).split(","))
            out.append((round(x), round(y), round(w), round(h)))
    return out


def mask(img: np.ndarray, colour: str, tol: int = 12) -> np.ndarray:
    rgb = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])
    return (np.abs(img.astype(int) - rgb) <= tol).all(axis=2)


def longest_vertical_run(m: np.ndarray) -> int:
    """The tallest run of True in any one column of ``m``."""
    best = 0
    for col in m.T:
        run = 0
        for v in col:
            run = run + 1 if v else 0
            best = max(best, run)
    return best


# -- a hand-made evaluation run ------------------------------------------------------

ROWS, START = 200_000, 20_000
T0 = 1_600_000_000.0  # 2020-09-13 12:26:40 UTC, one row a second: the file spans 2.3 days
SPIKE = 90_000  # one row where the flow sensor jumps, far from any alert
FAULT = (120_000, 129_999)  # the labelled fault
ALERT_TRUE = (121_000, 124_999)  # alerting, then RECOVERING until 127_999
ALERT_FALSE = (170_000, 170_999)  # alerting, then NORMAL
NO_DATA = (60_000, 60_499)
DRIFT = (150_000, 159_999)


def hand_made_result() -> pipeline.FileResult:
    rng = np.random.default_rng(0)
    t = T0 + np.arange(ROWS, dtype=float)
    flow = 10.0 + 0.05 * rng.standard_normal(ROWS)
    flow[SPIKE] = 20.0
    temp = 40.0 + 2.0 * np.sin(np.arange(ROWS) / 5000.0)
    values = np.stack([flow, temp], axis=1)
    labels = np.zeros(ROWS, np.int8)
    labels[FAULT[0] : FAULT[1] + 1] = 1
    series = Series(timestamps=t, values=values, valid=np.isfinite(values), labels=labels,
                    channels=["flow", "temperature"], iso_time=True)
    rec = Recording(name="pump7.csv", series=series)

    state = np.array(["normal"] * ROWS, dtype=object)
    alert = np.zeros(ROWS, np.int8)
    score = np.full(ROWS, 0.3)
    for a, b in (ALERT_TRUE, ALERT_FALSE):
        state[a : b + 1], alert[a : b + 1], score[a : b + 1] = "anomaly", 1, 3.0
    state[ALERT_TRUE[1] + 1 : 128_000] = "recovering"
    state[NO_DATA[0] : NO_DATA[1] + 1] = "no_data"
    score[NO_DATA[0] : NO_DATA[1] + 1] = np.nan
    state[DRIFT[0] : DRIFT[1] + 1] = "drift"
    chs = np.tile([0.8, 0.2], (ROWS, 1))  # flow drives every alert
    out = Outputs(list(state[START:]), score[START:], np.full(ROWS - START, 0.5), alert[START:], chs[START:])
    alerts = inc.alerts(labels[START:], alert[START:], chs[START:], series.channels)
    for x in alerts:
        x.start += START
        x.end += START
    return pipeline.FileResult(
        recording=rec, start=START, outputs=out,
        commissioning={"monitor_config": {"persist_n": 5, "recover_ratio": 0.9}},
        confusion=confusion(labels[START:], alert[START:]), confusion_all_rows=confusion(labels, alert),
        nab=None, nab_rows=None, incidents=inc.incidents(labels, alert, t), alerts=alerts,
        phases=normal_phases(labels, alert, START),
    )


def _evaluate_page(tmp, r):
    """``r``'s evaluate report written into ``tmp`` and rendered: (page, DOM, screenshot)."""
    summary = pipeline.aggregate([r])
    settings = pipeline.Settings(format="generic", target="host").to_json()
    page = report.write_html(tmp / "report.html", [r], summary, settings, {"data": "pump7.csv"})
    dom, img = rendered(page, tmp)
    return page, dom, img


@pytest.fixture(scope="module")
def evaluate_page(tmp_path_factory):
    return _evaluate_page(tmp_path_factory.mktemp("evaluate"), hand_made_result())


@needs_chromium
def test_evaluate_page_is_self_contained_and_light(evaluate_page):
    page, dom, _ = evaluate_page
    text = page.read_text()
    assert not re.search(r'(src|href)="(https?:)?//', text) and "<link" not in text and "<script" not in text
    # 200,000 rows x 2 sensors drawn at one pixel column each: a page, not a data dump
    assert page.stat().st_size < 150_000


@needs_chromium
def test_evaluate_page_states_the_confusion_counts_and_defines_the_metrics(evaluate_page):
    _, dom, _ = evaluate_page
    # worked out by hand: fault rows 120,000..129,999 (10,000), alerting 121,000..124,999 and
    # 170,000..170,999; streamed rows 20,000..199,999
    tp, fp, fn = 4_000, 1_000, 6_000
    tn = (ROWS - START) - tp - fp - fn
    row = re.search(r"<tr><th>all files \(pooled\)</th>(.*?)</tr>", dom).group(1)
    cells = re.findall(r"<th>(.*?)</th>", row)
    # incidents detected, false alerts, TP, FP, TN, FN, F1, FAR, MAR
    assert cells[:6] == ["1/1", "1", f"{tp:,}", f"{fp:,}", f"{tn:,}", f"{fn:,}"]
    assert cells[6:] == [f"{tp / (tp + (fp + fn) / 2):.3f}", f"{100 * fp / (fp + tn):.2f} %",
                         f"{100 * fn / (fn + tp):.2f} %"]
    for sentence in ("<b>F1</b> = TP / (TP + (FP + FN) / 2)", "<b>FAR</b> (false alarm rate) = FP / (FP + TN)",
                     "<b>MAR</b> (missed alarm rate) = FN / (FN + TP)"):
        assert sentence in dom
    assert "minimum and the maximum of all the rows it covers" in dom  # the drawing is explained


@needs_chromium
def test_evaluate_page_lists_each_alert_with_why_it_ended(evaluate_page):
    _, dom, _ = evaluate_page
    a1 = re.search(r"<tr><td>A1</td>(.*?)</tr>", dom).group(1)
    a2 = re.search(r"<tr><td>A2</td>(.*?)</tr>", dom).group(1)
    assert "2020-09-14 22:03:20" in a1 and "RECOVERING" in a1 and "flow" in a1  # row 121,000
    assert "<b>false</b>" in a2 and "cleared to NORMAL" in a2
    assert "detected after 1000 s" in dom or "detected after 16.7 min" in dom


@needs_chromium
def test_evaluate_figure_has_a_dated_time_axis(evaluate_page):
    _, dom, _ = evaluate_page
    [svg] = re.findall(r'<svg class="file-plot".*?</svg>', dom, re.S)
    texts = re.findall(r"<text[^>]*>([^<]*)</text>", svg)
    assert "time (UTC)" in texts and "2020-09-14" in texts and "2020-09-15" in texts
    clock = [x for x in texts if re.fullmatch(r"\d\d:\d\d", x)]
    assert len(clock) >= 4  # ticks at round clock times


@needs_chromium
def test_evaluate_figure_pixels(evaluate_page):
    """What a person sees in the figure: the one-row spike, the threshold between the normal
    and the alerting score, and every state in the state lane."""
    _, dom, img = evaluate_page
    [(x, y, w, h)] = boxes(dom, "file-plot")
    fig = img[y : y + h, x : x + w]
    C = report.COLOURS

    # the flow trace: the single-row spike survives drawing 200,000 rows in 844 columns as
    # one tall stroke, where the noise around it is a pixel or two
    trace = mask(fig, C["trace"])
    heights = trace.sum(axis=0)
    spike_col = int(np.argmax(heights))
    assert heights[spike_col] >= 0.7 * report._SENSOR_H
    assert np.sort(heights)[-3] < 0.3 * report._SENSOR_H  # only the spike (and its neighbour) is tall
    cols = np.nonzero(heights)[0]
    where = (spike_col - cols.min()) / (cols.max() - cols.min())
    assert abs(where - SPIKE / (ROWS - 1)) < 3 / report.PLOT_COLUMNS

    # the dashed threshold: one pixel row mostly of its colour, between the normal score
    # (0.3, below it) and the alerting score (3, above it)
    thr = mask(fig, C["threshold"])
    thr_row = int(np.argmax(thr.sum(axis=1)))
    assert thr.sum(axis=1)[thr_row] > 0.5 * report.PLOT_COLUMNS
    score_rows = np.nonzero(mask(fig, C["score"]).any(axis=1))[0]
    assert score_rows.min() < thr_row - 10 and score_rows.max() > thr_row + 10

    # the state lane: a full-height block of each state the run went through
    for state in ("commissioning", "normal", "anomaly", "recovering", "drift", "no_data"):
        assert longest_vertical_run(mask(fig, report.STATE_COLOURS[state], tol=6)) >= report._LANE_H, state
    # alerts: the true one green, the false one red
    for kind in ("alert_true", "alert_false"):
        assert longest_vertical_run(mask(fig, C[kind], tol=6)) >= report._LANE_H, kind


LOST = (80_000, 100_000)  # temperature silent: CHANNEL_LOST at the first row, CHANNEL_BACK at the second
CAL_ALERT = 140_000  # flow's drift compensation passes its tolerance


@pytest.fixture(scope="module")
def events_page(tmp_path_factory):
    """The hand-made run with the events its device reported (rows known by construction)."""
    from aiot.evaluate.outputs import DeviceEvent

    tmp = tmp_path_factory.mktemp("events")
    r = hand_made_result()

    def ev(seq, row, kind, channel, value):
        return DeviceEvent(row=row, time=T0 + row, type=kind, channel=channel,
                           channels=() if channel is None else (channel,), value=value, severity=0, state="NORMAL",
                           seq=seq)

    r.outputs.events = [ev(0, 10_000, "COMMISSIONED", None, 0.0), ev(1, LOST[0], "CHANNEL_LOST", 1, 60.0),
                        ev(2, LOST[1], "CHANNEL_BACK", 1, 333.0), ev(3, ALERT_TRUE[0], "ALERT_RAISED", 0, 3.0),
                        ev(4, CAL_ALERT, "CALIBRATION_ALERT", 0, 0.42)]
    return _evaluate_page(tmp, r)


@needs_chromium
def test_evaluate_page_lists_what_the_device_reported_with_time_and_sensor(events_page):
    _, dom, _ = events_page
    table = re.search(r"<h4>What the device reported</h4>.*?<table[^>]*>(.*?)</table>", dom, re.S).group(1)
    rows = [re.findall(r"<td>(.*?)</td>", x) for x in re.findall(r"<tr>(.*?)</tr>", table)[1:]]
    # rows 80,000 / 100,000 / 140,000 one second apart from 2020-09-13 12:26:40 UTC
    assert [x[:4] for x in rows] == [["2020-09-14 10:40:00", "CHANNEL_LOST", "temperature", "60 minutes"],
                                     ["2020-09-14 16:13:20", "CHANNEL_BACK", "temperature", "333 minutes"],
                                     ["2020-09-15 03:20:00", "CALIBRATION_ALERT", "flow", "0.42 sensor units"]]
    assert "ALERT_RAISED x1" in dom and "COMMISSIONED x1" in dom  # counted, not listed: no service to do


@needs_chromium
def test_evaluate_figure_shows_when_a_sensor_was_lost(events_page):
    _, dom, img = events_page
    [(x, y, w, h)] = boxes(dom, "file-plot")
    fig = img[y : y + h, x : x + w]
    lost = mask(fig, report.COLOURS["sensor_lost"], tol=6)
    assert longest_vertical_run(lost) >= report._LANE_H
    cols = np.nonzero(lost.sum(axis=0) >= report._LANE_H)[0]
    left, right = (report._LEFT + np.array(LOST) / (ROWS - 1) * report.PLOT_COLUMNS)
    assert abs(cols.min() - left) <= 2 and abs(cols.max() + 1 - right) <= 2
    assert "sensor lost" in dom and "temperature lost from 2020-09-14 10:40:00 to 2020-09-14 16:13:20" in dom


# -- validate ---------------------------------------------------------------------------


def _validate_report(device: np.ndarray, reference: np.ndarray, ticks: np.ndarray) -> dict:
    from aiot.commands.validate import compare

    return {
        "board": "mps2-an386", "model": "ae24", "model_hash": "654b070d", "transport": "qemu",
        "inputs": {"stored": 100, "random": len(device) - 100, "seed": 0, "features": 24},
        "metrics": compare(device, reference, 0.01, -128),
        "timing": {"ticks_mean": float(ticks.mean()), "ticks_min": int(ticks.min()), "ticks_max": int(ticks.max()),
                   "tick_hz": 25_000_000, "cpu_hz": 25_000_000, "measure": "instructions (QEMU -icount)",
                   "instructions_mean": float(ticks.mean()), "instructions_min": float(ticks.min()),
                   "instructions_max": float(ticks.max()), "cycles_mean": float(ticks.mean()),
                   "ms_mean": ticks.mean() / 25e3, "ms_min": 0.088, "ms_max": 0.09, "inferences_per_s": 11_000.0},
        "host": {"seconds": 1.0, "inferences_per_s": 1_200.0},
        "link": {"clean": True},
        "firmware": {"flash_total": 20_076, "ram_total": 12_768, "engine_code": 1_834, "weights": 2_320,
                     "arena": 36, "app_code": 15_922, "app_ram": 8_636, "stack": 4_096,
                     "board_flash": 4 << 20, "board_ram": 4 << 20},
    }


def _solid_blocks(img: np.ndarray, size: int = 60) -> int:
    """How many size x size tiles are a single colour other than the page's white."""
    n = 0
    for y in range(0, img.shape[0] - size, size // 2):
        for x in range(0, img.shape[1] - size, size // 2):
            tile = img[y : y + size, x : x + size].reshape(-1, 3)
            if (tile == tile[0]).all() and (tile[0] < 245).any():
                n += 1
    return n


@needs_chromium
def test_validate_page_bit_exact_says_so_without_empty_charts(tmp_path):
    from aiot.commands.validate import write_html

    rng = np.random.default_rng(1)
    ref = rng.integers(-128, 128, (300, 24)).astype(np.int8)
    ticks = np.full(300, 2_203) + rng.integers(0, 3, 300)
    page = tmp_path / "report.html"
    write_html(page, _validate_report(ref.copy(), ref, ticks), ticks, ref.copy(), ref)
    dom, img = rendered(page, tmp_path)
    assert "All 7,200 outputs byte-identical to tflite-micro" in dom and "bit-exact" in dom
    assert boxes(dom, "chart") == []  # no error to chart, a cost that does not vary
    assert "a spread of 0.1 % of the mean, so no chart" in dom
    assert "20,076 B" in dom and "tensor arena" in dom and "2,204 (min 2,203, max 2,205)" in dom
    assert _solid_blocks(img) == 0  # the old page's solid bar of 7,200 zero errors


@needs_chromium
def test_validate_page_with_differences_charts_them(tmp_path):
    from aiot.commands.validate import write_html

    rng = np.random.default_rng(2)
    ref = rng.integers(-100, 100, (300, 24)).astype(np.int8)
    dev = ref.copy()
    dev[7, 3] += 1
    dev[42, 3] -= 1
    dev[42, 9] += 2
    ticks = np.full(300, 2_200)
    page = tmp_path / "report.html"
    write_html(page, _validate_report(dev, ref, ticks), ticks, dev, ref)
    dom, img = rendered(page, tmp_path)
    assert "2 vectors differ" in dom and "(first: vector 7)" in dom
    [(x, y, w, h)] = boxes(dom, "chart")  # the error histogram, and only it
    chart = img[y : y + h, x : x + w]
    # three bars (errors -1, +1, +2: one output each) a reader can see, not 7,197 zeros
    # dwarfing them
    bars = mask(chart, "#3b7dd8", tol=6)
    cols = np.nonzero(bars.sum(axis=0) > 0)[0]
    assert len(np.split(cols, np.nonzero(np.diff(cols) > 1)[0] + 1)) == 3
    assert bars.sum(axis=0).max() >= 100  # equal counts: each bar the chart's full height
    assert "Not drawn: the 7,197 outputs with no error" in dom
    assert re.search(r"<tr><td>3</td><td class=\"n\">2</td><td class=\"n\">1</td>", dom)  # output 3: 2 vectors
    # the first differing outputs, device against tflite-micro, in vector order
    firsts = re.findall(r"<tr><td class=\"n\">(\d+)</td><td class=\"n\">(\d+)</td><td class=\"n\">(-?\d+)</td>"
                        r"<td class=\"n\">(-?\d+)</td><td class=\"n\">([+-]\d+)</td></tr>", dom)
    assert [(int(v), int(o), d) for v, o, _, _, d in firsts] == [(7, 3, "+1"), (42, 3, "-1"), (42, 9, "+2")]
    assert all(int(dv) - int(rv) == int(d) for _, _, dv, rv, d in firsts)


# -- set-up ---------------------------------------------------------------------------------

MAKE = shutil.which("make")


@pytest.mark.skipif(MAKE is None, reason="make not installed")
@pytest.mark.parametrize("present", [False, True])
def test_make_installs_chromium_only_when_missing(tmp_path, present):
    """`make test` runs `make chromium`: apt-get installs Debian's chromium when it is missing
    and is not touched when it is there (stand-ins for id and apt-get: nothing is installed)."""
    root = Path(__file__).resolve().parents[1]
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    for name, body in {"id": "echo 0", "apt-get": f'echo "apt-get $*" >> {log}',
                       **({"chromium": "exit 0"} if present else {})}.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    proc = subprocess.run([MAKE, "-s", "-C", str(root), "chromium"], env={"PATH": str(bin_dir)},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    calls = log.read_text().splitlines() if log.exists() else []
    if present:
        assert "chromium: present" in proc.stdout and calls == []
    else:
        assert calls == ["apt-get update -qq", "apt-get install -y -qq --no-install-recommends chromium"]


# -- the time axis, without a browser -------------------------------------------------------


@pytest.mark.parametrize("t0, span, dated, first_label", [
    (T0, 200_000.0, True, "00:00"),  # 2.3 days: every 12 h, dates under the ticks
    (T0, 4.0, True, "12:26:40.000"),  # 4 s of dated rows: every half second
    (T0, 0.5, True, "12:26:40.000"),  # half a second of 1 kHz data: milliseconds
    (0.0, 7_200.0, False, "0"),  # seconds from 0 (no dates in the file)
    (-50.0, 100.0, False, "-40"),
])
def test_time_ticks_are_round_and_inside_the_axis(t0, span, dated, first_label):
    ticks = report.time_ticks(t0, t0 + span, dated)
    times = [t for t, _, _ in ticks]
    assert 2 <= len(ticks) <= 10 and times == sorted(times)
    assert all(t0 - 1e-6 <= t <= t0 + span + 1e-6 for t in times)
    assert ticks[0][1] == first_label
    assert (ticks[0][2] != "") == dated  # the date under the first tick, only for dated files


def test_a_recording_with_plain_second_timestamps_is_drawn(tmp_path):
    """A generic CSV whose time column holds seconds (no dates): numbered axis, same figure."""
    r = hand_made_result()
    s = r.recording.series
    s.timestamps = s.timestamps - T0
    s.iso_time = False
    svg = report._svg(r)
    texts = re.findall(r"<text[^>]*>([^<]*)</text>", svg)
    assert "time (s)" in texts and "time (UTC)" not in texts and "50,000" in texts and "175,000" in texts
    page = report.write_html(tmp_path / "r.html", [r], pipeline.aggregate([r]),
                             pipeline.Settings(format="generic", target="host").to_json(), {"data": "x"})
    assert "<td>90000</td>" not in page.read_text() and "<td>120000</td>" in page.read_text()


def test_validate_reads_the_image_size_next_to_the_elf(tmp_path):
    """report.json's firmware: the build.json every build writes beside its ELF, with the
    board's memory; None when the run had no ELF (a board flashed beforehand)."""
    from aiot.commands.validate import firmware_memory
    from aiot.target.boards import get_board

    board = get_board("nucleo-f446re")
    size = {"flash_total": 20_076, "ram_total": 12_768, "engine_code": 1_834, "weights": 2_320, "arena": 36,
            "app_code": 15_922, "app_ram": 8_636, "stack": 4_096}
    (tmp_path / "build.json").write_text(json.dumps({"board": board.name, "size": size}))
    (tmp_path / "firmware.elf").write_bytes(b"\x7fELF")
    assert firmware_memory(tmp_path / "firmware.elf", board) == {**size, "board_flash": 512 * 1024,
                                                                 "board_ram": 128 * 1024}
    assert firmware_memory(None, board) is None
    assert firmware_memory(tmp_path / "elsewhere" / "firmware.elf", board) is None


def test_validate_page_without_an_image_says_memory_was_not_measured(tmp_path):
    from aiot.commands.validate import write_html

    ref = np.zeros((200, 24), np.int8)
    ticks = np.full(200, 2_200)
    rep = _validate_report(ref, ref, ticks)
    rep["firmware"] = None  # a serial run without --elf
    write_html(tmp_path / "r.html", rep, ticks)
    page = (tmp_path / "r.html").read_text()
    assert "Not measured: this run had no firmware image to read" in page and "tensor arena" not in page
