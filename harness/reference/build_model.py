"""Build the reference vendor's ONNX model: a classical lesion detector written as an ONNX graph.

No deep learning framework is involved; the graph is a fixed filter bank whose few weights are
calibrated with numpy on a *training* reference set (never on the set it is evaluated on)::

    input (N,4,H,W) = [LCC, LMLO, RCC, RMLO] (exam unit), reshaped to 4N planes x (4N,1,H,W),
    presentation pixels in [0,1], chest wall left, fit
    pw        = bilateral prewhitened matched filter: (sphere r=6 px / training NPS) * x, minus the
                locally regressed same-view contralateral response, / local RMS (the mass head)
    (mass features on the 2x2-mean half-resolution image x2, the largest at 1/4; specks at full)
    mask      = breast (x > 0.12) eroded by 8 px, eroded by 18 px (19x19 at half resolution), minus the 48 px chest-wall band, minus flat
                saturated regions (pectoral muscle) grown by ~11 mm
    local_std = sqrt(G16*(x^2) - (G16*x)^2) + 0.01             local contrast normalisation
    DoGs      = (G2 - G6) x / local_std, (G4 - G12) x / local_std
    blobs     = relu(-l1(Hessian of G_s x)) * s^2 / local_std   s = 2, 4 (x2), 3.5 (x4): bright blobs
    cluster   = count of specks (x - G1.5 x > 0.13..0.20) within a few mm
    speck     = G2 * relu(AvgPool2(G0.7 x - G2 x) / local_std)
    excess    = (G4 - G16) x;  depth = coarse blur of the eroded mask
    logit     = max(head_mass . f + c_m, head_calc . f + c_c)     (two 1x1 convolutions + Max)
    heatmap   = MaxPool2x2(sigmoid(logit) * mask at H/2)          (N,4,H/4,W/4), one channel per view
    score     = ReduceMax(heatmap)                                (N,1)

``G_s`` is a separable Gaussian (reflect padding, kernel radius 3 s). Calibration: the features
are computed by running the feature part of this very graph with onnxruntime (one thread); see
:func:`calibrate`. Everything is deterministic (fixed seed, ordered exams, float32 weights).

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
INPUT, SCORE, HEATMAP, BREASTS = "image", "score", "heatmap", "breast_scores"
FEATURES = (
    "f_small_dog",
    "f_large_dog",
    "f_blob_small",
    "f_blob_mid",
    "f_blob_large",
    "f_calc_cluster",
    "f_speck",
    "f_excess",
    "f_depth",
    "f_pw_bilateral",
)
VIEWS = (("L", "CC"), ("L", "MLO"), ("R", "CC"), ("R", "MLO"))  # exam-unit channel order
PW_RADII = (
    6.0,
)  # mass radius (model pixels, ~3.4 mm) of the prewhitened matched filter (5, 7, 8 and 11 did worse on the dev split)
PW_SIZE = 33  # their kernel size (model pixels)
BIL_SIGMA = (
    16.0  # model pixels: window of the local contralateral regression and of the residual RMS
)
NPS_PATCH = 64
SEED = 20261127
CHEST_WALL_BAND = 48  # model pixels (~27 mm on the CI images) next to the chest wall
BREAST_THRESHOLD = (
    0.12  # presentation value: above every device's air background (GE: 0.078), below skin
)
OPSET = 17
ERODE = 19  # half-resolution pixels: the breast mask is eroded by 9 (~10 mm); lesions sit deeper
SPECK_LEVEL = 0.13  # presentation units above the local mean where a pixel starts to count as a calcification speck
SPECK_RAMP = 0.07  # ... and counts fully this much higher (tissue grain: 99.9th percentile ~0.10, specks 0.2-0.5)
OPERATING_SPECIFICITY = 0.975  # Danish first reader: 97.8 % (Elhakim 2023); about 0.97-0.98


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
        return self.op(
            "Conv", [h, self.const("gy", k.reshape(1, 1, -1, 1))], f"g{sigma:g}".replace(".", "p")
        )

    def blur_coarse(self, x: str, sigma: float, factor: int = 4) -> str:
        """A wide Gaussian computed at 1/factor resolution and resized back (bilinear): ~16x cheaper."""
        small = self.op(
            "AveragePool", [x], "down", kernel_shape=[factor, factor], strides=[factor, factor]
        )
        blurred = self.blur(small, sigma / factor)
        scales = self.const("scales", np.array([1, 1, factor, factor], np.float32))
        return self.op(
            "Resize",
            [blurred, "", scales],
            f"g{sigma:g}c",
            mode="linear",
            coordinate_transformation_mode="half_pixel",
        )

    def hessian_blob(self, x: str, sigma: float) -> str:
        """Scale-normalised bright-blob strength at scale ``sigma`` (pixels of ``x``).

        With the Hessian eigenvalues l1 >= l2 of the Gaussian-smoothed image, a bright blob has both
        negative; ``relu(-l1) * sigma^2`` is large only there (edges and lines have l1 ~ 0), so the
        fractal tissue boundaries and the ducts, which dominate a plain DoG, are suppressed.
        """
        b = self.blur(x, sigma)
        pads = self.const("pads", np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64))
        bp = self.op("Pad", [b, pads], "padh", mode="reflect")
        kxx = np.zeros((1, 1, 3, 3), np.float32)
        kxx[0, 0, 1] = (1, -2, 1)
        kyy = np.ascontiguousarray(kxx.transpose(0, 1, 3, 2))
        kxy = np.zeros((1, 1, 3, 3), np.float32)
        kxy[0, 0, 0, 0] = kxy[0, 0, 2, 2] = 0.25
        kxy[0, 0, 0, 2] = kxy[0, 0, 2, 0] = -0.25
        dxx = self.op("Conv", [bp, self.const("kxx", kxx)], "dxx")
        dyy = self.op("Conv", [bp, self.const("kyy", kyy)], "dyy")
        dxy = self.op("Conv", [bp, self.const("kxy", kxy)], "dxy")
        half = self.const("half", np.array(0.5, np.float32))
        mean = self.op("Mul", [self.op("Add", [dxx, dyy]), half])
        dif = self.op("Mul", [self.op("Sub", [dxx, dyy]), half])
        rad = self.op(
            "Sqrt", [self.op("Add", [self.op("Mul", [dif, dif]), self.op("Mul", [dxy, dxy])])]
        )
        l1 = self.op("Add", [mean, rad])
        s2 = self.const("s2", np.array(-(sigma**2), np.float32))
        return self.op("Relu", [self.op("Mul", [l1, s2])], f"blob{sigma:g}".replace(".", "p"))

    def upsample(self, x: str, factor: int) -> str:
        scales = self.const("scales", np.array([1, 1, factor, factor], np.float32))
        return self.op(
            "Resize",
            [x, "", scales],
            "up",
            mode="linear",
            coordinate_transformation_mode="half_pixel",
        )


def contralateral(g: _Graph, t: str) -> str:
    """(4N, C, h, w) in exam-channel order [LCC, LMLO, RCC, RMLO] per exam -> the same view of the other breast."""
    shape = g.op("Shape", [t], "shape")
    five = g.op(
        "Concat",
        [
            g.const("m1", np.array([-1, 2, 2], np.int64)),
            g.op(
                "Slice",
                [
                    shape,
                    g.const("s1", np.array([1], np.int64)),
                    g.const("s4", np.array([4], np.int64)),
                ],
            ),
        ],
        "shape5",
        axis=0,
    )
    r = g.op("Reshape", [t, five], "by_side")
    flipped = g.op(
        "Slice",
        [
            r,
            g.const("st", np.array([-1], np.int64)),
            g.const("en", np.array([-(2**62)], np.int64)),
            g.const("ax", np.array([1], np.int64)),
            g.const("sp", np.array([-1], np.int64)),
        ],
        "swap_sides",
    )
    return g.op("Reshape", [flipped, shape], "contra")


def bilateral_pw(g: _Graph, x: str, kernel: np.ndarray, name: str) -> str:
    """Prewhitened matched filter of ``x`` (4N,1,H,W), minus its locally regressed contralateral response,
    divided by the local RMS of that residual; max-pooled to half resolution."""
    r = kernel.shape[-1] // 2
    pads = g.const("pads", np.array([0, 0, r, r, 0, 0, r, r], np.int64))
    f = g.op(
        "Conv",
        [
            g.op("Pad", [x, pads], "padpw", mode="reflect"),
            g.const("pw", kernel.reshape(1, 1, *kernel.shape)),
        ],
        "pw",
    )
    b = contralateral(g, f)
    eps = g.const("eps", np.array(1e-8, np.float32))
    c = g.op(
        "Div",
        [
            g.blur_coarse(g.op("Mul", [f, b]), BIL_SIGMA),
            g.op("Add", [g.blur_coarse(g.op("Mul", [b, b]), BIL_SIGMA), eps]),
        ],
    )
    c = g.op(
        "Clip",
        [c, g.const("zero", np.array(0.0, np.float32)), g.const("one", np.array(1.0, np.float32))],
        "bil_coef",
    )
    d = g.op("Sub", [f, g.op("Mul", [c, b])], "bil_resid")
    rms = g.op(
        "Add",
        [
            g.op("Sqrt", [g.op("Relu", [g.blur_coarse(g.op("Mul", [d, d]), BIL_SIGMA)])]),
            g.const("eps", np.array(1e-4, np.float32)),
        ],
    )
    z = g.op("Div", [d, rms])
    return g.op("MaxPool", [z], name, kernel_shape=[2, 2], strides=[2, 2])


def feature_nodes(g: _Graph, x: str, pw_kernels: list[np.ndarray]) -> tuple[str, str]:
    """Append the filter bank; returns (features (N,F,H/2,W/2), mask (N,1,H/2,W/2)) tensor names.

    Masses are millimetres wide, so their features work at half resolution (x2 = 2x2 mean of x)
    or quarter resolution (x4) and are 4-16x cheaper; the calcification specks are found at full
    resolution and counted at half resolution. Sigmas are in pixels of the level they run on.
    """
    eps = g.const("eps", np.array(0.01, np.float32))
    x2 = g.op("AveragePool", [x], "x2", kernel_shape=[2, 2], strides=[2, 2])
    x4 = g.op("AveragePool", [x2], "x4", kernel_shape=[2, 2], strides=[2, 2])
    b2, b4 = (g.blur(x2, s / 2) for s in (2.0, 4.0))
    b6 = g.blur(x2, 3.0)
    b12, b16 = (g.blur_coarse(x2, s / 2, factor=2) for s in (12.0, 16.0))
    sq = g.op("Mul", [x2, x2])
    var = g.op("Sub", [g.blur_coarse(sq, 8.0, factor=2), g.op("Mul", [b16, b16])])
    lstd = g.op("Add", [g.op("Sqrt", [g.op("Relu", [var])]), eps], "local_std")
    f_small = g.op("Div", [g.op("Sub", [b2, b6]), lstd], FEATURES[0])
    f_large = g.op("Div", [g.op("Sub", [b4, b12]), lstd], FEATURES[1])
    # Blob (Hessian) features: ~2.5, 4.5 and 8 mm Gaussian scales on the CI images (masses 5-30 mm).
    blob_s = g.op("Div", [g.hessian_blob(x2, 2.0), lstd], FEATURES[2])
    blob_m = g.op("Div", [g.hessian_blob(x2, 4.0), lstd], FEATURES[3])
    blob_l = g.op("Div", [g.upsample(g.hessian_blob(x4, 3.5), 2), lstd], FEATURES[4])
    # Calcifications: bright specks of one or two pixels, far brighter than the tissue grain around
    # them (hydroxyapatite attenuates ~25x more than glandular tissue). A speck is where the image
    # exceeds its own 1.5 px Gaussian mean by SPECK_LEVEL .. SPECK_LEVEL + SPECK_RAMP presentation
    # units (soft indicator in [0, 1]); the cluster feature counts specks within a few millimetres.
    dog = g.op("Sub", [g.blur(x, 0.7), g.blur(x, 2.0)], "speck_dog")
    top = g.op("Sub", [x, g.blur(x, 1.5)], "tophat")
    lvl = g.const("speck_level", np.array(SPECK_LEVEL, np.float32))
    ramp = g.const("speck_ramp", np.array(SPECK_RAMP, np.float32))
    ind = g.op(
        "Clip",
        [
            g.op("Div", [g.op("Sub", [top, lvl]), ramp]),
            g.const("zero", np.array(0.0, np.float32)),
            g.const("one", np.array(1.0, np.float32)),
        ],
        "speck_ind",
    )
    # only specks well inside the breast: the skin line is a fine-scale edge too
    inside_full = g.op(
        "Cast",
        [g.op("Greater", [x, g.const("thr", np.array(BREAST_THRESHOLD, np.float32))])],
        "inside_full",
        to=TensorProto.FLOAT,
    )
    out_full = g.op("Sub", [g.const("one", np.array(1.0, np.float32)), inside_full])
    keep = g.op(
        "Sub",
        [
            g.const("one", np.array(1.0, np.float32)),
            g.op(
                "MaxPool",
                [out_full],
                "grown_full",
                kernel_shape=[21, 21],
                pads=[10, 10, 10, 10],
                strides=[1, 1],
            ),
        ],
    )
    ind = g.op("Mul", [ind, keep])
    ind2 = g.op("AveragePool", [ind], "ind2", kernel_shape=[2, 2], strides=[2, 2])
    f_cluster = g.op(
        "Mul",
        [g.blur(ind2, 3.0), g.const("count", np.array(4 * 2 * math.pi * 9.0, np.float32))],
        FEATURES[5],
    )
    specks = g.op(
        "Relu",
        [
            g.op(
                "Div",
                [g.op("AveragePool", [dog], "speck2", kernel_shape=[2, 2], strides=[2, 2]), lstd],
            )
        ],
    )
    f_speck = g.op("Identity", [g.blur(specks, 2.0)], FEATURES[6])
    f_excess = g.op("Sub", [b4, b16], FEATURES[7])
    inside = g.op(
        "Cast",
        [g.op("Greater", [x2, g.const("thr", np.array(BREAST_THRESHOLD, np.float32))])],
        "inside",
        to=TensorProto.FLOAT,
    )
    # erosion by 8 full-res pixels = 1 - maxpool(1 - inside), 9x9 at half resolution
    one = g.const("one", np.array(1.0, np.float32))
    outside = g.op("Sub", [one, inside])
    grown = g.op(
        "MaxPool",
        [outside],
        "grown",
        kernel_shape=[ERODE, ERODE],
        pads=[ERODE // 2] * 4,
        strides=[1, 1],
    )
    eroded = g.op("Sub", [one, grown], "eroded")
    # depth inside the breast (0 at the skin line, 1 deep inside): lets the fit discount the rim
    f_depth = g.op("Identity", [g.blur_coarse(eroded, 16.0, factor=4)], FEATURES[8])
    pw = [bilateral_pw(g, x, k, FEATURES[9 + i]) for i, k in enumerate(pw_kernels)]
    feats = g.op(
        "Concat",
        [f_small, f_large, blob_s, blob_m, blob_l, f_cluster, f_speck, f_excess, f_depth, *pw],
        "features",
        axis=1,
    )
    # The chest-wall band (pectoral muscle, chest-wall edge) gives strong edges and no lesions
    # in the phantom (lesions are placed off the muscle): it is excluded from the heatmap.
    band = np.ones((1, 1, 1, WIDTH // 2), np.float32)
    band[..., : CHEST_WALL_BAND // 2] = 0.0
    # The pectoral muscle on MLO is a flat region at the top of the presentation window; its edge
    # looks like specks and blobs. Flat (5x5 range < 0.01) and bright (> 0.84) pixels, grown by
    # ~11 mm, are excluded.
    lmax = g.op("MaxPool", [x2], "lmax", kernel_shape=[5, 5], pads=[2, 2, 2, 2], strides=[1, 1])
    lmin = g.op(
        "Neg",
        [
            g.op(
                "MaxPool",
                [g.op("Neg", [x2])],
                "lmin",
                kernel_shape=[5, 5],
                pads=[2, 2, 2, 2],
                strides=[1, 1],
            )
        ],
    )
    flat = g.op(
        "Cast",
        [g.op("Less", [g.op("Sub", [lmax, lmin]), g.const("flat", np.array(0.01, np.float32))])],
        "flat",
        to=TensorProto.FLOAT,
    )
    bright = g.op(
        "Cast",
        [g.op("Greater", [x2, g.const("bright", np.array(0.84, np.float32))])],
        "bright",
        to=TensorProto.FLOAT,
    )
    sat = g.op(
        "MaxPool",
        [g.op("Mul", [flat, bright])],
        "saturated",
        kernel_shape=[21, 21],
        pads=[10, 10, 10, 10],
        strides=[1, 1],
    )
    mask = g.op(
        "Mul", [g.op("Mul", [eroded, g.op("Sub", [one, sat])]), g.const("band", band)], "mask"
    )
    return feats, mask


def _io() -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(INPUT, TensorProto.FLOAT, ["N", len(VIEWS), HEIGHT, WIDTH])


def _planes(g: _Graph) -> str:
    """The exam input (N, 4, H, W) as 4N single-image planes (4N, 1, H, W), exam-channel order."""
    return g.op(
        "Reshape", [INPUT, g.const("planes", np.array([-1, 1, HEIGHT, WIDTH], np.int64))], "planes"
    )


def feature_model(pw_kernels: list[np.ndarray]) -> onnx.ModelProto:
    """The filter bank alone: outputs ``features`` (4N,F,H/2,W/2) and ``mask`` (4N,1,H/2,W/2)."""
    g = _Graph()
    feats, mask = feature_nodes(g, _planes(g), pw_kernels)
    g.nodes.append(helper.make_node("Identity", [feats], ["features"]))
    g.nodes.append(helper.make_node("Identity", [mask], ["mask"]))
    outs = [
        helper.make_tensor_value_info(
            "features", TensorProto.FLOAT, ["M", len(FEATURES), HEIGHT // 2, WIDTH // 2]
        ),
        helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["M", 1, HEIGHT // 2, WIDTH // 2]),
    ]
    model = helper.make_model(
        helper.make_graph(g.nodes, "features", [_io()], outs, g.inits),
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="mammocert",
    )
    model.ir_version = 8
    return model


def detector_model(
    heads: list[tuple[np.ndarray, float]], pw_kernels: list[np.ndarray]
) -> onnx.ModelProto:
    """The full reference model: per head a calibrated 1x1 convolution (``weights`` (F,), ``bias``)
    over the features; logit = max over the heads (mass, calcification), already on the exam scale.
    Input: one exam (N, 4, H, W) [LCC, LMLO, RCC, RMLO]; heatmap (N, 4, H/4, W/4), one channel per view."""
    g = _Graph()
    feats, mask = feature_nodes(g, _planes(g), pw_kernels)
    logits = []
    for k, (weights, bias) in enumerate(heads):
        w = g.const(f"w{k}", np.asarray(weights, np.float32).reshape(1, len(FEATURES), 1, 1))
        b = g.const(f"b{k}", np.asarray([bias], np.float32))
        logits.append(g.op("Conv", [feats, w, b], f"logit{k}"))
    logit = g.op("Max", logits, "logit") if len(logits) > 1 else logits[0]
    prob = g.op("Mul", [g.op("Sigmoid", [logit]), mask], "prob")
    heat = g.op("MaxPool", [prob], "heat_planes", kernel_shape=[2, 2], strides=[2, 2])
    g.nodes.append(
        helper.make_node(
            "Reshape",
            [
                heat,
                g.const("hshape", np.array([-1, len(VIEWS), HEIGHT // 4, WIDTH // 4], np.int64)),
            ],
            [HEATMAP],
        )
    )
    gmp = g.op("ReduceMax", [HEATMAP], "exam_max", axes=[1, 2, 3], keepdims=1)
    g.nodes.append(helper.make_node("Flatten", [gmp], [SCORE], axis=1))
    # Per-breast scores [L, R]: the maximum over each side's two views (channels [LCC, LMLO | RCC, RMLO]),
    # on the same scale as the exam score, so exam = max(L, R).
    sides = g.op(
        "Reshape",
        [HEATMAP, g.const("sshape", np.array([-1, 2, 2 * (HEIGHT // 4) * (WIDTH // 4)], np.int64))],
        "sides",
    )
    g.nodes.append(helper.make_node("ReduceMax", [sides], [BREASTS], axes=[2], keepdims=0))
    outs = [
        helper.make_tensor_value_info(SCORE, TensorProto.FLOAT, ["N", 1]),
        helper.make_tensor_value_info(
            HEATMAP, TensorProto.FLOAT, ["N", len(VIEWS), HEIGHT // 4, WIDTH // 4]
        ),
        helper.make_tensor_value_info(BREASTS, TensorProto.FLOAT, ["N", 2]),
    ]
    model = helper.make_model(
        helper.make_graph(g.nodes, "mammocert_reference_detector", [_io()], outs, g.inits),
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="mammocert",
        doc_string="mammocert reference vendor: bilateral prewhitened matched filter + blob + "
        "calcification-cluster detector (see harness/reference/README.md)",
    )
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


# ------------------------------------------------------------------ calibration


def _irls(
    X: np.ndarray, y: np.ndarray, w_sample: np.ndarray, ridge: float = 1e-3, iters: int = 50
) -> np.ndarray:
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


def _exam_planes(cases: Path):
    """Yield (exam, [4 image refs], (4, H, W) model planes, [4 geometries]) per complete exam, in order."""
    manifest = load_manifest(cases)
    for exam in sorted(manifest.exams, key=lambda e: e.exam_id):
        by_view = {}
        for ref in exam.images:
            ds = pydicom.dcmread(manifest.path(ref))
            key = (
                str(ds.get("ImageLaterality", "")).upper(),
                str(ds.get("ViewPosition", "")).upper(),
            )
            if key in VIEWS and key not in by_view:
                plane, geom = to_model_plane(ds, HEIGHT, WIDTH)
                by_view[key] = (ref, plane, geom)
        if len(by_view) == len(VIEWS):
            items = [by_view[k] for k in VIEWS]
            yield (
                exam,
                [i[0] for i in items],
                np.stack([i[1] for i in items]),
                [i[2] for i in items],
            )


def noise_power_spectrum(exams: list, rng: np.random.Generator, per_image: int = 4) -> np.ndarray:
    """Radially averaged noise power spectrum (NPS_PATCH grid) of the breast interior of images without
    cancer: Hann-windowed NPS_PATCH^2 patches at seeded random positions deep inside the breast."""
    from scipy import ndimage

    P = NPS_PATCH
    win = np.outer(np.hanning(P), np.hanning(P))
    fr = np.hypot(np.fft.fftfreq(P)[:, None], np.fft.fftfreq(P)[None, :])
    rb = np.minimum((fr * P).round().astype(int), P // 2)
    acc, n = np.zeros((P, P)), 0
    for exam, _refs, planes, _geoms in exams:
        if exam.label != 0:
            continue
        for a in planes.astype(np.float64):
            inside = a > BREAST_THRESHOLD
            inside[:, :CHEST_WALL_BAND] = False
            ok = ndimage.minimum_filter(inside.astype(np.uint8), size=P + 8, mode="constant") > 0
            rr, cc = np.nonzero(ok)
            if not rr.size:
                continue
            for q in np.sort(rng.choice(rr.size, size=min(per_image, rr.size), replace=False)):
                p = a[rr[q] - P // 2 : rr[q] + P // 2, cc[q] - P // 2 : cc[q] + P // 2]
                acc += np.abs(np.fft.fft2((p - p.mean()) * win)) ** 2
                n += 1
    if n == 0:  # no usable patch (tiny test sets): a power law, beta = 3, plus a white floor
        rad = 1.0 / (np.arange(P // 2 + 1) + 1.0) ** 3 + 1e-4
    else:
        rad = np.bincount(rb.ravel(), (acc / n).ravel(), minlength=P // 2 + 1) / np.bincount(
            rb.ravel(), minlength=P // 2 + 1
        )
    return rad / rad.max()


def pw_kernels(nps: np.ndarray) -> list[np.ndarray]:
    """Prewhitened matched filters (template / NPS, Fourier domain) for projected spheres of PW_RADII,
    cropped to PW_SIZE, zero mean, unit norm."""
    P = NPS_PATCH
    fr = np.hypot(np.fft.fftfreq(P)[:, None], np.fft.fftfreq(P)[None, :])
    S = nps[np.minimum((fr * P).round().astype(int), len(nps) - 1)]
    y, x = np.mgrid[-P // 2 : P // 2, -P // 2 : P // 2].astype(np.float64)
    out = []
    for r in PW_RADII:
        t = np.sqrt(np.maximum(1 - (x * x + y * y) / r**2, 0))
        h = np.real(np.fft.fftshift(np.fft.ifft2(np.fft.fft2(np.fft.ifftshift(t - t.mean())) / S)))
        c, s = P // 2, PW_SIZE // 2
        h = h[c - s : c + s + 1, c - s : c + s + 1]
        h = h - h.mean()
        out.append((h / np.sqrt((h * h).sum())).astype(np.float32))
    return out


def _local_maxima(logit: np.ndarray, valid: np.ndarray, k: int) -> np.ndarray:
    """Flat indices of the ``k`` highest 5x5 local maxima of ``logit`` inside ``valid``."""
    from scipy.ndimage import maximum_filter

    v = np.where(valid, logit, -np.inf)
    peaks = np.flatnonzero(
        ((v == maximum_filter(v, size=5, mode="constant", cval=-np.inf)) & valid).ravel()
    )
    if peaks.size == 0:
        return peaks
    order = np.lexsort((peaks, -v.ravel()[peaks]))  # by value, ties by index: deterministic
    return peaks[order[:k]]


def collect(exams: list, kernels: list[np.ndarray], batch: int = 2) -> list[dict]:
    """Run the feature graph over the exams of a reference set; per image: exam id/label, features on the
    heatmap grid (every 2nd half-resolution pixel, float32), the mask there, and the features of every
    half-resolution pixel inside each malignant lesion box (the positives)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # deterministic reductions
    sess = ort.InferenceSession(
        feature_model(kernels).SerializeToString(), opts, providers=["CPUExecutionProvider"]
    )
    rows: list[dict] = []
    queue: list = []

    def flush() -> None:
        if not queue:
            return
        feats, masks = sess.run(
            ["features", "mask"], {INPUT: np.stack([q[2] for q in queue]).astype(np.float32)}
        )
        items = [
            (exam, ref, geom)
            for exam, refs, _p, geoms in queue
            for ref, geom in zip(refs, geoms, strict=True)
        ]
        for (exam, ref, geom), f, m in zip(items, feats, masks, strict=True):
            boxes = []
            if exam.label == 1:
                for les in exam.lesions:
                    for mark in les.marks:
                        if mark.file != ref.file:
                            continue
                        x0, y0, x1, y1 = mark.box
                        ax, ay = image_to_model(x0, y0, geom)
                        bx, by = image_to_model(x1, y1, geom)
                        c0, c1 = sorted((ax / 2, bx / 2))
                        r0, r1 = ay / 2, by / 2
                        cx, cy = 0.5 * (c0 + c1), 0.5 * (r0 + r1)
                        # the lesion's central part (the top finding must land in the box)
                        rr = np.arange(
                            max(0, int(cy - 0.3 * (r1 - r0))),
                            min(HEIGHT // 2, int(cy + 0.3 * (r1 - r0)) + 1),
                        )
                        cc = np.arange(
                            max(0, int(cx - 0.3 * (c1 - c0))),
                            min(WIDTH // 2, int(cx + 0.3 * (c1 - c0)) + 1),
                        )
                        if rr.size and cc.size:
                            boxes.append(
                                (
                                    les.type,
                                    f[:, rr[0] : rr[-1] + 1, cc[0] : cc[-1] + 1]
                                    .reshape(f.shape[0], -1)
                                    .T.copy(),
                                )
                            )
            rows.append(
                {
                    "exam": exam.exam_id,
                    "label": exam.label,
                    "positives": boxes,
                    "grid": f[:, ::2, ::2].reshape(f.shape[0], -1).T.copy(),
                    "mask": m[0, ::2, ::2].ravel() > 0.5,
                    "shape": (HEIGHT // 4, WIDTH // 4),
                }
            )
        queue.clear()

    for item in exams:
        queue.append(item)
        if len(queue) == batch:
            flush()
    flush()
    return rows


def _fit_pixels(
    pos: np.ndarray, neg: np.ndarray, neg_w: np.ndarray, ridge: float
) -> tuple[np.ndarray, float]:
    """Weighted ridge logistic regression of positive vs negative pixels; returns (weights, bias)."""
    X = np.vstack([pos, neg]).astype(np.float64)
    y = np.concatenate([np.ones(len(pos)), np.zeros(len(neg))])
    mu, sd = X.mean(axis=0), X.std(axis=0) + 1e-9
    Z = np.hstack([(X - mu) / sd, np.ones((len(X), 1))])
    w_s = np.concatenate([np.full(len(pos), neg_w.sum() / max(1, len(pos))), neg_w])
    beta = _irls(Z, y, w_s / w_s.mean(), ridge=ridge)
    w = beta[:-1] / sd
    return w, float(beta[-1] - np.sum(beta[:-1] * mu / sd))


#: The detector's heads: (name, lesion types it is trained on, features it may use).
HEADS = (
    ("mass", ("mass", "distortion"), ("f_pw_bilateral",)),
    ("calcification", ("calcification",), ("f_calc_cluster", "f_speck", "f_depth")),
)


class _Packed:
    """Masked heat-map-grid features of a list of images stacked, for fast per-image maxima."""

    def __init__(self, rows: list[dict], cols: list[int]) -> None:
        mats, starts, n = [], [], 0
        self.keep = []
        for i, r in enumerate(rows):
            m = r["grid"][r["mask"]][:, cols]
            if len(m):
                starts.append(n)
                n += len(m)
                mats.append(m)
                self.keep.append(i)
        self.X = np.vstack(mats).astype(np.float64) if mats else np.zeros((0, len(cols)))
        self.starts = np.asarray(starts, np.int64)

    def image_max(self, w: np.ndarray, b: float, n_rows: int) -> np.ndarray:
        out = np.full(n_rows, -30.0)
        if len(self.starts):
            out[self.keep] = np.maximum.reduceat(self.X @ w + b, self.starts)
        return out


def _soft_auc(s: np.ndarray, lab: np.ndarray) -> float:
    p, n = s[lab == 1], s[lab == 0]
    if not len(p) or not len(n):
        return 0.5
    t = 0.25 * (np.std(s) + 1e-9)
    return float(np.mean(1.0 / (1.0 + np.exp(-np.clip((p[:, None] - n[None, :]) / t, -30, 30)))))


def _fit_head(
    rows: list[dict],
    types: tuple[str, ...],
    cols: list[int],
    rng: np.random.Generator,
    rounds: int,
    hard_per_image: int,
    rand_neg: np.ndarray,
    es_steps: int,
) -> tuple[np.ndarray, float]:
    """One head: MIL logistic with hard negatives, refined by a (1+1) evolution strategy on the
    image-level AUC (images with a lesion of ``types`` vs images without cancer), then an image-level
    logistic calibration. Returns full-length weights (zeros outside ``cols``) and bias."""
    pos_rows = [r for r in rows if any(t in types for t, _ in r["positives"])]
    neg_rows = [r for r in rows if not r["positives"]]
    if not pos_rows or not neg_rows:
        return np.zeros(len(FEATURES)), -10.0
    w = None
    b = 0.0
    if rounds == 0:  # start from the head's primary feature alone
        w = np.zeros(len(cols))
        w[0] = 1.0
    for _round in range(rounds):
        pos = []
        for r in pos_rows:
            for t, P in r["positives"]:
                if t in types:
                    Q = P[:, cols]
                    pos.append(Q[len(Q) // 2] if w is None else Q[int(np.argmax(Q @ w))])
        negs, weights = [rand_neg[:, cols]], [np.ones(len(rand_neg))]
        if w is not None:
            for r in neg_rows:
                logit = (r["grid"][:, cols] @ w + b).reshape(r["shape"])
                idx = _local_maxima(logit, r["mask"].reshape(r["shape"]), hard_per_image)
                if idx.size:
                    negs.append(r["grid"][idx][:, cols])
                    weights.append(np.full(idx.size, 4.0))
        w, b = _fit_pixels(np.asarray(pos), np.vstack(negs), np.concatenate(weights), ridge=1e-2)
    sub = pos_rows + neg_rows
    lab = np.array([1] * len(pos_rows) + [0] * len(neg_rows))
    packed = _Packed(sub, cols)
    sd = packed.X.std(axis=0) + 1e-9 if len(packed.X) else np.ones(len(cols))
    best = w.copy()
    f_best = _soft_auc(packed.image_max(best, b, len(sub)), lab)
    step = 0.3
    scale = np.linalg.norm(best * sd) / np.sqrt(len(cols)) + 1e-9
    for _ in range(es_steps):
        cand = best + step * scale * rng.standard_normal(len(cols)) / sd
        f = _soft_auc(packed.image_max(cand, b, len(sub)), lab)
        if f > f_best:
            best, f_best, step = cand, f, step * 1.2
        else:
            step = max(0.02, step * 0.97)
    m = packed.image_max(best, b, len(sub))
    ab = _irls(
        np.stack([m, np.ones_like(m)], axis=1), lab.astype(np.float64), np.ones_like(m), ridge=1e-6
    )
    full = np.zeros(len(FEATURES))
    full[cols] = ab[0] * best
    return full, float(ab[0] * b + ab[1])


def calibrate(
    cases: Path, **kw
) -> tuple[list[tuple[np.ndarray, float]], dict, np.ndarray, np.ndarray, list[np.ndarray]]:
    """Fit the detector's heads on a training set; returns (heads, report, exam scores, exam labels).

    Per head (mass incl. distortion; calcification): a pixel stage (multiple-instance + hard-negative
    mining: positives are, per marked image, the pixel of the lesion's central part where the current
    head responds most, the first round taking the centre; negatives are random breast pixels plus,
    from the second round, the highest local maxima of the head on every image without a cancer),
    a (1+1) evolution strategy that refines the weights on the image-level AUC, and an image-level
    logistic calibration. Exam stage: a 1-D logistic fit maps the exam's maximum logit (over its
    images and the heads) to P(cancer). All randomness comes from ``SEED``.
    """
    exams = list(_exam_planes(cases))
    nps = noise_power_spectrum(exams, np.random.default_rng(SEED))
    kernels = pw_kernels(nps)
    heads, report, scores, labels = fit_rows(collect(exams, kernels), **kw)
    report["nps_radial"] = [float(f"{v:.6g}") for v in nps]
    return heads, report, scores, labels, kernels


def fit_rows(
    rows: list[dict],
    rounds: int = 0,
    hard_per_image: int = 8,
    random_per_image: int = 32,
    es_steps: int = 300,
) -> tuple[list[tuple[np.ndarray, float]], dict, np.ndarray, np.ndarray]:
    """The fit of :func:`calibrate` on already collected feature rows."""
    rng = np.random.default_rng(SEED)
    if sum(1 for r in rows if r["positives"]) < 2:
        raise SystemExit(
            "fewer than 2 malignant lesion marks in the training set; use a training set with cancers"
        )
    rand = []
    for r in rows:
        inside = np.flatnonzero(r["mask"])
        if inside.size:
            rand.append(
                r["grid"][
                    np.sort(
                        rng.choice(inside, size=min(random_per_image, inside.size), replace=False)
                    )
                ]
            )
    rand_neg = np.vstack(rand)
    heads = []
    for _name, types, names in HEADS:
        cols = [FEATURES.index(n) for n in names]
        heads.append(_fit_head(rows, types, cols, rng, rounds, hard_per_image, rand_neg, es_steps))
    # Exam level: max over images and heads of the head logits, recalibrated by a 1-D logistic fit.
    exam_max: dict[str, float] = {}
    exam_label: dict[str, int] = {}
    for r in rows:
        v = -30.0
        if r["mask"].any():
            v = max(float(np.max(r["grid"][r["mask"]] @ w + b)) for w, b in heads)
        exam_max[r["exam"]] = max(exam_max.get(r["exam"], -np.inf), v)
        exam_label[r["exam"]] = r["label"]
    ids = sorted(exam_max)
    M = np.array([exam_max[i] for i in ids])
    L = np.array([exam_label[i] for i in ids], np.float64)
    ab = _irls(np.stack([M, np.ones_like(M)], axis=1), L, np.ones_like(M), ridge=1e-6)
    a, c = float(ab[0]), float(ab[1])
    if a <= 0:  # a degenerate training set: keep the ordering
        a, c = 1.0, 0.0
    out = [((a * w).astype(np.float32), float(np.float32(a * b + c))) for w, b in heads]
    scores = 1.0 / (1.0 + np.exp(-(a * M + c)))
    report = {
        "images": len(rows),
        "images_with_cancer": sum(1 for r in rows if r["positives"]),
        "exams": len(ids),
        "exam_cancers": int(L.sum()),
        "features": list(FEATURES),
        "heads": {
            name: {"weights": [round(float(v), 6) for v in w], "bias": round(b, 6)}
            for (name, _, _), (w, b) in zip(HEADS, out, strict=True)
        },
        "exam_slope": round(a, 6),
        "exam_intercept": round(c, 6),
    }
    return out, report, scores, L


def operating_point(
    scores: np.ndarray, labels: np.ndarray, specificity: float = OPERATING_SPECIFICITY
) -> float:
    """The lowest threshold (rounded to 4 decimals) whose training-split specificity is >= ``specificity``."""
    neg = np.sort(scores[labels == 0])
    k = int(np.ceil(specificity * len(neg))) - 1  # need at least k+1 negatives below the threshold
    thr = float(neg[min(k, len(neg) - 1)])
    t = math.ceil(thr * 1e4 + 1e-9) / 1e4
    if t <= thr:
        t += 1e-4
    return round(t, 4)


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
        "input": {
            "unit": "exam",
            "name": INPUT,
            "height": HEIGHT,
            "width": WIDTH,
            "orientation": "chest_wall_left",
            "pixels": "presentation",
            "scale": [0.0, 1.0],
            "resize": "fit",
        },
        "output": {"score": SCORE, "heatmap": HEATMAP, "breast_scores": BREASTS},
        "aggregate": "max",
    },
}


def build(train_cases: Path, out: Path) -> dict:
    """Calibrate on ``train_cases`` and write ``out/model.onnx``, ``out/vendor.yaml``, ``out/calibration.json``."""
    heads, report, scores, labels, kernels = calibrate(train_cases)
    model = detector_model(heads, kernels)
    op = operating_point(scores, labels)
    flagged = scores >= op
    report["operating_point"] = op
    report["train_specificity"] = round(float((~flagged[labels == 0]).mean()), 4)
    report["train_sensitivity"] = (
        round(float(flagged[labels == 1].mean()), 4) if (labels == 1).any() else None
    )
    out.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(out / "model.onnx"))
    vy = dict(VENDOR_YAML, operating_point=op)
    (out / "vendor.yaml").write_text(
        "# mammocert reference vendor (generated by python -m harness.reference.build_model; see README.md)\n"
        f"# operating_point: training-split specificity {report['train_specificity']}, "
        f"sensitivity {report['train_sensitivity']}\n" + yaml.safe_dump(vy, sort_keys=False),
        encoding="utf-8",
    )
    report["train_cases"] = load_manifest(train_cases).digest
    (out / "calibration.json").write_text(
        json.dumps(report, indent=1, sort_keys=True) + "\n", encoding="utf-8"
    )
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m harness.reference.build_model", description=__doc__.splitlines()[0]
    )
    ap.add_argument(
        "--train-cases", required=True, help="training reference set (never the evaluation set)"
    )
    ap.add_argument(
        "--out", default=str(Path(__file__).with_name("vendor")), help="package directory to write"
    )
    args = ap.parse_args(argv)
    report = build(Path(args.train_cases), Path(args.out))
    print(json.dumps(report, indent=1, sort_keys=True), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
