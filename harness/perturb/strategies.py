"""What the relations' Hypothesis strategies share (each strategy lives in its relation's module).

Every strategy draws on an integer grid and maps it to parameters, for two reasons: condition
ids stay short and exact (``gamma=0.9``, not ``gamma=0.9000000000000001``), and Hypothesis
shrinks integers towards 0, which each mapping sends to the *mildest* perturbation (the
identity where there is one). So a failing model is reported with the smallest perturbation
that breaks it, and ``hypothesis.find(strategy, lambda p: True)`` is that mildest example.
"""

from __future__ import annotations

from hypothesis import strategies as st

SEEDS = st.integers(0, 2**32 - 1)
