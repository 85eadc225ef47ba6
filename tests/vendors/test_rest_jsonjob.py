"""The json-job REST profile against the reference REST node (a real uvicorn server on
127.0.0.1 scoring with a real ONNX package): the same scores as the ONNX package run directly,
the vendor's native values kept, and nothing identifiable, no ground truth and no exam id on
the wire."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pydicom
import pytest
from dicom_testkit import deidentified_set
from rest_testkit import RecordingProxy
from vendors.jsonjob_kit import SCALE_RANGE, write_jsonjob_package
from vendors.mgfactory import write_package

from harness.cases.manifest import load_manifest
from harness.errors import UsageError
from harness.predictions import (
    ExamOutput,
    Finding,
    Prediction,
    prediction_from_dict,
    read_predictions,
    write_predictions,
)
from harness.reference.rest_node import ReferenceRestNode
from harness.runner import run_predictions
from harness.vendors import load_vendor_package, open_adapter


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> Path:
    return deidentified_set(tmp_path_factory.mktemp("set") / "set", n=4)


@pytest.fixture(scope="module")
def scorer(tmp_path_factory):
    adapter = open_adapter(
        load_vendor_package(write_package(tmp_path_factory.mktemp("onnx") / "pkg"))
    )
    yield adapter
    adapter.close()


@pytest.fixture(scope="module")
def onnx_predictions(scorer, cases):
    return run_predictions(scorer, load_manifest(cases), progress=False)


def run_rest(tmp_path: Path, url: str, cases: Path, **kw):
    pkg = load_vendor_package(write_jsonjob_package(tmp_path / "pkg", url, **kw))
    evidence = tmp_path / "rest-evidence"
    adapter = open_adapter(pkg, evidence_dir=evidence, manifest=load_manifest(cases))
    try:
        preds = run_predictions(adapter, load_manifest(cases), progress=False)
    finally:
        adapter.close()
    attempts = [json.loads(line) for line in (evidence / "attempts.jsonl").open()]
    return preds, attempts


@pytest.mark.parametrize(
    "mode, body, scale",
    [("sync", "multipart", "1-10"), ("async", "json", "0-100"), ("async", "multipart", "0-1")],
)
def test_scores_equal_the_onnx_package_exam_by_exam(
    tmp_path, cases, scorer, onnx_predictions, mode, body, scale
):
    with ReferenceRestNode(scorer, mode=mode, scale=scale, job_s=0.5) as node:
        preds, attempts = run_rest(tmp_path, node.url, cases, scale=scale, body=body)
    lo, hi = SCALE_RANGE[scale]
    assert [p.status for p in preds] == ["ok"] * 4, [p.error for p in preds]
    key = lambda f: (f.file, f.x, f.y)  # noqa: E731
    for got, want in zip(preds, onnx_predictions, strict=True):
        assert got.exam_id == want.exam_id
        assert got.score == pytest.approx(want.score, abs=1e-9)
        assert got.breasts == pytest.approx(dict(want.breasts), abs=1e-9)
        assert sorted((f.file, f.laterality, f.view, f.x, f.y) for f in got.findings) == sorted(
            (f.file, f.laterality, f.view, f.x, f.y) for f in want.findings
        )
        assert [f.score for f in sorted(got.findings, key=key)] == pytest.approx(
            [f.score for f in sorted(want.findings, key=key)], abs=1e-6
        )
        # The values as the node gave them, on its own scale, kept beside the mapped ones.
        assert got.native.score == pytest.approx(lo + (hi - lo) * want.score, rel=1e-12)
        assert got.native.breasts == pytest.approx(
            {s: lo + (hi - lo) * v for s, v in want.breasts.items()}, rel=1e-12
        )
        assert [(n - lo) / (hi - lo) for n in got.native.findings] == pytest.approx(
            [f.score for f in got.findings], abs=1e-12
        )
    first = [a for a in attempts if a["exam_id"] == "E0000"]
    if mode == "sync":
        assert [(a["method"], a["status"]) for a in first] == [("POST", 200)]
    else:  # 202 + Location, then at least one "still running" poll, then the result
        assert [(a["method"], a["status"]) for a in first[:2]] == [("POST", 202), ("GET", 200)]
        assert len(first) >= 3 and {a["outcome"] for a in first} == {"ok"}


def test_native_values_round_trip_through_predictions_jsonl(tmp_path, cases, scorer):
    with ReferenceRestNode(scorer, scale="1-10") as node:
        preds, _ = run_rest(tmp_path, node.url, cases)
    path = tmp_path / "predictions.jsonl"
    write_predictions(path, preds)
    lines = [json.loads(line) for line in path.open()]
    assert all(set(d["native"]) == {"score", "breasts", "findings"} for d in lines)
    assert read_predictions(path) == preds


def test_a_record_without_native_values_is_written_as_before():
    out = ExamOutput(0.25, {"R": 0.1, "L": 0.25}, (Finding("L", "CC", "a.dcm", 1.0, 2.0, 0.25),))
    line = Prediction.ok("E1", "original", out, 0.5).to_json()
    assert line == (
        '{"exam_id": "E1", "condition": "original", "status": "ok", "score": 0.25, '
        '"breasts": {"L": 0.25, "R": 0.1}, "findings": [{"laterality": "L", "view": "CC", '
        '"file": "a.dcm", "x": 1.0, "y": 2.0, "score": 0.25}], "latency_s": 0.5, "error": null}'
    )
    assert prediction_from_dict(json.loads(line)).native is None


GOOD = {
    "exam_id": "E1",
    "condition": "original",
    "status": "ok",
    "score": 0.5,
    "breasts": {"L": 0.5},
    "findings": [{"laterality": "L", "view": "CC", "file": "a", "x": 1, "y": 2, "score": 0.5}],
    "native": {"score": 5.5, "breasts": {"L": 5.5}, "findings": [5.5]},
    "latency_s": 0.1,
    "error": None,
}


@pytest.mark.parametrize(
    "change, message",
    [
        ({"native": 7}, "native: expected an object"),
        ({"native": {"score": "7"}}, "native.score: expected a number"),
        ({"native": {"score": 7, "scale": 10}}, "native.scale: unknown key"),
        ({"native": {"score": 7, "breasts": {"L": None}}}, "native.breasts.L: expected a number"),
        ({"native": {"score": 7, "findings": []}}, "native.findings: expected a list of 1 numbers"),
        ({"status": "error", "score": None, "error": "x"}, "only an 'ok' record has native"),
    ],
)
def test_the_predictions_reader_refuses_a_malformed_native_record(change, message):
    assert prediction_from_dict(GOOD).native.findings == (5.5,)
    with pytest.raises(UsageError) as exc:
        prediction_from_dict({**GOOD, **change}, "p.jsonl:1")
    assert message in str(exc.value) and str(exc.value).startswith("p.jsonl:1")


@pytest.mark.parametrize("body", ["multipart", "json"])
def test_no_identifier_no_truth_and_no_exam_id_on_the_wire(tmp_path, cases, scorer, body):
    manifest = load_manifest(cases)
    forbidden: set[bytes] = {b"screen_detected", b"normal", b'"label"', b"lesions", b"truth"}
    for exam in manifest.exams:
        forbidden |= {exam.exam_id.encode(), f"SYNTHETIC^{exam.exam_id}".encode()}
        for ref in exam.images:
            ds = pydicom.dcmread(manifest.path(ref), stop_before_pixels=True)
            forbidden |= {ref.file.encode(), ref.sha256.encode()}
            for tag in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "PatientID"):
                forbidden.add(str(ds.get(tag)).encode())
    # The hand-made set's fixed Study UID happens to be pydicom's implementation class UID,
    # which every Part-10 file pydicom writes carries in its meta header: not the set's identity.
    forbidden.discard(pydicom.uid.PYDICOM_IMPLEMENTATION_UID.encode())
    with ReferenceRestNode(scorer) as node, RecordingProxy(node.port) as proxy:
        preds, _ = run_rest(tmp_path, f"http://127.0.0.1:{proxy.port}", cases, body=body)
        sent = proxy.sent
    assert [p.status for p in preds] == ["ok"] * 4, [p.error for p in preds]
    # What went out: the exams themselves (so the search below is not vacuous) ...
    if body == "multipart":
        wire = sent
        assert sent.count(b"Content-Type: application/dicom") == 16
    else:  # ... with the base64 DICOM of a JSON upload decoded
        uploads = [json.loads(b) for b in http_bodies(sent) if b]
        wire = sent + b"".join(base64.b64decode(x) for u in uploads for x in u["dicom"])
        assert len(uploads) == 4 and wire.count(b"DICM") == 16
    assert b"MAMMOCERT^MC" in wire and b"exam_key" in wire
    # ... and none of the reference set's identities, file names, UIDs or truth.
    # (a whole value: the set's Study UID is a prefix of every UID pydicom generates)
    leaked = sorted(
        f.decode()
        for f in forbidden
        if re.search(rb"(?<![0-9.])" + re.escape(f) + rb"(?![0-9.])", wire)
    )
    assert not leaked, leaked


def http_bodies(stream: bytes) -> list[bytes]:
    """The bodies of the HTTP/1.1 requests in ``stream`` (Content-Length framed, as httpx sends)."""
    out = []
    while stream:
        head, _, rest = stream.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        out.append(rest[:length])
        stream = rest[length:]
    return out
