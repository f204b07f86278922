"""`aiot models`: the local release registry (list, show, promote, rollback)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from aiot.commands import Command

_REG = click.option("--registry", type=click.Path(path_type=Path), help="Registry folder [default: build/registry].")


def _reg(registry):
    from aiot import paths
    from aiot.lifecycle.registry import Registry

    return Registry(registry or paths.build_dir() / "registry")


@click.group("models")
def command() -> None:
    """Which model releases exist, their lineage, and which device runs which.

    \b
    Examples:
      aiot models list
      aiot models show --release pump-ae-1.3.0
      aiot models promote --release pump-ae-1.3.0 --device uid:3a0021000b51363038383937 --label pump-room-3 \\
          --firmware-abi 1
      aiot models rollback --device pump-room-3
    """


@command.command("list", cls=Command)
@_REG
def list_(registry) -> None:
    """Every release, every device, every commissioned installation's image."""
    reg = _reg(registry)
    rels = reg.releases()
    images = reg.images()
    if not rels:
        click.echo(f"no releases in {reg.root} (make one with aiot release)")
    for rid, r in sorted(rels.items()):
        g = r.get("gate") or {}
        gate = ("gate passed" if g.get("passed") else f"regression accepted: {g['accepted_regression']}"
                if g.get("accepted_regression") else "not gated")
        click.echo(f"{rid:28s} abi {r['abi']}  parent {r['parent'] or '-':20s} {gate}")
    for dev, d in sorted(reg.devices().items()):
        named = f" ({', '.join(d['labels'])})" if d.get("labels") else ""
        click.echo(f"device {dev}{named}: runs {d['release']} (firmware ABI {d['firmware_abi']}); "
                   f"before: {', '.join(d['history']) or '-'}")
    for name, im in sorted(images.items()):  # aiot commission --fleet
        click.echo(f"image {name}: {im['board']}, model {im['model_sha256'][:12]}, {len(im['channels'])} sensors x "
                   f"window {im['window']}, {im['flash_bytes']:,} B flash / {im['ram_bytes']:,} B RAM  "
                   f"{reg.root / im['elf']}")


@command.command("show", cls=Command)
@click.option("--release", required=True, help="Release id (aiot models list), e.g. pump-ae-1.3.0.")
@_REG
def show(release, registry) -> None:
    """One release's record (lineage, ABI, gate, report summary)."""
    r = dict(_reg(registry).get(release))
    if r.get("report"):
        r["report"] = {"aggregate": r["report"].get("aggregate")}
    click.echo(json.dumps(r, indent=2, sort_keys=True))


@command.command("promote", cls=Command)
@click.option("--release", required=True, help="Release id (aiot models list), e.g. pump-ae-1.3.0.")
@click.option("--device", required=True, help="Device: the id its INFO answer reports (aiot update records it), or a "
                                              "label it has.")
@click.option("--label", help="Name the device (an alias of its id), e.g. pump-room-3.")
@click.option("--firmware-abi", type=int, help="Model ABI of the device's firmware (STATUS of aiot update prints it).")
@click.option("--firmware", "firmware_json", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The device firmware's build.json (aiot build --update-key records its model ABI).")
@_REG
def promote(release, device, label, firmware_abi, firmware_json, registry) -> None:
    """Record that --device runs --release (refused if its firmware cannot run it)."""
    if firmware_json is not None:
        from aiot.errors import ToolkitError

        abi = json.loads(firmware_json.read_text()).get("model_abi")
        if abi is None:
            raise ToolkitError(f"{firmware_json} records no model ABI: that firmware takes no model updates",
                               hint="build it with aiot build --update-key KEY.pem")
        firmware_abi = int(abi)
    d = _reg(registry).promote(release, device=device, firmware_abi=firmware_abi, label=label)
    click.echo(f"device {device}: {release} (before: {', '.join(d['history']) or '-'})")


@command.command("rollback", cls=Command)
@click.option("--device", required=True, help="Device: its INFO id or a label.")
@_REG
def rollback(device, registry) -> None:
    """Record that --device goes back to the release it ran before."""
    d = _reg(registry).rollback(device)
    click.echo(f"device {device}: back to {d['release']}")
