"""The json-job REST profile against the reference REST node (a real uvicorn server on
127.0.0.1 scoring with a real ONNX package): the same scores as the ONNX package run directly,
the vendor's native values kept, and nothing identifiable, no ground truth and no exam id on
the wire."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from dicom_testkit import deidentified_set, process
from helpers import certify_standard
from rest_testkit import RecordingProxy, free_port
from vendors.jsonjob_kit import SCALE_RANGE, write_jsonjob_package

from harness.cases import DEFAULT_RECIPE
from harness.cases.build import build_reference_set
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
from harness.resources import REFERENCE_VENDOR
from harness.runner import run_predictions
from harness.vendors import load_vendor_package, open_adapter

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> Path:
    return deidentified_set(tmp_path_factory.mktemp("set") / "set", n=4)


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
    kept = tmp_path / "rest-evidence" / "results" / f"{first[-1]['body_sha256']}.json"
    assert json.loads(kept.read_bytes())["result"]["exam_score"] == preds[0].native.score
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


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mammocert.cli", *args],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=cwd,
    )


@pytest.mark.slow
def test_mammocert_run_through_the_node_gives_the_onnx_verdict_and_scores(tmp_path):
    """The reference vendor's ONNX package run directly, and the same package behind the
    reference REST node (async jobs, native 0-100 scale), both in certify mode (the demo
    standard cut to four criteria and pinned to a 4-exam set): the same verdict, criterion by
    criterion, and the same scores exam by exam (original and perturbed conditions)."""
    build_reference_set(DEFAULT_RECIPE, tmp_path / "cases", exams=4, workers=1)
    select = ("RECALL", "DEGEN", "TFR", "INV-MIRROR")
    standard = certify_standard(
        ROOT / "standards" / "demo.yaml",
        tmp_path / "cases",
        lambda c: any(k in c["id"] for k in select),
        tmp_path / "standard.yaml",
    )
    common = ("--standard", str(standard), "--cases", "cases", "--mode", "certify")
    direct = _cli(tmp_path, "run", "--vendor", str(REFERENCE_VENDOR), "--out", "onnx", *common)
    assert direct.returncode in (0, 1), direct.stderr
    port = free_port()
    node = [sys.executable, "-m", "mammocert.cli", "serve-reference", "rest", "--vendor"]
    node += [str(REFERENCE_VENDOR), "--port", str(port), "--scale", "0-100", "--mode", "async"]
    write_jsonjob_package(tmp_path / "rest", f"http://127.0.0.1:{port}", scale="0-100")
    with process(node, port=port):
        remote = _cli(tmp_path, "run", "--vendor", "rest", "--out", "viarest", *common)
        predicted = _cli(
            tmp_path, "predict", "--vendor", "rest", "--cases", "cases", "--out", "p.jsonl"
        )
    assert remote.returncode == direct.returncode, remote.stderr
    assert predicted.returncode == 0, predicted.stderr
    a = json.loads((tmp_path / "onnx" / "results.json").read_text())
    b = json.loads((tmp_path / "viarest" / "results.json").read_text())
    assert a["verdict"] == b["verdict"] and a["mode"] == b["mode"] == "certify"
    verdicts = lambda r: [(c["id"], c["outcome"], c["value"], c["n"]) for c in r["criteria"]]  # noqa: E731
    assert verdicts(a) == verdicts(b)
    judged = {c["id"]: c["outcome"] for c in a["criteria"]}
    assert judged["DK-INV-MIRROR"] in ("passed", "failed")  # evaluated through the node
    # four exams cannot bound a technical-failure rate at 2 %: not resolvable here, in both runs
    assert judged["DK-TFR-01"] == "error"
    want = read_predictions(tmp_path / "onnx" / "predictions.jsonl")
    for got in (
        read_predictions(tmp_path / "viarest" / "predictions.jsonl"),
        read_predictions(tmp_path / "p.jsonl"),
    ):
        assert len(got) >= 4 and {p.condition for p in got} <= {p.condition for p in want}
        wanted = {(p.exam_id, p.condition): p for p in want}
        for p in got:
            w = wanted[(p.exam_id, p.condition)]
            assert p.status == w.status == "ok", p.error
            assert p.score == pytest.approx(w.score, abs=1e-9)
            assert p.breasts == pytest.approx(dict(w.breasts), abs=1e-9)
            assert p.native.score == pytest.approx(100 * w.score, rel=1e-12)
            assert [(f.file, f.x, f.y) for f in p.findings] == [
                (f.file, f.x, f.y) for f in w.findings
            ]
    assert (tmp_path / "viarest" / "rest-evidence" / "attempts.jsonl").is_file()


# ---------------------------------------------------------------- the polling rules, scripted

DONE = {"state": "succeeded", "result": {"exam_score": 7.0}}


def _scripted_app():
    """Endpoints that answer the ways the json-job rules name (each path one way)."""
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    polls: dict[str, int] = {}

    async def see_other(request):
        return Response(b"", 303, headers={"Location": "/result"})

    async def result(request):
        return JSONResponse(DONE)

    async def created(request):  # 201, no body: the job is at the (relative) Location
        return Response(b"", 201, headers={"Location": "jobs/a"})

    async def job(request):  # "still processing" once, then the result
        name = request.path_params["name"]
        polls[name] = polls.get(name, 0) + 1
        return JSONResponse(DONE if polls[name] > 1 else {"state": "running"})

    async def pending_here(request):  # a pending 200 with an absolute Location of this origin
        where = f"http://{request.url.netloc}/jobs/b"
        return JSONResponse({"state": "queued"}, headers={"Location": where})

    routes = [
        Route("/see-other", see_other, methods=["POST"]),
        Route("/result", result),
        Route("/created", created, methods=["POST"]),
        Route("/jobs/{name}", job),
        Route("/pending-here", pending_here, methods=["POST"]),
    ]
    for path, body, status in (
        ("/pending-nowhere", b'{"state": "running"}', 200),
        ("/state-number", b'{"state": 3, "result": {"exam_score": 7}}', 200),
        ("/no-body", b"", 200),
        ("/failed-custom", b'{"state": "aborted"}', 200),
    ):

        def make(body=body, status=status):
            async def endpoint(request):
                return Response(body, status, media_type="application/json")

            return endpoint

        routes.append(Route(path, make(), methods=["POST"]))
    return Starlette(routes=routes), polls


@pytest.fixture(scope="module")
def scripted():
    import threading

    import uvicorn

    app, polls = _scripted_app()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="off", log_level="critical")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        thread.join(0.02)
    yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}", polls
    server.should_exit = True
    thread.join(10)


@pytest.mark.parametrize(
    "path, status, reason",
    [
        ("/see-other", "ok", None),
        ("/created", "ok", None),
        ("/pending-here", "ok", None),
        ("/pending-nowhere", "error", "the result is 'running' and no Location to poll"),
        ("/state-number", "error", "state 'state' gave 3, not a string"),
        ("/no-body", "error", "HTTP 200 without a result body"),
        ("/failed-custom", "error", "the job ended in state 'aborted'"),
    ],
)
def test_the_polling_rules(tmp_path, cases, scripted, path, status, reason):
    url, _ = scripted
    result = {"state": "state", "exam_score": "result.exam_score", "failed": ["aborted"]}
    preds, attempts = run_rest(tmp_path, url, cases, path=path, result=result)
    for p in preds:
        assert p.status == status, p.error
        if status == "ok":
            assert p.score == pytest.approx(6 / 9) and p.native.score == 7.0
        else:
            assert reason in p.error, p.error
    if path == "/created":  # the relative Location resolved against the request's URL
        assert [a["url"].removeprefix(url) for a in attempts][:3] == [
            "/created",
            "/jobs/a",
            "/jobs/a",
        ]


def test_a_location_on_the_same_origin_is_recognised_with_or_without_its_default_port():
    from harness.vendors.rest.jsonjob import _origin

    assert _origin("https://AI.example.org") == _origin("https://ai.example.org:443/jobs/1")
    assert _origin("http://127.0.0.1:8080") == _origin("http://127.0.0.1:8080/x?y=1")
    for other in ("http://ai.example.org/", "https://ai.example.org:8443/", "https://evil.org/"):
        assert _origin(other) != _origin("https://ai.example.org"), other
