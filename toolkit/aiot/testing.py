"""Test helpers shipped as public API (as click ships CliRunner): markers that skip
cleanly when the cross toolchain or QEMU is absent, and where shared data lives."""

from __future__ import annotations

import shutil

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
