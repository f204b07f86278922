"""Boot firmware on an emulated Cortex-M board in QEMU.

The guest's console UART is exposed on a local TCP socket (QEMU waits for the host to
connect before starting the guest, so no byte is lost), semihosting carries the exit
code and diagnostics (stderr), and `-icount shift=0` makes every guest instruction one
nanosecond of virtual time: instruction counts measured with SysTick are exact and
reproducible."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from aiot.target.boards import Board
from aiot.target.elf import check_elf
from aiot.errors import ToolkitError
from aiot.target.toolchain import require


def _die_with_parent(parent: int) -> None:
    """In the child, before exec: ask the kernel to SIGKILL it when the process that started
    it dies (PR_SET_PDEATHSIG), so a killed `aiot run` or evaluation never leaves QEMU running,
    re-parented to init. Exits at once if that parent is already gone."""
    import ctypes
    import os
    import signal

    PR_SET_PDEATHSIG = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the process group below still helps Ctrl-C
        return
    if os.getppid() != parent:  # the parent died between fork and prctl
        os._exit(1)


def spawn_child(cmd: list[str], **kwargs) -> subprocess.Popen:
    """``subprocess.Popen(cmd)`` for a helper process that must not outlive this one (QEMU).

    Linux: PR_SET_PDEATHSIG ties it to the thread that starts it, so start it from a thread
    that lives as long as the child is needed (the main thread, or a pool's worker)."""
    import os
    import sys

    if sys.platform.startswith("linux"):
        parent = os.getpid()
        kwargs.setdefault("preexec_fn", lambda: _die_with_parent(parent))
    return subprocess.Popen(cmd, **kwargs)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Qemu:
    """One QEMU process running ``elf`` on ``board``; use as a context manager.

    ``serial="tcp"``: the UART is served on ``self.port`` (connect with
    ``serial_for_url(self.url)``); ``serial="stdio"``: UART output is captured and
    returned by ``wait()``, for programs that run to completion on their own.
    """

    def __init__(self, board: Board, elf: Path, *, serial: str = "tcp", icount: bool = True,
                 extra_args: list[str] | None = None, cwd: Path | None = None):
        check_elf(elf, board.name)
        self.board = board
        self.elf = Path(elf).resolve()  # QEMU runs in ``cwd``: a path relative to here would not be found there
        self.serial = serial
        self.port: int | None = None
        self.icount = icount
        self.extra_args = extra_args or []
        self.cwd = cwd  # QEMU's working folder: semihosted files (the update region) are there
        self.proc: subprocess.Popen | None = None
        self.returncode: int | None = None

    @property
    def url(self) -> str:
        return f"socket://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        cmd = [require("qemu-system-arm"), *self.board.qemu_args(), "-kernel", str(self.elf),
               "-display", "none", "-monitor", "none", "-nodefaults", "-nic", "none",
               "-semihosting-config", "enable=on,target=native"]
        if self.serial == "tcp":
            # nodelay: QEMU sends guest bytes in small segments; with Nagle each reply would
            # wait for the host's delayed ACK (~40 ms per request).
            cmd += ["-serial", f"tcp:127.0.0.1:{self.port},server=on,wait=on,nodelay=on"]
        else:
            cmd += ["-serial", "stdio"]
        if self.icount:
            cmd += ["-icount", "shift=0"]
        return cmd + self.extra_args

    def start(self) -> "Qemu":
        for _attempt in range(5):
            if self.serial == "tcp":
                self.port = free_port()
            self.proc = spawn_child(self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, cwd=self.cwd)
            if self.serial != "tcp" or self._wait_listening():
                return self
            # Lost the race for the port (or QEMU failed): read why and retry.
            err = self._reap_stderr()
            if "Address already in use" not in err:
                raise ToolkitError(f"QEMU failed to start for {self.board.name}: {err.strip()}",
                                   hint="command: " + " ".join(self.command()))
        raise ToolkitError("could not find a free TCP port for QEMU's UART after 5 attempts")

    def _wait_listening(self, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                return False
            try:
                # Probe with a raw connect? That would be taken as the guest's client.
                # Instead check the listening socket table for our port, held by our QEMU:
                # another process may have taken the port first (QEMU then exits).
                if _is_listening(self.port, self.proc.pid if self.proc is not None else None):
                    return True
            except OSError:
                pass
            time.sleep(0.02)
        return False

    def _reap_stderr(self) -> str:
        if self.proc is None:
            return ""
        try:
            _out, err = self.proc.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _out, err = self.proc.communicate()
        return err.decode(errors="replace")

    def wait(self, timeout: float = 60.0) -> tuple[int, str, str]:
        """Wait for the guest to exit; returns (exit code, UART/stdout text, stderr text)."""
        assert self.proc is not None
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, err = self.proc.communicate()
            raise ToolkitError(f"firmware on {self.board.name} did not exit within {timeout:.0f}s",
                               hint=f"stderr so far: {err.decode(errors='replace')[-500:]!r}") from None
        self.returncode = self.proc.returncode
        return self.proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()

    def __enter__(self) -> "Qemu":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _is_listening(port: int | None, pid: int | None = None) -> bool:
    """True if a socket listens on 127.0.0.1:port (reads /proc/net/tcp, no connect) and,
    given ``pid``, that process holds it (its /proc/PID/fd names the socket's inode)."""
    if port is None:
        return False
    want = f"0100007F:{port:04X}"
    try:
        with open("/proc/net/tcp") as f:
            inodes = {cols[9] for cols in (line.split() for line in f.readlines()[1:])
                      if cols[1] == want and cols[3] == "0A"}  # 0A = LISTEN
    except FileNotFoundError:  # not Linux: fall back to a short sleep
        time.sleep(0.5)
        return True
    if not inodes or pid is None:
        return bool(inodes)
    import os

    held = {f"socket:[{i}]" for i in inodes}
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:  # gone already
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") in held:
                return True
        except OSError:
            continue
    return False


def run_to_exit(board: Board, elf: Path, timeout: float = 60.0) -> tuple[int, str, str]:
    """Boot ``elf`` with the UART on stdout and wait for its semihosting exit."""
    with Qemu(board, elf, serial="stdio") as q:
        return q.wait(timeout)
