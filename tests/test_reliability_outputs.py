"""Issue 22, item 3: an output folder holds one run's files, all of them or none, written by
one run at a time (aiot.outputs, used by aiot evaluate)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from aiot.errors import ToolkitError

FIX = Path(__file__).parent / "fixtures" / "eval"


@pytest.fixture
def quick_evaluate(tmp_path, monkeypatch, silent_device):
    """aiot evaluate on skab_mini with a device that never alerts and a stand-in for each
    file's model: seconds, and everything evaluate writes is real."""
    from aiot.evaluate import pipeline
    from aiot.evaluate.run import evaluate

    def file_package(rec, start, settings, cache=None):
        d = tmp_path / "models" / rec.name
        d.mkdir(parents=True, exist_ok=True)
        (d / "model.tflite").write_bytes(rec.name.encode())
        return d

    monkeypatch.setattr(pipeline, "file_package", file_package)
    monkeypatch.setattr(pipeline, "own_model_rows", lambda window: 2 * window)

    def run(out, **kw):
        return evaluate(data=FIX / "skab_mini", fmt="skab", out=out, train_rows=4, target="reference", jobs=1,
                        window=2, per_file=True, **kw)

    return run


def _contents(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir()) if p.is_file() and not p.name.startswith(".")}


@pytest.mark.parametrize("killed_in", ["write_predictions", "write_json", "write_html"])
def test_a_run_killed_while_writing_leaves_the_previous_run_whole(tmp_path, monkeypatch, quick_evaluate, killed_in):
    from aiot.evaluate import report

    out = tmp_path / "o"
    quick_evaluate(out)
    before = _contents(out)
    assert set(before) == {"predictions.csv", "report.json", "report.html"}

    real = getattr(report, killed_in)

    def killed(path, *a, **k):
        real(path, *a, **k)
        Path(path).write_bytes(Path(path).read_bytes()[:10])  # what was on disk at the kill
        raise KeyboardInterrupt

    monkeypatch.setattr(report, killed_in, killed)
    with pytest.raises(KeyboardInterrupt):
        quick_evaluate(out, limit=1)  # another scope: every file would differ
    assert _contents(out) == before
    assert not [p.name for p in out.iterdir() if p.name.startswith(".aiot-staging")]


def test_every_file_of_the_folder_shares_the_run_id_in_report_json(tmp_path, quick_evaluate):
    from aiot import outputs

    out = tmp_path / "o"
    quick_evaluate(out)
    quick_evaluate(out, limit=1)
    rec = outputs.verify(out)
    assert json.loads((out / "report.json").read_text())["run_id"] == rec["run_id"]
    assert sorted(rec["files"]) == ["predictions.csv", "report.html", "report.json"]


def test_a_second_run_into_a_folder_in_use_is_refused_and_changes_nothing(tmp_path, quick_evaluate):
    from aiot.outputs import OutputRun

    out = tmp_path / "o"
    quick_evaluate(out)
    before = _contents(out)
    with OutputRun(out, "aiot evaluate (the first run)"):
        with pytest.raises(ToolkitError, match="is being written by another run") as e:
            quick_evaluate(out, limit=1)
    assert "the first run" in e.value.message and "another --out" in e.value.hint
    assert _contents(out) == before
    quick_evaluate(out, limit=1)  # the lock went with the first run


def test_a_lock_held_by_another_process_is_honoured_and_released_when_it_dies(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from aiot.outputs import OutputRun

    out = tmp_path / "o"
    code = ("import sys, time\nfrom aiot.outputs import OutputRun\n"
            "with OutputRun(sys.argv[1], 'holder'):\n    print('held', flush=True)\n    time.sleep(60)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    p = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE, env=env)
    try:
        assert p.stdout.readline().strip() == b"held"
        with pytest.raises(ToolkitError, match="holder"):
            with OutputRun(out):
                pass
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    t0 = time.monotonic()
    with OutputRun(out):  # the kernel released the dead process's lock
        pass
    assert time.monotonic() - t0 < 5


def test_a_commit_killed_between_renames_is_completed_by_the_next_opener(tmp_path, monkeypatch):
    from aiot import outputs

    out = tmp_path / "o"
    with outputs.OutputRun(out) as run:
        for name in ("a.csv", "b.json"):
            run.path(name).write_text(f"old {name}")
        run.commit()
    real_replace = os.replace
    moved = []

    def dies_after_one(src, dst):
        if Path(src).parent.name.startswith(outputs.STAGING_PREFIX):
            if moved:
                raise KeyboardInterrupt
            moved.append(dst)
        real_replace(src, dst)

    monkeypatch.setattr(outputs.os, "replace", dies_after_one)
    with pytest.raises(KeyboardInterrupt):
        with outputs.OutputRun(out) as run:
            run.path("a.csv").write_text("new a")
            run.path("b.json").write_text("new b")
            run.commit()
    monkeypatch.setattr(outputs.os, "replace", real_replace)
    assert (out / "a.csv").read_text() == "new a" and (out / "b.json").read_text() == "old b.json"  # mixed
    rec = outputs.verify(out)  # finishes the recorded commit first
    assert (out / "b.json").read_text() == "new b"
    assert sorted(rec["files"]) == ["a.csv", "b.json"]
    assert sorted(p.name for p in out.iterdir()) == [".aiot-run.json", ".aiot.lock", "a.csv", "b.json"]


def test_a_run_that_fails_before_writing_leaves_no_folder(tmp_path):
    from aiot.outputs import OutputRun

    with pytest.raises(RuntimeError):
        with OutputRun(tmp_path / "new"):
            raise RuntimeError("bad input")
    assert not (tmp_path / "new").exists()


_KILLED_RUN = """
import os, signal, sys
from aiot import outputs
out, point = sys.argv[1], sys.argv[2]
real_replace = os.replace
renames = []

def replace(src, dst):
    if os.path.basename(os.path.dirname(src)).startswith(outputs.STAGING_PREFIX):
        renames.append(dst)
        if point == "mid-commit" and len(renames) == 2:
            os.kill(os.getpid(), signal.SIGKILL)
    real_replace(src, dst)

outputs.os.replace = replace
with outputs.OutputRun(out, "killed run") as run:
    for name in ("predictions.csv", "report.json", "report.html"):
        run.path(name).write_text("new " + name)
        if point == "writing" and name == "report.json":
            os.kill(os.getpid(), signal.SIGKILL)
    if point == "staged":
        os.kill(os.getpid(), signal.SIGKILL)
    run.commit()
    if point == "committed":
        os.kill(os.getpid(), signal.SIGKILL)
"""


@pytest.mark.parametrize("point, after", [("writing", "old"), ("staged", "old"), ("mid-commit", "new"),
                                          ("committed", "new")])
def test_a_run_sigkilled_at_any_point_leaves_one_whole_run(tmp_path, point, after):
    """SIGKILL (no cleanup code runs) while files are written, once they are all staged, between
    two renames of the commit, and right after it: the folder then holds one run's files, the
    old run's or the new one's, never a mix; the lock is free again."""
    import signal
    import subprocess
    import sys

    from aiot import outputs

    out = tmp_path / "o"
    with outputs.OutputRun(out) as run:
        for name in ("predictions.csv", "report.json", "report.html", "old-only.txt"):
            run.path(name).write_text("old " + name)
        run.commit()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    p = subprocess.run([sys.executable, "-c", _KILLED_RUN, str(out), point], env=env, timeout=60)
    assert p.returncode == -signal.SIGKILL
    rec = outputs.verify(out)  # completes a recorded commit, checks every file against its hash
    texts = {n: (out / n).read_text() for n in rec["files"]}
    assert all(t == f"{after} {n}" for n, t in texts.items()), texts
    assert (out / "old-only.txt").exists() == (after == "old")
    assert not list(out.glob(outputs.STAGING_PREFIX + "*"))
