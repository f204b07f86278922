"""`aiot rollout`: a model release to a group of devices through their gateways, canary first."""

from __future__ import annotations

import functools
from pathlib import Path

import click

from aiot.commands import Command, OutPath, json_option, write_json, wrote
from aiot.errors import ToolkitError


def _release_bytes(release: str, registry: Path) -> tuple[str, bytes]:
    """(release id, signed bytes) of a registry release id or a release file."""
    p = Path(release)
    if p.is_file():
        from aiot.lifecycle.client import image_digest

        data = p.read_bytes()
        image_digest(data)  # a signed package, or a clear error now rather than on every device
        return p.stem, data
    from aiot.lifecycle.registry import Registry

    reg = Registry(registry)
    if release not in reg.releases():
        raise ToolkitError(f"{release}: neither a release file nor a release of the registry {registry}",
                           hint="aiot models list shows the registry's releases (--registry DIR picks another)")
    return release, reg.image(release)


@click.command("rollout", cls=Command)
@click.option("--release", help="The release: an id of the registry (aiot models list) or a signed release file.")
@click.option("--devices", "group", help="The devices: a file of device ids (one per line) or a glob over the site's "
                                         "device ids ('pump-*'; known from their gateways' retained status).")
@click.option("--canary", default="5%", show_default=True,
              help="The canary group, first in sorted id order: a share (5%) or a count (3); at least one device.")
@click.option("--wave", default="double", show_default=True,
              help="After the canary, the other devices in waves: 'double' (each wave twice the one before, the "
                   "first twice the canary), a share of the group (25%) or a count (10). A failure, or a wave not "
                   "answered within --timeout, halts before the next wave.")
@click.option("--mqtt", "mqtt_url", help="The broker the gateways use: mqtt://HOST[:PORT] or mqtts://[USER@]HOST[:PORT].")
@click.option("--site", default="default", show_default=True, help="The site: topics aiot/SITE/DEVICE/...")
@click.option("--registry", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="The release registry: where --release is looked up and where each device that passed its "
                   "trial is recorded [default: build/registry].")
@click.option("--state", type=OutPath("file"), default=None,
              help="The rollout's state file [default: build/rollout/RELEASE.json]; --status and --resume read it.")
@click.option("--trial-timeout", type=click.FloatRange(min=1), default=120.0, show_default=True,
              help="Seconds a device may stay on trial after its reboot before the gateway reports a timeout.")
@click.option("--canary-timeout", type=click.FloatRange(min=1), default=600.0, show_default=True,
              help="Seconds to wait for every canary's outcome; then the rollout halts.")
@click.option("--timeout", type=click.FloatRange(min=1), default=3600.0, show_default=True,
              help="Seconds to wait for each wave's outcomes; then the rollout halts (in the last wave it stops "
                   "waiting: those offline get the update when they return).")
@click.option("--status", "show", is_flag=True, help="Show the rollout in --state and stop.")
@click.option("--resume", is_flag=True, help="Continue the rollout in --state (after an interruption).")
@json_option("the rollout's summary")
def command(release: str | None, group: str | None, canary: str, wave: str, mqtt_url: str | None, site: str,
            registry: Path | None, state: Path | None, trial_timeout: float, canary_timeout: float, timeout: float,
            show: bool, resume: bool, json_out) -> None:
    """Push a model release through the gateways to a canary group, wait for their trials
    to pass, then to the rest in waves; a failed trial halts the rollout before the next
    wave, and the commands of devices that have not started are withdrawn.

    The gateways must run with --updates. Each device gets an update command on
    aiot/SITE/DEVICE/cmd; its gateway sends the package, reboots the device into the trial
    and reports the device's verdict on aiot/SITE/DEVICE/update. Exit status: 0 every
    device passed, 1 halted or a device failed, 3 devices still waiting (offline); 2 is an
    error before or during the rollout, as for every verb.

    \b
    Examples:
      aiot rollout --release pump-ae-1.1.0 --devices 'pump-*' --canary 5% --site plant-3 --mqtt mqtt://broker.local
      aiot rollout --release build/registry/pump-ae-1.1.0.bin --devices group.txt --mqtt mqtt://127.0.0.1
      aiot rollout --status --state build/rollout/pump-ae-1.1.0.json
    """
    import importlib.util

    from aiot.fleet.rollout import Rollout, known_devices, resolve_group
    from aiot.paths import build_dir

    say = functools.partial(click.echo, err=json_out == "-")
    if show or resume:
        if state is None:
            raise ToolkitError("--status and --resume need the rollout's --state file",
                               hint="aiot rollout --status --state build/rollout/RELEASE.json")
        r = Rollout.load(state)
        if show:
            summary = r.summary()
            _print(summary, say)
            write_json(json_out, summary)
            return
    else:
        if not release or not group:
            raise ToolkitError("a rollout needs --release and --devices",
                               hint="aiot rollout --release REL --devices 'pump-*' --mqtt mqtt://HOST")
    if not mqtt_url:
        raise ToolkitError("no broker given", hint="pass --mqtt mqtt://HOST[:PORT] (the gateways' broker)")
    if importlib.util.find_spec("paho") is None:
        raise ToolkitError("aiot rollout needs paho-mqtt, which is not installed",
                           hint="pip install 'aiot-toolkit[fleet]' (or pip install paho-mqtt)")
    from aiot.fleet.gateway import parse_broker, topic_level

    broker = parse_broker(mqtt_url)
    registry = registry or build_dir() / "registry"
    if not resume:
        topic_level(site, "site")
        rid, image = _release_bytes(release, registry)
        known = [] if Path(group).is_file() else known_devices(broker, site)
        devices = resolve_group(group, known)
        state = state or build_dir() / "rollout" / f"{rid}.json"
        r = Rollout.start(state, site=site, release=rid, image=image, devices=devices, canary=canary,
                          wave=wave, trial_timeout=trial_timeout)
    from aiot.lifecycle.registry import Registry

    reg = Registry(registry)
    if r.state["release"] in reg.releases():
        r.registry = reg
    summary = r.run(broker, canary_timeout=canary_timeout, timeout=timeout, progress=say)
    _print(summary, say)
    wrote(r.path, "the rollout's state", err=True)
    write_json(json_out, summary)
    if summary["phase"] == "halted" or summary["failed"]:
        raise SystemExit(1)
    if summary["waiting"]:
        raise SystemExit(3)


def _print(s: dict, say) -> None:
    say(f"rollout {s['id']}: {s['release']} on site {s['site']}: {s['phase']}"
        + (f" ({s['halted']['device'] + ': ' if s['halted'].get('device') else ''}{s['halted']['reason']})"
           if s["halted"] else ""))
    say(f"  {len(s['passed'])} passed, {len(s['failed'])} failed, {len(s['waiting'])} waiting, "
        f"{len(s['withdrawn'])} withdrawn, {len(s['not_sent'])} not sent, of {s['devices']} "
        f"(canary: {', '.join(s['canary'])}; then waves of {', '.join(map(str, s['waves'])) or 'none'})")
    for d, why in s["failed"].items():
        say(f"  {d}: {why}")
    if s["waiting"]:
        say(f"  waiting for: {', '.join(s['waiting'][:10])}" + (" ..." if len(s["waiting"]) > 10 else ""))
