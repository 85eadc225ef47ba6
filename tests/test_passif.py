"""harness.passif: one table of pass_if keys, the wording results.json carries, and the check."""

from __future__ import annotations

import math

import pytest

from harness.passif import (
    HEADLINE,
    PASS_KEYS,
    MissingMeasurement,
    check,
    describe,
    numeric_limits,
    row_figures,
)

# The wording of every key in results.json explanations; it must not change (a bundle's
# explanations, and so its signed results.json, would).
WORDING = {
    "ci_lower_gte": "ci lower ≥ 0.85",
    "ci_upper_lte": "ci upper ≤ 0.85",
    "value_gte": "value ≥ 0.85",
    "value_lte": "value ≤ 0.85",
    "noninferior": "non-inferior to the reader",
    "ratio_ci_upper_lte": "ratio ci upper ≤ 0.85",
    "ratio_ci_lower_gte": "ratio ci lower ≥ 0.85",
    "ratio_lte": "ratio ≤ 0.85",
    "ratio_gte": "ratio ≥ 0.85",
    "value_per_1000_gt": "value per 1000 > 0.85",
    "max_gap": "significant gap ≤ 0.85",
    "localised_fraction_gte": "localised fraction ≥ 0.85",
    "max_invalid_fraction": "invalid fraction ≤ 0.85",
    "min_distinct_scores": "distinct scores ≥ 0.85",
    "max_violations": "violations ≤ 0.85",
    "max_auc_drop": "auc drop ≤ 0.85",
    "max_sensitivity_drop": "sensitivity drop ≤ 0.85",
    "max_abs_diff_lte": "max abs diff ≤ 0.85",
    "p50_lte_s": "p50 s ≤ 0.85",
    "p95_lte_s": "p95 s ≤ 0.85",
    "min_rejected_fraction": "rejected fraction ≥ 0.85",
    "max_flip_fraction": "flip fraction ≤ 0.85",
    "flip_ci_upper_lte": "flip ci upper ≤ 0.85",
    "min_response_fraction": "response fraction ≥ 0.85",
    "response_ci_lower_gte": "response ci lower ≥ 0.85",
}


@pytest.mark.parametrize("key", sorted(PASS_KEYS))
def test_wording_of_every_key(key):
    assert describe({key: 0.85}) == WORDING[key]


def test_several_clauses_and_integers_as_written():
    assert describe({"ci_lower_gte": 0.85, "value_per_1000_gt": 3.0}) == (
        "ci lower ≥ 0.85 and value per 1000 > 3.0"
    )
    assert describe({"max_violations": 0}) == "violations ≤ 0"


def test_check_passes_and_names_what_failed():
    assert check({"ci_lower_gte": 0.8}, {"ci_lower": 0.81}) == (True, [])
    ok, failed = check(
        {"ci_lower_gte": 0.85, "value_gte": 0.5, "noninferior": True},
        {"ci_lower": 0.8123456, "value": 0.9, "noninferior": False},
    )
    assert not ok
    assert failed == [
        "ci lower = 0.8123 is not ≥ 0.85",
        "non-inferiority to the reader is not shown",
    ]
    assert check({"value_per_1000_gt": 3}, {"value_per_1000": 3}) == (
        False,
        ["value per 1000 = 3 is not > 3"],
    )


@pytest.mark.parametrize("measured", [{}, {"ci_lower": math.nan}, {"ci_lower": None}])
def test_a_missing_measurement_is_reported(measured):
    with pytest.raises(MissingMeasurement, match="'ci_lower' needed by pass_if.ci_lower_gte"):
        check({"ci_lower_gte": 0.8}, measured)


def test_an_unknown_key_cannot_be_checked_but_is_described():
    with pytest.raises(ValueError, match="pass_if.value_about"):
        check({"value_about": 1}, {"value": 1})
    assert describe({"value_about": True}) == "value_about: yes"
    assert describe(None) == "—"


def test_numeric_limits():
    assert numeric_limits({"p50_lte_s": 1, "p95_lte_s": 2}) == {"p50": 1.0, "p95": 2.0}
    assert numeric_limits({"value_gte": 0.9, "ci_lower_gte": 0.85}) == {"reference": 0.9}
    assert numeric_limits({"max_gap": 0.05, "noninferior": True, "odd": 3}) == {}


def _figure(v):
    return "—" if v is None else f"{v:g}"


@pytest.mark.parametrize("key", sorted(PASS_KEYS))
def test_every_row_shows_the_figure_its_threshold_is_held_to(key):
    """#35 item 19: a row's measured figure is in the unit of its threshold, for every key. The
    headline value differs from every other quantity here, so showing it instead would fail."""
    quantity = PASS_KEYS[key].quantity
    measured = {"value": 0.003, "ci_lower": 0.001, "ci_upper": 0.005, quantity: 7.25}
    if quantity in HEADLINE:
        measured = {"value": 0.003, "ci_lower": 0.001, "ci_upper": 0.005}
    target = 1.0
    if PASS_KEYS[key].op == "is":
        target = measured[quantity] = True
    text, with_ci = row_figures({key: target}, measured["value"], measured, _figure)
    if quantity in HEADLINE:  # the value, with its CI beside it
        assert (text, with_ci) == ("0.003", True)
    elif PASS_KEYS[key].op == "is":
        assert text == f"{quantity.replace('_', ' ')} yes" and not with_ci
    else:
        assert text == f"{quantity.replace('_', ' ')} 7.25" and not with_ci


def test_rows_of_the_reported_contradictions():
    # invariance: the largest score change (0) under "violations <= 0"
    text, with_ci = row_figures(
        {"max_violations": 0}, 0.0, {"value": 0.0, "violations": 1}, _figure
    )
    assert (text, with_ci) == ("violations 1", False)
    # DK-CDR-01: 0.003 against "value per 1000 > 3.0"
    cdr = {"value": 0.00312, "ratio": 0.85, "value_per_1000": 3.12}
    text, with_ci = row_figures({"ratio_gte": 0.9, "value_per_1000_gt": 3.0}, 0.00312, cdr, _figure)
    assert (text, with_ci) == ("ratio 0.85 · value per 1000 3.12", False)
    # a bound on the value and on another quantity: both, the value's CI beside
    recall = {"value": 0.04, "ratio": 1.05}
    text, with_ci = row_figures({"ratio_lte": 1.1, "value_lte": 0.05}, 0.04, recall, _figure)
    assert (text, with_ci) == ("0.04 · ratio 1.05", True)
    # not evaluated: no measurements, the recorded value
    assert row_figures({"max_violations": 0}, None, None, _figure) == ("—", True)
