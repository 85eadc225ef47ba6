"""`mammocert accept`: a region's installation against the vendor's certificate, exam by exam,
with the limits of the certificate's standard; the signed acceptance verifies."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import html5lib
import pytest
import yaml
from dicom_testkit import deidentified_set, free_port, orthanc, write_dicom_package
from helpers import certify_standard, require_tool
from vendors.mgfactory import write_package

from harness.cases.build import build_reference_set
from harness.predictions import Prediction, read_predictions
from harness.reference.dicom_node import ReferenceDicomNode
from harness.resources import DEFAULT_RECIPE, REFERENCE_VENDOR
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


def _run(vendor: Path, std: Path, cases: Path, out: Path, key: Path, mode="self-test") -> None:
    args = ["run", "--vendor", str(vendor), "--standard", str(std), "--cases", str(cases)]
    code = main(args + ["--out", str(out), "--mode", mode, "--key", str(key)])
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


def _reference_package(out: Path, **input_changes) -> Path:
    """A copy of the shipped reference package, its ``onnx.input`` changed as given (an
    installation whose preprocessing was changed after certification)."""
    shutil.copytree(REFERENCE_VENDOR, out)
    doc = yaml.safe_load((out / "vendor.yaml").read_text(encoding="utf-8"))
    doc["onnx"]["input"].update(input_changes)
    (out / "vendor.yaml").write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return out


def _accept(tmp_path: Path, local: str, site: str, pub: Path, priv: Path, capsys) -> tuple:
    capsys.readouterr()
    args = ["accept", "--certificate", str(tmp_path / "cert"), "--local", str(tmp_path / local)]
    args += ["--key", str(pub), "--site", site, "--sign", str(priv)]
    code = main(args + ["--out", str(tmp_path / f"acc-{local}")])
    printed = capsys.readouterr().out
    with capsys.disabled():
        print(printed)  # the real output, quoted in the README (pytest -s shows it)
    return code, printed, json.loads((tmp_path / f"acc-{local}" / "acceptance.json").read_text())


@pytest.mark.external
@pytest.mark.slow
def test_reference_vendor_behind_orthanc_reproduces_its_onnx_certificate(tmp_path, capsys):
    """The shipped reference vendor certified as an ONNX package on a built default-recipe set,
    then installed behind a region's PACS (Orthanc routing each mammogram to the reference DICOM
    node, which scores with the same package and stores its SR back): ACCEPTED. The same
    installation with its operating point lowered after certification, and one whose node
    serves the package with another resize, are REJECTED with the flipped exams listed."""
    require_tool("Orthanc", "apt-get install orthanc")
    priv, pub = generate_keypair(tmp_path / "keys")
    cases = tmp_path / "cases"
    build_reference_set(DEFAULT_RECIPE, cases, exams=12, workers=2)
    std = certify_standard(
        ROOT / "standards" / "demo.yaml", cases, lambda c: c["id"] == "DK-AUC-01",
        tmp_path / "std.yaml",
    )  # fmt: skip
    _run(REFERENCE_VENDOR, std, cases, tmp_path / "cert", priv, mode="certify")
    op = load_vendor_package(REFERENCE_VENDOR).operating_point
    product = {"vendor": "mammocert reference", "product": "RefDetect", "version": "3.0.0"}

    node_port = free_port()
    with orthanc(tmp_path / "orthanc", aet="REGION_PACS", node=("REF_NODE", node_port),
                 harness_ae="MAMMOCERT") as pacs_port:  # fmt: skip
        installations = {
            # the node scores in percent: the certified threshold, and one lowered to 30 %
            "local": (REFERENCE_VENDOR, 100 * op),
            "moved": (REFERENCE_VENDOR, 30.0),
            "stretched": (_reference_package(tmp_path / "stretch", resize="stretch"), 100 * op),
        }
        for name, (served, native_op) in installations.items():
            scorer = open_adapter(load_vendor_package(served))
            try:
                with ReferenceDicomNode(
                    scorer, node_port, "REF_NODE", f"REGION_PACS@127.0.0.1:{pacs_port}"
                ):
                    pkg = write_dicom_package(
                        tmp_path / f"pkg-{name}", node_port=node_port,
                        pacs=("REGION_PACS", pacs_port), timeout_s=60,
                        extra=product | {"operating_point": native_op},
                    )  # fmt: skip
                    _run(pkg, std, cases, tmp_path / name, priv, mode="certify")
            finally:
                scorer.close()

    certified = {
        p.exam_id: p.score
        for p in read_predictions(tmp_path / "cert" / "predictions.jsonl")
        if p.condition == "original"
    }
    assert len(certified) == 12 and None not in certified.values()

    code, printed, doc = _accept(tmp_path, "local", "Region PACS", pub, priv, capsys)
    assert code == 0 and printed.startswith("ACCEPTED: installation at Region PACS"), printed
    assert doc["exams"] == 12 and doc["flipped"] == [] and doc["failed"] == []
    assert doc["certificate"]["vendor"]["interface"] == "onnx"
    assert doc["certificate"]["mode"] == "certify"
    assert doc["local"]["vendor"]["interface"] == "dicom"
    assert main(["verify", str(tmp_path / "acc-local"), "--key", str(pub)]) == 0

    # Operating point lowered to 0.30: exactly the exams the certificate scored in [0.30, op)
    # are now recalled.
    code, printed, doc = _accept(tmp_path, "moved", "Region B", pub, priv, capsys)
    expected = sorted(e for e, s in certified.items() if 0.30 <= s < op)
    assert expected, "the set has no exam between the two thresholds; the test shows nothing"
    assert code == 1 and printed.startswith("REJECTED"), printed
    assert [r["exam_id"] for r in doc["flipped"]] == expected
    for e in expected:
        assert f"flipped {e}" in printed

    # Another resize behind the same PACS: other pixels reach the model, so the scores move
    # beyond the standard's tolerance; every exam whose decision moved is listed.
    code, printed, doc = _accept(tmp_path, "stretched", "Region C", pub, priv, capsys)
    assert code == 1 and printed.startswith("REJECTED"), printed
    score = next(c for c in doc["checks"] if c["name"] == "score_difference")
    assert not score["passed"]
    local = {
        p.exam_id: p.score
        for p in read_predictions(tmp_path / "stretched" / "predictions.jsonl")
        if p.condition == "original"
    }
    flipped = sorted(e for e, s in certified.items() if (s >= op) != (local[e] >= op))
    assert [r["exam_id"] for r in doc["flipped"]] == flipped
    for e in flipped:
        assert f"flipped {e}" in printed
