"""`aiot scenarios`: labelled synthetic machine streams and the device-monitor evaluation."""

from __future__ import annotations

from pathlib import Path

import click

from aiot.commands import SEED, Command, FloatRange, OutPath, json_option, renamed, write_json, wrote


@click.group("scenarios")
def command() -> None:
    """Synthetic multi-sensor streams with faults and nuisances, and the suite that
    checks the on-device monitor against them (vs a static-threshold detector).

    \b
    Examples:
      aiot scenarios generate --out build/scenarios --count 20
      aiot scenarios evaluate --strict --out build/scenarios
    """


@command.command("generate", cls=Command)
@click.option("--out", "out_dir", type=OutPath(), required=True,
              help="Directory for <name>.csv and <name>.labels.json files.")
@click.option("--seed", type=SEED, default=None, help="First seed (default: the evaluation suite's).")
@click.option("--count", type=click.IntRange(1, 1000), default=20, show_default=True,
              help="How many scenarios (one CSV and one labels file each).")
@click.option("--hours", type=FloatRange(12, 24 * 14), default=24.0, show_default=True,
              help="Length of each scenario (12 h to 2 weeks).")
def generate(out_dir: Path, seed: int | None, count: int, hours: float) -> None:
    """Write COUNT labelled scenarios (the evaluation suite when --seed is not given).

    \b
    Example:
      aiot scenarios generate --out build/scenarios --count 20 --hours 24
    """
    from aiot.data import scenarios as sc
    from aiot.progress import Bar

    from aiot.outputs import output_folder

    streams = sc.suite(count, sc.SUITE_SEED if seed is None else seed, hours=hours)
    # the suite appears whole: an evaluation never reads a half-written one
    with output_folder(out_dir, "aiot scenarios generate") as run, Bar(len(streams), "scenarios") as bar:
        for s in streams:
            sc.write_csv(s, run.folder)
            bar.update()
    wrote(out_dir, f"{len(streams)} scenarios; columns: timestamp_ms, {', '.join(sc.CHANNELS)}, incident, nuisance")


@command.command("evaluate", cls=Command)
@click.option("--count", type=click.IntRange(1, 1000), default=20, show_default=True,
              help="How many scenarios of the suite to run.")
@click.option("--seed", type=SEED, default=None, help="First seed (default: the fixed suite).")
@click.option("--out", "out_dir", type=OutPath(), default=None,
              help="Also write scenario_report.json to this folder [default: none written; the report is printed].")
@click.option("--precision", "model", type=click.Choice(["int8", "float"]), default="int8", show_default=True,
              help="int8: the fleet model as the device runs it (generated C engine); float: the same "
              "model in float from Python (no TensorFlow needed).")
@renamed("--model", "--precision", "model", type=click.Choice(["int8", "float"]))
@click.option("--qemu", "qemu", type=click.IntRange(0, 1000), default=0, show_default=True,
              help="Also run the first N scenarios in QEMU and compare the states with the host build.")
@click.option("--board", "-b", default="mps2-an386", show_default=True,
              help="Board emulated for --qemu (see `aiot boards`).")
@click.option("--data", "data_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Evaluate the scenario CSVs in this folder (from `generate`, maybe edited) instead of the suite.")
@json_option("the report (- prints it instead of the table)")
@click.option("--strict", is_flag=True, help="Exit 1 unless every fault is detected, no false alert is "
              "raised and every gap longer than a window is reported as NO_DATA.")
def evaluate(count: int, seed: int | None, out_dir: Path | None, model: str, qemu: int, board: str,
             data_dir: Path | None, json_out: str | None, strict: bool) -> None:
    """Run the seeded suite through the host build of the device monitor, side by side
    with a static-threshold detector; optionally check QEMU gives the same states.

    \b
    Examples:
      aiot scenarios evaluate --count 20 --strict          # the acceptance run
      aiot scenarios evaluate --qemu 1                     # + firmware in QEMU, same states
      aiot scenarios evaluate --data build/scenarios --precision float --json -
    """
    from aiot.evaluate import scenarios as ev
    from aiot.data import scenarios as sc
    from aiot.progress import Bar

    streams = ev.load_scenarios(data_dir) if data_dir is not None else None
    n = len(streams) if streams is not None else count
    with Bar(n, "scenarios") as bar:
        report = ev.run_suite(count, sc.SUITE_SEED if seed is None else seed, progress=bar.update,
                              model=model, qemu=min(qemu, n), board=board, scenarios=streams)
    if out_dir is not None:
        from aiot.outputs import output_folder

        # added beside what is there (the suite `generate` wrote into the same folder stays)
        with output_folder(out_dir, "aiot scenarios evaluate", adds=True) as run:
            ev.write_report(report, run.folder)
        wrote(out_dir / "scenario_report.json")
    write_json(json_out, report)
    if json_out != "-":
        click.echo(ev.format_report(report))
    failures = ev.acceptance_failures(report)
    if qemu and not report["qemu"]["all_identical"]:
        failures.append(f"{report['qemu']['device']} states differ from the host build")
    if failures:
        click.secho("acceptance: FAIL - " + "; ".join(failures), fg="red", err=True)
        if strict:
            raise SystemExit(1)
    else:
        click.secho("acceptance: PASS", fg="green", err=True)
