"""`mammocert standard explore`: a candidate standard over stored bundles, without a model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import mutants
import pytest
import synthetic_set
import yaml
from helpers import certify_standard

from conformance.criteria import LIVE_KINDS
from conformance.explore import (
    NEEDS_CASES,
    NEEDS_LIVE,
    RE_HELD,
    RECOMPUTED,
    SCOPED_OUT,
    explore_bundle,
    explore_bundles,
)
from harness.cases.manifest import load_manifest
from harness.predictions import write_predictions
from harness.resources import REFERENCE_VENDOR
from harness.results import read_results
from harness.standard import load_standard
from mammocert.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _write_std(path: Path, edit=None) -> Path:
    """The draft standard's prediction-only criteria, unpinned (the set is hand-made)."""
    std = yaml.safe_load((ROOT / "standards" / "dk-mammo-ai-draft.yaml").read_text())
    std.pop("reference_set", None)
    std["criteria"] = [c for c in std["criteria"] if c["kind"] not in LIVE_KINDS]
    if edit:
        edit(std)
    path.write_text(yaml.safe_dump(std, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A set, its standard, and two bundles from `mammocert evaluate`: a strong and a weak model."""
    root = tmp_path_factory.mktemp("explore")
    cases = synthetic_set.write_set(root / "cases")
    std = _write_std(root / "std.yaml")
    bundles = []
    for name, sep in (("strong", 2.2), ("weak", 0.8)):
        preds = root / f"{name}.jsonl"
        write_predictions(preds, synthetic_set.predictions(load_manifest(cases), sep))
        args = ["evaluate", "--predictions", str(preds), "--operating-point", "0.5"]
        args += ["--standard", str(std), "--cases", str(cases), "--out", str(root / name)]
        assert main(args) in (0, 1)
        bundles.append(root / name)
    return cases, std, bundles


def test_own_standard_reproduces_every_outcome_exactly(world):
    cases, std, bundles = world
    for b in bundles:
        v = explore_bundle(load_standard(b / "standard.yaml"), b, None)
        recorded = read_results(b / "results.json")
        assert {i: c.outcome for i, c in v.cells.items()} == {
            c.id: c.outcome for c in recorded.criteria
        }
        assert {c.how for c in v.cells.values()} == {RE_HELD}
        assert v.verdict == recorded.verdict


def test_a_stricter_threshold_is_held_to_the_recorded_measurement(world, tmp_path):
    cases, _, bundles = world
    strong = read_results(bundles[0] / "results.json")
    auc = next(c for c in strong.criteria if c.id == "DK-AUC-01")
    assert auc.outcome == "passed"
    lower = auc.evidence["measured"]["ci_lower"]

    def stricter(std):
        for c in std["criteria"]:
            if c["id"] == "DK-AUC-01":
                c["pass_if"] = {"ci_lower_gte": round(lower + 0.01, 4)}

    cand = load_standard(_write_std(tmp_path / "c.yaml", stricter))
    v = explore_bundle(cand, bundles[0], None)
    assert v.cells["DK-AUC-01"].outcome == "failed" and v.cells["DK-AUC-01"].how == RE_HELD
    assert v.verdict == "NOT CONFORMANT"


def test_a_changed_measurement_is_recomputed_from_predictions_or_named(world, tmp_path):
    cases, _, bundles = world

    def other_level(std):
        for c in std["criteria"]:
            if c["id"] == "DK-AUC-01":
                c["ci"] = {**c.get("ci", {}), "level": 0.99}

    cand = load_standard(_write_std(tmp_path / "c.yaml", other_level))
    assert explore_bundle(cand, bundles[0], None).cells["DK-AUC-01"].how == NEEDS_CASES
    cell = explore_bundle(cand, bundles[0], cases).cells["DK-AUC-01"]
    assert cell.how == RECOMPUTED and cell.outcome in ("passed", "failed")


def test_a_new_live_criterion_needs_a_live_run_and_leaves_the_verdict_open(world, tmp_path):
    _, _, bundles = world
    draft = yaml.safe_load((ROOT / "standards" / "dk-mammo-ai-draft.yaml").read_text())
    live = next(c for c in draft["criteria"] if c["kind"] in LIVE_KINDS and c["mandatory"])

    def add_live(std):
        std["criteria"].append(live)

    cand = load_standard(_write_std(tmp_path / "c.yaml", add_live))
    v = explore_bundle(cand, bundles[0], None)
    assert v.cells[live["id"]].how == NEEDS_LIVE and v.cells[live["id"]].outcome is None
    # the strong model passes every prediction-only mandatory criterion here, or the verdict is
    # already NOT CONFORMANT; either way a live criterion is never guessed as passed
    assert v.verdict in ("UNDETERMINED", "NOT CONFORMANT")


def test_a_criterion_scoped_to_other_products_is_not_applicable(world, tmp_path):
    """`applies_to` in the candidate, judged from what the bundle records the product receives:
    a tensor package is out of DK-REJ-01's scope, so the verdict does not wait for a live run."""
    _, _, bundles = world
    draft = yaml.safe_load((ROOT / "standards" / "dk-mammo-ai-draft.yaml").read_text())
    rej = next(c for c in draft["criteria"] if c["id"] == "DK-REJ-01")
    assert rej["applies_to"] == {"inputs": ["dicom"]} and rej["mandatory"]
    cand = load_standard(_write_std(tmp_path / "c.yaml", lambda s: s["criteria"].append(rej)))
    tensors = tmp_path / "tensor-package"
    shutil.copytree(bundles[0], tensors)
    doc = json.loads((tensors / "results.json").read_text(encoding="utf-8"))
    doc["vendor"]["harness_checks_input"] = True  # as an ONNX run records it
    (tensors / "results.json").write_text(json.dumps(doc), encoding="utf-8")
    own = explore_bundle(load_standard(bundles[0] / "standard.yaml"), tensors, None)
    scoped = explore_bundle(cand, tensors, None)
    assert (scoped.cells["DK-REJ-01"].outcome, scoped.cells["DK-REJ-01"].how) == (
        "not_applicable",
        SCOPED_OUT,
    )
    assert scoped.verdict == own.verdict != "UNDETERMINED"
    # a predictions file says nothing of what a product receives: the criterion needs a run
    unknown = explore_bundle(cand, bundles[0], None)
    assert unknown.cells["DK-REJ-01"].how == NEEDS_LIVE


def test_cli_matrix_and_auc_sweep(world, tmp_path, capsys):
    cases, std, bundles = world
    out = tmp_path / "x"
    args = ["standard", "explore", str(std), *map(str, bundles), "--cases", str(cases)]
    args += ["--sweep", "DK-AUC-01.ci_lower_gte=0.80:0.95:0.05", "--out", str(out)]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "sweep DK-AUC-01.ci_lower_gte" in printed
    doc = json.loads((out / "explore.json").read_text())
    curve = doc["sweeps"][0]["curve"]
    assert [p["value"] for p in curve] == [0.8, 0.85, 0.9, 0.95]
    for k in range(2):  # a stricter threshold never turns a failed vendor into a passed one
        outcomes = [p["vendors"][k]["outcome"] for p in curve]
        assert outcomes == sorted(outcomes, key=lambda o: o != "passed")
    weak = [p["vendors"][1]["outcome"] for p in curve]
    assert weak == ["failed"] * 4  # the weak model (separation 0.8 SD) passes no AUC bar here


def test_bad_sweep_is_one_line(world, capsys):
    _, std, bundles = world
    args = ["standard", "explore", str(std), str(bundles[0]), "--sweep", "DK-AUC-01=0.8"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "CRITERION.PASS_KEY=FROM:TO:STEP" in err and err.count("\n") == 1


@pytest.fixture(scope="module")
def base_and_mutant(certify_setup, tmp_path_factory):
    """Certify bundles of the shipped reference vendor and of its constant-score mutant
    (tests/mutants.py) on the small built set, under the demo standard cut to the mutant's
    criteria (both prediction-only, so each run is the set's predictions and no more)."""
    d = tmp_path_factory.mktemp("explore-mutant")
    cases = certify_setup / "cases"
    spec = mutants.by_name("constant")
    std = certify_standard(
        ROOT / "standards" / "demo.yaml", cases, lambda c: c["id"] in spec.must_fail,
        d / "std.yaml",
    )  # fmt: skip
    for name, s in (("base", None), (spec.name, spec)):
        mutants.mutant_bundle(s, REFERENCE_VENDOR, std, cases, d / name, "certify")
    return cases, std, d / "base", d / spec.name, spec


def test_matrix_and_auc_sweep_of_the_reference_vendor_and_a_mutant(base_and_mutant, tmp_path):
    cases, std, base, mutant, spec = base_and_mutant
    out = tmp_path / "x"
    args = ["standard", "explore", str(std), str(base), str(mutant), "--cases", str(cases)]
    args += ["--sweep", "DK-AUC-01.value_gte=0.80:0.95:0.01", "--out", str(out)]
    assert main(args) == 0
    doc = json.loads((out / "explore.json").read_text())
    # one product and version: the columns are told apart by their bundle folders
    assert [b["name"] for b in doc["bundles"]] == [
        "RefDetect 3.0.0 (base)",
        "RefDetect 3.0.0 (constant)",
    ]
    ref, bad = doc["bundles"]
    for cid in spec.must_fail:  # the matrix: the mutant fails what it is built to fail
        assert ref["criteria"][cid]["outcome"] == "passed", cid
        assert bad["criteria"][cid]["outcome"] == "failed", cid
        assert {ref["criteria"][cid]["how"], bad["criteria"][cid]["how"]} == {RE_HELD}
    assert (ref["verdict"], bad["verdict"]) == ("CONFORMANT", "NOT CONFORMANT")

    # the sweep: each vendor passes exactly the thresholds at or below its recorded AUC
    curve = doc["sweeps"][0]["curve"]
    assert len(curve) == 16 and curve[0]["value"] == 0.8 and curve[-1]["value"] == 0.95
    for k, bundle in enumerate((base, mutant)):
        auc = next(c for c in read_results(bundle / "results.json").criteria if c.id == "DK-AUC-01")
        for point in curve:
            want = "passed" if auc.value >= point["value"] else "failed"
            assert point["vendors"][k]["outcome"] == want, (bundle.name, point, auc.value)
    base_curve = {p["vendors"][0]["outcome"] for p in curve}
    assert base_curve == {"passed", "failed"}  # the reference vendor's AUC lies inside the sweep


def test_bundles_of_one_product_are_told_apart_by_folder_then_path(world, tmp_path):
    _, std, bundles = world
    cand = load_standard(std)
    plain = explore_bundle(cand, bundles[0], None).name
    other = shutil.copytree(bundles[0], tmp_path / "region" / "installed")
    names = [v.name for v in explore_bundles(cand, [bundles[0], other, bundles[1]], None)]
    assert names[:2] == [f"{plain} (strong)", f"{plain} (installed)"]
    assert names[2] == explore_bundle(cand, bundles[1], None).name  # another product: as it is
    again = shutil.copytree(bundles[0], tmp_path / "elsewhere" / "strong")
    names = [v.name for v in explore_bundles(cand, [bundles[0], again], None)]
    assert names == [f"{plain} ({bundles[0]})", f"{plain} ({again})"]
