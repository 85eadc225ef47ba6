"""The vendor's copy of a run on a sequestered set carries aggregate figures only (issue 35, item
14): no exam id, no per-exam evidence, no thumbnail of a reference image; the authority's copy in
the same bundle keeps the full evidence."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from vendors.mgfactory import write_package, write_set

from conformance.criteria import KINDS
from conformance.engine import RunRequest, run
from conformance.redaction import DISCLOSURE, VENDOR_DIR, VENDOR_FILES
from harness.cases.manifest import load_manifest
from harness.exam_input import ExamInput
from harness.predictions import ExamOutput, Finding
from harness.resources import DEMO_STANDARD
from harness.vendors.adapter import FakeAdapter

# the kinds whose evidence tells which exams are cancers (or normal) when a model is poor
SMALL = {
    "invariance": {"examples": 3},
    "decision_stability": {"exams": 4, "hypothesis_examples": 1},
    "insertion_response": {"exams": 3, "hypothesis_examples": 1},
    "input_rejection": {"examples": 1},
    "caching": {"examples": 1},
    "determinism": {"repeats": 1},
}
KEEP = {
    "auc",
    "localization",
    "degenerate_output",
    "technical_failure_rate",
    "sensitivity_at_operating_point",
    *SMALL,
}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    """A self-test run of a poor model whose failures name exams: it knows the truth (scores by
    exam id), marks every cancer in the other breast, ignores mirroring, inserted lesions and
    invalid inputs."""
    d = tmp_path_factory.mktemp("redaction")
    cases = write_set(d / "cases", n=8, spacing_mm=0.1)
    cancers = {e.exam_id for e in load_manifest(cases).exams if e.label == 1}
    doc = yaml.safe_load(Path(DEMO_STANDARD).read_text())
    criteria = []
    for c in doc["criteria"]:
        if c["kind"] not in KEEP or c.get("relation") in ("resample", "noise", "metadata"):
            continue
        if c.get("relation") in ("encoding", "order"):
            continue
        c.update(SMALL.get(c["kind"], {}))
        criteria.append(c)
    doc["criteria"] = criteria
    (d / "standard.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))

    def model(exam: ExamInput) -> ExamOutput:
        s = 0.9 if exam.exam_id in cancers else 0.1
        mark = Finding("R", "CC", f"{exam.exam_id}/RCC.dcm", 1.0, 1.0, s)  # the wrong breast
        return ExamOutput(score=s, breasts={"L": s, "R": 0.05}, findings=(mark,))

    run(
        RunRequest(
            standard=d / "standard.yaml",
            cases=cases,
            out=d / "bundle",
            vendor=write_package(d / "pkg"),
        ),
        adapter=FakeAdapter(model),
    )
    return d


def _ids(d: Path) -> tuple[set[str], set[str]]:
    exams = load_manifest(d / "cases").exams
    return {e.exam_id for e in exams if e.label}, {e.exam_id for e in exams if not e.label}


def _named(data: bytes, exam_ids: set[str]) -> set[str]:
    """Exam ids that occur in ``data`` as whole tokens (E0001 but not E00012)."""
    text = data.decode("utf-8")
    return {i for i in exam_ids if re.search(rf"(?<![A-Za-z0-9]){re.escape(i)}(?![0-9])", text)}


def _thumbnails(value) -> set[str]:
    if isinstance(value, dict):
        return set().union(*(_thumbnails(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_thumbnails(v) for v in value)) if value else set()
    return {value} if isinstance(value, str) and value.startswith("data:image") else set()


def test_the_authority_copy_names_the_cancers_and_carries_thumbnails(bundle):
    """The reproduction: the full evidence ties exam ids to their truth and shows images."""
    cancers, normals = _ids(bundle)
    full = json.loads((bundle / "bundle" / "results.json").read_text())
    by_kind = {c["kind"]: c for c in full["criteria"]}
    assert {m["exam_id"] for m in by_kind["localization"]["evidence"]["missed"]} == cancers
    ce = by_kind["insertion_response"]["evidence"]["counterexample"]
    assert ce["exam_id"] in normals and ce["thumbnails"]["before"].startswith("data:image")
    assert _thumbnails(full)
    assert _named((bundle / "bundle" / "results.json").read_bytes(), cancers) == cancers


def test_every_byte_of_the_vendor_copy_is_free_of_exam_ids_and_thumbnails(bundle):
    cancers, normals = _ids(bundle)
    full = json.loads((bundle / "bundle" / "results.json").read_text())
    thumbs = _thumbnails(full)
    vendor = bundle / "bundle" / VENDOR_DIR
    # the demo standard asks for the programme-impact section: its document is in both copies
    section = full["summary"]["programme_impact"]
    also = ("programme.json",) if "file" in section else ()
    assert sorted(p.name for p in vendor.iterdir()) == sorted(VENDOR_FILES + also)
    for path in vendor.iterdir():
        data = path.read_bytes()
        assert not _named(data, cancers | normals), path.name
        assert b"data:image" not in data, path.name
        assert not [t for t in thumbs if t.encode() in data or t[22:86].encode() in data]


def test_the_vendor_copy_keeps_every_aggregate_figure(bundle):
    full = json.loads((bundle / "bundle" / "results.json").read_text())
    copy = json.loads((bundle / "bundle" / VENDOR_DIR / "results.json").read_text())
    assert copy["verdict"] == full["verdict"] and copy["summary"]["audience"] == "vendor"
    for a, b in zip(full["criteria"], copy["criteria"], strict=True):
        for key in ("id", "outcome", "value", "ci", "threshold", "n"):
            assert a[key] == b[key], (a["id"], key)
        assert b["evidence"].get("measured") == a["evidence"].get("measured")
    failed = {c["kind"] for c in copy["criteria"] if c["outcome"] == "failed"}
    assert {"localization", "invariance", "insertion_response", "input_rejection"} <= failed
    html = (bundle / "bundle" / VENDOR_DIR / "report.html").read_text()
    assert "aggregate figures only" in html and "withheld" in html


def test_every_kind_has_a_disclosure_decision():
    assert set(DISCLOSURE) == set(KINDS)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mammocert.cli", *args], capture_output=True, text=True, timeout=300
    )


def test_report_rerenders_both_copies_byte_for_byte(bundle, tmp_path):
    """The report is a pure function of each copy's results: re-rendering a sealed bundle gives
    both reports byte for byte (nothing written), and a copy changed after sealing is refused."""
    b = bundle / "bundle"
    before = {n: (b / n).read_bytes() for n in ("report.html", f"{VENDOR_DIR}/report.html")}
    r = _cli("report", str(b))
    assert r.returncode == 0 and "unchanged" in r.stdout, r.stderr
    assert {n: (b / n).read_bytes() for n in before} == before
    (b / VENDOR_DIR / "report.html").write_text("edited")
    r = _cli("report", str(b))
    assert r.returncode == 2 and f"{VENDOR_DIR}/report.html" in r.stderr


def test_audience_authority_writes_no_vendor_copy_and_a_bad_audience_is_refused(bundle, tmp_path):
    d = bundle
    req = dict(standard=d / "standard.yaml", cases=d / "cases", vendor=d / "pkg")
    out = tmp_path / "authority"
    (out / VENDOR_DIR).mkdir(parents=True)
    (out / VENDOR_DIR / "results.json").write_text("{}")  # left by an earlier run
    run(
        RunRequest(**req, out=out, audience="authority", select="DK-TFR-01"),
        adapter=FakeAdapter(lambda e: ExamOutput(score=0.5, breasts={"L": 0.5, "R": 0.5})),
    )
    assert (out / "results.json").is_file() and not list((out / VENDOR_DIR).iterdir())
    r = _cli(
        "run",
        "--vendor",
        str(d / "pkg"),
        "--standard",
        str(d / "standard.yaml"),
        "--cases",
        str(d / "cases"),
        "--out",
        str(tmp_path / "x"),
        "--audience",
        "public",
    )
    assert r.returncode == 2 and "--audience" in r.stderr and "Traceback" not in r.stderr
