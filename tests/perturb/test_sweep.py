"""Severity sweeps over a fixed grid."""

from __future__ import annotations

import pytest

from harness.errors import UsageError
from harness.perturb import RELATIONS, sweep_conditions

SWEEPABLE = sorted(name for name, r in RELATIONS.items() if r.at_level is not None)


def test_default_dose_grid_is_m_synth_like():
    ids = [cid for cid, _ in sweep_conditions("noise")]
    assert ids == [f"noise:dose={d},seed=0" for d in (0.2, 0.4, 0.6, 0.8, 1.0)]


def test_the_sweepable_relations():
    assert SWEEPABLE == ["intensity", "lesion_insertion", "noise", "resample"]


@pytest.mark.parametrize("relation", SWEEPABLE)
def test_every_sweep_level_applies(relation, exam):
    conditions = sweep_conditions(relation)
    assert len(conditions) == len(RELATIONS[relation].levels)
    for _cid, transform in conditions[:2]:
        assert len(transform(exam).images) == 4


def test_custom_levels_keep_order_and_drop_repeats():
    ids = [cid for cid, _ in sweep_conditions("resample", [0.1, 0.05, 0.1])]
    assert ids == ["resample:spacing_mm=0.1", "resample:spacing_mm=0.05"]


@pytest.mark.parametrize(
    ("relation", "levels"),
    [("mirror", None), ("blur", None), ("noise", [0.0]), ("noise", []), ("intensity", [-1.0])],
)
def test_bad_sweeps_are_usage_errors(relation, levels):
    with pytest.raises(UsageError):
        sweep_conditions(relation, levels)
