"""DK-REJ-01 judges the vendor (#35 item 16): an ONNX package's model only sees the tensors the
harness builds, and the harness's own intended-use check refused the chest CR and the
non-mammogram before the model could; the criterion credited that to the vendor. Now it does not
apply to the ONNX interface (and, as the standard requires it, is not passed), while a product
that receives the DICOM objects itself is judged by its own refusals."""

from __future__ import annotations

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


def _judge(live: LiveModel) -> object:
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
        return evaluate(_rej_spec(), ctx)
    finally:
        live.close()


def test_an_onnx_package_is_not_credited_with_the_harness_check(cases, tmp_path):
    package = load_vendor_package(write_package(tmp_path / "pkg"))
    live = LiveModel.start(package, load_manifest(cases), None, "cpu", resume=False)
    res = _judge(live)
    assert res.outcome == "error", res.explanation
    assert res.explanation.startswith("Not applicable to the onnx interface:")
    assert "counts as not passed" in res.explanation
    assert res.evidence["not_applicable"] == "onnx"
    assert not live.extra_predictions()  # no invalid input was run, nothing credited


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
