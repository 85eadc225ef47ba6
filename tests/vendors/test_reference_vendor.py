"""The committed reference vendor package loads and runs; its training is deterministic."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import require_module
from vendors.mgfactory import write_set

from harness.cases.manifest import load_manifest
from harness.errors import UsageError
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


def test_refinement_and_stabilisation_start_from_the_exported_model_and_are_deterministic(
    tmp_path,
):
    require_module("torch", "pip install -e '.[train]'")
    import numpy as np
    import onnxruntime as ort

    from harness.reference import refine_model, train_model

    train = write_set(tmp_path / "train", n=4, rows=512, cols=416, seed=3)
    report = train_model.build(
        train, tmp_path / "stage1", steps=2, batch=2, log=lambda _m: None, prewhiten=True, flip=True
    )
    assert report["test_time_flip"] is True
    # the prewhitened model is a different model from the plain 2.0.0, and says so
    assert load_vendor_package(tmp_path / "stage1").version == train_model.VERSION_PREWHITENED
    # the rebuilt network (BatchNorm folded into the exported weights) computes the same heatmap
    net = refine_model.net_from_onnx(tmp_path / "stage1" / "model.onnx")
    assert net.pw is not None  # the fixed prewhitening filter travels in the graph
    train_model.export(net.eval(), 1.0, 0.0, tmp_path / "rebuilt.onnx", flip=True)
    x = train_model.load_split(train).planes[:2].astype(np.float32)

    def heatmap(model: Path, image: np.ndarray) -> np.ndarray:
        session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        return session.run(["heatmap"], {"image": image})[0]

    stage1 = tmp_path / "stage1" / "model.onnx"
    np.testing.assert_allclose(heatmap(stage1, x), heatmap(tmp_path / "rebuilt.onnx", x), atol=1e-5)
    # with the flip mean, an up-down mirrored exam gets the mirrored heatmap (same scores)
    np.testing.assert_allclose(
        heatmap(stage1, np.ascontiguousarray(x[:, :, ::-1])),
        heatmap(stage1, x)[:, :, ::-1],
        atol=1e-6,
    )

    reports = [
        refine_model.build(tmp_path / "stage1", train, tmp_path / d, steps=2, log=lambda _m: None)
        for d in "ab"
    ]
    assert reports[0] == reports[1] and reports[0]["test_time_flip"] is True
    assert sha256_file(tmp_path / "a" / "model.onnx") == sha256_file(tmp_path / "b" / "model.onnx")
    assert reports[0]["stage1"]["model"] == "sha256:" + sha256_file(
        tmp_path / "stage1" / "model.onnx"
    )
    pkg = load_vendor_package(tmp_path / "a")
    assert pkg.version == refine_model.VERSION and not (tmp_path / "a" / ".refine").exists()
    preds = run_predictions(open_adapter(pkg), load_manifest(train), progress=False)
    assert all(p.status == "ok" and 0.0 <= p.score <= 1.0 for p in preds)

    # stage 3 too: deterministic, from the exported weights, keeping the flip mean
    from harness.reference import stabilise_model

    reports = [
        stabilise_model.build(stage1.parent, train, tmp_path / d, steps=2, log=lambda _m: None)
        for d in ("s1", "s2")
    ]
    assert reports[0] == reports[1] and reports[0]["test_time_flip"] is True
    assert sha256_file(tmp_path / "s1" / "model.onnx") == sha256_file(
        tmp_path / "s2" / "model.onnx"
    )
    assert sha256_file(tmp_path / "s1" / "model.onnx") != sha256_file(stage1)  # it did train
    assert reports[0]["init"]["model"] == "sha256:" + sha256_file(stage1)
    pkg = load_vendor_package(tmp_path / "s1")
    assert pkg.version == stabilise_model.VERSION
    preds = run_predictions(open_adapter(pkg), load_manifest(train), progress=False)
    assert all(p.status == "ok" and 0.0 <= p.score <= 1.0 for p in preds)


def test_reference_scripts_refuse_a_missing_set_in_one_line(tmp_path):
    import subprocess
    import sys

    none = str(tmp_path / "none")
    for script, args in (
        ("evaluate_model", ["--cases", none]),
        ("train_model", ["--train-cases", none]),
        ("refine_model", ["--init", none, "--train-cases", none, "--out", none]),
        ("stabilise_model", ["--init", none, "--train-cases", none, "--out", none]),
        ("cascade_model", ["--init", none, "--train-cases", none, "--out", none]),
        ("ensemble_model", ["--init", none, "--with", none, "--train-cases", none, "--out", none]),
    ):
        run = subprocess.run(
            [sys.executable, "-m", f"harness.reference.{script}", *args],
            capture_output=True,
            text=True,
        )
        assert run.returncode == 2, run.stderr
        assert "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1
        # evaluate: the set; train: PyTorch is checked first; refine, stabilise, cascade: the package
        assert any(w in run.stderr for w in ("manifest.json", "PyTorch", "model.onnx")), run.stderr


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


def test_stabilisation_models_the_tolerance_relations_as_the_harness_applies_them(tmp_path):
    """stabilise_model perturbs model planes; each model must match what the relation does to the
    DICOM images of each synthetic device (GE: MONOCHROME1 through a SIGMOID window), once the
    adapter has preprocessed them."""
    require_module("torch", "pip install -e '.[train]'")
    import dataclasses

    import numpy as np
    import pydicom
    import torch

    from harness.cases import DEFAULT_RECIPE
    from harness.cases.build import render_and_write
    from harness.cases.devices import PROFILES
    from harness.cases.manifest import ImageRef
    from harness.cases.population import plan_exams
    from harness.cases.recipe import load_recipe
    from harness.exam_input import ExamInput
    from harness.perturb.intensity import IntensityParams, apply_intensity
    from harness.perturb.noise import NoiseParams, apply_noise
    from harness.perturb.resample import ResampleParams, apply_resample
    from harness.pixels import to_model_plane
    from harness.reference import stabilise_model as sm
    from harness.reference import train_model as tm

    def plane(e: ExamInput) -> torch.Tensor:
        return torch.from_numpy(to_model_plane(e.images[0][1], tm.HEIGHT, tm.WIDTH)[0])[None]

    def error(real: torch.Tensor, model: torch.Tensor, x: torch.Tensor, inner) -> float:
        """The model's error in units of the relation's change, over the breast interior."""
        return float((real - model)[0][inner].std() / (real - x)[0][inner].std())

    recipe = load_recipe(DEFAULT_RECIPE)
    plan = plan_exams(recipe.with_overrides(exams=1))[0]
    for maker in PROFILES:
        rec = render_and_write(
            recipe, dataclasses.replace(plan, manufacturer=maker), tmp_path / maker
        )
        im = rec["record"]["images"][0]
        ds = pydicom.dcmread(tmp_path / maker / im["file"])
        exam = ExamInput("E", ((ImageRef(im["file"], im["laterality"], im["view"], ""), ds),))
        display = sm.Display.of(maker)
        assert display == sm.Display(maker == "GE", maker == "GE")
        x = plane(exam)
        inner = torch.zeros_like(x[0], dtype=torch.bool)
        inner[4:-4, 4:-4] = x[0, 4:-4, 4:-4] > 0.1
        for pitch in (0.05, 0.1):
            real = plane(apply_resample(exam, ResampleParams(spacing_mm=pitch)))
            assert error(real, sm.resampled(x, display), x, inner) < 0.1, (maker, pitch)
        for gamma, width, centre in ((0.8, 1.0, 0.0), (1.25, 0.85, 0.1), (1.0, 1.15, -0.1)):
            p = IntensityParams(gamma=gamma, width_scale=width, center_shift=centre)
            real = plane(apply_intensity(exam, p))
            model = sm.redisplayed(x, display, gamma, width, centre)
            assert error(real, model, x, inner) < 0.02, (maker, p)
            # the wrong device's display is a different change: the test tells them apart
            wrong = sm.Display(not display.inverted, not display.sigmoid)
            model = sm.redisplayed(x, wrong, gamma, width, centre)
            assert error(real, model, x, inner) > 0.1, (maker, p)
        # noise: the same spread of added noise, per presentation level
        real = plane(apply_noise(exam, NoiseParams(dose=0.5, seed=1)))
        model = sm.lower_dose(x, display, 0.5, np.random.default_rng(1))
        spread = [float((y - x)[0][inner].std()) for y in (real, model)]
        assert np.isclose(*spread, rtol=0.1), (maker, spread)


def test_cascade_selects_separated_candidates_and_cuts_their_patches():
    require_module("torch", "pip install -e '.[train]'")
    import numpy as np
    import torch

    from harness.reference import cascade_model as cm
    from harness.reference import train_model as tm

    h, w = 20, 30
    cells = torch.full((1, h, w), -5.0)
    cells[0, 10, 10], cells[0, 10, 12], cells[0, 3, 25], cells[0, 18, 1] = 9.0, 8.0, 7.0, 6.0
    idx, logit = cm.select(cells, 3)
    # (10, 12) lies inside the square suppressed around (10, 10); the next two are outside it
    assert idx[0].tolist() == [10 * w + 10, 3 * w + 25, 18 * w + 1]
    assert logit[0].tolist() == [9.0, 7.0, 6.0]

    pairs = torch.arange(2 * 80 * 120, dtype=torch.float32).reshape(1, 2, 80, 120)
    got = cm.patches(pairs, torch.tensor([[0, 5 * w + 7]]), w, 8)
    assert got.shape == (1, 2, 2, 8, 8)
    # a patch is centred on its cell centre (cell * STRIDE + STRIDE / 2), zero off the image
    cy, cx = 5 * tm.STRIDE + tm.STRIDE // 2, 7 * tm.STRIDE + tm.STRIDE // 2
    np.testing.assert_array_equal(got[0, 1].numpy(), pairs[0, :, cy - 4 : cy + 4, cx - 4 : cx + 4])
    corner = got[0, 0].numpy()
    assert (corner[:, :2] == 0).all() and (corner[:, :, :2] == 0).all()
    np.testing.assert_array_equal(corner[:, 2:, 2:], pairs[0, :, :6, :6])


def test_cascade_is_deterministic_and_exports_what_it_computes(tmp_path):
    require_module("torch", "pip install -e '.[train]'")
    import numpy as np
    import onnxruntime as ort
    import torch

    from harness.reference import cascade_model as cm
    from harness.reference import refine_model, train_model

    train = write_set(tmp_path / "train", n=10, rows=512, cols=416, seed=3)
    train_model.build(train, tmp_path / "stage1", steps=2, batch=2, log=lambda _m: None)
    reports = [
        cm.build(tmp_path / "stage1", train, tmp_path / d, steps=3, log=lambda _m: None)
        for d in "ab"
    ]
    assert reports[0] == reports[1]
    assert sha256_file(tmp_path / "a" / "model.onnx") == sha256_file(tmp_path / "b" / "model.onnx")
    # calibrated on the held-out exams (every fifth), not on those the classifier saw
    assert reports[0]["calibration_exams"] == 2 and reports[0]["classifier_exams"] == 8
    assert reports[0]["stage1"]["model"] == "sha256:" + sha256_file(
        tmp_path / "stage1" / "model.onnx"
    )

    pkg = load_vendor_package(tmp_path / "a")
    assert pkg.version == cm.VERSION and pkg.operating_point == reports[0]["operating_point"]
    preds = run_predictions(open_adapter(pkg), load_manifest(train), progress=False)
    assert all(p.status == "ok" and 0.0 <= p.score <= 1.0 for p in preds)

    # the exported graph computes what the torch cascade computes
    split = train_model.load_split(train)
    net, _ = refine_model.starting_package(tmp_path / "stage1")
    module, _, _ = cm.train_cascade(net.eval(), split, 3, log=lambda _m: None)
    train_model.export_module(module, tmp_path / "cascade.onnx")
    x = split.planes[:3].astype(np.float32)
    session = ort.InferenceSession(
        str(tmp_path / "cascade.onnx"), providers=["CPUExecutionProvider"]
    )
    score, heat, breasts = session.run(["score", "heatmap", "breast_scores"], {"image": x})
    with torch.no_grad():
        expected = [t.numpy() for t in module(torch.from_numpy(x))]
    for got, want in zip((score, heat, breasts), expected, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)
    # the heatmap is the candidates: zero but at each view's K separated candidate cells, where it
    # is the calibrated candidate score
    with torch.no_grad():
        exam, breast, z, idx = (t.numpy() for t in module.logits(torch.from_numpy(x)))
    a, b = module.a, module.b
    cells = heat.reshape(3, 4, -1)
    at = np.take_along_axis(cells, idx, 2)
    np.testing.assert_allclose(at, 1 / (1 + np.exp(-(a * z + b))), rtol=1e-5, atol=1e-7)
    np.put_along_axis(cells, idx, 0.0, 2)
    assert (cells == 0).all()
    # soft maxima: a breast's logit is at least each of its candidates', the exam's each breast's
    # (the scores follow when Platt's slope is positive, which a 2-exam calibration need not give)
    for n in range(3):
        for side, views in ((0, [0, 1]), (1, [2, 3])):
            assert breast[n, side] >= z[n, views].max() - 1e-6
        assert exam[n] >= breast[n].max() - 1e-6


def test_ensemble_sums_its_detectors_cell_logits_and_exports_what_it_computes(tmp_path):
    require_module("torch", "pip install -e '.[train]'")
    import numpy as np
    import onnxruntime as ort
    import torch

    from harness.reference import ensemble_model as em
    from harness.reference import refine_model, train_model

    train = write_set(tmp_path / "train", n=4, rows=512, cols=416, seed=3)
    quiet = {"log": lambda _m: None}
    train_model.build(train, tmp_path / "plain", steps=2, batch=2, **quiet)
    train_model.build(
        train, tmp_path / "cfar", steps=2, batch=2, prewhiten=True, flip=True, **quiet
    )
    reports = [
        em.build(tmp_path / "plain", tmp_path / "cfar", train, tmp_path / d, 0.3, **quiet)
        for d in "ab"
    ]
    assert reports[0] == reports[1]
    assert sha256_file(tmp_path / "a" / "model.onnx") == sha256_file(tmp_path / "b" / "model.onnx")
    shares = [m["share"] for m in reports[0]["members"]]
    assert shares == [0.3, 0.7] and reports[0]["members"][1]["test_time_flip"] is True
    pkg = load_vendor_package(tmp_path / "a")
    assert pkg.version == em.VERSION and pkg.operating_point == reports[0]["operating_point"]
    preds = run_predictions(open_adapter(pkg), load_manifest(train), progress=False)
    assert all(p.status == "ok" and 0.0 <= p.score <= 1.0 for p in preds)

    # the heatmap logit is each member's cell logit over its normal-exam spread, times its share
    x = train_model.load_split(train).planes[:2].astype(np.float32)
    session = ort.InferenceSession(
        str(tmp_path / "a" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    heat = session.run(["heatmap"], {"image": x})[0]
    expected = 0.0
    for name, member in zip(("plain", "cfar"), reports[0]["members"], strict=True):
        net, _ = refine_model.starting_package(tmp_path / name)
        exam = train_model.ExamModel(net.eval(), 1.0, 0.0, name == "cfar")
        with torch.no_grad():
            cells = exam.logits(torch.from_numpy(x))[2].numpy()
        expected = expected + member["share"] / member["normal_spread"] * cells
    np.testing.assert_allclose(heat, 1 / (1 + np.exp(-expected)), atol=1e-5)
    with pytest.raises(UsageError, match="share"):
        em.build(tmp_path / "plain", tmp_path / "cfar", train, tmp_path / "c", 1.0, **quiet)
