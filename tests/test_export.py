"""`aiot export`: standalone CMake and PlatformIO projects, and the TFLite Micro C array.

The CMake project is built with cmake + arm-none-eabi-gcc alone and booted in QEMU (with a
generated model: INFO must report it); the PlatformIO project is validated offline with
`pio project config` and its sources and flags are compiled with the Debian toolchain
the way PlatformIO would (its own toolchain cannot be downloaded here)."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from aiot.testing import requires_arm, requires_qemu
from aiot.target import firmware
from aiot.target.boards import get_board
from aiot.cli import main
from aiot.errors import ToolkitError
from aiot.target.export import BOARD_HEADER, export_project, export_tflm, project_files

FIX = Path(__file__).parent / "fixtures" / "tflite"
HAVE_CMAKE = shutil.which("cmake") is not None


def _pio() -> str | None:
    venv_pio = Path(__file__).resolve().parent.parent / ".venv" / "bin" / "pio"
    return shutil.which("pio") or (str(venv_pio) if venv_pio.is_file() else None)


@pytest.fixture(scope="module")
def model_c(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from aiot.codegen import generate

    out = tmp_path_factory.mktemp("model_c")
    generate(FIX / "good_dense.tflite", out, name="dense")
    return out


# --- what gets exported --------------------------------------------------------------------------


def test_export_copies_exactly_the_build_sources(tmp_path: Path, model_c: Path) -> None:
    b = get_board("nucleo-f446re")
    out = export_project(b, "cmake", tmp_path / "p", model_c)
    srcs = firmware.sources(b, model_c)
    exported_c = sorted(p.relative_to(out) for p in out.rglob("*.c"))
    assert len(exported_c) == len(srcs)
    for s in srcs:
        # same file content under the exported tree
        rel = next(r for src, r in project_files(b, model_c) if src == s)
        assert (out / rel).read_bytes() == s.read_bytes()
    # every board define reaches the forced header, with the model (no AIOT_NO_MODEL)
    header = (out / "include" / BOARD_HEADER).read_text()
    for k, v in firmware.build_defines(b, model_c).items():
        assert f"#define {k} {v}\n" in header
    assert "AIOT_NO_MODEL" not in header
    assert (out / "link.ld").read_text() == b.linker_script()


def test_export_refuses_a_foreign_folder_and_unknown_format(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("user data")
    with pytest.raises(ToolkitError, match="is not an aiot export"):
        export_project(get_board("mps2-an386"), "cmake", tmp_path)
    with pytest.raises(ToolkitError, match="unknown export format 'make'"):
        export_project(get_board("mps2-an386"), "make", tmp_path / "x")


def test_platformio_needs_a_platformio_board(tmp_path: Path) -> None:
    with pytest.raises(ToolkitError) as ei:
        export_project(get_board("mps2-an386"), "platformio", tmp_path / "x")
    assert "no PlatformIO board id" in ei.value.message
    assert "nucleo-f446re" in ei.value.hint and "--format cmake" in ei.value.hint
    assert not (tmp_path / "x").exists()  # failed before writing anything


# --- CMake: built with cmake alone, booted in QEMU ------------------------------------------------


@requires_arm
@requires_qemu
@pytest.mark.qemu
@pytest.mark.skipif(not HAVE_CMAKE, reason="cmake not installed")
def test_cmake_project_builds_standalone_and_boots(tmp_path: Path, model_c: Path) -> None:
    from aiot.device.hil import open_device

    b = get_board("microbit")  # Armv6-M, 16 KB RAM: the tightest target must work standalone too
    proj = export_project(b, "cmake", tmp_path / "proj", model_c)
    bld = tmp_path / "bld"
    env = {"PATH": "/usr/bin:/bin"}  # no venv, no toolkit on PATH: only cmake and the toolchain
    subprocess.run(["cmake", "-S", str(proj), "-B", str(bld)], check=True, capture_output=True, env=env)
    r = subprocess.run(["cmake", "--build", str(bld)], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stdout + r.stderr
    elf = bld / "firmware.elf"
    assert (bld / "firmware.bin").is_file() and (bld / "firmware.hex").is_file()
    with open_device(board=b, elf=elf, timeout=2) as dev:
        info = dev.info()
        assert info.board == "microbit" and info.has_model and info.model_name == "dense"
        assert dev.exit(0) == 0


@requires_arm
@pytest.mark.skipif(not HAVE_CMAKE, reason="cmake not installed")
def test_cmake_project_builds_for_a_real_board(tmp_path: Path) -> None:
    proj = export_project(get_board("nucleo-g071rb"), "cmake", tmp_path / "proj")
    bld = tmp_path / "bld"
    subprocess.run(["cmake", "-S", str(proj), "-B", str(bld)], check=True, capture_output=True)
    r = subprocess.run(["cmake", "--build", str(bld)], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    out = subprocess.run(["arm-none-eabi-readelf", "-A", str(bld / "firmware.elf")], capture_output=True, text=True)
    assert "v6S-M" in out.stdout  # Armv6-M code for the Cortex-M0+


# --- PlatformIO: validated offline, compiled like PlatformIO would --------------------------------


def _pio_config(proj: Path) -> dict:
    pio = _pio()
    if not pio:
        pytest.skip("PlatformIO not installed (pip install '.[boards]')")
    r = subprocess.run([pio, "project", "config", "-d", str(proj), "--json-output"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    sections = dict(json.loads(r.stdout))
    return {name: dict(opts) for name, opts in sections.items()}


def test_platformio_project_config_is_valid(tmp_path: Path) -> None:
    proj = export_project(get_board("nrf52840-dk"), "platformio", tmp_path / "proj")
    cfg = _pio_config(proj)
    env = cfg["env:nrf52840-dk"]
    assert env["platform"] == "nordicnrf52" and env["board"] == "nrf52840_dk"
    assert env["board_build.ldscript"] == "link.ld" and env["upload_protocol"] == "jlink"
    lint = subprocess.run([_pio(), "project", "config", "--lint", "-d", str(proj)], capture_output=True, text=True)
    assert lint.returncode == 0 and "free from linting errors" in lint.stdout, lint.stdout + lint.stderr


@requires_arm
def test_platformio_project_compiles_with_debian_toolchain(tmp_path: Path) -> None:
    """Do what PlatformIO's bare-metal builder does (every .c under src_dir with the env's
    build_flags plus -mcpu/-mthumb from the board; link with the extra script's LINKFLAGS,
    the ldscript and LIBS) with the Debian arm-none-eabi-gcc."""
    b = get_board("nucleo-f446re")
    proj = export_project(b, "platformio", tmp_path / "proj")
    cfg = _pio_config(proj)["env:nucleo-f446re"]
    flags: list[str] = []
    for f in cfg["build_flags"]:
        flags += f.split()
    # The extra script's env.Append(LINKFLAGS=[...], LIBS=[...]) call, read without running it.
    call = next(n for n in ast.walk(ast.parse((proj / "extra_script.py").read_text())) if isinstance(n, ast.Call)
                and getattr(n.func, "attr", "") == "Append")
    kw = {k.arg: ast.literal_eval(k.value) for k in call.keywords}
    cpu = ["-mcpu=cortex-m4", "-mthumb"]  # from PlatformIO's nucleo_f446re board manifest
    objs = []
    for i, c in enumerate(sorted((proj / "src").rglob("*.c"))):
        o = tmp_path / f"{i}.o"
        r = subprocess.run(["arm-none-eabi-gcc", *cpu, *flags, "-Iinclude", "-Werror", "-c", str(c), "-o", str(o)],
                           cwd=proj, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        objs.append(str(o))
    elf = tmp_path / "firmware.elf"
    r = subprocess.run(["arm-none-eabi-gcc", *cpu, *kw["LINKFLAGS"], f"-T{proj / cfg['board_build.ldscript']}",
                        "-o", str(elf), *objs, *(f"-l{lib}" for lib in kw["LIBS"])], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert elf.stat().st_size > 0


def test_project_export_refuses_a_bare_tflite_and_names_the_option(tmp_path: Path, model_c: Path) -> None:
    """cmake/platformio link the generated C of a package; --model (a .tflite) was dropped
    silently, exporting a project without the model."""
    from aiot.target.export import project_model_dir

    pkg = tmp_path / "pkg"
    pkg.mkdir()
    shutil.copyfile(FIX / "good_dense.tflite", pkg / "model.tflite")
    # Not generated yet: say how to generate it, then which option takes it.
    with pytest.raises(ToolkitError, match="--model is only for --format tflm") as ei:
        project_model_dir("cmake", model=pkg / "model.tflite")
    assert f"aiot codegen --package {pkg}" in ei.value.hint and f"--package {pkg}" in ei.value.hint
    # Generated: point at --package.
    shutil.copytree(model_c, pkg / "c")
    with pytest.raises(ToolkitError, match="cmake project compiles the model's generated C") as ei:
        project_model_dir("cmake", model=pkg / "model.tflite")
    assert f"use --package {pkg}" in ei.value.hint
    # A .tflite outside a package.
    with pytest.raises(ToolkitError, match="--model is only for --format tflm") as ei:
        project_model_dir("platformio", model=FIX / "good_dense.tflite")
    assert "--package PKG" in ei.value.hint
    # --package is what links the model; no model at all is allowed.
    assert project_model_dir("cmake", package=pkg) == pkg / "c"
    assert project_model_dir("cmake") is None
    with pytest.raises(ToolkitError, match="no generated C in"):
        project_model_dir("cmake", package=tmp_path / "nopkg")


def test_cli_cmake_export_with_model_is_refused(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    shutil.copyfile(FIX / "good_dense.tflite", pkg / "model.tflite")
    r = CliRunner().invoke(main, ["export", "--format", "cmake", "--board", "mps2-an386", "--model",
                                  str(pkg / "model.tflite"), "--out", str(tmp_path / "c3")])
    assert r.exit_code == 2 and "--model is only for --format tflm" in r.output
    assert not (tmp_path / "c3" / "CMakeLists.txt").exists()


# --- TFLite Micro ----------------------------------------------------------------------------------


def test_tflm_array_is_aligned_and_byte_exact(tmp_path: Path) -> None:
    data = (FIX / "good_dense.tflite").read_bytes()
    h, cc = export_tflm(data, tmp_path, "pump_model", source="good_dense.tflite")
    text = cc.read_text()
    assert "alignas(16) const unsigned char g_pump_model_data[]" in text
    assert f"const unsigned int g_pump_model_data_len = {len(data)};" in text
    # The array body decodes back to the exact file.
    body = text[text.index("= {") + 3 : text.index("};")]
    assert bytes(int(x, 16) for x in re.findall(r"0x([0-9a-f]{2})", body)) == data
    assert "extern const unsigned char g_pump_model_data[];" in h.read_text()


@pytest.mark.skipif(shutil.which("g++") is None, reason="no host C++ compiler")
def test_tflm_array_compiles_as_cpp_and_is_16_byte_aligned(tmp_path: Path) -> None:
    data = (FIX / "good_dense.tflite").read_bytes()
    export_tflm(data, tmp_path, "m")
    (tmp_path / "main.cc").write_text(
        '#include <cstdio>\n#include <cstdint>\n#include "m_data.h"\n'
        "int main() { std::printf(\"%u %u %c%c%c%c\\n\", (unsigned)((uintptr_t)g_m_data % 16), g_m_data_len,"
        " g_m_data[4], g_m_data[5], g_m_data[6], g_m_data[7]); return 0; }\n")
    exe = tmp_path / "t"
    subprocess.run(["g++", "-std=c++11", "-Wall", "-Werror", str(tmp_path / "main.cc"), str(tmp_path / "m_data.cc"),
                    "-o", str(exe)], check=True, capture_output=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.split()
    assert out == ["0", str(len(data)), "TFL3"]


def test_tflm_errors(tmp_path: Path) -> None:
    with pytest.raises(ToolkitError, match="expected b'TFL3'"):
        export_tflm((FIX / "wrong_identifier.tflite").read_bytes(), tmp_path, "m", source="wrong_identifier.tflite")
    with pytest.raises(ToolkitError, match="not a valid C identifier"):
        export_tflm((FIX / "good_dense.tflite").read_bytes(), tmp_path, "9lives")


def test_tflm_refuses_a_truncated_model_like_codegen(tmp_path: Path) -> None:
    """A .tflite cut after 100 bytes still starts with TFL3; export must not write it out as
    a C array, and must say what codegen says about the same file."""
    trunc = tmp_path / "trunc.tflite"
    trunc.write_bytes((FIX / "good_dense.tflite").read_bytes()[:100])
    with pytest.raises(ToolkitError, match="corrupt or truncated TFLite flatbuffer"):
        export_tflm(trunc.read_bytes(), tmp_path / "api", source=trunc.name)
    assert not (tmp_path / "api" / "model_data.cc").exists()

    ex = CliRunner().invoke(main, ["export", "--format", "tflm", "--model", str(trunc), "--out", str(tmp_path / "t")])
    assert ex.exit_code == 2, ex.output
    assert "corrupt or truncated TFLite flatbuffer" in ex.output
    assert not (tmp_path / "t" / "model_data.cc").exists()
    cg = CliRunner().invoke(main, ["codegen", "--model", str(trunc), "--out", str(tmp_path / "cg")])
    assert cg.exit_code == 2
    # One checker, one message (export names the file, codegen its path).
    assert ex.output.split("trunc.tflite: ", 1)[1] == cg.output.split("trunc.tflite: ", 1)[1]
    # The shipped truncated fixture too.
    with pytest.raises(ToolkitError, match="corrupt or truncated"):
        export_tflm((FIX / "truncated.tflite").read_bytes(), tmp_path / "fx", source="truncated.tflite")


# --- CLI ----------------------------------------------------------------------------------------------


def test_cli_export(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["export", "--format", "tflm", "--model", str(FIX / "good_dense.tflite"),
                                  "--out", str(tmp_path / "t")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "t" / "model_data.cc").is_file()
    r = CliRunner().invoke(main, ["export", "--format", "cmake", "--out", str(tmp_path / "c")])
    assert r.exit_code == 2 and "needs --board" in r.output
    r = CliRunner().invoke(main, ["export", "--board", "microbit", "--format", "cmake", "--out", str(tmp_path / "c")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "c" / "CMakeLists.txt").is_file()
    (tmp_path / "nopkg").mkdir()  # a package folder without its generated C
    r = CliRunner().invoke(main, ["export", "--board", "microbit", "--format", "cmake", "--out", str(tmp_path / "d"),
                                  "--package", str(tmp_path / "nopkg")])
    assert r.exit_code == 2 and "aiot codegen --package" in r.output


def test_codegen_format_tflm(tmp_path: Path) -> None:
    """The TFLM route from `aiot codegen` (same writer as `aiot export --format tflm`)."""
    r = CliRunner().invoke(main, ["codegen", "--model", str(FIX / "good_dense.tflite"), "--out", str(tmp_path),
                                  "--format", "tflm", "--name", "good-dense"])
    assert r.exit_code == 0, r.output
    cc = (tmp_path / "good_dense_data.cc").read_text()
    assert "alignas(16) const unsigned char g_good_dense_data[]" in cc
    assert not (tmp_path / "model.c").exists()  # the engine's C is not generated on this route
    r = CliRunner().invoke(main, ["codegen", "--model", str(FIX / "wrong_identifier.tflite"), "--out",
                                  str(tmp_path / "w"), "--format", "tflm"])
    assert r.exit_code == 2 and "expected b'TFL3'" in r.output


def test_board_text_cannot_escape_its_place_in_generated_build_files(tmp_path: Path) -> None:
    """Defence in depth behind the board-file schema (tests/test_boards.py): a Board built in
    code with a hostile description still yields build files where it is only a comment."""
    import dataclasses

    hostile = 'pump")\nexecute_process(COMMAND touch pwned)\n[env:evil]\nbuild_flags = -DPWNED\r\n# '
    b = dataclasses.replace(get_board("nucleo-f446re"), description=hostile)
    cm = export_project(b, "cmake", tmp_path / "cm")
    pio = export_project(b, "platformio", tmp_path / "pio")
    for text in ((cm / "CMakeLists.txt").read_text(), (pio / "platformio.ini").read_text()):
        assert "pwned" in text  # still shown, as text
        for line in text.splitlines():
            assert not line.startswith(("execute_process", "[env:evil]", "build_flags = -DPWNED")), line
    assert "PWNED" not in (pio / "platformio.ini").read_text().split("[env:")[1].split("build_flags")[0]


def test_a_platformio_id_that_is_not_an_id_is_refused_at_export(tmp_path: Path) -> None:
    import dataclasses

    b = get_board("nucleo-f446re")
    evil = dataclasses.replace(b, extra={**b.extra, "flash": {**b.extra["flash"],
                                                               "platformio_board": "x\nextra_scripts = evil.py"}})
    with pytest.raises(ToolkitError, match="platformio_board"):
        export_project(evil, "platformio", tmp_path / "pio")
    assert not (tmp_path / "pio").exists()
