"""One screening round of the reference set, as arrays: truth, the recorded reads, the AI's scores.

The manifest (``docs/contracts.md`` §3.3) records each exam's truth (``label``, ``truth``) and the
original screening reads (``readers``: ``reader1``, ``reader2`` and the arbitration outcome
``consensus``, 1 = recall); the predictions file gives the AI's score. Protocols replay these
arrays (:mod:`harness.programme.protocols`); nothing here loops over exams more than to read them.

An exam the AI could not read (status ``rejected``/``error``, an invalid score, or no prediction)
keeps ``score = NaN`` and ``readable = False``: in every AI protocol it follows double reading,
as a screening unit does when the AI returns nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from harness.cases.manifest import Manifest
from harness.errors import UsageError
from harness.predictions import ORIGINAL, Prediction, is_valid_score

READS = ("reader1", "reader2", "consensus")


@dataclass(frozen=True)
class ScreeningSet:
    """Aligned per-exam arrays (manifest order)."""

    exam_ids: tuple[str, ...]
    labels: NDArray[np.int8]  # 1 = cancer (screen-detected or interval)
    interval: NDArray[np.bool_]  # truth == "interval"
    reader1: NDArray[np.bool_]
    reader2: NDArray[np.bool_]
    consensus: NDArray[np.bool_]  # the recorded double-reading decision (after arbitration)
    scores: NDArray[np.float64]  # NaN where the AI could not read the exam
    readable: NDArray[np.bool_]

    @property
    def n(self) -> int:
        return int(self.labels.size)

    @classmethod
    def from_arrays(
        cls,
        labels: Iterable[int],
        reader1: Iterable[int],
        reader2: Iterable[int],
        consensus: Iterable[int],
        scores: Iterable[float],
        interval: Iterable[bool] | None = None,
        exam_ids: Iterable[str] | None = None,
    ) -> ScreeningSet:
        """Build and check a set from plain sequences (NaN score = the AI could not read it)."""
        y = np.asarray(list(labels) if not isinstance(labels, np.ndarray) else labels)
        n = y.size
        arrays = {}
        for name, v in (("reader1", reader1), ("reader2", reader2), ("consensus", consensus)):
            a = np.asarray(list(v) if not isinstance(v, np.ndarray) else v)
            if a.shape != (n,) or not np.all((a == 0) | (a == 1)):
                raise UsageError(f"{name} must be {n} reads of 0 or 1")
            arrays[name] = a.astype(bool)
        if y.ndim != 1 or not np.all((y == 0) | (y == 1)):
            raise UsageError("labels must be 0 (no cancer) or 1 (cancer)")
        s = np.asarray(list(scores) if not isinstance(scores, np.ndarray) else scores, np.float64)
        if s.shape != (n,):
            raise UsageError(f"scores must give one score per exam ({n}), got {s.size}")
        iv = (
            np.zeros(n, bool)
            if interval is None
            else np.asarray(list(interval) if not isinstance(interval, np.ndarray) else interval)
        ).astype(bool)
        if iv.shape != (n,) or np.any(iv & (y == 0)):
            raise UsageError("interval must be one flag per exam, set only on cancers")
        ids = tuple(exam_ids) if exam_ids is not None else tuple(f"#{i}" for i in range(n))
        readable = np.isfinite(s)
        return cls(ids, y.astype(np.int8), iv, **arrays, scores=s, readable=readable)

    @classmethod
    def from_manifest(
        cls, manifest: Manifest, predictions: Iterable[Prediction], condition: str = ORIGINAL
    ) -> ScreeningSet:
        """Join a reference set's truth and reads with one condition's predictions."""
        by_id = {p.exam_id: p for p in predictions if p.condition == condition}
        cols: dict[str, list[int]] = {r: [] for r in READS}
        for e in manifest.exams:
            missing = [r for r in READS if r not in e.readers]
            if missing:
                raise UsageError(
                    f"{manifest.root / 'manifest.json'}: exam {e.exam_id} has no "
                    f"{', '.join(missing)} read; programme replay needs reader1, reader2 and "
                    "consensus for every exam (manifest 'readers')"
                )
            for r in READS:
                cols[r].append(int(e.readers[r]))
        scores = []
        for e in manifest.exams:
            p = by_id.get(e.exam_id)
            ok = p is not None and p.status == "ok" and is_valid_score(p.score)
            scores.append(float(p.score) if ok else np.nan)  # type: ignore[union-attr,arg-type]
        return cls.from_arrays(
            [e.label for e in manifest.exams],
            cols["reader1"],
            cols["reader2"],
            cols["consensus"],
            scores,
            interval=[e.truth == "interval" for e in manifest.exams],
            exam_ids=[e.exam_id for e in manifest.exams],
        )
