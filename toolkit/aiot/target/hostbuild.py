"""Compile firmware C for the host (gcc) into a shared library and load it with ctypes.

The device logic is written once in C; this is how Python runs the very same code for
simulation, feature extraction and fast parity checks. Builds are cached by a hash of
the sources and flags, so repeated loads cost nothing."""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
from pathlib import Path
from typing import Iterable, Sequence

from aiot.errors import ToolkitError
from aiot.paths import FIRMWARE, cache_dir

HOST_CFLAGS = ["-std=c99", "-O2", "-fPIC", "-Wall", "-Wextra", "-Werror", "-fvisibility=default"]


def host_compiler() -> str:
    cc = shutil.which("gcc") or shutil.which("cc")
    if not cc:
        raise ToolkitError(
            "no host C compiler found (looked for gcc and cc on PATH)",
            hint="install it with: apt-get install gcc",
        )
    return cc


def compile_shared(
    sources: Sequence[Path | str],
    *,
    name: str = "aiot",
    include_dirs: Iterable[Path | str] = (),
    defines: Iterable[str] = (),
    extra_flags: Iterable[str] = (),
    out_dir: Path | None = None,
) -> Path:
    """Build ``sources`` into ``lib<name>.so`` and return its path (cached by content)."""
    srcs = [Path(s) for s in sources]
    incs = [FIRMWARE / "include", *[Path(i) for i in include_dirs]]
    flags = [*HOST_CFLAGS, *(f"-D{d}" for d in defines), *extra_flags]
    h = hashlib.sha256()
    for s in srcs:
        if not s.is_file():
            raise ToolkitError(f"C source not found: {s}", hint="regenerate it (aiot codegen) or check the path")
        h.update(str(s).encode())
        h.update(s.read_bytes())
    for inc in incs:
        for header in sorted(Path(inc).rglob("*.h")):
            h.update(header.read_bytes())
    h.update(" ".join(flags).encode())
    key = h.hexdigest()[:16]
    out = (out_dir or cache_dir() / "host") / f"{name}-{key}" / f"lib{name}.so"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    # Link to a private name, then rename: another process (pytest workers, the evaluate
    # pool) may be loading the same cached library and must never see it half-written.
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    cmd = [host_compiler(), *flags, *(f"-I{i}" for i in incs), "-shared", "-o", str(tmp), *map(str, srcs), "-lm"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise ToolkitError(
            f"host build of {name} failed:\n{proc.stderr.strip()}",
            hint="this is a bug in generated or firmware C; please report it with the output above",
        )
    os.replace(tmp, out)
    return out


def load(path: Path) -> ctypes.CDLL:
    """Load a library built by compile_shared (each path gets its own symbol namespace)."""
    return ctypes.CDLL(str(path), mode=ctypes.RTLD_LOCAL)
