"""`aiot gateway` on the command line: what it refuses, and why, before touching a device."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from aiot.cli import main

pytest.importorskip("paho.mqtt", reason="the fleet extra is not installed: pip install -e '.[fleet]'")


@pytest.mark.parametrize("args,message,hint", [
    ([], "no device given", "--port /dev/ttyACM0"),
    (["--qemu", "mps2-an386"], "--qemu needs the firmware to boot", "--elf"),
    (["--port", "socket://127.0.0.1:1", "--name", "a", "--name", "b"], "2 --name for 1 devices", "one --name per"),
    (["--port", "/dev/ttyACM0", "--port", "/dev/x/ttyACM0"], "share the id", "--name"),
    (["--port", "socket://127.0.0.1:1", "--site", "plant/3"], "cannot be an MQTT topic level", "--site plant-3"),
])
def test_refused_with_what_to_do(tmp_path, args, message, hint):
    res = CliRunner().invoke(main, ["gateway", "--mqtt", "mqtt://127.0.0.1:1", "--journal", str(tmp_path / "j.db"),
                                    *args])
    assert res.exit_code == 2, res.output
    assert message in res.output and hint in res.output and "Traceback" not in res.output
