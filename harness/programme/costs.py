"""The programme cost model (``mammocert/costs/v1``): loading, validation and yearly costs.

A cost model is a YAML file validated against ``data/costs.schema.json``: every input has a
value, a unit, optionally a ``[low, high]`` range (the sensitivity analysis sweeps it), a source
and ``verified`` (was the value read in that source). The shipped Danish defaults are
``data/dk-default.yaml``; ``--costs FILE`` replaces them (a file with ``extends: dk-default``
changes only the entries it gives) and ``--region NAME`` picks a region's yearly volume. A file with a missing or wrong unit, a negative value, a range that does not hold
its value, an unknown region or an unknown protocol is refused with one line
(:class:`harness.errors.CostModelError`, exit 2).

Yearly figures of a protocol for a region screening N women a year, from its population rates
(:mod:`harness.programme.outcomes`)::

    reads, arbitrations = reads_per_1000 N / 1000, arbitrations_per_1000 N / 1000
    radiologist_hours   = (reads minutes_per_read + arbitrations minutes_per_arbitration
                           readers_per_arbitration) / 60
    ftes                = radiologist_hours / productive_hours_per_fte
    reading_cost        = radiologist_hours radiologist_cost_per_hour
    workup_cost         = recall_rate N (recall_workup_cost + biopsy_fraction_of_recalls biopsy_cost)
    ai_cost             = N ai_price_per_exam + ai_fixed_annual + ai_one_off / ai_amortisation_years
                          (protocols that use the AI; 0 for double reading)
    total_cost          = reading_cost + workup_cost + ai_cost
    net_cost            = total_cost - total_cost of double reading
    cost_per_additional_cancer = net_cost / (cancers detected - double reading's), when it detects more
    break_even_ai_price = ai_price_per_exam - net_cost / N  (the price at which net_cost = 0)

Hours freed are not money saved unless the capacity is cashed; the figures value every hour at
``radiologist_cost_per_hour`` and report hours and FTEs beside the money.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np

from harness.errors import CostModelError
from harness.programme.protocols import BASELINE, ProtocolSpec
from harness.resources import resource
from harness.yamlio import line_map, line_of, safe_load

COSTS_SCHEMA_ID = "mammocert/costs/v1"
SCHEMA_PATH = resource("harness.programme", "data", "costs.schema.json")
DEFAULT_COSTS = resource("harness.programme", "data", "dk-default.yaml")
# cost models shipped with the harness, by id: the only ones a standard may name (a file of its
# own would not be pinned by the standard's digest)
SHIPPED: Mapping[str, Path] = {"dk-default": DEFAULT_COSTS}

# input -> its unit ("{cur}" = the model's currency); the formulas above assume these units
UNITS: Mapping[str, str] = {
    "screens_per_year": "screens/year",
    "minutes_per_read": "min/read",
    "minutes_per_arbitration": "min/arbitration",
    "readers_per_arbitration": "radiologists/arbitration",
    "productive_hours_per_fte": "h/FTE/year",
    "radiologist_cost_per_hour": "{cur}/h",
    "recall_workup_cost": "{cur}/recall",
    "biopsy_fraction_of_recalls": "fraction",
    "biopsy_cost": "{cur}/biopsy",
    "ai_price_per_exam": "{cur}/exam",
    "ai_fixed_annual": "{cur}/year",
    "ai_one_off": "{cur}",
    "ai_amortisation_years": "years",
}
_POSITIVE = ("screens_per_year", "productive_hours_per_fte", "ai_amortisation_years")
_FRACTIONS = ("biopsy_fraction_of_recalls",)

_HOURS = (
    "screens_per_year",
    "minutes_per_read",
    "minutes_per_arbitration",
    "readers_per_arbitration",
)
_WORKUP = ("screens_per_year", "recall_workup_cost", "biopsy_fraction_of_recalls", "biopsy_cost")
_AI = (
    "screens_per_year",
    "ai_price_per_exam",
    "ai_fixed_annual",
    "ai_one_off",
    "ai_amortisation_years",
)
_ALL = tuple(dict.fromkeys(_HOURS + ("radiologist_cost_per_hour",) + _WORKUP + _AI))
# yearly output -> the inputs it uses (for AI protocols; double reading uses no AI input)
DEPENDS: Mapping[str, tuple[str, ...]] = {
    "reads": ("screens_per_year",),
    "arbitrations": ("screens_per_year",),
    "radiologist_hours": _HOURS,
    "ftes": _HOURS + ("productive_hours_per_fte",),
    "reading_cost": _HOURS + ("radiologist_cost_per_hour",),
    "recalls": ("screens_per_year",),
    "workup_cost": _WORKUP,
    "ai_cost": _AI,
    "total_cost": _ALL,
    "net_cost": _ALL,
    "cancers_detected": ("screens_per_year",),
    "additional_cancers": ("screens_per_year",),
    "cost_per_additional_cancer": _ALL,
    "break_even_ai_price": tuple(k for k in _ALL if k != "ai_price_per_exam"),
}


@dataclass(frozen=True)
class Quantity:
    """One input: value, unit, optional (low, high), source, verified."""

    name: str
    value: float
    unit: str
    range: tuple[float, float] | None
    source: str
    verified: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "value": self.value,
            "unit": self.unit,
            "range": list(self.range) if self.range else None,
            "source": self.source,
            "verified": self.verified,
        }


@dataclass(frozen=True)
class CostModel:
    """A validated cost model with one region selected."""

    path: str
    id: str
    currency: str
    region: str
    inputs: Mapping[str, Quantity]  # every cost input plus the region's screens_per_year
    protocols: tuple[ProtocolSpec, ...]  # double reading first
    protocol_sources: Mapping[str, str]
    regions: tuple[str, ...] = ()  # every region of the file, the selected one among them

    def values(self) -> dict[str, float]:
        return {k: q.value for k, q in self.inputs.items()}

    def unverified(self, names: tuple[str, ...] | list[str]) -> list[str]:
        return [n for n in names if not self.inputs[n].verified]

    def only(self, names: tuple[str, ...] | list[str]) -> CostModel:
        """The model with double reading and the named protocols only (in the file's order)."""
        unknown = [n for n in names if n not in {s.name for s in self.protocols}]
        if unknown:
            raise CostModelError(
                f"{self.path}: protocol {unknown[0]!r} is not in cost model {self.id}; choose "
                f"from {', '.join(s.name for s in self.protocols)}"
            )
        keep = tuple(s for s in self.protocols if s.protocol == BASELINE or s.name in names)
        return dataclasses.replace(self, protocols=keep)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": COSTS_SCHEMA_ID,
            "file": self.path,
            "id": self.id,
            "currency": self.currency,
            "region": self.region,
            "inputs": {k: q.to_dict() for k, q in self.inputs.items()},
            "protocols": {
                s.name: {"protocol": s.protocol, **dict(s.params)} for s in self.protocols
            },
        }


@cache
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))


def _leaf(err: jsonschema.ValidationError) -> jsonschema.ValidationError:
    """The most specific error: follow the sub-errors of if/then, allOf and oneOf."""
    while err.context:
        err = max(err.context, key=lambda e: len(e.absolute_path))
    return err


def _describe(err: jsonschema.ValidationError) -> str:
    v = err.validator
    if v == "required":
        missing = err.message.split("'")[1] if "'" in err.message else err.message
        return f"missing {missing!r}; every input needs value, unit, source and verified"
    if v == "minimum":
        return f"{err.instance!r} is negative; costs, times and volumes are >= 0"
    if v == "enum":
        return f"{err.instance!r} is not one of {', '.join(map(str, err.validator_value))}"
    if v == "additionalProperties":
        return f"{err.message}; remove it or fix its spelling"
    return err.message


def _refuse(source: str, text: str, path: list[Any], problem: str) -> CostModelError:
    line = line_of(line_map(text), path)
    where = ".".join(str(p) for p in path) or "(top level)"
    return CostModelError(f"{source}{f':{line}' if line else ''}: {where}: {problem}")


MERGED_BY_NAME = ("regions", "inputs", "protocols")  # an overlay replaces these entry by entry


def _overlay(data: dict[str, Any], source: str, depth: int = 0) -> dict[str, Any]:
    """``extends``: the base model with this file's keys on top (``regions``, ``inputs`` and
    ``protocols`` merged by name, whole entries replaced), so a region states only what differs."""
    base_ref = data.get("extends")
    if not isinstance(base_ref, str):
        return data
    if depth > 4:
        raise CostModelError(f"{source}: extends: more than 4 levels of extends; flatten the chain")
    if base_ref == "dk-default":
        base_path, base_source = DEFAULT_COSTS, "dk-default.yaml"
    else:
        base_path = Path(source).parent / base_ref
        base_source = str(base_path)
    try:
        base_text = Path(base_path).read_text(encoding="utf-8")
    except OSError as exc:
        raise CostModelError(
            f"{source}: extends: cannot read {base_ref!r} ({exc.strerror}); give 'dk-default' "
            "or a path relative to this file"
        ) from None
    base = safe_load(base_text, base_source, CostModelError)
    if not isinstance(base, dict):
        raise CostModelError(f"{base_source}: a cost model is a YAML mapping")
    base = _overlay(base, base_source, depth + 1)
    merged = {k: v for k, v in base.items() if k != "extends"}
    for key, value in data.items():
        if key == "extends":
            continue
        if key in MERGED_BY_NAME and isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    return merged


def parse_costs(text: str, source: str, region: str | None = None) -> CostModel:
    """Validate a cost model's text and select a region (default: the file's ``default_region``).
    A file with ``extends`` is validated as merged onto its base (:func:`_overlay`)."""
    data = safe_load(text, source, CostModelError)
    if not isinstance(data, dict):
        raise CostModelError(
            f"{source}: a cost model is a YAML mapping (schema: {COSTS_SCHEMA_ID})"
        )
    if "extends" in data:
        if not isinstance(data["extends"], str) or not data["extends"]:
            raise CostModelError(f"{source}: extends: give 'dk-default' or a path to a cost model")
        data = _overlay(data, source)  # refusals below name this file's line where it has one
    errors = sorted(_validator().iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        err = _leaf(errors[0])
        raise _refuse(source, text, list(err.absolute_path), _describe(err))
    currency = data["currency"]
    region = region if region is not None else data["default_region"]
    if region not in data["regions"]:
        raise CostModelError(
            f"{source}: region {region!r} is not in the cost model; choose one of "
            f"{', '.join(sorted(data['regions']))} or add it under 'regions'"
        )
    raw = {
        "screens_per_year": (
            ["regions", region, "screens_per_year"],
            data["regions"][region]["screens_per_year"],
        )
    }
    raw |= {k: (["inputs", k], v) for k, v in data["inputs"].items()}
    inputs: dict[str, Quantity] = {}
    for name, (path, q) in raw.items():
        unit = UNITS[name].format(cur=currency)
        if q["unit"] != unit:
            raise _refuse(
                source,
                text,
                [*path, "unit"],
                f"unit {q['unit']!r} is not {unit!r}; convert the value to {unit}",
            )
        value = float(q["value"])
        rng = tuple(float(x) for x in q["range"]) if "range" in q else None
        if rng is not None and not rng[0] <= value <= rng[1]:
            raise _refuse(
                source,
                text,
                [*path, "range"],
                f"range {list(rng)} does not hold the value {value:g}; give [low, high] around it",
            )
        for x in (value, *(rng or ())):
            if name in _POSITIVE and x <= 0:
                raise _refuse(source, text, [*path, "value"], f"{x:g} must be > 0")
            if name in _FRACTIONS and x > 1:
                raise _refuse(source, text, [*path, "value"], f"{x:g} is a fraction; give 0 to 1")
        inputs[name] = Quantity(name, value, q["unit"], rng, q["source"], q["verified"])
    specs = [
        ProtocolSpec(
            name,
            p["protocol"],
            {k: v for k, v in p.items() if k not in ("protocol", "source", "description")},
        )
        for name, p in data["protocols"].items()
    ]
    baselines = [s for s in specs if s.protocol == BASELINE]
    if len(baselines) > 1:
        raise _refuse(
            source, text, ["protocols"], "double_reading is the baseline and may appear once"
        )
    if not baselines:
        specs.insert(0, ProtocolSpec(BASELINE, BASELINE))
    specs.sort(key=lambda s: s.protocol != BASELINE)
    return CostModel(
        path=source,
        id=data["id"],
        currency=currency,
        region=region,
        inputs=inputs,
        protocols=tuple(specs),
        protocol_sources={n: p.get("source", "") for n, p in data["protocols"].items()},
        regions=tuple(sorted(data["regions"])),
    )


def load_costs(path: Path | str | None = None, region: str | None = None) -> CostModel:
    """Load a cost model file (default: the shipped Danish defaults) and select a region."""
    p = Path(path) if path is not None else DEFAULT_COSTS
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise CostModelError(
            f"{p}: cannot read the cost model ({exc.strerror}); check the path"
        ) from None
    return parse_costs(text, str(p) if path is not None else "dk-default.yaml", region)


def load_shipped(name: str, region: str | None = None) -> CostModel:
    """A cost model shipped with the harness (:data:`SHIPPED`), by id, with a region selected."""
    if name not in SHIPPED:
        raise CostModelError(
            f"cost model {name!r} is not shipped with the harness; use one of {', '.join(SHIPPED)}"
        )
    return parse_costs(SHIPPED[name].read_text(encoding="utf-8"), f"{name}.yaml", region)


def yearly(rates: Mapping[str, Any], values: Mapping[str, Any], uses_ai: bool) -> dict[str, Any]:
    """Yearly volumes and costs from population rates and input values (module docstring).

    ``rates``: ``reads_per_1000``, ``arbitrations_per_1000``, ``recall_rate``, ``cdr_per_1000``;
    ``values``: every input. Both may hold numpy arrays (bootstrap replicates, probabilistic
    draws); they broadcast.
    """
    n = values["screens_per_year"]
    reads = rates["reads_per_1000"] * n / 1000
    arbs = rates["arbitrations_per_1000"] * n / 1000
    hours = (
        reads * values["minutes_per_read"]
        + arbs * values["minutes_per_arbitration"] * values["readers_per_arbitration"]
    ) / 60
    recalls = rates["recall_rate"] * n
    per_recall = (
        values["recall_workup_cost"] + values["biopsy_fraction_of_recalls"] * values["biopsy_cost"]
    )
    ai = (
        (
            n * values["ai_price_per_exam"]
            + values["ai_fixed_annual"]
            + values["ai_one_off"] / values["ai_amortisation_years"]
        )
        if uses_ai
        else 0.0 * n
    )
    reading = hours * values["radiologist_cost_per_hour"]
    workup = recalls * per_recall
    return {
        "reads": reads,
        "arbitrations": arbs,
        "radiologist_hours": hours,
        "ftes": hours / values["productive_hours_per_fte"],
        "reading_cost": reading,
        "recalls": recalls,
        "workup_cost": workup,
        "ai_cost": ai,
        "total_cost": reading + workup + ai,
        "cancers_detected": rates["cdr_per_1000"] * n / 1000,
    }


def compare(
    mine: Mapping[str, Any], baseline: Mapping[str, Any], values: Mapping[str, Any]
) -> dict[str, Any]:
    """Net cost, cost per additional cancer and break-even AI price against double reading."""
    net = mine["total_cost"] - baseline["total_cost"]
    extra = mine["cancers_detected"] - baseline["cancers_detected"]
    with np.errstate(invalid="ignore", divide="ignore"):
        per_cancer = np.where(extra > 1e-9, net / np.where(extra > 1e-9, extra, 1.0), np.nan)
    return {
        "net_cost": net,
        "additional_cancers": extra,
        "cost_per_additional_cancer": per_cancer,
        "break_even_ai_price": values["ai_price_per_exam"] - net / values["screens_per_year"],
    }
