"""Multiplicity adjustment across the mandatory criteria of a standard.

Holm (1979, Scand J Statist 6:65–70) step-down adjustment, identical to R
``p.adjust(p, method = "holm")``: with the p-values sorted ascending p_(1) <= ... <= p_(m),
adjusted p_(i) = max_{j <= i} min(1, (m - j + 1) p_(j)); returned in the input order. It
controls the family-wise error rate under any dependence between the tests.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from harness.errors import UsageError

__all__ = ["holm", "holm_reject"]


def holm(pvalues: ArrayLike) -> NDArray[np.float64]:
    """Holm-adjusted p-values in the input order (R ``p.adjust(method="holm")``)."""
    p = np.asarray(pvalues, dtype=np.float64)
    if p.ndim != 1:
        raise UsageError(f"p-values must be a 1-D sequence, got shape {p.shape}")
    if np.any(np.isnan(p)) or np.any((p < 0) | (p > 1)):
        raise UsageError(
            "p-values must be numbers in [0, 1] (no NaN); evaluate every criterion first"
        )
    m = p.size
    if m == 0:
        return p.copy()
    order = np.argsort(p, kind="stable")
    stepped = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = stepped
    return out


def holm_reject(pvalues: ArrayLike, alpha: float = 0.05) -> NDArray[np.bool_]:
    """Which hypotheses Holm's procedure rejects at family-wise level ``alpha``."""
    if not 0.0 < float(alpha) < 1.0:
        raise UsageError(f"alpha must be strictly between 0 and 1, got {alpha!r}")
    return holm(pvalues) <= float(alpha)
