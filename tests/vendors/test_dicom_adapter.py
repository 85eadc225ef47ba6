"""The DICOM adapter in direct mode against the reference node (a real pynetdicom peer scoring
with a real ONNX package), its fault handling, and the de-identification gate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from dicom_testkit import (
    DCMTK,
    deidentified_set,
    free_port,
    make_exam,
    process,
    write_dicom_package,
)
from helpers import require_tool
from vendors.mgfactory import write_package

from harness.cases.manifest import load_manifest
from harness.errors import UsageError, VendorFault
from harness.reference.dicom_node import ReferenceDicomNode
from harness.runner import run_predictions
from harness.vendors import load_vendor_package, open_adapter
from harness.vendors.dicom_adapter import DicomAdapter


@pytest.fixture(scope="module")
def ref_set(tmp_path_factory) -> Path:
    return deidentified_set(tmp_path_factory.mktemp("set") / "set", n=4)


@pytest.fixture(scope="module")
def onnx_pkg(tmp_path_factory):
    return load_vendor_package(write_package(tmp_path_factory.mktemp("onnx") / "pkg"))


@pytest.fixture(scope="module")
def onnx_predictions(onnx_pkg, ref_set):
    adapter = open_adapter(onnx_pkg)
    try:
        return run_predictions(adapter, load_manifest(ref_set), progress=False)
    finally:
        adapter.close()


def _run_direct(
    tmp_path,
    onnx_pkg,
    ref_set,
    *,
    fault=None,
    timeout_s=20.0,
    fmt="mammography-cad-sr",
    tid1500=False,
    exam_ids=None,
):
    node_port, listen = free_port(), free_port()
    pkg = load_vendor_package(
        write_dicom_package(
            tmp_path / "dpkg", node_port=node_port, listen_port=listen, timeout_s=timeout_s, fmt=fmt
        )
    )
    onnx = open_adapter(onnx_pkg)
    node = ReferenceDicomNode(
        onnx, node_port, "REF_NODE", f"MAMMOCERT@:{listen}", tid1500=tid1500, fault=fault
    )
    node.start()
    adapter = DicomAdapter(pkg, evidence_dir=tmp_path / "evidence")
    try:
        preds = run_predictions(
            adapter,
            load_manifest(ref_set),
            progress=False,
            timeout_s=timeout_s + 5,
            exam_ids=exam_ids,
        )
    finally:
        adapter.close()
        node.stop()
        onnx.close()
    return preds, adapter


def test_direct_mode_scores_equal_the_onnx_adapter(tmp_path, onnx_pkg, ref_set, onnx_predictions):
    preds, adapter = _run_direct(tmp_path, onnx_pkg, ref_set)
    assert [p.status for p in preds] == ["ok"] * 4, [p.error for p in preds]
    for got, want in zip(preds, onnx_predictions, strict=True):
        assert got.exam_id == want.exam_id
        assert got.score == pytest.approx(want.score, abs=1e-9)
        assert got.breasts.keys() == want.breasts.keys()
        for side in want.breasts:
            assert got.breasts[side] == pytest.approx(want.breasts[side], abs=1e-9)
        # Every mark comes back on the manifest file it was made on, at the same column/row.
        key = lambda f: (f.file, f.x, f.y)  # noqa: E731
        assert [
            (f.file, f.laterality, f.view, f.x, f.y) for f in sorted(got.findings, key=key)
        ] == [(f.file, f.laterality, f.view, f.x, f.y) for f in sorted(want.findings, key=key)]
        assert [f.score for f in sorted(got.findings, key=key)] == pytest.approx(
            [f.score for f in sorted(want.findings, key=key)], abs=1e-9
        )
    cancer = [p for p in preds if p.exam_id == "E0001"][0]
    assert max(cancer.findings, key=lambda f: f.score).file.startswith("E0001/L")
    listed = adapter.evidence("E0001")
    assert [e["sop_class_uid"] for e in listed] == ["1.2.840.10008.5.1.4.1.1.88.50"]
    assert (adapter.evidence_dir / listed[0]["file"]).is_file()


def test_tid1500_results_give_the_same_scores(tmp_path, onnx_pkg, ref_set, onnx_predictions):
    preds, _ = _run_direct(tmp_path, onnx_pkg, ref_set, fmt="tid1500-sr", tid1500=True)
    assert [p.status for p in preds] == ["ok"] * 4, [p.error for p in preds]
    for got, want in zip(preds, onnx_predictions, strict=True):
        assert got.score == pytest.approx(want.score, abs=1e-9)
        assert got.breasts == pytest.approx(dict(want.breasts), abs=1e-9)


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("silent", "no Mammography CAD SR (TID 4000) within the timeout of 2s"),
        ("abort", "association aborted by REF_NODE"),
        ("malformed", "malformed or foreign result report"),
        ("wrong-study", "no Mammography CAD SR (TID 4000) within the timeout of 2s"),
        ("partial", "node reports not all algorithms succeeded (111244"),
    ],
)
def test_node_faults_are_recorded_per_exam(tmp_path, onnx_pkg, ref_set, fault, reason):
    preds, adapter = _run_direct(
        tmp_path, onnx_pkg, ref_set, fault=fault, timeout_s=2.0, exam_ids=["E0000", "E0001"]
    )
    assert len(preds) == 2
    for p in preds:
        assert p.status == "error"
        assert reason in p.error, p.error
    if fault == "wrong-study":
        # The foreign results were kept and listed, but matched no exam.
        index = [
            json.loads(line)
            for line in (adapter.evidence_dir / "evidence.jsonl").read_text().splitlines()
        ]
        assert len(index) == 2 and {e["role"] for e in index} == {"unmatched"}
        assert all(e["exam_id"] is None for e in index)


def test_node_down_makes_every_exam_an_error(tmp_path, ref_set):
    pkg = load_vendor_package(
        write_dicom_package(tmp_path / "dpkg", node_port=free_port(), listen_port=free_port())
    )
    adapter = DicomAdapter(pkg, evidence_dir=tmp_path / "ev")
    try:
        preds = run_predictions(adapter, load_manifest(ref_set), progress=False, timeout_s=30)
    finally:
        adapter.close()
    assert [p.status for p in preds] == ["error"] * 4
    assert all(
        p.error.startswith(
            "node not reachable before the run: C-ECHO: no association with REF_NODE@127.0.0.1"
        )
        for p in preds
    ), preds[0].error


def test_identifiable_data_is_refused_before_any_association(tmp_path):
    """`mammocert predict` exits 2 with one line; the node (dcmtk storescp) received nothing."""
    require_tool(f"{DCMTK}/storescp", "apt-get install dcmtk")
    from harness.cases.manifest import write_manifest

    exam = make_exam(tmp_path / "set", "E0001", identifiable=True)
    write_manifest(
        tmp_path / "set",
        {
            "schema": "mammocert/reference-set/v1",
            "id": "t",
            "version": "1",
            "exams": [
                {
                    "exam_id": "E0001",
                    "label": 0,
                    "truth": "normal",
                    "images": [
                        {
                            "file": r.file,
                            "laterality": r.laterality,
                            "view": r.view,
                            "sha256": r.sha256,
                        }
                        for r, _ in exam.images
                    ],
                }
            ],
        },
    )
    node_port = free_port()
    received = tmp_path / "received"
    received.mkdir()
    pkg = write_dicom_package(
        tmp_path / "dpkg", node_port=node_port, listen_port=free_port(), node_ae="STORESCP"
    )
    with process(
        [f"{DCMTK}/storescp", "-od", str(received), "-aet", "STORESCP", str(node_port)],
        port=node_port,
    ):
        r = subprocess.run(
            [
                sys.executable,
                "-m",
                "mammocert.cli",
                "predict",
                "--vendor",
                str(pkg),
                "--cases",
                str(tmp_path / "set"),
                "--out",
                str(tmp_path / "p.jsonl"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert r.returncode == 2, r.stderr
    err = [line for line in r.stderr.splitlines() if line.startswith("mammocert: error:")]
    assert len(err) == 1 and "not de-identified" in err[0] and "PatientIdentityRemoved" in err[0]
    assert "allow_identifiable" in err[0] and "Jensen" not in r.stderr
    assert list(received.iterdir()) == []


def test_allow_identifiable_sends_to_a_local_endpoint(tmp_path):
    require_tool(f"{DCMTK}/storescp", "apt-get install dcmtk")
    exam = make_exam(tmp_path / "set", "E0001", identifiable=True)
    node_port = free_port()
    received = tmp_path / "received"
    received.mkdir()
    pkg = load_vendor_package(
        write_dicom_package(
            tmp_path / "dpkg",
            node_port=node_port,
            listen_port=free_port(),
            node_ae="STORESCP",
            allow_identifiable=True,
            timeout_s=2,
        )
    )
    strict = DicomAdapter(
        load_vendor_package(
            write_dicom_package(tmp_path / "strict", node_port=node_port, listen_port=free_port())
        ),
        evidence_dir=tmp_path / "ev0",
    )
    try:
        with pytest.raises(UsageError, match="not de-identified"):
            strict.prepare(exam)
    finally:
        strict.close()
    with process(
        [f"{DCMTK}/storescp", "-od", str(received), "-aet", "STORESCP", str(node_port)],
        port=node_port,
    ):
        adapter = DicomAdapter(pkg, evidence_dir=tmp_path / "ev")
        try:
            prepared = adapter.prepare(exam)
            with pytest.raises(VendorFault, match="no Mammography CAD SR"):
                adapter.infer(prepared)  # storescp stores but never returns results
        finally:
            adapter.close()
    assert len(list(received.iterdir())) == 4
