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


__all__ = ["ReaderModel", "calibrate", "simulate_reads", "describe"]
