"""The conformance suite as a whole: completeness, usage errors, missing predictions, self-test
selection — through the real CLI and pytest plugin."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import synthetic_set
import yaml

from harness.cases.manifest import load_manifest
from harness.jsonutil import sha256_file
from harness.predictions import write_predictions

ROOT = Path(__file__).resolve().parents[2]
PREDICTION_KINDS = {
    "auc",
    "sensitivity_at_specificity",
    "sensitivity_at_operating_point",
    "specificity_at_operating_point",
    "recall_rate",
    "cancer_detection_rate",
    "ppv",
    "subgroup",
    "degenerate_output",
    "technical_failure_rate",
    "latency",
}


def mammocert(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mammocert.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("suite")
    synthetic_set.write_set(d / "cases")
    m = load_manifest(d / "cases")
    preds = synthetic_set.predictions(m, 3.0)
    write_predictions(d / "preds.jsonl", preds)
    write_predictions(d / "missing.jsonl", preds[5:])  # the first five exams (cancers) missing
    std = yaml.safe_load((ROOT / "standards" / "dk-mammo-ai-draft.yaml").read_text())
    std["criteria"] = [c for c in std["criteria"] if c["kind"] in PREDICTION_KINDS]
    for c in std["criteria"]:
        if c["kind"] == "subgroup":
            c["min_n"] = 10
    (d / "std.yaml").write_text(yaml.safe_dump(std, sort_keys=False))
    return d


def evaluate(
    ws: Path, out: str, *extra: str, standard: str = "std.yaml", predictions: str = "preds.jsonl"
):
    return mammocert(
        "evaluate",
        "--predictions",
        predictions,
        "--cases",
        "cases",
        "--standard",
        standard,
        "--out",
        out,
        "--operating-point",
        "0.5",
        *extra,
        cwd=ws,
    )


def test_evaluate_writes_a_complete_bundle_with_the_verdict(workspace):
    r = evaluate(workspace, "b1")
    assert r.returncode in (0, 1), r.stderr
    res = json.loads((workspace / "b1" / "results.json").read_text())
    std = yaml.safe_load((workspace / "std.yaml").read_text())
    assert [c["id"] for c in res["criteria"]] == [c["id"] for c in std["criteria"]]
    assert res["notice"] == "SELF-TEST — NOT A CERTIFICATE" and res["mode"] == "self-test"
    mandatory_ok = all(c["outcome"] == "passed" for c in res["criteria"] if c["mandatory"])
    assert res["verdict"] == ("CONFORMANT" if mandatory_ok else "NOT CONFORMANT")
    assert r.returncode == (0 if mandatory_ok else 1)
    for c in res["criteria"]:
        assert c["outcome"] in ("passed", "failed", "error") and c["explanation"].endswith(").")
    assert "DK-AUC-01" in r.stdout and res["verdict"] in r.stdout
    for name in ("report.html", "predictions.jsonl", "standard.yaml", "junit.xml"):
        assert (workspace / "b1" / name).is_file()


def test_a_weak_model_fails_discrimination_with_the_numbers_in_the_table(workspace):
    m = load_manifest(workspace / "cases")
    write_predictions(workspace / "weak.jsonl", synthetic_set.predictions(m, 0.7, seed=5))
    r = evaluate(workspace, "weak", predictions="weak.jsonl")
    assert r.returncode == 1
    res = json.loads((workspace / "weak" / "results.json").read_text())
    auc = next(c for c in res["criteria"] if c["id"] == "DK-AUC-01")
    assert auc["outcome"] == "failed" and auc["value"] < 0.8
    row = next(line for line in r.stdout.splitlines() if "DK-AUC-01" in line)
    assert "failed" in row and f"{auc['value']:.4g}" in row and f"{auc['ci'][0]:.3f}" in row


def test_missing_predictions_are_errors_not_dropped(workspace):
    evaluate(workspace, "b2", predictions="missing.jsonl")
    res = json.loads((workspace / "b2" / "results.json").read_text())
    tfr = next(c for c in res["criteria"] if c["kind"] == "technical_failure_rate")
    assert tfr["value"] == pytest.approx(5 / 200) and tfr["outcome"] == "failed"
    assert res["summary"]["n_faults"] == 5
    assert all(
        f["reason"] == "no prediction for this exam in the predictions file"
        for f in res["summary"]["faults"]
    )
    auc = next(c for c in res["criteria"] if c["id"] == "DK-AUC-01")
    assert auc["n"] == 200


def test_plain_pytest_with_selection_is_a_self_test_with_junit(workspace):
    """A vendor's CI runs the suite as plain pytest; -k selects, the rest is recorded as not selected."""
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--pyargs",
            "conformance",
            "-p",
            "no:cacheprovider",
            "-q",
            "--standard",
            "std.yaml",
            "--cases",
            "cases",
            "--predictions",
            "preds.jsonl",
            "--operating-point",
            "0.5",
            "--out",
            "b3",
            "-k",
            "AUC",
            "--junitxml=b3/junit.xml",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=workspace,
    )
    assert r.returncode == 0, r.stdout + r.stderr  # both AUC criteria pass on this set
    res = json.loads((workspace / "b3" / "results.json").read_text())
    outcomes = {c["id"]: c["outcome"] for c in res["criteria"]}
    assert outcomes["DK-AUC-01"] == outcomes["DK-AUC-02"] == "passed"
    others = [c for c in res["criteria"] if not c["id"].startswith("DK-AUC")]
    assert others and all(
        c["outcome"] == "error" and "not selected" in c["explanation"] for c in others
    )
    assert res["verdict"] == "NOT CONFORMANT"
    junit = (workspace / "b3" / "junit.xml").read_text()
    assert "test_discrimination[DK-AUC-01]" in junit
    # pytest wrote junit.xml into the bundle before the bundle was sealed, so the seal lists it
    st = json.loads((workspace / "b3" / "statement.unsigned.json").read_text())
    listed = {s["name"]: s["digest"]["sha256"] for s in st["subject"]}
    assert listed.get("bundle/junit.xml") == sha256_file(workspace / "b3" / "junit.xml")


@pytest.mark.parametrize(
    "mutation, message",
    [
        (lambda c: c[0].update(kind="auroc"), "unknown kind 'auroc'"),
        (lambda c: c[1].update(id=c[0]["id"]), "duplicate criterion id"),
    ],
)
def test_bad_standards_are_usage_errors_with_the_line(workspace, mutation, message):
    std = yaml.safe_load((workspace / "std.yaml").read_text())
    mutation(std["criteria"])
    bad = workspace / "bad.yaml"
    bad.write_text(yaml.safe_dump(std, sort_keys=False))
    r = evaluate(workspace, "bx", standard="bad.yaml")
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in r.stderr and "bad.yaml:" in r.stderr and "Traceback" not in r.stderr


def test_a_criterion_no_test_collects_is_a_usage_error():
    from conformance.plugin import check_complete
    from harness.standard import load_standard

    std = load_standard(ROOT / "standards" / "dk-mammo-ai-draft.yaml")
    ids = [c.id for c in std.criteria]
    check_complete(std, ids)
    with pytest.raises(pytest.UsageError, match="collected by 0 test items"):
        check_complete(std, ids[1:])
    with pytest.raises(pytest.UsageError, match="collected by 2 test items"):
        check_complete(std, ids + ids[:1])
