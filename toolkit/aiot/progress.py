"""Small progress reporting for long steps (stderr, so stdout stays parseable).

How much is said follows the verb's -q / -v (0 quiet, 1 normal, 2 verbose), kept in the
environment (AIOT_VERBOSITY) so that the worker processes an evaluation spawns say as much
as the command that started them."""

from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from typing import Iterator


VERBOSITY_ENV = "AIOT_VERBOSITY"


def level() -> int:
    """0 with -q (results and errors only), 1 by default, 2 with -v."""
    try:
        return int(os.environ.get(VERBOSITY_ENV, "1"))
    except ValueError:
        return 1


def note(text: str) -> None:
    """A line about what was done (the folder a verb wrote, a default it picked): not with -q."""
    if level() >= 1:
        sys.stderr.write(f"{text}\n")
        sys.stderr.flush()


def detail(text: str) -> None:
    """A line only -v shows (commands run, settings resolved)."""
    if level() >= 2:
        sys.stderr.write(f"    {text}\n")
        sys.stderr.flush()


def _tty() -> bool:
    return sys.stderr.isatty()


@contextmanager
def step(title: str) -> Iterator[None]:
    """Print ``title ...`` then ``done (Ns)`` around a block."""
    t0 = time.monotonic()
    say = level() >= 1
    if say:
        sys.stderr.write(f"==> {title} ...\n")
        sys.stderr.flush()
    yield
    if say:
        sys.stderr.write(f"    done in {time.monotonic() - t0:.1f}s\n")
        sys.stderr.flush()


class Bar:
    """A text progress bar; redraws in place on a terminal, prints every 10 % otherwise."""

    def __init__(self, total: int, label: str = "", width: int = 30):
        self.total = max(int(total), 1)
        self.label = label
        self.width = width
        self.n = 0
        self._last_decile = -1
        self._t0 = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.n = min(self.n + n, self.total)
        if level() < 1:
            return
        frac = self.n / self.total
        if _tty():
            filled = int(frac * self.width)
            sys.stderr.write(
                f"\r    {self.label} [{'#' * filled}{'.' * (self.width - filled)}] {self.n}/{self.total}"
            )
            if self.n == self.total:
                sys.stderr.write("\n")
            sys.stderr.flush()
        else:
            decile = int(frac * 10)
            if decile != self._last_decile:
                self._last_decile = decile
                sys.stderr.write(f"    {self.label} {self.n}/{self.total}\n")
                sys.stderr.flush()

    def __enter__(self) -> "Bar":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.n < self.total and _tty() and level() >= 1:
            sys.stderr.write("\n")
