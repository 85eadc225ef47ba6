"""Every criterion kind the suite can check, and the tables derived from their declarations.

Importing this package imports every criteria module once; their ``@evaluator(...)`` lines
(``conformance.registry``) state each kind's facts. Everything else is derived here: adding a kind
is its evaluator in a criteria module plus its entry in the standard's schema
(``tests/conformance/test_registry.py`` checks the two agree).
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Mapping
from types import MappingProxyType

from conformance.context import EvaluationContext
from conformance.outcome import NotApplicable, NotEvaluable, error_result, out_of_scope_result
from conformance.registry import REGISTERED, KindSpec
from harness.errors import UsageError
from harness.results import CriterionResult, KindFacts
from harness.standard import CriterionSpec

# Every module of this package is a criteria module; each registers its kinds on import, so a
# new kind needs no list here. Sorted by name: the registry's order is the same on every machine.
MODULES: tuple[str, ...] = tuple(sorted(m.name for m in pkgutil.iter_modules(__path__)))
for _module in MODULES:
    importlib.import_module(f"{__name__}.{_module}")

# kind -> everything declared about it
KINDS: Mapping[str, KindSpec] = MappingProxyType(dict(REGISTERED))
# family (the suite module conformance/test_<family>.py) -> the kinds it collects
FAMILIES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        fam: tuple(k for k, s in KINDS.items() if s.family == fam)
        for fam in dict.fromkeys(s.family for s in KINDS.values())
    }
)
FAMILY_OF: Mapping[str, str] = MappingProxyType({k: s.family for k, s in KINDS.items()})
# kinds that need the running model during a run
LIVE_KINDS: frozenset[str] = frozenset(k for k, s in KINDS.items() if s.needs_live)
# live kinds that `verify --cases` cannot replay from a bundle's records: they need the model again
MODEL_ONLY_KINDS: frozenset[str] = frozenset(
    k for k, s in KINDS.items() if s.needs_live and not s.replayable
)
# kinds judged only by which exams are recalled (what `standard bar` tabulates), in order
OPERATING_POINT_KINDS: tuple[str, ...] = tuple(k for k, s in KINDS.items() if s.operating_point)
# what the report needs of each kind (reports.render.render_report's ``kinds``)
KIND_FACTS: Mapping[str, KindFacts] = MappingProxyType({k: s.facts for k, s in KINDS.items()})


NO_VALID_READ = (
    "the model returned no valid score for any reference exam, so there is nothing to judge"
)


def evaluate(spec: CriterionSpec, ctx: EvaluationContext) -> CriterionResult:
    """Evaluate one criterion; anything that prevents evaluation becomes an ``error`` outcome."""
    kind = KINDS.get(spec.kind)
    if kind is None:
        raise UsageError(
            f"criterion {spec.id}: no evaluator for kind {spec.kind!r}; this harness cannot check it"
        )
    inputs = ctx.product_inputs()
    if spec.applies_to and inputs is not None and inputs not in spec.applies_to:
        return out_of_scope_result(spec, inputs)
    try:
        outcome = kind.evaluate(spec, ctx)
    except NotApplicable as exc:
        return error_result(spec, exc.why, not_applicable=exc.interface)
    except NotEvaluable as exc:
        return error_result(spec, str(exc))
    except UsageError as exc:  # e.g. a statistic on a set without cancers
        return error_result(spec, str(exc))
    if outcome.outcome == "passed" and not ctx.table().readable.any():
        # Every kind judges the vendor's model; a pass that rests on no exam the model read is
        # vacuous (a drop from nothing, a gap between empty groups), whatever the kind computed.
        return error_result(spec, NO_VALID_READ)
    return outcome


__all__ = [
    "MODULES",
    "FAMILIES",
    "FAMILY_OF",
    "KINDS",
    "KIND_FACTS",
    "LIVE_KINDS",
    "MODEL_ONLY_KINDS",
    "OPERATING_POINT_KINDS",
    "KindSpec",
    "evaluate",
]
