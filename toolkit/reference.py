"""Golden reference: TFLite Micro's own Python interpreter (reference kernels).

Never tf.lite.Interpreter: it runs XNNPACK and may differ from TFLM by 1 LSB."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import ToolkitError


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
            raise ToolkitError(f"tflite-micro could not load the model: {e}") from e
        self.input_details = self._interp.get_input_details(0)
        self.output_details = self._interp.get_output_details(0)
        self.input_shape = tuple(int(d) for d in self.input_details["shape"])
        self.output_shape = tuple(int(d) for d in self.output_details["shape"])

    def invoke(self, x: np.ndarray) -> np.ndarray:
        """One inference; ``x`` is int8 with the input tensor's shape (or flat)."""
        x = np.asarray(x, dtype=np.int8).reshape(self.input_shape)
        self._interp.set_input(x, 0)
        self._interp.invoke()
        return np.array(self._interp.get_output(0), copy=True)

    def run(self, xs: np.ndarray) -> np.ndarray:
        """Many inferences; ``xs`` has shape (N, ...) and the result (N, *output_shape)."""
        return np.stack([self.invoke(x) for x in np.asarray(xs)])
