"""`mammocert accept`: a region's installation against the vendor's certificate, exam by exam,
with the limits of the certificate's standard; the signed acceptance verifies."""

from __future__ import annotations

import json
from pathlib import Path

import html5lib
import pytest
import yaml
from dicom_testkit import deidentified_set, free_port, orthanc, write_dicom_package
from helpers import require_tool
from vendors.mgfactory import write_package

from harness.predictions import Prediction
from harness.reference.dicom_node import ReferenceDicomNode
from harness.vendors import load_vendor_package, open_adapter
from mammocert.cli import main
from reports.acceptance import deltas
from reports.signing import generate_keypair

ROOT = Path(__file__).resolve().parents[2]


def _standard(path: Path) -> Path:
    """The demo standard cut to one prediction-only criterion, unpinned (self-test runs on a
    hand-made set), with its site_acceptance block as shipped."""
    std = yaml.safe_load((ROOT / "standards" / "demo.yaml").read_text())
    std["criteria"] = [c for c in std["criteria"] if c["id"] == "DK-AUC-01"]
    std.pop("reference_set", None)
    path.write_text(yaml.safe_dump(std, sort_keys=False), encoding="utf-8")
    return path


def _run(vendor: Path, std: Path, cases: Path, out: Path, key: Path) -> None:
    args = ["run", "--vendor", str(vendor), "--standard", str(std), "--cases", str(cases)]
    code = main(args + ["--out", str(out), "--mode", "self-test", "--key", str(key)])
    assert code in (0, 1), code  # a verdict, whichever; never a usage error or a crash


def _ok(exam: str, score: float) -> Prediction:
    return Prediction(exam, "original", "ok", score, {}, (), 0.1, None)


def test_decisions_compare_each_run_at_its_own_operating_point():
    cert = [_ok("E1", 0.7), _ok("E2", 0.2), _ok("E3", 0.55)]
    local = [
        _ok("E1", 0.7),
        _ok("E2", 0.2),
        Prediction("E3", "original", "error", None, {}, (), None, "x"),
    ]
    rows = deltas(cert, local, 0.5, 0.5)
    assert [(r.exam_id, r.flipped, r.local_status) for r in rows] == [
        ("E1", False, "ok"),
        ("E2", False, "ok"),
        ("E3", False, "error"),
    ]
    # the same scores under a local threshold of 0.75: E1 and E3 are no longer recalled
    assert [r.exam_id for r in deltas(cert, cert, 0.5, 0.75) if r.flipped] == ["E1", "E3"]


@pytest.mark.external
@pytest.mark.slow
def test_pacs_installation_is_accepted_and_a_changed_package_rejected(tmp_path, capsys):
    require_tool("Orthanc", "apt-get install orthanc")
    priv, pub = generate_keypair(tmp_path / "keys")
    cases = deidentified_set(tmp_path / "set", n=6)
    std = _standard(tmp_path / "std.yaml")
    onnx_dir = write_package(tmp_path / "onnx")
    _run(onnx_dir, std, cases, tmp_path / "cert", priv)

    node_port = free_port()
    scorer = open_adapter(load_vendor_package(onnx_dir))
    try:
        with orthanc(tmp_path / "orthanc", aet="REGION_PACS", node=("REF_NODE", node_port),
                     harness_ae="MAMMOCERT") as pacs_port:  # fmt: skip
            with ReferenceDicomNode(
                scorer, node_port, "REF_NODE", f"REGION_PACS@127.0.0.1:{pacs_port}"
            ):
                pkg = write_dicom_package(tmp_path / "pacs_pkg", node_port=node_port,
                                          pacs=("REGION_PACS", pacs_port), timeout_s=30)  # fmt: skip
                _run(pkg, std, cases, tmp_path / "local", priv)
    finally:
        scorer.close()
    capsys.readouterr()
    out = tmp_path / "acc"
    args = ["accept", "--certificate", str(tmp_path / "cert"), "--local", str(tmp_path / "local")]
    args += ["--key", str(pub), "--site", "Region PACS", "--sign", str(priv), "--out", str(out)]
    assert main(args) == 0, capsys.readouterr().out
    printed = capsys.readouterr().out
    assert printed.startswith("ACCEPTED: installation at Region PACS")
    doc = json.loads((out / "acceptance.json").read_text())
    assert doc["exams"] == 6 and doc["flipped"] == [] and doc["failed"] == []
    assert doc["local"]["vendor"]["interface"] == "dicom"
    assert main(["verify", str(out), "--key", str(pub)]) == 0

    # The same model with its operating point moved after certification: REJECTED, flips listed.
    moved = write_package(tmp_path / "moved", extra={"operating_point": 0.05})
    _run(moved, std, cases, tmp_path / "local2", priv)
    capsys.readouterr()
    args2 = ["accept", "--certificate", str(tmp_path / "cert"), "--local", str(tmp_path / "local2")]
    args2 += ["--key", str(pub), "--site", "Region B", "--sign", str(priv)]
    assert main(args2 + ["--out", str(tmp_path / "acc2")]) == 1
    printed = capsys.readouterr().out
    doc = json.loads((tmp_path / "acc2" / "acceptance.json").read_text())
    assert printed.startswith("REJECTED") and doc["flipped"], printed
    for r in doc["flipped"]:
        assert f"flipped {r['exam_id']}" in printed

    # The regions' acceptances side by side, against the same certificate.
    cmp = tmp_path / "cmp"
    assert (
        main(["compare", str(out), str(tmp_path / "acc2"), "--key", str(pub), "--out", str(cmp)])
        == 0
    )
    page = (cmp / "compare.html").read_text()
    assert (
        "Region PACS" in page and "Region B" in page and "ACCEPTED" in page and "REJECTED" in page
    )
    html5lib.HTMLParser(strict=True).parse(page)
    # a byte changed after signing is caught, by verify and by compare
    (out / "acceptance.html").write_text((out / "acceptance.html").read_text() + " ")
    assert main(["verify", str(out), "--key", str(pub)]) == 1
    assert (
        main(["compare", str(out), str(tmp_path / "acc2"), "--key", str(pub), "--out", str(cmp)])
        == 1
    )
    assert "NOT VERIFIED" in (cmp / "compare.html").read_text()
