"""What ``mammocert run`` prints: the preflight summary before judging (#35 item 15: a histogram
of the original scores, the share recalled at the operating point, warnings for suspect scores)
and the verdict table (#35 item 19: each figure in the unit of its threshold)."""

from __future__ import annotations

from harness.predictions import Prediction
from mammocert.runs import PREFLIGHT_BINS, preflight, preflight_text

NATIVE_100 = {"score_range": [0.0, 100.0], "operating_point_native": 60.0}


def ok(exam: str, score: float, condition: str = "original") -> Prediction:
    return Prediction(exam, condition, "ok", score, {"L": score}, (), 0.1, None)


def test_histogram_recall_share_and_the_native_scale():
    preds = [ok(f"E{k}", k / 10) for k in range(10)] + [
        Prediction.failed("E99", "original", "error", "crash", None),
        ok("E0", 0.95, condition="noise:dose=0.5"),  # another condition: not counted
    ]
    pf = preflight(preds, 0.6, NATIVE_100)
    assert (pf.exams, pf.scored, pf.recalled) == (11, 10, 4)
    assert pf.histogram == (1,) * PREFLIGHT_BINS and sum(pf.histogram) == pf.scored
    assert pf.recalled_share == 0.4 and pf.warnings == ()
    text = preflight_text(pf)
    assert "10 of 11 exams scored; operating point 0.6 (vendor scale: 60 on [0, 100])" in text
    assert "4 recalled (40.0%)" in text
    assert (
        preflight(preds, 0.6, {"score_range": [0.0, 1.0], "operating_point_native": 0.6}).native
        == ""
    )


def test_the_scale_mistake_shows_as_nothing_recalled():
    """A [0, 100] vendor's 60 applied to mapped scores recalled nothing; the preflight says so."""
    pf = preflight([ok(f"E{k}", k / 10) for k in range(10)], 60.0, {})
    assert pf.recalled == 0
    assert any("recalls no scored exam" in w and "score_range scale" in w for w in pf.warnings)


def test_constant_saturated_and_empty_scores_are_warned_about():
    constant = preflight([ok(f"E{k}", 0.3) for k in range(5)], 0.5, {})
    assert any("same value (0.3)" in w for w in constant.warnings)
    saturated = preflight([ok(f"E{k}", 1.0 if k < 6 else k / 20) for k in range(10)], 0.5, {})
    assert any("6 of 10 scores sit at an end" in w for w in saturated.warnings)
    assert saturated.histogram[-1] == 6  # a score of exactly 1 falls in the last bin
    none = preflight([Prediction.failed("E1", "original", "error", "x", None)], 0.5, {})
    assert none.scored == 0 and any("no exam has a valid score" in w for w in none.warnings)
    assert "0 of 1 exams scored" in preflight_text(none)


def test_the_verdict_table_shows_each_figure_in_its_thresholds_unit(capsys):
    """#35 item 19: "value 0 · violations ≤ 0 · failed" and DK-CDR-01's 0.003 against
    "value per 1000 > 3.0"."""
    from harness.results import CriterionResult, RunResults
    from mammocert.runs import print_verdict

    def row(cid, kind, value, ci, threshold, measured):
        return CriterionResult(
            cid,
            cid,
            kind,
            True,
            "failed",
            value,
            ci,
            threshold,
            10,
            "x",
            {"measured": measured},
            "",
        )

    criteria = [
        row("DK-INV-MIRROR", "invariance", 0.0, None, {"max_violations": 0}, {"violations": 1}),
        row(
            "DK-CDR-01",
            "cancer_detection_rate",
            0.0031,
            (0.002, 0.004),
            {"ratio_gte": 0.9, "value_per_1000_gt": 3.0},
            {"value": 0.0031, "ratio": 0.8, "value_per_1000": 3.1},
        ),
    ]
    results = RunResults(
        "NOT CONFORMANT", "self-test", {"id": "S", "version": "1"}, {}, {"product": "P"}, {}, {},
        "", "", criteria, {},
    )  # fmt: skip
    print_verdict(results, None)
    out = capsys.readouterr().out
    inv = next(line for line in out.splitlines() if "DK-INV-MIRROR" in line)
    assert "violations 1" in inv and "0.0 " not in inv
    cdr = next(line for line in out.splitlines() if "DK-CDR-01" in line)
    assert (
        "ratio 0.8 · value per 1000 3.1" in cdr and "0.002" not in cdr
    )  # the rate's CI: not shown
