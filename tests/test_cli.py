"""The CLI surface: every verb has --help with an example; errors exit cleanly."""

from __future__ import annotations

from click.testing import CliRunner

from aiot.cli import _verbs, main


def test_top_level_help_lists_the_pipeline_verbs():
    res = CliRunner().invoke(main, ["--help"])
    assert res.exit_code == 0
    for verb in ("demo", "train", "quantize", "codegen", "build", "run", "boards"):
        assert verb in res.output


def test_every_verb_has_help_with_an_example():
    runner = CliRunner()
    for verb in _verbs():
        res = runner.invoke(main, [verb, "--help"])
        assert res.exit_code == 0, (verb, res.output)
        assert "Example" in res.output, f"`aiot {verb} --help` shows no example"


def test_every_example_line_of_every_help_reads_as_typed():
    # a single backslash before a line break in a docstring joins the two lines, leaving a run
    # of blanks inside the command: `... --board mps2-an386           --out build/pump7-qemu`
    import re

    from aiot.commands import Command

    runner = CliRunner()
    groups = [[]] + [[v] for v in _verbs()]
    for g in [[v] for v in _verbs()]:
        cmd = main.get_command(None, g[0])
        if not isinstance(cmd, Command) and hasattr(cmd, "list_commands"):
            groups += [[g[0], sub] for sub in cmd.list_commands(None)]
    for args in groups:
        res = runner.invoke(main, [*args, "--help"])
        examples = [ln for ln in res.output.splitlines() if ln.strip().startswith("aiot ")]
        joined = [ln for ln in examples if re.search(r"\S {4,}--", ln.strip())]
        assert not joined, (args, joined)


def test_unknown_board_lists_known_boards_without_traceback():
    res = CliRunner().invoke(main, ["build", "--board", "mps2-an999"])
    assert res.exit_code == 2
    assert "unknown board 'mps2-an999'" in res.output
    assert "mps2-an386" in res.output
    assert "Traceback" not in res.output


def test_boards_command_lists_the_default_board():
    res = CliRunner().invoke(main, ["boards"])
    assert res.exit_code == 0
    assert "mps2-an386" in res.output and "(default)" in res.output


# --- output paths, seeds and durations are checked when the command line is parsed -------------

import errno  # noqa: E402

import pytest  # noqa: E402

#: verb arguments before the output option; the output option last (the value is appended)
OUT_OPTIONS = [
    (["train", "--data", "x.csv", "--out"], "dir"),
    (["codegen", "--package", "pkg", "--out"], "dir"),
    (["build", "--out"], "dir"),
    (["commission", "--data", "x.csv", "--out"], "dir"),
    (["demo", "--out"], "dir"),
    (["evaluate", "--data", "d", "--format", "skab", "--out"], "dir"),
    (["export", "--board", "mps2-an386", "--out"], "dir"),
    (["scenarios", "generate", "--out"], "dir"),
    (["scenarios", "evaluate", "--out"], "dir"),
    (["validate", "--out"], "dir"),
    (["tune", "normal.csv", "--save"], "dir"),
    (["tune", "--out"], "dir"),
    (["boards", "--json"], "file"),
    (["quantize", "--package", "pkg", "--json"], "file"),
    (["scenarios", "evaluate", "--json"], "file"),
    (["synth", "--out"], "file"),
    (["bench", "--json"], "file"),
]


@pytest.mark.parametrize("args,kind", OUT_OPTIONS, ids=[" ".join(a[:2]) for a, _ in OUT_OPTIONS])
def test_an_output_path_that_cannot_be_written_stops_the_verb_before_any_work(tmp_path, monkeypatch, args, kind):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "pkg").mkdir()  # inputs that must exist do (codegen --package)
    runner = CliRunner()
    # under /proc no folder can be made, even as root
    res = runner.invoke(main, [*args, "/proc/aiot-no-such/out" + (".json" if kind == "file" else "")])
    assert res.exit_code == 2, res.output
    assert isinstance(res.exception, SystemExit)  # a usage error, not a crash
    assert f"Invalid value for '{args[-1]}'" in res.output
    assert "cannot write to '/proc/aiot-no-such" in res.output
    # the wrong kind of path: a file where a folder goes, a folder where a file goes
    wrong = tmp_path / "taken"
    if kind == "dir":
        wrong.write_text("not a folder")
        expect = "is a file; give a folder"
    else:
        wrong.mkdir()
        expect = "is a folder; give the path of the file to write"
    res = runner.invoke(main, [*args, str(wrong)])
    assert res.exit_code == 2, res.output
    assert expect in res.output


def test_an_output_folder_is_probed_without_leaving_anything(tmp_path):
    from aiot.commands import OutPath

    target = tmp_path / "a" / "b"
    assert OutPath().convert(str(target), None, None) == target
    assert list(tmp_path.iterdir()) == []  # the folders made for the probe are gone again
    f = tmp_path / "c" / "report.json"
    assert OutPath("file").convert(str(f), None, None) == f
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "old.txt").write_text("x")
    assert OutPath().convert(str(tmp_path / "kept"), None, None) == tmp_path / "kept"
    assert [p.name for p in (tmp_path / "kept").iterdir()] == ["old.txt"]  # an existing folder stays as it was


@pytest.mark.parametrize("args", [
    ["synth", "--out", "x.csv", "--seed"],
    ["train", "--data", "x.csv", "--out", "o", "--seed"],
    ["demo", "--seed"],
    ["scenarios", "generate", "--out", "o", "--seed"],
    ["scenarios", "evaluate", "--seed"],
    ["validate", "--seed"],
], ids=lambda a: " ".join(a[:2]))
@pytest.mark.parametrize("seed", ["-1", str(2**32)])
def test_a_seed_outside_what_numpy_and_tensorflow_take_is_refused(tmp_path, monkeypatch, args, seed):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(main, [*args, seed])
    assert res.exit_code == 2, res.output
    assert "Invalid value for '--seed'" in res.output and "0<=x<=4294967295" in res.output


@pytest.mark.parametrize("args", [
    ["monitor", "--port", "socket://127.0.0.1:9", "--duration", "nan"],
    ["monitor", "--port", "socket://127.0.0.1:9", "--duration", "-1"],
    ["monitor", "--port", "socket://127.0.0.1:9", "--interval", "0"],
    ["monitor", "--port", "socket://127.0.0.1:9", "--interval", "inf"],
    ["validate", "--timeout", "-1"],
    ["run", "-n", "-5"],
], ids=lambda a: " ".join(a[-2:]))
def test_counts_and_durations_that_mean_nothing_are_refused(args):
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2, res.output
    assert f"Invalid value for '{args[-2]}'" in res.output


@pytest.mark.parametrize("args", [
    ["scenarios", "generate", "--out", "{tmp}/sc", "--hours", "nan"],
    ["evaluate", "--data", "{tmp}", "--out", "{tmp}/o", "--train-fraction", "nan"],
    ["tune", "{tmp}/normal.csv", "--far-budget", "NaN"],
], ids=lambda a: " ".join(a[:1] + a[-2:]))
def test_a_nan_is_no_number_in_a_range(tmp_path, args):
    """click's FloatRange lets 'nan' through (no bound compares false with it): --hours nan
    and --train-fraction nan ended in a traceback (cannot convert float NaN to integer)."""
    (tmp_path / "normal.csv").write_text("timestamp,x\n0,1\n1,2\n")
    res = CliRunner().invoke(main, [a.replace("{tmp}", str(tmp_path)) for a in args])
    assert res.exit_code == 2, res.output
    assert f"Invalid value for '{args[-2]}': {args[-1]} is not a number in the range" in res.output


def test_a_file_system_error_the_verb_did_not_foresee_is_one_line_not_a_traceback(monkeypatch):
    import aiot.target.boards

    def broken():
        raise PermissionError(errno.EACCES, "Permission denied", "/srv/boards/x.toml")

    monkeypatch.setattr(aiot.target.boards, "list_boards", broken)
    res = CliRunner().invoke(main, ["boards"])
    assert res.exit_code == 2
    assert "error: /srv/boards/x.toml: Permission denied" in res.output
    assert "hint:" in res.output


def test_other_os_errors_keep_their_traceback(monkeypatch):
    import aiot.target.boards

    def broken():
        raise OSError("no path involved")  # a bug, not a bad path: do not hide it

    monkeypatch.setattr(aiot.target.boards, "list_boards", broken)
    res = CliRunner().invoke(main, ["boards"])
    assert isinstance(res.exception, OSError)


@pytest.mark.parametrize("hidden", ["100000000", "16,0", "-4"])
def test_layer_sizes_no_microcontroller_could_hold_are_refused_before_loading_data(tmp_path, hidden):
    res = CliRunner().invoke(main, ["train", "--data", str(tmp_path / "absent.csv"), "--out", str(tmp_path / "p"),
                                    "--hidden", hidden])
    assert res.exit_code == 2, res.output
    assert "Invalid value for --hidden" in res.output and "1..1024 units" in res.output


@pytest.mark.parametrize("verb", ["run", "validate"])
def test_run_and_validate_on_real_hardware_over_qemu_stop_before_building(tmp_path, monkeypatch, verb):
    from pathlib import Path

    import aiot.target.firmware

    def no_build(*a, **k):
        raise AssertionError("built firmware for a board QEMU cannot run")

    monkeypatch.setattr(aiot.target.firmware, "build", no_build)
    model = tmp_path / "m"
    model.mkdir()
    fixture = Path(__file__).resolve().parents[1] / "hil_tests" / "fixtures" / "ae24" / "model.tflite"
    (model / "model.tflite").write_bytes(fixture.read_bytes())
    args = ["--board", "nucleo-f446re"] + (["--package", str(model)] if verb == "run" else ["-m", str(model)])
    res = CliRunner().invoke(main, [verb, *args])
    assert res.exit_code == 2, res.output
    assert "nucleo-f446re is real hardware; QEMU cannot run it" in res.output


@pytest.mark.parametrize("channels", ["", ",", " , "])
def test_train_with_a_channel_list_naming_nothing_stops_instead_of_using_every_sensor(tmp_path, channels):
    res = CliRunner().invoke(main, ["train", "--data", str(tmp_path / "x.csv"), "--out", str(tmp_path / "p"),
                                    "--channels", channels])
    assert res.exit_code == 2, res.output
    assert "no channels requested" in res.output


@pytest.mark.parametrize("args, kind", [
    (["build", "--package"], "missing"), (["build", "--model-c"], "missing"),
    (["codegen", "--package"], "missing"), (["codegen", "--model"], "missing"),
    (["export", "--format", "tflm", "--out", "o", "--package"], "missing"),
    (["export", "--format", "tflm", "--out", "o", "--model"], "missing"),
    (["codegen", "--out", "o", "--model"], "folder"), (["build", "--package"], "file"),
], ids=lambda a: " ".join(a) if isinstance(a, list) else a)
def test_model_inputs_that_are_missing_or_the_wrong_kind_of_path_are_named_as_such(tmp_path, monkeypatch, args, kind):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afolder").mkdir()
    (tmp_path / "afile").write_text("x")
    value = {"missing": "nope", "folder": "afolder", "file": "afile"}[kind]
    res = CliRunner().invoke(main, [*args, value])
    assert res.exit_code == 2, res.output
    says = {"missing": "does not exist", "folder": "is a directory", "file": "is a file"}[kind]
    assert f"Invalid value for '{args[-1]}'" in res.output and says in res.output
