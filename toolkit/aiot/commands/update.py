"""`aiot update`: send a signed model package to a device (serial port or QEMU), resuming
a transfer the device already holds part of, then reboot it into the trial."""

from __future__ import annotations

import time
from pathlib import Path

import click

from aiot.commands import Command


@click.command("update", cls=Command)
@click.option("--board", "-b", required=True, help="Board name (see `aiot boards`).")
@click.option("--port", "-p", help="Serial port of a real board (or socket://host:port).")
@click.option("--qemu", is_flag=True, help="Boot --elf in QEMU instead (its update region is a file next to it).")
@click.option("--elf", type=click.Path(path_type=Path), help="--qemu: firmware built with update support.")
@click.option("--release", "package", type=click.Path(dir_okay=False, path_type=Path),
              help="Signed release file (from `aiot release`); omit it to print the device's update status only.")
@click.option("--package", "package_alias", hidden=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The same as --release (a release is the model package as one signed file).")
@click.option("--chunk", default=512, show_default=True, help="Bytes per UPDATE_CHUNK request (multiple of 8).")
@click.option("--no-reboot", is_flag=True, help="Leave the verified package waiting; its trial starts at the next boot.")
@click.option("--timeout", default=2.0, show_default=True, help="Seconds to wait for each answer.")
@click.option("--label", help="A name for the device (the installation's, e.g. pump-room-3), kept in the registry as an "
                              "alias of the id its INFO reports.")
@click.option("--registry", type=click.Path(path_type=Path), help="Registry folder [default: build/registry].")
def command(board: str, port: str | None, qemu: bool, elf: Path | None, package: Path | None,
            package_alias: Path | None, chunk: int, no_reboot: bool, timeout: float, label: str | None,
            registry: Path | None) -> None:
    """Update the model of a device in the field with a signed --release.

    \b
    The device checks the signature, the firmware ABI and the sensor schema before it
    accepts the package, then runs it on trial after a reboot: its golden vectors must be
    reproduced bit for bit and a trial period must pass, or it reverts by itself.
    A dropped link is not a problem: run the same command again and it resumes.
    Once the device runs the release (on trial or confirmed), the registry records that the
    device, by the id its INFO answer reports, runs it (--label names the device too).
    \b
    Examples:
      aiot update --board nucleo-f446re --port /dev/ttyACM0 --release build/registry/pump-ae-1.3.0.bin
      aiot update --board mps2-an386 --qemu --elf build/fw-upd/firmware.elf --release rel.bin
      aiot update --board nucleo-f446re --port /dev/ttyACM0          # status only
    """
    from aiot.device.hil import open_device
    from aiot.errors import ToolkitError
    from aiot.lifecycle.client import UpdateClient, image_digest

    if qemu == bool(port):
        raise ToolkitError("give either --port (a real board) or --qemu (an emulated one)",
                           hint="aiot update --board mps2-an386 --qemu --elf FIRMWARE.elf --release REL.bin")
    if qemu and (elf is None or not elf.is_file()):
        raise ToolkitError(f"--qemu needs --elf with a firmware built with update support (got {elf})",
                           hint="build one: aiot build --board mps2-an386 --package PKG --update-key KEY.pem "
                                "(its firmware.elf; docs/lifecycle.md)")
    if package is not None and package_alias is not None:
        raise ToolkitError("--release and --package both given: they name the same file",
                           hint="aiot update --board B --port P --release REL.bin")
    package = package or package_alias
    image = None
    if package is not None:
        if not package.is_file():
            raise ToolkitError(f"--release {package}: no such file", hint="make a release with aiot release")
        image = package.read_bytes()
    with open_device(board=board, elf=elf, transport="qemu" if qemu else "serial", port=port,
                     timeout=timeout) as dev:
        up = UpdateClient(dev, chunk=chunk)
        if image is None:
            click.echo(up.status().describe())
            click.echo(f"device id: {dev.info().device_id or '(none reported)'}")
            return
        t0 = time.monotonic()
        st = up.send(image, progress=lambda done, total: click.echo(f"\r  {done:,}/{total:,} bytes", nl=False, err=True))
        click.echo("", err=True)
        dt = time.monotonic() - t0
        if up.resumed_from is not None:
            click.echo(f"resumed at byte {up.resumed_from:,}")
        click.echo(f"sent {len(image):,} bytes in {dt:.2f} s ({len(image) / dt / 1024:.1f} KiB/s); verified by the device")
        if no_reboot:
            click.echo(st.describe())
            return
        up.reboot()
        st = up.status()
        click.echo(st.describe())
        if not st.trial and st.last_reason:
            raise ToolkitError(f"the device reverted the new package: {st.describe()}",
                               hint="check the release's golden vectors against this firmware's model (aiot validate)")
        if st.running_digest() == image_digest(image)[:8]:
            _record(registry, image, dev.info().device_id, label, st)


def _record(registry: Path | None, image: bytes, device_id: str, label: str | None, st) -> None:
    """The registry notes that the device runs this release (when the release is one of its own)."""
    from aiot import paths
    from aiot.lifecycle.client import image_digest
    from aiot.lifecycle.registry import Registry

    reg = Registry(registry or paths.build_dir() / "registry")
    rid = reg.digest_release(image_digest(image)) if reg.index.is_file() else None
    if rid is None:
        click.echo(f"note: this release is not in the registry {reg.root}; nothing recorded", err=True)
        return
    if not device_id and not label:
        click.echo("note: the device reports no id (firmware older than protocol 1.1, or built without one) and no "
                   "--label was given: the registry does not record it", err=True)
        return
    reg.promote(rid, device=device_id or label, firmware_abi=st.abi, label=label if device_id else None)
    click.echo(f"registry: device {device_id or label}" + (f" ({label})" if device_id and label else "")
               + f" runs {rid}" + (" (on trial)" if st.trial else ""))
