"""PACS mode end to end: Orthanc as the region's PACS routes the exams (Lua OnStoredInstance) to
the reference node, the node stores its reports in Orthanc, the harness finds (C-FIND) and
retrieves (C-GET) them; the scores equal direct mode's and the ONNX adapter's."""

from __future__ import annotations

from pathlib import Path

import pytest
from dicom_testkit import deidentified_set, free_port, orthanc, write_dicom_package
from helpers import require_tool
from vendors.mgfactory import write_package

from harness.cases.manifest import load_manifest
from harness.dicomnet import pacs, scu
from harness.reference.dicom_node import ReferenceDicomNode
from harness.runner import run_predictions
from harness.vendors import load_vendor_package, open_adapter
from harness.vendors.dicom_adapter import DicomAdapter

pytestmark = pytest.mark.external


def _predict(pkg_dir: Path, ref_set: Path, evidence: Path, timeout_s: float):
    adapter = DicomAdapter(load_vendor_package(pkg_dir), evidence_dir=evidence)
    try:
        return run_predictions(
            adapter, load_manifest(ref_set), progress=False, timeout_s=timeout_s + 5
        ), adapter
    finally:
        adapter.close()


def test_pacs_mode_equals_direct_mode_and_onnx(tmp_path):
    require_tool("Orthanc", "apt-get install orthanc")
    ref_set = deidentified_set(tmp_path / "set", n=4)
    onnx_pkg = load_vendor_package(write_package(tmp_path / "onnx"))
    onnx = open_adapter(onnx_pkg)
    try:
        want = run_predictions(onnx, load_manifest(ref_set), progress=False)
    finally:
        onnx.close()

    node_port, direct_listen = free_port(), free_port()
    scorer = open_adapter(onnx_pkg)
    try:
        with orthanc(
            tmp_path / "orthanc",
            aet="REGION_PACS",
            node=("REF_NODE", node_port),
            harness_ae="MAMMOCERT",
        ) as pacs_port:
            # The node returns its reports to the PACS; the harness never talks to the node.
            with ReferenceDicomNode(
                scorer, node_port, "REF_NODE", f"REGION_PACS@127.0.0.1:{pacs_port}"
            ):
                via_pacs, adapter = _predict(
                    write_dicom_package(
                        tmp_path / "pacs_pkg",
                        node_port=node_port,
                        pacs=("REGION_PACS", pacs_port),
                        timeout_s=30,
                    ),
                    ref_set,
                    tmp_path / "ev_pacs",
                    30,
                )
                # The PACS holds each exam (4 MG) plus the node's report, under the re-randomised study.
                study = adapter.evidence("E0001")[0]["study_uid"]
                series = pacs.find_series(
                    scu.Peer("REGION_PACS", "127.0.0.1", pacs_port), "MAMMOCERT", study
                )
                assert sorted(s.modality for s in series) == ["MG", "SR"]
                assert study not in {str(ds.StudyInstanceUID) for ds in _originals(ref_set)}
            # Direct mode against the same node (results pushed to the harness's SCP).
            with ReferenceDicomNode(scorer, node_port, "REF_NODE", f"MAMMOCERT@:{direct_listen}"):
                direct, _ = _predict(
                    write_dicom_package(
                        tmp_path / "direct_pkg",
                        node_port=node_port,
                        listen_port=direct_listen,
                        timeout_s=30,
                    ),
                    ref_set,
                    tmp_path / "ev_direct",
                    30,
                )
    finally:
        scorer.close()
    for a, b, c in zip(via_pacs, direct, want, strict=True):
        assert a.status == b.status == "ok", (a.error, b.error)
        assert a.exam_id == b.exam_id == c.exam_id
        assert a.score == pytest.approx(c.score, abs=1e-9) and b.score == pytest.approx(
            c.score, abs=1e-9
        )
        assert a.breasts == pytest.approx(dict(c.breasts), abs=1e-9)
        assert b.breasts == pytest.approx(dict(c.breasts), abs=1e-9)
        assert sorted((f.file, f.x, f.y) for f in a.findings) == sorted(
            (f.file, f.x, f.y) for f in c.findings
        )
    # ... and so the conformance verdict is the same through the PACS, directly and in-process.
    verdicts = [
        _verdict(ref_set, preds, onnx_pkg.operating_point) for preds in (via_pacs, direct, want)
    ]
    assert verdicts[0] == verdicts[1] == verdicts[2]


def _verdict(ref_set: Path, predictions, operating_point: float):
    """Outcomes and values of every prediction-only criterion of the draft standard."""
    from conformance.context import EvaluationContext
    from conformance.criteria import LIVE_KINDS, evaluate
    from harness.results import verdict_of
    from harness.standard import load_standard

    std = load_standard(
        Path(__file__).resolve().parents[2] / "standards" / "dk-mammo-ai-draft.yaml"
    )
    ctx = EvaluationContext(
        std, load_manifest(ref_set), list(predictions), operating_point, {}, "self-test"
    )
    results = [
        evaluate(c, ctx) for c in std.criteria if c.kind not in LIVE_KINDS and c.kind != "latency"
    ]
    return verdict_of(results), [(r.id, r.outcome, r.value) for r in results]


def _originals(ref_set: Path):
    from pydicom import dcmread

    return [dcmread(p, stop_before_pixels=True) for p in sorted(ref_set.glob("E*/*.dcm"))]
