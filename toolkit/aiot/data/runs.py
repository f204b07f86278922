"""Contiguous runs of flagged rows (labelled faults, alerts): the incidents a row mask holds."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def runs(mask: np.ndarray | Sequence[int]) -> list[tuple[int, int]]:
    """Contiguous runs of true values as ``(first_row, last_row)`` pairs (inclusive)."""
    m = np.asarray(mask).astype(bool).astype(np.int8)
    if m.size == 0:
        return []
    edges = np.diff(np.concatenate(([0], m, [0])))
    starts = np.nonzero(edges == 1)[0]
    stops = np.nonzero(edges == -1)[0] - 1
    return [(int(a), int(b)) for a, b in zip(starts, stops)]
