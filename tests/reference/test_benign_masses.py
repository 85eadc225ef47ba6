"""The benign-vs-malignant mass check behind harness/reference/README.md's AUC 0.555."""

from __future__ import annotations

import dataclasses

import pytest
from vendors.mgfactory import write_set

from harness.cases import DEFAULT_RECIPE
from harness.cases.build import build_reference_set
from harness.cases.recipe import load_recipe
from harness.reference.benign_masses import main, mass_views, separability


@pytest.fixture(scope="module")
def masses(tmp_path_factory):
    """Four phantom exams: two cancers and two benign findings, all masses."""
    recipe = dataclasses.replace(
        load_recipe(DEFAULT_RECIPE),
        mix={"screen_detected": 0.5, "benign": 0.5},
        cancer_types={"mass": 1.0},
        benign_types={"mass": 1.0},
    )
    return build_reference_set(recipe, tmp_path_factory.mktemp("masses"), exams=4, workers=2)


def test_every_marked_view_of_every_mass_is_measured(masses):
    views = mass_views(masses)
    truth = {e.exam_id: e.label == 1 for e in masses.exams}
    assert len(views) == 8  # 4 masses x (CC, MLO)
    assert all(v.malignant == truth[v.exam_id] for v in views)
    assert sum(v.malignant for v in views) == 4
    assert all(v.margin in ("spiculated", "circumscribed") for v in views if v.malignant)
    assert all(v.size_mm > 2 and 0 < v.background < 1 for v in views)


def test_separability_is_deterministic_and_in_range(masses):
    first = separability(masses, masses)
    assert first == separability(masses, masses)
    assert first["train_views"] == 8 and first["lesions"] == 4 and first["malignant_lesions"] == 2
    assert 0.0 <= first["auc_per_lesion"] <= 1.0


@pytest.mark.parametrize(
    ("spacing_mm", "says"),
    [(0.1, "needs both malignant and benign masses"), (None, "no pixel spacing")],
)
def test_bad_sets_are_refused_in_one_line(tmp_path, capsys, spacing_mm, says):
    cases = write_set(tmp_path / "cases", n=4, spacing_mm=spacing_mm)
    assert main(["--train-cases", str(cases), "--cases", str(cases)]) == 2
    err = capsys.readouterr().err
    assert says in err and len(err.strip().splitlines()) == 1
