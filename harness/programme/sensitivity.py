"""How the programme answer moves with its inputs: one-way, triage band, probabilistic.

* **One-way** (tornado): each cost input that has a range (and the region's volume, when it has
  one) is set to its low and its high end, every other input at its value; the net cost of each
  AI protocol against double reading is recomputed. Bars are sorted by swing.
* **Triage band**: the band of an ``ai_triage`` or ``ai_rule_out`` protocol is swept over
  population score quantiles; per band, the share of double reading's reads removed against the
  cancers moved into the band (single-read or not read) and the cancers double reading found
  that the protocol then misses.
* **Probabilistic**: seeded draws of every ranged input from a triangular distribution (low,
  value, high), each paired with one bootstrap replicate of the exam outcomes, give an interval
  for each protocol's net cost that carries both the cost inputs' and the set's uncertainty.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from harness.programme.costs import CostModel, compare, yearly
from harness.programme.protocols import BASELINE, ProtocolSpec, single_reads, thresholds_for_shares
from harness.programme.screening import ScreeningSet

RATE_KEYS = ("reads_per_1000", "arbitrations_per_1000", "recall_rate", "cdr_per_1000")
BAND_QUANTILES = tuple(round(q, 2) for q in np.arange(0.0, 0.951, 0.05))


def _net(
    rates: Mapping[str, Mapping[str, Any]], name: str, uses_ai: bool, values: Mapping[str, Any]
) -> Any:
    base = yearly(rates[BASELINE], values, uses_ai=False)
    return compare(yearly(rates[name], values, uses_ai), base, values)["net_cost"]


def one_way(model: CostModel, rates: Mapping[str, Mapping[str, float]]) -> list[dict[str, Any]]:
    """Tornado data per AI protocol: net cost at each ranged input's low and high end."""
    values = model.values()
    out = []
    for spec in model.protocols:
        if not spec.uses_ai:
            continue
        base_net = float(_net(rates, spec.name, True, values))
        bars = []
        for name, q in model.inputs.items():
            if q.range is None:
                continue
            lo = float(_net(rates, spec.name, True, {**values, name: q.range[0]}))
            hi = float(_net(rates, spec.name, True, {**values, name: q.range[1]}))
            bars.append(
                {
                    "input": name,
                    "unit": q.unit,
                    "verified": q.verified,
                    "low": q.range[0],
                    "high": q.range[1],
                    "net_cost_at_low": lo,
                    "net_cost_at_high": hi,
                    "swing": abs(hi - lo),
                }
            )
        bars.sort(key=lambda b: -b["swing"])
        fixed = [n for n, q in model.inputs.items() if q.range is None]
        out.append({"protocol": spec.name, "net_cost": base_net, "bars": bars, "held_fixed": fixed})
    return out


def band_sweep(
    spec: ProtocolSpec,
    ss: ScreeningSet,
    weights: NDArray[np.float64],
    quantiles: Sequence[float] = BAND_QUANTILES,
    rng: np.random.Generator | None = None,
) -> dict[str, Any]:
    """Reads removed against cancers moved into the band, over band quantiles (vectorised)."""
    q = np.asarray(quantiles, dtype=np.float64)
    t = thresholds_for_shares(ss.scores, weights, q)
    band = ss.readable[None, :] & (ss.scores[None, :] < t[:, None])  # (G, N)
    cancer = ss.labels == 1
    dr_found = ss.consensus & cancer
    if spec.protocol == "ai_triage":
        single = single_reads(ss, spec.params.get("single_reader", "reader1"), rng)
        removed_per_exam, lost = 1.0, band & (dr_found & ~single)[None, :]
    else:
        removed_per_exam, lost = 2.0, band & dr_found[None, :]
    w_total = weights.sum()
    n_cancer, n_found = int(cancer.sum()), int(dr_found.sum())
    return {
        "protocol": spec.name,
        "kind": spec.protocol,
        "quantile": q.tolist(),
        "threshold": [float(x) if np.isfinite(x) else None for x in t],
        "in_band_share": ((band * weights).sum(axis=1) / w_total).tolist(),
        "reads_removed_share": (
            (band * weights).sum(axis=1) * removed_per_exam / (2 * w_total)
        ).tolist(),
        "cancers_in_band_share": ((band & cancer).sum(axis=1) / max(n_cancer, 1)).tolist(),
        "cancers_lost_vs_double_reading": lost.sum(axis=1).astype(int).tolist(),
        "cancers_lost_share_of_found": (lost.sum(axis=1) / max(n_found, 1)).tolist(),
        "n_cancers": n_cancer,
        "n_found_by_double_reading": n_found,
    }


def probabilistic(
    model: CostModel,
    replicates: Mapping[str, Mapping[str, NDArray[np.float64]]],
    rng: np.random.Generator,
    draws: int = 4000,
    level: float = 0.95,
) -> list[dict[str, Any]]:
    """Net-cost interval per AI protocol over triangular input draws and bootstrap replicates."""
    values: dict[str, Any] = {}
    for name, q in model.inputs.items():
        if q.range is None or q.range[0] == q.range[1]:
            values[name] = q.value
        else:
            values[name] = rng.triangular(q.range[0], q.value, q.range[1], size=draws)
    n_reps = len(next(iter(next(iter(replicates.values())).values())))
    pick = rng.integers(0, n_reps, size=draws)
    rates = {p: {k: np.asarray(r[k])[pick] for k in RATE_KEYS} for p, r in replicates.items()}
    a = 1 - level
    out = []
    for spec in model.protocols:
        if not spec.uses_ai:
            continue
        net = np.asarray(_net(rates, spec.name, True, values), dtype=np.float64)
        lo, med, hi = np.quantile(net, [a / 2, 0.5, 1 - a / 2])
        out.append(
            {
                "protocol": spec.name,
                "draws": draws,
                "mean": float(net.mean()),
                "median": float(med),
                "interval": [float(lo), float(hi)],
                "level": level,
                "probability_of_saving": float(np.mean(net < 0)),
                "quantiles": np.quantile(net, np.linspace(0, 1, 41)).tolist(),
            }
        )
    return out
