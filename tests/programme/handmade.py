"""A hand-made set of ten exams whose every protocol outcome the tests compute by hand.

    exam  label  truth      r1 r2 cons  score   what happens
    C1    1      screen     1  1  1     0.90    found by everyone
    C2    1      screen     1  0  1     0.80    reader 2 missed it; arbitration recalled
    C3    1      screen     0  1  0     0.20    reader 2 saw it; arbitration dismissed; AI low
    C4    1      interval   0  0  0     0.70    missed by both readers; AI high
    N1    0      normal     0  0  0     0.10
    N2    0      normal     0  0  0     0.30
    N3    0      normal     1  0  0     0.60    reader 1 false positive, dismissed
    N4    0      normal     0  1  1     0.05    reader 2 false positive, recalled
    N5    0      normal     0  0  0     0.75    AI false positive
    N6    0      normal     1  1  1     0.40    both readers false positive, recalled

At 6 cancers per 1000 a case weighs 0.006 / (4/10) and a control 0.994 / (6/10), so a measure
that holds for a of the 4 cancers and b of the 6 controls is 0.006 a/4 + 0.994 b/6 per screen.
"""

from __future__ import annotations

from harness.programme.screening import ScreeningSet

PREV = 6.0
P = PREV / 1000


def rate(a: int, b: int) -> float:
    """Population rate of something that holds for a of 4 cancers and b of 6 controls."""
    return P * a / 4 + (1 - P) * b / 6


def handmade() -> ScreeningSet:
    return ScreeningSet.from_arrays(
        labels=[1, 1, 1, 1, 0, 0, 0, 0, 0, 0],
        reader1=[1, 1, 0, 0, 0, 0, 1, 0, 0, 1],
        reader2=[1, 0, 1, 0, 0, 0, 0, 1, 0, 1],
        consensus=[1, 1, 0, 0, 0, 0, 0, 1, 0, 1],
        scores=[0.9, 0.8, 0.2, 0.7, 0.1, 0.3, 0.6, 0.05, 0.75, 0.4],
        interval=[False, False, False, True] + [False] * 6,
        exam_ids=["C1", "C2", "C3", "C4", "N1", "N2", "N3", "N4", "N5", "N6"],
    )
