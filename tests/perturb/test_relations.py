"""The registry, condition ids, their parsing, and the score checks."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.errors import UsageError
from harness.perturb import RELATIONS, apply_condition, condition_id, parse_condition
from harness.perturb.intensity import IntensityParams
from harness.perturb.lesion import LesionParams
from harness.perturb.mirror import MirrorParams
from harness.perturb.relation import check_raised, check_swapped, check_unchanged
from harness.predictions import ExamOutput, Prediction

EXPECTED_KINDS = {
    "mirror": "invariant",
    "metadata": "invariant",
    "encoding": "invariant",
    "order": "invariant",
    "intensity": "tolerance",
    "noise": "tolerance",
    "resample": "tolerance",
    "lesion_insertion": "directional",
}


def test_registry_has_every_relation_with_its_kind():
    assert {name: r.kind for name, r in RELATIONS.items()} == EXPECTED_KINDS
    for name, relation in RELATIONS.items():
        assert (
            relation.name == name and relation.params_type.relation == name and relation.expectation
        )


def test_condition_ids_are_canonical():
    assert condition_id(MirrorParams()) == "mirror"
    assert (
        condition_id(IntensityParams(gamma=0.9, width_scale=1.05))
        == "intensity:center_shift=0.0,gamma=0.9,width_scale=1.05"
    )


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(sorted(RELATIONS)).flatmap(lambda name: RELATIONS[name].strategy))
def test_condition_ids_parse_back_to_the_same_parameters(params):
    relation, parsed = parse_condition(condition_id(params))
    assert relation.name == params.relation and parsed == params


@pytest.mark.parametrize(
    "bad",
    [
        "blur:sigma=1",
        "intensity:gamma=abc",
        "intensity:zoom=1.0",
        "noise:dose=0",
        "encoding:invert=yes",
        "intensity:gamma=1.0,gamma=1.1",
    ],
)
def test_bad_condition_ids_are_one_line_usage_errors(bad):
    with pytest.raises(UsageError) as info:
        parse_condition(bad)
    assert "\n" not in str(info.value) and bad in str(info.value)


def test_apply_condition_is_the_relation_transform(exam):
    cid, transform = RELATIONS["order"].condition(RELATIONS["order"].params_type(rank=3))
    a, b = apply_condition(exam, cid), transform(exam)
    assert (
        [r.file for r, _ in a.images]
        == [r.file for r, _ in b.images]
        != [r.file for r, _ in exam.images]
    )


def test_transform_refuses_other_relations_parameters():
    with pytest.raises(TypeError):
        RELATIONS["noise"].transform(MirrorParams())


def out(score, left=None, right=None):
    breasts = {k: v for k, v in (("L", left), ("R", right)) if v is not None}
    return ExamOutput(score=score, breasts=breasts)


def test_check_unchanged():
    assert check_unchanged(out(0.5, 0.5, 0.1), out(0.5005, 0.5005, 0.1), 1e-3)[0]
    ok, detail = check_unchanged(out(0.5, 0.5, 0.1), out(0.5, 0.5, 0.3), 0.05)
    assert not ok and "breast R" in detail
    assert not check_unchanged(out(0.5), out(0.6), 0.05)[0]


def test_check_swapped():
    assert check_swapped(out(0.8, 0.8, 0.2), out(0.8, 0.2, 0.8), 1e-6)[0]
    ok, detail = check_swapped(out(0.8, 0.8, 0.2), out(0.8, 0.8, 0.2), 1e-6)
    assert not ok and "became" in detail
    assert not check_swapped(out(0.8), out(0.7), 0.05)[0]


def test_check_raised_on_the_exam_score_without_breast_scores():
    assert check_raised(out(0.2), out(0.6), 0.0)[0]
    assert not check_raised(out(0.2), out(0.2), 0.0)[0]
    assert not check_raised(out(0.2), out(0.25), 0.1)[0]


def test_check_raised_judges_the_breast_that_received_the_lesion():
    left = LesionParams(laterality="L")
    # R holds the exam maximum: a lesion seen in L cannot move a max-of-breasts exam score
    ok, detail = check_raised(out(0.5, 0.06, 0.5), out(0.5, 0.3, 0.5), 0.0, left)
    assert ok and "breast L" in detail
    ok, detail = check_raised(out(0.5, 0.06, 0.5), out(0.5, 0.06, 0.5), 0.0, left)
    assert not ok and "breast L" in detail
    # a rise in the other breast is not the lesion being seen
    assert not check_raised(out(0.5, 0.06, 0.5), out(0.7, 0.06, 0.7), 0.0, left)[0]
    ok, detail = check_raised(out(0.5, 0.06, 0.5), out(0.4, 0.3, 0.4), 0.0, left)
    assert not ok and "exam score fell" in detail
    # when the breast does not rise, that is what the evidence says (not the exam score's fall)
    ok, detail = check_raised(out(0.5, 0.06, 0.5), out(0.4, 0.05, 0.4), 0.0, left)
    assert not ok and "rise -0.01 <= required 0" in detail, detail


def test_checks_fail_without_a_score():
    failed = Prediction.failed("E1", "noise:dose=0.5,seed=0", "error", "timeout", None)
    for check in (check_unchanged, check_swapped, check_raised):
        ok, detail = check(out(0.5), failed, 1.0)
        assert not ok and "no valid exam score" in detail
