"""Conformance family 'localization': one test item per criterion of the kinds listed in
conformance.criteria.FAMILIES['localization'], parametrized from the standard by the mammocert plugin."""

from conformance.criteria import evaluate


def test_localization(criterion, conformance_ctx, record_criterion):
    outcome = record_criterion(evaluate(criterion, conformance_ctx))
    assert outcome.outcome == "passed", f"{criterion.id} {outcome.outcome}: {outcome.explanation}"
