"""The registry of metamorphic relations, and condition ids back to transforms.

Each relation is one module of this package that declares ``RELATION = Relation(...)`` next to
its parameters and transform. ``RELATIONS`` maps a relation's name to it, collected from every
module here that has a ``RELATION``, listed by ``Relation.position``; adding a relation is adding
its module (and its name to the schema's enums, which tests/perturb/test_registry.py checks).
The package's other modules must therefore not import this one at import time.

``parse_condition`` turns a condition id (as written to predictions.jsonl) back into the relation
and its parameters, and ``apply_condition`` has the runner's transform signature
``(exam, condition) -> exam``, so ``run_predictions(..., transform=apply_condition)`` runs any
mix of conditions.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import typing
from pathlib import Path
from typing import Any

from harness.errors import UsageError
from harness.exam_input import ExamInput
from harness.perturb.relation import Relation

_PACKAGE = __name__.rpartition(".")[0]


def discover() -> dict[str, Relation[Any]]:
    """Every ``RELATION`` declared by a module of this package, in ``position`` order."""
    found: list[Relation[Any]] = []
    here = __name__.rpartition(".")[2]
    for info in sorted(pkgutil.iter_modules([str(Path(__file__).parent)]), key=lambda m: m.name):
        if info.name == here:
            continue
        relation = getattr(importlib.import_module(f"{_PACKAGE}.{info.name}"), "RELATION", None)
        if isinstance(relation, Relation):
            found.append(relation)
    found.sort(key=lambda r: r.position)
    for a, b in zip(found, found[1:], strict=False):
        if a.position == b.position:
            raise RuntimeError(f"relations {a.name} and {b.name} share position {a.position}")
    names = [r.name for r in found]
    if len(set(names)) != len(names):
        raise RuntimeError(f"two relations share a name: {names}")
    return {r.name: r for r in found}


RELATIONS: dict[str, Relation[Any]] = discover()


def _parse_value(where: str, text: str, kind: Any) -> Any:
    try:
        if kind is bool:
            if text not in ("0", "1"):
                raise ValueError(text)
            return text == "1"
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
        return text
    except ValueError:
        raise UsageError(f"condition {where}: {text!r} is not a valid {kind.__name__}") from None


def parse_condition(condition: str) -> tuple[Relation[Any], Any]:
    """``'intensity:center_shift=0.0,gamma=0.9,width_scale=1.0'`` -> (relation, IntensityParams)."""
    name, _, body = condition.partition(":")
    relation = RELATIONS.get(name)
    if relation is None:
        raise UsageError(
            f"condition {condition!r}: unknown relation {name!r}; use one of {', '.join(RELATIONS)}"
        )
    hints = typing.get_type_hints(relation.params_type)
    names = {f.name for f in dataclasses.fields(relation.params_type)}
    values: dict[str, Any] = {}
    for pair in filter(None, body.split(",")):
        key, eq, text = pair.partition("=")
        if not eq or key not in names or key in values:
            raise UsageError(
                f"condition {condition!r}: bad parameter {pair!r}; {name} takes {', '.join(sorted(names)) or 'no parameters'}"
            )
        values[key] = _parse_value(f"{condition!r}.{key}", text, hints[key])
    try:
        params = relation.params_type(**values)
    except ValueError as exc:
        raise UsageError(f"condition {condition!r}: {exc}") from None
    return relation, params


def apply_condition(exam: ExamInput, condition: str) -> ExamInput:
    """The runner's transform: apply the perturbation a condition id names."""
    relation, params = parse_condition(condition)
    return relation.apply(exam, params)
