"""Standalone projects a user builds without the toolkit, and the TFLite Micro route.

``export_project(board, "cmake" | "platformio", out)`` copies exactly the sources
``aiot.target.firmware.build`` compiles for that board (startup, the family port, the app,
the engine and the generated model), writes the board's linker script and defines, and a
build description:

    cmake:       CMakeLists.txt + cmake/arm-none-eabi.cmake (any arm-none-eabi-gcc)
    platformio:  platformio.ini + extra_script.py (pio run; pio run -t upload)

The defines go into one generated header (include/aiot_board.h, force-included), so no
build system has to get the quoting of string macros right.

``export_tflm(tflite_bytes, out)`` writes the .tflite as an aligned C array (model_data.cc
and .h) for users who keep TensorFlow Lite Micro instead of the generated engine.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

from aiot import paths
from aiot import __version__
from aiot.target.boards import Board
from aiot.errors import ToolkitError

FORMATS = ("cmake", "platformio")
BOARD_HEADER = "aiot_board.h"
# PlatformIO platform per chip family (overridable by flash.platformio_platform).
_PIO_PLATFORM = {"stm32": "ststm32", "nrf5": {"nrf51": "nordicnrf51", "nrf52": "nordicnrf52"}}
_PIO_UPLOAD = {"stm32": "stlink", "nrf5": "jlink"}


def _comment(text: str, limit: int = 200) -> str:
    """Board text for a comment line of a generated build file: control characters (a line
    break would end the comment and make the rest build-file code) become spaces."""
    return re.sub(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]", " ", str(text))[:limit]


def _pio_id(board: Board, key: str, value: str) -> str:
    """A PlatformIO id for platformio.ini, which has no quoting: refused unless it is an id."""
    from aiot.target.boards import _TOOL_ID

    if not _TOOL_ID.match(value):
        raise ToolkitError(f"board {board.name}: flash.{key} = {value!r} is not a PlatformIO id "
                           "(letters, digits, '.', '_' and '-')", hint=f"fix it in {board.source}")
    return value


def _export_flags(board: Board, opt: str) -> list[str]:
    from aiot.target.firmware import COMMON_CFLAGS

    # -Werror stays in our CI; a user's (newer) compiler may warn about new things and must
    # not fail the build for it.
    return [*board.cpu_flags(), opt, *(f for f in COMMON_CFLAGS if f != "-Werror")]


def _dest(src: Path, model_dir: Path | None) -> Path:
    """Where a firmware file goes inside the exported project."""
    fw = paths.FIRMWARE
    if model_dir is not None and src.is_relative_to(model_dir):
        return Path("src/model") / src.relative_to(model_dir)
    if src.is_relative_to(fw / "include"):
        return Path("include") / src.relative_to(fw / "include")
    if src.is_relative_to(fw / "src"):
        return Path("src") / src.relative_to(fw / "src")
    if src.is_relative_to(fw / "port"):
        return Path("src/port") / src.relative_to(fw / "port")
    raise ToolkitError(f"cannot place {src} in the exported project")


def project_files(board: Board, model_dir: Path | None = None, app: str = "device") -> list[tuple[Path, Path]]:
    """(source, destination) of every file the export copies: the build's C sources plus
    the headers they can include."""
    from aiot.target.firmware import include_dirs, sources

    srcs = sources(board, model_dir, app)
    headers: set[Path] = set()
    for d in include_dirs(model_dir):
        headers.update(d.rglob("*.h"))
    for d in {s.parent for s in srcs}:  # headers next to the sources (port/stm32/stm32.h ...)
        headers.update(d.glob("*.h"))
    return [(s, _dest(s, model_dir)) for s in [*srcs, *sorted(headers)]]


def _board_header(board: Board, defs: dict[str, str]) -> str:
    lines = [f"/* Build configuration of {board.name}, from boards/{_comment(board.source.name).replace('*/', '* /')}, by aiot export "
             f"{__version__}.", "   Force-included into every source file (-include aiot_board.h). */",
             "#ifndef AIOT_BOARD_H", "#define AIOT_BOARD_H"]
    for k, v in defs.items():  # a line break in a value would put its own directives in every file
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", k) or re.search(r"[\x00-\x1f\x7f]", str(v)):
            raise ToolkitError(f"define {k!r} = {str(v)!r} is not a one-line C macro", hint=f"fix it in {board.source}")
    lines += [f"#define {k} {v}" for k, v in defs.items()]
    return "\n".join(lines + ["#endif", ""])


def project_model_dir(fmt: str, package: Path | None = None, model: Path | None = None) -> Path | None:
    """The generated-C folder a ``fmt`` (cmake / platformio) project links, from the CLI's
    ``--package`` / ``--model``; None for a project without a model.

    A project compiles the model's generated C (``PKG/c`` from ``aiot codegen``), the same
    as ``aiot build``, so a bare .tflite (``--model``, the tflm route) is refused with the
    option to use rather than dropped silently."""
    if model is not None:
        model = Path(model)
        pkg = model.parent
        in_package = model.name == "model.tflite"
        ready = in_package and (pkg / "c" / "model.c").is_file()
        if ready:
            how = f"use --package {pkg} (its generated C, {pkg / 'c'})"
        elif in_package:
            how = f"generate its C first: aiot codegen --package {pkg}; then use --package {pkg}"
        else:
            how = ("put it in a model package (aiot quantize --package PKG writes PKG/model.tflite), run aiot codegen "
                   "--package PKG, then use --package PKG")
        raise ToolkitError(f"--model is only for --format tflm; a {fmt} project compiles the model's generated C, "
                           f"not the .tflite ({model})", hint=how)
    if package is None:
        return None
    model_dir = Path(package) / "c"
    if not (model_dir / "model.c").is_file():
        raise ToolkitError(f"no generated C in {model_dir}", hint=f"run: aiot codegen --package {package}")
    return model_dir


def check_export_folder(out_dir: Path) -> None:
    """Refuse to write a project over a folder that holds something else."""
    out_dir = Path(out_dir)
    if out_dir.exists() and any(out_dir.iterdir()) and not (out_dir / BOARD_HEADER).exists() \
            and not (out_dir / "include" / BOARD_HEADER).exists():
        raise ToolkitError(f"{out_dir} exists and is not an aiot export", hint="choose an empty or new --out folder")


def export_project(board: Board, fmt: str, out_dir: Path, model_dir: Path | None = None, *, app: str = "device",
                   opt: str = "-O2", defines: tuple[str, ...] = ()) -> Path:
    """Write a standalone ``fmt`` project for ``board`` into ``out_dir``; returns ``out_dir``."""
    from aiot.target.firmware import build_defines, sources

    if fmt not in FORMATS:
        raise ToolkitError(f"unknown export format '{fmt}'", hint=f"one of: {', '.join(FORMATS)} (or tflm for the model only)")
    out_dir = Path(out_dir)
    check_export_folder(out_dir)
    if fmt == "platformio":
        pio_board, platform = _pio_ids(board)  # fail before writing anything

    files = project_files(board, model_dir, app)
    for src, rel in files:
        dst = out_dir / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    defs = build_defines(board, model_dir, defines)
    (out_dir / "include" / BOARD_HEADER).write_text(_board_header(board, defs))
    (out_dir / "link.ld").write_text(board.linker_script())
    c_sources = [str(_dest(s, model_dir)) for s in sources(board, model_dir, app)]
    inc = ["include", "src"] + (["src/model"] if model_dir else [])
    if fmt == "cmake":
        _write_cmake(board, out_dir, c_sources, inc, opt)
    else:
        _write_platformio(board, out_dir, inc, opt, pio_board, platform)
    (out_dir / "README.md").write_text(_readme(board, fmt, model_dir))
    return out_dir


# --- CMake --------------------------------------------------------------------------------

_TOOLCHAIN = """\
# arm-none-eabi-gcc for bare-metal Cortex-M (generated by aiot export).
# Use: cmake -B build -DCMAKE_TOOLCHAIN_FILE=cmake/arm-none-eabi.cmake
# A toolchain outside PATH: add -DARM_TOOLCHAIN_DIR=/opt/gcc-arm/bin
set(CMAKE_SYSTEM_NAME Generic)
set(CMAKE_SYSTEM_PROCESSOR arm)
# The compiler checks cannot link a program before our linker script exists.
set(CMAKE_TRY_COMPILE_TARGET_TYPE STATIC_LIBRARY)
set(ARM_TOOLCHAIN_DIR "" CACHE PATH "Directory of arm-none-eabi-gcc (empty: search PATH)")
if(ARM_TOOLCHAIN_DIR)
  set(_prefix "${ARM_TOOLCHAIN_DIR}/arm-none-eabi-")
else()
  set(_prefix "arm-none-eabi-")
endif()
set(CMAKE_C_COMPILER "${_prefix}gcc")
set(CMAKE_ASM_COMPILER "${_prefix}gcc")
set(CMAKE_OBJCOPY "${_prefix}objcopy" CACHE FILEPATH "objcopy")
set(CMAKE_SIZE "${_prefix}size" CACHE FILEPATH "size")
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
"""


def _cmake_list(items: list[str], indent: str = "  ") -> str:
    return "\n".join(f"{indent}{i}" for i in items)


def _write_cmake(board: Board, out: Path, c_sources: list[str], inc: list[str], opt: str) -> None:
    from aiot.target.firmware import LINK_FLAGS

    (out / "cmake").mkdir(exist_ok=True)
    (out / "cmake" / "arm-none-eabi.cmake").write_text(_TOOLCHAIN)
    cpu = board.cpu_flags()
    text = f"""\
# Firmware for {board.name} ({_comment(board.description)}), generated by aiot export {__version__}.
# Standalone: needs CMake >= 3.16 and arm-none-eabi-gcc with newlib, nothing else.
#   cmake -B build && cmake --build build      -> build/firmware.elf, .bin, .hex
cmake_minimum_required(VERSION 3.16)
if(NOT CMAKE_TOOLCHAIN_FILE)
  set(CMAKE_TOOLCHAIN_FILE "${{CMAKE_CURRENT_SOURCE_DIR}}/cmake/arm-none-eabi.cmake")
endif()
project(aiot_firmware C)

set(AIOT_CPU_FLAGS
{_cmake_list(cpu)}
)
add_executable(firmware.elf
{_cmake_list(c_sources)}
)
target_include_directories(firmware.elf PRIVATE
{_cmake_list(inc)}
)
target_compile_options(firmware.elf PRIVATE
  ${{AIOT_CPU_FLAGS}}
{_cmake_list([f for f in _export_flags(board, opt) if f not in cpu])}
  -include "${{CMAKE_CURRENT_SOURCE_DIR}}/include/{BOARD_HEADER}"
)
target_link_options(firmware.elf PRIVATE
  ${{AIOT_CPU_FLAGS}}
  {opt}
{_cmake_list(LINK_FLAGS)}
  "-T${{CMAKE_CURRENT_SOURCE_DIR}}/link.ld"
  "-Wl,-Map=${{CMAKE_CURRENT_BINARY_DIR}}/firmware.map"
)
target_link_libraries(firmware.elf PRIVATE m)
set_target_properties(firmware.elf PROPERTIES LINK_DEPENDS "${{CMAKE_CURRENT_SOURCE_DIR}}/link.ld")
add_custom_command(TARGET firmware.elf POST_BUILD
  COMMAND ${{CMAKE_OBJCOPY}} -O binary firmware.elf firmware.bin
  COMMAND ${{CMAKE_OBJCOPY}} -O ihex firmware.elf firmware.hex
  COMMAND ${{CMAKE_SIZE}} firmware.elf
  WORKING_DIRECTORY "${{CMAKE_CURRENT_BINARY_DIR}}"
  BYPRODUCTS firmware.bin firmware.hex
)
"""
    (out / "CMakeLists.txt").write_text(text)


# --- PlatformIO -------------------------------------------------------------------------------


def _pio_ids(board: Board) -> tuple[str, str]:
    table = board.extra.get("flash", {}) if isinstance(board.extra.get("flash"), dict) else {}
    pio_board = table.get("platformio_board")
    if not pio_board:
        known = [b.name for b in _boards_with_pio()]
        raise ToolkitError(
            f"board {board.name} has no PlatformIO board id (flash.platformio_board in {board.source.name})",
            hint=f"PlatformIO projects exist for: {', '.join(known) or 'none'}; "
                 f"for any board use: aiot export --board {board.name} --format cmake")
    platform = table.get("platformio_platform")
    if not platform:
        p = _PIO_PLATFORM.get(board.family)
        if isinstance(p, dict):
            series = str(board.extra.get(board.family, {}).get("series", "")).lower()
            p = p.get(series)
        if not p:
            raise ToolkitError(f"no PlatformIO platform known for family {board.family}",
                               hint=f"set flash.platformio_platform in {board.source.name}")
        platform = p
    return _pio_id(board, "platformio_board", str(pio_board)), _pio_id(board, "platformio_platform", str(platform))


def _boards_with_pio() -> list[Board]:
    from aiot.target.boards import list_boards

    return [b for b in list_boards() if isinstance(b.extra.get("flash"), dict)
            and b.extra["flash"].get("platformio_board")]


def _write_platformio(board: Board, out: Path, inc: list[str], opt: str, pio_board: str, platform: str) -> None:
    from aiot.target.firmware import LINK_FLAGS

    cpu = board.cpu_flags()
    cflags = [f for f in _export_flags(board, opt) if f != "-mthumb" and not f.startswith("-mcpu")]
    link = [f for f in cpu if not f.startswith("-mcpu") and f != "-mthumb"] + [opt, *LINK_FLAGS]
    (out / "extra_script.py").write_text(f"""\
# PlatformIO pre-script (generated by aiot export): the link flags this bare-metal project
# needs on top of the platform's defaults (FPU ABI, our startup instead of crt0, newlib-nano).
Import("env")  # noqa: F821 (provided by PlatformIO)

env.Append(  # noqa: F821
    LINKFLAGS={link!r},
    LIBS=["m"],
)
""")
    build_flags = [*cflags, *(f"-I{d}" for d in inc if d != "include"), f"-include {BOARD_HEADER}"]
    upload = _PIO_UPLOAD.get(board.family)
    lines = [
        f"; Firmware for {board.name} ({_comment(board.description)}), generated by aiot export {__version__}.",
        "; Standalone: pio run (build), pio run -t upload (flash), pio device monitor (console).",
        "; No framework: the project brings its own startup, linker script and drivers.",
        "",
        "[platformio]",
        f"default_envs = {board.name}",
        "src_dir = src",
        "include_dir = include",
        "",
        f"[env:{board.name}]",
        f"platform = {platform}",
        f"board = {pio_board}",
        "board_build.ldscript = link.ld",
        "build_unflags = -Os",
        "build_flags =",
        *(f"    {f}" for f in build_flags),
        "extra_scripts = pre:extra_script.py",
        f"monitor_speed = {board.baud}",
    ]
    if upload:
        lines.append(f"upload_protocol = {upload}")
    (out / "platformio.ini").write_text("\n".join(lines) + "\n")


def _readme(board: Board, fmt: str, model_dir: Path | None) -> str:
    how = ("cmake -B build && cmake --build build\n"
           "# -> build/firmware.elf, firmware.bin, firmware.hex\n" if fmt == "cmake"
           else "pio run                 # build\npio run -t upload       # flash over the on-board debugger\n"
                "pio device monitor      # serial console\n")
    model = f"the generated model from {model_dir}" if model_dir else "no model (protocol + monitor only)"
    return (f"# aiot firmware for {board.name}\n\n{_comment(board.description)}. Exported by `aiot export` "
            f"{__version__} with {model}.\nThe same sources and flags as `aiot build --board {board.name}`; "
            "builds without the toolkit.\n\n```sh\n" + how + "```\n\n"
            "Files: `src/` firmware (port, app, engine, model), `include/` public headers and the "
            f"board's defines (`{BOARD_HEADER}`), `link.ld` the board's linker script.\n")


# --- TFLite Micro ------------------------------------------------------------------------------

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def export_tflm(tflite: bytes, out_dir: Path, name: str = "model", source: str = "") -> tuple[Path, Path]:
    """Write ``<name>_data.h/.cc`` holding the flatbuffer as ``g_<name>_data`` (16-byte
    aligned: TFLM reads tensors in place and its flatbuffer verifier checks alignment)."""
    if not _IDENT.match(name):
        raise ToolkitError(f"'{name}' is not a valid C identifier", hint="use letters, digits and _, e.g. pump_model")
    # The same structural check as `aiot codegen` and `aiot bench` (identifier, then every
    # table, vector and buffer in bounds), so a truncated or corrupt file is refused here
    # too instead of being written out as a C array TFLM would reject on the device.
    # Only the structure: TFLM supports operators the generated engine does not.
    from aiot.model.tflite import parse

    parse(bytes(tflite), source or "the model")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sym, guard = f"g_{name}_data", f"{name.upper()}_DATA_H_"
    digest = hashlib.sha256(tflite).hexdigest()
    head = (f"// {name}: TensorFlow Lite flatbuffer as a C array, generated by aiot {__version__}"
            f"{' from ' + source if source else ''}.\n// {len(tflite)} bytes, sha256 {digest}.\n")
    h = out_dir / f"{name}_data.h"
    cc = out_dir / f"{name}_data.cc"
    h.write_text(head + f"""// Use: const tflite::Model* model = tflite::GetModel({sym});
#ifndef {guard}
#define {guard}

extern const unsigned char {sym}[];
extern const unsigned int {sym}_len;

#endif  // {guard}
""")
    rows = [", ".join(f"0x{b:02x}" for b in tflite[i:i + 12]) for i in range(0, len(tflite), 12)]
    cc.write_text(head + f"""#include "{h.name}"

// 16-byte alignment: TFLM maps tensors straight out of this buffer.
alignas(16) const unsigned char {sym}[] = {{
""" + ",\n".join(f"    {r}" for r in rows) + f"""
}};
const unsigned int {sym}_len = {len(tflite)};
""")
    return h, cc
