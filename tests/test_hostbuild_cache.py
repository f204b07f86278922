"""Host builds reuse each source's object (aiot.target.hostbuild): a library that differs
from a built one only in its model compiles only that file, and a reused object is never
one compiled against other headers than the build would read."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from aiot.paths import FIRMWARE
from aiot.target import hostbuild

ENGINE_FILE = FIRMWARE / "src" / "engine" / "quant.c"


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("AIOT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def compiled(monkeypatch) -> list[str]:
    """The sources gcc compiles (-c), in order."""
    seen: list[str] = []
    real = hostbuild._gcc

    def gcc(args, name):
        if "-c" in args:
            seen.append(Path(args[args.index("-c") + 1]).name)
        return real(args, name)

    monkeypatch.setattr(hostbuild, "_gcc", gcc)
    return seen


def _value(so: Path) -> int:
    return hostbuild.load(so).value()


def _model(folder: Path, value: int) -> Path:
    folder.mkdir(parents=True)
    (folder / "model.h").write_text(f"#define VALUE {value}\n")
    (folder / "model.c").write_text('#include "model.h"\nint value(void);\nint value(void) { return VALUE; }\n')
    return folder


def test_a_second_model_compiles_only_its_own_file(tmp_path, cache, compiled):
    a, b = _model(tmp_path / "a", 1), _model(tmp_path / "b", 2)
    so_a = hostbuild.compile_shared([a / "model.c", ENGINE_FILE], name="m", include_dirs=[a])
    assert compiled == ["model.c", "quant.c"] and _value(so_a) == 1
    so_b = hostbuild.compile_shared([b / "model.c", ENGINE_FILE], name="m", include_dirs=[b])
    assert compiled == ["model.c", "quant.c", "model.c"] and _value(so_b) == 2
    # the engine file's object is kept once; each model's is kept for the bytes of its folder
    assert sorted(p.name for p in (cache / "obj").rglob("*.o")) == ["model.o", "model.o", "quant.o"]


def test_a_model_folder_with_the_same_bytes_elsewhere_compiles_nothing_and_a_changed_byte_compiles(
        tmp_path, cache, compiled):
    # generated C is keyed by what its folder holds, not where the folder is: the same model
    # generated for another build (a pytest worker's folder, a frame-limit variant) reuses the
    # object; one byte changed in the header or the source compiles again
    a, b = _model(tmp_path / "a", 1), _model(tmp_path / "b", 1)
    assert _value(hostbuild.compile_shared([a / "model.c", ENGINE_FILE], name="m", include_dirs=[a])) == 1
    assert _value(hostbuild.compile_shared([b / "model.c", ENGINE_FILE], name="m", include_dirs=[b])) == 1
    assert compiled == ["model.c", "quant.c"]
    (b / "model.h").write_text("#define VALUE 3\n")  # one byte of the header
    assert _value(hostbuild.compile_shared([b / "model.c", ENGINE_FILE], name="m", include_dirs=[b])) == 3
    assert compiled == ["model.c", "quant.c", "model.c"]
    (b / "model.c").write_text((b / "model.c").read_text().replace("VALUE;", "VALUE+1;"))  # ... of the source
    assert _value(hostbuild.compile_shared([b / "model.c", ENGINE_FILE], name="m", include_dirs=[b])) == 4
    assert compiled == ["model.c", "quant.c", "model.c", "model.c"]
    # the first folder's object is still the one for its bytes
    assert _value(hostbuild.compile_shared([a / "model.c", ENGINE_FILE], name="m2", include_dirs=[a])) == 1
    assert len(compiled) == 4


def test_a_compile_killed_half_way_leaves_nothing_a_later_build_uses(tmp_path, cache, compiled, monkeypatch):
    # a process killed while the compiler wrote the object (here: half an object, then the
    # process stops as SIGKILL would stop it) leaves only its private folder, never an entry
    a = _model(tmp_path / "a", 5)
    real = hostbuild._gcc

    def killed(args, name):
        if "-c" in args:
            obj = Path(args[args.index("-o") + 1])
            obj.write_bytes(b"\x7fELF" + b"\0" * 12)  # a truncated object
            raise SystemExit("killed")
        return real(args, name)

    monkeypatch.setattr(hostbuild, "_gcc", killed)
    with pytest.raises(SystemExit):
        hostbuild.compile_shared([a / "model.c"], name="m", include_dirs=[a])
    monkeypatch.setattr(hostbuild, "_gcc", real)
    assert not list((cache / "obj").glob("*/*/v-*"))  # no entry, only the dead process's .tmp- folder
    compiled.clear()
    seen: list[str] = []
    monkeypatch.setattr(hostbuild, "_gcc", lambda args, name: (seen.append(" ".join(args)), real(args, name))[1])
    assert _value(hostbuild.compile_shared([a / "model.c"], name="m", include_dirs=[a])) == 5
    assert sum(" -c " in f" {c} " for c in seen) == 1  # compiled afresh, not taken from the dead folder


def test_a_source_reading_a_header_of_the_callers_folder_is_compiled_for_each_folder(tmp_path, cache, compiled):
    # one source, a model.h found on the include path: another folder is another object
    src = tmp_path / "src" / "use.c"
    src.parent.mkdir()
    src.write_text('#include "model.h"\nint value(void);\nint value(void) { return VALUE; }\n')
    a, b = _model(tmp_path / "a", 1), _model(tmp_path / "b", 2)
    assert _value(hostbuild.compile_shared([src], name="u", include_dirs=[a])) == 1
    assert _value(hostbuild.compile_shared([src], name="u", include_dirs=[b])) == 2
    assert compiled == ["use.c", "use.c"]


def test_an_object_is_compiled_again_when_a_header_it_read_changed(tmp_path, cache, compiled):
    src = tmp_path / "s" / "x.c"
    src.parent.mkdir()
    src.write_text('#include "x.h"\nint value(void);\nint value(void) { return VALUE; }\n')
    (src.parent / "x.h").write_text("#define VALUE 1\n")
    assert _value(hostbuild.compile_shared([src], name="one")) == 1
    assert _value(hostbuild.compile_shared([src], name="two")) == 1 and compiled == ["x.c"]  # reused
    (src.parent / "x.h").write_text("#define VALUE 7\n")
    assert _value(hostbuild.compile_shared([src], name="three")) == 7 and compiled == ["x.c", "x.c"]
    # and back: the first object is still there, for the first header
    (src.parent / "x.h").write_text("#define VALUE 1\n")
    assert _value(hostbuild.compile_shared([src], name="four")) == 1 and compiled == ["x.c", "x.c"]


def test_a_failing_source_is_reported_and_leaves_no_entry(tmp_path, cache):
    from aiot.errors import ToolkitError

    bad = tmp_path / "bad.c"
    bad.write_text("int broken(void) { return nope; }\n")
    with pytest.raises(ToolkitError) as e:
        hostbuild.compile_shared([bad], name="bad")
    assert "host build of bad failed" in e.value.message and "nope" in e.value.message
    assert not list((cache / "obj").rglob("*.o"))


def test_processes_asking_for_the_same_object_at_once_compile_it_once(tmp_path, cache):
    # pytest workers (or an evaluation's pool) starting together need the same objects: the
    # one compiling a key holds it, the others wait and take its entry instead of compiling too
    import threading
    import time

    a = _model(tmp_path / "a", 6)
    ran: list[str] = []

    def slow_gcc(args):
        ran.append(args[args.index("-c") + 1])
        time.sleep(0.5)  # long enough for the other to arrive meanwhile
        hostbuild._gcc(args, "m")

    objs: list[Path] = []

    def build() -> None:
        objs.append(hostbuild.cached_object(hostbuild.host_compiler(), a / "model.c", hostbuild.HOST_CFLAGS,
                                            [FIRMWARE / "include", a], slow_gcc, []))

    threads = [threading.Thread(target=build) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ran) == 1 and len(objs) == 3 and len(set(objs)) == 1 and objs[0].is_file()


def test_a_killed_compiling_process_does_not_hold_the_others_up(tmp_path, cache):
    # the key's lock goes with the process holding it: a compile killed half way frees it
    import signal
    import subprocess
    import sys
    import time

    a = _model(tmp_path / "a", 7)
    args = (hostbuild.host_compiler(), a / "model.c", hostbuild.HOST_CFLAGS, [FIRMWARE / "include", a])
    first = hostbuild.cached_object(*args, lambda c: hostbuild._gcc(c, "m"), [])
    key = first.parent.parent
    shutil.rmtree(first.parent)  # the entry gone: the next call compiles again, under the lock
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time\n"
                               f"f = open({str(key / '.lock')!r}, 'a')\n"
                               "fcntl.flock(f, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(60)\n"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        started = time.monotonic()
        holder.send_signal(signal.SIGKILL)
        again = hostbuild.cached_object(*args, lambda c: hostbuild._gcc(c, "m"), [])
        assert again.is_file() and time.monotonic() - started < 10
    finally:
        holder.kill()
        holder.wait()


def test_make_dependency_rules_are_read_with_continuations_and_spaces(tmp_path):
    rule = tmp_path / "x.d"
    rule.write_text("/o/x.o: /s/x.c /inc/a.h \\\n /my\\ dir/b.h\n")
    assert hostbuild._make_deps(rule) == [Path("/s/x.c"), Path("/inc/a.h"), Path("/my dir/b.h")]


def test_an_object_whose_dependencies_are_unknown_is_not_kept(tmp_path, cache, monkeypatch):
    # a compiler (or a stand-in for one) that writes no -MF list: what it read is unknown
    real = hostbuild._gcc

    def gcc(args, name):
        real(args, name)
        if "-MF" in args:
            Path(args[args.index("-MF") + 1]).unlink()

    monkeypatch.setattr(hostbuild, "_gcc", gcc)
    so = hostbuild.compile_shared([_model(tmp_path / "a", 3) / "model.c", ENGINE_FILE], name="m",
                                  include_dirs=[tmp_path / "a"])
    assert _value(so) == 3
    assert not list((cache / "obj").rglob("*.o"))


def test_without_a_writable_cache_the_build_still_works(tmp_path, monkeypatch):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    monkeypatch.setenv("AIOT_CACHE_DIR", str(blocked / "cache"))  # cannot be made
    so = hostbuild.compile_shared([_model(tmp_path / "a", 4) / "model.c", ENGINE_FILE], name="m",
                                  include_dirs=[tmp_path / "a"], out_dir=tmp_path / "out")
    assert _value(so) == 4


def _reader(tmp_path: Path, body: str) -> Path:
    src = tmp_path / "r" / "reads.c"
    src.parent.mkdir(exist_ok=True)
    src.write_text(f"int value(void);\n{body}\n")
    return src


def test_a_define_no_file_reads_does_not_compile_an_object_again(tmp_path, cache, compiled):
    # a build-specific value (a release key, a device id) compiles only the files that read it
    src = _reader(tmp_path, "int value(void) { return VALUE_D; }")
    assert _value(hostbuild.compile_shared([src, ENGINE_FILE], name="a", defines=["VALUE_D=1", "UNREAD_D=1"])) == 1
    assert _value(hostbuild.compile_shared([src, ENGINE_FILE], name="b", defines=["VALUE_D=1", "UNREAD_D=2"])) == 1
    assert _value(hostbuild.compile_shared([src, ENGINE_FILE], name="c", defines=["VALUE_D=1"])) == 1
    assert compiled == ["reads.c", "quant.c"]
    assert _value(hostbuild.compile_shared([src, ENGINE_FILE], name="d", defines=["VALUE_D=5", "UNREAD_D=2"])) == 5
    assert compiled == ["reads.c", "quant.c", "reads.c"]  # the engine file reads neither


def test_a_define_a_file_tests_or_reaches_through_another_counts(tmp_path, cache, compiled):
    src = _reader(tmp_path, "#ifdef FLAG_D\nint value(void) { return 2; }\n#else\nint value(void) { return VIA_D; }\n#endif")
    assert _value(hostbuild.compile_shared([src], name="a", defines=["VIA_D=OTHER_D", "OTHER_D=3"])) == 3
    assert _value(hostbuild.compile_shared([src], name="b", defines=["VIA_D=OTHER_D", "OTHER_D=4"])) == 4  # through VIA_D
    assert _value(hostbuild.compile_shared([src], name="c", defines=["VIA_D=OTHER_D", "OTHER_D=4", "FLAG_D"])) == 2
    assert _value(hostbuild.compile_shared([src], name="d", defines=["VIA_D=OTHER_D", "OTHER_D=3"])) == 3
    assert compiled == ["reads.c"] * 3  # the last is the first build's object


def test_a_file_pasting_tokens_counts_every_define(tmp_path, cache, compiled):
    # a name made by ## never appears whole in the text: every define then counts
    src = _reader(tmp_path, "#define CAT(a, b) a##b\nint value(void) { return CAT(PASTED, _D); }")
    assert _value(hostbuild.compile_shared([src], name="a", defines=["PASTED_D=6"])) == 6
    assert _value(hostbuild.compile_shared([src], name="b", defines=["PASTED_D=8"])) == 8
    assert compiled == ["reads.c", "reads.c"]


def test_a_file_pasting_tokens_compiles_again_only_for_a_define_its_tokens_can_form(tmp_path, cache, compiled):
    # a pasted name is a run of tokens of the text (here PASTED + _D, or VIA + _D through a
    # define's value): a define no run of them spells (a build's key, a device id, a frame
    # limit) cannot change what the compiler makes of the file
    src = _reader(tmp_path, "#define CAT(a, b) a##b\n#define XCAT(a, b) CAT(a, b)\n"
                            "int value(void) { return CAT(PASTED, _D) + XCAT(PREFIX_D, _D); }")
    assert _value(hostbuild.compile_shared([src], name="a", defines=["PASTED_D=6", "PREFIX_D=VIA", "VIA_D=1",
                                                                      "UNRELATED_D=1"])) == 7
    assert _value(hostbuild.compile_shared([src], name="b", defines=["PASTED_D=6", "PREFIX_D=VIA", "VIA_D=1",
                                                                      "UNRELATED_D=2", "PASTE=3"])) == 7
    assert compiled == ["reads.c"]  # UNRELATED_D and PASTE: no run of the file's tokens spells them
    assert _value(hostbuild.compile_shared([src], name="c", defines=["PASTED_D=6", "PREFIX_D=VIA", "VIA_D=2"])) == 8
    assert compiled == ["reads.c", "reads.c"]  # VIA_D: formed from PREFIX_D's value


def test_sources_reading_headers_unpacked_in_the_cache_are_kept(tmp_path, cache, compiled):
    # third-party C unpacked under the cache (the update service's crypto): a fixed,
    # versioned folder, so its objects are reused like the firmware's own
    vendor = cache / "crypto" / "lib-1.0"
    vendor.mkdir(parents=True)
    (vendor / "lib.h").write_text("#define LIB_VALUE 9\n")
    (vendor / "lib.c").write_text('#include "lib.h"\nint value(void);\nint value(void) { return LIB_VALUE; }\n')
    assert _value(hostbuild.compile_shared([vendor / "lib.c"], name="a", include_dirs=[vendor])) == 9
    assert _value(hostbuild.compile_shared([vendor / "lib.c"], name="b", include_dirs=[vendor])) == 9
    assert compiled == ["lib.c"]
    (vendor / "lib.h").write_text("#define LIB_VALUE 10\n")  # still checked by what was read
    assert _value(hostbuild.compile_shared([vendor / "lib.c"], name="c", include_dirs=[vendor])) == 10
    assert compiled == ["lib.c", "lib.c"]


def test_an_upgraded_compiler_at_the_same_path_compiles_again(tmp_path, cache, compiled, monkeypatch):
    # an apt upgrade replaces gcc in place: objects of the old one must not be served to the new one
    real = shutil.which("gcc")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    version = tmp_path / "version"
    version.write_text("gcc (fake) 12.2.0\n")
    fake = bindir / "gcc"
    fake.write_text(f'#!/bin/sh\nif [ "$1" = "--version" ]; then cat "{version}"; exit 0; fi\nexec "{real}" "$@"\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bindir}:{__import__('os').environ['PATH']}")
    hostbuild.compiler_identity.cache_clear()
    a = _model(tmp_path / "a", 1)
    hostbuild.compile_shared([a / "model.c"], name="m", include_dirs=[a])
    hostbuild.compile_shared([a / "model.c"], name="m2", include_dirs=[a])
    assert compiled == ["model.c"]
    version.write_text("gcc (fake) 12.3.0\n")
    hostbuild.compiler_identity.cache_clear()  # a new process would ask it afresh
    hostbuild.compile_shared([a / "model.c"], name="m3", include_dirs=[a])
    assert compiled == ["model.c", "model.c"]
