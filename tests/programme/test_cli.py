"""``mammocert programme`` end to end on the small synthetic set: predictions mode and bundle mode."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import synthetic_set
import yaml

from harness.cases.manifest import load_manifest
from harness.predictions import write_predictions
from harness.programme.analysis import validate_document

ROOT = Path(__file__).resolve().parents[2]


def mammocert(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mammocert.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        check=False,
    )


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("programme")
    synthetic_set.write_set(d / "cases")
    write_predictions(d / "preds.jsonl", synthetic_set.predictions(load_manifest(d / "cases"), 2.5))
    std = yaml.safe_load((ROOT / "standards" / "dk-mammo-ai-draft.yaml").read_text())
    std["criteria"] = [c for c in std["criteria"] if c["id"] in ("DK-AUC-01", "DK-TRIAGE-01")]
    (d / "std.yaml").write_text(yaml.safe_dump(std, sort_keys=False))
    return d


def test_predictions_mode_writes_json_html_and_a_table(ws: Path):
    r = mammocert(
        ws,
        "programme",
        "--predictions",
        "preds.jsonl",
        "--cases",
        "cases",
        "--standard",
        "std.yaml",
        "--region",
        "midtjylland",
        "--operating-point",
        "0.5",
        "--replicates",
        "300",
        "--draws",
        "300",
        "--out",
        "out",
    )
    assert r.returncode == 0, r.stderr
    assert "Programme impact — region midtjylland, 70,000 screens/year" in r.stdout
    assert "* rests on unverified inputs" in r.stdout
    doc = json.loads((ws / "out" / "programme.json").read_text())
    validate_document(doc)
    assert doc["cost_model"]["region"] == "midtjylland"
    assert doc["population"]["prevalence_per_1000"] == 6.0
    assert [p["name"] for p in doc["protocols"]][0] == "double_reading"
    html = (ws / "out" / "programme.html").read_text()
    assert html.count("<svg") >= 4 and "<script" not in html
    assert "screens_per_year" in html and "no *" in html


def test_bundle_mode_takes_predictions_standard_and_operating_point_from_the_bundle(ws: Path):
    r = mammocert(
        ws,
        "evaluate",
        "--predictions",
        "preds.jsonl",
        "--cases",
        "cases",
        "--standard",
        "std.yaml",
        "--out",
        "bundle",
        "--operating-point",
        "0.4",
    )
    assert r.returncode in (0, 1), r.stderr
    r = mammocert(
        ws,
        "programme",
        "--bundle",
        "bundle",
        "--cases",
        "cases",
        "--replicates",
        "200",
        "--draws",
        "200",
        "--out",
        "out2",
    )
    assert r.returncode == 0, r.stderr
    doc = json.loads((ws / "out2" / "programme.json").read_text())
    assert doc["operating_point"] == 0.4
    assert doc["cost_model"]["region"] == "national"
    assert doc["predictions"].endswith("predictions.jsonl")
    # the bundle's files are sealed by its statement: programme output goes elsewhere
    before = sorted(p.name for p in (ws / "bundle").iterdir())
    args = ("--bundle", "bundle", "--cases", "cases", "--replicates", "200", "--draws", "200")
    r = mammocert(ws, "programme", *args, "--out", "bundle")
    assert r.returncode == 2 and "sealed by statement.unsigned.json" in r.stderr, r.stderr
    assert sorted(p.name for p in (ws / "bundle").iterdir()) == before


def test_usage_errors_are_one_line_exit_2(ws: Path):
    for args, text in (
        (("--cases", "cases", "--out", "o"), "give --predictions and --standard, or --bundle"),
        (
            (
                "--predictions",
                "preds.jsonl",
                "--standard",
                "std.yaml",
                "--cases",
                "cases",
                "--region",
                "atlantis",
                "--out",
                "o",
            ),
            "region 'atlantis'",
        ),
        (("--bundle", "nowhere", "--cases", "cases", "--out", "o"), "results.json"),
    ):
        r = mammocert(ws, "programme", *args)
        assert r.returncode == 2, (args, r.stderr)
        assert text in r.stderr and len(r.stderr.strip().splitlines()) == 1
