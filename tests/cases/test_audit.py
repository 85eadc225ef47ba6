"""The reader audit on a small v2 set: descriptors and readings recorded, figures printed, exit 2
for a set without lesion descriptors."""

import json
import subprocess
import sys

import pytest
import yaml

from harness.cases import DEFAULT_RECIPE
from harness.cases.audit import main
from harness.cases.build import build_reference_set
from harness.resources import resource

FIELDS = ("shape", "margin", "calc_morphology", "calc_distribution", "conspicuity", "suspicion")


@pytest.fixture(scope="module")
def v2_set(tmp_path_factory):
    """24 exams, rich in findings so that both kinds of mass occur."""
    data = yaml.safe_load(resource("reference_cases", "default-v2.yaml").read_text())
    data.update(exams=24, seed=11)
    data["mix"] = {"screen_detected": 0.3, "interval": 0.1, "benign": 0.4, "normal": 0.2}
    data["lesions"]["benign_types"] = {"mass": 0.8, "calcification": 0.2}
    d = tmp_path_factory.mktemp("v2")
    (d / "r.yaml").write_text(yaml.safe_dump(data))
    return build_reference_set(d / "r.yaml", d / "set", workers=2)


def test_descriptors_and_reads_recorded(v2_set):
    raw = json.loads((v2_set.root / "manifest.json").read_text())
    assert raw["generator"]["lesion_model"] == "birads"
    assert raw["generator"]["reader_model"].startswith("pixels:")
    findings = [f for e in raw["exams"] for f in e["lesions"]]
    findings += [f for fs in raw["benign_findings"].values() for f in fs]
    assert findings
    for f in findings:
        assert all(k in f for k in FIELDS), f
        assert isinstance(f["conspicuity"], float)
    for e in v2_set.exams:
        if e.label:  # interval cancers are the cancers the consensus missed
            assert (e.truth == "screen_detected") == bool(e.readers["consensus"])
    cal = raw["generator"]["reader_calibration"]
    assert set(cal) == {
        "reader_sensitivity",
        "reader_specificity",
        "consensus_sensitivity",
        "consensus_specificity",
    }


def test_audit_prints_the_figures(v2_set, capsys, tmp_path):
    rc = main(["--cases", str(v2_set.root), "--json", str(tmp_path / "a.json")])
    out = capsys.readouterr().out
    assert rc == 0
    for needle in (
        "reader 1 sensitivity",
        "consensus specificity",
        "reader 1 suspicion AUC",
        "pixel-feature classifier AUC",
        "readers' excess over pixels",
        "recall by descriptor",
    ):
        assert needle in out
    res = json.loads((tmp_path / "a.json").read_text())
    assert 0 <= res["masses"]["reader1_auc"] <= 1
    assert 0 <= res["masses"]["pixel_classifier_auc"] <= 1


def test_audit_exit_2_without_descriptors(tmp_path):
    build_reference_set(DEFAULT_RECIPE, tmp_path / "v1", exams=2, workers=1)
    p = subprocess.run(
        [sys.executable, "-m", "harness.cases.audit", "--cases", str(tmp_path / "v1")],
        capture_output=True,
        text=True,
    )
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and "no lesion descriptors" in lines[0] and "default-v2" in lines[0]
