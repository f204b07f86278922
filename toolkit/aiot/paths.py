"""Where aiot's own data lives (firmware sources, board files, model recipes), where a verb
writes its outputs, and where derived files are cached.

Installed from a wheel, the firmware sources, board files and model recipes are package
data (``aiot/_firmware``, ``aiot/_boards``, ``aiot/_models``); in a checkout they are the
top-level ``firmware/``, ``boards/`` and ``models/`` folders. Nothing is ever written there.
"""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
#: True when running from an installed wheel (data shipped inside the package).
INSTALLED = (_PACKAGE / "_firmware").is_dir()
#: The checkout's top folder, or the package itself when installed.
ROOT = _PACKAGE if INSTALLED else _PACKAGE.parent.parent
FIRMWARE = _PACKAGE / "_firmware" if INSTALLED else ROOT / "firmware"
BOARDS = Path(os.environ.get("AIOT_BOARDS_DIR") or (_PACKAGE / "_boards" if INSTALLED else ROOT / "boards"))
MODELS = _PACKAGE / "_models" if INSTALLED else ROOT / "models"


def build_dir() -> Path:
    """Default root for a verb's outputs: ./build under the current directory.

    AIOT_BUILD_DIR overrides it; each verb's --out overrides both."""
    return Path(os.environ.get("AIOT_BUILD_DIR") or Path.cwd() / "build")


def cache_dir() -> Path:
    """Derived files that are reused across runs (host builds of the C, trained models),
    each keyed by the hash of what it was made from.

    AIOT_CACHE_DIR, else AIOT_BUILD_DIR/cache when that is set, else $XDG_CACHE_HOME/aiot
    (~/.cache/aiot)."""
    if os.environ.get("AIOT_CACHE_DIR"):
        return Path(os.environ["AIOT_CACHE_DIR"])
    if os.environ.get("AIOT_BUILD_DIR"):
        return Path(os.environ["AIOT_BUILD_DIR"]) / "cache"
    xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(xdg) / "aiot"


def private_build_dir(out: Path) -> Path:
    """A fresh folder beside the cache entry ``out`` that only this process writes into;
    :func:`publish_cache_dir` then makes it ``out``."""
    import shutil

    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    return tmp


def publish_cache_dir(tmp: Path, out: Path, complete: str) -> Path:
    """Make the entry built in ``tmp`` the cache entry ``out`` in one rename, so that ``out``
    only ever holds a complete entry. When another process (a pytest worker, a parallel
    evaluation) published the same entry first, theirs is as good: ``tmp`` is dropped, and
    the file ``complete`` (relative to ``out``) must then exist there. A complete ``out`` is
    never removed (another process may be reading it): only what a killed build left."""
    import shutil

    if (out / complete).is_file():
        shutil.rmtree(tmp, ignore_errors=True)
        return out
    shutil.rmtree(out, ignore_errors=True)
    try:
        tmp.rename(out)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (out / complete).is_file():
            raise
    return out
