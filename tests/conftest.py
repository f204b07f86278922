"""Shared fixtures for the host suite."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parent.parent
SKAB = REPO.parent / "shared" / "data" / "skab"


def have_arm_toolchain() -> bool:
    return shutil.which("arm-none-eabi-gcc") is not None


def have_qemu() -> bool:
    return shutil.which("qemu-system-arm") is not None


requires_arm = pytest.mark.skipif(not have_arm_toolchain(), reason="arm-none-eabi-gcc not installed (make setup)")
requires_qemu = pytest.mark.skipif(not have_qemu(), reason="qemu-system-arm not installed (make setup)")
