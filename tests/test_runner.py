"""The runner: faults are data, hung models time out, the journal makes a killed run resumable."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from vendors.mgfactory import hanging_model, write_package, write_set

from harness.cases.manifest import load_manifest
from harness.errors import VendorFault
from harness.exam_input import ExamInput
from harness.journal import Journal, model_digest
from harness.predictions import ExamOutput, read_predictions
from harness.runner import run_predictions
from harness.vendors.adapter import AdapterInfo, FakeAdapter


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> Path:
    return write_set(tmp_path_factory.mktemp("runner") / "cases", n=6)


def test_faults_and_timeouts_are_recorded_and_the_run_goes_on(cases):
    release = threading.Event()

    def model(exam: ExamInput) -> ExamOutput:
        if exam.exam_id == "E0001":
            raise VendorFault("model declined: implant", "rejected")
        if exam.exam_id == "E0002":
            raise RuntimeError("segfault-ish")
        if exam.exam_id == "E0003":
            release.wait(60)  # hangs until the test ends
        return ExamOutput(0.25, {"L": 0.25, "R": 0.0})

    try:
        preds = run_predictions(
            FakeAdapter(model), load_manifest(cases), timeout_s=0.5, progress=False
        )
    finally:
        release.set()
    by_id = {p.exam_id: p for p in preds}
    assert [p.exam_id for p in preds] == sorted(by_id)
    assert (by_id["E0001"].status, by_id["E0001"].error) == ("rejected", "model declined: implant")
    assert by_id["E0002"].status == "error" and "RuntimeError: segfault-ish" in by_id["E0002"].error
    assert (by_id["E0003"].status, by_id["E0003"].error) == ("error", "timeout after 0.5s")
    assert all(
        by_id[e].status == "ok" and by_id[e].score == 0.25 for e in ("E0000", "E0004", "E0005")
    )
    assert all(
        by_id[e].latency_s is not None and by_id[e].latency_s >= 0 for e in ("E0000", "E0004")
    )


def test_conditions_use_the_transform_and_come_out_sorted(cases):
    seen = []

    def transform(exam: ExamInput, condition: str) -> ExamInput:
        seen.append((condition, exam.exam_id))
        return ExamInput(exam.exam_id, exam.images[:2])  # keep only the left breast

    adapter = FakeAdapter(lambda e: ExamOutput(len(e.images) / 10))
    preds = run_predictions(
        adapter,
        load_manifest(cases),
        conditions=["zoom", "original", "blur"],
        transform=transform,
        progress=False,
    )
    assert [(p.condition, p.exam_id) for p in preds][:7] == [
        ("original", f"E000{k}") for k in range(6)
    ] + [("blur", "E0000")]
    assert {p.score for p in preds if p.condition == "original"} == {0.4}
    assert {p.score for p in preds if p.condition != "original"} == {0.2}
    assert len(seen) == 12


def test_resume_reuses_the_journal_and_a_new_model_does_not(cases, tmp_path):
    manifest = load_manifest(cases)
    calls = []
    info = AdapterInfo("fake", {"fake": "1" * 64})
    adapter = FakeAdapter(lambda e: calls.append(e.exam_id) or ExamOutput(0.5), info)
    with Journal(tmp_path / "j.sqlite", model_digest(info.model_digests)) as j:
        first = run_predictions(adapter, manifest, journal=j, progress=False)
    assert len(calls) == 6
    with Journal(tmp_path / "j.sqlite", model_digest(info.model_digests)) as j:
        again = run_predictions(adapter, manifest, journal=j, progress=False)
    assert len(calls) == 6 and [p.to_json() for p in again] == [p.to_json() for p in first]
    other = AdapterInfo("fake", {"fake": "2" * 64})
    with Journal(tmp_path / "j.sqlite", model_digest(other.model_digests)) as j:
        run_predictions(
            FakeAdapter(lambda e: calls.append(e.exam_id) or ExamOutput(0.5), other),
            manifest,
            journal=j,
            progress=False,
        )
    assert len(calls) == 12


def _strip_latency(path: Path) -> list[str]:
    out = []
    for line in path.read_text().splitlines():
        d = json.loads(line)
        d.pop("latency_s")
        out.append(json.dumps(d, sort_keys=True))
    return out


def test_kill_and_resume_gives_the_same_predictions(tmp_path):
    cases = write_set(tmp_path / "cases", n=16)
    pkg = write_package(tmp_path / "pkg", model_kwargs={"slow_matmuls": 120})  # ~0.1 s per exam
    cmd = [
        sys.executable,
        "-m",
        "mammocert.cli",
        "predict",
        "--vendor",
        str(pkg),
        "--cases",
        str(cases),
    ]
    ref = tmp_path / "ref.jsonl"
    subprocess.run(cmd + ["--out", str(ref)], check=True, capture_output=True, timeout=300)

    out = tmp_path / "run.jsonl"
    journal = tmp_path / "run.journal.sqlite"
    proc = subprocess.Popen(
        cmd + ["--out", str(out), "--journal", str(journal)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    rows = 0
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            rows = (
                sqlite3.connect(journal, timeout=1)
                .execute("SELECT COUNT(*) FROM results")
                .fetchone()[0]
            )
        except sqlite3.OperationalError:
            rows = 0  # not created yet
        if rows >= 3:
            break
        time.sleep(0.01)
    assert proc.poll() is None, "the run finished before it could be killed; make the model slower"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not out.exists()
    done = sqlite3.connect(journal).execute("SELECT COUNT(*) FROM results").fetchone()[0]
    assert 3 <= done < 16

    r = subprocess.run(
        cmd + ["--out", str(out), "--journal", str(journal), "--resume"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert f"{done} reused from the journal" in r.stderr
    assert _strip_latency(out) == _strip_latency(ref)
    assert len(read_predictions(out)) == 16


@pytest.mark.parametrize(
    ("package_timeout", "flag", "used"), [(None, None, 300.0), (4.5, None, 4.5), (4.5, 2.0, 2.0)]
)
def test_predict_timeout_defaults_to_the_package_deadline(
    cases, tmp_path, monkeypatch, package_timeout, flag, used
):
    """An ONNX package's ``onnx.timeout_s`` is honoured like dicom's and rest's; --timeout wins."""
    import argparse

    from harness import runner

    pkg = write_package(tmp_path / "pkg")
    if package_timeout is not None:
        import yaml

        data = yaml.safe_load((pkg / "vendor.yaml").read_text())
        data["onnx"]["timeout_s"] = package_timeout
        (pkg / "vendor.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    seen: list[float | None] = []

    def fake_run(adapter, manifest, **kw):
        seen.append(kw["timeout_s"])
        return []

    monkeypatch.setattr(runner, "run_predictions", fake_run)
    args = argparse.Namespace(
        vendor=str(pkg),
        cases=str(cases),
        out=str(tmp_path / "p.jsonl"),
        timeout=flag,
        journal=None,
        resume=False,
        device="cpu",
    )
    assert runner.predict_cli(args) == 0
    assert seen == [used]


@pytest.mark.parametrize("flag", [0.0, -1.0, float("inf"), float("nan")])
def test_predict_refuses_a_timeout_that_is_not_finite_and_positive(cases, tmp_path, flag):
    import argparse

    from harness.errors import UsageError
    from harness.runner import predict_cli

    args = argparse.Namespace(
        vendor=str(write_package(tmp_path / "pkg")),
        cases=str(cases),
        out=str(tmp_path / "p.jsonl"),
        timeout=flag,
        journal=None,
        resume=False,
        device="cpu",
    )
    with pytest.raises(UsageError, match="must be a finite number of seconds > 0"):
        predict_cli(args)


def _hanging_package(root: Path, timeout_s: float | None = None) -> Path:
    pkg = write_package(root, heatmap=False)
    hanging_model(pkg / "model.onnx")
    if timeout_s is not None:
        import yaml

        data = yaml.safe_load((pkg / "vendor.yaml").read_text())
        data["onnx"]["timeout_s"] = timeout_s
        (pkg / "vendor.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    return pkg


def test_a_hung_onnx_model_is_abandoned_and_predict_exits_normally(tmp_path):
    """Every exam of a model that never returns is recorded as a timeout (none left "not run"),
    the file is written and the process exits 0, not abort() from a hung onnxruntime thread at
    interpreter exit (exit 134); --resume likewise."""
    cases = write_set(tmp_path / "cases", n=4)
    pkg = _hanging_package(tmp_path / "pkg")
    out = tmp_path / "p.jsonl"
    cmd = [sys.executable, "-m", "mammocert.cli", "predict", "--vendor", str(pkg)]
    cmd += ["--cases", str(cases), "--out", str(out), "--timeout", "1"]
    for extra in ([], ["--resume"]):
        r = subprocess.run(cmd + extra, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr[-2000:]
        assert "terminate called" not in r.stderr
        preds = read_predictions(out)
        assert [(p.exam_id, p.status, p.error) for p in preds] == [
            (f"E000{k}", "error", "timeout after 1s") for k in range(4)
        ]


def test_run_honours_the_onnx_deadline_and_leaves_no_thread_running(tmp_path):
    """``mammocert run``'s model (LiveModel) takes ``onnx.timeout_s`` from vendor.yaml; after the
    hung calls are abandoned no inference thread and no model process is left running."""
    import multiprocessing

    from conformance.live import LiveModel
    from harness.vendors import load_vendor_package

    cases = write_set(tmp_path / "cases", n=3)
    package = load_vendor_package(_hanging_package(tmp_path / "pkg", timeout_s=0.5))
    t0 = time.monotonic()
    live = LiveModel.start(package, load_manifest(cases), tmp_path / "out", "cpu", resume=False)
    try:
        assert [(p.exam_id, p.error) for p in live.original_predictions()] == [
            (f"E000{k}", "timeout after 0.5s") for k in range(3)
        ]
    finally:
        live.close()
    assert time.monotonic() - t0 < 60  # not the 300 s default per exam
    assert not [t for t in threading.enumerate() if t.name == "mammocert-infer" and t.is_alive()]
    assert not [p for p in multiprocessing.active_children() if p.name == "mammocert-onnx"]


def test_mammocert_run_with_a_hung_model_ends_with_its_verdict(tmp_path):
    """``mammocert run`` takes the deadline from ``onnx.timeout_s`` and, with every call abandoned,
    still judges, writes the bundle and exits 1 (not conformant), not 134."""
    cases = write_set(tmp_path / "cases", n=3)
    pkg = _hanging_package(tmp_path / "pkg", timeout_s=1)
    out = tmp_path / "bundle"
    r = subprocess.run(
        [sys.executable, "-m", "mammocert.cli", "run", "--vendor", str(pkg), "--cases", str(cases)]
        + ["--standard", str(Path(__file__).parents[1] / "standards" / "demo.yaml")]
        + ["--out", str(out), "--mode", "self-test"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 1, r.stderr[-2000:]
    assert "terminate called" not in r.stderr
    results = json.loads((out / "results.json").read_text())
    assert results["verdict"] == "NOT CONFORMANT"
    assert results["summary"]["predictions"] == {"error": 3}
    assert {f["reason"] for f in results["summary"]["faults"]} == {"timeout after 1s"}
    assert not any(c["outcome"] == "passed" for c in results["criteria"])
