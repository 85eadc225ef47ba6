"""Known-defective vendors built from the reference model, each a wrapper around the real ONNX
adapter, with the criteria that must catch it (the suite proves itself)."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import random
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.exam_input import ExamInput
from harness.predictions import ExamOutput
from harness.vendors.adapter import AdapterInfo

DM_FOR_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.2"


class Mutant:
    """A vendor adapter that wraps the reference adapter and breaks one property."""

    def __init__(
        self, inner: Any, name: str, prepare: Callable | None = None, infer: Callable | None = None
    ) -> None:
        self.inner = inner
        self.name = name
        self._prepare = prepare
        self._infer = infer
        # A mutant is another model: its own digest, so no journal row of the reference is reused.
        digests = dict(inner.info.model_digests)
        digests[f"mutant-{name}"] = hashlib.sha256(name.encode()).hexdigest()
        self.info = AdapterInfo(
            inner.info.interface, digests, inner.info.execution_provider, inner.info.batchable
        )

    def prepare(self, exam: ExamInput) -> Any:
        return (
            self._prepare(self.inner, exam) if self._prepare else (exam, self.inner.prepare(exam))
        )

    def infer(self, prepared: Any) -> ExamOutput:
        if self._infer:
            return self._infer(self.inner, prepared)
        return self.inner.infer(prepared[1])

    def close(self) -> None:
        self.inner.close()


def _with(out: ExamOutput, breasts: dict[str, float]) -> ExamOutput:
    return dataclasses.replace(out, breasts=breasts, score=max(breasts.values()))


def laterality_bias(inner, prepared):
    out = inner.infer(prepared[1])
    return _with(out, {k: (min(1.0, v + 0.3) if k == "L" else v) for k, v in out.breasts.items()})


def memorizer(inner, prepared):
    exam, p = prepared
    uid = str(exam.images[0][1].StudyInstanceUID)
    memory = int(hashlib.sha256(uid.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    out = inner.infer(p)
    return _with(out, {k: 0.5 * v + 0.5 * memory for k, v in out.breasts.items()})


_noise = random.Random()  # deliberately unseeded: a random op in the model


def noisy(inner, prepared):
    out = inner.infer(prepared[1])
    return _with(
        out, {k: min(1.0, max(0.0, v + _noise.gauss(0, 0.02))) for k, v in out.breasts.items()}
    )


def ignores_photometric(inner, exam):
    images = []
    for ref, ds in exam.images:
        if ds.get("PhotometricInterpretation") == "MONOCHROME1":
            ds = copy.deepcopy(ds)
            ds.PhotometricInterpretation = (
                "MONOCHROME2"  # reads inverted images as if they were not
            )
        images.append((ref, ds))
    return exam, inner.prepare(ExamInput(exam.exam_id, tuple(images)))


_first_reads: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def sleeper(inner, prepared):
    """Slow on the first read of each exam (a cold start per study): every exam of the session's
    own predictions, which is what DK-LAT-01 times, waits 1.5 s. Later reads of the same exam (the
    relations, determinism) are fast only to keep the matrix cheap."""
    exam, p = prepared
    seen = _first_reads.setdefault(inner, set())
    if exam.exam_id not in seen:
        seen.add(exam.exam_id)
        time.sleep(1.5)
    return inner.infer(p)


def crasher(inner, prepared):
    exam, p = prepared
    if int(hashlib.sha256(exam.exam_id.encode()).hexdigest(), 16) % 4 == 0:
        raise RuntimeError("segmentation fault in postprocessing")
    return inner.infer(p)


def constant(inner, prepared):
    return ExamOutput(score=0.5, breasts={"L": 0.5, "R": 0.5}, findings=())


def scores_anything(inner, exam):
    """Checks nothing: any image is taken for a mammogram, a missing side or view is guessed."""
    images = []
    for ref, ds in exam.images:
        ds = copy.deepcopy(ds)
        ds.SOPClassUID = DM_FOR_PRESENTATION
        ds.Modality = "MG"
        if not ds.get("ImageLaterality"):
            ds.ImageLaterality = ref.laterality
        if not ds.get("ViewPosition"):
            ds.ViewPosition = ref.view
        images.append((ref, ds))
    return exam, inner.prepare(ExamInput(exam.exam_id, tuple(images)))


def contrast_fragile(inner, prepared):
    exam, p = prepared
    mean = float(np.mean([b.tensor.mean() for b in p.batches]))
    out = inner.infer(p)
    return _with(
        out, {k: min(1.0, max(0.0, v + 15.0 * (mean - 0.25))) for k, v in out.breasts.items()}
    )


@dataclass(frozen=True)
class MutantSpec:
    name: str
    prepare: Callable | None
    infer: Callable | None
    must_fail: tuple[str, ...]  # criterion ids that must catch it


MUTANTS = (
    MutantSpec("laterality-bias", None, laterality_bias, ("DK-INV-MIRROR",)),
    MutantSpec("memorizer", None, memorizer, ("DK-INV-METADATA", "DK-CACHE-01")),
    MutantSpec("random-noise", None, noisy, ("DK-DET-01",)),
    MutantSpec("ignores-photometric", ignores_photometric, None, ("DK-INV-ENCODING",)),
    MutantSpec("sleeper", None, sleeper, ("DK-LAT-01",)),
    MutantSpec("crasher", None, crasher, ("DK-TFR-01",)),
    MutantSpec("constant", None, constant, ("DK-DEGEN-01", "DK-AUC-01")),
    MutantSpec("scores-chest-cr", scores_anything, None, ("DK-REJ-01",)),
    MutantSpec("contrast-fragile", None, contrast_fragile, ("DK-INV-INTENSITY",)),
)


def _prepare_with_exam(inner, exam):
    return exam, inner.prepare(exam)


def wrap(spec: MutantSpec, inner: Any) -> Mutant:
    return Mutant(inner, spec.name, spec.prepare or _prepare_with_exam, spec.infer)
