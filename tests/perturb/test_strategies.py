"""Strategies draw only clinical-range parameters and shrink to the mildest perturbation."""

from __future__ import annotations

import pytest
from hypothesis import find, given, settings

from harness.perturb import RELATIONS
from harness.perturb.encoding import SYNTAXES, EncodingParams
from harness.perturb.intensity import IntensityParams
from harness.perturb.lesion import LesionParams
from harness.perturb.metadata import MetadataParams
from harness.perturb.mirror import MirrorParams
from harness.perturb.noise import NoiseParams
from harness.perturb.order import OrderParams
from harness.perturb.resample import ResampleParams, resample_params


def in_clinical_range(p) -> bool:
    if isinstance(p, IntensityParams):
        return (
            0.8 <= p.gamma <= 1.25
            and 0.85 <= p.width_scale <= 1.15
            and -0.1 <= p.center_shift <= 0.1
        )
    if isinstance(p, NoiseParams):
        return 0.5 <= p.dose <= 1.0
    if isinstance(p, ResampleParams):
        return 0.05 <= p.spacing_mm <= 0.1
    if isinstance(p, LesionParams):
        return 8.0 <= p.size_mm <= 20.0 and 0.15 <= p.contrast <= 0.35
    if isinstance(p, OrderParams):
        return 0 <= p.rank < 24
    if isinstance(p, MetadataParams):
        return abs(p.date_shift_days) <= 3650
    if isinstance(p, EncodingParams):
        return p.syntax in SYNTAXES
    return isinstance(p, MirrorParams)


@pytest.mark.parametrize("name", sorted(RELATIONS))
def test_strategy_draws_only_in_range(name):
    @settings(max_examples=200, deadline=None, database=None)
    @given(RELATIONS[name].strategy)
    def check(params):
        assert isinstance(params, RELATIONS[name].params_type)
        assert in_clinical_range(params), params

    check()


MILDEST = {
    "mirror": MirrorParams(),
    "metadata": MetadataParams(seed=0, date_shift_days=0),
    "encoding": EncodingParams(syntax="explicit_le", invert=False),
    "order": OrderParams(rank=0),
    "intensity": IntensityParams(gamma=1.0, width_scale=1.0, center_shift=0.0),
    "noise": NoiseParams(dose=1.0, seed=0),
    "resample": ResampleParams(spacing_mm=0.07),
    "lesion_insertion": LesionParams(
        kind="mass", size_mm=8.0, contrast=0.15, laterality="L", seed=0
    ),
}


@pytest.mark.parametrize("name", sorted(RELATIONS))
def test_simplest_example_is_the_mildest_perturbation(name):
    settings_ = settings(database=None, max_examples=50)
    assert find(RELATIONS[name].strategy, lambda _p: True, settings=settings_) == MILDEST[name]


def test_resample_strategy_shrinks_to_the_sets_own_spacing():
    mild = find(resample_params(0.085), lambda _p: True, settings=settings(database=None))
    assert mild == ResampleParams(spacing_mm=0.085)


def test_shrinking_finds_the_smallest_breaking_perturbation():
    # a "model" that breaks once gamma moves 5 % or more: the shrunk example sits at the boundary
    broken = find(
        RELATIONS["intensity"].strategy,
        lambda p: abs(p.gamma - 1.0) >= 0.05,
        settings=settings(database=None, max_examples=500),
    )
    assert broken == IntensityParams(gamma=1.05) or broken == IntensityParams(gamma=0.95)
