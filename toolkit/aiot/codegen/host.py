"""Run generated model code on the host: compile model.c + the engine into a shared
library and call it through ctypes (same C as the firmware, so same bytes out)."""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Iterable

import numpy as np

from aiot.target import hostbuild
from aiot.errors import ToolkitError


class _Info(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("hash", ctypes.c_uint32),
        ("input_bytes", ctypes.c_uint32),
        ("output_bytes", ctypes.c_uint32),
        ("arena_bytes", ctypes.c_uint32),
        ("input_scale", ctypes.c_float),
        ("input_zero_point", ctypes.c_int32),
        ("output_scale", ctypes.c_float),
        ("output_zero_point", ctypes.c_int32),
        ("num_layers", ctypes.c_uint16),
    ]


class HostModel:
    """A generated model (directory with model.c/model.h) compiled for this machine."""

    def __init__(self, c_dir: Path | str, *, defines: Iterable[str] = (), extra_sources: Iterable[Path] = ()):
        from aiot.codegen import engine_sources

        c_dir = Path(c_dir)
        src = c_dir / "model.c"
        if not src.is_file():
            raise ToolkitError(f"no generated model.c in {c_dir}", hint="run aiot codegen first")
        so = hostbuild.compile_shared(
            [src, *engine_sources(), *extra_sources], name="aiotmodel", include_dirs=[c_dir], defines=defines
        )
        self.lib = hostbuild.load(so)
        self.lib.aiot_model_input.restype = ctypes.POINTER(ctypes.c_int8)
        self.lib.aiot_model_output.restype = ctypes.POINTER(ctypes.c_int8)
        self.info = _Info.in_dll(self.lib, "aiot_model_info")
        self.lib.aiot_model_reset()  # a state (SVDF) from an earlier load of the same library starts over
        self.lib.aiot_model_input_n.restype = ctypes.POINTER(ctypes.c_int8)
        self.lib.aiot_model_input_n.argtypes = [ctypes.c_uint32]
        self.lib.aiot_model_output_n.restype = ctypes.POINTER(ctypes.c_int8)
        self.lib.aiot_model_output_n.argtypes = [ctypes.c_uint32]
        n_in = ctypes.c_uint32.in_dll(self.lib, "aiot_model_num_inputs").value
        n_out = ctypes.c_uint32.in_dll(self.lib, "aiot_model_num_outputs").value
        #: elements of each input / output tensor, in the .tflite's order
        self.input_sizes = list((ctypes.c_uint32 * n_in).in_dll(self.lib, "aiot_model_input_sizes"))
        self.output_sizes = list((ctypes.c_uint32 * n_out).in_dll(self.lib, "aiot_model_output_sizes"))

    def invoke(self, x: np.ndarray) -> np.ndarray:
        """One inference on a flat (or shaped) int8 input; returns the flat int8 output. A
        model with several inputs / outputs takes and gives them one after the other, in
        the .tflite's order."""
        x = np.ascontiguousarray(np.asarray(x, dtype=np.int8).ravel())
        if x.size != self.info.input_bytes:
            raise ToolkitError(f"input has {x.size} values, the model takes {self.info.input_bytes}")
        at = 0
        for i, n in enumerate(self.input_sizes):
            ctypes.memmove(self.lib.aiot_model_input_n(i), x.ctypes.data + at, n)
            at += n
        rc = self.lib.aiot_model_invoke()
        if rc != 0:
            raise ToolkitError(f"aiot_model_invoke() returned {rc}", hint="this is an engine bug; please report it")
        return np.concatenate([np.ctypeslib.as_array(self.lib.aiot_model_output_n(i), shape=(n,)).copy()
                               for i, n in enumerate(self.output_sizes)])

    @property
    def float_input(self) -> bool:
        return hasattr(self.lib, "aiot_model_quantize_input")

    @property
    def float_output(self) -> bool:
        return hasattr(self.lib, "aiot_model_dequantize_output")

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        """float32 -> the model's int8 input, by its generated aiot_model_quantize_input."""
        n_in = self.info.input_bytes
        xf = np.ascontiguousarray(np.asarray(x, dtype=np.float32).ravel())
        if xf.size != n_in:
            raise ToolkitError(f"input has {xf.size} values, the model takes {n_in}")
        rc = self.lib.aiot_model_quantize_input(xf.ctypes.data_as(ctypes.c_void_p))
        if rc != 0:
            raise ToolkitError(f"aiot_model_quantize_input() returned {rc}", hint="this is an engine bug; please report it")
        return np.ctypeslib.as_array(self.lib.aiot_model_input(), shape=(n_in,)).copy()

    def dequantize_output(self, y: np.ndarray) -> np.ndarray:
        """The model's int8 output (``y``, e.g. what a device answered) -> float32, by its
        generated aiot_model_dequantize_output."""
        n_out = self.info.output_bytes
        y = np.ascontiguousarray(np.asarray(y, dtype=np.int8).ravel())
        if y.size != n_out:
            raise ToolkitError(f"output has {y.size} values, the model gives {n_out}")
        ctypes.memmove(self.lib.aiot_model_output(), y.ctypes.data, n_out)  # the output tensor, in the arena
        out = np.zeros(n_out, np.float32)
        rc = self.lib.aiot_model_dequantize_output(out.ctypes.data_as(ctypes.c_void_p))
        if rc != 0:
            raise ToolkitError(f"aiot_model_dequantize_output() returned {rc}", hint="this is an engine bug; please report it")
        return out

    def invoke_float(self, x: np.ndarray) -> np.ndarray:
        """One inference of a float-interface model through its generated float entry
        points: float32 in where the model takes it (else int8), and float32 out where it
        gives it (else the int8 output)."""
        y = self.invoke(self.quantize_input(x) if self.float_input else x)
        return self.dequantize_output(y) if self.float_output else y

    def run(self, xs: np.ndarray) -> np.ndarray:
        xs = np.asarray(xs)
        return np.stack([self.invoke(x) for x in xs]) if len(xs) else np.zeros((0, self.info.output_bytes), np.int8)
