"""Run generated model code on the host: compile model.c + the engine into a shared
library and call it through ctypes (same C as the firmware, so same bytes out)."""

from __future__ import annotations

import ctypes
import re
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
        # elements of the input and output (a 16x8 model's are int16: two bytes each)
        header = (c_dir / "model.h").read_text() if (c_dir / "model.h").is_file() else ""
        counts = {k: int(v) for k, v in re.findall(r"#define AIOT_MODEL_(INPUT|OUTPUT)_ELEMENTS (\d+)u", header)}
        self.lib.aiot_model_input.restype = ctypes.POINTER(ctypes.c_int8)
        self.lib.aiot_model_output.restype = ctypes.POINTER(ctypes.c_int8)
        self.info = _Info.in_dll(self.lib, "aiot_model_info")
        self.input_elements = counts.get("INPUT", self.info.input_bytes)
        self.output_elements = counts.get("OUTPUT", self.info.output_bytes)

    def invoke(self, x: np.ndarray) -> np.ndarray:
        """One inference on a flat (or shaped) int8 input; returns the flat int8 output."""
        x = np.ascontiguousarray(np.asarray(x, dtype=np.int8).ravel())
        if x.size != self.info.input_bytes:
            raise ToolkitError(f"input has {x.size} values, the model takes {self.info.input_bytes}")
        ctypes.memmove(self.lib.aiot_model_input(), x.ctypes.data, x.size)
        rc = self.lib.aiot_model_invoke()
        if rc != 0:
            raise ToolkitError(f"aiot_model_invoke() returned {rc}", hint="this is an engine bug; please report it")
        return np.ctypeslib.as_array(self.lib.aiot_model_output(), shape=(self.info.output_bytes,)).copy()

    def invoke_float(self, x: np.ndarray) -> np.ndarray:
        """One inference of a float-interface model through its generated float entry
        points: float32 in where the model takes it (else int8), and float32 out where it
        gives it (else the int8 output)."""
        n_in = self.input_elements
        if hasattr(self.lib, "aiot_model_quantize_input"):
            xf = np.ascontiguousarray(np.asarray(x, dtype=np.float32).ravel())
            if xf.size != n_in:
                raise ToolkitError(f"input has {xf.size} values, the model takes {n_in}")
            rc = self.lib.aiot_model_quantize_input(xf.ctypes.data_as(ctypes.c_void_p))
            if rc != 0:
                raise ToolkitError(f"aiot_model_quantize_input() returned {rc}", hint="this is an engine bug; please report it")
            y = self.invoke(np.ctypeslib.as_array(self.lib.aiot_model_input(), shape=(self.info.input_bytes,)).copy())
        else:
            y = self.invoke(x)
        if not hasattr(self.lib, "aiot_model_dequantize_output"):
            return y
        out = np.zeros(self.output_elements, np.float32)
        rc = self.lib.aiot_model_dequantize_output(out.ctypes.data_as(ctypes.c_void_p))
        if rc != 0:
            raise ToolkitError(f"aiot_model_dequantize_output() returned {rc}", hint="this is an engine bug; please report it")
        return out

    def run(self, xs: np.ndarray) -> np.ndarray:
        xs = np.asarray(xs)
        return np.stack([self.invoke(x) for x in xs]) if len(xs) else np.zeros((0, self.info.output_bytes), np.int8)
