"""Metamorphic perturbations of exams: relations, strategies, sweeps, invalid inputs.

Each relation is a pure transform of an :class:`~harness.exam_input.ExamInput` with frozen
parameters, a stable condition id and a Hypothesis strategy, declared with everything else about
it as ``RELATION`` in its own module (``mirror.py``, ``noise.py``, ...); see
:mod:`harness.perturb.relation` for the kinds of expectation and :data:`RELATIONS` (collected by
:mod:`harness.perturb.registry`) for the list.
"""

from harness.perturb.registry import RELATIONS, apply_condition, parse_condition
from harness.perturb.relation import Relation, condition_id
from harness.perturb.sweep import sweep_conditions

__all__ = [
    "RELATIONS",
    "Relation",
    "apply_condition",
    "condition_id",
    "parse_condition",
    "sweep_conditions",
]
