"""The engine every entry point calls: one-line usage errors before any work, the vendor's
deadline honoured, an injected adapter, and Hypothesis settings recorded as used."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import KNOWN_GOOD_VENDOR

from conformance.context import HypothesisProfile
from conformance.engine import RunRequest, open_session, run, select_criteria
from harness.cases.manifest import load_manifest
from harness.errors import UsageError
from harness.predictions import ExamOutput
from harness.standard import load_standard
from harness.vendors.adapter import FakeAdapter

ROOT = Path(__file__).resolve().parents[2]
DRAFT = ROOT / "standards" / "dk-mammo-ai-draft.yaml"


@pytest.fixture(scope="module")
def ws(tmp_path_factory, default_set) -> Path:
    """A 4-exam set, a vendor package with a 0.5 s deadline, a one-criterion standard."""
    d = tmp_path_factory.mktemp("engine")
    shutil.copytree(default_set(4).root, d / "cases")
    pkg = d / "vendor"
    shutil.copytree(KNOWN_GOOD_VENDOR, pkg)
    meta = yaml.safe_load((pkg / "vendor.yaml").read_text())
    meta["onnx"]["timeout_s"] = 0.5
    (pkg / "vendor.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    std = yaml.safe_load(DRAFT.read_text())
    std["criteria"] = [c for c in std["criteria"] if c["kind"] == "technical_failure_rate"]
    (d / "tfr.yaml").write_text(yaml.safe_dump(std, sort_keys=False))
    return d


def mammocert(ws: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mammocert.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ws,
    )


def _bad_kind(ws: Path) -> str:
    std = yaml.safe_load((ws / "tfr.yaml").read_text())
    std["criteria"][0]["kind"] = "auroc"
    (ws / "kind.yaml").write_text(yaml.safe_dump(std, sort_keys=False))
    return "kind.yaml"


def _bad_vendor(ws: Path) -> str:
    bad = ws / "badvendor"
    if not bad.exists():
        shutil.copytree(ws / "vendor", bad)
        meta = yaml.safe_load((bad / "vendor.yaml").read_text())
        meta["operating_point"] = "high"
        (bad / "vendor.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    return "badvendor"


@pytest.mark.parametrize(
    "case, message",
    [
        ("standard", "no-such.yaml"),
        ("kind", "auroc"),
        ("vendor", "operating_point"),
    ],
)
def test_run_usage_errors_are_one_line_of_our_own(ws, case, message):
    standard, vendor = "tfr.yaml", "vendor"
    if case == "standard":
        standard = "no-such.yaml"
    elif case == "kind":
        standard = _bad_kind(ws)
    else:
        vendor = _bad_vendor(ws)
    r = mammocert(
        ws, "run", "--vendor", vendor, "--standard", standard, "--cases", "cases", "--out", "o"
    )
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("mammocert: error:"), r.stderr
    assert message in lines[0]
    assert "pytest" not in r.stdout + r.stderr and "Traceback" not in r.stderr
    assert not (ws / "o" / "results.json").exists()


def test_a_missing_signing_key_is_refused_before_any_work(ws):
    r = mammocert(
        ws,
        "run",
        "--vendor",
        "vendor",
        "--standard",
        "tfr.yaml",
        "--cases",
        "cases",
        "--out",
        "k",
        "--key",
        "/nonexistent.pem",
    )
    assert r.returncode == 2 and "nonexistent.pem" in r.stderr, r.stderr
    assert not (ws / "k" / "predictions.jsonl").exists()


def _slow_on(slow_exam: str, seconds: float) -> FakeAdapter:
    def score(exam):
        if exam.exam_id == slow_exam:
            time.sleep(seconds)
        return ExamOutput(score=0.5, breasts={"L": 0.5, "R": 0.1})

    return FakeAdapter(score)


def test_run_honours_the_vendors_deadline(ws, tmp_path):
    first = load_manifest(ws / "cases").exams[0].exam_id
    results = run(
        RunRequest(
            standard=ws / "tfr.yaml", cases=ws / "cases", out=tmp_path / "b", vendor=ws / "vendor"
        ),
        adapter=_slow_on(first, 3.0),
    )
    rows = [json.loads(line) for line in (tmp_path / "b" / "predictions.jsonl").open()]
    slow = next(r for r in rows if r["exam_id"] == first)
    assert slow["status"] == "error" and "timeout after 0.5s" in slow["error"]
    assert results.summary["predictions"] == {"ok": 3, "error": 1}


def test_the_injected_adapter_is_the_model_that_runs(ws, tmp_path):
    calls = []

    def score(exam):
        calls.append(exam.exam_id)
        return ExamOutput(score=0.25, breasts={"L": 0.25, "R": 0.1})

    run(
        RunRequest(standard=ws / "tfr.yaml", cases=ws / "cases", out=None, vendor=ws / "vendor"),
        adapter=FakeAdapter(score),
    )
    assert sorted(calls) == sorted(e.exam_id for e in load_manifest(ws / "cases").exams)


def test_selection_uses_pytest_grammar_and_refuses_nonsense():
    std = load_standard(DRAFT)
    picked = [c.id for c in select_criteria(std.criteria, "AUC-01 or (INV- and not MIRROR)")]
    assert "DK-AUC-01" in picked and "DK-INV-MIRROR" not in picked
    assert all(c == "DK-AUC-01" or c.startswith("DK-INV-") for c in picked)
    with pytest.raises(UsageError, match="not a selection expression"):
        select_criteria(std.criteria, "AUC and (")
    with pytest.raises(UsageError, match="-k"):
        select_criteria(std.criteria, "(" * 5000 + "AUC" + ")" * 5000)


def test_certify_refuses_selection_before_reading_anything(tmp_path):
    req = RunRequest(
        standard=tmp_path / "absent.yaml",
        cases=tmp_path,
        mode="certify",
        vendor=tmp_path,
        select="AUC",
    )
    with pytest.raises(UsageError, match="remove -k"):
        open_session(req)


@pytest.mark.parametrize(
    "block, mode",
    [
        ({"derandomize": True, "deadline_ms": None}, "certify"),
        ({"derandomize": False, "deadline_ms": 2000}, "self-test"),
        (None, "self-test"),
    ],
)
def test_recorded_hypothesis_settings_are_the_settings_used(tmp_path, block, mode):
    raw = yaml.safe_load(DRAFT.read_text())
    if block is None:
        raw.pop("hypothesis", None)
    else:
        raw["hypothesis"] = block
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    profile = HypothesisProfile.of(load_standard(tmp_path / "s.yaml"), mode)
    record = profile.record()

    def test_fn():
        pass

    used = profile.settings(12, tmp_path / "db")(test_fn)._hypothesis_internal_use_settings
    assert used.derandomize is record["derandomize"]
    deadline = None if used.deadline is None else used.deadline.total_seconds() * 1000
    assert deadline == record["deadline_ms"]
    assert (used.database is not None) == (record["database"] == "on")
    assert [p.name for p in used.phases] == record["phases"]
    assert used.report_multiple_bugs is record["report_multiple_bugs"] is False
    assert used.max_examples == 12


def test_shrinking_is_bounded_by_count_not_wall_time_during_a_run_only():
    from hypothesis.internal.conjecture import engine

    before = engine.MAX_SHRINKING_SECONDS
    seen = []
    profile = HypothesisProfile(derandomize=True, deadline_ms=None, database=False)
    profile.run(lambda: seen.append(engine.MAX_SHRINKING_SECONDS))
    assert seen[0] > 10**6 and engine.MAX_SHRINKING_SECONDS == before
    with pytest.raises(AssertionError):
        profile.run(lambda: (_ for _ in ()).throw(AssertionError("x")))
    assert engine.MAX_SHRINKING_SECONDS == before


def test_the_invariance_evaluator_runs_under_the_sessions_profile(monkeypatch, ws, tmp_path):
    """The invariance evaluator takes its settings from the context's profile, the one the
    results record (no settings of its own)."""
    seen = []
    original = HypothesisProfile.settings

    def spy(self, max_examples, database_dir):
        seen.append(self)
        return original(self, max_examples, database_dir)

    monkeypatch.setattr(HypothesisProfile, "settings", spy)
    std = yaml.safe_load(DRAFT.read_text())
    std["criteria"] = [c for c in std["criteria"] if c.get("relation") == "metadata"]
    std["criteria"][0]["examples"] = 2
    std["hypothesis"] = {"derandomize": True, "deadline_ms": 60000}
    (tmp_path / "meta.yaml").write_text(yaml.safe_dump(std, sort_keys=False))
    results = run(
        RunRequest(
            standard=tmp_path / "meta.yaml", cases=ws / "cases", out=None, vendor=ws / "vendor"
        ),
        adapter=FakeAdapter(lambda e: ExamOutput(score=0.3, breasts={"L": 0.3, "R": 0.2})),
    )
    assert seen and all(p == seen[0] for p in seen)
    assert results.seeds["hypothesis"] == seen[0].record()
    assert results.seeds["hypothesis"]["deadline_ms"] == 60000
    assert results.criteria[0].outcome == "passed", results.criteria[0].explanation


def test_results_record_the_exams_per_model_call(ws, tmp_path):
    """A copy of the package declaring onnx.batch_size 3 scores the set as batch 1 does, and
    results.json says how many exams went into a call."""
    rows, batch = {}, {}
    for size in (1, 3):
        pkg = tmp_path / f"vendor{size}"
        shutil.copytree(ws / "vendor", pkg)
        meta = yaml.safe_load((pkg / "vendor.yaml").read_text())
        meta["onnx"].update(batch_size=size, timeout_s=60)  # a loaded machine: no timeouts here
        (pkg / "vendor.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
        out = tmp_path / f"b{size}"
        results = run(RunRequest(standard=ws / "tfr.yaml", cases=ws / "cases", out=out, vendor=pkg))
        batch[size] = results.harness["batch_size"]
        rows[size] = [
            {k: v for k, v in json.loads(line).items() if k != "latency_s"}
            for line in (out / "predictions.jsonl").open()
        ]
    assert batch == {1: 1, 3: 3}
    assert rows[3] == rows[1] and all(r["status"] == "ok" for r in rows[1])
