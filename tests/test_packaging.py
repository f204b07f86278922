"""The installable package: the wheel and sdist carry the firmware sources, board files and
model recipes; an installed aiot runs with no checkout and writes only under its working
folder (never into the installed package).

The end-to-end test builds the wheel with `python -m build --no-isolation` (setuptools and
build come from the test extra: no download), installs it with --no-deps into a fresh venv
in a temporary folder outside the checkout, with the current environment's site-packages
visible through a path file (TensorFlow is not downloaded again; the checkout's editable
install is not seen: a plain path line loads no import hook), and runs `aiot boards`,
`aiot demo` and `aiot evaluate` there."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_python_package_of_aiot_is_declared():
    """setuptools ships only the packages listed: a new subpackage left out of the list would
    be missing from the wheel while every checkout test passes."""
    declared = set(_pyproject()["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(ROOT / "toolkit").parts)
               for p in (ROOT / "toolkit" / "aiot").rglob("__init__.py")}
    assert on_disk <= declared, f"not in pyproject's packages: {sorted(on_disk - declared)}"
    assert not any(p == "lab" or p.startswith("lab.") for p in declared), "the lab is not shipped"


def test_the_data_folders_map_to_the_package_paths_finds():
    from aiot import paths

    cfg = _pyproject()["tool"]["setuptools"]
    assert cfg["package-dir"] == {"": "toolkit", "aiot._firmware": "firmware", "aiot._boards": "boards",
                                  "aiot._models": "models"}
    if not paths.INSTALLED:  # the checkout: the same three folders
        assert (paths.FIRMWARE, paths.BOARDS, paths.MODELS) == (ROOT / "firmware", ROOT / "boards", ROOT / "models")


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _clean_env(home: Path) -> dict:
    """The environment of a user's shell: nothing pointing into the checkout."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("AIOT_", "PYTEST_", "PYTHON", "VIRTUAL_ENV"))}
    env.update(HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), TF_CPP_MIN_LOG_LEVEL="3")
    return env


def _tree(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file()}


@pytest.mark.slow
def test_the_wheel_installs_and_runs_outside_the_checkout(tmp_path):
    dist = tmp_path / "dist"
    build = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(dist), str(ROOT)],
                           capture_output=True, text=True, cwd=tmp_path)
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    (wheel,) = dist.glob("aiot_toolkit-*.whl")
    (sdist,) = dist.glob("aiot_toolkit-*.tar.gz")

    # every firmware source, board file and model recipe is in the wheel, under aiot/_*
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder, pkg, pattern in (("firmware", "_firmware", "**/*"), ("boards", "_boards", "*.toml"),
                                 ("models", "_models", "*.py")):
        expected = {f"aiot/{pkg}/{p.relative_to(ROOT / folder).as_posix()}"
                    for p in (ROOT / folder).glob(pattern) if p.is_file() and "__pycache__" not in p.parts}
        assert expected and expected <= names, sorted(expected - names)[:10]
    assert "aiot/installation.py" in names and "aiot/cli.py" in names
    assert not any(n.startswith(("lab/", "tests/", "toolkit/")) for n in names)
    # the sdist rebuilds the wheel: it has the sources and the data folders
    members = {m.split("/", 1)[1] for m in tarfile.open(sdist).getnames() if "/" in m}
    assert {"pyproject.toml", "firmware/src/monitor/monitor.c", "boards/mps2-an386.toml",
            "models/recipes.py", "toolkit/aiot/cli.py"} <= members
    # ... and runs `make test`: both suites with their fixtures, the lab they test, the manuals
    assert {"Makefile", ".ci/run", "docs/layout.md", "hil_tests/conftest.py", "hil_tests/fixtures/ae24/model.tflite",
            "tests/fixtures/tflite/good_dense.tflite", "toolkit/lab/ceiling.py"} <= members
    assert not any("__pycache__" in m for m in members)

    venv, home, work = tmp_path / "venv", tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = _venv_python(venv)
    site = Path(subprocess.run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    env = _clean_env(home)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", "--no-index",
                    str(wheel)], check=True, env=env, cwd=work)
    # then the dependencies (numpy, click, TensorFlow, tflite-micro) from this environment; only
    # after the install, so pip never sees (or touches) this environment's own aiot
    (site / "_aiot_test_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = site / "aiot"
    assert (installed / "_firmware" / "src" / "monitor" / "monitor.c").is_file()
    before = _tree(installed)

    def aiot(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
        res = subprocess.run([venv / "bin" / "aiot", *args], capture_output=True, text=True, env=env, cwd=work,
                             timeout=timeout)
        assert res.returncode == 0, f"aiot {' '.join(args)}:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
        return res

    where = subprocess.run([py, "-c", "import aiot, aiot.paths as p; print(aiot.__file__); print(p.INSTALLED)"],
                           capture_output=True, text=True, env=env, cwd=work, check=True).stdout.split()
    assert Path(where[0]).parent == installed and where[1] == "True"

    boards = aiot("boards")
    assert "mps2-an386" in boards.stdout and "nucleo-f446re" in boards.stdout

    demo = aiot("demo", "--hours", "1", "--epochs", "3")  # 1,800 windows streamed to QEMU are plenty here
    assert (work / "build" / "demo").is_dir(), demo.stdout
    assert "build/demo" in demo.stdout + demo.stderr  # the folder it wrote is said

    aiot("synth", "--out", "pump.csv", "--hours", "3")
    ev = aiot("evaluate", "--data", "pump.csv", "--format", "generic", "--out", "eval", "--epochs", "3")
    assert (work / "eval" / "report.json").is_file(), ev.stdout

    # nothing was written into the installed package (no build output, cache or bytecode of ours)
    after = _tree(installed)
    new = {f for f in set(after) - set(before) if not f.endswith(".pyc")}
    changed = {f for f in set(before) & set(after) if before[f] != after[f]}
    assert new == set() and changed == set(), (sorted(new)[:10], sorted(changed)[:10])
    # and everything the verbs wrote is under the working folder or the user's cache
    assert (home / ".cache" / "aiot").is_dir()


@pytest.mark.skipif(not __import__("shutil").which("make"), reason="make not installed")
def test_make_test_runs_both_suites_on_every_core(tmp_path):
    """`make test` (and CI, .ci/run) runs the host and QEMU suites under pytest-xdist, one
    worker more than the cores (a worker waiting on QEMU, a socket or a subprocess leaves its
    core to the extra one: a fresh clone on 2 cores, 7 Dec: 356 s with 2 workers, 343 s with 3)."""
    # as a shell runs it: no make flags of ours, nor the OMP_NUM_THREADS=1 a Dask cluster of an
    # earlier test in this worker leaves in os.environ (nproc obeys it)
    env = {k: v for k, v in os.environ.items()
           if k not in ("MAKEFLAGS", "MFLAGS", "PYTEST_JOBS", "OMP_NUM_THREADS", "OMP_THREAD_LIMIT")}
    res = subprocess.run(["make", "-n", "test", f"VENV={tmp_path / 'venv'}"], cwd=ROOT, capture_output=True,
                         text=True, env=env)
    assert res.returncode == 0, res.stderr
    workers = len(os.sched_getaffinity(0)) + 1
    assert f"{tmp_path / 'venv'}/bin/python -m pytest -n {workers} --dist worksteal tests hil_tests" in res.stdout
    assert "pytest-xdist" in " ".join(_pyproject()["project"]["optional-dependencies"]["test"])
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_worker_build_dir_separates_workers_and_keeps_the_cache(monkeypatch, tmp_path):
    from aiot import paths
    from aiot.testing import worker_build_dir

    monkeypatch.delenv("AIOT_CACHE_DIR", raising=False)
    monkeypatch.setenv("AIOT_BUILD_DIR", str(tmp_path / "b"))
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    cache = paths.cache_dir()
    with worker_build_dir():
        assert paths.build_dir() == tmp_path / "b" / "pytest-gw1"
        assert paths.cache_dir() == cache  # shared, not per worker
        with worker_build_dir():  # the other suite's conftest: no second level
            assert paths.build_dir() == tmp_path / "b" / "pytest-gw1"
    assert paths.build_dir() == tmp_path / "b"
    monkeypatch.delenv("PYTEST_XDIST_WORKER")
    with worker_build_dir():
        assert paths.build_dir() == tmp_path / "b"
