"""The whole programme analysis as one JSON-ready document (schema ``mammocert/programme/v1``).

:func:`analyse` replays every protocol of the cost model, measures each at the population
prevalence with bootstrap CIs, prices it for the selected region's year, and runs the
sensitivity analyses. Every yearly figure lists the unverified cost inputs it rests on
(``unverified``). The document is validated against ``data/programme.schema.json``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from typing import Any

import jsonschema
import numpy as np

from harness.programme.costs import DEPENDS, CostModel, compare, yearly
from harness.programme.outcomes import programme_outcomes
from harness.programme.protocols import BASELINE, replay
from harness.programme.screening import ScreeningSet
from harness.programme.sensitivity import RATE_KEYS, band_sweep, one_way, probabilistic
from harness.resources import resource
from harness.stats.bootstrap import percentile_interval
from harness.stats.reweight import screening_weights

PROGRAMME_SCHEMA_ID = "mammocert/programme/v1"
RESULTS_SCHEMA_PATH = resource("harness.programme", "data", "programme.schema.json")

UNITS = {
    "reads": "reads/year",
    "arbitrations": "arbitrations/year",
    "radiologist_hours": "h/year",
    "ftes": "FTE",
    "reading_cost": "{cur}/year",
    "recalls": "recalls/year",
    "workup_cost": "{cur}/year",
    "ai_cost": "{cur}/year",
    "total_cost": "{cur}/year",
    "cancers_detected": "cancers/year",
    "net_cost": "{cur}/year",
    "additional_cancers": "cancers/year",
    "cost_per_additional_cancer": "{cur}/cancer",
    "break_even_ai_price": "{cur}/exam",
}

METHOD = {
    "reweighting": (
        "each cancer weighs prev/(m/N) and each non-cancer (1-prev)/(n/N) "
        "(harness.stats.reweight.screening_weights, as the programme criteria), so rates are "
        "per screen of a population with the standard's prevalence"
    ),
    "arbitration": (
        "double reading: the recorded consensus. AI second reader: a disagreement the readers "
        "had keeps its recorded consensus; a new one (AI against two agreeing readers) was never "
        "arbitrated, so the stated model decides it and the bounds recall_all / recall_none "
        "bracket every arbitrator"
    ),
    "unreadable": "an exam the AI could not read follows double reading",
    "bootstrap": (
        "stratified bootstrap (cancers and non-cancers resampled separately) of all protocols "
        "together, percentile intervals; yearly CIs carry the set's sampling uncertainty at the "
        "cost inputs' values"
    ),
    "probabilistic": (
        "triangular(low, value, high) draws of every ranged input, each paired with one "
        "bootstrap replicate"
    ),
}


@cache
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(
        json.loads(RESULTS_SCHEMA_PATH.read_text(encoding="utf-8"))
    )


def validate_document(doc: Mapping[str, Any]) -> None:
    """Raise ``jsonschema.ValidationError`` when ``doc`` is not a programme/v1 document."""
    _validator().validate(doc)


def _clean(x: Any) -> Any:
    if isinstance(x, float | np.floating):
        v = float(x)
        return float(f"{v:.10g}") if np.isfinite(v) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.ndarray):
        return _clean(x.tolist())
    if isinstance(x, Mapping):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    return x


def analyse(
    ss: ScreeningSet,
    prevalence_per_1000: float,
    seed: int,
    model: CostModel,
    operating_point: float | None = None,
    n_boot: int = 2000,
    draws: int = 4000,
    level: float = 0.95,
    identity: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Every protocol's measures, yearly figures and sensitivity analyses (module docstring)."""
    weights = screening_weights(ss.labels, prevalence_per_1000)
    rng = np.random.default_rng([seed, 0x9F0])
    paths = [replay(s, ss, weights, operating_point, rng) for s in model.protocols]
    oc = programme_outcomes(paths, ss, weights, rng, n_boot, level)
    values = model.values()
    cur = model.currency
    point = {name: {k: m[k]["value"] for k in RATE_KEYS} for name, m in oc.measures.items()}
    base_point = yearly(point[BASELINE], values, uses_ai=False)
    base_reps = yearly(oc.replicates[BASELINE], values, uses_ai=False)
    protocols = []
    for spec in model.protocols:
        m = oc.measures[spec.name]
        mine = yearly(point[spec.name], values, spec.uses_ai)
        reps = yearly(oc.replicates[spec.name], values, spec.uses_ai)
        figures = dict(mine)
        rep_figs = dict(reps)
        if spec.uses_ai:
            figures |= compare(mine, base_point, values)
            rep_figs |= compare(reps, base_reps, values)
        year: dict[str, Any] = {}
        for key, v in figures.items():
            deps = DEPENDS[key]
            if not spec.uses_ai:
                deps = tuple(d for d in deps if not d.startswith("ai_"))
            v = float(v)
            r = np.asarray(rep_figs[key], dtype=np.float64)
            ci = None
            if np.isfinite(v) and np.isfinite(r).sum() >= 0.9 * r.size:
                pi = percentile_interval(r, v, level)
                ci = [pi.ci_low, pi.ci_high]
            year[key] = {
                "value": v if np.isfinite(v) else None,
                "ci": ci,
                "unit": UNITS[key].format(cur=cur),
                "unverified": model.unverified(list(deps)),
            }
        if spec.uses_ai:
            net_bounds = []
            for end in ("low", "high"):
                rates = {
                    **point[spec.name],
                    "recall_rate": m["recall_rate_bounds"][0 if end == "low" else 1],
                    "cdr_per_1000": m["cdr_per_1000_bounds"][0 if end == "low" else 1],
                }
                net_bounds.append(
                    float(compare(yearly(rates, values, True), base_point, values)["net_cost"])
                )
            year["net_cost"]["arbitration_bounds"] = sorted(net_bounds)
            if year["cost_per_additional_cancer"]["value"] is None:
                year["cost_per_additional_cancer"]["note"] = (
                    "detects no more cancers than double reading: no cost per additional cancer"
                )
        protocols.append(
            {
                "name": spec.name,
                "protocol": spec.protocol,
                "params": dict(spec.params),
                "source": model.protocol_sources.get(spec.name, ""),
                "uses_ai": spec.uses_ai,
                "measures": m,
                "yearly": year,
            }
        )
    bands = [
        band_sweep(s, ss, weights, rng=np.random.default_rng([seed, 0xBA7D]))
        for s in model.protocols
        if s.protocol in ("ai_triage", "ai_rule_out")
    ]
    doc = {
        "schema": PROGRAMME_SCHEMA_ID,
        **dict(identity or {}),
        "population": {"prevalence_per_1000": float(prevalence_per_1000)},
        "set": {
            "n_exams": ss.n,
            "n_cancers": int((ss.labels == 1).sum()),
            "n_interval_cancers": int(ss.interval.sum()),
            "n_unreadable": int((~ss.readable).sum()),
        },
        "seed": int(seed),
        "operating_point": operating_point,
        "bootstrap": {"replicates": n_boot, "level": level},
        "method": METHOD,
        "cost_model": model.to_dict(),
        "unverified_inputs": model.unverified(list(model.inputs)),
        "protocols": protocols,
        "sensitivity": {
            "one_way": one_way(model, point),
            "band": bands,
            "probabilistic": probabilistic(
                model, oc.replicates, np.random.default_rng([seed, 0x95A]), draws, level
            ),
        },
    }
    doc = _clean(doc)
    validate_document(doc)
    return doc
