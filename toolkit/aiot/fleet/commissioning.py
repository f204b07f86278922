"""`aiot commission --fleet`: a folder of commissioning recordings, one firmware image per
installation, registered in the lifecycle registry (aiot.lifecycle.registry, what
`aiot models` reads):

    OUT/registry.json                  "images": per installation, its image and model hashes,
                                       sensors, window, flash/RAM (paths relative to OUT)
    OUT/<installation>/firmware.elf    (and .bin, commission.json, c/) as `aiot commission` writes

One task per installation (train its model, build its image) on local processes or on a
Dask cluster (``scheduler``); a failed installation is reported with why, the rest finish.
The run holds OUT's lock (aiot.outputs) throughout: a second run into it is refused."""

from __future__ import annotations

import os
from pathlib import Path

from aiot.errors import ToolkitError


def recordings(folder: Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise ToolkitError(f"{folder}: not a folder; --fleet commissions every CSV in a folder",
                           hint="give --data FOLDER (one CSV per installation), or leave --fleet out for one file")
    from aiot.data.readers import natural_key

    files = sorted((p for p in folder.iterdir() if p.suffix.lower() == ".csv" and p.is_file()),
                   key=lambda p: natural_key(p.name))
    if not files:
        raise ToolkitError(f"{folder}: no .csv files", hint="one commissioning recording (CSV) per installation")
    return files


def _commission_one(task: tuple):
    """One installation, in a worker: its doc, or an error outcome (as the evaluation's workers)."""
    from aiot.commission import commission

    data, board, out, kw = task
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # one training per worker: no TensorFlow chatter
    try:
        return commission(data, board, out, **kw)
    except ToolkitError as e:
        return ("error", e.message if e.message.startswith(str(data)) else f"{data}: {e.message}", e.hint,
                e.exit_code, True)


def _sha256(path: Path) -> str:
    from aiot.data import sha256_file

    return sha256_file(path)


def commission_fleet(folder: Path, board: str, out: Path, scheduler: str | None = None, jobs: int = 1,
                     **kw) -> dict:
    """Commission every CSV in ``folder`` into OUT/<name>/ and register each image in the
    registry OUT (as it completes); returns {"registry", "installations", "failed", ...}."""
    from aiot.fleet.dask_runner import dask_mapper, local_mapper
    from aiot.lifecycle.registry import Registry
    from aiot.outputs import OutputRun
    from aiot.progress import Bar
    from aiot.target.boards import get_board

    get_board(board)  # an unknown board fails before any training
    files = recordings(folder)
    out = Path(out)
    names = [p.stem for p in files]
    tasks = [(p, board, out / name, kw) for p, name in zip(files, names)]
    mapper = dask_mapper(scheduler, workers=jobs, name_of=lambda t: str(t[0])) if scheduler is not None \
        else local_mapper(jobs)
    done, failed = [], []
    with OutputRun(out, f"aiot commission --fleet of {folder}"):  # one fleet run at a time into the registry
        registry = Registry(out)
        outcomes = mapper(_commission_one, tasks)
        with Bar(len(tasks), "installations") as bar:
            for name, task, res in zip(names, tasks, outcomes):
                bar.update()
                if isinstance(res, tuple):
                    failed.append({"installation": name, "data": str(task[0]), "reason": res[1], "hint": res[2]})
                    continue
                elf, binf = Path(res["elf"]), Path(res["bin"])
                done.append(registry.add_image(name, {
                    "board": board, "data": str(task[0]), "data_sha256": res["data_sha256"],
                    "elf": os.path.relpath(elf, out), "elf_sha256": _sha256(elf),
                    "bin": os.path.relpath(binf, out), "bin_sha256": _sha256(binf),
                    "commission": os.path.relpath(out / name / "commission.json", out),
                    "model_sha256": res["model"]["sha256"], "channels": res["channels"], "window": res["window"],
                    "flash_bytes": res["size"]["flash_total"], "ram_bytes": res["size"]["ram_total"],
                }))
    return {"board": board, "source": str(folder), "registry": str(registry.index), "installations": done,
            "failed": failed}


def fleet_command(data: Path, board: str, out: Path, scheduler: str | None, jobs: int, **kw) -> None:
    """`aiot commission --fleet`: run, print one line per installation, exit 1 if any failed."""
    import sys

    import click

    index = commission_fleet(data, board, out, scheduler=scheduler, jobs=jobs, **kw)
    for inst in index["installations"]:
        click.echo(f"{inst['installation']:<24} {out / inst['elf']}  {inst['flash_bytes']:,} B flash / "
                   f"{inst['ram_bytes']:,} B RAM  model {inst['model_sha256'][:12]}")
    for f in index["failed"]:
        click.secho(f"{f['installation']:<24} FAILED: {f['reason']}", fg="red", err=True)
        if f["hint"]:
            click.echo(f"{'':<24} hint: {f['hint']}", err=True)
    click.echo(f"{len(index['installations'])} image(s) registered in {index['registry']}, {len(index['failed'])} "
               f"failed; aiot models list --registry {out}")
    if index["failed"]:
        sys.exit(1)
