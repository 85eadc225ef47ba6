"""The REST fault table (issue: "Faults are data") against the reference REST node, a real
uvicorn server on 127.0.0.1: every fault is a prediction with status error (or rejected) and a
reason naming it, the run goes on to the next exam, no exam outlives its deadline, and the
attempt log has the expected outcome classes (retries only after connection failures and
429/503, waiting Retry-After)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from dicom_testkit import deidentified_set
from rest_testkit import free_port
from vendors.jsonjob_kit import write_jsonjob_package

from harness.cases.manifest import load_manifest
from harness.reference.rest_node import FAULTS, ReferenceRestNode
from harness.runner import run_predictions
from harness.vendors import load_vendor_package, open_adapter

TIMEOUT_S = 5.0  # the package's per-exam deadline (room for three attempts a second apart)
READ_TIMEOUT_S = 1.0
MARGIN_S = 1.0  # an exam may end this much after its deadline (thread hand-over, clock reads)

# fault -> (node mode, status, words the reason must contain, attempt outcomes of one exam)
TABLE: dict[str, tuple[str, str, str, list[str]]] = {
    "slow-first-byte": ("sync", "error", "no response within the read timeout", ["read-timeout"]),
    "slow-body": ("sync", "error", "response body still arriving at the deadline", ["deadline"]),
    "reset": ("sync", "error", "connection reset", ["protocol-error"]),
    "truncated": ("sync", "error", "response body cut off", ["protocol-error"]),
    "error-oip": ("sync", "error", "HTTP 500 (oip-error: model server exploded)", ["http-error"]),
    "error-detail": ("sync", "error", "HTTP 422 (detail: ", ["http-error"]),
    "error-problem": (
        "sync",
        "error",
        "HTTP 400 (problem+json: the exam has no tomosynthesis)",
        ["http-error"],
    ),
    "error-html": ("sync", "error", "HTTP 502 (html: ", ["http-error"]),
    "error-empty": ("sync", "error", "HTTP 500 (empty)", ["http-error"]),
    "throttle": ("sync", "ok", "", ["http-error", "ok"]),
    "unavailable": ("sync", "error", "HTTP 503 (problem+json: warming up)", ["http-error"] * 3),
    "unavailable-long": (
        "sync",
        "error",
        "Retry-After 3600s is beyond the deadline",
        ["http-error"],
    ),
    "redirect": ("sync", "error", "HTTP 307 (empty)", ["http-error"]),
    "invalid-json": ("sync", "error", "invalid JSON", ["ok"]),
    "duplicate-key": ("sync", "error", "invalid JSON (duplicate key 'exam_score')", ["ok"]),
    "nan": ("sync", "error", "invalid JSON (NaN is not a JSON number)", ["ok"]),
    "infinity": ("sync", "error", "invalid JSON (Infinity is not a JSON number)", ["ok"]),
    "null-score": ("sync", "error", "exam score is null, not a number", ["ok"]),
    "string-score": ("sync", "error", 'exam score is "', ["ok"]),
    "null-breast": ("sync", "error", "breast score R is null, not a number", ["ok"]),
    "out-of-range": (
        "sync",
        "error",
        "exam score 21.0 is outside the declared score_range [1, 10]",
        ["ok"],
    ),
    "wrong-scale": ("sync", "error", "is outside the declared score_range [1, 10]", ["ok"]),
    "finding-missing-key": ("sync", "error", "finding 0: x is null, not a number", ["ok"]),
    "finding-non-numeric": ("sync", "error", 'finding 0: x is "12px", not a number', ["ok"]),
    "finding-outside": ("sync", "error", "finding 0: x 1000000.0 is outside the image", ["ok"]),
    "finding-unknown-uid": ("sync", "error", "which was not sent", ["ok"]),
    "wrong-laterality": ("sync", "error", "but the image it cites is", ["ok"]),
    "wrong-study": ("sync", "error", "the result is for Study Instance UID", ["ok"]),
    "no-location": ("async", "error", "HTTP 202 without a Location to poll", ["ok"]),
    "foreign-location": ("async", "error", "leaves the endpoint", ["ok"]),
    "location-404": (
        "async",
        "error",
        "HTTP 404 (problem+json: no such job)",
        ["ok", "http-error"],
    ),
    "never-finishes": (
        "async",
        "error",
        f"job did not finish within {TIMEOUT_S:g}s, still 'running'",
        None,
    ),
    "job-failed": ("async", "error", "the job ended in state 'failed'", None),
    "job-rejected": (
        "async",
        "rejected",
        "the endpoint rejected the exam (state 'rejected')",
        None,
    ),
}


def test_the_table_covers_every_fault_the_node_has():
    assert set(TABLE) == set(FAULTS)


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> Path:
    return deidentified_set(tmp_path_factory.mktemp("set") / "set", n=2)


@pytest.fixture(scope="module")
def nodes(scorer):
    sync = ReferenceRestNode(scorer, mode="sync", fault_delay_s=2 * TIMEOUT_S).start()
    run_async = ReferenceRestNode(scorer, mode="async", job_s=0.2).start()
    yield {"sync": sync, "async": run_async}
    sync.stop()
    run_async.stop()


def _run(tmp_path: Path, url: str, cases: Path, **rest):
    pkg = load_vendor_package(
        write_jsonjob_package(
            tmp_path / "pkg", url, timeout_s=TIMEOUT_S, read_timeout_s=READ_TIMEOUT_S, **rest
        )
    )
    evidence = tmp_path / "rest-evidence"
    adapter = Timed(open_adapter(pkg, evidence_dir=evidence, manifest=load_manifest(cases)))
    try:
        preds = run_predictions(
            adapter, load_manifest(cases), progress=False, timeout_s=TIMEOUT_S + 10
        )
    finally:
        adapter.close()
    # The runner's own timeout is far away: the adapter alone must keep to the deadline.
    assert len(adapter.took) == len(preds)
    assert max(adapter.took) <= TIMEOUT_S + MARGIN_S, adapter.took
    attempts = [json.loads(line) for line in (evidence / "attempts.jsonl").open()]
    return preds, attempts


class Timed:
    """An adapter that times each ``infer`` (the runner records no latency for a fault)."""

    def __init__(self, adapter) -> None:
        self.adapter, self.info, self.took = adapter, adapter.info, []

    def prepare(self, exam):
        return self.adapter.prepare(exam)

    def infer(self, prepared):
        t0 = time.monotonic()
        try:
            return self.adapter.infer(prepared)
        finally:
            self.took.append(time.monotonic() - t0)

    def close(self) -> None:
        self.adapter.close()


@pytest.mark.parametrize("fault", sorted(TABLE))
def test_a_fault_is_recorded_and_the_run_goes_on(fault, tmp_path, cases, nodes):
    mode, status, reason, outcomes = TABLE[fault]
    node = nodes[mode]
    node.fault = fault
    node.seen.clear()
    try:
        preds, attempts = _run(tmp_path, node.url, cases)
    finally:
        node.fault = None
    assert [p.exam_id for p in preds] == ["E0000", "E0001"]  # nothing stopped the run
    for p in preds:
        assert p.status == status, (p.status, p.error)
        if status == "ok":
            assert p.error is None and p.native is not None
        else:
            assert reason in p.error and p.score is None and p.native is None, p.error
            assert "\n" not in p.error
        mine = [a for a in attempts if a["exam_id"] == p.exam_id]
        got = [a["outcome"] for a in mine]
        if outcomes is None:  # a job: one POST, then polls that all succeed at the HTTP level
            assert got[0] == "ok" and mine[0]["method"] == "POST" and set(got) == {"ok"}
            assert all(a["method"] == "GET" for a in mine[1:]) and len(mine) >= 2
        else:
            assert got == outcomes, mine
    # Retries: only after a 429/503 (here), each after the Retry-After the node asked for.
    posts = [s.t for s in node.seen if s.method == "POST"]
    if fault == "throttle":
        assert len(posts) == 4
        assert posts[1] - posts[0] >= 1.0 and posts[3] - posts[2] >= 1.0
        assert [a["retry_after_s"] for a in attempts if a["outcome"] == "http-error"] == [1.0, 1.0]
    elif fault == "unavailable":
        assert len(posts) == 6
        for k in (0, 3):  # three attempts per exam, a second apart
            assert posts[k + 1] - posts[k] >= 1.0 and posts[k + 2] - posts[k + 1] >= 1.0
    else:
        assert len(posts) == 2  # one submission per exam: nothing else is retried


def test_connection_refused_is_retried_then_recorded(tmp_path, cases):
    preds, attempts = _run(tmp_path, f"http://127.0.0.1:{free_port()}", cases, retries=1)
    for p in preds:
        assert p.status == "error" and "connection refused" in p.error, p.error
        mine = [a["outcome"] for a in attempts if a["exam_id"] == p.exam_id]
        assert mine == ["connect-error", "connect-error"]


def test_polls_wait_the_retry_after_the_job_gives(tmp_path, cases, scorer):
    with ReferenceRestNode(scorer, mode="async", job_s=1.5, retry_after=1) as node:
        preds, attempts = _run(tmp_path, node.url, cases)
        seen = list(node.seen)
    assert [p.status for p in preds] == ["ok", "ok"], [p.error for p in preds]
    first = [s.t for s in seen if s.path != "/exams"]
    submit = [s.t for s in seen if s.path == "/exams"]
    # poll_interval_s is 0.1 s, but every answer said Retry-After: 1
    assert first[0] - submit[0] >= 1.0
    gets = [a for a in attempts if a["method"] == "GET" and a["exam_id"] == "E0000"]
    assert 2 <= len(gets) <= 3, gets
