"""`aiot monitor`: a live console for a device: what it is, its monitor events as they
happen, and its raw output when it does not speak the protocol (boot messages, crashes)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import click

from aiot.errors import ToolkitError
from aiot.commands import Command, SECONDS


class _Recorder:
    """Transport wrapper that keeps a copy of every byte read (shown if the device turns out
    not to speak the protocol: a boot banner or fault message is what the user needs then)."""

    def __init__(self, inner):
        self.inner = inner
        self.name = inner.name
        self.baud = getattr(inner, "baud", None)  # the link report names the rate to check
        self.seen = bytearray()
        self.recording = True

    def write(self, data: bytes) -> None:
        self.inner.write(data)

    def read(self, timeout: float) -> bytes:
        data = self.inner.read(timeout)
        if self.recording:
            self.seen += data
        return data

    def diagnose(self) -> str:
        return self.inner.diagnose()

    def close(self) -> None:
        self.inner.close()


#: Raw mode shows a line at its newline, or once this many bytes arrived without one
RAW_LINE_MAX = 4096


def format_event(ev) -> str:
    """One line per monitor event (aiot.monitor.Event)."""
    where = f"ch {ev.channel}" if ev.channel is not None else (
        "ch " + ",".join(map(str, ev.channels)) if ev.channels else "all channels")
    return (f"[{ev.timestamp_ms / 1000:>10.3f} s] #{ev.seq:<5} {ev.type:<16} {where:<12} "
            f"severity {ev.severity}  state {ev.state}  value {ev.value:.4g}"
            + (f"  confidence {ev.confidence:.3g}" if getattr(ev, "confidence", None) is not None else ""))


def resolve_port(port: str | None, board_name: str | None, list_ports: Callable | None = None) -> str:
    """The serial port to open: ``port`` if it exists (or is a pyserial URL), else the one
    USB port whose VID:PID the board file names; otherwise an error listing what is there."""
    from aiot.target.flash import list_serial_ports

    ports = (list_ports or list_serial_ports)()
    found = ", ".join(map(str, ports)) or "none"
    if port:
        if "://" in port or Path(port).exists() or port.upper().startswith("COM"):
            return port
        raise ToolkitError(f"serial port {port} does not exist (ports found: {found})",
                           hint="plug the board in; on Linux the ST-LINK/J-Link console is /dev/ttyACM0, "
                                "and you need the dialout group (docs/boards.md)")
    ids: list[str] = []
    if board_name:
        from aiot.target.boards import get_board

        ids = [str(u).upper() for u in _uart_table(get_board(board_name).source).get("usb_ids", [])]
    matches = [p for p in ports if p.usb_id and (not ids or p.usb_id in ids)]
    if len(matches) == 1:
        return matches[0].device
    if not matches:
        raise ToolkitError(f"no serial port found{' for ' + board_name if board_name else ''} (ports found: {found})",
                           hint="plug the board's debugger USB port in, or pass --port /dev/ttyACM0 "
                                "(or socket://host:port for QEMU)")
    raise ToolkitError(f"{len(matches)} candidate serial ports: {', '.join(map(str, matches))}",
                       hint="choose one with --port")


def _uart_table(src: Path) -> dict:
    import sys

    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    return tomllib.loads(src.read_text()).get("uart", {})


def run_monitor(transport, *, duration: float | None, interval: float, raw: bool,
                echo: Callable[[str], None], timeout: float = 2.0, journal: Path | None = None) -> int:
    """Drive one monitoring session; returns the number of events shown."""
    from aiot.device.hil import Device, DeviceTimeout

    rec = _Recorder(transport)
    start = time.monotonic()
    expired = (lambda: False) if duration is None else (lambda: time.monotonic() - start >= duration)
    if not raw:
        try:
            dev = Device(rec, timeout=timeout, retries=1)
            info = dev.info()
        except DeviceTimeout:
            echo(f"-- {transport.name}: no answer to INFO; showing raw output --")
            if dev.counters.broken_frames:  # frames came, spoilt: the link, not the firmware, is the suspect
                what, hint = dev.link_trouble()
                echo(f"-- link: {what}")
                echo(f"   {hint}")
            raw = True
        except ToolkitError:  # the link went down first: what the device said may be why
            for _ in range(64):  # what is still buffered (a device that printed, then closed)
                try:
                    if not rec.read(0.05):
                        break
                except ToolkitError:
                    break
            if rec.seen:
                echo(f"-- {transport.name} sent this before the link went down --")
                echo(rec.seen.decode(errors="replace").rstrip("\n"))
            raise
        else:
            rec.recording = False
            dev.reset_link_counters()  # the link from here on (a boot-time retry of INFO is no fault)
            model = f"model {info.model_name!r} ({info.input_bytes} B in, {info.output_bytes} B out)" \
                if info.has_model else "no model"
            echo(f"device {info.board}: firmware {info.firmware_version}, protocol "
                 f"{info.proto_major}.{info.proto_minor}, {info.cpu_hz / 1e6:g} MHz, {model}, "
                 f"monitor {'on' if info.has_monitor else 'off'}")
            if not info.has_monitor:
                echo("-- this firmware has no monitor: no events to show")
                return 0
            try:
                shown = _poll(dev, expired, interval, duration, start, echo, journal)
            finally:  # at the end, Ctrl-C or a lost device: a link that needed help says so
                link = dev.link_report()
                if link:
                    echo(f"-- link: {link[0]}")
                    echo(f"   {link[1]}")
            return shown
    return _raw(transport, rec, expired, echo)


def _poll(dev, expired, interval: float, duration: float | None, start: float, echo,
          journal: Path | None = None) -> int:
    """Poll the monitor's state and events until ``expired()``; returns the events shown.
    Each event is shown as it arrives, before the request that lets the device delete it
    (and written to ``journal`` before that, when given): Ctrl-C or a lost link part-way
    through a drain leaves the events not shown on the device."""
    shown = 0
    last_state = None
    while not expired():
        st = dev.stats()
        mon = st.get("monitor", {}) if st.get("configured") else {}
        state = f"{mon.get('phase')} / {mon.get('state')}" if mon else \
            "not configured (the host sends CONFIG_SET first, e.g. aiot evaluate)"
        if state != last_state:
            echo(f"-- monitor: {state}")
            last_state = state
        if mon:  # EVENTS is refused until the monitor is configured
            for ev in dev.iter_events(journal=journal):
                echo(format_event(ev))
                shown += 1
        time.sleep(min(interval, max(0.0, (duration or interval) - (time.monotonic() - start))))
    return shown


def _raw(transport, rec: _Recorder, expired, echo) -> int:
    """Print what the device sends, as text, as it arrives (what came before first)."""
    if rec.seen:
        echo(rec.seen.decode(errors="replace").rstrip("\n"))
    rec.recording = False
    pending = b""
    try:
        while not expired():
            data = transport.read(0.2)
            if not data:
                continue
            pending += data
            *lines, pending = pending.split(b"\n")
            if len(pending) >= RAW_LINE_MAX:  # output without newlines: shown in pieces, never hoarded
                lines.append(pending)
                pending = b""
            for line in lines:
                echo(line.decode(errors="replace"))
    finally:  # the end, Ctrl-C or a lost link: the last line, even without its newline
        if pending:
            echo(pending.decode(errors="replace"))
    return 0


@click.command("monitor", cls=Command)
@click.option("--port", "-P", help="Serial port or pyserial URL (/dev/ttyACM0, COM3, socket://host:port) "
                                   "[default: the board's debugger port, found by USB id].")
@click.option("--board", "-b", help="Board name (see `aiot boards`): picks its port and baud rate.")
@click.option("--baud", type=click.IntRange(min=1), help="Baud rate [default: the board's, else 115200].")
@click.option("--interval", type=SECONDS, default=1.0, show_default=True, help="Seconds between event polls.")
@click.option("--duration", type=SECONDS, help="Stop after this many seconds [default: until Ctrl-C].")
@click.option("--raw", is_flag=True, help="Only show the raw output; send nothing to the device.")
@click.option("--journal", type=click.Path(dir_okay=False, path_type=Path),
              help="Append every event to this JSON-lines file (synced) before the device may delete it.")
def command(port: str | None, board: str | None, baud: int | None, interval: float, duration: float | None,
            raw: bool, journal: Path | None = None) -> None:
    """Show a device's output and its decoded monitor events, live.

    \b
    Examples:
      aiot monitor --board nucleo-f446re            # finds /dev/ttyACM* by USB id
      aiot monitor --port /dev/ttyACM0 --duration 60
      aiot monitor --port socket://127.0.0.1:4444   # a QEMU UART
      aiot monitor --board nucleo-f446re --journal events.jsonl   # nothing lost, even on a kill
    """
    from aiot.target.boards import get_board
    from aiot.device.hil import DEFAULT_BAUD, SerialTransport

    url = resolve_port(port, board)
    if baud is None:
        baud = get_board(board).baud if board else DEFAULT_BAUD
    t = SerialTransport(url, baud)
    click.echo(f"-- monitoring {url} at {baud} baud (Ctrl-C to stop) --")
    try:
        run_monitor(t, duration=duration, interval=interval, raw=raw, echo=click.echo, journal=journal)
    except KeyboardInterrupt:
        pass
    finally:
        t.close()
