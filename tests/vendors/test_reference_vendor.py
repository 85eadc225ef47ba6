"""The committed reference vendor package loads and runs; its builder is deterministic."""

from __future__ import annotations

from pathlib import Path

from vendors.mgfactory import write_set

from harness.cases.manifest import load_manifest
from harness.jsonutil import sha256_file
from harness.reference.build_model import build
from harness.runner import run_predictions
from harness.vendors import load_vendor_package, open_adapter

VENDOR = Path(__file__).resolve().parents[2] / "harness" / "reference" / "vendor"


def test_committed_package_is_valid_small_and_runs(tmp_path):
    pkg = load_vendor_package(VENDOR)
    assert (VENDOR / "model.onnx").stat().st_size < 5 * 1024 * 1024
    assert pkg.onnx.graph.batch_dynamic and pkg.onnx.heatmap_output == "heatmap"
    cases = write_set(tmp_path / "cases", n=2, rows=512, cols=416)
    preds = run_predictions(open_adapter(pkg), load_manifest(cases), progress=False)
    assert [p.status for p in preds] == ["ok", "ok"]
    # exam unit (bilateral model): one score per exam, findings per view from the 4-channel heatmap
    assert pkg.onnx.input.unit == "exam"
    assert all(0.0 <= p.score <= 1.0 for p in preds)
    assert all(
        f.laterality in ("L", "R") and f.view in ("CC", "MLO") for p in preds for f in p.findings
    )


def test_build_is_deterministic(tmp_path):
    train = write_set(tmp_path / "train", n=4, rows=256, cols=208, seed=3)
    build(train, tmp_path / "a")
    build(train, tmp_path / "b")
    assert sha256_file(tmp_path / "a" / "model.onnx") == sha256_file(tmp_path / "b" / "model.onnx")
    assert load_vendor_package(tmp_path / "a").model_digests["model.onnx"] == sha256_file(
        tmp_path / "a" / "model.onnx"
    )
