"""The README's set-up step (`make deps`, run by `make demo` and `make test`) on a machine
that lacks the toolchain: apt-get is called for exactly the Debian packages, through sudo
only when not root, and a failing apt-get fails the make. Run against stand-ins for `id`,
`sudo` and `apt-get` on a PATH without the real tools, so nothing is installed."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAKE = shutil.which("make")
PKGS = "gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm"

pytestmark = pytest.mark.skipif(MAKE is None, reason="make not installed")


def _script(path: Path, body: str) -> None:
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)


def _make_deps(tmp_path: Path, uid: int, apt_rc: int = 0, tools: bool = False) -> tuple[subprocess.CompletedProcess, list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "calls.log"
    _script(bin_dir / "id", f"echo {uid}")
    _script(bin_dir / "sudo", f'echo "sudo $*" >> {log}\nexec "$@"')
    _script(bin_dir / "apt-get", f'echo "apt-get DEBIAN_FRONTEND=$DEBIAN_FRONTEND $*" >> {log}\nexit {apt_rc}')
    if tools:  # the toolchain present (newlib's libc.a is looked up at its Debian path)
        _script(bin_dir / "arm-none-eabi-gcc", "exit 0")
        _script(bin_dir / "qemu-system-arm", "exit 0")
    proc = subprocess.run([MAKE, "-s", "-C", str(ROOT), "deps"], env={"PATH": str(bin_dir)},
                          capture_output=True, text=True, timeout=60)
    return proc, log.read_text().splitlines() if log.exists() else []


def test_missing_toolchain_is_installed_with_apt_as_root(tmp_path):
    proc, calls = _make_deps(tmp_path, uid=0)
    assert proc.returncode == 0, proc.stderr
    assert f"installing {PKGS}" in proc.stdout
    assert calls == [
        "apt-get DEBIAN_FRONTEND= update -qq",
        f"apt-get DEBIAN_FRONTEND=noninteractive install -y -qq --no-install-recommends {PKGS}",
    ]


def test_not_root_goes_through_sudo(tmp_path):
    proc, calls = _make_deps(tmp_path, uid=1000)
    assert proc.returncode == 0, proc.stderr
    assert [c for c in calls if c.startswith("sudo")] == [
        "sudo apt-get update -qq",
        f"sudo apt-get install -y -qq --no-install-recommends {PKGS}",
    ]


def test_failing_apt_fails_the_make(tmp_path):
    proc, calls = _make_deps(tmp_path, uid=0, apt_rc=100)
    assert proc.returncode != 0
    assert calls == ["apt-get DEBIAN_FRONTEND= update -qq"]  # stops at the first failure


@pytest.mark.skipif(not Path("/usr/lib/arm-none-eabi/newlib/libc.a").is_file(), reason="newlib not installed")
def test_present_toolchain_leaves_apt_alone(tmp_path):
    proc, calls = _make_deps(tmp_path, uid=0, tools=True)
    assert proc.returncode == 0, proc.stderr
    assert "present" in proc.stdout and calls == []


def test_venv_is_made_once_and_remade_when_the_dependencies_change(tmp_path):
    venv = tmp_path / "venv"

    def plan() -> str:  # what `make venv` would run (dry run)
        return subprocess.run([MAKE, "-n", "-C", str(ROOT), f"VENV={venv}", "venv"],
                              capture_output=True, text=True, timeout=60).stdout

    first = plan()
    assert f"-m venv {venv}" in first and "pip install -q -e '.[ml,test,boards,lifecycle]'" in first
    (venv / "bin").mkdir(parents=True)
    (venv / ".installed").touch()  # as the first run leaves it
    assert "pip install" not in plan()  # idempotent: a second run installs nothing
    newer = (ROOT / "pyproject.toml").stat().st_mtime + 10
    os.utime(venv / ".installed", (newer - 20, newer - 20))  # pyproject.toml changed since
    assert "pip install -q -e" in plan()
