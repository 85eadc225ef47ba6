"""Metamorphic relations: what a perturbation is, how it is named, and how its outcome is judged.

A relation pairs a pure transform of an exam with an expectation about the model's scores
before and after (the idea of MLPerf's compliance tests, applied to a screening model):

* ``invariant``  - the perturbation carries no clinical information (file encoding, metadata,
  image order, a mirrored exam with swapped sides); the scores must not move beyond numerical
  noise (the ``tolerance`` passed to ``check``);
* ``tolerance``  - a clinically plausible acquisition change (dose, spacing, display curve);
  the exam score may move, but by at most ``tolerance``;
* ``directional`` - the perturbation adds evidence of cancer (an inserted lesion); the score of
  the breast that received it must rise by more than ``tolerance`` (0 = any strict rise) and the
  exam score must not fall. Judging the exam score alone would be wrong: with the usual
  max-of-breasts aggregation, a lesion in the breast that does not hold the exam's maximum
  cannot move the exam score however well the model sees it.

``Relation.check(before, after, tolerance, params)`` gets the relation's parameters, so a
directional check knows which breast was changed.

A condition id is ``relation`` or ``relation:k=v,k=v`` with the parameter names sorted, so the
same parameters always give the same id (it keys the journal and the predictions file).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from hypothesis.strategies import SearchStrategy

from harness.exam_input import ExamInput

KINDS = ("invariant", "tolerance", "directional")

Transform = Callable[[ExamInput], ExamInput]


class Params(Protocol):
    """A frozen dataclass of one relation's parameters; ``relation`` names the relation."""

    relation: ClassVar[str]


P = TypeVar("P")


class Scores(Protocol):
    """What ``check`` reads: an ExamOutput, or a Prediction (whose score may be None)."""

    @property
    def score(self) -> float | None: ...

    @property
    def breasts(self) -> Mapping[str, float]: ...


def _format(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)  # shortest text that round-trips: 0.9 -> "0.9"
    if isinstance(value, str):
        if any(ch in value for ch in ",=: ") or not value:
            raise ValueError(f"parameter value {value!r} cannot appear in a condition id")
        return value
    raise TypeError(f"parameter of type {type(value).__name__} cannot appear in a condition id")


def canonical_params(params: Any) -> str:
    """``k=v,k=v`` over the dataclass fields, sorted by name ('' when there are none)."""
    pairs = sorted((f.name, _format(getattr(params, f.name))) for f in dataclasses.fields(params))
    return ",".join(f"{k}={v}" for k, v in pairs)


def condition_id(params: Any) -> str:
    """The stable condition id, e.g. ``intensity:center_shift=0.0,gamma=0.9,width_scale=1.05``."""
    body = canonical_params(params)
    return f"{params.relation}:{body}" if body else str(params.relation)


def _missing(before: Scores, after: Scores) -> str | None:
    for name, s in (("before", before), ("after", after)):
        if s.score is None or not math.isfinite(s.score):
            return f"no valid exam score {name} the perturbation ({s.score!r})"
    return None


def largest_change(before: Scores, after: Scores, swapped: bool = False) -> tuple[float, str]:
    """Largest absolute change of the exam score and of every breast score both report, and
    which it was; ``swapped`` compares breast L before with R after and vice versa (mirror).
    Infinite when either side has no exam score."""
    if before.score is None or after.score is None:
        return math.inf, "no exam score"
    worst = abs(after.score - before.score)
    what = f"exam score {before.score:.6g} -> {after.score:.6g}"
    sides = sorted(set(before.breasts) & set(after.breasts))
    for side, other in (("L", "R"), ("R", "L")) if swapped else ((s, s) for s in sides):
        if side in before.breasts and other in after.breasts:
            d = abs(after.breasts[other] - before.breasts[side])
            if d > worst:
                worst = d
                moved = f"became {other}" if swapped else "->"
                what = f"breast {side} score {before.breasts[side]:.6g} {moved} {after.breasts[other]:.6g}"
    return worst, what


def _within(before: Scores, after: Scores, tolerance: float, swapped: bool) -> tuple[bool, str]:
    missing = _missing(before, after)
    if missing:
        return False, missing
    worst, what = largest_change(before, after, swapped)
    ok = worst <= tolerance
    return (
        ok,
        f"{what} (largest change {worst:.3g} {'<=' if ok else '>'} tolerance {tolerance:.3g})",
    )


def check_unchanged(
    before: Scores, after: Scores, tolerance: float, params: Any = None
) -> tuple[bool, str]:
    """Exam score (and every breast score both report) within ``tolerance``."""
    return _within(before, after, tolerance, swapped=False)


def check_swapped(
    before: Scores, after: Scores, tolerance: float, params: Any = None
) -> tuple[bool, str]:
    """Mirror: exam score unchanged, breast scores swapped L<->R, all within ``tolerance``."""
    return _within(before, after, tolerance, swapped=True)


def check_raised(
    before: Scores, after: Scores, tolerance: float, params: Any = None
) -> tuple[bool, str]:
    """Directional: the score of the breast named by ``params.laterality`` must rise by more than
    ``tolerance`` (0 = any rise) and the exam score must not fall. A model that reports no score
    for that breast is judged on its exam score, which must then rise."""
    missing = _missing(before, after)
    if missing:
        return False, missing
    assert before.score is not None and after.score is not None
    exam = f"exam score {before.score:.6g} -> {after.score:.6g}"
    side = getattr(params, "laterality", None)
    if side in before.breasts and side in after.breasts:
        b, a = before.breasts[side], after.breasts[side]
        what, rise = f"breast {side} score {b:.6g} -> {a:.6g}", a - b
        # the breast not seeing the lesion is the primary finding; a falling exam score the second
        if rise > tolerance and after.score < before.score:
            return False, f"{what}, but {exam}: the exam score fell"
    else:
        what, rise = exam, after.score - before.score
    ok = rise > tolerance
    return ok, f"{what} (rise {rise:.3g} {'>' if ok else '<='} required {tolerance:.3g})"


@dataclass(frozen=True)
class Relation(Generic[P]):
    """Everything about one metamorphic relation, declared once as ``RELATION`` in its module.

    ``position`` orders the registry (and so the fixed grid and every listing of relations);
    ``swaps_sides`` says the relation moves each breast to the other side (the mirror), so its
    breast scores are compared crosswise. The check follows from ``kind`` and ``swaps_sides``:
    a directional relation demands a rise (:func:`check_raised`), the others an unchanged score
    within the tolerance (:func:`check_swapped` or :func:`check_unchanged`).
    """

    name: str
    kind: str
    expectation: str
    params_type: type
    apply: Callable[[ExamInput, P], ExamInput]
    strategy: SearchStrategy[P]
    position: int
    swaps_sides: bool = False
    # Severity level -> parameters, for robustness sweeps (None: the relation has no severity),
    # and the levels a sweep uses when none are given.
    at_level: Callable[[float], P] | None = None
    levels: tuple[float, ...] = ()
    # The fixed grid's conditions for this relation (mammocert grid): the ends of its range.
    grid: tuple[P, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(
                f"relation {self.name}: kind {self.kind!r} is not one of {', '.join(KINDS)}"
            )
        if getattr(self.params_type, "relation", None) != self.name:
            raise ValueError(
                f"relation {self.name}: {self.params_type.__name__}.relation must be {self.name!r}"
            )
        if (self.at_level is None) != (not self.levels):
            raise ValueError(f"relation {self.name}: give both at_level and levels, or neither")
        for params in self.grid:
            if not isinstance(params, self.params_type):
                raise ValueError(
                    f"relation {self.name}: grid point {params!r} is not a {self.params_type.__name__}"
                )

    def check(
        self, before: Scores, after: Scores, tolerance: float, params: Any = None
    ) -> tuple[bool, str]:
        """Whether the scores after the perturbation meet the expectation, and the evidence."""
        if self.kind == "directional":
            return check_raised(before, after, tolerance, params)
        return _within(before, after, tolerance, swapped=self.swaps_sides)

    def change(self, before: Scores, after: Scores) -> tuple[float, str]:
        """Largest exam or breast score change (breasts compared crosswise when sides swap)."""
        return largest_change(before, after, swapped=self.swaps_sides)

    def eligible(self, label: int) -> bool:
        """Whether an exam with this label is judged: a directional relation adds evidence of
        cancer, so only normal exams (label 0) can show the rise it demands."""
        return self.kind != "directional" or label == 0

    def transform(self, params: P) -> Transform:
        """The transform for one parameter set, as the runner takes it per condition."""
        if not isinstance(params, self.params_type):
            raise TypeError(
                f"relation {self.name} takes {self.params_type.__name__}, got {type(params).__name__}"
            )

        def run(exam: ExamInput) -> ExamInput:
            return self.apply(exam, params)

        return run

    def condition(self, params: P) -> tuple[str, Transform]:
        """``(condition_id, transform)`` for the runner."""
        return condition_id(params), self.transform(params)
