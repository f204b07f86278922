"""Golden reference: TFLite Micro's own Python interpreter (reference kernels).

Never tf.lite.Interpreter: it runs XNNPACK and may differ from TFLM by 1 LSB."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from aiot.errors import ToolkitError


class TflmReference:
    """Run an int8 .tflite through tflite-micro, one input vector at a time."""

    def __init__(self, model: bytes | Path | str, arena_size: int | None = None):
        try:
            from tflite_micro.python.tflite_micro import runtime
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ToolkitError(
                "the tflite-micro package is not installed; it is the golden reference",
                hint="pip install tflite-micro (make setup does this)",
            ) from e
        data = Path(model).read_bytes() if isinstance(model, (str, Path)) else bytes(model)
        try:
            self._interp = runtime.Interpreter.from_bytes(data, arena_size=arena_size or max(len(data) * 10, 64 * 1024))
        except Exception as e:
            raise ToolkitError(
                f"tflite-micro could not load the model: {e}",
                hint="the file may be corrupt (aiot codegen --model FILE checks it), or tflite-micro has no kernel "
                     "for one of its ops: aiot's engine folds some away at compile time (SHAPE, REDUCE_PROD of a "
                     "constant shape), tflite-micro cannot; its own message above names the op") from e
        from aiot.model.tflite import parse

        g = parse(data)
        #: every input / output tensor's details, in the .tflite's order
        self.inputs = [self._interp.get_input_details(i) for i in range(len(g.inputs))]
        self.outputs = [self._interp.get_output_details(i) for i in range(len(g.outputs))]
        self.input_details, self.output_details = self.inputs[0], self.outputs[0]
        self.input_shape = tuple(int(d) for d in self.input_details["shape"])
        self.output_shape = tuple(int(d) for d in self.output_details["shape"])
        #: elements of each input / output
        self.input_sizes = [int(np.prod(d["shape"])) for d in self.inputs]
        self.output_sizes = [int(np.prod(d["shape"])) for d in self.outputs]

    def invoke(self, x: np.ndarray) -> np.ndarray:
        """One inference; ``x`` has the input tensor's type (int8; float32 for a
        float-interface model) and its shape (or is flat). A model with several inputs
        takes them flat, one after the other in the .tflite's order, and gives its outputs
        the same way (one flat array)."""
        if len(self.inputs) == 1 and len(self.outputs) == 1:
            x = np.asarray(x, dtype=self.input_details["dtype"]).reshape(self.input_shape)
            self._interp.set_input(x, 0)
            self._interp.invoke()
            return np.array(self._interp.get_output(0), copy=True)
        flat = np.asarray(x).ravel()
        if flat.size != sum(self.input_sizes):
            raise ToolkitError(f"input has {flat.size} values, the model's {len(self.inputs)} inputs take "
                               f"{' + '.join(map(str, self.input_sizes))}")
        at = 0
        for i, d in enumerate(self.inputs):
            n = self.input_sizes[i]
            self._interp.set_input(flat[at : at + n].astype(d["dtype"]).reshape(d["shape"]), i)
            at += n
        self._interp.invoke()
        return np.concatenate([np.array(self._interp.get_output(i), copy=True).ravel()
                               for i in range(len(self.outputs))])

    def run(self, xs: np.ndarray) -> np.ndarray:
        """Many inferences; ``xs`` has shape (N, ...) and the result (N, *output_shape)."""
        return np.stack([self.invoke(x) for x in np.asarray(xs)])



_ARENA_PROBE = """
import sys
from tflite_micro.python.tflite_micro import runtime
data = open(sys.argv[1], 'rb').read()
runtime.Interpreter.from_bytes(data, arena_size=int(sys.argv[2])).print_allocations()
"""


def tflm_arena_usage(model: bytes | Path | str, *, arena_size: int = 8 * 1024 * 1024) -> dict[str, int]:
    """Arena bytes tflite-micro uses for ``model``: {'total', 'head', 'tail'}.

    ``head`` is TFLM's planned tensor memory (what our static arena replaces); ``total``
    adds its persistent run-time structures. Runs in a subprocess because tflite-micro
    aborts the process on allocation failures and prints from C++."""
    import re
    import subprocess
    import sys
    import tempfile

    data = Path(model).read_bytes() if isinstance(model, (str, Path)) else bytes(model)
    with tempfile.NamedTemporaryFile(suffix=".tflite") as f:
        f.write(data)
        f.flush()
        proc = subprocess.run([sys.executable, "-c", _ARENA_PROBE, f.name, str(arena_size)],
                              capture_output=True, text=True, timeout=120)
    text = proc.stdout + proc.stderr
    out = {}
    for key in ("total", "head", "tail"):
        m = re.search(rf"Arena allocation {key} (\d+) bytes", text)
        if m:
            out[key] = int(m.group(1))
    if proc.returncode != 0 or len(out) != 3:
        raise ToolkitError(f"tflite-micro could not plan the model's arena:\n{text.strip()[-800:]}")
    return out
