"""The trial period on a host-built device (the firmware's own app, monitor and update
service, docs/lifecycle.md "Trial on the device"): every run of the served model counts,
whichever path ran it. A field device that only streams its sensors through the monitor
(PUSH, never INFER) confirms its trial from the monitor's scored windows; a window the
monitor cannot score fails it (SELF_TEST); a reset before confirmation reverts it; and
AIOT_UPDATE_TRIAL_MS holds the confirmation back until that much time has passed."""

from __future__ import annotations

import numpy as np
import pytest

from ae24_kit import ae24_kit
from aiot.monitor import OUT_LEARNING, OUT_SCORE_ERROR

pytest.importorskip("imgtool")

CHANNELS, WINDOW = 3, 8
#: A monitor configured at boot with the default settings (monitor.h): 3 sensors, window 8
#: (the ae24 model's 24 inputs), as a device installed on a pump is.
MONITOR = (f"AIOT_APP_CHANNELS={CHANNELS}", f"AIOT_APP_WINDOW={WINDOW}", "AIOT_APP_PERIOD_MS=1000")
COMMISSION_SAMPLES = 360  # monitor.h's default commission_samples: no model run while commissioning
#: Model runs per scored window with the default isolation on: the window, then one probe per sensor.
RUNS_PER_WINDOW = 1 + CHANNELS
TRIAL_RUNS = 16  # the default AIOT_UPDATE_TRIAL_RUNS; the golden vectors count as the first


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    from aiot.lifecycle import package as P

    d = tmp_path_factory.mktemp("trial")
    ae = ae24_kit(d)
    key, x, y = ae["key"], ae["x"], ae["y"]  # y: tflite-micro's outputs, never the code under test's
    body = P.build_container({"name": "ae24"}, tflite=ae["tfl"], golden=list(zip(x, y)),
                             schema=P.schema_id(["a", "b", "c"], WINDOW), model_version=1)
    return {"dir": d, "key": key, "model_c": ae["model_c"], "golden": list(zip(x, y)), "tfl": ae["tfl"],
            "release": P.sign(body, key, version="1.1.0", out=d / "ae24-1.1.0.bin")}


def _firmware(kit, *defines):
    from aiot.device.host import HostFirmware
    from aiot.lifecycle import package as P

    return HostFirmware(kit["model_c"], public_key=P.public_key(kit["key"]), defines=(*MONITOR, *defines))


@pytest.fixture(scope="module")
def fw(kit):
    return _firmware(kit)  # the default trial period: AIOT_UPDATE_TRIAL_RUNS, no time


def _samples(rng, n, start):
    t = (start + np.arange(n)) * 1000
    return t, rng.normal(0.0, 1.0, (n, CHANNELS)).astype(np.float32)


def _on_trial(board, release, commission=True):
    """Send the release, reboot into its trial, commission the monitor (no model run)."""
    from aiot.device.hil import Device
    from aiot.lifecycle.client import UpdateClient

    dev = Device(board.transport())
    up = UpdateClient(dev)
    up.send(release)
    up.reboot()
    st = up.status()
    assert st.trial and st.self_test == 0 and st.trial_runs == 1 and st.trial_runs_needed == TRIAL_RUNS, st
    rng = np.random.default_rng(7)
    if not commission:
        return dev, up, rng
    out = dev.push(*_samples(rng, COMMISSION_SAMPLES, 0))
    assert (out["flags"] & OUT_SCORE_ERROR == 0).all()  # nothing failed to score
    assert up.status().trial_runs == 1  # commissioning windows do not run the model
    return dev, up, rng


def test_a_device_that_only_pushes_samples_confirms_its_trial(fw, kit):
    """No INFER at all: the monitor's scored windows are trial runs (1 + one probe per sensor
    each), and the trial confirms after the window that brings them to AIOT_UPDATE_TRIAL_RUNS."""
    from aiot.lifecycle.client import image_digest

    board = fw.power_on("p1")
    try:
        dev, up, rng = _on_trial(board, kit["release"])
        windows = -(-(TRIAL_RUNS - 1) // RUNS_PER_WINDOW)  # 4 windows of 4 runs after the golden run
        t = COMMISSION_SAMPLES
        for w in range(1, windows + 1):
            out = dev.push(*_samples(rng, WINDOW, t))
            t += WINDOW
            assert len(out) == 1 and out["flags"][0] & OUT_SCORE_ERROR == 0, out  # one scored window
            st = up.status()
            if w < windows:
                assert st.trial and st.trial_runs == 1 + w * RUNS_PER_WINDOW, (w, st)
        assert not st.trial and st.last_reason == 0 and st.running_digest() == image_digest(kit["release"])[:8], st
        board.reset()  # confirmed: it stays after a reset
        st = _status(board)
        assert not st.trial and st.running_digest() == image_digest(kit["release"])[:8], st
    finally:
        board.close()


def _status(board):
    from aiot.device.hil import Device
    from aiot.lifecycle.client import UpdateClient

    return UpdateClient(Device(board.transport())).status()


def test_a_reset_before_the_trial_confirms_reverts(fw, kit):
    from aiot.lifecycle.client import NO_SLOT

    board = fw.power_on("p2")
    try:
        dev, up, rng = _on_trial(board, kit["release"])
        dev.push(*_samples(rng, WINDOW, COMMISSION_SAMPLES))
        assert up.status().trial
        board.reset()  # a watchdog reset, a crash, a power cut
        st = _status(board)
        assert not st.trial and st.running == NO_SLOT and st.last_reason == 18, st  # TRIAL_RESET
    finally:
        board.close()


def test_a_window_the_monitor_cannot_score_fails_the_trial(fw, kit):
    """A release whose network reproduces its golden vectors (int8, bit for bit) but whose
    output quantization is not a number: every reconstruction the monitor gets is NaN, the
    window cannot be scored, and that self-check failure fails the trial at once
    (SELF_TEST): the device serves the built-in model again, with a fresh monitor."""
    import struct

    from aiot.lifecycle import package as P
    from aiot.lifecycle.client import NO_SLOT
    from aiot.lifecycle.plan import build_plan
    tfl = kit["tfl"]
    plan = bytearray(build_plan(tfl))
    struct.pack_into("<f", plan, 36, float("nan"))  # output_scale (aiot.lifecycle.plan.HEADER)
    body = P.build_container({"name": "ae24"}, tflite=tfl, golden=kit["golden"], plan=bytes(plan),
                             schema=P.schema_id(["a", "b", "c"], WINDOW), model_version=2)
    release = P.sign(body, kit["key"], version="1.2.0", out=kit["dir"] / "ae24-nan.bin")
    board = fw.power_on("p3")
    try:
        dev, up, rng = _on_trial(board, release, commission=False)
        assert up.status().serving_plan
        out = dev.push(*_samples(rng, COMMISSION_SAMPLES + WINDOW, 0))
        assert out["flags"][-1] & OUT_SCORE_ERROR, out[-1]  # the first window after commissioning
        st = up.status()
        assert not st.trial and st.running == NO_SLOT and st.last_reason == 19 and not st.serving_plan, st  # SELF_TEST
        out = dev.push(*_samples(rng, WINDOW, COMMISSION_SAMPLES + WINDOW))
        assert out["flags"][0] & OUT_LEARNING, out  # the monitor learns the built-in model's windows anew
    finally:
        board.close()


def test_a_trial_time_holds_the_confirmation_back(kit):
    """AIOT_UPDATE_TRIAL_MS: the runs alone do not confirm before that long since the trial's
    boot (an hour here, which the test never waits)."""
    board = _firmware(kit, "AIOT_UPDATE_TRIAL_MS=3600000u").power_on("p4")
    try:
        dev, up, rng = _on_trial(board, kit["release"])
        dev.push(*_samples(rng, 6 * WINDOW, COMMISSION_SAMPLES))
        st = up.status()
        assert st.trial and st.trial_runs >= TRIAL_RUNS and st.last_reason == 0, st
    finally:
        board.close()
