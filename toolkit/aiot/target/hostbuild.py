"""Compile firmware C for the host (gcc) into a shared library and load it with ctypes.

The device logic is written once in C; this is how Python runs the very same code for
simulation, feature extraction and fast parity checks. Builds are cached by a hash of
the sources and flags, so repeated loads cost nothing; and each source's object is cached
too (keyed by the source, the flags, a -D define only where the text names it, and the
headers the compiler read), so a library that differs from a cached one in one file (a new
model.c) compiles only that file, not the engine and monitor sources again; and generated C
(a model's folder) is keyed by the bytes its folder holds, not where the folder is, so the
same model generated again elsewhere compiles nothing."""

from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

from aiot.errors import ToolkitError
from aiot.paths import FIRMWARE, cache_dir

#: The cache's folder of third-party C unpacked at a fixed version (aiot.lifecycle.crypto_sources):
#: its include folders are not a caller's. Generated C elsewhere in the cache (a trained
#: model's c/) is, as it is anywhere else.
UNPACKED_C = "crypto"

HOST_CFLAGS = ["-std=c99", "-ffp-contract=off", "-O2", "-fPIC", "-Wall", "-Wextra", "-Werror", "-fvisibility=default"]


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
    private: list[Path] = []  # objects of this build alone (they read a header of a caller's folder)
    try:
        cc = host_compiler()
        objs = [cached_object(cc, s, flags, incs, lambda args: _gcc(args, name), private) for s in srcs]
        _gcc([*flags, "-shared", "-o", str(tmp), *map(str, objs), "-lm"], name)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
        for folder in private:
            shutil.rmtree(folder, ignore_errors=True)
    return out


def _gcc(args: Sequence[str], name: str) -> None:
    proc = subprocess.run([host_compiler(), *args], capture_output=True, text=True)
    if proc.returncode != 0:
        raise ToolkitError(
            f"host build of {name} failed:\n{proc.stderr.strip()}",
            hint="this is a bug in generated or firmware C; please report it with the output above",
        )


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@functools.lru_cache(maxsize=None)
def compiler_identity(cc: str) -> str:
    """What ``cc --version`` says (once per process): an upgrade in place (apt) is another
    compiler, whose objects are not the old one's."""
    try:
        return subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def cached_object(cc: str, src: Path, flags: Sequence[str], incs: Sequence[Path],
                  run: Callable[[list[str]], object], private: list[Path]) -> Path:
    """``src`` compiled by ``cc`` to an object file, cached in cache_dir()/obj/CC (host builds
    and the firmware's, aiot.target.firmware). ``run(args)`` runs the compiler with ``args``
    and raises ToolkitError saying what failed.

    Keyed by the compiler (its path and its --version), the source's bytes and its path, the flags but the -D defines, and
    the names of the headers in each include folder in search order (a header that would
    shadow another is a new key). A caller's folder (any include folder but the firmware's and
    those of third-party C unpacked in the cache, UNPACKED_C: a model's generated C, wherever
    it lies) counts by what it holds, not where it is: a source inside one is named by its
    place in it, and a header read from one by its place in the folder of this build. An
    entry is used only while every header the compiler read (its -MD list) has the bytes it
    had then, and every define that text names (directly or through another define's value;
    in a file of ours that pastes tokens with ##, also one a run of its tokens spells: see
    _defines_read) has the value it had then: a build-specific define (a release key, a
    device id, a flash file) compiles again only the files that read it, and the same
    generated model in another folder (a pytest worker's, a frame-limit variant's) compiles
    nothing. The object's debug information names the folder it was first compiled in. A
    source whose compiler wrote no dependency list is not kept (what it read is unknown); its
    folder goes in ``private``, as does the object's when no cache folder can be written.

    One process compiles a key at a time (_compiling); an entry is published by renaming its
    finished folder into place: a compile killed half way leaves a ``.tmp-`` folder no lookup
    reads, and frees the key."""
    # a caller's folder: not the firmware's, nor one unpacked in the cache (versioned third-party C)
    callers = [Path(i) for i in incs if not (_in(Path(i), FIRMWARE) or _in(Path(i), cache_dir() / UNPACKED_C))]
    defines = dict(_define(f) for f in flags if _define(f))
    h = hashlib.sha256()
    for part in (cc, compiler_identity(cc), _portable(src, callers), _digest(src),
                 " ".join(f for f in flags if not _define(f)), "defines read"):
        h.update(part.encode() + b"\0")
    for inc in incs:
        h.update(b"caller\0" if Path(inc) in callers else str(inc).encode() + b"\0")
        for header in sorted(Path(inc).rglob("*.h")):
            h.update(header.relative_to(inc).as_posix().encode() + b"\0")
    key = cache_dir() / "obj" / Path(cc).name / f"{src.stem}-{h.hexdigest()[:20]}"
    found = _entry(key, src, callers, defines)
    if found is not None:
        return found
    with _compiling(key):  # one process compiles a key; one arriving meanwhile waits, then finds its entry
        found = _entry(key, src, callers, defines)
        return found if found is not None else _compile(cc, src, flags, incs, run, private, key, callers, defines)


def _entry(key: Path, src: Path, callers: list[Path], defines: dict[str, str]) -> Path | None:
    """The object of an entry under ``key`` whose headers still have the bytes they had and
    whose defines read have the values they had, or None."""
    for entry in sorted(key.glob("v-*")) if key.is_dir() else ():  # one per set of header bytes seen
        try:
            read = {_located(f, callers): d for f, d in json.loads((entry / "deps.json").read_text()).items()}
            if all(_digest(f) == d for f, d in read.items()) and \
                    json.loads((entry / "defines.json").read_text()) == _defines_read(src, read, defines):
                return entry / f"{src.stem}.o"
        except (OSError, ValueError):
            continue  # a header gone, or an entry still being written: not this one
    return None


@contextmanager
def _compiling(key: Path, wait: float = 600.0) -> Iterator[None]:
    """Hold ``key``'s lock (an advisory flock on key/.lock) while compiling it: pytest workers
    or an evaluation's pool that need the same object at once compile it once. The kernel
    frees the lock with its holder (a killed compile holds nobody up); a holder slower than
    ``wait`` seconds is not waited for (the object is compiled again, as without the lock)."""
    try:
        import fcntl

        key.mkdir(parents=True, exist_ok=True)
        lock = open(key / ".lock", "a")
    except (ImportError, OSError):  # no flock (not POSIX) or no writable cache: compile unlocked
        yield
        return
    with lock:  # closing the file releases the lock
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() > deadline:
                    break
                time.sleep(0.02)
        yield


def _compile(cc: str, src: Path, flags: Sequence[str], incs: Sequence[Path], run: Callable[[list[str]], object],
             private: list[Path], key: Path | None, callers: list[Path], defines: dict[str, str]) -> Path:
    """Compile ``src`` in a private folder under ``key`` and publish it as an entry (see cached_object)."""
    try:
        key.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".tmp-", dir=key))
    except OSError:  # no writable cache (a read-only home): build without keeping the object
        work = Path(tempfile.mkdtemp(prefix="aiot-obj-"))
        key = None
    obj = work / f"{src.stem}.o"
    try:
        run([*flags, *(f"-I{i}" for i in incs), "-c", str(src), "-o", str(obj), "-MD", "-MF", str(work / "deps.d")])
    except ToolkitError:
        shutil.rmtree(work, ignore_errors=True)
        raise
    try:
        headers = _make_deps(work / "deps.d")[1:]  # the first is the source itself
    except (OSError, IndexError):
        headers = None  # the compiler wrote no dependency list: what it read is unknown
    if key is None or headers is None:
        private.append(work)
        return obj
    read = {Path(f): _digest(Path(f)) for f in headers}
    used = _defines_read(src, read, defines)
    stored = {_portable(f, callers): d for f, d in read.items()}
    (work / "deps.json").write_text(json.dumps(stored))
    (work / "defines.json").write_text(json.dumps(used))
    entry = key / ("v-" + hashlib.sha256(json.dumps([stored, used], sort_keys=True).encode()).hexdigest()[:16])
    try:
        work.rename(entry)  # the entry appears whole; another process may have made the same one first
    except OSError:
        private.append(work)
        return obj
    return entry / obj.name


_CALLER = "<caller {}>/"  # a header's or a source's place in a caller's folder (never a real path)


def _portable(path: Path, callers: Sequence[Path]) -> str:
    """``path`` as the cache records it: its place in the first caller's folder holding it
    ("<caller 0>/model.h"), else the path itself."""
    for i, folder in enumerate(callers):
        if _in(path, folder):
            return _CALLER.format(i) + Path(path).resolve().relative_to(Path(folder).resolve()).as_posix()
    return str(path)


def _located(name: str, callers: Sequence[Path]) -> Path:
    """The file a recorded name stands for in this build (the inverse of _portable)."""
    for i, folder in enumerate(callers):
        if name.startswith(_CALLER.format(i)):
            return Path(folder) / name[len(_CALLER.format(i)):]
    if name.startswith("<caller "):
        raise ValueError(f"{name}: no such caller's folder in this build")
    return Path(name)


def _define(flag: str) -> tuple[str, str] | None:
    """(name, the flag) of a -DNAME or -DNAME=VALUE flag; None for any other flag."""
    if flag.startswith("-D") and len(flag) > 2:
        return flag[2:].split("=", 1)[0], flag
    return None


_IDENT = re.compile(rb"[A-Za-z_][A-Za-z0-9_]*")
_TOKEN = re.compile(rb"[A-Za-z0-9_]+")  # an identifier or a number: what ## can join into a name
_TEXT: dict[tuple[str, str], tuple[frozenset[bytes], bool]] = {}  # (file, digest) -> (tokens, pastes tokens)


def _identifiers(path: Path, digest: str) -> tuple[frozenset[bytes], bool]:
    """The identifier and number tokens of a file's text, and whether it pastes tokens (##)."""
    got = _TEXT.get((str(path), digest))
    if got is None:
        text = Path(path).read_bytes()
        got = _TEXT[str(path), digest] = (frozenset(_TOKEN.findall(text)), b"##" in text)
    return got


def _defines_read(src: Path, read: dict[Path, str], defines: dict[str, str]) -> dict[str, str]:
    """The -D flags of ``defines`` whose names the source or a header it read (``read``:
    path -> digest) names, or that a named define's value names, and so on. When the source
    or a header of ours pastes tokens (##), a name never written whole can be made: a define
    then counts too when its name is a run of two or more tokens of that text or of a
    counted define's value (a pasted name is one; a build's key, device id or frame limit,
    whose names no run spells, cannot change what the compiler makes of the file). Only
    these can change what the compiler makes of the source."""
    tokens: set[bytes] = set()
    pastes = False
    for f, d in [(src, _digest(src)), *read.items()]:
        toks, pasting = _identifiers(Path(f), d)
        tokens |= toks
        pastes = pastes or (pasting and (Path(f) == src or _in(Path(f), FIRMWARE)))
    names = {n for n in defines if n.encode() in tokens}
    while True:
        values = set()  # a counted define's value is pasted or names further defines
        for n in names:
            values |= set(_TOKEN.findall(defines[n].partition("=")[2].encode()))
        pool = tokens | values if pastes else set()
        more = {n for n in defines if n not in names and (n.encode() in values or
                                                          (pastes and _run_of(n.encode(), pool)))}
        if not more:
            return {n: defines[n] for n in sorted(names)}
        names |= more


def _run_of(name: bytes, tokens: set[bytes]) -> bool:
    """True when ``name`` is two or more of ``tokens`` written one after the other."""
    ends = {0}  # the lengths of ``name``'s prefixes made of tokens
    for i in range(len(name)):
        if i in ends:
            ends |= {j for j in range(i + 1, len(name) + 1) if name[i:j] in tokens and (i, j) != (0, len(name))}
    return len(name) in ends


def _in(path: Path, folder: Path) -> bool:
    return Path(path).resolve().is_relative_to(Path(folder).resolve())


def _make_deps(path: Path) -> list[Path]:
    """The files of a gcc -MD rule ("x.o: x.c a.h \\\n b.h", a space in a name as "\\ "), in order."""
    rule = path.read_text().replace("\\\n", " ").split(": ", 1)[1]
    return [Path(f.replace("\\ ", " ")) for f in re.split(r"(?<!\\)\s+", rule.strip())]


def load(path: Path) -> ctypes.CDLL:
    """Load a library built by compile_shared (each path gets its own symbol namespace)."""
    return ctypes.CDLL(str(path), mode=ctypes.RTLD_LOCAL)
