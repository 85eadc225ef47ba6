"""The fixed perturbation grid: every chosen exam under every condition, judged like the criteria."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from vendors.mgfactory import write_package, write_set

from harness.cases.manifest import load_manifest
from harness.predictions import ORIGINAL, ExamOutput, Prediction
from harness.standard import load_standard
from mammocert.grid import (
    DEFAULT_GRID,
    DEFAULT_STANDARD,
    InvarianceCriterion,
    criteria_by_relation,
    examples_to_catch,
    judge,
    sample_exams,
    summarise,
)

DEMO = Path(__file__).resolve().parents[2] / "standards" / "demo.yaml"
LESION_R = "lesion_insertion:contrast=0.15,kind=mass,laterality=R,seed=1,size_mm=8.0"
GAMMA = "intensity:center_shift=0.0,gamma=0.8,width_scale=1.0"


def _ok(exam: str, cond: str, score: float, left: float, right: float) -> Prediction:
    return Prediction.ok(exam, cond, ExamOutput(score=score, breasts={"L": left, "R": right}), 0.1)


def test_pairs_are_judged_by_the_relations_check_and_the_standards_criterion():
    tested = criteria_by_relation(load_standard(DEMO))
    assert tested["noise"] == InvarianceCriterion("DK-DEC-NOISE", 0.0, 40, decision=True)
    assert tested["lesion_insertion"] == InvarianceCriterion("DK-LESION-01", 0.0, 30)
    assert tested["mirror"] == InvarianceCriterion("DK-INV-MIRROR", 0.02, 12)
    noise = "noise:dose=0.5,seed=1"
    preds = [
        _ok("N1", ORIGINAL, 0.30, 0.30, 0.20),
        _ok("C1", ORIGINAL, 0.80, 0.80, 0.20),
        _ok("N1", noise, 0.38, 0.38, 0.20),  # recalled at 0.35: the decision flipped
        _ok("C1", noise, 0.70, 0.70, 0.20),  # moved by 0.1, still recalled
        _ok("N1", LESION_R, 0.30, 0.30, 0.25),  # right breast rose: holds
        _ok("C1", LESION_R, 0.80, 0.80, 0.10),  # a cancer exam: not eligible, not judged
        Prediction.failed("C1", "mirror", "error", "boom", 0.1),  # a vendor fault fails the pair
        _ok("N1", "mirror", 0.30, 0.20, 0.30),
    ]
    pairs = judge(preds, {"N1": 0, "C1": 1}, tested, operating_point=0.35)
    verdict = {(p.exam_id, p.condition): p.ok for p in pairs}
    assert verdict == {
        ("N1", noise): False,
        ("C1", noise): True,
        ("N1", LESION_R): True,
        ("C1", "mirror"): False,
        ("N1", "mirror"): True,
    }
    by_rel = {s.relation: s for s in summarise(pairs, tested)}
    assert (by_rel["noise"].failed, by_rel["noise"].pairs) == (1, 2)
    assert by_rel["noise"].miss == pytest.approx(0.5**40)
    assert by_rel["lesion_insertion"].failed == 0 and by_rel["lesion_insertion"].pairs == 1
    assert 0.5 < by_rel["noise"].upper95 < 1.0


def test_examples_needed_to_catch_a_failure_rate():
    assert examples_to_catch(0.05) == 59  # 0.95^58 > 0.05 >= 0.95^59
    assert examples_to_catch(0.0) is None and examples_to_catch(1.0) == 1


def test_exams_are_spread_evenly_and_deterministically(tmp_path):
    manifest = load_manifest(write_set(tmp_path / "cases", n=10))
    assert sample_exams(manifest, 5) == ["E0000", "E0002", "E0004", "E0006", "E0008"]
    assert sample_exams(manifest, 50) == [f"E{k:04d}" for k in range(10)]


def test_default_grid_covers_every_relation_the_demo_standard_tests():
    relations = {p.relation for p in DEFAULT_GRID}
    assert relations == set(criteria_by_relation(load_standard(DEMO)))
    assert DEFAULT_STANDARD == DEMO  # the default --standard is the repository's demo standard


def _grid(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mammocert.cli", "grid", *args], capture_output=True, text=True
    )


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("grid")
    return write_package(d / "pkg"), write_set(d / "cases", n=6, spacing_mm=0.1)


@pytest.fixture(scope="module")
def tolerance_standard(tmp_path_factory) -> Path:
    """The demo standard with its display criterion judged on a score tolerance (an
    ``invariance`` criterion, as before 0.3.0): the tiny model's scores move under a gamma on every
    exam, but its decisions need not flip."""
    std = yaml.safe_load(DEMO.read_text())
    for c in std["criteria"]:
        if c["id"] == "DK-DEC-INTENSITY":
            c.clear()
            c.update(
                id="DK-INV-INTENSITY", title="Display changes keep the score", kind="invariance",
                relation="intensity", tolerance=0.05, examples=15,
                pass_if={"max_violations": 0}, mandatory=True, source="test",
            )  # fmt: skip
    path = tmp_path_factory.mktemp("std") / "tolerance.yaml"
    path.write_text(yaml.safe_dump(std, sort_keys=False))
    return path


def test_the_grid_finds_a_contrast_fragile_model_on_every_exam_and_reruns_from_its_journal(
    tiny, tolerance_standard, tmp_path
):
    """The tiny model scores the brightest block of presentation pixels: a display gamma moves it
    on every exam, while mirroring, re-encoding, metadata and image order cannot."""
    pkg, cases = tiny
    runs = []
    for k in range(2):
        out = tmp_path / f"grid{k}.json"
        run = _grid(
            "--vendor", str(pkg), "--cases", str(cases), "--exams", "4",
            "--journal", str(tmp_path / "grid.sqlite"), "--out", str(out),
            "--standard", str(tolerance_standard),
        )  # fmt: skip
        assert run.returncode == 1, run.stderr
        runs.append((run, json.loads(out.read_text())))
    (first, doc), (second, doc2) = runs
    assert doc == doc2  # the rerun is served from the journal, with the same verdicts
    assert "0 reused" in first.stderr and "0 reused" not in second.stderr
    pairs = doc["pairs"]
    verdicts: dict[str, list[bool]] = {}
    for p in pairs:
        verdicts.setdefault(p["condition"], []).append(p["ok"])
    assert verdicts[GAMMA] == [False] * 4
    for cond in ("mirror", "order:rank=23", "metadata:date_shift_days=3650,seed=1"):
        assert verdicts[cond] == [True] * 4
    assert verdicts["encoding:invert=1,syntax=jpeg2000_lossless"] == [True] * 4
    # lesions only go into the normal exams among the four (every other exam is a cancer)
    assert len(verdicts[LESION_R]) == 2
    line = next(ln for ln in first.stdout.splitlines() if ln.startswith("intensity ("))
    assert "DK-INV-INTENSITY" in line and "tolerance 0.05" in line and "examples all miss" in line
    lesion = next(ln for ln in first.stdout.splitlines() if ln.startswith("lesion_insertion ("))
    assert "DK-LESION-01" in lesion
    noise = next(ln for ln in first.stdout.splitlines() if ln.startswith("noise ("))
    assert "DK-DEC-NOISE, recall decision" in noise


@pytest.mark.parametrize(
    "args, where",
    [
        (["--condition", "blur:sigma=1"], "unknown relation 'blur'"),
        (["--condition", "noise:dose=2"], "dose must be within"),
        (["--exams", "0"], "--exams 0"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tiny, args, where):
    pkg, cases = tiny
    run = _grid("--vendor", str(pkg), "--cases", str(cases), *args)
    assert run.returncode == 2
    assert where in run.stderr and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_the_reference_vendor_is_exactly_invariant_on_every_exam_of_a_phantom_set(tmp_path):
    """Mirror, image order, metadata and JPEG 2000 with the photometric flip, on all exams (not
    Hypothesis' sample) of a small default-recipe set, through the real ONNX adapter and the
    runner's threads."""
    from harness.cases import DEFAULT_RECIPE
    from harness.cases.build import build_reference_set

    build_reference_set(DEFAULT_RECIPE, tmp_path / "cases", exams=8, workers=2)
    vendor = Path(__file__).resolve().parents[2] / "harness" / "reference" / "vendor"
    conds = ["mirror", "order:rank=23", "metadata:date_shift_days=-3650,seed=7"]
    conds.append("encoding:invert=1,syntax=jpeg2000_lossless")
    args = ["--vendor", str(vendor), "--cases", str(tmp_path / "cases"), "--exams", "8"]
    run = _grid(
        *args, *(a for c in conds for a in ("--condition", c)), "--out", str(tmp_path / "g.json")
    )
    assert run.returncode == 0, run.stdout + run.stderr
    pairs = json.loads((tmp_path / "g.json").read_text())["pairs"]
    assert len(pairs) == 32 and all(p["ok"] for p in pairs)
