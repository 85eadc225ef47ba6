"""The reference REST node keeps to its own OpenAPI document (rest_node.openapi.yaml): the
document lists exactly the app's routes, schemathesis finds no response outside it in normal
mode, a real exam's answers (sync, async, every job state) validate against it, and
``mammocert serve-reference rest`` serves it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from io import BytesIO

import httpx
import pytest
from dicom_testkit import free_port, make_exam, process
from hypothesis import HealthCheck, settings
from vendors.mgfactory import write_package

from harness.predictions import ExamOutput, Finding
from harness.reference.rest_node import ReferenceRestNode, openapi_document
from harness.vendors import load_vendor_package, remote
from harness.vendors.adapter import FakeAdapter

schemathesis = pytest.importorskip("schemathesis", reason="pip install schemathesis (test extra)")
from schemathesis import checks  # noqa: E402


def _fixed(exam) -> ExamOutput:
    ref, _ = exam.images[0]
    return ExamOutput(0.5, {"L": 0.5, "R": 0.25}, (Finding("L", "CC", ref.file, 3.0, 4.0, 0.5),))


NODE = ReferenceRestNode(FakeAdapter(_fixed))  # the app only: schemathesis calls it in process
SCHEMA = schemathesis.openapi.from_asgi("/openapi.json", NODE.app)


def test_the_document_lists_exactly_the_apps_routes():
    documented = {
        (path, method.upper())
        for path, ops in openapi_document()["paths"].items()
        for method in ops
    }
    served = {
        (route.path, method)
        for route in NODE.app.routes
        for method in route.methods - {"HEAD"}
        if route.path != "/openapi.json"
    }
    assert documented == served


@SCHEMA.parametrize()
@settings(
    max_examples=15,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_node_conforms_to_its_openapi(case):
    case.call_and_validate(
        checks=[
            checks.not_a_server_error,
            checks.status_code_conformance,
            checks.content_type_conformance,
            checks.response_schema_conformance,
            checks.response_headers_conformance,
            checks.negative_data_rejection,
        ]
    )


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_real_exams_answers_validate_against_the_document(tmp_path, mode):
    exam = make_exam(tmp_path, "X1")
    pkg = load_vendor_package(write_package(tmp_path / "pkg"))
    outgoing = remote.pseudonymise(pkg, exam)
    files = [("exam", ("exam.json", _exam_json(outgoing), "application/json"))]
    for ds in outgoing.datasets:
        buf = BytesIO()
        ds.save_as(buf, enforce_file_format=True)
        files.append(("dicom", (f"{ds.SOPInstanceUID}.dcm", buf.getvalue(), "application/dicom")))
    node = ReferenceRestNode(FakeAdapter(_fixed), mode=mode, job_s=0.0)
    submit = SCHEMA["/exams"]["POST"]
    job = SCHEMA["/jobs/{job_id}"]["GET"]
    with node:
        with httpx.Client(base_url=node.url) as client:
            first = client.post("/exams", files=files)
            _validate(submit, first)
            answers = [first]
            if mode == "async":
                assert first.status_code == 202
                for _ in range(50):
                    answer = client.get(first.headers["location"])
                    _validate(job, answer)
                    answers.append(answer)
                    if answer.json()["state"] == "succeeded":
                        break
                    time.sleep(0.05)
                for fault in ("job-failed", "job-rejected"):
                    node.fault = fault
                    spoiled = client.post("/exams", files=files).headers["location"]
                    time.sleep(0.3)
                    answer = client.get(spoiled)
                    _validate(job, answer)
                    assert answer.json()["state"] == fault.removeprefix("job-")
                node.fault = None
            missing = client.get("/jobs/nope")
            _validate(job, missing)
            assert missing.status_code == 404
    done = answers[-1].json()
    assert done["state"] == "succeeded" and done["study_instance_uid"] == outgoing.study_uid
    assert done["result"]["exam_score"] == 5.5  # 0.5 on the default 1-10 scale


def _validate(operation, response: httpx.Response) -> None:
    response.request.read()  # schemathesis reads the request too; a multipart one is a stream
    operation.validate_response(response)


def _exam_json(outgoing) -> bytes:
    return json.dumps({"study_instance_uid": outgoing.study_uid, "exam_key": "k1"}).encode()


def test_the_cli_serves_the_node_and_refuses_an_unknown_fault(tmp_path):
    pkg = write_package(tmp_path / "pkg")
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "mammocert.cli",
            "serve-reference",
            "rest",
            "--vendor",
            str(pkg),
            "--port",
            "1",
            "--fault",
            "gremlins",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "--fault 'gremlins': use one of" in bad.stderr
    assert "Traceback" not in bad.stderr
    port = free_port()
    args = [
        sys.executable,
        "-m",
        "mammocert.cli",
        "serve-reference",
        "rest",
        "--vendor",
        str(pkg),
        "--port",
        str(port),
        "--scale",
        "0-100",
    ]
    with process(args, port=port):
        health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=10).json()
        document = httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=10).json()
    assert health == {"status": "ok", "model": "Test ApS Tiny 1.0", "scale": [0.0, 100.0]}
    assert document == openapi_document()
