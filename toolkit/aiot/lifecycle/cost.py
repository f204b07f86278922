"""Flash and RAM the update machinery adds to a board's firmware: the update C (package
check, slots, record), the bundled crypto and the family's flash driver, cross-compiled
with the firmware's own flags and measured with arm-none-eabi-size (text+data = flash,
data+bss = static RAM; stack use of a verification is not included)."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from aiot.lifecycle.crypto_sources import crypto_sources, update_sources
from aiot.paths import FIRMWARE
from aiot.target import firmware, hostbuild
from aiot.target.boards import Board
from aiot.target.toolchain import require


@dataclass
class Cost:
    board: str
    flash_bytes: dict[str, int]  # by part: update, crypto, driver
    ram_bytes: dict[str, int]

    @property
    def flash_total(self) -> int:
        return sum(self.flash_bytes.values())

    @property
    def ram_total(self) -> int:
        return sum(self.ram_bytes.values())


def driver_sources(board: Board) -> list[Path]:
    """The family's flash driver, if it has one (cmsdk boards map the slots to RAM-backed SSRAM)."""
    p = FIRMWARE / "port" / board.family / "flash.c"
    return [p] if p.is_file() else []


PARTS = ("update", "crypto", "driver")


def compile_objects(board: Board, out_dir: Path, opt: str = "-O2", only: tuple[str, ...] = PARTS,
                    extra_flags: tuple[str, ...] = (), defines: tuple[str, ...] = ()) -> dict[str, list[Path]]:
    """Cross-compile each part warning-free (-Werror) into out_dir; return objects by part.
    ``defines`` (NAME or NAME=VALUE) go on top of the board's, e.g. the update layout's."""
    gcc = require("arm-none-eabi-gcc")
    crypto = crypto_sources()
    parts = {"update": update_sources()[:3], "crypto": list(crypto.sources), "driver": driver_sources(board)}
    parts = {k: v for k, v in parts.items() if k in only}
    defs = {**firmware.build_defines(board, None, defines), **{d: "1" for d in crypto.defines}}
    # as a firmware build has them (the object cache keys on the folders); the driver also its port's
    incs = [*firmware.include_dirs(), *crypto.include_dirs]
    out_dir.mkdir(parents=True, exist_ok=True)
    flags = [*board.cpu_flags(), opt, *firmware.COMMON_CFLAGS, *(f"-D{k}={v}" for k, v in defs.items())]
    objs: dict[str, list[Path]] = {}
    private: list[Path] = []
    for part, srcs in parts.items():
        objs[part] = []
        part_incs = [*incs, FIRMWARE / "port" / board.family] if part == "driver" else incs
        for src in srcs:
            what = f"compiling {src.name} for {board.name}"
            if not extra_flags:  # the object cache of the firmware builds: compiled once for these flags
                objs[part].append(hostbuild.cached_object(gcc, src, flags, part_incs,
                                                          lambda args, what=what: firmware._run([gcc, *args], what),
                                                          private))
                continue
            obj = out_dir / f"{part}-{src.stem}.o"  # extra flags write files beside it (-fcallgraph-info)
            firmware._run([gcc, *flags, *(f"-I{i}" for i in part_incs), *extra_flags, "-c", str(src), "-o", str(obj)], what)
            objs[part].append(obj)
    for folder in private:  # an object the cache would not keep: moved to out_dir, its folder removed
        for part, files in objs.items():
            objs[part] = [Path(shutil.move(str(o), out_dir / f"{part}-{o.name}")) if o.parent == folder else o
                          for o in files]
        shutil.rmtree(folder, ignore_errors=True)
    return objs


def measure(board: Board, out_dir: Path, opt: str = "-O2") -> Cost:
    """Sizes of the parts as linked into a firmware that calls the verification and slot
    API (every function of the update C is reachable from it; only the used functions of
    the crypto files are counted, as --gc-sections keeps them)."""
    objs = compile_objects(board, out_dir, opt)
    size = require("arm-none-eabi-size")
    flash: dict[str, int] = {}
    ram: dict[str, int] = {}
    keep = {"crypto": ("crypto_eddsa_check_equation", "crypto_eddsa_reduce", "SHA256_oneshot", "SHA512_oneshot")}
    for part, files in objs.items():
        if not files:
            continue
        if part in keep:  # link the needed entry points only, to count what --gc-sections keeps
            elf = out_dir / f"{part}.o"
            gcc = require("arm-none-eabi-gcc")
            firmware._run([gcc, *board.cpu_flags(), "-nostdlib", "-r", "-Wl,--gc-sections",
                           *(f"-Wl,--undefined={s}" for s in keep[part]), *(f"-Wl,--entry={keep[part][0]}",),
                           "-o", str(elf), *map(str, files)], f"linking {part}")
            files = [elf]
        out = subprocess.run([size, "-t", *map(str, files)], capture_output=True, text=True, check=True).stdout
        text, data, bss = (int(x) for x in out.strip().splitlines()[-1].split()[:3])
        flash[part], ram[part] = text + data, data + bss
    return Cost(board.name, flash, ram)


def worst_stack(board: Board, out_dir: Path, root: str = "aiot_update_boot", opt: str = "-O2") -> tuple[int, list[str]]:
    """Static worst-case stack bytes below ``root`` (gcc -fcallgraph-info=su over the update C
    and the crypto; recursion and calls through pointers, e.g. the flash driver, not followed)."""
    import re

    compile_objects(board, out_dir, opt, only=("update", "crypto"), extra_flags=("-fcallgraph-info=su",))
    size: dict[str, int] = {}
    edges: dict[str, set[str]] = {}
    for ci in out_dir.glob("*.ci"):
        for line in ci.read_text().splitlines():
            m = re.match(r'node: \{ title: "([^"]+)" label: "[^"]*\\n(\d+) bytes \((\w+)\)"', line)
            if m:
                size[m.group(1)] = int(m.group(2))
                continue
            m = re.match(r'edge: \{ sourcename: "([^"]+)" targetname: "([^"]+)"', line)
            if m:
                edges.setdefault(m.group(1), set()).add(m.group(2))
    memo: dict[str, tuple[int, list[str]]] = {}

    def walk(fn: str, seen: frozenset) -> tuple[int, list[str]]:
        if fn in memo:
            return memo[fn]
        best: tuple[int, list[str]] = (0, [])
        for t in edges.get(fn, ()):
            if t not in seen:
                sub = walk(t, seen | {t})
                if sub[0] > best[0]:
                    best = sub
        memo[fn] = (size.get(fn, 0) + best[0], [fn.split(":")[-1]] + best[1])
        return memo[fn]

    return walk(root, frozenset({root}))


def whole_firmware(board: Board, model_dir: Path | None, out_dir: Path) -> dict[str, firmware.SizeReport]:
    """The device firmware built without and with the update machinery (``aiot build`` and
    ``aiot build --update-key``, -O2, the same model), sized by arm-none-eabi-size: flash =
    text + data, RAM = data + bss (the stack included)."""
    from aiot.lifecycle.firmware import build_update_firmware

    return {"without": firmware.build(board, out_dir / "without", model_dir).size,
            "with": build_update_firmware(board, out_dir / "with", model_dir, public_key=bytes(32)).size}


if __name__ == "__main__":  # python -m aiot.lifecycle.cost [--whole MODEL_C_DIR] BOARD...: docs/lifecycle.md
    import sys
    import tempfile

    from aiot.target.boards import get_board

    args = sys.argv[1:]
    if args[:1] == ["--whole"]:
        model = Path(args[1])
        for name in args[2:] or ["nucleo-f446re"]:
            with tempfile.TemporaryDirectory() as tmp:
                s = whole_firmware(get_board(name), model, Path(tmp))
            w, u = s["without"], s["with"]
            print(f"{name}: flash {w.flash_total:,} -> {u.flash_total:,} B (+{u.flash_total - w.flash_total:,}); "
                  f"RAM {w.ram_total:,} -> {u.ram_total:,} B (+{u.ram_total - w.ram_total:,})")
        sys.exit(0)
    for name in args or ["mps2-an386", "nucleo-f446re"]:
        b = get_board(name)
        with tempfile.TemporaryDirectory() as tmp:
            c = measure(b, Path(tmp) / "size")
            stack, path = worst_stack(b, Path(tmp) / "stack")
        parts = ", ".join(f"{k} {v:,} B" for k, v in c.flash_bytes.items())
        print(f"{name}: flash {c.flash_total:,} B ({parts}); static RAM {c.ram_total} B; "
              f"worst stack {stack:,} B via {' > '.join(path)}")
