"""The screening population of a synthetic set: one plan per exam, drawn without any pixels.

A plan holds everything about an exam that does not need the rendered images: the woman (age,
breast density, glandular fraction, compressed thickness, breast size), the device, the ground
truth, the lesion parameters and the simulated original reads. Plans are cheap, so the reader
model can be checked on tens of thousands of exams without rendering (``plan_exams``).

Determinism: exam *i* draws from ``SeedSequence(seed, spawn_key=(i, 0))`` (its plan) and
``(i, 1)`` (its pixels), so an exam's content does not depend on the worker that renders it.
The truth of each exam comes from a seeded permutation of exact per-class counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.cases import birads
from harness.cases.readers import ReaderModel, calibrate, simulate_reads
from harness.cases.recipe import DENSITY_VGF_BANDS, Recipe

TRUTH_ORDER = ("screen_detected", "interval", "benign", "normal")

# Density masking: the share of a lesion's conspicuity left in each density class (dense tissue
# hides masses much more than calcifications).
MASS_MASKING = {"a": 1.0, "b": 0.85, "c": 0.65, "d": 0.45}
CALC_MASKING = {"a": 1.0, "b": 0.95, "c": 0.85, "d": 0.75}


@dataclass(frozen=True)
class LesionSpec:
    """A lesion's parameters; its position is drawn at render time (it needs the breast outline)."""

    kind: str  # mass | calcification | distortion
    malignant: bool
    margin: str  # circumscribed | spiculated | "" (calcs, distortion)
    size_mm: float  # mass diameter, cluster extent, or distortion radius
    contrast: float  # kappa in (0, 1]: the fraction of the full lesion attenuation excess
    subtle: bool
    count: int  # calcifications in the cluster (0 for others)
    depth_fraction: float  # distance from the nipple as a fraction of the breast depth
    laterality: str
    # lesion_model: birads only (birads.draw_descriptors); empty for v1 lesions
    descriptors: tuple[tuple[str, object], ...] = ()

    @property
    def desc(self) -> dict[str, object]:
        return dict(self.descriptors)


@dataclass(frozen=True)
class ExamPlan:
    """Everything about one exam except its pixels."""

    index: int
    exam_id: str
    woman_id: str
    truth: str
    age: int
    density: str
    glandular_fraction: float
    thickness_mm: float
    breast_depth_mm: float
    manufacturer: str
    lesion: LesionSpec | None
    conspicuity: float | None
    readers: dict[str, int]

    @property
    def label(self) -> int:
        return int(self.truth in ("screen_detected", "interval"))


def _choice(rng: np.random.Generator, probs: dict[str, float]) -> str:
    keys = list(probs)
    p = np.array([probs[k] for k in keys], dtype=np.float64)
    return keys[int(rng.choice(len(keys), p=p / p.sum()))]


def allocate_truths(recipe: Recipe, n: int) -> list[str]:
    """Exact class counts (largest remainder), in a seeded random order."""
    raw = [recipe.mix.get(t, 0.0) * n for t in TRUTH_ORDER]
    counts = [int(np.floor(r)) for r in raw]
    order = sorted(range(len(raw)), key=lambda k: (-(raw[k] - counts[k]), k))
    for k in order[: n - sum(counts)]:
        counts[k] += 1
    truths = [t for t, c in zip(TRUTH_ORDER, counts, strict=True) for _ in range(c)]
    rng = np.random.default_rng(np.random.SeedSequence(recipe.seed, spawn_key=(2**32 - 1,)))
    return [truths[k] for k in rng.permutation(n)]


def draw_lesion(
    recipe: Recipe, truth: str, density: str, rng: np.random.Generator
) -> tuple[LesionSpec | None, float | None]:
    """A cancer or benign lesion for ``truth`` and its conspicuity in (0, 1)."""
    if truth == "normal":
        return None, None
    malignant = truth in ("screen_detected", "interval")
    side = "L" if rng.random() < 0.5 else "R"
    depth = float(rng.uniform(0.25, 0.8))
    lo, hi = recipe.mass_size_mm
    if malignant:
        kind = _choice(rng, dict(recipe.cancer_types))
        # Interval cancers in this set are the "false-negative / minimal signs" kind: visible in
        # retrospect, low contrast. Occult interval cancers (nothing to see) are not simulated.
        subtle = truth == "interval" or rng.random() < recipe.screen_detected_subtle_fraction
    else:
        kind = _choice(rng, dict(recipe.benign_types))
        subtle = False
    contrast = float(rng.uniform(0.35, 0.6)) if subtle else float(rng.uniform(0.8, 1.0))
    if kind == "mass":
        margin = (
            ("spiculated" if rng.random() < recipe.spiculated_fraction else "circumscribed")
            if malignant
            else "circumscribed"
        )
        # Sizes skew small (screening finds many 10-15 mm cancers): log-uniform over the range,
        # subtle ones in the lower half.
        top = np.sqrt(lo * hi) if subtle else hi
        size = float(np.exp(rng.uniform(np.log(lo), np.log(top))))
        conspicuity = (
            contrast
            * min(1.0, 0.25 + size / 20.0)
            * MASS_MASKING[density]
            * (1.1 if margin == "spiculated" else 1.0)
        )
        count = 0
    elif kind == "calcification":
        margin = ""
        count = int(rng.integers(3, 7)) if subtle else int(rng.integers(5, 21))
        if not malignant:
            count = int(rng.integers(3, 8))
        size = float(rng.uniform(4.0, 10.0))  # cluster extent: within about 1 cm
        conspicuity = contrast * min(1.0, 0.3 + count / 15.0) * CALC_MASKING[density]
    else:  # architectural distortion: radiating lines without a central mass
        margin = ""
        count = 0
        size = float(rng.uniform(12.0, 30.0))
        conspicuity = contrast * 0.7 * MASS_MASKING[density]
    spec = LesionSpec(
        kind,
        malignant,
        margin,
        round(size, 2),
        round(contrast, 4),
        bool(subtle),
        count,
        round(depth, 4),
        side,
    )
    return spec, float(np.clip(round(conspicuity, 4), 0.02, 0.98))


def subtle_share(recipe: Recipe) -> float:
    """P(a cancer is subtle) of the recipe's v1 population: every interval cancer and
    ``screen_detected_subtle_fraction`` of the screen-detected ones (about a third of cancers)."""
    sd, ic = recipe.mix.get("screen_detected", 0.0), recipe.mix.get("interval", 0.0)
    if sd + ic <= 0:
        return 0.0
    return (ic + sd * recipe.screen_detected_subtle_fraction) / (sd + ic)


def draw_lesion_birads(
    recipe: Recipe, truth: str, density: str, rng: np.random.Generator
) -> tuple[LesionSpec | None, float | None]:
    """A lesion drawn by its BI-RADS descriptors (``lesion_model: birads``) and its planned
    conspicuity (the v1 formula; the pixel readers measure their own from the rendered pixels).

    With ``reader_model: pixels`` a cancer's truth is decided by the readers, so whether it is
    subtle does not depend on the planned truth: it is subtle with the recipe's overall share."""
    if truth == "normal":
        return None, None
    malignant = truth in ("screen_detected", "interval")
    side = "L" if rng.random() < 0.5 else "R"
    depth = float(rng.uniform(0.25, 0.8))
    lo, hi = recipe.mass_size_mm
    if malignant:
        kind = _choice(rng, dict(recipe.cancer_types))
        if recipe.reader_model == "pixels":
            subtle = bool(rng.random() < subtle_share(recipe))
        else:
            subtle = truth == "interval" or rng.random() < recipe.screen_detected_subtle_fraction
    else:
        kind = _choice(rng, dict(recipe.benign_types))
        subtle = False
    desc = birads.draw_descriptors(kind, malignant, rng)
    contrast = float(rng.uniform(0.35, 0.6)) if subtle else float(rng.uniform(0.8, 1.0))
    count = 0
    if kind == "mass":
        if malignant:
            top = np.sqrt(lo * hi) if subtle else hi
            size = float(np.exp(rng.uniform(np.log(lo), np.log(top))))
        else:
            blo, bhi = birads.BENIGN_MASS_SIZE_MM[str(desc["finding"])]
            size = float(np.exp(rng.uniform(np.log(blo), np.log(bhi))))
        conspicuity = contrast * min(1.0, 0.25 + size / 20.0) * MASS_MASKING[density]
    elif kind == "calcification":
        morph, dist = desc["calc_morphology"], desc["calc_distribution"]
        if malignant:
            # BI-RADS 5th ed.: grouped = at least 5 within 1 cm (up to 2 cm); a segment is larger.
            count = int(rng.integers(5, 9)) if subtle else int(rng.integers(6, 21))
            extent = {"grouped": (4.0, 12.0), "linear": (10.0, 25.0), "segmental": (20.0, 40.0)}
            if dist == "segmental":
                count = int(count * 1.5)
        else:
            count = {
                "coarse_popcorn": int(rng.integers(2, 6)),
                "rim": int(rng.integers(1, 4)),
                "round": int(rng.integers(5, 13)),
                "vascular": 1,
                "large_rod_like": int(rng.integers(3, 9)),
            }[str(morph)]
            extent = {"grouped": (5.0, 15.0), "linear": (20.0, 40.0), "regional": (15.0, 35.0)}
        size = float(rng.uniform(*extent[str(dist)]))
        conspicuity = contrast * min(1.0, 0.3 + max(count, 5) / 15.0) * CALC_MASKING[density]
    elif kind == "distortion":
        size = float(rng.uniform(12.0, 30.0))
        conspicuity = contrast * 0.7 * MASS_MASKING[density]
    else:  # focal asymmetry: less than a quadrant (BI-RADS 5th ed.)
        size = float(rng.uniform(15.0, 35.0))
        conspicuity = contrast * 0.6 * MASS_MASKING[density]
    spec = LesionSpec(
        kind,
        malignant,
        str(desc["margin"] or ""),
        round(size, 2),
        round(contrast, 4),
        bool(subtle),
        count,
        round(depth, 4),
        side,
        tuple(sorted(desc.items())),
    )
    return spec, float(np.clip(round(conspicuity, 4), 0.02, 0.98))


def reader_model(recipe: Recipe) -> ReaderModel:
    """Calibrate the readers on a fixed-seed sample of the recipe's lesions (independent of n)."""
    rng = np.random.default_rng(np.random.SeedSequence(recipe.seed, spawn_key=(2**32 - 2,)))
    c_sd, c_ic = [], []
    for _ in range(4000):
        d = _choice(rng, dict(recipe.density))
        c_sd.append(_draw(recipe)(recipe, "screen_detected", d, rng)[1])
        c_ic.append(_draw(recipe)(recipe, "interval", d, rng)[1])
    cancers = recipe.mix.get("screen_detected", 0) + recipe.mix.get("interval", 0)
    noncancers = recipe.mix.get("benign", 0) + recipe.mix.get("normal", 0)
    return calibrate(
        reader_sensitivity=recipe.reader_sensitivity,
        reader_specificity=recipe.reader_specificity,
        consensus_specificity=recipe.consensus_specificity,
        interval_reader_recall=recipe.interval_reader_recall,
        interval_share=recipe.mix.get("interval", 0) / cancers if cancers else 0.0,
        benign_share=recipe.mix.get("benign", 0) / noncancers if noncancers else 0.0,
        density_mix=dict(recipe.density),
        conspicuity_sd=c_sd,
        conspicuity_ic=c_ic,
    )


def plan_exam(recipe: Recipe, index: int, truth: str, model: ReaderModel | None = None) -> ExamPlan:
    """Draw exam ``index`` (0-based) of a set; independent of every other exam."""
    rng = np.random.default_rng(np.random.SeedSequence(recipe.seed, spawn_key=(index, 0)))
    age = int(rng.integers(recipe.age[0], recipe.age[1] + 1))
    # Density falls with age (Checka 2012): shift the mix towards fattier classes for older women.
    shift = (age - 60) / 10.0
    weights = {
        d: w * np.exp(-0.35 * shift * (k - 1.5)) for k, (d, w) in enumerate(recipe.density.items())
    }
    total = sum(weights.values())
    density = _choice(rng, {d: w / total for d, w in weights.items()})
    lo, hi = DENSITY_VGF_BANDS[density]
    vgf = float(rng.uniform(lo + 0.1 * (hi - lo), hi - 0.1 * (hi - lo)))
    th = recipe.thickness_mm
    thickness = float(np.clip(rng.normal(th["mean"], th["sd"]), th["min"], th["max"]))
    # Bigger compressed breasts are thicker and deeper (nipple to chest wall).
    depth = float(np.clip(rng.normal(80 + 0.6 * thickness, 12), 60, 160))
    manufacturer = _choice(rng, dict(recipe.manufacturers))
    lesion, conspicuity = _draw(recipe)(recipe, truth, density, rng)
    if recipe.reader_model == "pixels":  # read after rendering (build.py, readers.read_from_pixels)
        reads: dict[str, int] = {}
    else:
        reads = simulate_reads(model or reader_model(recipe), truth, density, conspicuity, rng)
    n = index + 1
    return ExamPlan(
        index=index,
        exam_id=f"E{n:04d}",
        woman_id=f"W{n:05d}",
        truth=truth,
        age=age,
        density=density,
        glandular_fraction=round(vgf, 4),
        thickness_mm=round(thickness, 1),
        breast_depth_mm=round(depth, 1),
        manufacturer=manufacturer,
        lesion=lesion,
        conspicuity=conspicuity,
        readers=reads,
    )


def _draw(recipe: Recipe):
    return draw_lesion_birads if recipe.lesion_model == "birads" else draw_lesion


def plan_exams(recipe: Recipe, n: int | None = None) -> list[ExamPlan]:
    """Plans of every exam of the set (no pixels)."""
    n = recipe.exams if n is None else n
    model = None if recipe.reader_model == "pixels" else reader_model(recipe)
    return [plan_exam(recipe, i, t, model) for i, t in enumerate(allocate_truths(recipe, n))]
