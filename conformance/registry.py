"""Criterion kinds and the facts about each, declared once on its evaluator.

Each criteria module (``conformance/criteria/*.py``) registers its kinds with ``@evaluator(...)``,
stating there the suite family that collects the kind, the report's section and method text, the
``pass_if`` keys it accepts, whether it needs the running model (and, if so, whether ``verify
--cases`` can replay it from the bundle's records), and whether ``standard bar`` tabulates it. Every other table (families, live kinds, the report's headings) is derived from
these in ``conformance.criteria``, which imports every criteria module; this module imports none.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from conformance.context import EvaluationContext
from harness.passif import PASS_KEYS
from harness.results import CriterionResult, KindFacts
from harness.standard import CriterionSpec

EvaluatorFn = Callable[[CriterionSpec, EvaluationContext], CriterionResult]


@dataclass(frozen=True, kw_only=True)
class KindSpec:
    """One criterion kind: its evaluator and everything the suite and the report need to know."""

    kind: str
    family: str  # the suite module conformance/test_<family>.py that collects it
    section: str  # the report's section heading
    method: str  # plain-language method text for the report's appendix
    needs_live: bool  # asks the running model for predictions beyond the original ones
    pass_keys: tuple[str, ...]  # the pass_if keys this kind accepts (harness.passif.PASS_KEYS)
    operating_point: bool = False  # judged only by which exams are recalled (`standard bar`)
    # A live kind whose judgement is a function of the predictions it asked the model for (all in
    # the bundle's predictions.jsonl): `verify --cases` re-runs its evaluator against those
    # records instead of the model. False: only the model itself can re-judge it.
    replayable: bool = False
    # Draws its examples with Hypothesis: with the example database on (self-test without
    # derandomize) the search depends on earlier runs, which the bundle does not record.
    searches: bool = False
    evaluate: EvaluatorFn

    @property
    def facts(self) -> KindFacts:
        """What the report needs of this kind (``reports`` never imports ``conformance``)."""
        return KindFacts(section=self.section, method=self.method)


# kind -> its spec, in registration order (the import order of conformance.criteria)
REGISTERED: dict[str, KindSpec] = {}


def evaluator(
    kind: str,
    *,
    family: str,
    section: str,
    method: str,
    pass_keys: tuple[str, ...],
    needs_live: bool = False,
    operating_point: bool = False,
    replayable: bool = False,
    searches: bool = False,
) -> Callable[[EvaluatorFn], EvaluatorFn]:
    """Register the evaluator of one criterion kind, with the facts about the kind."""
    unknown = [k for k in pass_keys if k not in PASS_KEYS]
    if unknown:
        raise RuntimeError(
            f"kind {kind!r}: pass_keys {unknown} are not keys of harness.passif.PASS_KEYS"
        )
    if not pass_keys:
        raise RuntimeError(f"kind {kind!r}: declare the pass_if keys it accepts (pass_keys)")
    if operating_point and needs_live:
        raise RuntimeError(f"kind {kind!r}: an operating-point kind is judged from predictions")
    if (replayable or searches) and not needs_live:
        raise RuntimeError(
            f"kind {kind!r}: replayable/searches describe how a live kind asks the model; "
            "a kind without needs_live is judged from the original predictions already"
        )

    def deco(fn: EvaluatorFn) -> EvaluatorFn:
        if kind in REGISTERED:
            raise RuntimeError(f"two evaluators for kind {kind!r}")
        REGISTERED[kind] = KindSpec(
            kind=kind,
            family=family,
            section=section,
            method=method,
            needs_live=needs_live,
            pass_keys=tuple(pass_keys),
            operating_point=operating_point,
            replayable=replayable,
            searches=searches,
            evaluate=fn,
        )
        return fn

    return deco


__all__ = ["REGISTERED", "EvaluatorFn", "KindSpec", "evaluator"]
