"""`aiot gateway`: bridge devices (serial or QEMU) to an MQTT 5.0 broker, store-and-forward."""

from __future__ import annotations

import re
import time
from pathlib import Path

import click

from aiot.commands import Command, OutPath
from aiot.commands._options import csv_options, reading_options
from aiot.errors import ToolkitError


def _device_id(text: str) -> str:
    """A topic-safe device id from a port or board name (``/dev/ttyACM0`` -> ``ttyACM0``)."""
    return re.sub(r"[^A-Za-z0-9_.:-]+", "-", text.rstrip("/").rsplit("/", 1)[-1]).strip("-") or "device"


@click.command("gateway", cls=Command)
@click.option("--mqtt", "mqtt_url", required=True, help="The broker (MQTT 5.0): mqtt://HOST[:PORT] (1883), or mqtts://[USER@]HOST[:PORT] for TLS "
                   "(8883; the password from AIOT_MQTT_PASSWORD).")
@click.option("--port", "ports", multiple=True,
              help="A device on a serial port (/dev/ttyACM0, COM3, socket://host:port); repeat for more.")
@click.option("--qemu", "qemus", multiple=True, help="A device emulated on this board (see `aiot boards`); repeat for more.")
@click.option("--elf", "elfs", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Firmware for the --qemu devices (e.g. from aiot commission): one for all, or one per --qemu.")
@click.option("--name", "names", multiple=True,
              help="Device ids for the topics, in the order --port then --qemu devices are given "
                   "[default: the port's name, or BOARD-N].")
@click.option("--site", default="default", show_default=True, help="Topic level for this site: aiot/SITE/DEVICE/KIND.")
@click.option("--journal", type=OutPath("file"), default=None,
              help="The store-and-forward journal (SQLite) [default: build/gateway/journal.db]. Keep it across "
                   "runs: what the broker has not acknowledged yet is sent by the next run.")
@click.option("--baud", type=click.IntRange(min=1), default=None, help="Serial baud rate [default: 115200].")
@click.option("--stats-every", type=click.FloatRange(min=0), default=10.0, show_default=True,
              help="Seconds between STATS messages (0: none).")
@click.option("--replay", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="PUSH this recording into every device (a device with no sensors of its own: QEMU, a bench board).")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop after this many seconds [default: run until Ctrl-C].")
@click.option("--updates", is_flag=True,
              help="Take model updates from aiot/SITE/DEVICE/cmd (aiot rollout) and apply them between event drains; "
                   "outcomes on aiot/SITE/DEVICE/update.")
@reading_options
def command(mqtt_url: str, ports: tuple[str, ...], qemus: tuple[str, ...], elfs: tuple[Path, ...],
            names: tuple[str, ...], site: str, journal: Path | None, baud: int | None, stats_every: float,
            replay: Path | None, duration: float | None, updates: bool = False, strict_time: bool = False,
            time_format: str | None = None, label_column: str = "auto", label_map: str | None = None) -> None:
    """Publish each device's events to MQTT; nothing is lost when the broker, the gateway or
    the device restarts.

    Every event is journaled on disk before the device is told it may drop it, then published
    in order, QoS 1, as JSON on aiot/SITE/DEVICE/KIND (kinds: alert, state, drift, calibration,
    data, stats; status and info are retained, status "offline" is the connection's last
    will). Delivery is at-least-once: each message carries an id consumers de-duplicate on.

    \b
    Examples:
      aiot gateway --port /dev/ttyACM0 --name pump7 --site plant-3 --mqtt mqtt://broker.local
      aiot gateway --qemu mps2-an386 --elf build/pump7/firmware.elf --replay pump7.csv \\
          --mqtt mqtt://127.0.0.1:1883 --duration 60
    """
    import importlib.util

    if importlib.util.find_spec("paho") is None:  # paho-mqtt is an optional extra
        raise ToolkitError("the gateway needs paho-mqtt, which is not installed",
                           hint="pip install 'aiot-toolkit[fleet]' (or pip install paho-mqtt)")
    from aiot.fleet.gateway import Gateway, device_opener, replay_chunks

    if not ports and not qemus:
        raise ToolkitError("no device given", hint="pass --port /dev/ttyACM0 or --qemu mps2-an386 --elf FIRMWARE.elf")
    if qemus and not elfs:
        raise ToolkitError("--qemu needs the firmware to boot", hint="pass --elf build/pump7/firmware.elf "
                                                                     "(aiot commission or aiot build make one)")
    if elfs and len(elfs) not in (1, len(qemus)):
        raise ToolkitError(f"{len(elfs)} --elf for {len(qemus)} --qemu devices", hint="give one --elf, or one per --qemu")
    devices = [("serial", p, None) for p in ports] + [
        ("qemu", b, elfs[i] if len(elfs) > 1 else elfs[0]) for i, b in enumerate(qemus)]
    if names and len(names) != len(devices):
        raise ToolkitError(f"{len(names)} --name for {len(devices)} devices", hint="give one --name per device, or none")
    ids = list(names) or [_device_id(where) if kind == "serial" else f"{where}-{i}"
                          for i, (kind, where, _elf) in enumerate(devices)]
    if len(set(ids)) != len(ids):
        raise ToolkitError(f"two devices would share the id in {ids}", hint="give each one a --name")

    sensors = None
    reading = csv_options(strict_time, time_format, label_column, label_map)  # how --replay is read
    if replay is not None:
        from aiot.data import load_csv

        sensors = load_csv(replay, **reading).channels
    from aiot.paths import build_dir

    gw = Gateway(journal or build_dir() / "gateway" / "journal.db", mqtt_url, site=site, commands=updates)

    for dev_id, (kind, where, elf) in zip(ids, devices):
        # each emulated board keeps its update region (aiot-flash.bin) in a folder of its own
        workdir = gw.journal.path.parent / "qemu" / dev_id if kind == "qemu" else None
        gw.add(dev_id, device_opener(kind, where, elf, baud, workdir), sensors=sensors, stats_every=stats_every,
               replay=replay_chunks(replay, csv_options=reading) if replay is not None else None)
    click.echo(f"gateway {gw.gateway_id}: {len(ids)} device(s) -> {mqtt_url} as aiot/{site}/<device>/<kind>; "
               f"journal {gw.journal.path}", err=True)
    gw.start()
    t0 = time.monotonic()
    try:
        while duration is None or time.monotonic() - t0 < duration:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    for b in gw.bridges:
        pub = b.publisher
        state = "connected" if pub.connected.is_set() else f"not connected ({pub.last_error})"
        click.echo(f"{b.device}: {b.journaled} event messages journaled this run, {b.link_drops} link drop(s)"
                   + (f" (last: {b.last_error})" if b.last_error else "") + f"; broker {state}"
                   + (f"; {pub.refusals} refusal(s) by the broker, held and retried (last: {pub.last_refusal})"
                      if pub.refusals else ""))
    backlog = gw.stop(drain=3.0)
    click.echo(f"journal: {backlog} message(s) not yet published (sent by the next run)" if backlog
               else "journal: everything published")
