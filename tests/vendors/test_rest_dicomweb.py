"""The ``dicomweb`` REST profile against real peers and a scripted one.

* Orthanc with its DICOMweb plugin is the PACS; the reference DICOMweb node polls it (QIDO-RS),
  fetches new MG studies (WADO-RS), scores them with the ONNX package and stores its CAD SR back
  (STOW-RS). The harness STOWs each exam to Orthanc and reads the result from Orthanc: the scores
  and the verdict equal the ONNX package's run directly, every byte the harness sent is free of
  identifiers and ground truth, and the instances it sent pass dciodvfy as the originals do.
* A small Starlette app is a DICOMweb service that misbehaves on purpose (STOW 202/409/415, no
  report, two reports, a report marking images that were not sent, a cut-off WADO-RS body):
  each is a fault recorded for the exam, and the run goes on.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import yaml
from dicom_testkit import deidentified_set, make_exam, orthanc_dicomweb
from helpers import certify_standard, require_tool
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID
from rest_testkit import RecordingProxy, free_port
from vendors.mgfactory import write_package

from harness.cases.manifest import load_manifest
from harness.dicomnet import dicomweb as wire
from harness.dicomnet.sr import ReportContent, write_mammo_cad_sr
from harness.reference.dicomweb_node import ReferenceDicomwebNode
from harness.runner import run_predictions
from harness.vendors import load_vendor_package, open_adapter
from harness.vendors.rest import RestAdapter

ROOT = Path(__file__).resolve().parents[2]


def write_dicomweb_package(
    root: Path,
    url: str,
    *,
    timeout_s: float = 30.0,
    fmt: str = "mammography-cad-sr",
    **dicomweb: object,
) -> Path:
    """A REST vendor package (vendor.yaml only) for a DICOMweb service; scores in percent."""
    doc = {
        "schema": "mammocert/vendor/v1",
        "vendor": "Test",
        "product": "DicomwebNode",
        "version": "1.0",
        "interface": "rest",
        "operating_point": 50.0,
        "score_range": [0.0, 100.0],
        "rest": {
            "url": url,
            "protocol": "dicomweb",
            "timeout_s": timeout_s,
            "retries": 0,
            "dicomweb": {"poll_interval_s": 0.1, "results": {"format": fmt}} | dicomweb,
        },
    }
    root.mkdir(parents=True, exist_ok=True)
    (root / "vendor.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return root


def _predict(pkg_dir: Path, ref_set: Path, evidence: Path, timeout_s: float):
    adapter = RestAdapter(load_vendor_package(pkg_dir), evidence_dir=evidence)
    try:
        return run_predictions(
            adapter, load_manifest(ref_set), progress=False, timeout_s=timeout_s + 5
        )
    finally:
        adapter.close()


# ------------------------------------------------------------------------------ Orthanc


@pytest.fixture(scope="module")
def onnx_pkg(tmp_path_factory):
    return load_vendor_package(write_package(tmp_path_factory.mktemp("onnx")))


@pytest.fixture(scope="module")
def ref_set(tmp_path_factory) -> Path:
    return deidentified_set(tmp_path_factory.mktemp("set") / "set", n=4)


@pytest.mark.external
def test_via_orthanc_equals_onnx_and_sends_nothing_identifiable(tmp_path, onnx_pkg, ref_set):
    require_tool("Orthanc", "apt-get install orthanc orthanc-dicomweb")
    require_tool("dciodvfy", "apt-get install dicom3tools")
    from vendors.test_dicom_pacs import _verdict

    scorer = open_adapter(onnx_pkg)
    try:
        want = run_predictions(scorer, load_manifest(ref_set), progress=False)
        with (
            orthanc_dicomweb(tmp_path / "orthanc") as root,
            ReferenceDicomwebNode(scorer, root) as node,
            RecordingProxy(int(root.split(":")[2].split("/")[0])) as proxy,
        ):
            via_proxy = f"http://127.0.0.1:{proxy.port}/dicom-web"
            got = _predict(
                write_dicomweb_package(tmp_path / "pkg", via_proxy), ref_set, tmp_path / "ev", 30
            )
            sent = proxy.sent
            assert node.errors == []
    finally:
        scorer.close()
    for a, c in zip(got, want, strict=True):
        assert a.status == "ok", a.error
        assert a.exam_id == c.exam_id
        assert a.score == pytest.approx(c.score, abs=1e-9)
        assert a.breasts == pytest.approx(dict(c.breasts), abs=1e-9)
        # Finding scores travel as DS text in percent (at most 16 characters), hence 1e-5.
        marks_got = sorted((f.file, f.laterality, f.view, f.x, f.y, f.score) for f in a.findings)
        marks_want = sorted((f.file, f.laterality, f.view, f.x, f.y, f.score) for f in c.findings)
        assert [m[:5] for m in marks_got] == [m[:5] for m in marks_want]
        assert [m[5] for m in marks_got] == pytest.approx([m[5] for m in marks_want], abs=1e-5)
    assert _verdict(ref_set, got, 50.0) == _verdict(ref_set, want, 50.0)

    # Evidence: each exam's report kept and indexed, every HTTP attempt recorded.
    index = [json.loads(x) for x in (tmp_path / "ev" / "evidence.jsonl").read_text().splitlines()]
    assert sorted(e["exam_id"] for e in index) == sorted(p.exam_id for p in got)
    for e in index:
        assert e["modality"] == "SR" and (tmp_path / "ev" / e["file"]).is_file()
    attempts = (tmp_path / "ev" / "attempts.jsonl").read_text().splitlines()
    assert sum('"POST"' in a for a in attempts) == len(got)

    # The wire: no patient name or ID, no original UID, no exam id, no ground truth.
    assert b"POST /dicom-web/studies" in sent
    _assert_clean(sent, ref_set)


@pytest.mark.external
def test_stow_instances_pass_dciodvfy_as_the_originals_do(tmp_path, onnx_pkg):
    """The instances the profile writes into the STOW-RS body are valid Part-10 DM images:
    dciodvfy finds no error in them that it does not find in the file they were made from."""
    require_tool("dciodvfy", "apt-get install dicom3tools")
    exam = make_exam(tmp_path / "study", "E1", seed=2)
    pkg = load_vendor_package(write_dicomweb_package(tmp_path / "pkg", "http://127.0.0.1:1/dw"))
    adapter = RestAdapter(pkg, evidence_dir=tmp_path / "ev")
    try:
        prepared = adapter.prepare(exam)
    finally:
        adapter.close()
    parts = wire.decode_related(prepared.body, prepared.content_type)
    assert len(parts) == 4

    def errors(path: Path) -> set[str]:
        r = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
        return {x for x in (r.stdout + r.stderr).splitlines() if x.startswith("Error")}

    for k, (part, (ref, _)) in enumerate(zip(parts, exam.images, strict=True)):
        assert part.headers["content-type"] == "application/dicom"
        assert part.content[128:132] == b"DICM"
        sent = tmp_path / f"sent{k}.dcm"
        sent.write_bytes(part.content)
        assert errors(sent) <= errors(tmp_path / "study" / ref.file)


def _forbidden(ref_set: Path) -> tuple[set[str], set[str]]:
    """What must never be on the wire: exam ids, patient names/IDs, ground-truth words; and
    the set's original UIDs (checked as whole UIDs)."""
    from pydicom import dcmread

    manifest = json.loads((ref_set / "manifest.json").read_text())
    words: set[str] = {"malignant", "cancer", "truth", "biopsy"}
    uids: set[str] = set()
    for exam in manifest["exams"]:
        words.add(exam["exam_id"])
        for im in exam["images"]:
            ds = dcmread(ref_set / im["file"], stop_before_pixels=True)
            words |= {str(ds.PatientName), str(ds.PatientID)}
            uids |= {str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID)}
    words.discard("")
    # mgfactory's study UID "<pydicom root>.1" is also pydicom's Implementation Class UID,
    # which every Part-10 file meta carries; it identifies the writer, not the study.
    uids.discard(PYDICOM_IMPLEMENTATION_UID)
    assert len(uids) >= 4 * len(manifest["exams"])
    return words, uids


def _assert_clean(sent: bytes, ref_set: Path) -> None:
    words, uids = _forbidden(ref_set)
    for token in sorted(words):
        assert token.encode() not in sent, token
    for uid in sorted(uids):  # a whole UID, not the prefix a fresh UID shares with it
        assert not re.search(rb"(?<![0-9.])" + re.escape(uid.encode()) + rb"(?![0-9.])", sent), uid


@pytest.mark.external
def test_workitem_aiw_i_through_the_reference_task_manager(tmp_path, onnx_pkg, ref_set):
    """``workitem: true``: after each STOW the harness creates a UPS workitem at the reference
    node's Task Manager; the node performs it (WADO-RS the inputs, STOW-RS the report to the
    Storage URL) and completes it; the harness finds the report by QIDO-RS as without one."""
    require_tool("Orthanc", "apt-get install orthanc orthanc-dicomweb")
    scorer = open_adapter(onnx_pkg)
    try:
        want = run_predictions(scorer, load_manifest(ref_set), progress=False)
        with (
            orthanc_dicomweb(tmp_path / "orthanc") as root,
            ReferenceDicomwebNode(scorer, root, ups_port=free_port()) as node,
            RecordingProxy(int(node.ups_port)) as proxy,
        ):
            pkg = write_dicomweb_package(
                tmp_path / "pkg",
                root,
                workitem=True,
                task_manager_url=f"http://127.0.0.1:{proxy.port}",
            )
            got = _predict(pkg, ref_set, tmp_path / "ev", 30)
            sent = proxy.sent
            assert node.errors == []
    finally:
        scorer.close()
    for a, c in zip(got, want, strict=True):
        assert a.status == "ok", a.error
        assert a.score == pytest.approx(c.score, abs=1e-9)
        assert a.breasts == pytest.approx(dict(c.breasts), abs=1e-9)
    studies = {e["study_uid"] for e in map(json.loads, (tmp_path / "ev" / "evidence.jsonl").open())}
    assert len(node.workitems) == len(got) == len(studies)
    for ups in node.workitems.values():
        assert ups.ProcedureStepState == "COMPLETED"
        (item,) = ups.InputInformationSequence
        assert str(item.StudyInstanceUID) in studies and len(item.ReferencedSOPSequence) == 4
        assert (
            str(item.WADORSRetrievalSequence[0].RetrieveURL)
            == f"{root}/studies/{ups.StudyInstanceUID}"
        )
        (performed,) = ups.UnifiedProcedureStepPerformedProcedureSequence
        assert len(performed.OutputInformationSequence) == 1
    assert sent.count(b"POST /workitems?workitem=") == len(got)
    _assert_clean(sent, ref_set)


@pytest.mark.external
@pytest.mark.parametrize(
    "fault, reason",
    [
        ("malformed", "malformed or foreign result report"),
        ("partial", "node reports not all algorithms succeeded"),
        ("wrong-study", "no Mammography CAD SR (TID 4000) within the timeout of 6s"),
    ],
)
def test_node_faults_through_orthanc_are_recorded(tmp_path, onnx_pkg, small_set, fault, reason):
    """The reference node misbehaving behind a real PACS: each exam is an error with the
    reason, and the run goes on."""
    require_tool("Orthanc", "apt-get install orthanc orthanc-dicomweb")
    scorer = open_adapter(onnx_pkg)
    try:
        with (
            orthanc_dicomweb(tmp_path / "orthanc") as root,
            ReferenceDicomwebNode(scorer, root, fault=fault) as node,
        ):
            pkg = write_dicomweb_package(tmp_path / "pkg", root, timeout_s=6)
            got = _predict(pkg, small_set, tmp_path / "ev", 6)
            assert node.errors == [] and node.reports_sent == len(got)
    finally:
        scorer.close()
    assert len(got) == 2
    for p in got:
        assert p.status == "error" and reason in p.error, p.error


@pytest.mark.external
def test_workitem_at_orthanc_is_refused_before_the_run(tmp_path, small_set):
    """Orthanc's DICOMweb plugin has no UPS-RS: the pre-run UPS-RS search is a 404, so every
    exam is an error with that reason and nothing is stored."""
    require_tool("Orthanc", "apt-get install orthanc orthanc-dicomweb")
    with orthanc_dicomweb(tmp_path / "orthanc") as root:
        pkg = write_dicomweb_package(tmp_path / "pkg", root, workitem=True)
        got = _predict(pkg, small_set, tmp_path / "ev", 10)
        stored = httpx.get(f"{root}/studies").content.strip()
    assert stored in (b"", b"[]")
    for p in got:
        assert p.status == "error", p
        assert p.error.startswith("UPS-RS Task Manager not usable before the run: GET ")
        assert "/dicom-web/workitems: HTTP 404" in p.error, p.error


def test_workitem_not_created_is_a_fault_per_exam(tmp_path, small_set):
    """A Task Manager that answers the search but not 201 Created to the create: each exam is
    an error naming the status (the scripted service answers POST /workitems with 200)."""
    fake = FakeDicomweb("ok")
    with fake.serving() as root:
        pkg = write_dicomweb_package(tmp_path / "pkg", root, workitem=True)
        got = _predict(pkg, small_set, tmp_path / "ev", 10)
    for p in got:
        assert p.status == "error"
        assert "UPS-RS create workitem of exam" in p.error and "HTTP 200, expected 201" in p.error


def test_service_down_makes_every_exam_an_error(tmp_path, ref_set):
    pkg = write_dicomweb_package(tmp_path / "pkg", f"http://127.0.0.1:{free_port()}/dicom-web")
    t0 = time.monotonic()
    got = _predict(pkg, ref_set, tmp_path / "ev", 10)
    assert time.monotonic() - t0 < 20
    assert len(got) == 4
    for p in got:
        assert p.status == "error"
        assert p.error.startswith("DICOMweb service not reachable before the run")
        assert "connection refused" in p.error


# ------------------------------------------------------------------------------ scripted peer


class FakeDicomweb:
    """A DICOMweb service on a real ASGI server that stores what it gets and reports per
    ``mode``; results are CAD SRs written with the harness's own writer."""

    def __init__(self, mode: str) -> None:
        from starlette.applications import Starlette
        from starlette.responses import JSONResponse, Response
        from starlette.routing import Route

        self.mode = mode
        self.studies: dict[str, list] = {}
        self.reports: dict[str, list] = {}  # study -> [(series uid, [datasets])]

        async def stow(request):
            from io import BytesIO

            from pydicom import dcmread

            body = await request.body()
            if mode == "415":
                return Response(b"", status_code=415)
            images = [
                dcmread(BytesIO(p.content))
                for p in wire.decode_related(body, request.headers["content-type"])
            ]
            uids = [str(ds.SOPInstanceUID) for ds in images]
            if mode == "partial":
                doc = wire.stow_response(uids[1:], [(uids[0], 0xA700)])
                return JSONResponse(doc, status_code=202, media_type=wire.DICOM_JSON)
            if mode == "none":
                doc = wire.stow_response([], [(u, 0xC000) for u in uids])
                return JSONResponse(doc, status_code=409, media_type=wire.DICOM_JSON)
            study = str(images[0].StudyInstanceUID)
            self.studies[study] = images
            self.reports[study] = self._results(images)
            return JSONResponse(
                wire.stow_response(uids[:-1] if mode == "short" else uids, []),
                media_type=wire.DICOM_JSON,
            )

        async def studies(request):
            return JSONResponse([], media_type=wire.DICOM_JSON)

        async def series(request):
            found = self.reports.get(request.path_params["study"], [])
            doc = [{"0020000E": {"vr": "UI", "Value": [uid]}} for uid, _ in found]
            return JSONResponse(doc, media_type=wire.DICOM_JSON)

        async def retrieve(request):
            found = dict(self.reports.get(request.path_params["study"], []))
            body, ctype = wire.encode_related(
                [wire.part10(ds) for ds in found[request.path_params["series"]]]
            )
            if mode == "cut":
                body = body[: len(body) - 60]
            if mode == "junk":
                body, ctype = wire.encode_related([b"not a DICOM instance"])
            return Response(body, media_type=ctype)

        async def workitems(request):
            return JSONResponse([], media_type=wire.DICOM_JSON)

        self.app = Starlette(
            routes=[
                Route("/dw/workitems", workitems, methods=["GET", "POST"]),
                Route("/dw/studies", stow, methods=["POST"]),
                Route("/dw/studies", studies, methods=["GET"]),
                Route("/dw/studies/{study}/series", series, methods=["GET"]),
                Route("/dw/studies/{study}/series/{series}", retrieve, methods=["GET"]),
            ]
        )

    def _results(self, images) -> list:
        import copy

        from pydicom.uid import generate_uid

        from harness.dicomnet.sr import MarkOut

        if self.mode == "silent":
            return []
        marked = images
        if self.mode == "foreign":  # the report marks images of its own, not the ones sent
            marked = [copy.deepcopy(ds) for ds in images]
            for ds in marked:
                ds.SOPInstanceUID = generate_uid()
        mark = MarkOut(str(marked[0].SOPInstanceUID), 10.0, 12.0, 80.0)
        content = ReportContent(
            80.0, {"L": 80.0, "R": 5.0}, {str(marked[0].ImageLaterality): [mark]}
        )
        out = []
        for _ in range(2 if self.mode == "two" else 1):
            sr = write_mammo_cad_sr(marked, content)
            out.append((str(sr.SeriesInstanceUID), [sr]))
        return out

    @contextmanager
    def serving(self) -> Iterator[str]:
        import uvicorn

        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(self.app, host="127.0.0.1", port=port, log_level="warning")
        )
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        try:
            yield f"http://127.0.0.1:{port}/dw"
        finally:
            server.should_exit = True
            thread.join(timeout=10)


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> Path:
    return deidentified_set(tmp_path_factory.mktemp("small") / "set", n=2)


@pytest.mark.parametrize(
    "mode, reason",
    [
        ("partial", "some instances not stored ("),
        ("none", "no instance stored ("),
        ("415", "HTTP 415"),
        ("short", "not in the response"),
        ("silent", "no Mammography CAD SR (TID 4000) within the timeout of 2s"),
        ("two", "2 Mammography CAD SR (TID 4000) reports for the exam's study"),
        ("foreign", "which the harness did not send in this study"),
        ("cut", "without its close delimiter"),
        ("junk", "part 1 (application/dicom) is not a DICOM instance"),
    ],
)
def test_faults_are_recorded_per_exam(tmp_path, small_set, mode, reason):
    fake = FakeDicomweb(mode)
    with fake.serving() as root:
        t0 = time.monotonic()
        got = _predict(
            write_dicomweb_package(tmp_path / "pkg", root, timeout_s=2), small_set, tmp_path, 2
        )
        wall = time.monotonic() - t0
    # Bounded by the runner's per-exam limit (timeout_s + 5 in _predict) plus start-up; that
    # the profile's own 2 s deadline fired first shows in the reasons below.
    assert len(got) == 2 and wall < 2 * (2 + 5) + 5
    for p in got:
        assert p.status == "error", p
        assert reason in p.error, p.error
    if mode == "partial":  # the failed instance is named by the manifest file and its reason
        assert "A700H out of resources" in got[0].error and ".dcm (" in got[0].error
    if mode == "none":
        assert got[0].error.count("C000H cannot understand") == 4


def test_a_good_scripted_report_maps_to_scores(tmp_path, small_set):
    """The scripted peer's report (exam 80 %, left 80 %, right 5 %, one mark) maps onto [0, 1]
    through the package's score_range, and its mark back to the manifest file it was sent as."""
    fake = FakeDicomweb("ok")
    with fake.serving() as root:
        got = _predict(write_dicomweb_package(tmp_path / "pkg", root), small_set, tmp_path, 10)
    manifest = load_manifest(small_set)
    for p in got:
        assert p.status == "ok", p.error
        assert p.score == pytest.approx(0.8) and p.breasts == pytest.approx({"L": 0.8, "R": 0.05})
        (f,) = p.findings
        exam = next(e for e in manifest.exams if e.exam_id == p.exam_id)
        assert f.file in {im.file for im in exam.images}
        assert (f.x, f.y, f.score) == pytest.approx((10.0, 12.0, 0.8))


def test_multipart_round_trip_and_strictness():
    parts = [b"\r\n--x\r\n", b"", bytes(range(256)) * 3]
    body, ctype = wire.encode_related(parts)
    assert [p.content for p in wire.decode_related(body, ctype)] == parts
    boundary = wire.media_type(ctype)[1]["boundary"]
    assert all(boundary.encode() not in p for p in parts)
    with pytest.raises(wire.DicomwebError, match="close delimiter"):
        wire.decode_related(body[:-10], ctype)
    with pytest.raises(wire.DicomwebError, match="not multipart/related"):
        wire.decode_related(body, "application/dicom")


@pytest.mark.external
@pytest.mark.slow
def test_mammocert_run_via_dicomweb_gives_the_onnx_verdict(tmp_path, onnx_pkg, ref_set):
    """``mammocert run --mode certify`` (the demo standard's prediction-only criteria, plus the
    live ones that send re-encoded, repeated and invalid exams, pinned to the test set) through
    Orthanc and the reference DICOMweb node gives the same results as the ONNX package, where
    both are judged: input rejection is judged for the node (it receives DICOM) and not for the
    ONNX package (its inputs are the harness's)."""
    require_tool("Orthanc", "apt-get install orthanc orthanc-dicomweb")
    from conformance.engine import LIVE_KINDS

    live = {"DK-INV-ENCODING", "DK-DET-01", "DK-REJ-01"}
    std = certify_standard(
        ROOT / "standards" / "demo.yaml",
        ref_set,
        lambda c: (c["kind"] not in LIVE_KINDS and c["kind"] != "latency") or c["id"] in live,
        tmp_path / "std.yaml",
    )
    assert live <= {c["id"] for c in yaml.safe_load(std.read_text())["criteria"]}

    def run(vendor: Path, out: str) -> dict:
        r = subprocess.run(
            [sys.executable, "-m", "mammocert.cli", "run", "--vendor", str(vendor)]
            + ["--standard", "std.yaml", "--cases", str(ref_set), "--out", out]
            + ["--mode", "certify"],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,
        )
        assert r.returncode in (0, 1), r.stderr[-2000:]
        results = json.loads((tmp_path / out / "results.json").read_text())
        assert results["mode"] == "certify"
        return results

    direct = run(onnx_pkg.root, "direct")
    scorer = open_adapter(onnx_pkg)
    try:
        with (
            orthanc_dicomweb(tmp_path / "orthanc") as root,
            ReferenceDicomwebNode(scorer, root),
        ):
            via = run(write_dicomweb_package(tmp_path / "pkg", root), "dicomweb")
    finally:
        scorer.close()

    preds = [json.loads(x) for x in (tmp_path / "dicomweb" / "predictions.jsonl").open()]
    want = {
        (p["exam_id"], p["condition"]): p
        for p in map(json.loads, (tmp_path / "direct" / "predictions.jsonl").open())
    }
    # DK-REJ-01 sends invalid inputs only to a product that receives DICOM itself: the ONNX
    # package's inputs are the harness's (out of the criterion's scope), the DICOMweb node's are its own
    invalid = [p for p in preds if p["condition"].startswith("invalid:")]
    assert invalid and all(p["status"] != "ok" for p in invalid)  # the node refused every one
    assert not any(c.startswith("invalid:") for _, c in want)
    scored = [p for p in preds if not p["condition"].startswith("invalid:")]
    assert len(scored) == len(want) > 4
    for p in scored:
        q = want[(p["exam_id"], p["condition"])]
        assert p["status"] == q["status"] == "ok", p
        assert p["score"] == pytest.approx(q["score"], abs=1e-9), p
    outcomes = {c["id"]: c["outcome"] for c in via["criteria"]}
    assert outcomes["DK-REJ-01"] == "passed"
    assert next(c for c in direct["criteria"] if c["id"] == "DK-REJ-01")["outcome"] == (
        "not_applicable"  # the standard scopes it to products that receive DICOM
    )
    same = [c for c in via["criteria"] if c["id"] != "DK-REJ-01"]
    base = [c for c in direct["criteria"] if c["id"] != "DK-REJ-01"]
    assert len(base) >= 3
    assert [(c["id"], c["outcome"]) for c in same] == [(c["id"], c["outcome"]) for c in base]
    for a, b in zip(same, base, strict=True):
        assert a.get("value") == pytest.approx(b.get("value"), abs=1e-9), a["id"]
    assert (tmp_path / "dicomweb" / "rest-evidence" / "evidence.jsonl").is_file()


def test_task_manager_url_is_checked_before_any_request(tmp_path):
    from harness.errors import VendorPackageError

    pkg = write_dicomweb_package(
        tmp_path / "pkg", "http://127.0.0.1:1/dw", workitem=True, task_manager_url="http://u:p@h/"
    )
    with pytest.raises(VendorPackageError, match="task_manager_url"):
        load_vendor_package(pkg)
    pkg = write_dicomweb_package(
        tmp_path / "ok", "http://127.0.0.1:1/dw", workitem=True, task_manager_url="http://h:1/ups"
    )
    spec = load_vendor_package(pkg).rest.dicomweb
    assert spec.workitem and spec.task_manager_url == "http://h:1/ups"
