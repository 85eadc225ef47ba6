"""Simulated original screening reads (manifest ``readers``: reader1, reader2, consensus).

Danish double reading with arbitration (Elhakim et al., Cancer Imaging 2023, Southern Denmark,
257,671 screens): first reader sensitivity 63.7 %, specificity 97.8 %; double reading with
arbitration ("combined") sensitivity 73.9 %, specificity 97.9 %.

Model (separable from the pixels: it needs only each exam's truth, density and lesion
conspicuity, so it can be checked on many exams without rendering any image):

* Each reader recalls independently with a probability ``p``; two recalls -> consensus recall,
  no recall -> no recall, one recall -> arbitration.
* Cancers: ``p = sigmoid(a + b * logit(conspicuity))`` so that subtle lesions are missed more.
  By definition a *screen-detected* cancer was recalled by the consensus, and an *interval*
  cancer was not; reads are drawn conditional on that outcome (SD: at least one reader
  recalled; IC: not both). The intercepts are calibrated so that a single reader's
  sensitivity over all cancers matches the target; the consensus sensitivity equals the
  screen-detected share of cancers (the recipe's mix: 74 % of cancers screen-detected gives
  the published 73.9 %).
* Non-cancers: ``p`` scales with density (dense breasts give more false positives) and benign
  findings are recalled six times as often as normal exams; arbitration recalls with the
  probability that gives the target consensus specificity.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

# Logistic slope on logit(conspicuity): subtle cancers (low conspicuity) are missed more often.
CONSPICUITY_SLOPE = 1.2
# A benign finding draws recalls this many times as often as a normal exam.
BENIGN_RECALL_FACTOR = 6.0
# False-positive propensity by density (relative; normalised over the recipe's density mix).
DENSITY_FP_FACTOR = {"a": 0.7, "b": 0.9, "c": 1.1, "d": 1.4}


def _sigmoid(x: np.ndarray | float) -> np.ndarray | float:
    return 1.0 / (1.0 + np.exp(-x))


def _logit(p: np.ndarray | float) -> np.ndarray | float:
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def _solve(f, target: float, lo: float = -20.0, hi: float = 20.0) -> float:
    """Bisection for an increasing function; 80 halvings are exact to float precision."""
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if f(mid) < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


@dataclass(frozen=True)
class ReaderModel:
    """Calibrated reader parameters (one model for both readers)."""

    a_screen_detected: float
    a_interval: float
    p_normal: float  # per-reader recall probability of a normal exam at density factor 1
    arbitration_recall: float
    density_factor: Mapping[str, float]

    def p_cancer(self, conspicuity: float, interval: bool) -> float:
        a = self.a_interval if interval else self.a_screen_detected
        return float(_sigmoid(a + CONSPICUITY_SLOPE * _logit(conspicuity)))

    def p_noncancer(self, density: str, benign: bool) -> float:
        p = self.p_normal * self.density_factor[density] * (BENIGN_RECALL_FACTOR if benign else 1.0)
        return min(p, 0.95)


def calibrate(
    *,
    reader_sensitivity: float,
    reader_specificity: float,
    consensus_specificity: float,
    interval_reader_recall: float,
    interval_share: float,
    benign_share: float,
    density_mix: Mapping[str, float],
    conspicuity_sd: Sequence[float],
    conspicuity_ic: Sequence[float],
) -> ReaderModel:
    """Solve the model's intercepts so the expected rates equal the targets.

    ``conspicuity_sd`` / ``conspicuity_ic`` are samples of the recipe's conspicuity distribution
    for screen-detected and interval cancers (drawn with a fixed seed, independent of the set size).
    """
    c_sd = np.asarray(conspicuity_sd, dtype=np.float64)
    c_ic = np.asarray(conspicuity_ic, dtype=np.float64)
    # P(reader recalls | interval) = E[p / (1 + p)] (conditional on "not both recalled").
    a_ic = _solve(
        lambda a: float(np.mean(_p_over(a, c_ic, lambda p: p / (1 + p)))), interval_reader_recall
    )
    target_sd = (reader_sensitivity - interval_share * interval_reader_recall) / max(
        1e-9, 1 - interval_share
    )
    target_sd = min(max(target_sd, 0.5001), 0.9999)
    # P(reader recalls | screen-detected) = E[1 / (2 - p)] (conditional on "at least one").
    a_sd = _solve(lambda a: float(np.mean(_p_over(a, c_sd, lambda p: 1 / (2 - p)))), target_sd)
    norm = sum(density_mix[d] * DENSITY_FP_FACTOR[d] for d in density_mix)
    factor = {d: DENSITY_FP_FACTOR[d] / norm for d in DENSITY_FP_FACTOR}
    fp_reader = 1 - reader_specificity
    p_normal = fp_reader / ((1 - benign_share) + benign_share * BENIGN_RECALL_FACTOR)
    # Consensus FP = E[p^2] + q * E[2 p (1 - p)] over the non-cancer mix.
    e_p2 = e_2pq = 0.0
    for d, wd in density_mix.items():
        for benign, wb in ((False, 1 - benign_share), (True, benign_share)):
            p = min(p_normal * factor[d] * (BENIGN_RECALL_FACTOR if benign else 1.0), 0.95)
            e_p2 += wd * wb * p * p
            e_2pq += wd * wb * 2 * p * (1 - p)
    q = (1 - consensus_specificity - e_p2) / e_2pq if e_2pq > 0 else 0.0
    return ReaderModel(a_sd, a_ic, p_normal, min(max(q, 0.0), 1.0), factor)


def _p_over(a: float, c: np.ndarray, transform) -> np.ndarray:
    return transform(_sigmoid(a + CONSPICUITY_SLOPE * _logit(c)))


def simulate_reads(
    model: ReaderModel,
    truth: str,
    density: str,
    conspicuity: float | None,
    rng: np.random.Generator,
) -> dict[str, int]:
    """One exam's reads; cancers are drawn conditional on their consensus outcome (see module doc)."""
    if truth in ("screen_detected", "interval"):
        assert conspicuity is not None
        p = model.p_cancer(conspicuity, interval=truth == "interval")
        while True:  # rejection sampling of the conditional; acceptance >= 1 - p^2 or 1 - (1-p)^2
            r1, r2 = int(rng.random() < p), int(rng.random() < p)
            if truth == "screen_detected" and (r1 or r2):
                return {"reader1": r1, "reader2": r2, "consensus": 1}
            if truth == "interval" and not (r1 and r2):
                return {"reader1": r1, "reader2": r2, "consensus": 0}
    p = model.p_noncancer(density, benign=truth == "benign")
    r1, r2 = int(rng.random() < p), int(rng.random() < p)
    if r1 and r2:
        consensus = 1
    elif r1 or r2:
        consensus = int(rng.random() < model.arbitration_recall)
    else:
        consensus = 0
    return {"reader1": r1, "reader2": r2, "consensus": consensus}


def describe(model: ReaderModel) -> str:
    """One line for logs and the manifest."""
    return (
        f"a_sd={model.a_screen_detected:.3f} a_ic={model.a_interval:.3f} "
        f"p_normal={model.p_normal:.4f} arbitration={model.arbitration_recall:.3f}"
    )


# --- reader_model: pixels ---------------------------------------------------------------------
# Readers who read the image (issue #30 part 2). Every exam gets a base suspicion from what was
# rendered, as measured in its pixels (harness/cases/conspicuity.py):
#
#   lesion     s_L = w logit(PPV_descriptor) + (1 - w) logit(PPV_focal) + GAMMA ln Z_L
#   elsewhere  s_B = logit(PPV_focal) + GAMMA ln Z_B,      base s0 = max(s_L, s_B)
#
# Z_L is the lesion's measured conspicuity (the smaller of its two views), Z_B the most suspicious
# other focal density of the exam seen in both views (conspicuity.two_view_background), the
# PPVs are the descriptors' likelihoods of malignancy (birads.PPV, cited there), and
# w = Z_L^2 / (Z_L^2 + Z_HALF^2): a faint finding's descriptors cannot be made out, so it reads like
# any focal density. Reader r recalls when s0 + u + e_r > t, with u ~ N(0, rho sigma^2) shared by
# everyone who reads the exam (its difficulty: readers' errors are correlated) and
# e_r ~ N(0, (1 - rho) sigma^2) their own. One recall of two goes to arbitration: an arbiter with
# the same exam difficulty and own noise recalls when s0 + u + e_a > t_a.
# Truth enters only ``calibrate_pixels``: t and sigma give the first reader's sensitivity and
# specificity, t_a the consensus specificity and rho the consensus sensitivity (Elhakim 2023).
# A cancer the consensus did not recall is an interval cancer.

GAMMA = 3.0  # weight of ln(conspicuity): doubling it multiplies the odds by 2^3 (assumed)
Z_HALF = 4.0  # conspicuity (SDs of breast structure) at which half a descriptor's evidence shows
Z_FLOOR = 0.5  # measured conspicuity below this reads as this (a lesion that is not there)
_GH_X, _GH_W = np.polynomial.hermite_e.hermegauss(40)
_GH_W = _GH_W / _GH_W.sum()


def lesion_suspicion(z: float, ppv: float, ppv_focal: float) -> float:
    """s_L: what the reader makes of a finding of measured conspicuity ``z`` and descriptors
    whose likelihood of malignancy is ``ppv``."""
    zf = max(float(z), Z_FLOOR)
    w = zf * zf / (zf * zf + Z_HALF * Z_HALF)
    return float(w * _logit(ppv) + (1 - w) * _logit(ppv_focal) + GAMMA * np.log(zf))


def background_suspicion(z: float, ppv_focal: float) -> float:
    """s_B: the most suspicious focal density that is not the lesion (normal tissue)."""
    return float(_logit(ppv_focal) + GAMMA * np.log(max(float(z), Z_FLOOR)))


@dataclass(frozen=True)
class PixelReaderModel:
    """Calibrated thresholds and noise of the pixel readers (both readers alike)."""

    threshold: float
    sigma: float
    rho: float  # share of the noise variance shared by the exam's readers (exam difficulty)
    arbitration_threshold: float
    expected: Mapping[str, float]  # the calibration's expected rates on the set
    note: str = ""

    @property
    def sigma_shared(self) -> float:
        return float(np.sqrt(self.rho) * self.sigma)

    @property
    def sigma_own(self) -> float:
        return float(np.sqrt(1 - self.rho) * self.sigma)


def _ndtr(x):
    from scipy.special import ndtr

    return ndtr(x)


def _consensus_rate(s0: np.ndarray, t: float, sigma: float, rho: float, ta: float) -> float:
    su, se = np.sqrt(rho) * sigma, np.sqrt(1 - rho) * sigma
    v = s0[:, None] + su * _GH_X[None, :]
    p = _ndtr((v - t) / se)
    q = _ndtr((v - ta) / se)
    return float(np.mean((p * p + 2 * p * (1 - p) * q) @ _GH_W))


def _root(f, lo: float, hi: float) -> tuple[float, bool]:
    """A root of f on [lo, hi] (brentq), or the end nearer to one when f does not change sign."""
    from scipy.optimize import brentq

    flo, fhi = f(lo), f(hi)
    if flo == 0 or fhi == 0 or (flo < 0) != (fhi < 0):
        return float(brentq(f, lo, hi, xtol=1e-9)), True
    return (lo if abs(flo) < abs(fhi) else hi), False


def calibrate_pixels(
    s0: Sequence[float],
    labels: Sequence[int],
    *,
    reader_sensitivity: float,
    reader_specificity: float,
    consensus_sensitivity: float,
    consensus_specificity: float,
) -> PixelReaderModel:
    """Fit (t, sigma, rho, t_a) so that the *expected* rates over the set's exams equal the targets.
    Where a target cannot be reached (too few exams, or the pixels separate too little) the
    nearest feasible value is kept and ``note`` says which."""
    s = np.asarray(s0, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    can, non = s[y], s[~y]
    notes = []
    fp = 1 - reader_specificity

    def thr(sigma: float) -> float:
        if non.size == 0:
            return float(np.quantile(can, 1 - reader_sensitivity)) if can.size else 0.0
        return _root(lambda t: float(np.mean(_ndtr((non - t) / sigma))) - fp, -60.0, 60.0)[0]

    if can.size and non.size:
        sigma, ok = _root(
            lambda sg: float(np.mean(_ndtr((can - thr(sg)) / sg))) - reader_sensitivity, 0.05, 60.0
        )
        if not ok:
            notes.append("reader sensitivity not reachable")
    else:
        sigma = 1.0
        notes.append("set lacks cancers or non-cancers: sigma fixed at 1")
    t = thr(sigma)

    def arb(rho: float) -> float:
        if non.size == 0:
            return t
        return _root(
            lambda ta: _consensus_rate(non, t, sigma, rho, ta) - (1 - consensus_specificity),
            -60.0,
            60.0,
        )[0]

    if can.size:
        rho, ok = _root(
            lambda r: _consensus_rate(can, t, sigma, r, arb(r)) - consensus_sensitivity, 0.01, 0.99
        )
        if not ok:
            notes.append("consensus sensitivity not reachable")
    else:
        rho = 0.5
    ta = arb(rho)
    expected = {
        "reader_sensitivity": float(np.mean(_ndtr((can - t) / sigma)))
        if can.size
        else float("nan"),
        "reader_specificity": 1 - float(np.mean(_ndtr((non - t) / sigma)))
        if non.size
        else float("nan"),
        "consensus_sensitivity": _consensus_rate(can, t, sigma, rho, ta)
        if can.size
        else float("nan"),
        "consensus_specificity": 1 - _consensus_rate(non, t, sigma, rho, ta)
        if non.size
        else float("nan"),
    }
    return PixelReaderModel(t, sigma, rho, ta, expected, "; ".join(notes))


def read_exam(
    model: PixelReaderModel, s0: float, s_lesion: float | None, rng: np.random.Generator
) -> tuple[dict[str, int], dict[str, float] | None]:
    """One exam's reads, and each reader's suspicion of the lesion itself (None without one)."""
    u, e1, e2, ea = rng.standard_normal(4)
    shared = model.sigma_shared * u
    own = model.sigma_own
    r1 = int(s0 + shared + own * e1 > model.threshold)
    r2 = int(s0 + shared + own * e2 > model.threshold)
    if r1 and r2:
        consensus = 1
    elif r1 or r2:
        consensus = int(s0 + shared + own * ea > model.arbitration_threshold)
    else:
        consensus = 0
    lesion = None
    if s_lesion is not None:
        lesion = {
            "reader1": round(float(s_lesion + shared + own * e1), 4),
            "reader2": round(float(s_lesion + shared + own * e2), 4),
        }
    return {"reader1": r1, "reader2": r2, "consensus": consensus}, lesion


def describe_pixels(model: PixelReaderModel) -> str:
    """One line for logs and the manifest."""
    line = (
        f"pixels: t={model.threshold:.3f} sigma={model.sigma:.3f} rho={model.rho:.3f} "
        f"t_arbitration={model.arbitration_threshold:.3f} gamma={GAMMA} z_half={Z_HALF}"
    )
    return line + (f" ({model.note})" if model.note else "")


__all__ = [
    "ReaderModel",
    "calibrate",
    "simulate_reads",
    "describe",
    "PixelReaderModel",
    "calibrate_pixels",
    "lesion_suspicion",
    "background_suspicion",
    "read_exam",
    "describe_pixels",
]
