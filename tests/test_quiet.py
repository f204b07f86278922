"""TensorFlow's import chatter is kept off the terminal, and a failed import still shows it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("tensorflow")


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_import_tensorflow_prints_nothing_and_returns_the_module():
    r = _run("from aiot.quiet import import_tensorflow\n"
             "tf = import_tensorflow()\n"
             "print('version', tf.__version__, import_tensorflow() is tf)")
    assert r.returncode == 0, r.stderr
    assert r.stderr == "" and r.stdout.startswith("version ") and r.stdout.strip().endswith("True")


def test_import_keras_prints_nothing_and_imports_tensorflow_first():
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}  # as a user's shell has it
    r = subprocess.run([sys.executable, "-c",
                        "import sys\n"
                        "from aiot.quiet import import_keras\n"
                        "keras = import_keras()\n"
                        "print('keras', keras.__version__, 'tensorflow' in sys.modules, import_keras() is keras)"],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    assert r.stderr == "" and r.stdout.startswith("keras ") and r.stdout.strip().endswith("True True")


def test_a_failing_import_shows_what_was_captured_and_raises():
    # a stand-in "tensorflow" that talks on the C-level stderr, then fails to import
    r = _run("import os, sys, types, importlib.abc, importlib.machinery\n"
             "class Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):\n"
             "    def find_spec(self, name, path, target=None):\n"
             "        return importlib.machinery.ModuleSpec(name, self) if name == 'tensorflow' else None\n"
             "    def create_module(self, spec): return None\n"
             "    def exec_module(self, module):\n"
             "        os.write(2, b'libtensorflow.so: cannot open shared object file\\n')\n"
             "        raise ImportError('no tensorflow here')\n"
             "sys.meta_path.insert(0, Finder())\n"
             "from aiot.quiet import import_tensorflow\n"
             "import_tensorflow()")
    assert r.returncode != 0
    assert "libtensorflow.so: cannot open shared object file" in r.stderr
    assert "ImportError: no tensorflow here" in r.stderr


@pytest.mark.slow
def test_quantize_prints_its_progress_and_nothing_from_tensorflow(tmp_path):
    """`aiot quantize` loads the Keras model: keras must not import TensorFlow loudly first."""
    env = {**os.environ, "AIOT_BUILD_DIR": str(tmp_path / "build")}
    env.pop("TF_CPP_MIN_LOG_LEVEL", None)  # as a user's shell has it
    aiot = [sys.executable, "-m", "aiot.cli"]

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([*aiot, *args], capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env)

    assert run("synth", "--out", "p.csv", "--hours", "1").returncode == 0
    assert run("train", "--data", "p.csv", "--out", "pkg", "--epochs", "1").returncode == 0
    r = run("quantize", "--package", "pkg")
    assert r.returncode == 0, r.stderr
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert lines, "quantize shows its progress on stderr"
    assert all(l.startswith("==> ") or l.startswith("    done") for l in lines), lines
