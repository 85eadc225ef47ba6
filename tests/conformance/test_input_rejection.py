"""DK-REJ-01 judges the vendor: an ONNX package's model only sees the tensors the harness builds,
and the harness's own intended-use check refuses the chest CR and the non-mammogram before the
model could, so no refusal would be the vendor's. The shipped standards scope the criterion to
products that receive DICOM (``applies_to``): for an ONNX package it is ``not_applicable`` and
out of the verdict; a standard without the scope requires it of every product, and an ONNX
package then does not meet it. A product that receives the DICOM objects itself is judged by its
own refusals (docs/contracts.md changes 20 and 23)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from vendors.mgfactory import write_package, write_set

from conformance.context import EvaluationContext
from conformance.criteria import evaluate
from conformance.live import LiveModel
from harness.cases.manifest import load_manifest
from harness.errors import VendorFault
from harness.exam_input import ExamInput
from harness.predictions import ExamOutput
from harness.results import CriterionResult, verdict_of
from harness.standard import load_standard
from harness.vendors import load_vendor_package
from harness.vendors.adapter import FakeAdapter
from harness.vendors.onnx_adapter import check_mammogram

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> Path:
    return write_set(tmp_path_factory.mktemp("rejection") / "cases", n=4)


def _rej_spec():
    spec = next(
        c for c in load_standard(ROOT / "standards" / "demo.yaml").criteria if c.id == "DK-REJ-01"
    )
    assert spec.kind == "input_rejection" and spec.mandatory
    return spec


def _judge(live: LiveModel, spec=None) -> CriterionResult:
    live.run("original", None)
    ctx = EvaluationContext(
        load_standard(ROOT / "standards" / "demo.yaml"),
        live.manifest,
        live.original_predictions(),
        0.5,
        {},
        "self-test",
        live=live,
    )
    try:
        return evaluate(spec or _rej_spec(), ctx)
    finally:
        live.close()


def _onnx(cases: Path, tmp_path: Path) -> LiveModel:
    package = load_vendor_package(write_package(tmp_path / "pkg"))
    return LiveModel.start(package, load_manifest(cases), None, "cpu", resume=False)


def test_scoped_to_dicom_it_does_not_apply_to_an_onnx_package(cases, tmp_path):
    assert _rej_spec().applies_to == ("dicom",)
    live = _onnx(cases, tmp_path)
    res = _judge(live)
    assert res.outcome == "not_applicable", res.explanation
    assert "receive the DICOM objects themselves" in res.explanation
    assert "receives input tensors that the harness builds" in res.explanation
    assert res.evidence == {"applies_to": {"inputs": ["dicom"]}, "product_inputs": "tensors"}
    assert res.value is None and res.n == 0
    assert not live.extra_predictions()  # no invalid input was run, nothing credited
    # out of the verdict: a mandatory criterion that does not apply neither passes nor fails it
    passed = dataclasses.replace(res, id="DK-AUC-01", outcome="passed")
    assert verdict_of([res, passed]) == "CONFORMANT"
    assert verdict_of([res, dataclasses.replace(passed, outcome="error")]) == "NOT CONFORMANT"
    assert verdict_of([res]) == "NOT CONFORMANT"  # nothing applied: nothing shown


def test_unscoped_an_onnx_package_does_not_meet_it(cases, tmp_path):
    live = _onnx(cases, tmp_path)
    res = _judge(live, dataclasses.replace(_rej_spec(), applies_to=None))
    assert res.outcome == "error", res.explanation
    assert res.explanation.startswith("Not applicable to the onnx interface:")
    assert "counts as not passed" in res.explanation and "applies_to" in res.explanation
    assert res.evidence["not_applicable"] == "onnx"
    assert not live.extra_predictions()


def _own_front_end(check: bool):
    """A product that receives the DICOM objects (here a Python function, as a DICOM or REST
    vendor's own software would): it declines what is not a mammogram only when ``check``."""

    def model(exam: ExamInput) -> ExamOutput:
        if check:
            for ref, ds in exam.images:
                check_mammogram(ds, ref.file)  # the vendor's own intended-use check
                try:
                    _ = ds.pixel_array
                except Exception as exc:
                    raise VendorFault(f"{ref.file}: cannot decode ({exc})", "rejected") from None
        return ExamOutput(0.3, {"L": 0.3, "R": 0.1})

    return FakeAdapter(model)


@pytest.mark.parametrize(("check", "outcome"), [(True, "passed"), (False, "failed")])
def test_a_product_that_receives_dicom_is_judged_by_its_own_refusals(cases, check, outcome):
    live = LiveModel(_own_front_end(check), load_manifest(cases), None, 30.0)
    res = _judge(live)
    assert res.outcome == outcome, res.explanation
    statuses = {r["variant"]: r["status"] for r in res.evidence["inputs"]}
    assert set(statuses) == set(_rej_spec().params["variants"])
    if not check:
        assert set(statuses.values()) == {"ok"}  # scored every invalid input


def test_a_run_of_an_onnx_package_leaves_it_out_and_verify_replays_that(cases, tmp_path):
    """End to end: results, verdict, JUnit, the vendor's copy and `verify --cases` agree."""
    import xml.etree.ElementTree as ET

    import yaml

    from conformance.engine import RunRequest, recompute_criteria, run
    from reports.signing import generate_keypair
    from reports.verify import verify_bundle

    doc = yaml.safe_load((ROOT / "standards" / "demo.yaml").read_text(encoding="utf-8"))
    doc.pop("reference_set")
    doc["criteria"] = [
        c | ({"examples": 2} if c["id"] == "DK-REJ-01" else {"pass_if": {"value_gte": 0.0}})
        for c in doc["criteria"]
        if c["id"] in ("DK-REJ-01", "DK-AUC-01")
    ]
    std = tmp_path / "std.yaml"
    std.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    generate_keypair(tmp_path / "keys")
    out = tmp_path / "bundle"
    results = run(
        RunRequest(
            standard=std,
            cases=cases,
            out=out,
            vendor=write_package(tmp_path / "pkg"),
            key=tmp_path / "keys" / "signing-key.pem",
        )
    )
    outcomes = {c.id: c.outcome for c in results.criteria}
    assert outcomes == {"DK-AUC-01": "passed", "DK-REJ-01": "not_applicable"}
    assert results.verdict == "CONFORMANT"
    assert results.vendor["harness_checks_input"] is True
    junit = ET.parse(out / "junit.xml").getroot().find("testsuite")
    assert junit.get("skipped") == "1" and junit.get("errors") == "0"
    vendor_copy = json.loads((out / "vendor" / "results.json").read_text(encoding="utf-8"))
    rej = next(c for c in vendor_copy["criteria"] if c["id"] == "DK-REJ-01")
    assert rej["outcome"] == "not_applicable" and rej["explanation"].startswith("Not applicable:")
    report = verify_bundle(
        out, tmp_path / "keys" / "signing-key.pub.pem", cases, recompute=recompute_criteria
    )
    assert report.recomputed == 2 and report.not_rejudged == ()
