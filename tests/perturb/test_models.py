"""Relations end to end with two toy models: one that reads presentation pixels by their DICOM
attributes (conformant) and one that reads raw stored values by position (the shortcut the
relations exist to catch). The checks must pass the first and fail the second."""

from __future__ import annotations

import numpy as np
import pytest

from harness.exam_input import ExamInput
from harness.perturb import RELATIONS, apply_condition, parse_condition
from harness.predictions import ExamOutput

TOL = 1e-9


def presentation_model(exam: ExamInput, present) -> ExamOutput:
    """Breast score = brightest 1 % of its views' presentation pixels; exam = max breast."""
    sides: dict[str, list[float]] = {}
    for _, ds in exam.images:
        p = present(ds)
        sides.setdefault(str(ds.ImageLaterality), []).append(float(np.percentile(p, 99)))
    breasts = {k: max(v) for k, v in sides.items()}
    return ExamOutput(score=max(breasts.values()), breasts=breasts)


def raw_positional_model(exam: ExamInput) -> ExamOutput:
    """Looks at stored values, and takes the first two images as the left breast."""
    means = [float(ds.pixel_array.mean()) / 4095 for _, ds in exam.images]
    breasts = {"L": max(means[:2]), "R": max(means[2:])}
    return ExamOutput(score=max(breasts.values()), breasts=breasts)


@pytest.mark.parametrize(
    "condition",
    [
        "mirror",
        "metadata:date_shift_days=5,seed=1",
        "order:rank=9",
        "encoding:invert=1,syntax=rle_lossless",
    ],
)
def test_invariants_hold_for_a_presentation_model(condition, exam, present):
    relation = RELATIONS[condition.partition(":")[0]]
    before = presentation_model(exam, present)
    after = presentation_model(apply_condition(exam, condition), present)
    ok, detail = relation.check(before, after, TOL)
    assert ok, detail


@pytest.mark.parametrize(
    "condition", ["mirror", "order:rank=23", "encoding:invert=1,syntax=explicit_le"]
)
def test_invariants_catch_a_shortcut_model(condition, exam):
    relation = RELATIONS[condition.partition(":")[0]]
    ok, detail = relation.check(
        raw_positional_model(exam), raw_positional_model(apply_condition(exam, condition)), 1e-3
    )
    assert not ok, detail


def test_lesion_insertion_raises_a_presentation_model_score(exam, present):
    condition = "lesion_insertion:contrast=0.3,kind=mass,laterality=L,seed=0,size_mm=8.0"
    relation, params = parse_condition(condition)
    before = presentation_model(exam, present)
    after = presentation_model(apply_condition(exam, condition), present)
    ok, detail = relation.check(before, after, 0.0, params)
    assert ok, detail
    assert after.breasts["R"] == before.breasts["R"]
