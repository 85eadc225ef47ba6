"""The running vendor model during a conformance session.

Every extra condition (a perturbation, a repeat, an invalid input) goes through the same
journaled runner as the original predictions, so a killed session resumes without re-running the
model, and every prediction the verdict rests on lands in predictions.jsonl.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from harness.cases.manifest import Manifest
from harness.exam_input import ExamInput
from harness.predictions import ORIGINAL, Prediction


class LiveModel:
    """An opened vendor adapter plus its journal; runs conditions on demand."""

    def __init__(
        self,
        adapter: Any,
        manifest: Manifest,
        journal: Any,
        timeout_s: float,
        executor: Any = None,
        resources: ExitStack | None = None,
        profile: Any = None,
    ) -> None:
        self.adapter = adapter
        self.profile = profile  # a harness.profile.RunProfile (``--profile``), or None
        self.executor = executor  # None: the runner's local executor
        self._resources = resources or ExitStack()
        # the model's input is built by the harness after its own intended-use check (ONNX)
        self.harness_checks_input = bool(getattr(adapter, "harness_checks_input", False))
        self.manifest = manifest
        self.journal = journal
        self.timeout_s = timeout_s
        self.info = adapter.info
        self._by_condition: dict[str, dict[str, Prediction]] = {}

    @classmethod
    def start(
        cls,
        package: Any,
        manifest: Manifest,
        out: Path | None,
        device: str,
        resume: bool,
        adapter: Any = None,
        executor: Any = None,
        profile: Any = None,
    ) -> LiveModel:
        """Open the package's adapter (or use the injected one) and the ``executor``
        (a :class:`harness.executor_choice.ExecutorChoice`; default local), then run the original
        exams. Opening a remote interface's adapter first checks that the set is de-identified."""
        from harness.journal import Journal, model_digest
        from harness.vendors import open_adapter

        if adapter is None:
            adapter = open_adapter(
                package,
                device,
                evidence_dir=(out / f"{package.interface}-evidence") if out is not None else None,
                manifest=manifest,
            )
        journal = None
        if out is not None:
            path = out / "journal.sqlite"
            if not resume:  # a fresh run starts a fresh journal; --resume keeps it
                for old in (path, *(path.with_name(path.name + x) for x in ("-wal", "-shm"))):
                    old.unlink(missing_ok=True)  # with a killed run's side files, if any
            journal = Journal(path, model_digest(adapter.info.model_digests))
        resources = ExitStack()
        try:
            chosen = None
            if executor is not None:
                chosen = resources.enter_context(executor.open(package, device))
            live = cls(adapter, manifest, journal, package.timeout_s, chosen, resources, profile)
            live.run(ORIGINAL, None, progress=True)
        except BaseException:
            resources.close()
            raise
        return live

    def run(
        self,
        condition: str,
        transform: Callable[[ExamInput], ExamInput] | None,
        exam_ids: Sequence[str] | None = None,
        progress: bool = False,
    ) -> dict[str, Prediction]:
        """Run ``condition`` (``transform`` applied to each exam input) over the given exams."""
        from harness.runner import run_predictions

        wrapped = None if transform is None else (lambda exam, _cond: transform(exam))
        preds = run_predictions(
            self.adapter,
            self.manifest,
            conditions=(condition,),
            journal=self.journal,
            timeout_s=self.timeout_s,
            progress=progress,
            transform=wrapped,
            exam_ids=exam_ids,
            executor=self.executor,
            profile=self.profile,
        )
        got = self._by_condition.setdefault(condition, {})
        for p in preds:
            got[p.exam_id] = p
        return {p.exam_id: p for p in preds}

    def original_predictions(self) -> list[Prediction]:
        return list(self._by_condition.get(ORIGINAL, {}).values())

    def original(self, exam_id: str) -> Prediction:
        return self._by_condition[ORIGINAL][exam_id]

    def extra_predictions(self) -> list[Prediction]:
        return [
            p
            for cond, preds in sorted(self._by_condition.items())
            if cond != ORIGINAL
            for p in preds.values()
        ]

    def close(self) -> None:
        try:
            try:
                self.adapter.close()
            finally:
                self._resources.close()  # the Dask client (and a cluster started for the run)
        finally:  # the journal is closed (one file, no -wal/-shm) even if the adapter's close fails
            if self.journal is not None:
                self.journal.close()


class NotRecorded(BaseException):
    """A replayed evaluator asked for a prediction that the bundle does not record.

    A ``BaseException``, like ``KeyboardInterrupt``: neither an evaluator, nor Hypothesis (which
    would take an ``Exception`` for a failing example and shrink it), nor the engine's
    per-criterion guard may turn a missing record into a verdict."""


class RecordedModel:
    """The model's answers as a bundle's ``predictions.jsonl`` records them, in the place of a
    :class:`LiveModel`: ``verify --cases`` re-runs a live kind's evaluator against them.

    An evaluator's requests are a function of the standard's seed, the criterion id and the
    answers it got, so a genuine bundle records every prediction the replay asks for, and the
    replay reaches the verdict the run reached. ``transform`` is never applied: the answer to a
    perturbed exam is the recorded one. There is no journal, so no Hypothesis example database.
    """

    journal = None

    def __init__(
        self,
        manifest: Manifest,
        records: Sequence[Prediction],
        vendor: Mapping[str, Any] | None = None,
    ) -> None:
        self.manifest = manifest
        vendor = vendor or {}
        self.harness_checks_input = bool(vendor.get("harness_checks_input", False))
        self.info = SimpleNamespace(interface=str(vendor.get("interface", "")))
        self._by_condition: dict[str, dict[str, Prediction]] = {}
        for p in records:
            self._by_condition.setdefault(p.condition, {})[p.exam_id] = p

    def run(
        self,
        condition: str,
        transform: Callable[[ExamInput], ExamInput] | None,
        exam_ids: Sequence[str] | None = None,
        progress: bool = False,
    ) -> dict[str, Prediction]:
        """The recorded predictions of ``condition`` for the given exams, in the set's order (as
        the runner returns them)."""
        wanted = None if exam_ids is None else set(exam_ids)
        ids = [e.exam_id for e in self.manifest.exams if wanted is None or e.exam_id in wanted]
        got = self._by_condition.get(condition, {})
        for exam_id in ids:
            if exam_id not in got:
                raise NotRecorded(
                    f"the prediction for exam {exam_id} under condition {condition!r} is not in "
                    "predictions.jsonl"
                )
        return {exam_id: got[exam_id] for exam_id in ids}

    def original(self, exam_id: str) -> Prediction:
        return self.run(ORIGINAL, None, [exam_id])[exam_id]

    def close(self) -> None:
        """Nothing to close: no model runs."""
