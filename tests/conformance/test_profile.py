"""``--profile`` (#34): where a run's time goes, per phase. The phases add up to the run's wall
time, each phase's model calls are the journal's rows for its conditions, the counters travel
back from Dask workers, and the results are the same with and without ``--profile``."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import small_demo_standard
from vendors.mgfactory import write_package, write_set

from conformance.engine import RunRequest, run
from harness.errors import UsageError
from harness.profile import RunProfile, TaskTiming, open_profile

N_EXAMS = 8
SMALL = {
    "invariance": {"examples": 2},
    "decision_stability": {"exams": 3, "hypothesis_examples": 2},
    "determinism": {"repeats": 1},
}
KINDS = {"auc", "technical_failure_rate", "latency", *SMALL}


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> Path:
    """A small certify-ready set and standard: the original pass, live criteria that run the
    model under other conditions, and prediction-only ones."""
    d = tmp_path_factory.mktemp("profile")
    write_set(d / "cases", n=N_EXAMS, spacing_mm=0.1)
    write_package(d / "pkg", unit="exam", model_kwargs={"channels": 4})
    small_demo_standard(d / "cases", KINDS, SMALL, d / "standard.yaml")
    return d


def stable(bundle: Path) -> dict[str, object]:
    """results.json and predictions.jsonl without what differs between any two runs: the
    timestamps, the latencies and the latency criterion's figures (its outcome stays)."""
    res = json.loads((bundle / "results.json").read_text())
    res.pop("started"), res.pop("finished")
    for c in res["criteria"]:
        if c["kind"] == "latency":
            for key in ("value", "ci", "explanation", "evidence"):
                c.pop(key)
    rows = [json.loads(line) for line in (bundle / "predictions.jsonl").read_text().splitlines()]
    for row in rows:
        row.pop("latency_s")
    return {"results.json": res, "predictions.jsonl": rows}


def _rows(journal: Path) -> dict[str, int]:
    con = sqlite3.connect(f"file:{journal}?mode=ro", uri=True)
    try:
        return dict(con.execute("SELECT condition, COUNT(*) FROM results GROUP BY condition"))
    finally:
        con.close()


def test_the_phases_add_up_and_count_the_journals_model_calls(setup: Path) -> None:
    profile = RunProfile()
    request = RunRequest(
        standard=setup / "standard.yaml",
        cases=setup / "cases",
        out=setup / "engine",
        mode="certify",
        vendor=setup / "pkg",
    )
    t0 = time.perf_counter()
    results = run(request, profile=profile)
    wall = time.perf_counter() - t0
    profile.finish()
    phases = profile.phases
    ids = [c.id for c in results.criteria]
    assert list(phases) == ["setup", "original", *ids, "bundle"]
    # the phases are contiguous stretches of the run: they add up to its wall time
    summed = sum(p.wall_s for p in phases.values())
    assert summed <= wall and summed == pytest.approx(wall, rel=0.05, abs=0.05)
    for p in phases.values():
        assert p.runner_s <= p.wall_s + 1e-6
        assert p.other_s == pytest.approx(p.wall_s - p.runner_s)
        assert p.load_s >= 0 and p.prepare_s >= 0 and p.infer_s >= 0
        if p.model_calls:
            # inference is serialised on one thread: its sum fits in the runner's wall time
            assert 0 < p.infer_s <= p.runner_s
    # every task computed ran the model once (the set is all valid), and each is a journal row
    rows = _rows(setup / "engine" / "journal.sqlite")
    assert phases["original"].model_calls == phases["original"].tasks == rows.pop("original")
    assert phases["original"].model_calls == N_EXAMS
    assert sum(p.model_calls for p in phases.values()) - N_EXAMS == sum(rows.values())
    assert phases["setup"].model_calls == phases["bundle"].model_calls == 0
    live = [c.id for c in results.criteria if c.kind in SMALL]
    assert live and all(phases[cid].model_calls > 0 for cid in live)
    judged = [c.id for c in results.criteria if c.kind not in SMALL]
    assert judged and all(phases[cid].model_calls == 0 for cid in judged)
    record = profile.record()
    assert [p["name"] for p in record["phases"]] == list(phases)
    assert record["total_s"] >= summed - 0.01


def test_results_are_the_same_with_and_without_profile(setup: Path) -> None:
    def cli(out: str, *extra: str) -> subprocess.CompletedProcess:
        cmd = [sys.executable, "-m", "mammocert.cli", "run", "--vendor", str(setup / "pkg")]
        cmd += ["--standard", str(setup / "standard.yaml"), "--cases", str(setup / "cases")]
        cmd += ["--out", str(setup / out), "--mode", "certify", *extra]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=setup)
        assert r.returncode in (0, 1), r.stderr[-2000:]
        return r

    plain = cli("plain")
    profiled = cli("profiled", "--profile", str(setup / "profile.json"))
    assert "Time per phase" not in plain.stderr
    assert "Time per phase" in profiled.stderr and "original" in profiled.stderr
    assert stable(setup / "plain") == stable(setup / "profiled")
    # nothing of the profile enters the bundle, so the seal and the files are the same set
    names = lambda b: sorted(p.relative_to(b).as_posix() for p in b.rglob("*") if p.is_file())  # noqa: E731
    assert names(setup / "plain") == names(setup / "profiled")
    data = json.loads((setup / "profile.json").read_text())
    by_name = {p["name"]: p for p in data["phases"]}
    assert by_name["original"]["model_calls"] == N_EXAMS
    rows = _rows(setup / "profiled" / "journal.sqlite")
    assert sum(p["model_calls"] for p in data["phases"]) == sum(rows.values())


def test_a_profile_file_inside_the_sealed_bundle_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="inside the evidence bundle .* sealed"):
        open_profile(str(tmp_path / "bundle" / "profile.json"), tmp_path / "bundle")
    assert open_profile(None) == (None, None)
    profile, path = open_profile("")
    assert isinstance(profile, RunProfile) and path is None


def test_predict_profiles_its_one_pass(setup: Path, tmp_path: Path) -> None:
    out = tmp_path / "preds.jsonl"
    cmd = [sys.executable, "-m", "mammocert.cli", "predict", "--vendor", str(setup / "pkg")]
    cmd += ["--cases", str(setup / "cases"), "--out", str(out), "--profile"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=setup)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "Time per phase" in r.stderr
    assert len(out.read_text().splitlines()) == N_EXAMS


def test_task_timings_are_summed_into_the_current_phase() -> None:
    profile = RunProfile()
    with profile.phase("a"):
        profile.add_task(TaskTiming(0.5, 0.25, 1.0, 1))
        profile.add_task(TaskTiming(prepare_s=0.1))  # rejected in prepare: no model call
        profile.add_runner(2.0)
    with profile.phase("b"):
        pass
    a = profile.phases["a"]
    assert (a.tasks, a.model_calls) == (2, 1)
    assert (a.load_s, a.prepare_s, a.infer_s) == (0.5, pytest.approx(0.35), 1.0)
    assert profile.phases["b"].tasks == 0
