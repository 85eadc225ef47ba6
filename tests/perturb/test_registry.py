"""The registry collects each module's ``RELATION``; condition ids, sweeps and the grid stay as
they were written to predictions files and journals; the schema's relation enums match it."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import pytest

from harness.perturb import RELATIONS, condition_id, parse_condition, sweep_conditions
from harness.perturb.encoding import EncodingParams
from harness.perturb.intensity import IntensityParams
from harness.perturb.lesion import LesionParams
from harness.perturb.metadata import MetadataParams
from harness.perturb.mirror import MirrorParams
from harness.perturb.noise import NoiseParams
from harness.perturb.order import OrderParams
from harness.perturb.registry import discover
from harness.perturb.resample import ResampleParams
from harness.predictions import ExamOutput
from mammocert.grid import DEFAULT_GRID

SCHEMA = Path(__file__).resolve().parents[2] / "standards" / "schema" / "standard.schema.json"

# Condition ids as the code before relations declared themselves wrote them (literals, not
# recomputed): they key journals and predictions files, so they must never drift.
FIXED_IDS = {
    MirrorParams(): "mirror",
    MetadataParams(seed=3094, date_shift_days=-1315): "metadata:date_shift_days=-1315,seed=3094",
    EncodingParams(syntax="implicit_le", invert=True): "encoding:invert=1,syntax=implicit_le",
    OrderParams(rank=7): "order:rank=7",
    IntensityParams(gamma=0.8, width_scale=0.94, center_shift=-0.06): (
        "intensity:center_shift=-0.06,gamma=0.8,width_scale=0.94"
    ),
    NoiseParams(dose=0.85, seed=280): "noise:dose=0.85,seed=280",
    ResampleParams(spacing_mm=0.065): "resample:spacing_mm=0.065",
    LesionParams(
        kind="calcification", size_mm=13.5, contrast=0.25, laterality="L", seed=1073741825
    ): "lesion_insertion:contrast=0.25,kind=calcification,laterality=L,seed=1073741825,size_mm=13.5",
}

GRID_IDS = [
    "mirror",
    "metadata:date_shift_days=3650,seed=1",
    "encoding:invert=1,syntax=jpeg2000_lossless",
    "order:rank=23",
    "intensity:center_shift=0.0,gamma=0.8,width_scale=1.0",
    "intensity:center_shift=0.0,gamma=1.25,width_scale=1.0",
    "intensity:center_shift=0.0,gamma=1.0,width_scale=0.85",
    "intensity:center_shift=0.0,gamma=1.0,width_scale=1.15",
    "intensity:center_shift=-0.1,gamma=1.0,width_scale=1.0",
    "intensity:center_shift=0.1,gamma=1.0,width_scale=1.0",
    "noise:dose=0.5,seed=1",
    "noise:dose=0.75,seed=2",
    "resample:spacing_mm=0.05",
    "resample:spacing_mm=0.1",
    "lesion_insertion:contrast=0.15,kind=mass,laterality=L,seed=1,size_mm=8.0",
    "lesion_insertion:contrast=0.15,kind=mass,laterality=R,seed=1,size_mm=8.0",
    "lesion_insertion:contrast=0.15,kind=calcification,laterality=L,seed=1,size_mm=8.0",
    "lesion_insertion:contrast=0.15,kind=calcification,laterality=R,seed=1,size_mm=8.0",
]

SWEEP_IDS = {
    "intensity": [
        f"intensity:center_shift=0.0,gamma={g},width_scale=1.0" for g in (0.8, 0.9, 1.0, 1.1, 1.25)
    ],
    "noise": [f"noise:dose={d},seed=0" for d in (0.2, 0.4, 0.6, 0.8, 1.0)],
    "resample": [f"resample:spacing_mm={s}" for s in (0.05, 0.07, 0.085, 0.1)],
    "lesion_insertion": [
        f"lesion_insertion:contrast={c},kind=mass,laterality=L,seed=0,size_mm=10.0"
        for c in (0.05, 0.1, 0.2, 0.3)
    ],
}


def test_relations_are_listed_in_their_established_order():
    assert list(RELATIONS) == [
        "mirror",
        "metadata",
        "encoding",
        "order",
        "intensity",
        "noise",
        "resample",
        "lesion_insertion",
    ]
    assert discover() == RELATIONS  # deterministic: a second discovery finds the same


def test_each_relation_is_declared_by_the_module_of_its_parameters():
    for relation in RELATIONS.values():
        module = importlib.import_module(relation.params_type.__module__)
        assert module.RELATION is relation


@pytest.mark.parametrize(("params", "cid"), list(FIXED_IDS.items()), ids=lambda v: str(v)[:20])
def test_condition_ids_are_unchanged(params, cid):
    assert condition_id(params) == cid
    assert parse_condition(cid) == (RELATIONS[params.relation], params)


def test_grid_and_sweep_conditions_are_unchanged():
    assert [condition_id(p) for p in DEFAULT_GRID] == GRID_IDS
    sweeps = {n: [c for c, _ in sweep_conditions(n)] for n, r in RELATIONS.items() if r.levels}
    assert sweeps == SWEEP_IDS


def test_only_the_mirror_swaps_sides_and_the_check_follows_it():
    assert [n for n, r in RELATIONS.items() if r.swaps_sides] == ["mirror"]
    before = ExamOutput(score=0.8, breasts={"L": 0.8, "R": 0.2})
    swapped = ExamOutput(score=0.8, breasts={"L": 0.2, "R": 0.8})
    assert RELATIONS["mirror"].check(before, swapped, 1e-6)[0]
    assert not RELATIONS["order"].check(before, swapped, 1e-6)[0]
    assert RELATIONS["mirror"].change(before, swapped)[0] == 0.0
    assert RELATIONS["order"].change(before, swapped)[0] == pytest.approx(0.6)
    lesion = LesionParams(laterality="R")
    raised = ExamOutput(score=0.8, breasts={"L": 0.8, "R": 0.3})
    assert RELATIONS["lesion_insertion"].check(before, raised, 0.0, lesion)[0]
    assert not RELATIONS["noise"].check(before, raised, 0.05)[0]


def _relation_enums(node, kind=None, found=None):
    """(criterion kind, enum) for every enum of relation names anywhere in the schema."""
    found = [] if found is None else found
    if isinstance(node, dict):
        props = node.get("properties", {})
        kind = props.get("kind", {}).get("const", kind) if isinstance(props, dict) else kind
        for key, value in node.items():
            if key == "enum" and isinstance(value, list) and set(value) & set(RELATIONS):
                found.append((kind, value))
            else:
                _relation_enums(value, kind, found)
    elif isinstance(node, list):
        for item in node:
            _relation_enums(item, kind, found)
    return found


def accepted_by(kind: str) -> set[str]:
    """The relations each criterion kind can evaluate.

    ``invariance`` draws any relation's parameters and applies its check. ``robustness_sweep``
    re-scores every exam at each severity level and bounds the AUC and sensitivity drop: that
    needs a severity (``at_level``) and a relation whose expectation is a bounded change
    (``tolerance``): an invariant relation has no severity, and a directional one (a lesion put
    into every exam, normal ones included) is meant to move the scores, so its AUC "drop" is the
    model working, not fragility. ``decision_stability`` counts flipped recall decisions under
    one severity level per exam: the same tolerance relations with a severity.
    """
    if kind == "invariance":
        return set(RELATIONS)
    if kind in ("robustness_sweep", "decision_stability"):
        return {n for n, r in RELATIONS.items() if r.kind == "tolerance" and r.at_level}
    raise AssertionError(f"the schema has an enum of relation names under {kind!r}")


def test_the_schemas_relation_enums_match_the_registry():
    enums = _relation_enums(json.loads(SCHEMA.read_text(encoding="utf-8")))
    assert sorted(kind for kind, _ in enums) == [
        "decision_stability",
        "invariance",
        "robustness_sweep",
    ]
    for kind, names in enums:
        assert len(names) == len(set(names)) and set(names) == accepted_by(kind), kind
    assert all(r.at_level for r in RELATIONS.values() if r.kind == "tolerance")
