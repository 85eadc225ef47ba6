"""Rescore a reference detector's candidates with a patch classifier (stage 4, a detection cascade).

The stage-1 detector finds most cancers (its candidate AUC is ~0.9-0.94), but its exam score is
the single hottest cell of ~50 000, and what decides the ranking is how that cell compares with
the hottest normal tissue of other exams. A cascade, as in classical CAD (detection, then
false-positive reduction), spends a second network on exactly that decision: each view's ``K``
strongest separated responses of the detector are the candidates, and a small CNN classifies the
64x64 model-pixel patch around each one (with the same place of the other breast's same view,
the asymmetry cue the detector also uses) as "on a cancer" or not. The candidate's score is the
classifier's logit; view, breast and exam take the soft maximum of their candidates' logits as
stage 1 does over cells; Platt calibration and the operating point are fitted on exams the
classifier never saw (every fifth exam of the training split).

The exported graph holds both networks and the candidate selection (argmax with suppression of a
``2 * SEPARATION + 1`` cell square, ``K`` times), so it stays one ONNX model with stage 1's inputs
and outputs. Its heatmap is zero except at the candidates, where it is the calibrated candidate
score: the adapter's findings are then exactly the candidates, with the scores that make the
breast and exam scores. Mirror invariance stays structural (every view goes through the same
weights), and so do order and metadata invariance.

Run: ``python -m harness.reference.cascade_model --init PKG --train-cases DIR --out DIR``
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from harness.cases.manifest import load_manifest
from harness.reference import refine_model as rm
from harness.reference import train_model as tm

SEED = 20261202
STEPS = 1600
BATCH = 64
K = 4  # candidates per view in the exported graph
MINE_K = 8  # candidates per view mined for training (more hard negatives)
SEPARATION = 8  # heatmap cells suppressed around a candidate (32 model px, ~18 mm)
PATCH = 64  # classifier input (model px, ~36 mm)
# mined patches are PATCH + 2 * MARGIN wide and cropped at random: a candidate's position jitters
MARGIN = 8
HOLD_OUT = 5  # every fifth training exam calibrates instead of training the classifier
VERSION = "4.0.0"
GRID = (tm.HEIGHT // tm.STRIDE, tm.WIDTH // tm.STRIDE)  # heatmap cells (rows, columns)


def make_classifier():
    """The patch classifier: (B, 2, PATCH, PATCH) -> (B,) logits; the patch standardised by the
    view's breast pixels in it, conv blocks to 1/16, mean and max pooled."""
    torch = tm._torch()
    nn = torch.nn

    def block(cin: int, cout: int):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU())

    class Classifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            pool = nn.MaxPool2d(2)
            self.features = nn.Sequential(
                block(2, 16), block(16, 16), pool, block(16, 32), pool, block(32, 48), pool,
                block(48, 64), pool, block(64, 64),
            )  # fmt: skip
            self.drop = nn.Dropout(0.3)
            self.head = nn.Linear(128, 1)

        def forward(self, x):
            # in units of the view's own breast tissue in the patch (mean and spread): a window
            # shift or width change, and locally a gamma, leave the input as it was
            breast = (x[:, :1] > tm.BREAST_LEVEL).float()
            n = breast.sum((2, 3), keepdim=True).clamp(min=1.0)
            mean = (x[:, :1] * breast).sum((2, 3), keepdim=True) / n
            var = (((x[:, :1] - mean) * breast) ** 2).sum((2, 3), keepdim=True) / n
            x = (x - mean) / (var + 1e-4).sqrt() * (x > tm.BREAST_LEVEL).float()
            z = self.features(x)
            return self.head(self.drop(torch.cat([z.mean((2, 3)), z.amax((2, 3))], 1)))[:, 0]

    return Classifier()


def select(cells, k: int):
    """``k`` candidates per row of (M, h, w) cell logits: the argmax, then the argmax outside a
    ``2 * SEPARATION + 1`` square around each earlier one. Returns (M, k) flat cell indices and
    their logits. The same code runs in training and in the exported graph."""
    torch = tm._torch()
    m, h, w = cells.shape
    flat = cells.reshape(m, h * w)
    rows = torch.arange(h * w) // w
    cols = torch.arange(h * w) % w
    left, picked = flat, []
    for _ in range(k):
        idx = left.argmax(1)
        picked.append(idx)
        near = ((rows[None] - (idx // w)[:, None]).abs() <= SEPARATION) & (
            (cols[None] - (idx % w)[:, None]).abs() <= SEPARATION
        )
        left = torch.where(near, torch.full_like(left, -1e9), left)
    idx = torch.stack(picked, 1)
    return idx, flat.gather(1, idx)


def patches(pairs, idx, w: int, size: int):
    """(M, k, 2, size, size) patches of (M, 2, H, W) view pairs centred on the cells ``idx`` (M, k)
    of a ``w``-column heatmap grid; zero outside the image."""
    torch = tm._torch()
    m, _, height, width = pairs.shape
    half = size // 2
    padded = torch.nn.functional.pad(pairs, (half, half, half, half)).reshape(m, 2, -1)
    # the cell centre in model px is the top-left corner of its patch in the padded image
    cy = (idx // w) * tm.STRIDE + tm.STRIDE // 2
    cx = (idx % w) * tm.STRIDE + tm.STRIDE // 2
    d = torch.arange(size)
    lin = (cy[:, :, None, None] + d[None, None, :, None]) * (width + 2 * half) + (
        cx[:, :, None, None] + d[None, None, None, :]
    )
    k = idx.shape[1]
    got = padded.gather(2, lin.reshape(m, 1, -1).expand(m, 2, k * size * size))
    return got.reshape(m, 2, k, size, size).transpose(1, 2)


def Cascade(net, classifier, a: float, b: float):  # noqa: N802 - a torch Module factory
    """The exported graph: stage 1's detector (``net``), candidate selection and the classifier."""
    torch = tm._torch()
    detector = tm.ExamModel(net, 1.0, 0.0)

    class _Cascade(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.detector, self.classifier = detector, classifier
            self.a, self.b = float(a), float(b)

        def logits(self, image):
            """(exam (N,), breast (N,2), candidate logits (N,4,K), candidate cells (N,4,K))."""
            n = image.shape[0]
            w = GRID[1]
            cells = self.detector.logits(image)[2].reshape(n * 4, *GRID)
            idx, det = select(cells, K)
            x = patches(tm.pair_up(image), idx, w, PATCH).reshape(n * 4 * K, 2, PATCH, PATCH)
            z = self.classifier(x).reshape(n * 4, K)
            # a view with fewer than K breast cells: the rest are no candidates
            z = torch.where(det > tm.OUTSIDE + 1.0, z, torch.full_like(z, tm.OUTSIDE))
            view = tm.soft_max(z, 1).reshape(n, 2, 2)
            breast = tm.soft_max(view, 2)
            return tm.soft_max(breast, 1), breast, z.reshape(n, 4, K), idx.reshape(n, 4, K)

        def forward(self, image):
            exam, breast, z, idx = self.logits(image)
            value = torch.sigmoid(self.a * z + self.b)
            # candidates are separated, so each cell holds at most one (a max, not a scatter:
            # ONNX leaves the order of duplicate scatter writes open)
            hit = (torch.arange(GRID[0] * GRID[1])[None, None, None, :] == idx[..., None]).float()
            heat = (hit * value[..., None]).amax(2).reshape(-1, 4, *GRID)
            return (
                torch.sigmoid(self.a * exam + self.b).reshape(-1, 1),
                heat,
                torch.sigmoid(self.a * breast + self.b),
            )

    return _Cascade()


def mine(net, split: tm.Split, exams: np.ndarray, k: int, size: int, lesions: bool):
    """Candidates of the detector on ``exams``: (patches (C,2,size,size) float16, label "on a
    cancer" (C,), on a benign finding (C,)); with ``lesions`` also a patch centred on every
    lesion box (cancers and benign findings), so the classifier sees each lesion at least once."""
    torch = tm._torch()
    h, w = GRID
    detector = tm.ExamModel(net, 1.0, 0.0).eval()
    xs, ys, bs = [], [], []
    for start in range(0, len(exams), 4):
        batch = exams[start : start + 4]
        image = torch.from_numpy(split.planes[batch].astype(np.float32))
        pairs = tm.pair_up(image)
        with torch.no_grad():
            idx, _ = select(detector.logits(image)[2].reshape(-1, h, w), k)
        for j, e in enumerate(batch):
            for v in range(4):
                cand = idx[j * 4 + v].numpy()
                mal = tm.target_map(split.malignant[e][v], h, w).ravel()[cand]
                ben = tm.target_map(split.benign[e][v], h, w).ravel()[cand]
                boxes = [(box, 1.0) for box in split.malignant[e][v]] if lesions else []
                boxes += [(box, 0.0) for box in split.benign[e][v]] if lesions else []
                at = [
                    min(int(0.5 * (y0 + y1)) // tm.STRIDE, h - 1) * w
                    + min(int(0.5 * (x0 + x1)) // tm.STRIDE, w - 1)
                    for (x0, y0, x1, y1), _ in boxes
                ]
                cells = torch.tensor([list(cand) + at])
                xs.append(patches(pairs[j * 4 + v : j * 4 + v + 1], cells, w, size)[0].numpy())
                ys += list(mal) + [m for _, m in boxes]
                bs += list(ben) + [1.0 - m for _, m in boxes]
    return (
        np.concatenate(xs).astype(np.float16),
        np.asarray(ys, np.float32),
        np.asarray(bs, np.float32),
    )


def train_classifier(x: np.ndarray, y: np.ndarray, benign: np.ndarray, steps: int, log=print):
    """AdamW on class-balanced batches (a third on cancers, a sixth on benign findings, the rest
    on the other candidates), each patch randomly shifted by up to ``MARGIN`` px, augmented with
    stage 1's perturbation models and a left-right flip."""
    torch = tm._torch()
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    rng = np.random.default_rng(SEED)
    net = make_classifier()
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps, pct_start=0.1)
    pos, ben, neg = np.flatnonzero(y == 1), np.flatnonzero(benign == 1), np.flatnonzero(y == 0)
    if not (pos.size and neg.size):
        raise tm.UsageError("cascade_model: the training split needs cancers and non-cancers")
    ben = ben if ben.size else neg  # a split without benign findings
    run = []
    for step in range(steps):
        pick = np.concatenate(
            [
                rng.choice(pos, BATCH // 3),
                rng.choice(ben, BATCH // 6),
                rng.choice(neg, BATCH - BATCH // 3 - BATCH // 6),
            ]
        )
        oy, ox = rng.integers(0, 2 * MARGIN + 1, 2)
        batch = torch.from_numpy(x[pick, :, oy : oy + PATCH, ox : ox + PATCH].astype(np.float32))
        batch, _ = tm.augment(batch, rng)
        if rng.random() < 0.5:
            batch = batch.flip(3)
        net.train()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            net(batch), torch.from_numpy(y[pick])
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        run.append(float(loss.detach()))
        if (step + 1) % 100 == 0:
            log(f"step {step + 1}/{steps}  loss {np.mean(run[-100:]):.4f}")
    return net.eval()


def train_cascade(net, split: tm.Split, steps: int, log=print):
    """The calibrated cascade on top of the detector ``net``: the classifier trained on the
    candidates of four in five training exams, Platt and the operating point fitted on the fifth.
    Returns (module, operating point, what was fitted)."""
    every = np.arange(len(split.labels))
    train_exams, calib = every[every % HOLD_OUT != 0], every[every % HOLD_OUT == 0]
    log(f"mining {MINE_K} candidates per view on {len(train_exams)} exams")
    x, y, benign = mine(net, split, train_exams, MINE_K, PATCH + 2 * MARGIN, lesions=True)
    log(f"{len(y)} patches: {int(y.sum())} on cancers, {int(benign.sum())} on benign findings")
    classifier = train_classifier(x, y, benign, steps, log)
    uncalibrated = Cascade(net, classifier, 1.0, 0.0).eval()
    z = tm.module_exam_logits(uncalibrated, split.planes[calib])
    a, b, op, fitted = tm.calibrate(z, split.labels[calib], "calibration")
    fitted = {
        "classifier_exams": len(train_exams),
        "calibration_exams": len(calib),
        "patches": len(y),
        **fitted,
    }
    return Cascade(net, classifier, a, b).eval(), op, fitted


def build(init: Path, train_cases: Path, out: Path, steps: int = STEPS, log=print) -> dict:
    """Mine, train and calibrate the cascade on top of package ``init``; write it to ``out``."""
    torch = tm._torch()
    net, stage1 = rm.starting_package(init)
    if stage1.get("test_time_flip"):
        raise tm.UsageError(f"{init}: a package with the flip mean; pass a plain stage-1 package")
    module, op, fitted = train_cascade(net.eval(), tm.load_split(train_cases), steps, log)
    report = {
        "stage1": stage1,
        "train_cases": load_manifest(train_cases).digest,
        "steps": steps,
        "batch": BATCH,
        "candidates_per_view": K,
        "seed": SEED,
        **fitted,
        "torch": torch.__version__,
    }
    out.mkdir(parents=True, exist_ok=True)
    tm.export_module(module, out / "model.onnx")
    tm.write_vendor_files(out, report, VERSION, op, "calibration")
    return report


def main(argv: list[str] | None = None) -> int:
    return rm.stage_main(
        argv, "python -m harness.reference.cascade_model", __doc__, "train_model (stage 1)", "",
        STEPS, build,
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
