"""Metrics on tiny hand-made cases whose answers were worked out by hand (see comments)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from aiot.evaluate import incidents as inc
from aiot.evaluate.metrics import (
    Confusion,
    confusion,
    nab_file_score,
    nab_normalized,
    nab_probation_rows,
    normal_phases,
    runs,
    scaled_sigmoid,
)


def test_runs_finds_contiguous_ones_inclusive():
    assert runs([0, 1, 1, 0, 1, 0, 0, 1]) == [(1, 2), (4, 4), (7, 7)]
    assert runs([1, 1]) == [(0, 1)]
    assert runs([0, 0]) == []
    assert runs([]) == []


def test_confusion_and_skab_rates_by_hand():
    #          rows: 0  1  2  3  4  5  6  7
    labels = [0, 0, 1, 1, 1, 0, 0, 0]
    alerts = [0, 1, 0, 1, 1, 1, 0, 0]
    c = confusion(labels, alerts)
    # TP rows 3,4; FP rows 1,5; FN row 2; TN rows 0,6,7
    assert (c.tp, c.fp, c.tn, c.fn) == (2, 2, 3, 1)
    assert c.f1 == pytest.approx(2 / 3.5)  # TP / (TP + (FP + FN) / 2)
    assert c.far == pytest.approx(2 / 5)  # FP / (FP + TN)
    assert c.mar == pytest.approx(1 / 3)  # FN / (FN + TP)


def test_skab_pools_counts_over_files_not_averages():
    a = confusion([0, 0, 1, 1, 1, 0, 0, 0], [0, 1, 0, 1, 1, 1, 0, 0])
    b = confusion([1, 1], [1, 1])
    pooled = a + b
    assert (pooled.tp, pooled.fp, pooled.tn, pooled.fn) == (4, 2, 3, 1)
    assert pooled.f1 == pytest.approx(4 / 5.5)  # 0.7273, not the mean of per-file F1 (0.7857)


def test_false_alarms_split_by_phase_by_hand():
    #          rows: 0  1  2  3  4  5  6  7  8  9 10 11
    labels = [0, 0, 0, 1, 1, 0, 0, 1, 0, 0, 0, 0]
    alerts = [1, 0, 1, 1, 0, 1, 1, 0, 1, 1, 0, 0]
    ph = normal_phases(labels, alerts)
    # before the first fault: rows 0,1,2 (alerts 0,2); between: rows 5,6 (both); after: 8..11 (8,9)
    got = {k: (v.rows, v.alerting) for k, v in ph.items()}
    assert got == {"before_fault": (3, 2), "between_faults": (2, 2), "after_fault": (4, 2), "no_fault_in_file": (0, 0)}
    c = confusion(labels, alerts)
    assert sum(v.alerting for v in ph.values()) == c.fp and sum(v.rows for v in ph.values()) == c.fp + c.tn
    assert ph["after_fault"].share == 0.5 and ph["no_fault_in_file"].share is None
    # counting from row 2 (commissioning rows 0..1 left out): phases still follow the whole file
    late = normal_phases(labels, alerts, start=2)
    assert (late["before_fault"].rows, late["before_fault"].alerting) == (1, 1)
    assert (late["after_fault"].rows, late["between_faults"].rows) == (4, 2)
    # a file without faults: every normal row is in the last phase
    quiet = normal_phases([0, 0, 0], [0, 1, 0])
    assert (quiet["no_fault_in_file"].rows, quiet["no_fault_in_file"].alerting) == (3, 1)
    assert quiet["before_fault"].rows == 0
    with pytest.raises(ValueError, match="length"):
        normal_phases([0, 1], [0])


def test_rates_are_none_when_undefined():
    c = confusion([0, 0, 0], [0, 0, 0])
    assert c.mar is None and c.f1 is None and c.far == 0.0
    assert Confusion().far is None


def test_confusion_rejects_length_mismatch():
    with pytest.raises(ValueError, match="length"):
        confusion([0, 1], [0, 1, 1])


def test_scaled_sigmoid_landmarks_from_nab_docs():
    # NAB documents: -1 -> 0.98661, -0.5 -> 0.84828, 0 -> 0, 1 -> -0.98661, >= 3 -> -1
    assert scaled_sigmoid(-1.0) == pytest.approx(0.98661, abs=1e-5)
    assert scaled_sigmoid(-0.5) == pytest.approx(0.84828, abs=1e-5)
    assert scaled_sigmoid(0.0) == 0.0
    assert scaled_sigmoid(1.0) == pytest.approx(-0.98661, abs=1e-5)
    assert scaled_sigmoid(3.0) == -1.0


def test_nab_probation_length():
    assert nab_probation_rows(20) == 3  # floor(0.15 * 20)
    assert nab_probation_rows(100_000) == 750  # capped at 0.15 * 5000


def test_nab_one_window_tp_and_two_false_positives_by_hand():
    # 20 rows, one window rows 10..14 (width 5), no probation.
    alerts = np.zeros(20, int)
    alerts[[2, 12, 13, 16]] = 1
    s = nab_file_score(alerts, [(10, 14)])
    # row 12: pos = -(14-12+1)/5 = -0.6 -> 2/(1+e^-3)-1 = 0.905148, / 0.986614 = 0.917428
    # row 13: a later detection in the same window, ignored
    # row 2:  before any window -> -1 * 0.11
    # row 16: pos = |16-14| / (5-1) = 0.5 -> 2/(1+e^2.5)-1 = -0.848284, * 0.11 = -0.093311
    assert s.raw == pytest.approx(0.917428 - 0.11 - 0.093311, abs=1e-5)
    assert (s.null, s.perfect, s.windows, s.windows_detected, s.false_positives) == (-1.0, 1.0, 1, 1, 2)
    assert nab_normalized([s]) == pytest.approx(100 * (0.714117 + 1) / 2, abs=1e-3)


def test_nab_first_row_of_window_is_perfect_and_silence_is_null():
    alerts = np.zeros(20, int)
    alerts[10] = 1
    assert nab_normalized([nab_file_score(alerts, [(10, 14)])]) == pytest.approx(100.0)
    assert nab_normalized([nab_file_score(np.zeros(20, int), [(10, 14)])]) == pytest.approx(0.0)


def test_nab_probation_ignores_early_detections_and_windows():
    alerts = np.zeros(20, int)
    alerts[[1, 2]] = 1  # inside the 3 probationary rows: neither FP nor TP
    s = nab_file_score(alerts, [(0, 2), (10, 14)], probation_rows=3)
    assert s.windows == 1  # the (0, 2) window lies wholly inside probation
    assert s.raw == pytest.approx(-1.0)  # only the missed (10, 14) window counts
    assert s.false_positives == 0


def test_nab_far_false_positive_costs_full_weight_and_pools_files():
    alerts = np.zeros(30, int)
    alerts[[4, 29]] = 1
    # window 3..4 (width 2): row 4 is its last row -> pos = -1/2 -> 2/(1+e^-2.5)-1 = 0.848284 / 0.986614 = 0.859793
    # row 29: pos = |29-4| / (2-1) = 25 >= 3 -> -1 * 0.11
    a = nab_file_score(alerts, [(3, 4)])
    assert a.raw == pytest.approx(0.859793 - 0.11, abs=1e-5)
    b = nab_file_score(np.zeros(10, int), [(5, 6)])  # missed: -1
    # pooled: (0.749793 - 1 + 2) / (2 + 2)
    assert nab_normalized([a, b]) == pytest.approx(100 * (0.749793 - 1 + 2) / 4, abs=1e-3)


def test_nab_without_windows_is_undefined():
    assert nab_normalized([nab_file_score(np.ones(5, int), [])]) is None


def test_nab_rejects_overlapping_windows():
    with pytest.raises(ValueError, match="disjoint"):
        nab_file_score(np.zeros(10, int), [(2, 5), (5, 7)])


def test_incidents_detected_missed_and_delay():
    labels = [0, 1, 1, 1, 0, 0, 1, 1, 0, 0]
    alerts = [0, 0, 0, 1, 1, 0, 0, 0, 0, 1]
    ts = np.arange(10) * 10.0
    got = inc.incidents(labels, alerts, ts)
    assert [(i.start, i.end, i.detected, i.first_alert, i.delay_rows) for i in got] == [
        (1, 3, True, 3, 2),
        (6, 7, False, None, None),
    ]
    assert got[0].delay_s == 20.0


def test_alerts_true_false_and_sensors():
    labels = [0, 1, 1, 1, 0, 0, 1, 1, 0, 0]
    alerts = [0, 0, 0, 1, 1, 0, 0, 0, 0, 1]
    scores = np.zeros((10, 3))
    scores[3] = [1.0, 0.6, 0.1]
    scores[4] = [1.0, 0.2, 0.1]  # means over the alert: 1.0, 0.4, 0.1 -> only 'a' >= half of 1.0
    scores[9] = [0.1, 0.6, 0.6]  # ties keep column order
    got = inc.alerts(labels, alerts, scores, ["a", "b", "c"])
    assert [(a.start, a.end, a.true, a.incidents, a.sensors) for a in got] == [
        (3, 4, True, [0], ["a"]),
        (9, 9, False, [], ["b", "c"]),
    ]


def test_alerts_without_labels_are_all_false():
    got = inc.alerts(None, [1, 1, 0, 1])
    assert [(a.start, a.end, a.true) for a in got] == [(0, 1, False), (3, 3, False)]
    assert math.isclose(len(got), 2)


# -- an incident is detected only by an alert that STARTS near it (issue 19) -----------------
# rows:   0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15
LABELS = [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0]


def test_an_alert_that_started_long_before_the_onset_detects_nothing_and_is_false():
    # one latched alert rows 1..9: it covers the incident 6..9 but started 5 rows before its
    # onset; with a tolerance of 2 rows only starts in [4, 9] count -> missed, and a false alert
    alerts = [0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    (i,) = inc.incidents(LABELS, alerts, tolerance_rows=2)
    assert (i.detected, i.first_alert, i.delay_rows) == (False, None, None)
    (a,) = inc.alerts(LABELS, alerts, tolerance_rows=2)
    assert (a.start, a.end, a.true, a.incidents) == (1, 9, False, [])


def test_an_alert_starting_within_the_tolerance_before_the_onset_detects_it_with_a_negative_delay():
    # alert starts row 4 = onset 6 - 2: inside [6 - 2, 9] -> detected, delay -2 rows (-20 s)
    alerts = [0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    ts = np.arange(16) * 10.0
    (i,) = inc.incidents(LABELS, alerts, ts, tolerance_rows=2)
    assert (i.detected, i.first_alert, i.delay_rows, i.delay_s) == (True, 4, -2, -20.0)
    (a,) = inc.alerts(LABELS, alerts, tolerance_rows=2)
    assert (a.true, a.incidents) == (True, [0])
    # one row earlier (row 3) is outside the tolerance: missed and false
    early = [0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    assert not inc.incidents(LABELS, early, tolerance_rows=2)[0].detected
    assert not inc.alerts(LABELS, early, tolerance_rows=2)[0].true


def test_an_alert_starting_after_the_incident_ended_is_false_and_a_late_start_inside_detects():
    # alert 1 starts row 8 (inside 6..9): detects with delay 2; alert 2 starts row 12 (after end 9): false
    alerts = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0, 1, 1, 0, 0]
    (i,) = inc.incidents(LABELS, alerts, tolerance_rows=0)
    assert (i.detected, i.first_alert, i.delay_rows) == (True, 8, 2)
    assert [(a.start, a.true) for a in inc.alerts(LABELS, alerts, tolerance_rows=0)] == [(8, True), (12, False)]


def test_the_default_tolerance_is_small_and_recorded():
    assert 0 <= inc.DEFAULT_TOLERANCE_ROWS <= 10
    # the 58 h case: an alert on since row 0, an incident labelled far later, on the default tolerance
    labels = np.zeros(1000, int)
    labels[900:950] = 1
    alerts = np.ones(1000, int)
    assert not inc.incidents(labels, alerts)[0].detected
    assert [a.true for a in inc.alerts(labels, alerts)] == [False]


def test_one_alert_detects_one_incident_even_when_the_next_onset_is_within_the_tolerance():
    # incidents 2..3 and 6..7; alert starts row 3 (inside the first). Tolerance 5 would reach
    # back to row 1 from onset 6, but not past the first incident's end (3): window 4..7
    labels = [0, 0, 1, 1, 0, 0, 1, 1, 0, 0]
    alerts = [0, 0, 0, 1, 1, 1, 1, 1, 0, 0]
    got = inc.incidents(labels, alerts, tolerance_rows=5)
    assert [(i.detected, i.first_alert) for i in got] == [(True, 3), (False, None)]
    assert [(a.true, a.incidents) for a in inc.alerts(labels, alerts, tolerance_rows=5)] == [(True, [0])]


# -- an early warning: an alert up to a lead time before a labelled onset ---------------------
# Labels often mark the failure itself (a BROKEN row, the end of a run to failure): an alert
# raised hours before, while the fault develops, is the catch a user wants, not a false alarm.
TS10 = np.arange(16) * 10.0  # LABELS' rows 10 s apart: onset 6 at t = 60 s


def test_with_a_lead_an_alert_starting_that_long_before_the_onset_detects_it():
    # lead 30 s: starts at t >= 30 (row 3) detect; tolerance 2 rows alone would stop at row 4
    at3 = [0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    (i,) = inc.incidents(LABELS, at3, TS10, tolerance_rows=2, lead_s=30.0)
    assert (i.detected, i.first_alert, i.delay_rows, i.delay_s) == (True, 3, -3, -30.0)
    (a,) = inc.alerts(LABELS, at3, tolerance_rows=2, timestamps=TS10, lead_s=30.0)
    assert (a.true, a.incidents) == (True, [0])
    # row 2 (t = 20 s, 40 s before the onset) is beyond the lead: missed, and a false alert
    at2 = [0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    assert not inc.incidents(LABELS, at2, TS10, tolerance_rows=2, lead_s=30.0)[0].detected
    assert [a.true for a in inc.alerts(LABELS, at2, tolerance_rows=2, timestamps=TS10, lead_s=30.0)] == [False]
    # without a lead, the same alert at row 3 is false (the default: labels are the onset)
    assert not inc.incidents(LABELS, at3, TS10, tolerance_rows=2)[0].detected


def test_the_lead_rows_are_the_normal_rows_within_the_lead_before_each_onset():
    assert inc.lead_rows(LABELS, TS10, 30.0).nonzero()[0].tolist() == [3, 4, 5]
    assert not inc.lead_rows(LABELS, TS10, 0.0).any()
    # never back into the previous incident (2..3): a lead of 100 s from onset 6 stops at row 4
    two = [0, 0, 1, 1, 0, 0, 1, 1, 0, 0]
    assert inc.lead_rows(two, np.arange(10) * 10.0, 100.0).nonzero()[0].tolist() == [0, 1, 4, 5]
    (_, second) = inc.incidents(two, [0, 0, 0, 0, 1, 1, 1, 0, 0, 0], np.arange(10) * 10.0, lead_s=100.0)
    assert (second.detected, second.first_alert) == (True, 4)
    # a clock that stepped back is a time reset: the lead does not reach across it
    ts = np.array([0, 10, 20, 30, 5, 15, 25, 35, 45, 55], float)  # reset after row 3; onset row 8 at t = 45
    lab = [0, 0, 0, 0, 0, 0, 0, 0, 1, 1]
    assert inc.lead_rows(lab, ts, 1000.0).nonzero()[0].tolist() == [4, 5, 6, 7]


def test_lead_rows_are_neither_normal_nor_fault_in_the_row_metrics():
    from aiot.evaluate.metrics import confusion, normal_phases

    labels = np.array(LABELS)
    alerts = np.array([0, 1, 0, 0, 1, 1, 1, 1, 0, 0, 0, 1, 0, 0, 0, 0])
    lead = inc.lead_rows(labels, TS10, 30.0)  # rows 3, 4, 5
    c = confusion(labels, alerts, ignore=lead)
    # rows 4, 5 alert in the lead: not false alarms; row 1 and row 11 are; rows 3..5 not counted as normal
    assert (c.tp, c.fp, c.tn, c.fn) == (2, 2, 7, 2)
    phases = normal_phases(labels, alerts, ignore=lead)
    assert sum(p.alerting for p in phases.values()) == c.fp
    assert sum(p.rows for p in phases.values()) == c.fp + c.tn
    assert confusion(labels, alerts) == confusion(labels, alerts, ignore=np.zeros(16, bool))
