"""Train the reference vendor's model: a small fully convolutional lesion detector, exported to ONNX.

Training needs PyTorch (CPU is enough; ``pip install -e .[train]``); running the exported model
needs only onnxruntime, like any vendor package. The network sees each view together with the
same view of the other breast (after the adapter's mirroring both have the chest wall on the
left, so the two breasts roughly overlap): a radiologist's first cue is an asymmetry, and the
phantom's two breasts share most of their texture, so the pair separates lesions from tissue
far better than one view alone::

    input (N,4,H,W) = [LCC, LMLO, RCC, RMLO] (exam unit), presentation pixels in [0,1]
    pairs  (4N,2,H,W) = (view, same view of the other breast)
    logit  (4N,1,H/4,W/4) = net(pairs), -30 outside the breast (pixels <= 0.05)
    view   = logsumexp(logit)                 soft maximum: every local response counts, so a
    breast = logsumexp(view CC, view MLO)       lesion added anywhere raises the score
    exam   = logsumexp(breast L, breast R)
    score, breast_scores = sigmoid(a * exam + b), sigmoid(a * breast + b)   (Platt, training split)
    heatmap (N,4,H/4,W/4) = sigmoid(logit)    one channel per view; the adapter finds its peaks

Training: random 256x256 crops (lesion-centred, around benign findings, anywhere in the breast)
of a training reference set built from ``reference_cases/train.yaml`` (never the evaluation set),
each augmented with the perturbations a certified model must tolerate (lower-dose noise, display
gamma/window, detector pitch, vertical flip); loss = per-pixel BCE against lesion ellipses + BCE
of the crop's soft maximum against "contains a cancer". Seeds are fixed and PyTorch runs with
deterministic algorithms on one process, so a rebuild on the same machine gives the same model.

With ``--prewhiten`` each plane also goes through a fixed prewhitened matched filter for a small
mass, normalised by the plane's own response level (CFAR), and ``--flip-tta`` exports the mean of
each view's and its up-down mirror's heatmap. That is the shipped model, 3.0.0; without them the
build is 2.0.0, kept as the tests' known-good base (``tests/assets/reference-2.0.0``).

Run: ``python -m harness.reference.train_model --train-cases DIR --out harness/reference/vendor
--prewhiten --flip-tta``
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import yaml

from harness.cases.manifest import load_manifest
from harness.errors import UsageError, run_script
from harness.pixels import image_to_model, to_model_plane

HEIGHT, WIDTH = 512, 416
STRIDE = 4  # heatmap cell = 4x4 model pixels
INPUT, SCORE, HEATMAP, BREASTS = "image", "score", "heatmap", "breast_scores"
VIEWS = (("L", "CC"), ("L", "MLO"), ("R", "CC"), ("R", "MLO"))  # exam-unit channel order
PARTNER = (2, 3, 0, 1)  # the same view of the other breast
BREAST_LEVEL = 0.05  # presentation value above which a pixel is breast (air and padding are 0)
OUTSIDE = -30.0  # logit outside the breast: nothing there counts in the soft maximum
CROP = 256
TAU = 0.1  # soft-maximum temperature (logit units): practically the maximum
SEED = 20261127
OPERATING_SPECIFICITY = 0.98  # Danish first reader: 97.8 % (Elhakim 2023)
THREADS = 2  # fixed, so a rebuild elsewhere sums in the same order
PW_RADIUS = 6.0  # model pixels (~3.5 mm): the classical detector's best radius on the dev split
PW_SIZE = 33  # its kernel (model pixels)
NPS_PATCH = 64
PW_PRIOR = 1024.0  # pixels of unit filter response in filter_scale (a 32x32 patch)
FULL_DOSE_NOISE = 0.015  # = harness.perturb.noise.FULL_DOSE_NOISE (presentation units)


@dataclass(frozen=True)
class Split:
    """A reference set in model space: planes (E,4,H,W) float16, per view the malignant and benign
    boxes (x0, y0, x1, y1 in model pixels), exam labels and ids."""

    planes: np.ndarray
    malignant: list[list[list[tuple[float, float, float, float]]]]
    benign: list[list[list[tuple[float, float, float, float]]]]
    labels: np.ndarray
    exam_ids: list[str]


def _model_box(box, geom) -> tuple[float, float, float, float]:
    ax, ay = image_to_model(box[0], box[1], geom)
    bx, by = image_to_model(box[2], box[3], geom)
    return (min(ax, bx), min(ay, by), max(ax, bx), max(ay, by))


def load_split(cases: Path) -> Split:
    """Every complete exam of a reference set, preprocessed exactly as the adapter does."""
    manifest = load_manifest(cases)
    # benign findings are the generator's extension of the manifest (hard negatives for training)
    raw = json.loads((Path(cases) / "manifest.json").read_text(encoding="utf-8"))
    benign_marks = {
        (ex_id, mark["file"]): mark["box"]
        for ex_id, findings in raw.get("benign_findings", {}).items()
        for finding in findings
        for mark in finding["marks"]
    }
    planes, malignant, benign, labels, ids = [], [], [], [], []
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
        if len(by_view) != len(VIEWS):
            continue
        mal_views, ben_views, view_planes = [], [], []
        for key in VIEWS:
            ref, plane, geom = by_view[key]
            view_planes.append(plane)
            mal_views.append(
                [
                    _model_box(m.box, geom)
                    for les in exam.lesions
                    for m in les.marks
                    if m.file == ref.file and exam.label == 1
                ]
            )
            box = benign_marks.get((exam.exam_id, ref.file))
            ben_views.append([_model_box(box, geom)] if box is not None else [])
        planes.append(np.stack(view_planes).astype(np.float16))
        malignant.append(mal_views)
        benign.append(ben_views)
        labels.append(exam.label)
        ids.append(exam.exam_id)
    return Split(np.stack(planes), malignant, benign, np.asarray(labels), ids)


def target_map(boxes, rows: int, cols: int, oy: float = 0.0, ox: float = 0.0) -> np.ndarray:
    """1 inside the ellipse inscribed in each box (heatmap cells, box in model px, crop offset)."""
    t = np.zeros((rows, cols), np.float32)
    yy = (np.arange(rows) + 0.5) * STRIDE + oy
    xx = (np.arange(cols) + 0.5) * STRIDE + ox
    for x0, y0, x1, y1 in boxes:
        cx, cy = 0.5 * (x0 + x1), 0.5 * (y0 + y1)
        rx, ry = max(0.5 * (x1 - x0), STRIDE), max(0.5 * (y1 - y0), STRIDE)
        inside = ((xx[None, :] - cx) / rx) ** 2 + ((yy[:, None] - cy) / ry) ** 2 <= 1.0
        t[inside] = 1.0
    return t


# --- augmentation: the perturbations of harness/perturb, in model space -------------------------


def augment(x, rng: np.random.Generator):
    """Per crop, each with probability 1/2: another detector pitch, display gamma/window, a lower
    dose, an up-down flip; both planes of a pair alike (the harness perturbs whole exams).
    ``x``: (B,2,h,w) torch tensor; returns the augmented batch and which crops were flipped."""
    torch = _torch()
    F = torch.nn.functional
    out, flips = [], []
    for p in x:
        breast = (p > 0.0).float()
        if rng.random() < 0.5:  # resample to another pitch and back to the model grid
            f = float(rng.uniform(0.65, 1.45))
            size = [max(8, round(n * f)) for n in p.shape[1:]]
            q = F.interpolate(p[None], size=size, mode="bilinear", antialias=f < 1)
            p = (
                F.interpolate(q, size=list(p.shape[1:]), mode="bilinear", antialias=f > 1)[0]
                * breast
            )
        if rng.random() < 0.5:  # display gamma (either polarity), window width and centre
            g = float(np.exp(rng.uniform(math.log(0.75), math.log(1.33))))
            p = p.clamp(0, 1)
            p = p**g if rng.random() < 0.5 else 1.0 - (1.0 - p) ** g
            s, d = float(rng.uniform(0.85, 1.15)), float(rng.uniform(-0.1, 0.1))
            p = ((p - 0.5 - d) / s + 0.5).clamp(0, 1) * breast
        if rng.random() < 0.5:  # dose 30-100 %: added quantum noise
            sigma = FULL_DOSE_NOISE * math.sqrt(1.0 / float(rng.uniform(0.3, 1.0)) - 1.0)
            noise = torch.from_numpy(rng.normal(0.0, sigma, tuple(p.shape)).astype(np.float32))
            p = (p + noise).clamp(0, 1) * breast
        flip = bool(rng.random() < 0.5)
        out.append(p.flip(1) if flip else p)
        flips.append(flip)
    return torch.stack(out), flips


# --- the network ------------------------------------------------------------------------------


def _torch():
    try:
        import torch
    except ImportError:  # training only; the package runs without it
        raise UsageError(
            "training the reference model needs PyTorch: pip install -e '.[train]' "
            "(CPU build is enough)"
        ) from None
    return torch


def make_net(prewhiten: np.ndarray | None = None):
    """The detector; with ``prewhiten`` (a (K,K) kernel) each input plane also goes through that
    fixed, untrained prewhitened matched filter and the network sees both (4 input channels)."""
    torch = _torch()
    nn = torch.nn

    def block(cin: int, cout: int, stride: int = 1, dilation: int = 1):
        return [
            nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(),
        ]

    class Detector(nn.Module):
        """U-shaped: full-resolution edge/speck filters, encoder to 1/16 (~30 mm context at the CI
        pixel size), decoder back to the 1/4 heatmap grid."""

        def __init__(self) -> None:
            super().__init__()
            self.pw = None
            if prewhiten is not None:
                k = prewhiten.shape[-1]
                self.pw = nn.Conv2d(1, 1, k, padding=k // 2, padding_mode="reflect", bias=False)
                self.pw.weight.data.copy_(torch.from_numpy(prewhiten.reshape(1, 1, k, k).copy()))
                self.pw.weight.requires_grad_(False)
            cin = 2 if self.pw is None else 4
            self.e1 = nn.Sequential(*block(cin, 16), *block(16, 24, 2), *block(24, 24))  # 1/2
            self.e2 = nn.Sequential(*block(24, 32, 2), *block(32, 32))  # 1/4
            self.e3 = nn.Sequential(*block(32, 48, 2), *block(48, 48))  # 1/8
            self.e4 = nn.Sequential(*block(48, 64, 2), *block(64, 64, dilation=2))  # 1/16
            self.up = nn.Upsample(scale_factor=2, mode="nearest")
            self.d3 = nn.Sequential(*block(64 + 48, 48))
            self.d2 = nn.Sequential(*block(48 + 32, 32), nn.Conv2d(32, 1, 1))

        def filtered(self, x):
            """The prewhitened channel of every plane of (N,C,H,W), CFAR-normalised."""
            n, c, h, w = x.shape
            f = self.pw(x.reshape(n * c, 1, h, w)).reshape(n, c, h, w)
            return f / filter_scale(x, f)

        def forward(self, x, f=None):
            """``f``: ``filtered(x)`` when the caller has it already (the exam graph filters
            each view once, not once per pair and flip)."""
            if self.pw is not None:
                x = torch.cat([x - 0.5, self.filtered(x) if f is None else f], 1)
            else:
                x = x - 0.5
            a = self.e2(self.e1(x))
            b = self.e3(a)
            c = self.e4(b)
            d = self.d3(torch.cat([self.up(c), b], 1))
            return self.d2(torch.cat([self.up(d), a], 1))

    return Detector()


def filter_scale(x, f):
    """Per plane, the RMS of the prewhitened response ``f`` over the breast away from its edge
    (heatmap cells wholly above BREAST_LEVEL, eroded by half the kernel rounded up to whole cells,
    image borders counting as edge), with PW_PRIOR pixels of unit response added so that a plane
    with little interior stays near 1. Dividing by it keeps the filter channel in units of the
    plane's own texture-plus-noise level: a lower dose raises the response everywhere (the quantum
    noise the filter amplifies), and the strongest normal-tissue responses - what an exam maximum
    picks - rise with it; in these units they stay put (a constant-false-alarm-rate detector).
    The mask is eroded on the 1/STRIDE cell grid: at full resolution its 33-px max pools were much
    of the exported graph's onnxruntime time. (N,C,H,W) -> (N,C,1,1); H, W multiples of STRIDE."""
    torch = _torch()
    F = torch.nn.functional
    r = -(-(PW_SIZE // 2) // STRIDE)  # cells
    edge = F.max_pool2d((x <= BREAST_LEVEL).float(), STRIDE)  # a cell with any non-breast pixel
    edge = F.pad(edge, (r, r, r, r), value=1.0)
    edge = F.max_pool2d(F.max_pool2d(edge, (1, 2 * r + 1), 1), (2 * r + 1, 1), 1)  # dilated
    inside = 1.0 - edge
    area = float(STRIDE * STRIDE)
    num = area * (inside * F.avg_pool2d(f * f, STRIDE)).sum((2, 3), keepdim=True) + PW_PRIOR
    return (num / (area * inside.sum((2, 3), keepdim=True) + PW_PRIOR)).sqrt()


def symmetrise(h: np.ndarray) -> np.ndarray:
    """The mean of a square kernel over its flips and transposition: the response of a flipped
    view is then the flipped response, so the exam graph filters each view once."""
    h = h + h[::-1] + h[:, ::-1] + h[::-1, ::-1]
    return 0.125 * (h + h.T)


def prewhitening_kernel(split: Split, rng: np.random.Generator) -> np.ndarray:
    """A prewhitened matched filter for a small mass: the template of a projected sphere of radius
    PW_RADIUS model pixels divided by the noise power spectrum of normal breast tissue (radially
    averaged over Hann-windowed NPS_PATCH^2 patches at seeded random positions inside the breasts of
    the split's normal exams), cropped to PW_SIZE, zero mean, scaled so that its response over those
    patches has unit standard deviation. The phantom's tissue has a power-law spectrum (beta ~ 3), for
    which this is the ideal linear observer of a known signal; learning it from ~1000 exams is hard."""
    from scipy import ndimage

    P = NPS_PATCH
    win = np.outer(np.hanning(P), np.hanning(P))
    fr = np.hypot(np.fft.fftfreq(P)[:, None], np.fft.fftfreq(P)[None, :])
    rb = np.minimum((fr * P).round().astype(int), P // 2)
    acc, patches = np.zeros((P, P)), []
    for e in np.flatnonzero(split.labels == 0)[:200]:
        for plane in split.planes[e].astype(np.float64):
            ok = (
                ndimage.minimum_filter(
                    (plane > BREAST_LEVEL).astype(np.uint8), size=P + 8, mode="constant"
                )
                > 0
            )
            rows, cols = np.nonzero(ok[::4, ::4])
            if not rows.size:
                continue
            k = int(rng.integers(rows.size))
            r, c = rows[k] * 4, cols[k] * 4
            patch = plane[r - P // 2 : r + P // 2, c - P // 2 : c + P // 2]
            patches.append(patch)
            acc += np.abs(np.fft.fft2((patch - patch.mean()) * win)) ** 2
    if patches:
        nps = np.bincount(rb.ravel(), acc.ravel(), minlength=P // 2 + 1) / np.bincount(
            rb.ravel(), minlength=P // 2 + 1
        )
    else:  # no normal tissue patch (tiny test sets): a power law, beta = 3, with a white floor
        nps = 1.0 / (np.arange(P // 2 + 1) + 1.0) ** 3 + 1e-4
    S = nps[np.minimum((fr * P).round().astype(int), P // 2)]
    y, x = np.mgrid[-P // 2 : P // 2, -P // 2 : P // 2].astype(np.float64)
    t = np.sqrt(np.maximum(1 - (x * x + y * y) / PW_RADIUS**2, 0))
    h = np.real(np.fft.fftshift(np.fft.ifft2(np.fft.fft2(np.fft.ifftshift(t - t.mean())) / S)))
    h = h[
        P // 2 - PW_SIZE // 2 : P // 2 + PW_SIZE // 2 + 1,
        P // 2 - PW_SIZE // 2 : P // 2 + PW_SIZE // 2 + 1,
    ]
    h = symmetrise(h)  # it is, up to the grid's Nyquist row
    h -= h.mean()
    if not patches:
        return (h / np.sqrt((h * h).sum())).astype(np.float32)
    resp = [
        ndimage.correlate(p, h, mode="reflect")[
            PW_SIZE // 2 : -(PW_SIZE // 2), PW_SIZE // 2 : -(PW_SIZE // 2)
        ]
        for p in patches[:64]
    ]
    return (h / np.std(resp)).astype(np.float32)


def breast_cells(x):
    """Heatmap cells that are breast: mean of the 4x4 block of the view channel above the level."""
    torch = _torch()
    return (torch.nn.functional.avg_pool2d(x[:, :1], STRIDE) > BREAST_LEVEL).float()


def masked_logit(net, x, f=None):
    m = breast_cells(x)
    return net(x, f) * m + OUTSIDE * (1.0 - m)


def soft_max(logit, dim: int = 1):
    """Soft maximum TAU * logsumexp(x / TAU): close to the maximum, yet it rises with every cell;
    over the heatmap cells of (B,1,h,w) -> (B,) by default."""
    if dim == 1:
        logit = logit.flatten(1)
    return TAU * (logit / TAU).logsumexp(dim)


def crop_at(split: Split, e: int, v: int, cy: float, cx: float):
    """The CROP x CROP pair of exam ``e``'s view ``v`` around (cy, cx) model px, shifted inside the
    image on the heatmap grid: (2,CROP,CROP) input, (h,w) target, label "contains a cancer"."""
    oy = int(np.clip(round((cy - CROP / 2) / STRIDE), 0, (HEIGHT - CROP) // STRIDE)) * STRIDE
    ox = int(np.clip(round((cx - CROP / 2) / STRIDE), 0, (WIDTH - CROP) // STRIDE)) * STRIDE
    t = target_map(split.malignant[e][v], CROP // STRIDE, CROP // STRIDE, oy, ox)
    return split.planes[e, [v, PARTNER[v]], oy : oy + CROP, ox : ox + CROP], t, float(t.any())


def jitter(rng: np.random.Generator, box) -> tuple[float, float]:
    """A crop centre near the box centre (the lesion anywhere in the middle 70 % of the crop)."""
    x0, y0, x1, y1 = box
    return (
        0.5 * (y0 + y1) + rng.uniform(-0.35, 0.35) * CROP,
        0.5 * (x0 + x1) + rng.uniform(-0.35, 0.35) * CROP,
    )


def sample_crops(split: Split, rng: np.random.Generator, n: int):
    """n training crops: 40 % centred on a malignant lesion, 15 % on a benign finding, 45 % anywhere
    in the breast of any view; returns (n,2,CROP,CROP) inputs, (n,1,h,w) targets, (n,) labels."""
    mal = [(e, v) for e in range(len(split.labels)) for v in range(4) if split.malignant[e][v]]
    ben = [(e, v) for e in range(len(split.labels)) for v in range(4) if split.benign[e][v]]
    crops = []
    for _ in range(n):
        u = rng.random()
        pool, kind = (mal, split.malignant) if u < 0.40 else (ben, split.benign)
        if u < 0.55 and pool:
            e, v = pool[int(rng.integers(len(pool)))]
            boxes = kind[e][v]
            cy, cx = jitter(rng, boxes[int(rng.integers(len(boxes)))])
        else:
            e, v = int(rng.integers(len(split.labels))), int(rng.integers(4))
            rows, cols = np.nonzero(split.planes[e, v, ::8, ::8] > BREAST_LEVEL)
            k = int(rng.integers(len(rows)))
            cy, cx = rows[k] * 8.0, cols[k] * 8.0
        crops.append(crop_at(split, e, v, cy, cx))
    return stack_crops(crops)


def stack_crops(crops):
    xs, ts, ys = zip(*crops, strict=True)
    return np.stack(xs).astype(np.float32), np.stack(ts)[:, None], np.asarray(ys, np.float32)


# --- training, calibration, export -------------------------------------------------------------


def train(split: Split, steps: int, batch: int, log=print, prewhiten: bool = False):
    """Adam on augmented crops; returns the trained network (eval mode). With ``prewhiten`` the
    network also sees each plane through a fixed prewhitened matched filter (the shipped 3.0.0:
    see README.md)."""
    torch = _torch()
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    rng = np.random.default_rng(SEED)
    net = make_net(prewhitening_kernel(split, np.random.default_rng(SEED)) if prewhiten else None)
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.1)
    t0, run = time.time(), []
    for step in range(steps):
        crops = sample_crops(split, rng, batch)
        net.train()
        pix, img = crop_loss(net, crops, rng)
        opt.zero_grad()
        (pix + img).backward()
        opt.step()
        sched.step()
        run.append((float(pix.detach()), float(img.detach())))
        if (step + 1) % 50 == 0:
            p, i = np.mean(run[-50:], axis=0)
            log(f"step {step + 1}/{steps}  pixel {p:.4f}  image {i:.4f}  {time.time() - t0:.0f} s")
    return net.eval()


def crop_loss(net, crops, rng: np.random.Generator):
    """(pixel loss, crop loss) of a batch of crops after augmentation."""
    torch = _torch()
    F = torch.nn.functional
    x, t, y = (torch.from_numpy(a) for a in crops)
    x, flips = augment(x, rng)
    t = torch.stack([ti.flip(1) if f else ti for ti, f in zip(t, flips, strict=True)])
    logit = masked_logit(net, x)
    pix = pixel_loss(logit, t, breast_cells(x))
    return pix, F.binary_cross_entropy_with_logits(soft_max(logit), y)


def pixel_loss(logit, target, breast):
    """Per-cell BCE over the breast cells of (B,1,h,w), lesion cells and background cells
    weighing the same in total (lesions are ~0.5 % of cells)."""
    torch = _torch()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logit, target, reduction="none")
    pos, neg = breast * target, breast * (1.0 - target)
    return (bce * pos).sum() / pos.sum().clamp(min=1.0) + (bce * neg).sum() / neg.sum()


def exam_logits(net, planes: np.ndarray, batch: int = 4, flip: bool = False) -> np.ndarray:
    """Uncalibrated exam soft maxima for (E,4,H,W) planes, computed in batches."""
    torch = _torch()
    module = ExamModel(net, 1.0, 0.0, flip)
    with torch.no_grad():
        return np.concatenate(
            [
                module.logits(torch.from_numpy(planes[i : i + batch].astype(np.float32)))[0].numpy()
                for i in range(0, len(planes), batch)
            ]
        )


def calibrate(z: np.ndarray, labels: np.ndarray) -> tuple[float, float, float, dict]:
    """Platt on the training split's exam logits ``z`` and the operating point at
    ``OPERATING_SPECIFICITY``: (a, b, operating point, the report's ``platt``, ``operating_point``,
    ``train_specificity`` and ``train_sensitivity``)."""
    a, b = platt(z, labels.astype(np.float64))
    scores = 1 / (1 + np.exp(-(a * z + b)))
    op = operating_point(scores, labels, OPERATING_SPECIFICITY)
    flagged = scores >= op
    return (
        a,
        b,
        op,
        {
            "platt": [round(a, 6), round(b, 6)],
            "operating_point": op,
            "train_specificity": round(float((~flagged[labels == 0]).mean()), 4),
            "train_sensitivity": round(float(flagged[labels == 1].mean()), 4),
        },
    )


def platt(z: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Logistic fit P(cancer) = sigmoid(a z + b) (Newton, a few iterations)."""
    X = np.stack([z, np.ones_like(z)], 1).astype(np.float64)
    beta = np.zeros(2)
    for _ in range(50):
        p = 1 / (1 + np.exp(-(X @ beta)))
        g = X.T @ (y - p)
        H = (X * (p * (1 - p))[:, None]).T @ X + 1e-6 * np.eye(2)
        step = np.linalg.solve(H, g)
        beta += step
        if np.abs(step).max() < 1e-10:
            break
    return float(beta[0]), float(beta[1])


def aggregate(cells):
    """Cell logits (N,4,h,w) -> (exam (N,), breast (N,2)): soft maxima over each view's cells, a
    breast's two views, the exam's two breasts."""
    n = cells.shape[0]
    view = soft_max(cells.reshape(n * 4, 1, *cells.shape[2:])).reshape(n, 2, 2)  # (N, L/R, CC/MLO)
    breast = soft_max(view, 2)
    return soft_max(breast, 1), breast


def pair_up(planes):
    """(N,4,H,W) exam planes -> (N*4,2,H,W): each view with the same view of the other breast."""
    torch = _torch()
    n = planes.shape[0]
    return torch.stack([planes, planes[:, list(PARTNER)]], 2).reshape(n * 4, 2, HEIGHT, WIDTH)


def ExamModel(net, a: float, b: float, flip: bool = False):  # noqa: N802 - a torch Module factory
    """With ``flip`` each view's cell logits are the mean of the view's and of its up-down mirror
    image's (flipped back), which makes the heatmap exactly flip-equivariant (the network alone is
    not: padding, crop-wise training); the two run as one batch, so the graph keeps one copy of
    each convolution. The shipped 3.0.0 uses it (``--flip-tta``)."""
    torch = _torch()

    class _Exam(torch.nn.Module):
        """The exported graph: exam unit in, calibrated exam/breast scores and the heatmap out."""

        def __init__(self) -> None:
            super().__init__()
            self.net = net
            self.a, self.b = float(a), float(b)
            self.flip = flip

        def logits(self, image):
            """(exam (N,), breast (N,2), cell logits (N,4,h,w)), all uncalibrated."""
            n = image.shape[0]
            x = pair_up(image)
            f = None
            if self.net.pw is not None:  # each view once; its flip is the flipped response
                f = pair_up(self.net.filtered(image))
            if self.flip:
                both = masked_logit(
                    self.net,
                    torch.cat([x, x.flip(2)], 0),
                    None if f is None else torch.cat([f, f.flip(2)], 0),
                )
                logit = 0.5 * (both[: n * 4] + both[n * 4 :].flip(2))
            else:
                logit = masked_logit(self.net, x, f)
            cells = logit.reshape(n, 4, HEIGHT // STRIDE, WIDTH // STRIDE)
            return (*aggregate(cells), cells)

        def forward(self, image):
            exam, breast, cells = self.logits(image)
            heat = torch.sigmoid(cells)
            return (
                torch.sigmoid(self.a * exam + self.b).reshape(-1, 1),
                heat,
                torch.sigmoid(self.a * breast + self.b),
            )

    return _Exam()


def export(net, a: float, b: float, path: Path, flip: bool = False) -> None:
    """Export the exam graph with the reference vendor's input and outputs (dynamic batch)."""
    torch = _torch()
    module = ExamModel(net, a, b, flip).eval()
    dummy = torch.zeros(1, 4, HEIGHT, WIDTH)
    torch.onnx.export(
        module,
        (dummy,),
        str(path),
        input_names=[INPUT],
        output_names=[SCORE, HEATMAP, BREASTS],
        dynamic_axes={INPUT: {0: "N"}, SCORE: {0: "N"}, HEATMAP: {0: "N"}, BREASTS: {0: "N"}},
        opset_version=17,
        dynamo=False,
    )


def operating_point(scores: np.ndarray, labels: np.ndarray, specificity: float) -> float:
    """The lowest threshold (4 decimals) whose training-split specificity is >= ``specificity``."""
    neg = np.sort(scores[labels == 0])
    k = int(math.ceil(specificity * len(neg))) - 1
    t = round(float(neg[k]) + 5e-5, 4)
    while np.mean(neg < t) < specificity:
        t += 1e-4
    return round(t, 4)


# 2.0.0 is the plain detector (VENDOR_YAML); the prewhitened one is a different model
VERSION_PREWHITENED = "3.0.0"
VENDOR_YAML = {
    "schema": "mammocert/vendor/v1",
    "vendor": "mammocert reference",
    "product": "RefDetect",
    "version": "2.0.0",
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


def build(
    train_cases: Path,
    out: Path,
    steps: int,
    batch: int,
    log=print,
    prewhiten: bool = False,
    flip: bool = False,
) -> dict:
    """Train on ``train_cases``; write ``out/model.onnx``, ``out/vendor.yaml``, ``out/training.json``."""
    torch = _torch()
    torch.set_num_threads(THREADS)  # float reductions depend on the thread count
    split = load_split(train_cases)
    log(f"training split: {len(split.labels)} exams, {int(split.labels.sum())} cancers")
    net = train(split, steps, batch, log, prewhiten)
    report = {
        "train_cases": load_manifest(train_cases).digest,
        "train_exams": len(split.labels),
        "steps": steps,
        "batch": batch,
        "crop": CROP,
        "seed": SEED,
        **({"prewhiten": {"radius_px": PW_RADIUS, "size_px": PW_SIZE}} if prewhiten else {}),
    }
    version = VERSION_PREWHITENED if prewhiten else VENDOR_YAML["version"]
    return write_package(net, split, out, report, version, flip)


def write_package(
    net, split: Split, out: Path, report: dict, version: str, flip: bool = False
) -> dict:
    """Calibrate ``net`` on the training ``split`` (Platt, operating point), export
    ``out/model.onnx`` (with the up-down flip mean if ``flip``) and write ``vendor.yaml`` (with the
    operating point and what it gives on the training split) and ``training.json`` (``report`` plus
    what calibration fitted)."""
    torch = _torch()
    z = exam_logits(net, split.planes, flip=flip)
    a, b, op, fitted = calibrate(z, split.labels)
    report = {
        **report,
        **fitted,
        "torch": torch.__version__,
        **({"test_time_flip": True} if flip else {}),
    }
    out.mkdir(parents=True, exist_ok=True)
    export(net, a, b, out / "model.onnx", flip)
    vy = dict(VENDOR_YAML, version=version, operating_point=op)
    (out / "vendor.yaml").write_text(
        "# mammocert reference vendor (generated by python -m harness.reference.train_model; "
        "see README.md)\n"
        f"# operating_point: train-split specificity {report['train_specificity']}, "
        f"sensitivity {report['train_sensitivity']}\n" + yaml.safe_dump(vy, sort_keys=False),
        encoding="utf-8",
    )
    (out / "training.json").write_text(
        json.dumps(report, indent=1, sort_keys=True) + "\n", encoding="utf-8"
    )
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m harness.reference.train_model", description=__doc__.splitlines()[0]
    )
    ap.add_argument(
        "--train-cases", required=True, help="training reference set (never the evaluation set)"
    )
    ap.add_argument(
        "--out", default=str(Path(__file__).with_name("vendor")), help="package directory to write"
    )
    ap.add_argument("--steps", type=int, default=2400, help="optimizer steps")
    ap.add_argument("--batch", type=int, default=16, help="crops per step")
    ap.add_argument(
        "--prewhiten",
        action="store_true",
        help="add a fixed, CFAR-normalised prewhitened matched-filter input (the shipped 3.0.0; "
        "without it the build is 2.0.0)",
    )
    ap.add_argument(
        "--flip-tta",
        action="store_true",
        help="export the mean of each view's and its up-down mirror's heatmap "
        "(2x inference cost; the shipped 3.0.0 uses it with --prewhiten)",
    )
    args = ap.parse_args(argv)

    def body() -> int:
        """Progress and the final report (JSON) on stderr; a bad input is one line with exit 2
        (``harness.errors.run_script``)."""
        report = build(
            Path(args.train_cases),
            Path(args.out),
            args.steps,
            args.batch,
            lambda m: print(m, file=sys.stderr, flush=True),
            args.prewhiten,
            args.flip_tta,
        )
        print(json.dumps(report, indent=1, sort_keys=True), file=sys.stderr)
        return 0

    return run_script(ap.prog, body)


if __name__ == "__main__":
    sys.exit(main())
