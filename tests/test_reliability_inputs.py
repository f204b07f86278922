"""Issue 22, item 5: hostile inputs and stray processes. A FIFO, a symlink loop, a 1 GB file,
a line without end, 10,000 columns, a manifest pointing outside its package: each is refused
at once with what it is and what to do; a QEMU child dies with the process that started it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from aiot.data import load_csv
from aiot.errors import ToolkitError
from aiot.testing import requires_arm, requires_qemu

EVAL = Path(__file__).parent / "fixtures" / "eval"
TFL = Path(__file__).parent / "fixtures" / "tflite"


def _refused_quickly(fn, seconds: float = 5.0) -> ToolkitError:
    """``fn()`` must raise ToolkitError within ``seconds`` (run in a thread: a hang is a failure,
    not a hung test suite)."""
    box: dict = {}

    def run():
        try:
            fn()
            box["returned"] = True
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            box["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(seconds)
    assert not t.is_alive(), f"still running after {seconds} s (hangs)"
    assert isinstance(box.get("error"), ToolkitError), box
    return box["error"]


def test_a_fifo_as_data_is_refused_not_waited_on(tmp_path):
    fifo = tmp_path / "data.csv"
    os.mkfifo(fifo)
    try:
        e = _refused_quickly(lambda: load_csv(fifo))
        assert "not a regular file" in e.message and "FIFO" in e.message
    finally:
        fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # frees a reader stuck on it, if any
        os.close(fd)


def test_a_symlink_loop_says_what_it_is(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.symlink_to(b)
    b.symlink_to(a)
    e = _refused_quickly(lambda: load_csv(a))
    assert "symbolic link loop" in e.message and "no such file" not in e.message


def test_a_huge_file_is_refused_by_its_size_before_reading(tmp_path):
    from aiot import data

    big = tmp_path / "big.csv"
    with big.open("wb") as f:
        f.truncate(1 << 30)  # 1 GB, sparse: nothing to read quickly, everything to read slowly
    t0 = time.monotonic()
    e = _refused_quickly(lambda: load_csv(big))
    assert time.monotonic() - t0 < 2
    assert "1,073,741,824 bytes" in e.message and f"{data.MAX_CSV_BYTES:,}" in e.message


def test_a_line_without_end_is_refused_by_its_length(tmp_path):
    from aiot import data

    f = tmp_path / "one_line.csv"
    f.write_text("timestamp,a\n" + "1" * (data.MAX_LINE_BYTES + 10))
    e = _refused_quickly(lambda: load_csv(f))
    assert "line 2" in e.message and f"{data.MAX_LINE_BYTES:,}" in e.message


def test_ten_thousand_columns_are_refused_by_train_before_any_training(tmp_path, monkeypatch):
    from aiot.model import train as T

    cols = [f"s{i}" for i in range(10_000)]
    rows = ["timestamp," + ",".join(cols)] + [f"{t}," + ",".join("1.5" for _ in cols) for t in range(40)]
    (tmp_path / "wide.csv").write_text("\n".join(rows) + "\n")
    monkeypatch.setattr(T, "build_model", lambda *a, **k: pytest.fail("training started"))
    with pytest.raises(ToolkitError, match="10,000 channels x window 8 = 80,000 model inputs") as e:
        T.train(tmp_path / "wide.csv", tmp_path / "pkg", window=8, epochs=1, progress=False)
    assert f"{T.MAX_MODEL_INPUTS:,}" in e.value.message and "--channels" in e.value.hint
    assert not (tmp_path / "pkg").exists()


def _package(tmp_path: Path, tflite_value) -> Path:
    from aiot.model.package import write_manifest

    pkg = tmp_path / "pkg"
    pkg.mkdir()
    shutil.copy(TFL / "good_dense.tflite", pkg / "model.tflite")
    write_manifest(pkg, {"format": 1, "name": "m", "channels": ["a"], "window": 8, "sample_period_s": 1.0,
                         "normalization": {"mean": [0.0], "std": [1.0]},
                         "model": {"tflite": tflite_value, "keras": "model.keras"},
                         "score": {"threshold": 1.0}, "training": {}})
    return pkg


@pytest.mark.parametrize("value", [42, ["model.tflite"], {"a": 1}, True])
def test_a_manifest_model_path_that_is_not_a_string_is_a_clear_error(tmp_path, value):
    from aiot.model.package import load_package

    with pytest.raises(ToolkitError, match="model.tflite must be a file name") as e:
        load_package(_package(tmp_path, value)).file("tflite")
    assert "aiot quantize" in e.value.hint


@pytest.mark.parametrize("value", ["../../../../etc/passwd", "/etc/passwd", "c/../../outside.tflite"])
def test_a_manifest_cannot_point_outside_its_package(tmp_path, value):
    from aiot.model.package import load_package

    (tmp_path / "outside.tflite").write_bytes(b"secret")
    with pytest.raises(ToolkitError, match="outside the package") as e:
        load_package(_package(tmp_path, value)).file("tflite")
    assert "secret" not in e.value.message


def test_a_symlink_out_of_the_package_is_refused_too(tmp_path):
    from aiot.model.package import load_package

    pkg = _package(tmp_path, "model.tflite")
    (pkg / "model.tflite").unlink()
    (tmp_path / "elsewhere.tflite").write_bytes(b"x")
    (pkg / "model.tflite").symlink_to(tmp_path / "elsewhere.tflite")
    with pytest.raises(ToolkitError, match="outside the package"):
        load_package(pkg).file("tflite")


_SPAWNER = """
import sys, time
from aiot.target.qemu import spawn_child
p = spawn_child(["sleep", "120"])
print(p.pid, flush=True)
time.sleep(120)
"""


def test_a_child_started_for_qemu_dies_with_its_parent():
    """aiot run killed (SIGKILL: no cleanup runs) used to leave QEMU running, re-parented to init."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    parent = subprocess.Popen([sys.executable, "-c", _SPAWNER], stdout=subprocess.PIPE, env=env)
    child = int(parent.stdout.readline())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _running(child):
        time.sleep(0.05)
    alive = _running(child)
    if alive:
        os.kill(child, signal.SIGKILL)
    assert not alive, "the child outlived its parent"


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_qemu_is_started_as_a_child_that_dies_with_its_parent(monkeypatch, tmp_path):
    from aiot.target import qemu
    from aiot.target.boards import get_board

    started = []

    def spawn(cmd, **kw):
        started.append(cmd)
        raise KeyboardInterrupt  # nothing to run: only which starter is used matters here

    monkeypatch.setattr(qemu, "spawn_child", spawn)
    monkeypatch.setattr(qemu, "check_elf", lambda *a: None)
    monkeypatch.setattr(qemu, "require", lambda tool: tool)
    with pytest.raises(KeyboardInterrupt):
        qemu.Qemu(get_board("mps2-an386"), tmp_path / "fw.elf").start()
    assert started and started[0][0] == "qemu-system-arm"


def test_a_fifo_or_a_huge_file_as_a_model_is_refused_at_once(tmp_path):
    from aiot.model import tflite

    fifo = tmp_path / "model.tflite"
    os.mkfifo(fifo)
    try:
        e = _refused_quickly(lambda: tflite.load(fifo))
        assert "FIFO" in e.message
    finally:
        os.close(os.open(fifo, os.O_RDWR | os.O_NONBLOCK))
    big = tmp_path / "big.tflite"
    with big.open("wb") as f:
        f.truncate(1 << 30)
    e = _refused_quickly(lambda: tflite.read_bytes(big))
    assert "1,073,741,824 bytes" in e.message and f"{tflite.MAX_TFLITE_BYTES:,}" in e.message


def test_a_fifo_or_a_huge_file_as_a_labels_file_is_refused_at_once(tmp_path):
    """--labels (NAB's combined_windows.json form) and a scenario's .labels.json are read like
    every other input: a FIFO is named (it used to read as "not found"), a 1 GB file is refused
    from its size instead of read whole."""
    from aiot.data import readers, scenarios

    fifo = tmp_path / "labels.json"
    os.mkfifo(fifo)
    try:
        e = _refused_quickly(lambda: readers.load_windows(fifo))
        assert "FIFO" in e.message and "not found" not in e.message
    finally:
        os.close(os.open(fifo, os.O_RDWR | os.O_NONBLOCK))
    big = tmp_path / "big.json"
    with big.open("wb") as f:
        f.truncate(1 << 30)
    t0 = time.monotonic()
    e = _refused_quickly(lambda: readers.load_windows(big))
    assert time.monotonic() - t0 < 2
    assert "1,073,741,824 bytes" in e.message and f"{readers.MAX_LABELS_BYTES:,}" in e.message

    suite = tmp_path / "suite"
    suite.mkdir()
    (suite / "s1.csv").write_text("timestamp_ms,a,incident\n0,1.0,\n1000,1.1,\n")
    with (suite / "s1.labels.json").open("wb") as f:
        f.truncate(1 << 30)
    e = _refused_quickly(lambda: scenarios.read_csv(suite / "s1.csv"))
    assert "1,073,741,824 bytes" in e.message


_RUNS_QEMU = """
import sys, time
from aiot.device.hil import open_device
with open_device(board="mps2-an386", elf=sys.argv[1]) as dev:
    print(dev.transport.qemu.proc.pid, flush=True)
    time.sleep(120)
"""


@pytest.mark.qemu
@requires_arm
@requires_qemu
def test_a_host_process_killed_while_talking_to_qemu_takes_qemu_along(tmp_path):
    """The real thing behind the test above: a client holding a QEMU device (as aiot run does)
    is SIGKILLed, so no cleanup of its own runs; QEMU must not stay behind."""
    from aiot.target import firmware
    from aiot.target.boards import get_board

    elf = firmware.build(get_board("mps2-an386"), tmp_path / "fw", None).elf
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    client = subprocess.Popen([sys.executable, "-c", _RUNS_QEMU, str(elf)], stdout=subprocess.PIPE, env=env)
    qemu_pid = int(client.stdout.readline())
    assert _running(qemu_pid)
    client.send_signal(signal.SIGKILL)
    client.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and _running(qemu_pid):
        time.sleep(0.05)
    alive = _running(qemu_pid)
    if alive:
        os.kill(qemu_pid, signal.SIGKILL)
    assert not alive, "QEMU outlived the process that started it"
