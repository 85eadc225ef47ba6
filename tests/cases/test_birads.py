"""v2 sets (issue #30): BI-RADS lesions and pixel readers are opt-in; v1 recipes are unchanged."""

from collections import Counter

import numpy as np
import pytest
import yaml

from harness.cases import DEFAULT_RECIPE
from harness.cases.build import planned_manifest
from harness.cases.population import plan_exams
from harness.cases.readers import calibrate_pixels, read_exam
from harness.cases.recipe import load_recipe
from harness.errors import RecipeError, UsageError
from harness.resources import DEMO_STANDARD, resource

V2 = resource("reference_cases", "default-v2.yaml")
# manifest digest of `default.yaml --exams 4` as built before the v2 models existed (main 91fcb92)
DEFAULT_4_DIGEST = "sha256:9627caf9ca9c42dfd9fcca6e317e4a53503f4f4cd5616b0e24f2649b8094bd8c"


def test_default_recipe_builds_the_same_set(default_set):
    m = default_set(4)  # the default recipe built with 4 exams (once per session)
    assert m.digest == DEFAULT_4_DIGEST
    assert "lesion_model" not in m.extra["generator"]


@pytest.mark.slow
def test_default_recipe_builds_the_demo_standards_set(default_set):
    # The whole default set: the demo standard (and the shipped certification of the reference
    # vendor) names its digest, so rendering may get faster but never change a bit of it.
    pinned = yaml.safe_load(DEMO_STANDARD.read_text())["reference_set"]
    m = default_set(200)
    assert (m.id, m.digest) == (pinned["id"], pinned["digest"])


def test_v2_recipes_load_and_opt_in():
    for name in ("default-v2.yaml", "train-v2.yaml", "full-v2.yaml"):
        r = load_recipe(resource("reference_cases", name))
        assert (r.lesion_model, r.reader_model) == ("birads", "pixels")
    v1 = load_recipe(DEFAULT_RECIPE)
    assert (v1.lesion_model, v1.reader_model) == ("v1", "v1")


def _write(tmp_path, mutate):
    data = yaml.safe_load(V2.read_text())
    mutate(data)
    p = tmp_path / "r.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


def test_pixel_readers_need_birads_lesions(tmp_path):
    with pytest.raises(RecipeError, match="reader_model"):
        load_recipe(_write(tmp_path, lambda d: d.update(lesion_model="v1")))


def test_planned_manifest_refuses_pixel_readers():
    with pytest.raises(UsageError, match="reader_model: pixels"):
        planned_manifest(V2, exams=10)


def test_descriptor_proportions_planned():
    """The drawn descriptors follow the cited/assumed tables (harness/cases/birads.py)."""
    plans = plan_exams(load_recipe(V2).with_overrides(exams=8000))
    cancers = [p.lesion for p in plans if p.label]
    kinds = Counter(c.kind for c in cancers)
    n = len(cancers)
    for kind, share in {"mass": 0.484, "calcification": 0.313, "asymmetry": 0.172}.items():
        assert abs(kinds[kind] / n - share) < 0.03, kind  # Kayhan 2016
    masses = [c.desc for c in cancers if c.kind == "mass"]
    circ = np.mean([d["margin"] == "circumscribed" for d in masses])
    assert 0.09 < circ < 0.15  # a realistic minority of cancers is circumscribed
    assert np.mean([d["shape"] == "irregular" for d in masses]) > 0.5
    calcs = [c.desc for c in cancers if c.kind == "calcification"]
    assert {d["calc_morphology"] for d in calcs} == {"fine_pleomorphic", "fine_linear_branching"}
    assert {d["calc_distribution"] for d in calcs} == {"grouped", "linear", "segmental"}
    benign = [p.lesion for p in plans if p.truth == "benign"]
    bm = [b.desc for b in benign if b.kind == "mass"]
    assert all(d["margin"] == "circumscribed" and d["shape"] in ("oval", "round") for d in bm)
    assert all(
        ("fat_centre" in d["signs"]) == (d["finding"] in ("lymph_node", "hamartoma")) for d in bm
    )
    assert any("halo" in d["signs"] for d in bm)
    bc = Counter(b.desc["calc_morphology"] for b in benign if b.kind == "calcification")
    assert set(bc) == {"coarse_popcorn", "rim", "round", "vascular", "large_rod_like"}


def test_pixel_reader_calibration_hits_the_targets():
    """Thresholds fitted on suspicions (no pixels needed) give the Danish rates, and reads drawn
    from the model reproduce them within sampling error."""
    rng = np.random.default_rng(7)
    n_can, n_non = 6000, 24000
    s0 = np.concatenate([rng.normal(5.0, 1.5, n_can), rng.normal(0.0, 1.0, n_non)])
    y = np.r_[np.ones(n_can, int), np.zeros(n_non, int)]
    model = calibrate_pixels(
        s0,
        y,
        reader_sensitivity=0.637,
        reader_specificity=0.978,
        consensus_sensitivity=0.739,
        consensus_specificity=0.979,
    )
    assert model.note == ""
    exp = model.expected
    assert abs(exp["reader_sensitivity"] - 0.637) < 1e-4
    assert abs(exp["reader_specificity"] - 0.978) < 1e-4
    assert abs(exp["consensus_sensitivity"] - 0.739) < 1e-4
    assert abs(exp["consensus_specificity"] - 0.979) < 1e-4
    reads = [read_exam(model, s, None, np.random.default_rng(k))[0] for k, s in enumerate(s0)]
    r1 = np.array([r["reader1"] for r in reads])
    cons = np.array([r["consensus"] for r in reads])
    # 6000 cancers: SE ~0.006; 24000 non-cancers: SE ~0.001
    assert abs(r1[y == 1].mean() - 0.637) < 0.025
    assert abs(1 - r1[y == 0].mean() - 0.978) < 0.004
    assert abs(cons[y == 1].mean() - 0.739) < 0.025
    assert abs(1 - cons[y == 0].mean() - 0.979) < 0.004
    # readers' errors are correlated through the shared exam difficulty
    r2 = np.array([r["reader2"] for r in reads])
    assert 0 < model.rho < 1
    assert np.corrcoef(r1[y == 1], r2[y == 1])[0, 1] > 0.05
