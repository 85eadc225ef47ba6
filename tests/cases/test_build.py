"""Build, determinism, verify and DICOM conformance (dciodvfy); invalid inputs are tested with
harness.perturb.invalid (tests/perturb)."""

import dataclasses
import subprocess
import sys

import pydicom
import pytest
from helpers import require_tool

from harness.cases import DEFAULT_RECIPE
from harness.cases.build import build_reference_set, planned_manifest, render_and_write
from harness.cases.devices import MANUFACTURERS
from harness.cases.population import plan_exams
from harness.cases.recipe import load_recipe


@pytest.fixture(scope="module")
def small_set(default_set):
    return default_set(4)


def test_manifest_shape(small_set):
    e = small_set.exams[0]
    assert [e.exam_id for e in small_set.exams] == ["E0001", "E0002", "E0003", "E0004"]
    assert [(i.laterality, i.view) for i in e.images] == [
        ("L", "CC"),
        ("L", "MLO"),
        ("R", "CC"),
        ("R", "MLO"),
    ]
    assert {"age", "density", "manufacturer", "lesion_type", "woman_id"} <= set(e.attributes)
    assert set(e.readers) == {"reader1", "reader2", "consensus"}
    ds = pydicom.dcmread(small_set.path(e.images[0]))
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.1.2" and ds.PatientIdentityRemoved == "YES"
    assert ds.Rows == 512


def test_deterministic_across_worker_counts(small_set, tmp_path):
    other = build_reference_set(DEFAULT_RECIPE, tmp_path / "b", exams=4, workers=1)
    assert other.digest == small_set.digest


def test_verify_detects_changed_byte(small_set, tmp_path):
    import shutil

    copy = tmp_path / "c"
    shutil.copytree(small_set.root, copy)
    ok = subprocess.run(
        [sys.executable, "-m", "mammocert.cli", "cases", "verify", str(copy)],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0 and small_set.digest in ok.stdout
    victim = copy / "E0002" / "RMLO.dcm"
    data = bytearray(victim.read_bytes())
    data[-100] ^= 1
    victim.write_bytes(bytes(data))
    bad = subprocess.run(
        [sys.executable, "-m", "mammocert.cli", "cases", "verify", str(copy)],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 1 and "E0002/RMLO.dcm" in bad.stderr and "Traceback" not in bad.stderr


def _errors(path) -> list[str]:
    exe = require_tool("dciodvfy", "apt-get install dicom3tools")
    r = subprocess.run([exe, str(path)], capture_output=True, text=True)
    return [ln for ln in (r.stdout + r.stderr).splitlines() if ln.startswith("Error")]


@pytest.mark.external
@pytest.mark.parametrize("manufacturer", MANUFACTURERS)
def test_dciodvfy_every_view_each_manufacturer(tmp_path, manufacturer):
    recipe = load_recipe(DEFAULT_RECIPE)
    plan = next(p for p in plan_exams(recipe.with_overrides(exams=10)) if p.label)
    plan = dataclasses.replace(plan, manufacturer=manufacturer)
    rec = render_and_write(recipe, plan, tmp_path)
    for im in rec["record"]["images"]:
        assert _errors(tmp_path / im["file"]) == [], im["file"]
        ds = pydicom.dcmread(tmp_path / im["file"])
        assert ds.PhotometricInterpretation == (
            "MONOCHROME1" if manufacturer == "GE" else "MONOCHROME2"
        )


@pytest.mark.external
@pytest.mark.slow
def test_dciodvfy_full_size(tmp_path):
    recipe = dataclasses.replace(load_recipe(DEFAULT_RECIPE), image_size="full")
    plan = dataclasses.replace(plan_exams(recipe.with_overrides(exams=1))[0], manufacturer="GE")
    rec = render_and_write(recipe, plan, tmp_path)
    ds = pydicom.dcmread(tmp_path / rec["record"]["images"][0]["file"])
    assert (ds.Rows, ds.Columns) == (3062, 2394)
    for im in rec["record"]["images"]:
        assert _errors(tmp_path / im["file"]) == []


def test_planned_manifest_equals_the_built_one_but_pixels(small_set):
    planned = planned_manifest(DEFAULT_RECIPE, exams=4)
    for p, b in zip(planned.exams, small_set.exams, strict=True):
        assert (p.exam_id, p.label, p.truth, p.attributes, p.readers) == (
            b.exam_id,
            b.label,
            b.truth,
            b.attributes,
            b.readers,
        )
        assert [(i.file, i.laterality, i.view) for i in p.images] == [
            (i.file, i.laterality, i.view) for i in b.images
        ]
