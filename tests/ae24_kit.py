"""The hil suite's ae24 model made ready for update tests (tests/test_rollout.py,
tests/test_lifecycle_trial.py): a release key, the model's generated C, four input vectors
and their golden outputs from tflite-micro, never from the code under test."""

from __future__ import annotations

from pathlib import Path

import numpy as np

AE24_DIR = ("hil_tests", "fixtures", "ae24")


def ae24_kit(d: Path) -> dict:
    """In folder ``d``: ``key`` (release.pem), ``model_c`` (the generated C), ``tfl`` (the
    .tflite bytes), ``x`` (4 int8 inputs of 24) and ``y`` (tflite-micro's outputs for them)."""
    from aiot.codegen import generate
    from aiot.lifecycle import package as P
    from aiot.model.reference import TflmReference
    from aiot.paths import ROOT

    ae24 = ROOT.joinpath(*AE24_DIR)
    key = P.generate_key(d / "release.pem")
    generate(ae24 / "model.tflite", d / "model-c", name="ae24")
    tfl = (ae24 / "model.tflite").read_bytes()
    x = np.load(ae24 / "vectors.npz")["x_int8"].reshape(-1, 24)[:4]
    return {"key": key, "model_c": d / "model-c", "tfl": tfl, "x": x, "y": TflmReference(tfl).run(x)}
