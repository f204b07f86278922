"""One module per CLI verb; each defines a click command named `command`.

Parameter types shared by the verbs live here: an output path is checked when the command
line is parsed, so a run that would fail to write its result fails before its work, not
after a 15-minute tuning run or a whole benchmark."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

#: Every seed option: numpy and TensorFlow take 0 .. 2**32 - 1.
SEED = click.IntRange(0, 2**32 - 1)


class FloatRange(click.FloatRange):
    """click's FloatRange without NaN: 'nan' is a float that no bound compares false with, so
    click let --hours nan through to a traceback."""

    def convert(self, value, param, ctx):
        v = super().convert(value, param, ctx)
        if v != v:
            self.fail(f"{value} is not a number in the range {self._describe_range()}.", param, ctx)
        return v


class OutPath(click.ParamType):
    """A path the command will write: a folder (``kind="dir"``) or a file (``kind="file"``).
    The folder must exist or be possible to make, and must take a file: it is made and
    probed with a temporary file, then the probe and every folder made for it are removed,
    so a run that stops later leaves nothing behind. Converts to :class:`Path`."""

    name = "path"

    def __init__(self, kind: str = "dir"):
        if kind not in ("dir", "file"):
            raise ValueError(f"OutPath kind must be 'dir' or 'file', not {kind!r}")
        self.kind = kind

    def convert(self, value, param, ctx) -> Path:
        path = Path(value).expanduser()
        if self.kind == "dir" and path.exists() and not path.is_dir():
            self.fail(f"'{path}' is a file; give a folder (it is made when missing)", param, ctx)
        if self.kind == "file" and path.is_dir():
            self.fail(f"'{path}' is a folder; give the path of the file to write", param, ctx)
        folder = path if self.kind == "dir" else path.parent
        missing = [p for p in (folder, *folder.parents) if not p.exists()]
        try:
            folder.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=folder, prefix=".aiot-write-probe-"):
                pass
        except OSError as e:
            reason = e.strerror or str(e)
            where = f"'{e.filename}'" if e.filename else f"'{folder}'"
            self.fail(f"cannot write to '{folder}': {reason} ({where}); choose a writable "
                      + ("folder" if self.kind == "dir" else "file path"), param, ctx)
        finally:  # a check, not a side effect: the verb makes its folders when it writes
            for p in missing:  # innermost first
                try:
                    p.rmdir()
                except OSError:
                    pass
        return path

    def __repr__(self) -> str:
        return f"OutPath({self.kind!r})"



class Seconds(click.ParamType):
    """A duration in seconds: a finite number above zero (NaN, inf, 0 and negatives are
    refused; a NaN deadline would never pass)."""

    name = "seconds"

    def convert(self, value, param, ctx) -> float:
        try:
            v = float(value)
        except (TypeError, ValueError):
            self.fail(f"'{value}' is not a number of seconds", param, ctx)
        if not (v > 0 and v != float("inf")):
            self.fail(f"{value} is not a duration: give a finite number of seconds above 0", param, ctx)
        return v


SECONDS = Seconds()
