"""Localisation: does the AI point at the cancer it flags?

Hit rule (the acceptance region): a finding on an image hits a lesion mark on that image when the
finding's centre is inside the mark's box, or within max(half the box diagonal, ``r_min_mm``) of
the box centre (DBTex-style centre-distance rule; ``r_min_mm`` converted with the image's pixel
spacing).

Headline: among lesions in breasts the AI flags at its operating point (breast score >= it), the
fraction that are correctly localised: on at least one image where the lesion is marked, the AI's
highest-scoring finding hits it (what a radiologist sees first). FROC: lesion localisation fraction
(lesions hit by any finding scoring >= t) against non-lesion localisations per image, over t.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pydicom

from conformance.context import EvaluationContext
from conformance.outcome import NotEvaluable, result
from conformance.registry import evaluator
from harness import stats
from harness.predictions import Finding
from harness.results import CriterionResult
from harness.standard import CriterionSpec


@lru_cache(maxsize=65536)
def _spacing_mm(path: Path) -> float:
    ds = pydicom.dcmread(
        path, stop_before_pixels=True, specific_tags=["PixelSpacing", "ImagerPixelSpacing"]
    )
    sp = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
    if not sp:
        raise NotEvaluable(
            f"{path}: no PixelSpacing/ImagerPixelSpacing; cannot convert r_min_mm to pixels"
        )
    return float(sp[1])  # column spacing; mammography pixels are square


def _hits(
    f: Finding, box: tuple[float, float, float, float], spacing: float, r_min_mm: float
) -> bool:
    return stats.is_hit(f.x, f.y, box, spacing, r_min_mm)


@evaluator(
    "localization",
    family="localization",
    section="Localization of findings",
    method=(
        "Free-response ROC (FROC): share of lesions marked within the allowed distance, "
        "against the number of false marks per image."
    ),
    pass_keys=("localised_fraction_gte", "ci_lower_gte"),
)
def localization(spec: CriterionSpec, ctx: EvaluationContext) -> CriterionResult:
    t = ctx.table()
    r_min = float(spec.params["r_min_mm"])
    op = ctx.operating_point
    lesion_rows: list[dict[str, Any]] = []
    nl_scores: list[float] = []  # scores of findings that hit no lesion
    ll_best: list[float] = []  # per lesion: best score of a hitting finding (or -inf)
    n_images = 0
    for exam, pred, ok in zip(t.exams, t.predictions, t.readable, strict=True):
        n_images += len(exam.images)
        findings = list(pred.findings) if ok else []
        by_file: dict[str, list[Finding]] = {}
        for f in findings:
            by_file.setdefault(f.file, []).append(f)
        hit_findings: set[int] = set()
        for les in exam.lesions if exam.label == 1 else ():
            best = -np.inf
            top_hit = False
            for m in les.marks:
                on_img = by_file.get(m.file, [])
                if not on_img:
                    continue  # nothing to hit; an unread exam's images are never opened
                spacing = _spacing_mm(ctx.manifest.root / m.file)
                for f in on_img:
                    if _hits(f, m.box, spacing, r_min):
                        hit_findings.add(id(f))
                        best = max(best, f.score)
                top = max(on_img, key=lambda f: (f.score, -f.x, -f.y))
                top_hit = top_hit or _hits(top, m.box, spacing, r_min)
            breast_score = pred.breasts.get(les.laterality) if ok else None
            flagged = breast_score is not None and breast_score >= op
            ll_best.append(best)
            lesion_rows.append(
                {
                    "exam_id": exam.exam_id,
                    "laterality": les.laterality,
                    "type": les.type,
                    "flagged": bool(flagged),
                    "localised": bool(top_hit),
                }
            )
        nl_scores.extend(f.score for f in findings if id(f) not in hit_findings)
    if not lesion_rows:
        raise NotEvaluable("the reference set has no marked cancer lesions")
    flagged_rows = [r for r in lesion_rows if r["flagged"]]
    if not flagged_rows:
        raise NotEvaluable(
            "the AI flags no breast with a marked cancer at its operating point, so localisation cannot be judged"
        )
    k = sum(r["localised"] for r in flagged_rows)
    n = len(flagged_rows)
    conf = float(spec.params.get("ci", {}).get("level", 0.95))
    lo, hi = stats.wilson(k, n, conf)
    frac = k / n
    # FROC over the distinct finding scores
    ll = np.array(ll_best)
    nl = np.array(nl_scores)
    thresholds = np.unique(np.concatenate([ll[np.isfinite(ll)], nl]))[::-1]
    froc_nlf = [float((nl >= th).sum() / n_images) for th in thresholds]
    froc_llf = [float((ll >= th).sum() / len(ll)) for th in thresholds]
    at_fp = {}
    for fp in spec.params.get("fp_per_image", []):
        ok_idx = [i for i, v in enumerate(froc_nlf) if v <= fp]
        at_fp[str(fp)] = max((froc_llf[i] for i in ok_idx), default=0.0)
    if len(froc_nlf) > 300:
        idx = np.unique(np.linspace(0, len(froc_nlf) - 1, 300).round().astype(int))
        froc_nlf, froc_llf = [froc_nlf[i] for i in idx], [froc_llf[i] for i in idx]
    measured = {"value": frac, "ci": (lo, hi), "ci_lower": lo, "localised_fraction": frac}
    summary = (
        f"Of {n} cancer lesions in breasts the AI flags, its top mark points at the lesion for {k} "
        f"({frac:.1%}, {conf:.0%} CI {lo:.1%}–{hi:.1%})."
    )
    evidence = {
        "r_min_mm": r_min,
        "n_lesions": len(lesion_rows),
        "n_flagged_lesions": n,
        "froc": {"nlf": froc_nlf, "llf": froc_llf},
        "llf_at_fp_per_image": at_fp,
        "missed": [r for r in flagged_rows if not r["localised"]][:50],
        "method": "hit = finding centre inside the box or within max(half diagonal, r_min) of its centre; "
        "top-scoring finding per marked image; Wilson CI; FROC over finding scores",
    }
    return result(spec, measured, n, summary, evidence)
