"""Combine two reference detectors into one (stage 5, an ensemble of heatmaps).

The plain detector (2.0.0, ``tests/assets/reference-2.0.0``) is robust to the tolerance relations
but ranks exams at AUC ~0.77; the CFAR-prewhitened one (``train_model --prewhiten --flip-tta``,
shipped as 3.0.0) reaches ~0.86 but its strongest
cells move with lower-dose noise and a blur (README.md, sessions 8-11). Their errors are only
partly shared (exam scores correlate ~0.5), so a weighted sum of their cell logits keeps much of
the second one's ranking while each detector's perturbation-driven changes are damped by the
weight of the other.

Each detector's cell logits are divided by the spread (SD) of its exam logits over the
calibration split's normal exams, so ``--weight`` is the first detector's share in units that do
not depend on how sharp each network happens to be; the sum is one heatmap, and view, breast and
exam take its soft maximum as stage 1 does, so the findings are exactly what makes the scores.
Platt calibration and the operating point are fitted on the training split, as stage 1's are.

Measured (session 14, README.md): at share 0.3 the default-set AUC is 0.873, but 20-27 % of exams
break the noise and resampling tolerances (2.0.0: 5-7 %); shares >= 0.5 fall below AUC 0.85. Not shipped.

Run: ``python -m harness.reference.ensemble_model --init PKG --with PKG2 --train-cases DIR --out DIR``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from harness.cases.manifest import load_manifest
from harness.reference import refine_model as rm
from harness.reference import train_model as tm

VERSION = "5.0.0"
WEIGHT = 0.5


def Ensemble(members, a: float, b: float):  # noqa: N802 - a torch Module factory
    """The exported graph: ``members`` is ``[(net, flip, weight), ...]``; the heatmap logit is the
    weighted sum of the members' cell logits."""
    torch = tm._torch()

    class _Ensemble(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.members = torch.nn.ModuleList(tm.ExamModel(n, 1.0, 0.0, f) for n, f, _ in members)
            self.weights = [float(w) for _, _, w in members]
            self.a, self.b = float(a), float(b)

        def logits(self, image):
            """(exam (N,), breast (N,2), cell logits (N,4,h,w)), all uncalibrated."""
            cells = sum(
                w * m.logits(image)[2] for m, w in zip(self.members, self.weights, strict=True)
            )
            return (*tm.aggregate(cells), cells)

        def forward(self, image):
            exam, breast, cells = self.logits(image)
            return (
                torch.sigmoid(self.a * exam + self.b).reshape(-1, 1),
                torch.sigmoid(cells),
                torch.sigmoid(self.a * breast + self.b),
            )

    return _Ensemble()


def member_cells(net, flip: bool, planes: np.ndarray) -> np.ndarray:
    """A detector's uncalibrated cell logits (E,4,h,w) for (E,4,H,W) planes (one pass over the
    split per member: the exam logits of any weighting follow from them)."""
    return tm.module_logits(tm.ExamModel(net, 1.0, 0.0, flip).eval(), planes, 2)


def exam_logits(cells: np.ndarray) -> np.ndarray:
    torch = tm._torch()
    with torch.no_grad():
        return tm.aggregate(torch.from_numpy(cells))[0].numpy()


def build(
    first: Path, second: Path, train_cases: Path, out: Path, weight: float = WEIGHT, log=print
) -> dict:
    """The ensemble of packages ``first`` (share ``weight``) and ``second``, written to ``out``."""
    torch = tm._torch()
    if not 0.0 < weight < 1.0:
        raise tm.UsageError(f"--weight {weight}: the first detector's share must be within (0, 1)")
    split = tm.load_split(train_cases)
    members, stages, combined = [], [], 0.0
    for pkg, share in ((first, weight), (second, 1.0 - weight)):
        net, report = rm.starting_package(pkg)
        flip = bool(report.get("test_time_flip"))
        cells = member_cells(net.eval(), flip, split.planes)
        spread = float(np.std(exam_logits(cells)[split.labels == 0]))
        if not spread > 1e-9:
            raise tm.UsageError(
                f"{pkg}: its exam logits do not vary over the normal training exams; "
                "pass a trained detector"
            )
        log(f"{pkg}: normal-exam logit SD {spread:.4f}, share {share}")
        members.append((net, flip, share / spread))
        stages.append({**report, "normal_spread": spread, "share": share})
        combined = combined + (share / spread) * cells
        del cells
    z = exam_logits(combined)
    a, b, op, fitted = tm.calibrate(z, split.labels, "train")
    report = {
        "members": stages,
        "train_cases": load_manifest(train_cases).digest,
        **fitted,
        "torch": torch.__version__,
    }
    out.mkdir(parents=True, exist_ok=True)
    tm.export_module(Ensemble(members, a, b).eval(), out / "model.onnx")
    tm.write_vendor_files(out, report, VERSION, op, "train")
    return report


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m harness.reference.ensemble_model", description=__doc__.splitlines()[0]
    )
    rm.stage_arguments(ap, "train_model (the first detector)", "", None)
    ap.add_argument("--with", dest="second", required=True, help="the second detector's package")
    ap.add_argument("--weight", type=float, default=WEIGHT, help="the first detector's share")
    args = ap.parse_args(argv)
    return tm.run_build(
        ap.prog,
        lambda log: build(
            Path(args.init), Path(args.second), Path(args.train_cases), Path(args.out),
            args.weight, log,
        ),
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
