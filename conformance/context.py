"""What a criterion evaluator sees: the standard, the reference set, the predictions, the model."""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from conformance.table import ExamTable, build_table
from harness.cases.manifest import Manifest
from harness.errors import HarnessFault
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
        """Call a property test built with :meth:`settings`, its examples a function of its seed
        and its strategies alone (:func:`pinned_search`)."""
        with pinned_search():
            test()

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
            "constants": "Hypothesis's built-in pool only, none collected from loaded modules",
        }


@contextmanager
def pinned_search() -> Iterator[None]:
    """Lift, for one property test, the two Hypothesis behaviours that tie its examples to the
    process rather than to its seed.

    * Hypothesis stops shrinking after a fixed wall time (``MAX_SHRINKING_SECONDS``, 300 s),
      which a slow model on a loaded machine reaches: the minimal counterexample, and the count
      of examples run, would depend on the machine. Lifted: shrinking ends by count only.
    * About one draw in twenty is taken from a pool of constants that Hypothesis collects from
      the source of every *local* module imported so far (not site-packages or the standard
      library). The pool, and so the exams and parameters drawn, changed with what the process
      had imported before the search: the CLI or a script, the vendor's adapter, the criteria
      run earlier, ``verify`` replaying a bundle, an editable or a wheel install. Pinned empty:
      Hypothesis's own constants, fixed per version, remain.
    """
    import hypothesis
    from hypothesis.internal.conjecture import engine, providers

    if not hasattr(providers, "_get_local_constants") and _collects_local_constants():
        raise HarnessFault(
            f"Hypothesis {hypothesis.__version__} draws constants from loaded modules through a "
            "hook this harness cannot pin, so its searches would depend on the process; use the "
            "tested Hypothesis 6.170"
        )
    saved = {
        (module, name): getattr(module, name)
        for module, name in ((engine, "MAX_SHRINKING_SECONDS"), (providers, "_get_local_constants"))
        if hasattr(module, name)
    }
    if (engine, "MAX_SHRINKING_SECONDS") in saved:
        engine.MAX_SHRINKING_SECONDS = UNBOUNDED_SHRINK_SECONDS
    if (providers, "_get_local_constants") in saved:
        providers._get_local_constants = _no_local_constants
    # the cache holds the constants allowed per choice, local ones included; cleared on the way
    # in (drawn from the process's pool) and on the way out (drawn from the pinned empty one)
    _clear_constants_cache(providers)
    try:
        yield
    finally:
        for (module, name), value in saved.items():
            setattr(module, name, value)
        _clear_constants_cache(providers)


def _no_local_constants() -> Any:
    from hypothesis.internal.constants_ast import Constants

    return Constants()


def _collects_local_constants() -> bool:
    try:
        import hypothesis.internal.constants_ast  # noqa: F401  (present where the pool exists)
    except ImportError:
        return False
    return True


def _clear_constants_cache(providers: Any) -> None:
    cache = getattr(providers, "CONSTANTS_CACHE", None)
    if cache is not None:
        cache.cache.clear()


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
