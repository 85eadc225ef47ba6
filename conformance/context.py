"""What a criterion evaluator sees: the standard, the reference set, the predictions, the model."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from conformance.table import ExamTable, build_table
from harness.cases.manifest import Manifest
from harness.predictions import ORIGINAL, Prediction
from harness.standard import Standard, product_inputs, recorded_inputs

# Hypothesis phases, always all four: explicit and reuse are no-ops without examples or a database.
PHASES = ("explicit", "reuse", "generate", "shrink")
UNBOUNDED_SHRINK_SECONDS = 10**9  # shrinking still ends after Hypothesis's 500 successful shrinks


@dataclass(frozen=True)
class HypothesisProfile:
    """The Hypothesis settings every property-based criterion runs under, built from the
    standard's ``hypothesis:`` block; ``record()`` is what results.json states, so the record is
    the settings used, by construction.

    Each criterion's random stream is seeded with ``seed ^ crc32(criterion id)``, so its
    examples depend on the standard and the criterion only. ``derandomize`` (the standard's
    default: true) rules out the example database, whatever the mode; without it, self-test mode
    reuses failing examples from a database in the bundle directory.
    """

    derandomize: bool
    deadline_ms: int | None
    database: bool

    @classmethod
    def of(cls, standard: Any, mode: str) -> HypothesisProfile:
        block = dict(standard.raw.get("hypothesis") or {})
        derandomize = bool(block.get("derandomize", True))
        deadline = block.get("deadline_ms")
        return cls(
            derandomize=derandomize,
            deadline_ms=None if deadline is None else int(deadline),
            database=mode == "self-test" and not derandomize,
        )

    def settings(self, max_examples: int, database_dir: Path | None) -> Callable[[Any], Any]:
        """The ``@settings`` decorator for one criterion's property test."""
        import datetime as dt

        from hypothesis import HealthCheck, Phase, settings
        from hypothesis.database import DirectoryBasedExampleDatabase

        database = None
        if self.database and database_dir is not None:
            database = DirectoryBasedExampleDatabase(str(database_dir))
        return settings(
            max_examples=max_examples,
            database=database,
            deadline=None
            if self.deadline_ms is None
            else dt.timedelta(milliseconds=self.deadline_ms),
            derandomize=self.derandomize,
            print_blob=False,
            phases=tuple(getattr(Phase, p) for p in PHASES),
            suppress_health_check=list(HealthCheck),
            # After a first failure Hypothesis otherwise goes on looking for other bugs for up
            # to 10 s of wall time, so the examples run depended on the machine's speed.
            report_multiple_bugs=False,
        )

    def run(self, test: Callable[[], None]) -> None:
        """Call a property test built with :meth:`settings`, its shrinking bounded by count only.

        Hypothesis also stops shrinking after a fixed wall time (``MAX_SHRINKING_SECONDS``,
        300 s), which a slow model on a loaded machine reaches: the minimal counterexample, and
        the count of examples run, would then depend on the machine. Lifted for this call only.
        """
        from hypothesis.internal.conjecture import engine

        limit = getattr(engine, "MAX_SHRINKING_SECONDS", None)
        if limit is not None:
            engine.MAX_SHRINKING_SECONDS = UNBOUNDED_SHRINK_SECONDS
        try:
            test()
        finally:
            if limit is not None:
                engine.MAX_SHRINKING_SECONDS = limit

    def record(self) -> dict[str, Any]:
        return {
            "derandomize": self.derandomize,
            "deadline_ms": self.deadline_ms,
            "database": "on" if self.database else "off",
            "seed": "standard seed ^ crc32(criterion id)",
            "phases": list(PHASES),
            "examples_from": "the standard's `examples` per criterion",
            "health_checks": "all suppressed",
            "report_multiple_bugs": False,
            "shrinking": "bounded by Hypothesis's count of shrinks, not by wall time",
        }


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
    hypothesis: HypothesisProfile = HypothesisProfile(
        derandomize=True, deadline_ms=None, database=False
    )
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
                f"{what} needs the running model, and a predictions file alone cannot run it; "
                "judge it with `mammocert run --vendor PKG`"
            )
        return self.live

    def product_inputs(self) -> str | None:
        """What the product receives (``harness.standard.PRODUCT_INPUTS``), from the running or
        replayed model, else the bundle's vendor record; ``None`` for a predictions file alone."""
        known = getattr(self.live, "harness_checks_input", None)
        return recorded_inputs(self.vendor) if known is None else product_inputs(bool(known))
