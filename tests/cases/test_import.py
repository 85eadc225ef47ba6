"""`mammocert cases import`: every shipped map imports a fixture in its set's layout into a set
that `cases verify` accepts; what cannot be used is reported with why; the PS3.15 report and
`--deidentify`; and the truth stays out of every byte a vendor receives."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pydicom
import pytest
from cases.importfixtures import BUILDERS
from dicom_testkit import free_port, write_dicom_package
from helpers import require_tool
from rest_testkit import RecordingProxy
from vendors.mgfactory import write_package

from harness.cases.importer import import_set, resolve_map, shipped_maps
from harness.cases.manifest import load_manifest, verify_set
from harness.errors import UsageError
from mammocert.cli import main

KEY = bytes(range(32))
EXPECTED = {  # map -> (exams kept, truths) for its fixture
    "vindr-mammo": (2, {"screen_detected": 1, "normal": 1}),
    "rsna-screening": (3, {"screen_detected": 1, "benign": 1, "normal": 1}),
    "cmmd": (2, {"screen_detected": 1, "benign": 1}),
    "cbis-ddsm": (2, {"screen_detected": 1, "benign": 1}),
}


def _import(tmp_path: Path, name: str, **kw) -> tuple[Path, dict]:
    src, labels = BUILDERS[name](tmp_path / "src")
    out = tmp_path / kw.pop("out", "set")
    report = import_set(src, labels, resolve_map(name), out, key=KEY, **kw)
    return out, report


def test_every_shipped_map_has_a_fixture():
    assert set(shipped_maps()) == set(BUILDERS) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("deidentify", [False, True])
def test_each_shipped_map_imports_a_set_that_verifies(tmp_path, name, deidentify):
    out, report = _import(tmp_path, name, deidentify=deidentify)
    manifest = verify_set(out)  # the same contract as a built set: every file re-hashed
    kept, truths = EXPECTED[name]
    assert len(manifest.exams) == kept == report["exams"]["kept"]
    assert report["exams"]["by_truth"] == dict(sorted(truths.items()))
    assert manifest.extra["import"]["map"] == name
    for exam in manifest.exams:
        assert exam.label == int(exam.truth in ("screen_detected", "interval"))
        for image in exam.images:  # every image says its side and view in its own header
            ds = pydicom.dcmread(manifest.path(image), stop_before_pixels=True)
            assert ds.ImageLaterality == image.laterality
    if deidentify:
        assert report["deidentification"]["files_failing_send_gate"] == 0
        for exam in manifest.exams:  # one study per exam, whatever the source grouping
            studies = {
                pydicom.dcmread(manifest.path(i), stop_before_pixels=True).StudyInstanceUID
                for i in exam.images
            }
            assert len(studies) == 1


def test_vindr_boxes_and_attributes_come_from_the_tables(tmp_path):
    out, _ = _import(tmp_path, "vindr-mammo")
    cancer = next(e for e in load_manifest(out).exams if e.label == 1)
    assert cancer.attributes["density"] == "c" and cancer.attributes["age"] == 57
    assert cancer.attributes["manufacturer"] == "HOLOGIC"
    assert [(les.laterality, les.type, m.box) for les in cancer.lesions for m in les.marks] == [
        ("L", "['Mass']", (5.0, 6.0, 15.0, 18.0)),
        ("L", "['Mass']", (5.0, 6.0, 15.0, 18.0)),
    ]


def test_an_exam_with_a_missing_view_is_listed_with_why(tmp_path):
    _, report = _import(tmp_path, "vindr-mammo")
    assert report["exams"]["excluded"] == [
        {"exam_key": report["exams"]["excluded"][0]["exam_key"], "reason": "missing view(s) RMLO"}
    ]


def test_other_views_and_masks_are_skipped_with_why(tmp_path):
    _, rsna = _import(tmp_path / "r", "rsna-screening")
    assert [f["reason"].split(" (")[0] for f in rsna["files_skipped"]] == [
        "not a CC or MLO view with a side"
    ]
    _, cbis = _import(tmp_path / "c", "cbis-ddsm")
    masks = [f for f in cbis["files_skipped"] if "mask or crop" in f["reason"]]
    assert len(masks) == 3  # the ROI masks are not screening images
    # CBIS headers carry no Image Laterality: the tables said it, and the copy now says it
    assert {h["set"] for h in cbis["headers_completed"]} == {"LCC", "LMLO", "RCC"}


def test_a_file_with_a_patient_name_is_reported_and_deidentify_clears_it(tmp_path):
    _, plain = _import(tmp_path / "a", "cbis-ddsm")
    files = plain["deidentification"]["files"]
    named = {f: r for f, r in files.items() if r["send_gate"]}
    assert len(named) == 3 == plain["deidentification"]["files_failing_send_gate"]
    for r in named.values():
        assert any("PatientName holds a non-placeholder value" in p for p in r["send_gate"])
        assert {"tag": "(0010,0010)", "keyword": "PatientName", "action": "Z"} in r["profile"]
    out, clean = _import(tmp_path / "b", "cbis-ddsm", deidentify=True)
    for rel, r in clean["deidentification"]["files"].items():
        assert r["send_gate"] == []
        assert {x["action"] for x in r["profile"]} <= {"R"}  # only what the options retain
        ds = pydicom.dcmread(out / rel, stop_before_pixels=True)
        assert ds.PatientAge == "055Y"  # 57 as its five-year band
        assert "Mass-Training" not in str(ds.PatientName) + str(ds.PatientID)


def test_the_same_key_gives_the_same_set_byte_for_byte(tmp_path):
    _, a = _import(tmp_path / "a", "rsna-screening", deidentify=True)
    _, b = _import(tmp_path / "b", "rsna-screening", deidentify=True)
    assert a["digest"] == b["digest"]


@pytest.mark.external
def test_deidentified_files_pass_dciodvfy(tmp_path):
    tool = require_tool("dciodvfy")
    out, _ = _import(tmp_path, "cbis-ddsm", deidentify=True)
    for path in sorted(out.glob("E*/*.dcm")):
        res = subprocess.run([tool, str(path)], capture_output=True, text=True)
        errors = [ln for ln in (res.stdout + res.stderr).splitlines() if ln.startswith("Error")]
        assert errors == [], (path, errors)


def test_cli_imports_and_refuses_bad_input_in_one_line(tmp_path, capsys):
    src, labels = BUILDERS["cmmd"](tmp_path / "src")
    args = ["cases", "import", "--dicom", str(src), "--map", "cmmd", "--out", str(tmp_path / "o")]
    for p in labels:
        args += ["--labels", str(p)]
    assert main(args) == 0
    assert "imported 2 exams (1 benign, 1 screen_detected)" in capsys.readouterr().out
    # the same --out again: refused before any work
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "exists and is not empty" in err and err.count("\n") == 1
    bad = tmp_path / "bad.yaml"
    bad.write_text("schema: mammocert/import-map/v1\nname: x\nrows: row\n", encoding="utf-8")
    args2 = args[:]
    args2[args2.index("--map") + 1] = str(bad)
    args2[args2.index("--out") + 1] = str(tmp_path / "o2")
    assert main(args2) == 2
    err = capsys.readouterr().err
    assert "bad.yaml: rows: 'row' is not allowed" in err and err.count("\n") == 1


def test_no_usable_exam_is_a_usage_error_naming_the_reason(tmp_path):
    src, labels = BUILDERS["vindr-mammo"](tmp_path / "src")
    m = dict(resolve_map("vindr-mammo"))
    m["match"] = {**m["match"], "dicom": "SOPInstanceUID"}  # the wrong join: nothing matches
    with pytest.raises(UsageError, match="no exam could be imported"):
        import_set(src, labels, m, tmp_path / "o", key=KEY)


@pytest.mark.external
def test_no_truth_and_no_identifier_reaches_a_dicom_vendor(tmp_path):
    """The imported set sent to the reference DICOM node through a recording proxy: the wire
    carries no truth value, no exam id, no source identifier and no original UID."""
    from harness.reference.dicom_node import ReferenceDicomNode
    from harness.runner import run_predictions
    from harness.vendors import load_vendor_package, open_adapter

    out, _ = _import(tmp_path, "rsna-screening", deidentify=True)
    manifest = load_manifest(out)
    node_port, listen = free_port(), free_port()
    onnx = open_adapter(load_vendor_package(write_package(tmp_path / "onnx")))
    node = ReferenceDicomNode(onnx, node_port, "REF_NODE", f"MAMMOCERT@:{listen}")
    node.start()
    with RecordingProxy(node_port) as proxy:
        pkg = load_vendor_package(
            write_dicom_package(tmp_path / "dpkg", node_port=proxy.port, listen_port=listen)
        )
        adapter = open_adapter(pkg, evidence_dir=tmp_path / "ev", manifest=manifest)
        try:
            preds = run_predictions(adapter, manifest, progress=False, timeout_s=30)
        finally:
            adapter.close()
            node.stop()
            onnx.close()
        wire = proxy.sent
    assert [p.status for p in preds] == ["ok"] * len(manifest.exams), [p.error for p in preds]
    assert len(wire) > 10_000  # the images went through the proxy
    raw = json.loads((out / "manifest.json").read_text())
    needles = {"screen_detected", "benign", "normal", "ANONYMISED-"}
    for exam in raw["exams"]:
        needles.add(exam["exam_id"])
    for path in sorted(out.glob("E*/*.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        needles |= {str(ds.StudyInstanceUID), str(ds.SOPInstanceUID), str(ds.SeriesInstanceUID)}
    for needle in sorted(needles):
        assert needle.encode() not in wire, needle
    shutil.rmtree(tmp_path / "ev", ignore_errors=True)
