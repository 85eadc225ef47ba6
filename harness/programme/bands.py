"""The AI's "likely normal" band of a triage or rule-out protocol, chosen three ways.

A band is the screens scoring below a threshold. In ``ai_triage`` each screen in it loses one of
double reading's two reads, in ``ai_rule_out`` both. Shares of reads and of screens are of the
*screening population* (weights from :func:`harness.stats.reweight.screening_weights`); the
share of cancers is of the set's cancers (they all weigh the same).

``min_reads_removed: r``
    the smallest band removing at least the share r of double reading's reads;
``score_below: s``
    the vendor's declared band, scores below s;
``max_cancer_share: c``
    the largest band holding at most the share c of the cancers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from harness.errors import UsageError
from harness.programme.protocols import threshold_for_share

READS_REMOVED_PER_SCREEN = {"ai_triage": 1, "ai_rule_out": 2}


@dataclass(frozen=True)
class Band:
    threshold: float
    in_band: NDArray[np.bool_]
    screens_share: float  # population share of screens in the band
    reads_removed: float  # share of double reading's reads removed
    cancers: int  # cancers in the band
    n_cancers: int


def resolve_band(
    scores: NDArray[np.float64],
    labels: NDArray[Any],
    weights: NDArray[np.float64],
    protocol: str,
    band: Mapping[str, Any],
) -> Band:
    """The band of ``protocol`` given by one of the three forms (module docstring)."""
    if protocol not in READS_REMOVED_PER_SCREEN:
        raise UsageError(f"protocol {protocol!r} has no band; use ai_triage or ai_rule_out")
    if not isinstance(band, Mapping) or len(band) != 1:
        raise UsageError("band: give one of min_reads_removed, score_below, max_cancer_share")
    per = READS_REMOVED_PER_SCREEN[protocol]
    cancer = np.asarray(labels) == 1
    ((form, value),) = band.items()
    if form == "min_reads_removed":
        share = float(value) * 2 / per
        if share > 1:
            raise UsageError(
                f"band.min_reads_removed {value} is more than {protocol} can remove ({per / 2:g})"
            )
        t = threshold_for_share(scores, weights, share)
    elif form == "score_below":
        t = float(value)
    elif form == "max_cancer_share":
        cand = np.concatenate([np.unique(scores[np.isfinite(scores)]), [np.inf]])
        below = np.searchsorted(np.sort(scores[cancer & np.isfinite(scores)]), cand, side="left")
        ok = np.flatnonzero(below <= float(value) * max(int(cancer.sum()), 1) + 1e-9)
        t = float(cand[ok[-1]])
    else:
        raise UsageError(
            f"band: {form!r} is not min_reads_removed, score_below or max_cancer_share"
        )
    in_band = np.isfinite(scores) & (scores < t)
    screens = float(weights[in_band].sum() / weights.sum())
    return Band(
        threshold=t,
        in_band=in_band,
        screens_share=screens,
        reads_removed=screens * per / 2,
        cancers=int(np.count_nonzero(in_band & cancer)),
        n_cancers=int(cancer.sum()),
    )
