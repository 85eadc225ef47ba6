"""The running vendor model during a conformance session.

Every extra condition (a perturbation, a repeat, an invalid input) goes through the same
journaled runner as the original predictions, so a killed session resumes without re-running the
model, and every prediction the verdict rests on lands in predictions.jsonl.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from harness.cases.manifest import Manifest
from harness.exam_input import ExamInput
from harness.predictions import ORIGINAL, Prediction


class LiveModel:
    """An opened vendor adapter plus its journal; runs conditions on demand."""

    def __init__(self, adapter: Any, manifest: Manifest, journal: Any, timeout_s: float) -> None:
        self.adapter = adapter
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
    ) -> LiveModel:
        """Open the package's adapter (or use the injected one), then run the original exams.
        Opening a remote interface's adapter first checks that the set is de-identified."""
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
            if path.exists() and not resume:
                path.unlink()  # a fresh run starts a fresh journal; --resume keeps it
            journal = Journal(path, model_digest(adapter.info.model_digests))
        live = cls(adapter, manifest, journal, package.timeout_s)
        live.run(ORIGINAL, None, progress=True)
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
        self.adapter.close()
        if self.journal is not None:
            self.journal.close()
