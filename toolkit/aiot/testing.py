"""Test helpers shipped as public API (as click ships CliRunner): markers that skip
cleanly when the cross toolchain or QEMU is absent, and where shared data lives."""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from typing import Iterator

import pytest

from aiot.paths import ROOT

#: The SKAB benchmark, read in place from ../shared/data/skab (never copied into the repo).
SKAB = ROOT.parent / "shared" / "data" / "skab"


def have_arm_toolchain() -> bool:
    return shutil.which("arm-none-eabi-gcc") is not None


def have_qemu() -> bool:
    return shutil.which("qemu-system-arm") is not None


requires_arm = pytest.mark.skipif(not have_arm_toolchain(), reason="arm-none-eabi-gcc not installed (make setup)")
requires_qemu = pytest.mark.skipif(not have_qemu(), reason="qemu-system-arm not installed (make setup)")


@contextmanager
def worker_build_dir() -> Iterator[None]:
    """Under pytest-xdist (`make test` runs on every core), each worker writes its build
    outputs (firmware built for a board, generated C) to a folder of its own,
    BUILD/pytest-gwN, so that two workers never build into the same folder at once. The
    derived caches stay shared (they are written to a private name and renamed into place):
    AIOT_CACHE_DIR is pinned to the cache the run would have used. Without xdist: nothing
    changes."""
    import os

    from aiot import paths

    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if not worker or paths.build_dir().name == f"pytest-{worker}":  # not parallel, or already set (the other conftest)
        yield
        return
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIOT_CACHE_DIR", str(paths.cache_dir()))
        mp.setenv("AIOT_BUILD_DIR", str(paths.build_dir() / f"pytest-{worker}"))
        yield


def fresh_model_cache(monkeypatch, folder) -> Path:
    """Point AIOT_CACHE_DIR at ``folder``, a cache of the test's own (every model is trained
    afresh, none is reused from the suite's cache), sharing the suite's compiled C objects
    (obj/): they are keyed by source, flags and compiler, so sharing them changes no result;
    an empty obj/ would recompile every engine and monitor source (some 40 gcc runs) per test."""
    from pathlib import Path

    from aiot import paths

    folder = Path(folder)
    objects = paths.cache_dir() / "obj"
    objects.mkdir(parents=True, exist_ok=True)
    objects = objects.resolve()  # the suite's own, when called again under a cache made here
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "obj").symlink_to(objects, target_is_directory=True)
    monkeypatch.setenv("AIOT_CACHE_DIR", str(folder))
    return folder


def board_variant(folder, board: str, old: str, new: str):
    """A copy of ``boards/<board>.toml`` in ``folder`` with the first ``old`` replaced by
    ``new``: a board file with one mistake, for tests of the board loader's refusals."""
    from pathlib import Path

    from aiot import paths

    text = (paths.BOARDS / f"{board}.toml").read_text()
    assert old in text, f"{old!r} not in {board}.toml"
    p = Path(folder) / f"{board}.toml"
    p.write_text(text.replace(old, new, 1))
    return p
