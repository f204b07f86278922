"""The validation harness that picks the evaluation settings without benchmark test rows:
SKAB-shaped pseudo-installations cut from normal data, with injected, labelled faults."""

from __future__ import annotations

import numpy as np

from toolkit.data import Series
from toolkit.evaluate.tuning import SHAPE, pseudo_installations


def _normal(rows: int = 2400, channels: int = 3) -> Series:
    rng = np.random.default_rng(7)
    v = 10.0 + rng.standard_normal((rows, channels))
    return Series(np.arange(rows, dtype=float), v, np.ones(v.shape, bool), None, [f"s{i}" for i in range(channels)])


def test_each_piece_has_one_labelled_fault_where_the_shape_says():
    normal = _normal()
    pieces = pseudo_installations(normal)
    f0, f1 = SHAPE[0] + SHAPE[1], SHAPE[0] + SHAPE[1] + SHAPE[2]
    assert len(pieces) == (normal.rows - sum(SHAPE)) // 250 + 1
    for k, rec in enumerate(pieces):
        s = rec.series
        assert s.rows == sum(SHAPE)
        assert s.labels[:f0].sum() == 0 and s.labels[f0:f1].all() and s.labels[f1:].sum() == 0
        clean = normal.slice(250 * k, 250 * k + sum(SHAPE)).values
        changed = np.flatnonzero(np.abs(s.values - clean).max(axis=0) > 0)
        assert sorted(changed.tolist()) == sorted(rec.meta["channels"])
        # no change outside the fault without recovery: commissioning and the rows after it are the normal data
        assert np.array_equal(s.values[:f0], clean[:f0]) and np.array_equal(s.values[f1:], clean[f1:])


def test_recovery_fades_the_fault_out_after_its_label_and_changes_nothing_before():
    normal = _normal()
    plain = pseudo_installations(normal)
    faded = pseudo_installations(normal, recovery=True)
    f0, f1 = SHAPE[0] + SHAPE[1], SHAPE[0] + SHAPE[1] + SHAPE[2]
    for p, r in zip(plain, faded):
        assert np.array_equal(p.series.labels, r.series.labels)
        assert np.array_equal(p.series.values[:f1], r.series.values[:f1])  # same faults up to the label's end
        c = r.meta["channels"][0]
        after = np.abs(r.series.values[f1:, c] - p.series.values[f1:, c])
        if r.meta["kind"] in ("step", "ramp"):  # the offset left at the end decays to (nearly) nothing
            # row f1 carries the full offset (2..5 sigma), then it decays with a 30..120-row time constant
            assert after[0] > 1.0
            assert after[-1] <= after[0] * np.exp(-(len(after) - 1) / 120.0) * 1.001
            assert after[-1] >= after[0] * np.exp(-(len(after) - 1) / 30.0) * 0.999
        else:  # extra noise fades: the first rows after the fault are noisier than the last
            assert after[:20].mean() > after[-20:].mean()
