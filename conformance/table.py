"""Per-exam view of a run: ground truth from the manifest joined with one condition's predictions.

Exams the AI could not read (``rejected``/``error``, or missing from the predictions file) are never
dropped: performance criteria count them *against* the AI (intention-to-diagnose: a missed cancer
for a cancer exam, a recall for a normal exam), and ``technical_failure_rate`` counts them too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.cases.manifest import Exam, Manifest
from harness.predictions import ORIGINAL, Prediction, is_valid_score

# Worst-case scores for unreadable exams: below/above every valid score in [0, 1].
WORST_FOR_CANCER = -1.0
WORST_FOR_NORMAL = 2.0
MISSING_REASON = "no prediction for this exam in the predictions file"


@dataclass(frozen=True)
class ExamTable:
    """Aligned arrays, one row per manifest exam (manifest order)."""

    exams: tuple[Exam, ...]
    predictions: tuple[Prediction, ...]
    labels: np.ndarray  # int8, 1 = cancer
    scores: np.ndarray  # float64, worst-case imputed where not readable
    readable: np.ndarray  # bool: status ok with a valid score in [0, 1]

    @property
    def n(self) -> int:
        return len(self.exams)

    @property
    def n_unreadable(self) -> int:
        return int((~self.readable).sum())

    def reader(self, name: str) -> np.ndarray:
        """A reader's recall decisions (1/0); a set without that read cannot be compared."""
        from conformance.outcome import NotEvaluable

        out = np.empty(self.n, dtype=np.int8)
        for i, e in enumerate(self.exams):
            if name not in e.readers:
                raise NotEvaluable(
                    f"the reference set has no {name!r} read for exam {e.exam_id} (manifest 'readers')"
                )
            out[i] = e.readers[name]
        return out

    def attribute(self, key: str) -> list[Any]:
        return [e.attributes.get(key) for e in self.exams]

    def flags(self, threshold: float) -> np.ndarray:
        """AI recall decision at an operating point: score >= threshold (unreadable: worst case)."""
        return self.scores >= threshold

    def unreadable_list(self) -> list[dict[str, Any]]:
        return [
            {"exam_id": p.exam_id, "condition": p.condition, "status": p.status, "reason": p.error}
            for p, ok in zip(self.predictions, self.readable, strict=True)
            if not ok
        ]


def build_table(
    manifest: Manifest, predictions: Iterable[Prediction], condition: str = ORIGINAL
) -> ExamTable:
    """Join the manifest with the predictions of one condition; missing exams become errors."""
    by_id: Mapping[str, Prediction] = {
        p.exam_id: p for p in predictions if p.condition == condition
    }
    preds: list[Prediction] = []
    for e in manifest.exams:
        p = by_id.get(e.exam_id)
        preds.append(
            p
            if p is not None
            else Prediction.failed(e.exam_id, condition, "error", MISSING_REASON, None)
        )
    labels = np.array([e.label for e in manifest.exams], dtype=np.int8)
    readable = np.array([p.status == "ok" and is_valid_score(p.score) for p in preds], dtype=bool)
    raw = np.array(
        [p.score if ok else np.nan for p, ok in zip(preds, readable, strict=True)], dtype=np.float64
    )
    worst = np.where(labels == 1, WORST_FOR_CANCER, WORST_FOR_NORMAL)
    scores = np.where(readable, raw, worst)
    return ExamTable(manifest.exams, tuple(preds), labels, scores, readable)


def breast_units(table: ExamTable) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
    """Breast-level labels and scores: a breast is positive if a cancer exam has a lesion on that side."""
    labels, scores, ids = [], [], []
    for e, p, ok in zip(table.exams, table.predictions, table.readable, strict=True):
        sides_with_cancer = {les.laterality for les in e.lesions} if e.label == 1 else set()
        for side in ("L", "R"):
            y = 1 if side in sides_with_cancer else 0
            s = p.breasts.get(side) if ok else None
            valid = s is not None and is_valid_score(s)
            labels.append(y)
            scores.append(float(s) if valid else (WORST_FOR_CANCER if y == 1 else WORST_FOR_NORMAL))
            ids.append((e.exam_id, side))
    return np.array(labels, dtype=np.int8), np.array(scores, dtype=np.float64), ids
