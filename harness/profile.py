"""Where a run's time goes (``--profile``): a per-phase breakdown of wall time and model work.

A phase is a stretch of the run: the set's build, the setup, the original pass, one criterion,
the bundle's writing. Inside a phase the runner adds up what each computed task measured where
the work happened (:class:`TaskTiming`, from :class:`harness.executor.ModelCaller`, on this
machine or on a Dask worker). The per-task seconds are summed over tasks, and the prefetch
threads overlap loading and preparing with inference, so load + prepare + infer may exceed the
runner's wall time; ``other`` is the phase's wall time outside the runner (statistics,
Hypothesis, the report).

The figures are machine-dependent: they are printed (and written to a file only on request),
never part of ``results.json``.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from harness.errors import UsageError
from harness.fsio import check_output_file, write_atomic


@dataclass(frozen=True)
class TaskTiming:
    """What one computed task cost: load + transform, ``adapter.prepare``, and the model call
    (``model_calls`` is 0 when the task ended before ``infer``, e.g. a rejected input; a call
    that scored a group of tasks counts once, on the group's first task, and its seconds are
    shared out equally)."""

    load_s: float = 0.0
    prepare_s: float = 0.0
    infer_s: float = 0.0
    model_calls: int = 0


@dataclass
class PhaseTotals:
    """One phase's sums (mutable while the phase runs)."""

    name: str
    wall_s: float = 0.0
    runner_s: float = 0.0  # wall time inside the runner (tasks in flight, the journal)
    tasks: int = 0  # exam-conditions computed (not reused from the journal)
    model_calls: int = 0
    load_s: float = 0.0
    prepare_s: float = 0.0
    infer_s: float = 0.0

    @property
    def other_s(self) -> float:
        return max(0.0, self.wall_s - self.runner_s)


class RunProfile:
    """The phases of one run, in the order they began; :meth:`phase` times one stretch and
    directs the runner's counts into it. A phase entered twice adds to its totals."""

    def __init__(self) -> None:
        self.phases: dict[str, PhaseTotals] = {}
        self._current: PhaseTotals | None = None
        self._t0 = time.perf_counter()
        self.total_s = 0.0

    @contextmanager
    def phase(self, name: str) -> Iterator[PhaseTotals]:
        outer = self._current
        totals = self.phases.setdefault(name, PhaseTotals(name))
        self._current = totals
        t0 = time.perf_counter()
        try:
            yield totals
        finally:
            totals.wall_s += time.perf_counter() - t0
            self._current = outer
            self.total_s = time.perf_counter() - self._t0

    def add_task(self, timing: TaskTiming | None) -> None:
        """Count one computed task in the current phase (outside any phase: ``(unphased)``)."""
        totals = self._current
        if totals is None:
            totals = self.phases.setdefault("(unphased)", PhaseTotals("(unphased)"))
        totals.tasks += 1
        if timing is not None:
            totals.model_calls += timing.model_calls
            totals.load_s += timing.load_s
            totals.prepare_s += timing.prepare_s
            totals.infer_s += timing.infer_s

    def add_runner(self, seconds: float) -> None:
        """Wall time the runner spent in the current phase."""
        if self._current is not None:
            self._current.runner_s += seconds

    def finish(self) -> None:
        self.total_s = time.perf_counter() - self._t0

    def record(self) -> dict[str, Any]:
        """The profile as JSON data (``--profile FILE``)."""

        def rounded(p: PhaseTotals) -> dict[str, Any]:
            row = {**asdict(p), "other_s": p.other_s}
            return {k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}

        return {
            "total_s": round(self.total_s, 3),
            "phases": [rounded(p) for p in self.phases.values()],
        }

    def write(self, path: Path) -> None:
        text = json.dumps(self.record(), indent=2) + "\n"
        write_atomic(path, text.encode(), "--profile")

    def table(self) -> Any:
        """A rich table of the phases and their sums (printed on stderr at the end)."""
        from rich.table import Table

        table = Table(title="Time per phase (--profile)", title_justify="left")
        for col in ("phase", "wall s", "tasks", "model calls", "load+transform s", "prepare s"):
            table.add_column(col, justify="left" if col == "phase" else "right")
        for col in ("infer s", "s/call", "other s"):
            table.add_column(col, justify="right")
        phased = list(self.phases.values())
        for p in phased:
            per_call = f"{p.infer_s / p.model_calls:.3f}" if p.model_calls else ""
            table.add_row(
                p.name,
                f"{p.wall_s:.1f}",
                str(p.tasks) if p.tasks else "",
                str(p.model_calls) if p.model_calls else "",
                f"{p.load_s:.1f}" if p.tasks else "",
                f"{p.prepare_s:.1f}" if p.tasks else "",
                f"{p.infer_s:.1f}" if p.tasks else "",
                per_call,
                f"{p.other_s:.1f}",
            )
        calls = sum(p.model_calls for p in phased)
        infer = sum(p.infer_s for p in phased)
        table.add_section()
        table.add_row(
            "total",
            f"{self.total_s:.1f}",
            str(sum(p.tasks for p in phased)),
            str(calls),
            f"{sum(p.load_s for p in phased):.1f}",
            f"{sum(p.prepare_s for p in phased):.1f}",
            f"{infer:.1f}",
            f"{infer / calls:.3f}" if calls else "",
            f"{sum(p.other_s for p in phased):.1f}",
        )
        table.caption = (
            "load+transform, prepare and infer are summed over tasks; prefetch threads overlap "
            "them with inference. other: the phase's time outside the model runner."
        )
        return table

    def print(self) -> None:
        from rich.console import Console

        console = Console(stderr=True)
        if not console.is_terminal:  # a log file: wide enough that no column is folded
            console = Console(stderr=True, width=140)
        console.print(self.table())


def open_profile(
    value: str | None, bundle: Path | None = None
) -> tuple[RunProfile | None, Path | None]:
    """The profile for a ``--profile [FILE]`` option (``None``: not given; ``""``: print only)
    and the checked JSON file to write, if any. The file may not lie in the evidence bundle,
    whose files are sealed."""
    if value is None:
        return None, None
    if not value:
        return RunProfile(), None
    path = check_output_file(Path(value), "--profile")
    if bundle is not None and path.resolve().is_relative_to(Path(bundle).resolve()):
        raise UsageError(
            f"--profile {value}: inside the evidence bundle {bundle}, whose files are sealed; "
            "write the profile elsewhere"
        )
    return RunProfile(), path


def report_profile(profile: RunProfile | None, path: Path | None) -> None:
    """Print the breakdown on stderr and write the JSON file, if one was asked for."""
    if profile is None:
        return
    profile.finish()
    profile.print()
    if path is not None:
        profile.write(path)
        print(f"profile: {path}", file=sys.stderr)
