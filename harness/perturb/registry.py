"""The registry of metamorphic relations, and condition ids back to transforms.

``RELATIONS`` maps a relation's name to its :class:`~harness.perturb.relation.Relation`.
``parse_condition`` turns a condition id (as written to predictions.jsonl) back into the relation
and its parameters, and ``apply_condition`` has the runner's transform signature
``(exam, condition) -> exam``, so ``run_predictions(..., transform=apply_condition)`` runs any
mix of conditions.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from harness.errors import UsageError
from harness.exam_input import ExamInput
from harness.perturb import strategies
from harness.perturb.encoding import EncodingParams, apply_encoding
from harness.perturb.intensity import IntensityParams, apply_intensity
from harness.perturb.lesion import LesionParams, apply_lesion
from harness.perturb.metadata import MetadataParams, apply_metadata
from harness.perturb.mirror import MirrorParams, apply_mirror
from harness.perturb.noise import NoiseParams, apply_noise
from harness.perturb.order import OrderParams, apply_order
from harness.perturb.relation import Relation, check_raised, check_swapped, check_unchanged
from harness.perturb.resample import ResampleParams, apply_resample

RELATIONS: dict[str, Relation[Any]] = {
    r.name: r
    for r in (
        Relation(
            "mirror",
            "invariant",
            "mirrored images with swapped laterality: breast scores swap sides, exam score unchanged",
            MirrorParams,
            apply_mirror,
            strategies.mirror_params(),
            check_swapped,
        ),
        Relation(
            "metadata",
            "invariant",
            "new dummy patient identity, UIDs, accession number, site and shifted dates: output unchanged",
            MetadataParams,
            apply_metadata,
            strategies.metadata_params(),
            check_unchanged,
        ),
        Relation(
            "encoding",
            "invariant",
            "another lossless transfer syntax or MONOCHROME1/2 with identical presentation pixels: output unchanged",
            EncodingParams,
            apply_encoding,
            strategies.encoding_params(),
            check_unchanged,
        ),
        Relation(
            "order",
            "invariant",
            "the exam's images in another order: output unchanged",
            OrderParams,
            apply_order,
            strategies.order_params(),
            check_unchanged,
        ),
        Relation(
            "intensity",
            "tolerance",
            "display gamma 0.8-1.25, window width +-15 %, centre +-10 % of the width: score change within tolerance",
            IntensityParams,
            apply_intensity,
            strategies.intensity_params(),
            check_unchanged,
            at_level=lambda level: IntensityParams(gamma=float(level)),
        ),
        Relation(
            "noise",
            "tolerance",
            "quantum noise of a lower dose (50-100 %): score change within tolerance",
            NoiseParams,
            apply_noise,
            strategies.noise_params(),
            check_unchanged,
            at_level=lambda level: NoiseParams(dose=float(level)),
        ),
        Relation(
            "resample",
            "tolerance",
            "another detector pitch within 0.05-0.1 mm: score change within tolerance",
            ResampleParams,
            apply_resample,
            strategies.resample_params(),
            check_unchanged,
            at_level=lambda level: ResampleParams(spacing_mm=float(level)),
        ),
        Relation(
            "lesion_insertion",
            "directional",
            "a synthetic mass or calcification cluster inserted into one breast of a normal exam: that breast's score rises, the exam score does not fall",
            LesionParams,
            apply_lesion,
            strategies.lesion_params(),
            check_raised,
            at_level=lambda level: LesionParams(kind="mass", size_mm=10.0, contrast=float(level)),
        ),
    )
}


def _parse_value(where: str, text: str, kind: Any) -> Any:
    try:
        if kind is bool:
            if text not in ("0", "1"):
                raise ValueError(text)
            return text == "1"
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
        return text
    except ValueError:
        raise UsageError(f"condition {where}: {text!r} is not a valid {kind.__name__}") from None


def parse_condition(condition: str) -> tuple[Relation[Any], Any]:
    """``'intensity:center_shift=0.0,gamma=0.9,width_scale=1.0'`` -> (relation, IntensityParams)."""
    name, _, body = condition.partition(":")
    relation = RELATIONS.get(name)
    if relation is None:
        raise UsageError(
            f"condition {condition!r}: unknown relation {name!r}; use one of {', '.join(RELATIONS)}"
        )
    hints = typing.get_type_hints(relation.params_type)
    names = {f.name for f in dataclasses.fields(relation.params_type)}
    values: dict[str, Any] = {}
    for pair in filter(None, body.split(",")):
        key, eq, text = pair.partition("=")
        if not eq or key not in names or key in values:
            raise UsageError(
                f"condition {condition!r}: bad parameter {pair!r}; {name} takes {', '.join(sorted(names)) or 'no parameters'}"
            )
        values[key] = _parse_value(f"{condition!r}.{key}", text, hints[key])
    try:
        params = relation.params_type(**values)
    except ValueError as exc:
        raise UsageError(f"condition {condition!r}: {exc}") from None
    return relation, params


def apply_condition(exam: ExamInput, condition: str) -> ExamInput:
    """The runner's transform: apply the perturbation a condition id names."""
    relation, params = parse_condition(condition)
    return relation.apply(exam, params)
