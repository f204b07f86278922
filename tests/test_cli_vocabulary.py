"""One vocabulary of options across the `aiot` verbs, read from the commands themselves:
--data (a CSV or a folder), --package (a model package folder), --model (a .tflite file),
--out (what the verb writes), --json PATH (a path everywhere), --board/-b, -v/-q on every
verb, no positional arguments; old spellings only as hidden aliases that say so."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from aiot.cli import main
from aiot.commands import Command, JsonOut, OutPath


def _verbs() -> list[tuple[str, click.Command]]:
    ctx = click.Context(main)
    out = []

    def walk(prefix: str, cmd: click.Command) -> None:
        if isinstance(cmd, click.Group):
            for name in cmd.list_commands(ctx):
                walk(f"{prefix} {name}".strip(), cmd.get_command(ctx, name))
        else:
            out.append((prefix, cmd))

    walk("", main)
    return out


VERBS = _verbs()
IDS = [name for name, _ in VERBS]


def _option(cmd: click.Command, flag: str) -> click.Option | None:
    for p in cmd.params:
        if isinstance(p, click.Option) and flag in p.opts and not p.hidden:
            return p
    return None


def test_every_verb_is_walked():
    assert {"boards", "build", "train", "quantize", "validate", "tune", "evaluate", "scenarios evaluate",
            "scenarios generate", "commission", "demo", "run", "bench"} <= set(IDS)


@pytest.mark.parametrize("name,cmd", VERBS, ids=IDS)
def test_every_verb_has_verbose_and_quiet(name, cmd):
    assert isinstance(cmd, Command), f"aiot {name}: not an aiot.commands.Command"
    for short, long in (("-v", "--verbose"), ("-q", "--quiet")):
        opt = _option(cmd, long)
        assert opt is not None and short in opt.opts and opt.is_flag, f"aiot {name}: no {short}/{long}"


@pytest.mark.parametrize("name,cmd", VERBS, ids=IDS)
def test_no_visible_positional_argument(name, cmd):
    """Inputs are named options (--data, --package, --model), never positions."""
    visible = [p.name for p in cmd.params
               if isinstance(p, click.Argument) and p.get_usage_pieces(click.Context(cmd))]
    assert visible == [], f"aiot {name}: positional {visible}"


@pytest.mark.parametrize("name,cmd", VERBS, ids=IDS)
def test_the_shared_options_mean_the_same_everywhere(name, cmd):
    problems = []
    if (o := _option(cmd, "--json")) is not None:
        if o.is_flag or not isinstance(o.type, JsonOut):
            problems.append("--json must take a PATH (- for stdout)")
    if (o := _option(cmd, "--out")) is not None and not isinstance(o.type, OutPath):
        problems.append("--out must be an OutPath (checked writable before the work)")
    if (o := _option(cmd, "--data")) is not None and not isinstance(o.type, click.Path):
        problems.append("--data must be a path (a CSV file or a folder)")
    if (o := _option(cmd, "--package")) is not None:
        if not isinstance(o.type, click.Path) or not o.type.dir_okay or o.type.file_okay:
            problems.append("--package must be a folder path (the model package)")
    if (o := _option(cmd, "--model")) is not None:
        if isinstance(o.type, click.Choice) or ".tflite" not in (o.help or ""):
            problems.append("--model must be a .tflite file (its help says so)")
        if isinstance(o.type, click.Path) and not o.type.file_okay:
            problems.append("--model must accept a file")
    if (o := _option(cmd, "--board")) is not None:
        if "-b" not in o.opts or "aiot boards" not in (o.help or ""):
            problems.append("--board must have -b and point to `aiot boards`")
    for old in ("--save", "--json-out", "--as-json", "--csv", "--input", "--output", "-o"):
        if _option(cmd, old) is not None and old != "-o":
            problems.append(f"{old} is not in the vocabulary")
    assert problems == [], f"aiot {name}: {problems}"


@pytest.mark.parametrize("name,cmd", [(n, c) for n, c in VERBS if _option(c, "--out") is not None
                                      and not _option(c, "--out").required], ids=lambda v: v if isinstance(v, str) else "")
def test_an_optional_out_says_its_default_folder(name, cmd):
    """Where it writes without --out: a folder under ./build, the package's, or nothing."""
    help_text = _option(cmd, "--out").help or ""
    assert "default:" in help_text and any(w in help_text for w in ("build/", "PKG/", "none written")), \
        f"aiot {name} --out: {help_text!r}"


def test_a_deprecated_spelling_still_works_and_says_so():
    res = CliRunner().invoke(main, ["boards", "--json"])
    assert res.exit_code == 0, res.output
    assert "deprecated" in res.stderr and "--json -" in res.stderr
    assert '"mps2-an386"' in res.stdout or '"name": "mps2-an386"' in res.stdout


def test_json_dash_is_stdout_and_a_path_is_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["boards", "--json", "-"])
    assert res.exit_code == 0 and '"name": "mps2-an386"' in res.stdout and res.stderr == ""
    res = CliRunner().invoke(main, ["boards", "--json", "out/boards.json"])
    assert res.exit_code == 0, res.output
    assert '"name": "mps2-an386"' in (tmp_path / "out" / "boards.json").read_text()
    assert "wrote out/boards.json" in res.stdout and "mps2-an386" not in res.stdout
    res = CliRunner().invoke(main, ["boards", "-q", "--json", "b.json"])
    assert res.exit_code == 0 and res.stderr == ""  # -q: the result only


def test_old_and_new_spelling_together_is_an_error(tmp_path):
    (tmp_path / "a.csv").write_text("t,a\n0,1\n")
    res = CliRunner().invoke(main, ["tune", "--data", str(tmp_path / "a.csv"), "--save", str(tmp_path / "x"),
                                    "--out", str(tmp_path / "y")])
    assert res.exit_code == 2 and "--save is the old spelling of --out" in res.output


def test_tune_takes_data_and_the_old_positional_still_works(tmp_path, monkeypatch):
    import aiot.evaluate.tuning as tuning

    seen = {}

    def fake_tune(normal, *a, save=None, **k):
        seen.update(normal=normal, save=save)
        return 0

    monkeypatch.setattr(tuning, "tune", fake_tune)
    csv = tmp_path / "normal.csv"
    csv.write_text("t,a\n0,1\n")
    res = CliRunner().invoke(main, ["tune", "--data", str(csv), "--out", str(tmp_path / "picks")])
    assert res.exit_code == 0, res.output
    assert seen == {"normal": str(csv), "save": str(tmp_path / "picks")} and "deprecated" not in res.stderr
    res = CliRunner().invoke(main, ["tune", str(csv), "--save", str(tmp_path / "picks")])
    assert res.exit_code == 0, res.output
    assert seen == {"normal": str(csv), "save": str(tmp_path / "picks")}
    assert "NORMAL (a positional file) is deprecated, use --data" in res.stderr and "--save is deprecated, use --out" in res.stderr
    res = CliRunner().invoke(main, ["tune"])
    assert res.exit_code == 2 and "--data" in res.output


def _command_strings() -> list[tuple[str, str, str]]:
    """(file:line, verb, options text) for every `aiot VERB ...` written in the package's strings
    (error hints, help texts, next-step lines)."""
    import ast
    import re
    from pathlib import Path

    import aiot

    verbs = sorted({name.split()[0] for name in IDS} | set(IDS), key=len, reverse=True)
    pattern = re.compile(r"\baiot (" + "|".join(re.escape(v) for v in verbs) + r")\b([^`)\];\"'\n]*)")
    found = []
    for path in sorted(Path(aiot.__file__).parent.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                for m in pattern.finditer(node.value):
                    found.append((f"{path.name}:{node.lineno}", m.group(1), m.group(2)))
    return found


def test_every_command_a_hint_names_exists_with_those_options():
    """A hint that names a command the user then cannot run is worse than none: every
    `aiot VERB --opt` in the package's strings must be a verb with those options (in their
    current spelling, not a deprecated one)."""
    import re

    ctx = click.Context(main)
    by_name = dict(VERBS)
    found = _command_strings()
    assert len(found) > 30  # the scan sees the hints
    bad = []
    for where, verb, rest in found:
        cmd = by_name.get(verb)
        if cmd is None:  # a group named alone ("aiot scenarios"), or a verb of a group
            group = main.get_command(ctx, verb)
            sub = rest.split()[0] if rest.split() else ""
            cmd = by_name.get(f"{verb} {sub}")
            if cmd is None:
                assert isinstance(group, click.Group), (where, verb)
                continue
        visible = {o for p in cmd.params if isinstance(p, click.Option) and not p.hidden for o in p.opts}
        visible |= {o for p in cmd.params if isinstance(p, click.Option) and not p.hidden for o in p.secondary_opts}
        for opt in re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", rest):
            if opt not in visible | {"--help"}:
                bad.append(f"{where}: aiot {verb}{rest.rstrip()} -> {opt}")
    assert bad == [], "\n".join(bad)


def test_verbose_says_the_settings_and_quiet_says_only_the_result(tmp_path):
    csv = tmp_path / "x.csv"
    res = CliRunner().invoke(main, ["synth", "-v", "--out", str(csv), "--hours", "1.5"])
    assert res.exit_code == 0, res.output
    assert "hours=1.5" in res.stderr and "seed=0" in res.stderr  # the defaults too
    quiet = CliRunner().invoke(main, ["scenarios", "generate", "-q", "--out", str(tmp_path / "s"), "--count", "1",
                                      "--hours", "12"])
    assert quiet.exit_code == 0, quiet.output
    assert quiet.stderr == "" and "wrote" not in quiet.stdout and any((tmp_path / "s").glob("*.csv"))
    loud = CliRunner().invoke(main, ["scenarios", "generate", "--out", str(tmp_path / "s2"), "--count", "1",
                                     "--hours", "12"])
    assert "wrote " in loud.stdout and "s2" in loud.stdout


@pytest.mark.skipif(not __import__("shutil").which("arm-none-eabi-gcc"), reason="arm-none-eabi-gcc not installed")
def test_a_verb_with_no_out_writes_under_the_current_folder_and_says_where(tmp_path, monkeypatch):
    from aiot import paths

    monkeypatch.delenv("AIOT_BUILD_DIR", raising=False)  # the user's default, not the test worker's
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, ["build", "--board", "mps2-an386"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "build" / "fw" / "mps2-an386" / "firmware.elf").is_file()
    assert "wrote build/fw/mps2-an386/firmware.elf" in res.stdout
    assert not (paths.FIRMWARE / "build").exists() and not (paths.BOARDS / "build").exists()
    help_text = CliRunner().invoke(main, ["build", "--help"]).output
    assert "build/fw/BOARD under the current folder" in " ".join(help_text.split())


def test_the_deprecation_line_names_the_whole_verb(tmp_path):
    res = CliRunner().invoke(main, ["scenarios", "evaluate", "--model", "float", "--count", "1", "--out", "/proc/x"])
    assert "aiot scenarios evaluate --model is deprecated, use --precision" in res.stderr


def test_validate_takes_package_or_a_tflite_and_the_old_model_folder_still_works(tmp_path):
    from pathlib import Path

    fixture = Path(__file__).resolve().parents[1] / "hil_tests" / "fixtures" / "ae24"
    # real hardware over QEMU stops before any build: what is checked is which model was taken
    stop = "nucleo-f446re is real hardware; QEMU cannot run it"
    for args, deprecation in ((["--package", str(fixture)], False), (["--model", str(fixture / "model.tflite")], False),
                              (["-m", str(fixture)], True)):
        res = CliRunner().invoke(main, ["validate", "--board", "nucleo-f446re", *args])
        assert res.exit_code == 2 and stop in res.output, (args, res.output)
        assert ("--model PKG_FOLDER is deprecated, use --package" in res.stderr) is deprecation, (args, res.stderr)
    res = CliRunner().invoke(main, ["validate", "--board", "nucleo-f446re"])
    assert res.exit_code == 2 and "--package PKG or --model FILE.tflite" in res.output


def test_every_hint_that_sends_to_quantize_says_which_input():
    """`aiot quantize` takes a package (--package) or a Keras model (--keras): a hint that says
    only "aiot quantize" left a user with a float .tflite running a command that refused it."""
    import ast
    import re
    from pathlib import Path

    import aiot

    bad = []
    for path in sorted(Path(aiot.__file__).parent.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            hints = [k.value for k in node.keywords if k.arg == "hint"]
            if isinstance(node.func, ast.Name) and node.func.id in ("_fail", "_bad") and len(node.args) >= 3:
                hints.append(node.args[-1])  # helpers that take the hint positionally
            for h in hints:
                text = " ".join(c.value for c in ast.walk(h) if isinstance(c, ast.Constant) and isinstance(c.value, str))
                for m in re.finditer(r"aiot quantize([^`)\];\"']*)", text):
                    if "--package" not in m.group(1) and "--keras" not in m.group(1):
                        bad.append(f"{path.name}:{node.lineno}: {text}")
    assert bad == [], "\n".join(bad)
