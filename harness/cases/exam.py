"""Render the four views of one planned exam (LCC, LMLO, RCC, RMLO) with its lesion, if any.

The lesion is placed once per breast in breast coordinates: the same distance from the nipple
in CC and MLO (how radiologists triangulate a finding between the two views), at a different
angle around the nipple in each view, deep enough inside the breast that its box lies in the
breast and off the pectoral muscle. Views are drawn in left-breast orientation (chest wall at
column 0) and right-breast views are mirrored at the end, so a right CC has its chest wall on the
right as PatientOrientation ``P\\L`` says.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.cases import lesions as lz
from harness.cases import phantom as ph
from harness.cases.devices import PROFILES
from harness.cases.population import ExamPlan, LesionSpec

VIEW_ORDER = (("L", "CC"), ("L", "MLO"), ("R", "CC"), ("R", "MLO"))


@dataclass(frozen=True)
class ViewResult:
    """One rendered view in stored orientation."""

    laterality: str
    view: str
    pixels: np.ndarray  # uint16
    window: tuple[float, float]
    spacing: float
    mask: np.ndarray
    glandular: np.ndarray
    thickness: np.ndarray
    nipple_rc: tuple[float, float]
    box: tuple[float, float, float, float] | None  # lesion box, stored orientation
    lesion_center_rc: tuple[float, float] | None
    contrast: float | None  # subject contrast 1 - I_lesion / I_background at the lesion core
    muscle: np.ndarray | None = None  # pectoral muscle (MLO), stored orientation


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _reach_mm(spec: LesionSpec) -> float:
    if spec.kind == "mass":
        return spec.size_mm / 2 * (1.15 * (1.3 if spec.margin == "spiculated" else 1.0))
    if spec.kind == "calcification":
        return spec.size_mm / 2 + 1.5
    return spec.size_mm / 2


def place_lesion(
    spec: LesionSpec, geoms: dict[str, ph.Geometry], depth_mm: float, rng: np.random.Generator
) -> dict[str, tuple[float, float]]:
    """Centre (row, col) per view at the same distance from the nipple in CC and MLO."""
    need = 1.5 * _reach_mm(spec) + 2.0
    dn = spec.depth_fraction * depth_mm
    best: tuple[float, dict[str, tuple[float, float]]] = (-np.inf, {})
    for _ in range(12):
        found: dict[str, tuple[float, float]] = {}
        worst_v = -np.inf
        for view, g in geoms.items():
            best_v: tuple[float, tuple[float, float]] = (-np.inf, (0.0, 0.0))
            for _ in range(60):
                ang = g.axis_angle + float(rng.uniform(-1.0, 1.0))
                r = g.nipple_rc[0] + dn * np.sin(ang) / g.spacing
                c = g.nipple_rc[1] + dn * np.cos(ang) / g.spacing
                ri, ci = int(round(r)), int(round(c))
                if (
                    not (0 <= ri < g.mask.shape[0] and 0 <= ci < g.mask.shape[1])
                    or not g.mask[ri, ci]
                ):
                    continue
                rad = int(np.ceil(need / g.spacing))
                win = g.muscle[max(0, ri - rad) : ri + rad + 1, max(0, ci - rad) : ci + rad + 1]
                score = float(g.skin_dist[ri, ci]) - (1e3 if win.max() > 0 else 0.0)
                if score > best_v[0]:
                    best_v = (score, (r, c))
                if score >= need:
                    break
            found[view] = best_v[1]
            worst_v = best_v[0] if view == next(iter(geoms)) else min(worst_v, best_v[0])
        worst = worst_v
        if worst > best[0] or not best[1]:
            best = (worst, found)
        if worst >= need:
            break
        dn *= 0.9  # closer to the nipple, where the breast is wider
    return best[1]


def render_exam(
    plan: ExamPlan, seed: int, image_size: str = "ci", dose: float = 1.0
) -> list[ViewResult]:
    """Render the exam's four views in VIEW_ORDER."""
    profile = PROFILES[plan.manufacturer]
    rows, cols, spacing = profile.geometry(image_size)
    k = plan.index
    shape = ph.draw_shape(plan.breast_depth_mm, plan.thickness_mm, _rng(seed, k, 1, 0))
    jitter = {"L": 0.0, "R": float(_rng(seed, k, 1, 1).uniform(-0.04, 0.04))}
    built: dict[tuple[str, str], ph.Geometry] = {}
    for view in ("CC", "MLO"):  # both sides of a view share its polar grid
        grid = ph.view_grid(shape, view, rows, cols, spacing)
        for lat in ("L", "R"):
            built[(lat, view)] = ph.breast_geometry(
                shape, view, rows, cols, spacing, jitter[lat], grid
            )
        del grid
    geoms = {key: built[key] for key in VIEW_ORDER}
    shared = {
        view: ph.power_law_field((rows, cols), spacing, ph.BETA, _rng(seed, k, 2, n))
        for n, view in enumerate(("CC", "MLO"))
    }
    spec = plan.lesion
    centers: dict[str, tuple[float, float]] = {}
    if spec is not None:
        side = spec.laterality
        centers = place_lesion(
            spec,
            {v: geoms[(side, v)] for v in ("CC", "MLO")},
            shape.depth_mm * (1 + jitter[side]),
            _rng(seed, k, 3, 0),
        )
    out: list[ViewResult] = []
    for n, (lat, view) in enumerate(VIEW_ORDER):
        geom = geoms[(lat, view)]
        # MLO compression is a little thicker than CC.
        t_mm = plan.thickness_mm * (1.05 if view == "MLO" else 1.0)
        total, inner = ph.thickness_maps(geom, t_mm)
        own = ph.power_law_field((rows, cols), spacing, ph.BETA, _rng(seed, k, 4, n))
        ducts = ph.duct_field(geom, _rng(seed, k, 5, n))
        g = ph.glandular_fraction(geom, inner, plan.glandular_fraction, shared[view], own, ducts)
        box = center = contrast = None
        delta = None
        if spec is not None and spec.laterality == lat:
            center = centers[view]
            lrng = _rng(seed, k, 6, n)
            g_fn = lambda r, c, g=g: g[r, c]  # noqa: E731
            if spec.descriptors and spec.kind == "mass":
                ren = lz.render_mass_birads(g.shape, spacing, center, spec, t_mm, g_fn, lrng)
            elif spec.descriptors and spec.kind == "calcification":
                ren = lz.render_calcifications_birads(
                    g.shape, spacing, center, spec, geom.axis_angle, g_fn, lrng
                )
            elif spec.descriptors and spec.kind == "asymmetry":
                ren = lz.render_asymmetry(g.shape, spacing, center, spec, t_mm, g_fn, lrng)
            elif spec.kind == "mass":
                ren = lz.render_mass(
                    g.shape,
                    spacing,
                    center,
                    spec.size_mm,
                    spec.margin,
                    spec.contrast,
                    spec.malignant,
                    t_mm,
                    g_fn,
                    lrng,
                )
            elif spec.kind == "calcification":
                ren = lz.render_calcifications(
                    g.shape,
                    spacing,
                    center,
                    spec.size_mm,
                    spec.count,
                    spec.contrast,
                    spec.malignant,
                    g_fn,
                    lrng,
                )
            else:
                g = g.copy()
                ren = lz.render_distortion(
                    g.shape, spacing, center, spec.size_mm, spec.contrast, g, lrng
                )
            delta = ren
            box = ren.box
        l_int = ph.line_integral(geom, total, inner, g)
        if delta is not None:
            l_int[delta.rows, delta.cols] += (
                ph._q(delta.delta_l, 1e-9) * geom.mask[delta.rows, delta.cols]
            )
            core = delta.core_mask
            excess = delta.delta_l[core] if core.any() else delta.delta_l.ravel()
            contrast = float(1 - np.exp(-np.mean(excess)))
        signal = ph.expose(l_int, geom, t_mm, dose, _rng(seed, k, 7, n))
        pixels, window = ph.present(signal, geom, profile)
        mask, gl, th, muscle = geom.mask, g, total, geom.muscle
        nipple = geom.nipple_rc
        if lat == "R":  # mirror: chest wall on the right
            pixels, mask, gl, th, muscle = (
                pixels[:, ::-1].copy(),
                mask[:, ::-1].copy(),
                gl[:, ::-1].copy(),
                th[:, ::-1].copy(),
                muscle[:, ::-1].copy(),
            )
            nipple = (nipple[0], cols - 1 - nipple[1])
            if box is not None:
                box = (cols - box[2], box[1], cols - box[0], box[3])
                center = (center[0], cols - 1 - center[1])
        if box is not None:
            box = (
                max(0.0, box[0]),
                max(0.0, box[1]),
                min(float(cols), box[2]),
                min(float(rows), box[3]),
            )
        out.append(
            ViewResult(
                lat,
                view,
                pixels,
                window,
                spacing,
                mask,
                gl,
                th,
                nipple,
                box,
                center,
                contrast,
                muscle,
            )
        )
    return out
