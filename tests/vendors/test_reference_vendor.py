"""The committed reference vendor package loads and runs; its training is deterministic."""

from __future__ import annotations

from pathlib import Path

from helpers import require_module
from vendors.mgfactory import write_set

from harness.cases.manifest import load_manifest
from harness.jsonutil import sha256_file
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


def test_training_is_deterministic_and_exports_the_contract(tmp_path):
    require_module("torch", "pip install -e '.[train]'")
    from harness.reference.train_model import build

    train = write_set(tmp_path / "train", n=4, rows=512, cols=416, seed=3)
    reports = [build(train, tmp_path / d, steps=2, batch=2, log=lambda _m: None) for d in "ab"]
    assert reports[0] == reports[1]
    assert sha256_file(tmp_path / "a" / "model.onnx") == sha256_file(tmp_path / "b" / "model.onnx")
    pkg = load_vendor_package(tmp_path / "a")  # the exported graph matches its own vendor.yaml
    assert pkg.model_digests["model.onnx"] == sha256_file(tmp_path / "a" / "model.onnx")
    preds = run_predictions(open_adapter(pkg), load_manifest(train), progress=False)
    assert all(p.status == "ok" and 0.0 <= p.score <= 1.0 for p in preds)
    assert all(set(p.breasts) == {"L", "R"} for p in preds)


def test_shipped_recipe_exports_a_flip_equivariant_prewhitened_model(tmp_path):
    """``--prewhiten --flip-tta`` (the shipped 3.0.0) says its version and the flip mean makes the
    heatmap of an up-down mirrored exam the mirrored heatmap."""
    require_module("torch", "pip install -e '.[train]'")
    import numpy as np
    import onnxruntime as ort

    from harness.reference import train_model

    train = write_set(tmp_path / "train", n=4, rows=512, cols=416, seed=3)
    report = train_model.build(
        train, tmp_path / "pkg", steps=2, batch=2, log=lambda _m: None, prewhiten=True, flip=True
    )
    assert report["test_time_flip"] is True
    # the prewhitened model is a different model from the plain 2.0.0, and says so
    assert load_vendor_package(tmp_path / "pkg").version == train_model.VERSION_PREWHITENED
    x = train_model.load_split(train).planes[:2].astype(np.float32)
    session = ort.InferenceSession(
        str(tmp_path / "pkg" / "model.onnx"), providers=["CPUExecutionProvider"]
    )

    def heatmap(image: np.ndarray) -> np.ndarray:
        return session.run(["heatmap"], {"image": image})[0]

    np.testing.assert_allclose(
        heatmap(np.ascontiguousarray(x[:, :, ::-1])), heatmap(x)[:, :, ::-1], atol=1e-6
    )


def test_reference_scripts_refuse_a_missing_set_in_one_line(tmp_path):
    import subprocess
    import sys

    none = str(tmp_path / "none")
    for script, args in (
        ("evaluate_model", ["--cases", none]),
        ("train_model", ["--train-cases", none]),
    ):
        run = subprocess.run(
            [sys.executable, "-m", f"harness.reference.{script}", *args],
            capture_output=True,
            text=True,
        )
        assert run.returncode == 2, run.stderr
        assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1
        # evaluate: the set; train: PyTorch is checked first
        assert any(w in run.stderr for w in ("manifest.json", "PyTorch")), run.stderr


def test_prewhitened_channel_is_in_units_of_the_planes_own_response_level():
    """``filter_scale`` (the CFAR normalisation of the --prewhiten channel): more noise in the
    breast raises the scale by the same factor, the edge and the air do not count, and a plane
    with no interior stays at 1."""
    require_module("torch", "pip install -e '.[train]'")
    import numpy as np
    import torch

    from harness.reference.train_model import filter_scale

    rng = np.random.default_rng(0)
    x = torch.zeros(1, 1, 256, 256)
    x[..., :, :200] = 0.5  # breast on the left, air on the right
    f = torch.from_numpy(rng.normal(0, 3.0, (1, 1, 256, 256)).astype(np.float32))
    s1 = float(filter_scale(x, f))
    s2 = float(filter_scale(x, 2.0 * f))
    assert 2.8 < s1 < 3.0  # prior of 1024 unit pixels among ~37 000 interior ones: pulls slightly
    assert abs(s2 / s1 - 2.0) < 0.03
    f_edge = f.clone()
    f_edge[..., :, 185:] = 1000.0  # the skin line (within half a kernel of the edge) and air
    assert float(filter_scale(x, f_edge)) == s1
    assert float(filter_scale(torch.zeros(1, 1, 64, 64), f[..., :64, :64])) == 1.0


def test_exam_graph_filters_each_view_once_and_computes_what_the_network_does_per_pair():
    """The exported --prewhiten graph filters each view once and reuses the flipped response for
    the flipped view; that must equal running the network on every (view, partner) pair and on
    its up-down mirror, as in training."""
    require_module("torch", "pip install -e '.[train]'")
    import numpy as np
    import torch

    from harness.reference import train_model as tm

    torch.manual_seed(0)
    k = tm.symmetrise(np.random.default_rng(0).normal(size=(tm.PW_SIZE, tm.PW_SIZE)))
    net = tm.make_net(k.astype(np.float32)).eval()
    image = torch.from_numpy(np.random.default_rng(1).random((1, 4, 512, 416)).astype(np.float32))
    image[..., :, 300:] = 0.0  # air, so the mask and the CFAR scale matter
    with torch.no_grad():
        _, _, cells = tm.ExamModel(net, 1.0, 0.0, flip=True).logits(image)
        x = tm.pair_up(image)
        naive = 0.5 * (tm.masked_logit(net, x) + tm.masked_logit(net, x.flip(2)).flip(2))
    assert torch.allclose(cells.reshape(naive.shape), naive, atol=1e-4)
