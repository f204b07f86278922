"""The CLI surface: every verb has --help with an example; errors exit cleanly."""

from __future__ import annotations

from click.testing import CliRunner

from toolkit.cli import _verbs, main


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
