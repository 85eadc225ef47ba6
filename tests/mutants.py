"""Known-defective vendors built from the reference model, each a wrapper around the real ONNX
adapter, with the criteria that must catch it (the suite proves itself)."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import random
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from harness.exam_input import ExamInput
from harness.predictions import ExamOutput
from harness.vendors.adapter import AdapterInfo


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
        # Still an ONNX package: its inputs are checked and built by the harness, so input
        # rejection is not judged for it (an ONNX vendor that "scores a chest CR" cannot exist;
        # tests/conformance/test_input_rejection.py judges products that receive DICOM).
        self.harness_checks_input = getattr(inner, "harness_checks_input", False)

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


_first_reads_of: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def first_read(inner: Any, what: str, exam_id: str, value: float) -> float:
    """``value`` at this adapter's first read of the exam (the session reads every original
    before any perturbation, so that is the unperturbed exam's); per adapter, as the sleeper's."""
    return _first_reads_of.setdefault(inner, {}).setdefault((what, exam_id), value)


def contrast_fragile(inner, prepared):
    """Good except that its scores follow the mean presentation brightness the model sees: 15
    score units per unit of mean away from the exam's first read, so a clinical display gamma
    (about +-0.03 in the mean) moves a score by about +-0.45 and flips recall decisions; at the
    original display its scores are the base's."""
    exam, p = prepared
    mean = float(np.mean([b.tensor.mean() for b in p.batches]))
    shift = 15.0 * (mean - first_read(inner, "mean", exam.exam_id, mean))
    out = inner.infer(p)
    if shift == 0.0:
        return out
    return _with(out, {k: min(1.0, max(0.0, v + shift)) for k, v in out.breasts.items()})


def fine_scale_noise(exam: ExamInput) -> float:
    """Quantum noise relative to anatomy in an exam's presentation pixels (median over images):
    the white-noise part of the finest pixel differences, (E[d1^2] - E[d2^2] / 4) / 1.5 for
    horizontal differences at lags 1 and 2 (smooth structure cancels to first order, white noise
    of variance s^2 gives 1.5 s^2), over the mean square lag-8 difference inside the breast. A
    display gamma or window scales both, so only added noise moves it much. The phantom's own
    noise differs from exam to exam by more than half a dose adds, so the mutant compares each
    exam with its own first read."""
    from harness.pixels import presentation_pixels

    values = []
    for _ref, ds in exam.images:
        p = presentation_pixels(ds)
        inside = (p[:, 8:] > 0.05) & (p[:, :-8] > 0.05)
        d1 = (p[:, 1:-7] - p[:, :-8])[inside]
        d2 = (p[:, 2:-6] - p[:, :-8])[inside]
        d8 = (p[:, 8:] - p[:, :-8])[inside]
        fine = max(0.0, (float(np.mean(d1**2)) - float(np.mean(d2**2)) / 4) / 1.5)
        values.append(fine / max(float(np.mean(d8**2)), 1e-12))
    return float(np.median(values))


DOSE_BAND = 0.35  # breast scores this close to the operating point follow the noise
DOSE_FULL_EFFECT = 0.02  # relative rise of fine-scale noise at which they have crossed over
DOSE_OPERATING_POINT = 0.6685  # tests/assets/reference-2.0.0/vendor.yaml


def dose_fragile(inner, prepared):
    """Good except that its recall decisions flip under lower dose: when an exam is noisier than
    at its first read, breast scores within DOSE_BAND of the operating point move towards their
    mirror image across it, all the way once the fine-scale noise has risen by 2 % (half and
    three-quarter dose exceed that; a dose of 0.99 does not). Far from the threshold, and at full
    dose, its scores are the base's. A display gamma of 1.25 raises the measure too, so
    DK-DEC-INTENSITY also catches it on the certify set; DK-DEC-NOISE is the one that must."""
    exam, p = prepared
    out = inner.infer(p)
    level = fine_scale_noise(exam)
    first = first_read(inner, "noise", exam.exam_id, level)
    rise = level / first - 1.0 if first > 0 else 0.0
    excess = min(1.0, max(0.0, rise) / DOSE_FULL_EFFECT)
    if excess == 0.0:
        return out
    op = DOSE_OPERATING_POINT

    def moved(v: float) -> float:
        if abs(v - op) >= DOSE_BAND:
            return v
        across = op - (v - op) - (0.01 if v >= op else -0.01)
        return min(1.0, max(0.0, v + excess * (across - v)))

    return _with(out, {k: moved(v) for k, v in out.breasts.items()})


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
    MutantSpec("contrast-fragile", None, contrast_fragile, ("DK-DEC-INTENSITY",)),
    MutantSpec("dose-fragile", None, dose_fragile, ("DK-DEC-NOISE",)),
)


def _prepare_with_exam(inner, exam):
    return exam, inner.prepare(exam)


def wrap(spec: MutantSpec, inner: Any) -> Mutant:
    return Mutant(inner, spec.name, spec.prepare or _prepare_with_exam, spec.infer)


def mutant_bundle(
    spec: MutantSpec | None, vendor: Path, standard: Path, cases: Path, out: Path, mode: str
) -> dict:
    """An evidence bundle of ``vendor`` with the mutant ``spec`` (None: the package itself) in
    ``out``, made by the engine with the mutant's adapter injected around the package's own;
    returns its results.json."""
    from conformance.engine import RunRequest, run
    from harness.vendors import load_vendor_package, open_adapter

    adapter = open_adapter(load_vendor_package(vendor))
    if spec is not None:
        adapter = wrap(spec, adapter)
    request = RunRequest(standard=standard, cases=cases, out=out, mode=mode, vendor=Path(vendor))
    run(request, adapter=adapter)
    return json.loads((out / "results.json").read_text(encoding="utf-8"))


def by_name(name: str) -> MutantSpec:
    return next(m for m in MUTANTS if m.name == name)


if __name__ == "__main__":
    # A bundle of one mutant, for the documentation (README.md, "For national bodies and
    # regions"): python tests/mutants.py NAME VENDOR STANDARD CASES OUT [MODE]
    import sys

    name, vendor, standard, cases, out, *rest = sys.argv[1:]
    res = mutant_bundle(
        by_name(name), Path(vendor), Path(standard), Path(cases), Path(out), *(rest or ["certify"])
    )
    print(res["verdict"], {c["id"]: c["outcome"] for c in res["criteria"]})
