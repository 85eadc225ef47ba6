"""Build the reference vendor's ONNX model: a classical lesion detector written as an ONNX graph.

No deep learning framework is involved; the graph is a fixed filter bank whose few weights are
calibrated with numpy on a *training* reference set (never on the set it is evaluated on)::

    x (N,1,H,W) presentation pixels in [0,1], chest wall left, fit
    (all but the speck filter run on the 2x2-mean half-resolution image; G12/G16 at 1/4)
    mask      = breast (x > 0.12), eroded by 8 px so the skin line and padding give no response,
                and without the 48 px band along the chest wall (pectoral muscle edge)
    local_std = sqrt(G16*(x^2) - (G16*x)^2) + 0.01         local contrast normalisation
    f1 = (G2*x  - G6*x)  / local_std                        small masses (DoG, ~2-6 mm)
    f2 = (G4*x  - G12*x) / local_std                        large masses (~5-15 mm)
    f3 = G4 * relu((G0.7*x - G2*x) / local_std)             density of calcification specks
    f4 = (G4*x - G16*x)                                     absolute local excess density
    logit   = w . f + c                                     (1x1 convolution)
    heatmap = MaxPool2x2(sigmoid(logit) * mask at H/2)      (N,1,H/4,W/4), in score units
    score   = GlobalMaxPool(heatmap)                        (N,1)

``G_s`` is a separable Gaussian (reflect padding, kernel radius 3 s). Calibration: the features
are computed by running the feature part of this very graph with onnxruntime; a logistic
regression (IRLS, ridge) separates pixels at the centres of malignant lesions from random breast
pixels, then a second 1-D logistic fit recalibrates ``max(logit)`` per image against "this image
shows a cancer". Everything is deterministic (fixed seed for the pixel sampling, ordered exams).

Run: ``python -m harness.reference.build_model --train-cases DIR --out harness/reference/vendor``
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import onnx
import pydicom
import yaml
from onnx import TensorProto, helper, numpy_helper

from harness.cases.manifest import load_manifest
from harness.pixels import image_to_model, to_model_plane

HEIGHT, WIDTH = 512, 416
INPUT, SCORE, HEATMAP = "image", "score", "heatmap"
FEATURES = ("f_small_mass", "f_large_mass", "f_calc_density", "f_excess")
SEED = 20261127
CHEST_WALL_BAND = 48  # model pixels (~27 mm on the CI images) next to the chest wall
BREAST_THRESHOLD = 0.12  # presentation value: above every device's air background (GE: 0.078), below skin
OPSET = 17


def _gauss(sigma: float) -> np.ndarray:
    r = max(1, int(math.ceil(3 * sigma)))
    t = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * (t / sigma) ** 2)
    return (k / k.sum()).astype(np.float32)


class _Graph:
    """A tiny helper to append nodes and initializers with unique names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.inits: list[onnx.TensorProto] = []
        self._n = 0

    def name(self, stem: str) -> str:
        self._n += 1
        return f"{stem}_{self._n}"

    def const(self, stem: str, value: np.ndarray) -> str:
        n = self.name(stem)
        self.inits.append(numpy_helper.from_array(np.asarray(value), n))
        return n

    def op(self, op_type: str, inputs: list[str], stem: str | None = None, **attrs) -> str:
        out = self.name(stem or op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], **attrs))
        return out

    def blur(self, x: str, sigma: float) -> str:
        k = _gauss(sigma)
        r = len(k) // 2
        pads = self.const("pads", np.array([0, 0, r, r, 0, 0, r, r], np.int64))
        p = self.op("Pad", [x, pads], "pad", mode="reflect")
        h = self.op("Conv", [p, self.const("gx", k.reshape(1, 1, 1, -1))], "gx")
        return self.op("Conv", [h, self.const("gy", k.reshape(1, 1, -1, 1))], f"g{sigma:g}".replace(".", "p"))

    def blur_coarse(self, x: str, sigma: float, factor: int = 4) -> str:
        """A wide Gaussian computed at 1/factor resolution and resized back (bilinear): ~16x cheaper."""
        small = self.op("AveragePool", [x], "down", kernel_shape=[factor, factor], strides=[factor, factor])
        blurred = self.blur(small, sigma / factor)
        scales = self.const("scales", np.array([1, 1, factor, factor], np.float32))
        return self.op("Resize", [blurred, "", scales], f"g{sigma:g}c", mode="linear",
                       coordinate_transformation_mode="half_pixel")


def feature_nodes(g: _Graph, x: str) -> tuple[str, str]:
    """Append the filter bank; returns (features (N,4,H/2,W/2), mask (N,1,H/2,W/2)) tensor names.

    Everything but the calcification specks works at half resolution (x2 = 2x2 mean of x):
    masses are millimetres wide, so this loses nothing and is 4x cheaper. Sigmas below are in
    full-resolution pixels.
    """
    eps = g.const("eps", np.array(0.01, np.float32))
    x2 = g.op("AveragePool", [x], "x2", kernel_shape=[2, 2], strides=[2, 2])
    b2, b4 = (g.blur(x2, s / 2) for s in (2.0, 4.0))
    b6 = g.blur(x2, 3.0)
    b12, b16 = (g.blur_coarse(x2, s / 2, factor=2) for s in (12.0, 16.0))
    sq = g.op("Mul", [x2, x2])
    var = g.op("Sub", [g.blur_coarse(sq, 8.0, factor=2), g.op("Mul", [b16, b16])])
    lstd = g.op("Add", [g.op("Sqrt", [g.op("Relu", [var])]), eps], "local_std")
    f1 = g.op("Div", [g.op("Sub", [b2, b6]), lstd], FEATURES[0])
    f2 = g.op("Div", [g.op("Sub", [b4, b12]), lstd], FEATURES[1])
    speck_dog = g.op("Sub", [g.blur(x, 0.7), g.blur(x, 2.0)])
    specks = g.op("Relu", [g.op("Div", [g.op("AveragePool", [speck_dog], "speck2", kernel_shape=[2, 2], strides=[2, 2]), lstd])])
    f3 = g.blur(specks, 2.0)
    f4 = g.op("Sub", [b4, b16], FEATURES[3])
    feats = g.op("Concat", [f1, f2, f3, f4], "features", axis=1)
    inside = g.op("Cast", [g.op("Greater", [x2, g.const("thr", np.array(BREAST_THRESHOLD, np.float32))])], "inside", to=TensorProto.FLOAT)
    # erosion by 8 full-res pixels = 1 - maxpool(1 - inside), 9x9 at half resolution
    one = g.const("one", np.array(1.0, np.float32))
    outside = g.op("Sub", [one, inside])
    grown = g.op("MaxPool", [outside], "grown", kernel_shape=[9, 9], pads=[4, 4, 4, 4], strides=[1, 1])
    eroded = g.op("Sub", [one, grown], "eroded")
    # The chest-wall band (pectoral muscle, chest-wall edge) gives strong edges and no lesions
    # in the phantom (lesions are placed off the muscle): it is excluded from the heatmap.
    band = np.ones((1, 1, 1, WIDTH // 2), np.float32)
    band[..., : CHEST_WALL_BAND // 2] = 0.0
    mask = g.op("Mul", [eroded, g.const("band", band)], "mask")
    return feats, mask


def _io() -> tuple[onnx.ValueInfoProto, list[onnx.ValueInfoProto]]:
    x = helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["N", 1, HEIGHT, WIDTH])
    return x, []


def feature_model() -> onnx.ModelProto:
    """The filter bank alone: outputs ``features`` (N,4,H,W) and ``mask`` (N,1,H,W)."""
    g = _Graph()
    feats, mask = feature_nodes(g, INPUT)
    g.nodes.append(helper.make_node("Identity", [feats], ["features"]))
    g.nodes.append(helper.make_node("Identity", [mask], ["mask"]))
    x, _ = _io()
    outs = [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", len(FEATURES), HEIGHT // 2, WIDTH // 2]),
            helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["N", 1, HEIGHT // 2, WIDTH // 2])]
    model = helper.make_model(helper.make_graph(g.nodes, "features", [x], outs, g.inits),
                              opset_imports=[helper.make_opsetid("", OPSET)], producer_name="mammocert")
    model.ir_version = 8
    return model


def detector_model(weights: np.ndarray, bias: float) -> onnx.ModelProto:
    """The full reference model with calibrated 1x1-conv ``weights`` (4,) and ``bias``."""
    g = _Graph()
    feats, mask = feature_nodes(g, INPUT)
    w = g.const("w", np.asarray(weights, np.float32).reshape(1, len(FEATURES), 1, 1))
    b = g.const("b", np.asarray([bias], np.float32))
    logit = g.op("Conv", [feats, w, b], "logit")
    prob = g.op("Mul", [g.op("Sigmoid", [logit]), mask], "prob")
    g.nodes.append(helper.make_node("MaxPool", [prob], [HEATMAP], kernel_shape=[2, 2], strides=[2, 2]))
    gmp = g.op("GlobalMaxPool", [HEATMAP], "gmp")
    g.nodes.append(helper.make_node("Flatten", [gmp], [SCORE], axis=1))
    x, _ = _io()
    outs = [helper.make_tensor_value_info(SCORE, TensorProto.FLOAT, ["N", 1]),
            helper.make_tensor_value_info(HEATMAP, TensorProto.FLOAT, ["N", 1, HEIGHT // 4, WIDTH // 4])]
    model = helper.make_model(helper.make_graph(g.nodes, "mammocert_reference_detector", [x], outs, g.inits),
                              opset_imports=[helper.make_opsetid("", OPSET)], producer_name="mammocert",
                              doc_string="mammocert reference vendor: multi-scale DoG lesion detector (see harness/reference/README.md)")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


# ------------------------------------------------------------------ calibration


def _irls(X: np.ndarray, y: np.ndarray, w_sample: np.ndarray, ridge: float = 1e-3, iters: int = 50) -> np.ndarray:
    """Weighted ridge logistic regression by Newton/IRLS; X includes the intercept column."""
    beta = np.zeros(X.shape[1])
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-np.clip(X @ beta, -30, 30)))
        grad = X.T @ (w_sample * (y - p)) - ridge * beta
        hess = (X * (w_sample * p * (1 - p))[:, None]).T @ X + ridge * np.eye(X.shape[1])
        step = np.linalg.solve(hess, grad)
        beta += step
        if np.max(np.abs(step)) < 1e-9:
            break
    return beta


def _image_planes(cases: Path):
    """Yield (exam, image ref, model plane, geometry) for every image of a reference set, in order."""
    manifest = load_manifest(cases)
    for exam in sorted(manifest.exams, key=lambda e: e.exam_id):
        for ref in exam.images:
            ds = pydicom.dcmread(manifest.path(ref))
            plane, geom = to_model_plane(ds, HEIGHT, WIDTH)
            yield exam, ref, plane, geom


def calibrate(cases: Path, negatives_per_image: int = 64, batch: int = 8) -> tuple[np.ndarray, float, dict]:
    """Fit the detector's weights on a training set; returns (weights, bias, report)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(feature_model().SerializeToString(), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(SEED)
    X, y, image_rows = [], [], []
    queue: list = []

    def flush() -> None:
        if not queue:
            return
        feats, masks = sess.run(["features", "mask"], {INPUT: np.stack([q[2] for q in queue])[:, None]})
        for (exam, ref, _plane, geom), f, m in zip(queue, feats, masks, strict=True):
            positives = []
            if exam.label == 1:
                for les in exam.lesions:
                    for mark in les.marks:
                        if mark.file != ref.file:
                            continue
                        x0, y0, x1, y1 = mark.box
                        for fx, fy in ((0.5, 0.5), (0.35, 0.5), (0.65, 0.5), (0.5, 0.35), (0.5, 0.65)):
                            cx, cy = image_to_model(x0 + fx * (x1 - x0), y0 + fy * (y1 - y0), geom)
                            r, c = min(HEIGHT // 2 - 1, int(cy / 2)), min(WIDTH // 2 - 1, int(cx / 2))
                            positives.append(f[:, r, c])
            inside = np.flatnonzero(m[0].ravel() > 0.5)
            if inside.size == 0:
                continue
            pick = rng.choice(inside, size=min(negatives_per_image, inside.size), replace=False)
            flat = f.reshape(f.shape[0], -1)
            for v in positives:
                X.append(v)
                y.append(1.0)
            for idx in np.sort(pick):
                X.append(flat[:, idx])
                y.append(0.0)
            image_rows.append((f, m[0], 1 if positives else 0))
        queue.clear()

    for item in _image_planes(cases):
        queue.append(item)
        if len(queue) == batch:
            flush()
    flush()
    Xa = np.asarray(X, np.float64)
    ya = np.asarray(y)
    if ya.sum() < 2:
        raise SystemExit(f"{cases}: fewer than 2 malignant lesion marks; use a training set with cancers")
    mu, sd = Xa.mean(axis=0), Xa.std(axis=0) + 1e-9
    Z = np.hstack([(Xa - mu) / sd, np.ones((len(Xa), 1))])
    balance = np.where(ya == 1, (ya == 0).sum() / max(1, ya.sum()), 1.0)
    beta = _irls(Z, ya, balance)
    w_pix = beta[:-1] / sd
    b_pix = beta[-1] - float(np.sum(beta[:-1] * mu / sd))
    # Image-level recalibration of max(logit) inside the mask.
    maxima, labels = [], []
    for f, m, lab in image_rows:
        logit = np.tensordot(w_pix, f, axes=1) + b_pix
        logit = np.where(m > 0.5, logit, -np.inf)
        maxima.append(float(np.max(logit)) if np.isfinite(logit).any() else -30.0)
        labels.append(lab)
    M = np.asarray(maxima)
    L = np.asarray(labels, np.float64)
    ab = _irls(np.stack([M, np.ones_like(M)], axis=1), L, np.ones_like(M))
    a, b = float(ab[0]), float(ab[1])
    weights = a * w_pix
    bias = a * b_pix + b
    report = {"pixels": int(len(ya)), "positive_pixels": int(ya.sum()), "images": len(image_rows),
              "images_with_cancer": int(L.sum()), "pixel_weights": [round(float(v), 6) for v in w_pix],
              "image_slope": round(a, 6), "image_intercept": round(b, 6)}
    return weights.astype(np.float32), float(np.float32(bias)), report


VENDOR_YAML = {
    "schema": "mammocert/vendor/v1",
    "vendor": "mammocert reference",
    "product": "RefDetect",
    "version": "1.0.0",
    "interface": "onnx",
    "operating_point": 0.5,
    "score_range": [0.0, 1.0],
    "onnx": {
        "model": "model.onnx",
        "input": {"unit": "image", "name": INPUT, "height": HEIGHT, "width": WIDTH,
                  "orientation": "chest_wall_left", "pixels": "presentation", "scale": [0.0, 1.0], "resize": "fit"},
        "output": {"score": SCORE, "heatmap": HEATMAP},
        "aggregate": "max",
    },
}


def build(train_cases: Path, out: Path) -> dict:
    """Calibrate on ``train_cases`` and write ``out/model.onnx`` + ``out/vendor.yaml``."""
    weights, bias, report = calibrate(train_cases)
    model = detector_model(weights, bias)
    out.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out / "model.onnx"))
    (out / "vendor.yaml").write_text(
        "# mammocert reference vendor (generated by python -m harness.reference.build_model; see README.md)\n"
        + yaml.safe_dump(VENDOR_YAML, sort_keys=False), encoding="utf-8")
    report["train_cases"] = load_manifest(train_cases).digest
    (out / "calibration.json").write_text(json.dumps(report, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.reference.build_model", description=__doc__.splitlines()[0])
    ap.add_argument("--train-cases", required=True, help="training reference set (never the evaluation set)")
    ap.add_argument("--out", default=str(Path(__file__).with_name("vendor")), help="package directory to write")
    args = ap.parse_args(argv)
    report = build(Path(args.train_cases), Path(args.out))
    print(json.dumps(report, indent=1, sort_keys=True), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
