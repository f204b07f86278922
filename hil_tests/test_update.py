"""Model updates on the target (QEMU boards with an [update] layout, or a real board over
a serial port): a signed package of the suite's model is sent, verified by the device,
run on trial after a reboot (its golden vectors replayed bit for bit on the device) and
confirmed; a package signed by another key is refused with the reason.

QEMU: the suite builds a firmware with update support per board (its update region is a
file in the test's folder); mps2-an386 only, unless AIOT_HIL_UPDATE_ALL=1 (then every QEMU
board with an [update] table: mps2-an385/an386/an500/an505). Serial: flash firmware built with
`aiot build --board B --model-c ... --update-key KEY.pem` and point the suite at the key
with AIOT_HIL_UPDATE_KEY=KEY.pem; without it (or on firmware without update support)
the tests are skipped, saying why. On a real board the tests leave the suite's model
confirmed in a slot."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("imgtool")

from aiot.lifecycle import package as P  # noqa: E402
from aiot.lifecycle.client import UpdateClient, UpdateRefused, image_digest  # noqa: E402

pytestmark = pytest.mark.slow  # builds a firmware per board and reboots it


@pytest.fixture(scope="module")
def update_kit(board, transport_kind, hil_model, model_c, pytestconfig, tmp_path_factory):
    d = tmp_path_factory.mktemp(f"update-{board.name}")
    if transport_kind == "qemu":
        if board.update is None:
            pytest.skip(f"board {board.name} has no [update] layout in its board file")
        if board.name != "mps2-an386" and not os.environ.get("AIOT_HIL_UPDATE_ALL"):
            # each board needs its own firmware build (~20 s): the default board in CI
            pytest.skip("update tests run on mps2-an386; AIOT_HIL_UPDATE_ALL=1 runs every board with [update]")
        if not shutil.which("arm-none-eabi-gcc"):
            pytest.skip("arm-none-eabi-gcc not installed (make setup)")
        from aiot.lifecycle.firmware import build_update_firmware

        key = P.generate_key(d / "release.pem")
        elf = build_update_firmware(board, d / "fw", model_c, public_key=P.public_key(key), trial_runs=3,
                                    flash_file=d / "flash.bin").elf
    else:
        if not os.environ.get("AIOT_HIL_UPDATE_KEY"):
            pytest.skip("set AIOT_HIL_UPDATE_KEY to the release key the board's firmware was built with")
        key, elf = Path(os.environ["AIOT_HIL_UPDATE_KEY"]), None
    from aiot.model.reference import TflmReference

    tfl = hil_model.tflite.read_bytes()
    x = hil_model.x_int8[:4]
    y = TflmReference(tfl).run(x)

    def release(version, key_file=key, **kw):
        body = P.build_container({"name": hil_model.name}, tflite=tfl, golden=list(zip(x, y)), schema=0,
                                 model_version=1, **kw)
        return P.sign(body, key_file, version=version, out=d / f"{version}.bin")

    return {"dir": d, "elf": elf, "release": release, "x": x, "y": y, "tflite": tfl}


def _open(board, kit, pytestconfig):
    from aiot.device.hil import open_device

    return open_device(board=board, elf=kit["elf"], transport=pytestconfig.getoption("--transport"),
                       port=pytestconfig.getoption("--port"), baud=pytestconfig.getoption("--baud"))


def _client(dev) -> UpdateClient:
    from aiot.device.hil import DeviceError

    up = UpdateClient(dev)
    try:
        st = up.status()
    except DeviceError as e:
        pytest.skip(f"the firmware has no update support ({e})")
    if not st.ready:
        pytest.skip("the firmware has no update region")
    return up


def test_update_trial_confirm(board, update_kit, pytestconfig):
    image = update_kit["release"]("1.1.0")
    with _open(board, update_kit, pytestconfig) as dev:
        up = _client(dev)
        up.send(image)
        up.reboot()
        st = up.status()
        assert st.trial and st.trial_boots == 1 and st.self_test == 0, st.describe()
        while up.status().trial:
            dev.infer(update_kit["x"][0])
        st = up.status()
        assert st.running_digest() == image_digest(image)[:8] and st.last_reason == 0


def test_package_from_another_key_is_refused(board, update_kit, pytestconfig):
    other = P.generate_key(update_kit["dir"] / f"other-{board.name}.pem")
    with _open(board, update_kit, pytestconfig) as dev:
        up = _client(dev)
        before = up.status()
        with pytest.raises(UpdateRefused) as e:
            up.send(update_kit["release"]("9.9.0", key_file=other))
        assert e.value.name == "WRONG_KEY"
        assert up.status().running == before.running


def test_release_with_its_plan_serves(board, update_kit, pytestconfig):
    """The suite's model shipped as data (its plan): once confirmed, the plan serves INFER,
    tflite-micro's outputs byte for byte, and INFO names the release's .tflite."""
    import zlib

    import numpy as np

    from aiot.errors import ToolkitError
    from aiot.lifecycle.plan import build_plan

    try:
        plan = build_plan(update_kit["tflite"])
    except ToolkitError as e:
        pytest.skip(f"the suite's model cannot ship as data: {e}")
    image = update_kit["release"]("1.2.0", plan=plan)
    with _open(board, update_kit, pytestconfig) as dev:
        up = _client(dev)
        up.send(image)
        up.reboot()
        while up.status().trial:
            dev.infer(update_kit["x"][0])
        st = up.status()
        assert st.running_digest() == image_digest(image)[:8] and st.serving_plan, st.describe()
        for x, y in zip(update_kit["x"], update_kit["y"]):
            np.testing.assert_array_equal(dev.infer(x).output.reshape(-1), np.asarray(y).reshape(-1))
        assert dev.info().model_hash == zlib.crc32(update_kit["tflite"])
