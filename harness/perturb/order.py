"""``order``: the images of an exam in another order.

A screening exam is a set of views, not a sequence: a model must find each view by its
laterality and view attributes, not by its position. The output must not change.

The permutation is the ``rank``-th permutation of the exam's images in lexicographic order
(rank taken modulo n!), so rank 0 is the original order, every permutation of a 4-view exam has
one rank in 0..23, and the same rank always gives the same order (no random generator whose
stream could change between library versions).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from hypothesis import strategies as st

from harness.exam_input import ExamInput
from harness.perturb.image import copy_dataset
from harness.perturb.relation import Relation


@dataclass(frozen=True)
class OrderParams:
    """``rank``: which permutation (lexicographic, modulo n!); 0 is the original order."""

    rank: int = 0
    relation: ClassVar[str] = "order"

    def __post_init__(self) -> None:
        if self.rank < 0:
            raise ValueError(f"order: rank must be >= 0, got {self.rank}")


def permutation(n: int, rank: int) -> tuple[int, ...]:
    """The ``rank``-th (mod n!) permutation of range(n) in lexicographic order (Lehmer code)."""
    rank %= math.factorial(n)
    pool = list(range(n))
    out: list[int] = []
    for k in range(n, 0, -1):
        index, rank = divmod(rank, math.factorial(k - 1))
        out.append(pool.pop(index))
    return tuple(out)


def apply_order(exam: ExamInput, params: OrderParams) -> ExamInput:
    """Reorder the exam's images (copies; the input exam is not modified)."""
    perm = permutation(len(exam.images), params.rank)
    return ExamInput(
        exam.exam_id, tuple((exam.images[i][0], copy_dataset(exam.images[i][1])) for i in perm)
    )


def order_params() -> st.SearchStrategy[OrderParams]:
    """The 24 orders of a 4-view exam (rank 0 = original order)."""
    return st.builds(OrderParams, rank=st.integers(0, 23))


RELATION = Relation(
    name=OrderParams.relation,
    kind="invariant",
    expectation="the exam's images in another order: output unchanged",
    params_type=OrderParams,
    apply=apply_order,
    strategy=order_params(),
    position=40,
    grid=(OrderParams(rank=23),),
)
