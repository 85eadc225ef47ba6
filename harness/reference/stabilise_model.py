"""Stabilise a trained reference model: fine-tune on whole exams and their perturbed twins.

Stage 3 of the reference vendor. The tolerance relations (``noise``, ``resample``,
``intensity``) judge the change of an exam's exam and breast scores, which are maxima over
~50 000 heatmap cells; stage 1 trains on 256 px crops, each augmented on its own, so nothing
in it asks the *maximum* of an exam to stay where it is. This stage runs whole exams: each step
takes a few training exams, perturbs every one with a random relation drawn from the clinical
ranges the standards use (modelled in model space, below), runs both through the exported
exam graph's computation (without the flip mean, to halve the cost), and minimises

    pixel loss + exam BCE (both copies) + LAMBDA * mean(((s' - s) / TOLERANCE)^2)

over the exam and breast scores ``s`` (calibrated with the starting package's Platt
parameters), so a change the size of the tolerance costs as much as ``LAMBDA``. BatchNorm is
frozen (as in ``refine_model``: the starting weights come BatchNorm-folded from ``model.onnx``).
Calibration and the operating point are refitted on the training split afterwards.

The relations' models in model space (presentation values in [0, 1], breast = value > 0),
checked against the relations themselves in ``tests/vendors/test_reference_vendor.py``:

* ``noise``: Gaussian noise of SD ``FULL_DOSE_NOISE * sqrt(1/d - 1)`` on the breast
  (``harness.perturb.noise``), dose d in 0.45-0.95;
* ``resample``: on the synthetic set's 0.56-0.6 mm pixels, resampling to 0.05-0.1 mm and the
  adapter's ``fit`` back is a fixed blur, :data:`RESAMPLE_BLUR` (fitted by least squares on
  the dev split; residual SD 0.001 against a change of SD 0.01);
* ``intensity``: gamma 0.8-1.25, window width x0.85-1.15, centre +-10 % of the width, on the
  stored values: for a MONOCHROME1 image (GE in the synthetic set) the centre shift moves
  presentation values the other way, so either sign at random;
* and all three at once.

Measured on session 10's CFAR package (README.md): weight 0.2 keeps the default-set AUC (0.872)
and cuts the failing pairs on the perturbation grid by a third, mostly on normal exams; weight 1.0
brings them near the shipped model's but the AUC down to 0.76. Not used for the shipped package.

Run: ``python -m harness.reference.stabilise_model --init PKG --train-cases DIR --out DIR``
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from harness.cases.devices import PROFILES
from harness.cases.manifest import load_manifest
from harness.reference import train_model as tm
from harness.reference.refine_model import stage_arguments, starting_package

SEED = 20261129
STEPS = 300
EXAMS = 2  # per step; each with its perturbed twin: 16 view pairs of 512 x 416
LR = 1e-4
LAMBDA = 0.2
TOLERANCE = 0.05  # the demo and draft standards' score tolerance
CANCER_SHARE = 0.4  # the score changes that matter most are near the operating point
VERSION = "2.2.0"
# resampling 0.56-0.6 mm pixels to 0.05-0.1 mm and fitting back to the model grid (see above)
RESAMPLE_BLUR = ((0.016, 0.093, 0.016), (0.093, 0.564, 0.093), (0.016, 0.093, 0.016))


@dataclass(frozen=True)
class Display:
    """How a device maps window-normalised stored values v (the window's range -> [0, 1]) to
    presentation values: LINEAR clips v, SIGMOID is 1 / (1 + exp(-4 (v - 0.5))); MONOCHROME1
    then inverts. The relations act on stored values, so their models work on v."""

    inverted: bool = False
    sigmoid: bool = False

    @classmethod
    def of(cls, manufacturer: str) -> Display:
        profile = PROFILES.get(manufacturer)
        if profile is None:
            return cls()
        return cls(profile.photometric == "MONOCHROME1", profile.voi_lut_function == "SIGMOID")

    def to_window(self, x):
        d = 1.0 - x if self.inverted else x
        return 0.5 + 0.25 * d.clamp(1e-6, 1 - 1e-6).logit() if self.sigmoid else d

    def to_presentation(self, v, breast):
        d = (4.0 * (v - 0.5)).sigmoid() if self.sigmoid else v.clamp(0, 1)
        return (1.0 - d if self.inverted else d) * breast


def lower_dose(x, display: Display, dose: float, rng: np.random.Generator):
    """``noise``: stored-value noise of SD ``FULL_DOSE_NOISE * sqrt(1/d - 1)`` window widths."""
    torch = tm._torch()
    sigma = tm.FULL_DOSE_NOISE * math.sqrt(1.0 / dose - 1.0)
    noise = torch.from_numpy(rng.normal(0.0, sigma, tuple(x.shape)).astype(np.float32))
    return display.to_presentation(display.to_window(x) + noise, x > 0)


def resampled(x, display: Display):
    """``resample`` to 0.05-0.1 mm on the synthetic set's pixels: a fixed blur of stored values."""
    torch = tm._torch()
    k = torch.tensor(RESAMPLE_BLUR, dtype=torch.float32)
    breast = x > 0
    v = torch.where(breast, display.to_window(x), 0.0)  # no edge ringing from the air
    pad = torch.nn.functional.pad(v[:, None], (1, 1, 1, 1), mode="replicate")
    v = torch.nn.functional.conv2d(pad, (k / k.sum())[None, None])[:, 0]
    return display.to_presentation(v, breast)


def redisplayed(x, display: Display, gamma: float, width: float, centre: float):
    """``intensity``: gamma on the stored values inside the window, such that a LINEAR display
    shows it as presentation**gamma, then the window moved and widened in stored values."""
    torch = tm._torch()
    v = display.to_window(x)
    q = v.clamp(0, 1)
    q = 1.0 - (1.0 - q) ** gamma if display.inverted else q**gamma
    v = torch.where((v > 0) & (v < 1), q, v)
    return display.to_presentation((v - 0.5 - centre) / width + 0.5, x > 0)


def perturbed(x, display: Display, rng: np.random.Generator):
    """One exam's planes (4,H,W) under a random tolerance relation, as the harness would
    perturb the whole exam: noise, resampling, display change, or all three."""
    kind = int(rng.integers(4))
    if kind in (0, 3):
        x = lower_dose(x, display, float(rng.uniform(0.45, 0.95)), rng)
    if kind in (1, 3):
        x = resampled(x, display)
    if kind in (2, 3):
        gamma = float(np.exp(rng.uniform(math.log(0.8), math.log(1.25))))
        width, centre = float(rng.uniform(0.85, 1.15)), float(rng.uniform(-0.1, 0.1))
        x = redisplayed(x, display, gamma, width, centre)
    return x


def stabilise(
    net,
    split: tm.Split,
    displays: list[Display],
    platt: tuple[float, float],
    steps: int,
    lam: float,
    log,
):
    """Fine-tune ``net`` (BatchNorm frozen) for ``steps`` steps of EXAMS exams and their twins;
    ``displays[e]``: how exam e's device displays its stored values."""
    torch = tm._torch()
    F = torch.nn.functional
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    rng = np.random.default_rng(SEED)
    a, b = platt
    exam = tm.ExamModel(net.eval(), 1.0, 0.0, flip=False)
    opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=LR)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=LR, total_steps=steps, pct_start=0.1)
    cancers, normals = np.flatnonzero(split.labels == 1), np.flatnonzero(split.labels == 0)
    cells = (tm.HEIGHT // tm.STRIDE, tm.WIDTH // tm.STRIDE)
    t0, run = time.time(), []
    for step in range(steps):
        picks = [
            int(rng.choice(cancers if rng.random() < CANCER_SHARE and cancers.size else normals))
            for _ in range(EXAMS)
        ]
        x = torch.from_numpy(split.planes[picks].astype(np.float32))
        twins = [perturbed(xi, displays[e], rng) for xi, e in zip(x, picks, strict=True)]
        both = torch.cat([x, torch.stack(twins)])
        exam_z, breast_z, logit = exam.logits(both)
        y = torch.tensor([float(split.labels[e]) for e in picks] * 2)
        t = np.stack(
            [[tm.target_map(split.malignant[e][v], *cells) for v in range(4)] for e in picks]
        )
        target = torch.from_numpy(np.concatenate([t, t])).float().reshape(-1, 1, *cells)
        pix = tm.pixel_loss(logit.reshape(-1, 1, *cells), target, tm.breast_cells(tm.pair_up(both)))
        img = F.binary_cross_entropy_with_logits(exam_z, y)
        s = torch.sigmoid(a * torch.cat([exam_z[:, None], breast_z], 1) + b)
        change = (s[EXAMS:] - s[:EXAMS]) / TOLERANCE
        loss = pix + img + lam * (change**2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        run.append((float(pix.detach()), float(img.detach()), float(change.detach().abs().max())))
        if (step + 1) % 10 == 0:
            p, i, c = np.mean(run[-10:], axis=0)
            log(
                f"step {step + 1}/{steps}  pixel {p:.4f}  exam {i:.4f}  "
                f"largest change {c * TOLERANCE:.3f}  {time.time() - t0:.0f} s"
            )
    return net.eval()


def build(
    init: Path, train_cases: Path, out: Path, steps: int = STEPS, lam: float = LAMBDA, log=print
) -> dict:
    """Stabilise the package ``init`` on ``train_cases`` and write it to ``out``."""
    net, before = starting_package(init)
    a, b = before.get("platt", (1.0, 0.0))
    split = tm.load_split(train_cases)
    manifest = load_manifest(train_cases)
    makers = {e.exam_id: str(e.attributes.get("manufacturer", "")) for e in manifest.exams}
    displays = [Display.of(makers.get(eid, "")) for eid in split.exam_ids]
    log(f"stabilising on {len(split.labels)} exams, {int(split.labels.sum())} cancers")
    net = stabilise(net, split, displays, (float(a), float(b)), steps, lam, log)
    report = {
        "init": before,
        "train_cases": manifest.digest,
        "train_exams": len(split.labels),
        "steps": steps,
        "exams_per_step": EXAMS,
        "lambda": lam,
        "seed": SEED,
    }
    flip = bool(before.get("test_time_flip"))
    return tm.write_package(net, split, Path(out), report, VERSION, flip)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m harness.reference.stabilise_model", description=__doc__.splitlines()[0]
    )
    stage_arguments(ap, "train_model or refine_model", "", STEPS)
    ap.add_argument("--weight", type=float, default=LAMBDA, help="weight of the score-change term")
    args = ap.parse_args(argv)
    return tm.run_build(
        ap.prog,
        lambda log: build(
            Path(args.init), Path(args.train_cases), Path(args.out), args.steps, args.weight, log
        ),
    )


if __name__ == "__main__":
    sys.exit(main())
