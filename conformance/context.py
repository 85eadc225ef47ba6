"""What a criterion evaluator sees: the standard, the reference set, the predictions, the model."""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from conformance.table import ExamTable, build_table
from harness.cases.manifest import Manifest
from harness.predictions import ORIGINAL, Prediction
from harness.standard import Standard


@dataclass
class EvaluationContext:
    """Shared, session-wide inputs of the conformance suite.

    ``live`` is the running model (a :class:`conformance.live.LiveModel`) for the criteria that
    talk to the model (invariance, determinism, caching, input rejection); it is ``None`` when
    evaluating a predictions file alone, and those criteria then end as ``error``.
    """

    standard: Standard
    manifest: Manifest
    predictions: list[Prediction]
    operating_point: float
    vendor: Mapping[str, Any]
    mode: str
    live: Any = None
    hypothesis_database: bool = False
    _tables: dict[str, ExamTable] = field(default_factory=dict)

    def rng(self, criterion_id: str) -> np.random.Generator:
        """A generator for one criterion, derived from the standard's seed and the criterion id only,
        so a criterion's random draws do not depend on which other criteria ran."""
        return np.random.default_rng([self.standard.seed, zlib.crc32(criterion_id.encode("utf-8"))])

    def table(self, condition: str = ORIGINAL) -> ExamTable:
        if condition not in self._tables:
            self._tables[condition] = build_table(self.manifest, self.predictions, condition)
        return self._tables[condition]

    def require_live(self, what: str) -> Any:
        from conformance.outcome import NotEvaluable

        if self.live is None:
            raise NotEvaluable(
                f"{what} needs the running model; run with --vendor (a predictions file alone is not enough)"
            )
        return self.live
