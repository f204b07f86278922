"""The ceiling diagnosis's selection on hand-made per-file confusions (answers by hand)."""

from __future__ import annotations

import pytest

from lab.ceiling import best_within, group_of, leave_one_group_out
from aiot.evaluate.metrics import Confusion

# three settings on four files in two folders; Confusion(tp, fp, tn, fn)
A = {"knob": "a"}
B = {"knob": "b"}
C = {"knob": "c"}
RESULTS = [
    # a: quiet everywhere, low recall
    (A, {"v/1.csv": Confusion(2, 0, 10, 8), "v/2.csv": Confusion(2, 0, 10, 8),
         "o/1.csv": Confusion(5, 0, 10, 5), "o/2.csv": Confusion(5, 0, 10, 5)}),
    # b: good on v, noisy on o
    (B, {"v/1.csv": Confusion(9, 1, 9, 1), "v/2.csv": Confusion(9, 1, 9, 1),
         "o/1.csv": Confusion(9, 5, 5, 1), "o/2.csv": Confusion(9, 5, 5, 1)}),
    # c: good on o, noisy on v
    (C, {"v/1.csv": Confusion(9, 4, 6, 1), "v/2.csv": Confusion(9, 4, 6, 1),
         "o/1.csv": Confusion(8, 1, 9, 2), "o/2.csv": Confusion(8, 1, 9, 2)}),
]


def test_best_within_budget_pools_then_picks():
    # pooled: a tp 14 fp 0 tn 40 fn 26 -> F1 14/27 = 0.519, FAR 0
    #         b tp 36 fp 12 tn 28 fn 4 -> F1 36/44 = 0.818, FAR 12/40 = 0.30
    #         c tp 34 fp 10 tn 30 fn 6 -> F1 34/42 = 0.810, FAR 10/40 = 0.25
    knobs, c = best_within(RESULTS, 0.25)
    assert knobs is C and (c.tp, c.fp, c.tn, c.fn) == (34, 10, 30, 6)
    assert best_within(RESULTS, 0.30)[0] is B  # the budget is inclusive
    assert best_within(RESULTS, 0.10)[0] is A
    assert best_within([(B, RESULTS[1][1])], 0.10) is None


def test_ties_go_to_the_earlier_setting():
    same = RESULTS[0][1]
    assert best_within([(A, same), (B, dict(same))], 0.5)[0] is A


def test_leave_one_group_out_picks_on_the_other_folders_only():
    logo = leave_one_group_out(RESULTS, 0.10)
    # held out o: on v, b has FAR 2/20 = 0.10 (within) and F1 18/20; o under b: tp 18 fp 10 tn 10 fn 2
    # held out v: on o, c has FAR 2/20 = 0.10 and F1 16/19; v under c: tp 18 fp 8 tn 12 fn 2
    assert logo["folds"]["o"]["pick"] is B and logo["folds"]["v"]["pick"] is C
    assert logo["folds"]["o"]["held_out"]["fp"] == 10 and logo["folds"]["v"]["held_out"]["fp"] == 8
    p = logo["pooled"]
    assert (p["tp"], p["fp"], p["tn"], p["fn"]) == (36, 18, 22, 4)
    assert p["far"] == pytest.approx(18 / 40)  # what transfer costs: each pick is noisy on the other folder


def test_a_fold_with_no_setting_in_budget_says_so():
    logo = leave_one_group_out(RESULTS[1:], 0.05)
    assert all(f["pick"] is None and "no setting" in f["note"] for f in logo["folds"].values())
    assert logo["pooled"]["tp"] == 0


def test_group_is_the_folder():
    assert group_of("valve1/3.csv") == "valve1" and group_of("x.csv") == ""


@pytest.mark.parametrize("args, message", [
    (["--set", "max_recal_step"], "FIELD=NUMBER"),
    (["--set", "max_recal_step=off"], "FIELD=NUMBER"),
    (["--transfer-budget", "0"], "--far-budget is a percentage"),
    (["--far-budget", "100"], "--far-budget is a percentage"),
])
def test_cli_argument_errors_stop_before_any_work(tmp_path, capsys, args, message):
    from lab.ceiling import main

    with pytest.raises(SystemExit) as e:
        main([str(tmp_path / "no-skab"), *args])
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_cli_without_skab_is_a_one_line_error(tmp_path, capsys):
    from lab.ceiling import main

    assert main([str(tmp_path / "no-skab"), "--per-file"]) == 2
    err = capsys.readouterr().err
    assert "no-skab" in err and "Traceback" not in err
