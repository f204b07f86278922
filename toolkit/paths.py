"""Where the toolkit's own data lives (firmware sources, board files, model recipes)."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE = ROOT / "firmware"
BOARDS = Path(os.environ.get("AIOT_BOARDS_DIR", ROOT / "boards"))
MODELS = ROOT / "models"


def build_dir() -> Path:
    """Default root for build outputs; override with AIOT_BUILD_DIR."""
    return Path(os.environ.get("AIOT_BUILD_DIR", ROOT / "build"))
