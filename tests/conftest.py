"""Shared set-up for the host suite (helpers live in aiot.testing)."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Conversions committed with the suite (models/recipes.py, SEED_ENV): a fresh checkout's run
# takes the models the tests convert from there instead of running the TFLite converter.
os.environ.setdefault("AIOT_TFLITE_SEED_DIR", os.path.join(os.path.dirname(__file__), "fixtures", "converted"))


import pytest  # noqa: E402


@pytest.fixture
def silent_device(monkeypatch):
    """Replace the evaluation's devices with one that never alerts, so a test checks the
    plumbing around it; returns the list of (target, package, rule, knobs, firmware) each
    device was built with, in order."""
    import numpy as np

    from aiot.evaluate import pipeline
    from aiot.evaluate.device import Outputs

    built: list[tuple] = []

    class Silent:
        def __init__(self, target, package, rule, knobs, firmware):
            built.append((target, package, rule, knobs, firmware))

        def commission(self, head):
            return {}

        def stream(self, series, start):
            n = series.rows - start
            z = np.zeros(n)
            return Outputs(["normal"] * n, z, z, z.astype(np.int8), np.zeros((n, len(series.channels))))

    monkeypatch.setattr(pipeline, "make_device", Silent)
    return built


@pytest.fixture(scope="session", autouse=True)
def _worker_build_dir():
    """Parallel workers build into folders of their own (aiot.testing.worker_build_dir)."""
    from aiot.testing import worker_build_dir

    with worker_build_dir():
        yield
