"""Fuzzing the frame parser and the whole device app (host build, ASan + UBSan).

A seeded mutation fuzzer (tests/fixtures/frames/fuzz_harness.c, no clang needed) runs for a
fixed budget: raw bytes into the receiver and the app, and valid frames with random payloads
into every request handler. Any sanitizer report, invariant failure (abort) or crash fails the
test; the figures (inputs, rate, responses) are printed. The same harness builds with
clang -fsanitize=fuzzer for open-ended runs (see the file header)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from aiot import paths

HARNESS = Path(__file__).parent / "fixtures" / "frames" / "fuzz_harness.c"
# The default run fuzzes a fixed number of inputs from a fixed seed: the same inputs on a
# loaded machine as on an idle one, so what the test asserts (every handler reached, the
# monitor ran) is reproducible (a few seconds). AIOT_FUZZ_SECONDS buys a time budget
# instead; the long run is the benchmark (python tests/test_fuzz_frames.py [SECONDS]).
BUDGET_S = os.environ.get("AIOT_FUZZ_SECONDS")
INPUTS = 4000


def _fuzz_args(inputs: int, seed: str, seconds: float | None) -> tuple[list[str], float]:
    """The harness's arguments (inputs, seed, seconds) and a timeout for its run."""
    if seconds is None:
        return [str(inputs), seed, "120"], 180.0  # the 120 s: only a bound, the inputs end the run
    return ["100000000", seed, str(seconds)], seconds + 60


def _build(tmp: Path, model: bool = False, protocol: Path | None = None) -> Path:
    """The harness under ASan + UBSan. Objects come from the toolkit's object cache
    (aiot.target.hostbuild): the builds of this file share every file they compile alike.
    ``protocol``: a copy of firmware/src/protocol to build with instead (a planted bug)."""
    from aiot.target.hostbuild import cached_object

    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("no host gcc")
    fw = paths.FIRMWARE
    # Without a model (INFER answers NO_MODEL, the monitor scores z-scores): the engine has
    # its own parity tests, and a smaller sanitizer build leaves more of the budget to fuzzing.
    # With ``model``: the harness's own two-input, two-output model (AIOT_FUZZ_MODEL), so INFER,
    # INFER_INPUT and INFER_OUTPUT reach the tensors (protocol 1.2).
    srcs = [HARNESS, *sorted((protocol or fw / "src" / "protocol").glob("*.c")), fw / "src" / "app" / "app.c",
            fw / "src" / "monitor" / "monitor.c"] + ([fw / "src" / "monitor" / "engine_adapter.c"] if model else [])
    exe = tmp / ("fuzz_model" if model else "fuzz_planted" if protocol else "fuzz_frames")
    sanitize = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all"]
    flags = ["-std=c99", "-O1", "-g", *sanitize, "-fno-omit-frame-pointer", "-Wall", "-Wextra", "-Werror",
             "-DAIOT_FUZZ_MAIN", "-DAIOT_FUZZ_MODEL" if model else "-DAIOT_NO_MODEL=1",
             '-DAIOT_BOARD_NAME="host-fuzz"', "-DAIOT_CPU_HZ=25000000u"]

    def run(args: list[str]) -> None:
        proc = subprocess.run([gcc, *args], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr

    private: list[Path] = []
    try:
        objs = [cached_object(gcc, src, flags, [fw / "include", fw / "src"], run, private) for src in srcs]
        run([*sanitize, "-o", str(exe), *map(str, objs), "-lm"])
    finally:
        for folder in private:
            shutil.rmtree(folder, ignore_errors=True)
    return exe


def test_fuzz_frame_parser_and_app(tmp_path, capsys):
    exe = _build(tmp_path)
    env = {**os.environ, "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0", "UBSAN_OPTIONS": "print_stacktrace=1"}
    args, timeout = _fuzz_args(INPUTS, "12345", None if BUDGET_S is None else float(BUDGET_S))
    proc = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout, env=env)
    with capsys.disabled():  # the figures belong in the test output, not only on failure
        print("\n" + proc.stdout.strip())
    assert proc.returncode == 0, f"fuzzer failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    assert "runtime error" not in proc.stderr and "AddressSanitizer" not in proc.stderr, proc.stderr[-3000:]
    m = re.search(r"fuzz: (\d+) inputs .* device responses (\d+) \((\d+) error frames\)", proc.stdout)
    assert m, proc.stdout
    inputs, responses, errors = map(int, m.groups())
    assert inputs >= 1000  # the budget bought real work
    assert responses > errors > 0  # handlers answered both successfully and with errors
    coverage = request_coverage(proc.stdout)
    # every request type reached its handler and was answered (the seeds configure the
    # monitor: before, CONFIG_SET never passed check_config, so PUSH, EVENTS and
    # RESET_BASELINE only ever answered "monitor not configured")
    for req in ("INFO", "PUSH", "EVENTS", "STATS", "CONFIG_GET", "CONFIG_SET", "RESET_BASELINE", "EXIT"):
        assert coverage[req]["ok"] > 0, (req, coverage)
    assert coverage["INFER"]["err"] > 0  # built without a model: INFER's handler answers NO_MODEL
    deep = re.search(r"monitor: (\d+) window outputs, (\d+) events returned", proc.stdout)
    assert deep and int(deep.group(1)) > 0 and int(deep.group(2)) > 0, proc.stdout  # the monitor itself ran


def test_fuzz_every_input_and_output_of_a_model(tmp_path, capsys):
    """The app serving a model with two inputs and two outputs (int8 and int16): INFER and its
    chunks scatter into and gather from the tensors under ASan + UBSan, for half the inputs (or budget)."""
    exe = _build(tmp_path, model=True)
    env = {**os.environ, "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0", "UBSAN_OPTIONS": "print_stacktrace=1"}
    args, timeout = _fuzz_args(INPUTS // 2, "4242", None if BUDGET_S is None else max(1.0, float(BUDGET_S) / 2))
    proc = subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=timeout, env=env)
    with capsys.disabled():
        print("\n" + proc.stdout.strip())
    assert proc.returncode == 0, f"fuzzer failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}"
    assert "runtime error" not in proc.stderr and "AddressSanitizer" not in proc.stderr, proc.stderr[-3000:]
    coverage = request_coverage(proc.stdout)
    for req in ("INFO", "INFER", "INFER_INPUT", "INFER_OUTPUT"):
        assert coverage[req]["ok"] > 0 and coverage[req]["err"] > 0, (req, coverage)  # served and refused
    assert coverage["CONFIG_SET"]["ok"] == 0 < coverage["CONFIG_SET"]["err"]  # the monitor cannot score with it


def request_coverage(stdout: str) -> dict[str, dict[str, int]]:
    """``{"PUSH": {"ok": answered, "err": error frames}, ...}`` from the harness's coverage line."""
    line = next((ln for ln in stdout.splitlines() if ln.startswith("coverage:")), "")
    return {name: {"ok": int(ok), "err": int(err)}
            for name, ok, err in re.findall(r"(\w+) ok (\d+) err (\d+)", line)}


def test_fuzz_harness_catches_a_planted_bug(tmp_path):
    """The harness must be able to fail: a receiver that forgets to bound its buffer."""
    planted = tmp_path / "src"
    shutil.copytree(paths.FIRMWARE / "src" / "protocol", planted)
    frame_c = planted / "frame.c"
    text = frame_c.read_text()
    assert "if (rx->len < sizeof rx->buf) {" in text
    frame_c.write_text(text.replace("if (rx->len < sizeof rx->buf) {", "if (rx->len < sizeof rx->buf + 64u) {"))
    exe = _build(tmp_path, protocol=planted)  # the harness and the app: the objects of the build above
    run = subprocess.run([str(exe), "2000000", "7", "20"], capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and ("overflow" in run.stderr or "runtime error" in run.stderr), run.stderr[-2000:]


if __name__ == "__main__":  # the long run, a benchmark: python tests/test_fuzz_frames.py [SECONDS] [SEED]
    import sys
    import tempfile
    import time

    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 600.0
    seed = sys.argv[2] if len(sys.argv) > 2 else "12345"
    with tempfile.TemporaryDirectory() as tmp:
        exe = _build(Path(tmp))
        t0 = time.monotonic()
        env = {**os.environ, "ASAN_OPTIONS": "detect_leaks=1", "UBSAN_OPTIONS": "print_stacktrace=1"}
        proc = subprocess.run([str(exe), str(2**63), seed, str(seconds)], capture_output=True, text=True, env=env)
        print(proc.stdout.strip())
        print(f"seed {seed}, budget {seconds:g} s, wall {time.monotonic() - t0:.1f} s, exit {proc.returncode}")
        if proc.returncode:
            print(proc.stderr[-3000:])
        sys.exit(proc.returncode)
