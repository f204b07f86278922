"""Small progress reporting for long steps (stderr, so stdout stays parseable)."""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager
from typing import Iterator


def _tty() -> bool:
    return sys.stderr.isatty()


@contextmanager
def step(title: str) -> Iterator[None]:
    """Print ``title ...`` then ``done (Ns)`` around a block."""
    t0 = time.monotonic()
    sys.stderr.write(f"==> {title} ...\n")
    sys.stderr.flush()
    yield
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
        if self.n < self.total and _tty():
            sys.stderr.write("\n")
