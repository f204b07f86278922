"""TensorFlow without its C++ start-up chatter on the user's terminal.

TensorFlow 2.21 prints absl and oneDNN lines on import whatever TF_CPP_MIN_LOG_LEVEL says;
with one training process per core (evaluate, tune --per-file) they drown the progress
bars. The text is captured at the file-descriptor level and shown only if the import fails.
"""

from __future__ import annotations

import os
import sys
import tempfile
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def captured_output() -> Iterator[list[str]]:
    """Silence C++/print chatter at the file-descriptor level; the text is kept (appended
    to the yielded list on exit) so a failure can show it."""
    sink: list[str] = []
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 1)
        os.dup2(tmp.fileno(), 2)
        try:
            yield sink
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            tmp.seek(0)
            sink.append(tmp.read().decode(errors="replace"))


def import_tensorflow():
    """``import tensorflow`` once per process, quietly; a failed import shows what TF said."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import importlib

    error: BaseException | None = None
    with captured_output() as log:
        try:
            importlib.import_module("tensorflow")
        except BaseException as e:  # shown below, once the terminal is back
            error = e
    if error is not None:
        sys.stderr.write("".join(log))
        raise error
    return sys.modules["tensorflow"]


def import_keras():
    """``import keras`` quietly: TensorFlow first through :func:`import_tensorflow` (keras
    would otherwise import it with its start-up lines on the terminal)."""
    import_tensorflow()
    import keras

    return keras
