"""Results as DICOM structured reports: the Mammography CAD SR (TID 4000) writer used by the
reference node, and a parser for TID 4000 and TID 1500 reports from any vendor.

What the parser extracts (a template-aware walk of the content tree, DICOM PS3.16 TID 4000 and TID 1500):

* **lesions**: CODE 111059 *Single Image Finding* and CODE 111015 *Composite Feature* (TID 4000),
  CONTAINER 125007 *Measurement Group* (TID 1500). A lesion's score is its child NUM whose concept
  is the vendor's score code (default 111047 *Probability of cancer*); its marks are its SCOORDs
  with the image they are SELECTED FROM (by value or by reference to the Image Library).
* **exam score**: a NUM with the score concept directly under CODE 111017 *CAD Processing and
  Findings Summary* (TID 4000) or under CONTAINER 126010 *Imaging Measurements* (TID 1500).
* **completeness**: the CAD Processing and Findings Summary code (111243/111244/111245 mean not
  every algorithm succeeded).

A report that is not an SR, has no content tree, or has an unknown root template is rejected
with :class:`SrError`; the adapter records that as a vendor fault.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence as DicomSequence
from pydicom.uid import generate_uid
from pydicom.valuerep import DSfloat

from harness.codes import (
    ALGORITHM_NAME,
    ALGORITHM_VERSION,
    BREAST_DENSITY_FINDING,
    BREAST_MASS,
    CAD_SUMMARY,
    CENTER,
    COMPOSITE_FEATURE,
    COMPREHENSIVE_SR,
    DETECTION_PERFORMED,
    ENGLISH,
    EXPLICIT_VR_LITTLE_ENDIAN,
    FAILED,
    FAILED_DETECTIONS,
    FINDING,
    FINDING_SITE,
    IMAGE_LATERALITY,
    IMAGE_LIBRARY,
    IMAGE_LIBRARY_GROUP,
    IMAGE_REGION,
    IMAGE_VIEW,
    IMAGING_MEASUREMENTS,
    IMPRESSION,
    INCOMPLETE_SUMMARIES,
    LANGUAGE,
    LEFT_BREAST,
    MAMMO_CAD_REPORT,
    MAMMO_CAD_SR,
    MAMMOGRAPHY,
    MEASUREMENT_GROUP,
    MEASUREMENT_REPORT,
    NOT_ATTEMPTED,
    PERCENT,
    PRESENTATION_REQUIRED,
    PROBABILITY_OF_CANCER,
    PROCEDURE_REPORTED,
    PYDICOM_IMPLEMENTATION_UID,
    RENDERING_INTENT,
    RIGHT_BREAST,
    SIDE_OF_CODE_VALUE,
    SINGLE_IMAGE_FINDING,
    SR_SOP_CLASSES,
    SUCCEEDED,
    SUCCESSFUL_DETECTIONS,
    SUMMARY_CODES,
    SUMMARY_OF_ANALYSES,
    SUMMARY_OF_DETECTIONS,
    TRACKING_ID,
    TRACKING_UID,
    VIEW_CODES,
    Code,
    code_item,
    key,
)


class SrError(ValueError):
    """A result object that is not a usable report (malformed or foreign); one-line reason."""


# --------------------------------------------------------------------------------------------
# Writing


@dataclass(frozen=True)
class MarkOut:
    """A finding the writer puts on one image: centre (column, row) in that image's pixels."""

    sop_instance_uid: str
    x: float
    y: float
    score: float  # in the report's unit (percent for 111047)


@dataclass(frozen=True)
class ReportContent:
    """What a node concluded about one study, in the report's score unit."""

    exam_score: float | None  # None: the model produced nothing (with complete=False)
    breasts: Mapping[str, float]  # "L"/"R" -> score
    marks: Mapping[str, Sequence[MarkOut]] = field(default_factory=dict)  # "L"/"R" -> marks
    complete: bool = True
    algorithm: tuple[str, str] = ("mammocert-reference", "1")


def _item(rel: str | None, vtype: str, concept: Code | None) -> Dataset:
    d = Dataset()
    if rel is not None:
        d.RelationshipType = rel
    d.ValueType = vtype
    if concept is not None:
        d.ConceptNameCodeSequence = DicomSequence([code_item(concept)])
    return d


def _container(rel: str | None, concept: Code, children: list[Dataset]) -> Dataset:
    d = _item(rel, "CONTAINER", concept)
    d.ContinuityOfContent = "SEPARATE"
    if children:
        d.ContentSequence = DicomSequence(children)
    return d


def _code(rel: str, concept: Code, value: Code, children: list[Dataset] | None = None) -> Dataset:
    d = _item(rel, "CODE", concept)
    d.ConceptCodeSequence = DicomSequence([code_item(value)])
    if children:
        d.ContentSequence = DicomSequence(children)
    return d


def _text(rel: str, concept: Code, value: str) -> Dataset:
    d = _item(rel, "TEXT", concept)
    d.TextValue = value
    return d


def _num(rel: str, concept: Code, value: float, unit: Code = PERCENT) -> Dataset:
    d = _item(rel, "NUM", concept)
    mv = Dataset()
    mv.NumericValue = DSfloat(value, auto_format=True)
    mv.MeasurementUnitsCodeSequence = DicomSequence([code_item(unit)])
    d.MeasuredValueSequence = DicomSequence([mv])
    return d


def _image(rel: str, image: Dataset, children: list[Dataset] | None = None) -> Dataset:
    d = _item(rel, "IMAGE", None)
    ref = Dataset()
    ref.ReferencedSOPClassUID = image.SOPClassUID
    ref.ReferencedSOPInstanceUID = image.SOPInstanceUID
    d.ReferencedSOPSequence = DicomSequence([ref])
    if children:
        d.ContentSequence = DicomSequence(children)
    return d


def _point(rel: str, concept: Code, x: float, y: float, image: Dataset) -> Dataset:
    d = _item(rel, "SCOORD", concept)
    d.GraphicType = "POINT"
    d.GraphicData = [float(x), float(y)]
    d.ContentSequence = DicomSequence([_image("SELECTED FROM", image)])
    return d


def _laterality(ds: Dataset) -> str:
    return str(ds.get("ImageLaterality", "") or ds.get("Laterality", "")).upper()


def _view(ds: Dataset) -> str | None:
    for item in ds.get("ViewCodeSequence", []):
        for name, code in VIEW_CODES.items():
            if item.get("CodeValue") == code.value:
                return name
    vp = str(ds.get("ViewPosition", "")).upper()
    return vp if vp in VIEW_CODES else None


def _algorithm_props(algorithm: tuple[str, str]) -> list[Dataset]:
    return [
        _text("HAS PROPERTIES", ALGORITHM_NAME, algorithm[0]),
        _text("HAS PROPERTIES", ALGORITHM_VERSION, algorithm[1]),
    ]


def _sr_header(
    images: Sequence[Dataset],
    sop_class: str,
    series_uid: str,
    series_number: int,
    manufacturer: str,
    now: _dt.datetime,
) -> Dataset:
    """Patient/study identity copied from the images; a new series and instance for the report."""
    first = images[0]
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = EXPLICIT_VR_LITTLE_ENDIAN
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.SOPClassUID = sop_class
    for kw in (
        "PatientName",
        "PatientID",
        "PatientBirthDate",
        "PatientSex",
        "StudyDate",
        "StudyTime",
        "ReferringPhysicianName",
        "StudyID",
        "AccessionNumber",
    ):
        # type 2 attributes of Patient / General Study: copied from the images, present even if empty
        setattr(ds, kw, first.get(kw, ""))
    ds.StudyInstanceUID = first.StudyInstanceUID
    for kw in ("PatientIdentityRemoved", "DeidentificationMethod"):
        if kw in first:
            ds[kw] = first[kw]
    ds.Modality = "SR"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.SeriesDescription = "AI results"
    ds.ReferencedPerformedProcedureStepSequence = DicomSequence([])
    ds.Manufacturer = manufacturer
    ds.InstanceNumber = 1
    ds.ContentDate = now.strftime("%Y%m%d")
    ds.ContentTime = now.strftime("%H%M%S")
    ds.InstanceCreationDate = ds.ContentDate
    ds.InstanceCreationTime = ds.ContentTime
    ds.CompletionFlag = "COMPLETE"
    ds.VerificationFlag = "UNVERIFIED"
    ds.SpecificCharacterSet = "ISO_IR 192"
    # Current Requested Procedure Evidence: every image the report rests on, grouped by series.
    by_series: dict[str, list[Dataset]] = {}
    for im in images:
        by_series.setdefault(str(im.SeriesInstanceUID), []).append(im)
    series_items = []
    for s_uid, ims in by_series.items():
        refs = []
        for im in ims:
            r = Dataset()
            r.ReferencedSOPClassUID = im.SOPClassUID
            r.ReferencedSOPInstanceUID = im.SOPInstanceUID
            refs.append(r)
        s = Dataset()
        s.SeriesInstanceUID = s_uid
        s.ReferencedSOPSequence = DicomSequence(refs)
        series_items.append(s)
    study = Dataset()
    study.StudyInstanceUID = first.StudyInstanceUID
    study.ReferencedSeriesSequence = DicomSequence(series_items)
    ds.CurrentRequestedProcedureEvidenceSequence = DicomSequence([study])
    ds.PerformedProcedureCodeSequence = DicomSequence([])
    return ds


def write_mammo_cad_sr(
    images: Sequence[Dataset],
    content: ReportContent,
    *,
    manufacturer: str = "mammocert",
    series_number: int = 9001,
    now: _dt.datetime | None = None,
) -> Dataset:
    """A Mammography CAD SR (TID 4000) for one study: Image Library, summary with the exam score,
    one Composite Feature per breast with the breast score, and a Single Image Finding (centre
    SCOORD on the referenced image) per mark. Scores are in percent (the unit of 111047)."""
    if not images:
        raise ValueError("a CAD report needs the study's images")
    now = now or _dt.datetime.now()
    by_uid = {str(im.SOPInstanceUID): im for im in images}
    ds = _sr_header(images, MAMMO_CAD_SR, generate_uid(), series_number, manufacturer, now)

    library = []
    for im in images:
        ctx = []
        lat = _laterality(im)
        if lat in ("L", "R"):
            ctx.append(
                _code(
                    "HAS ACQ CONTEXT", IMAGE_LATERALITY, LEFT_BREAST if lat == "L" else RIGHT_BREAST
                )
            )
        view = _view(im)
        if view:
            ctx.append(_code("HAS ACQ CONTEXT", IMAGE_VIEW, VIEW_CODES[view]))
        library.append(_image("CONTAINS", im, ctx))

    intent = _code("HAS CONCEPT MOD", RENDERING_INTENT, PRESENTATION_REQUIRED)
    impressions = []
    for side in sorted(content.breasts):
        singles = []
        for m in content.marks.get(side, ()):
            if m.sop_instance_uid not in by_uid:
                raise ValueError(f"mark on image {m.sop_instance_uid}, which is not in this study")
            singles.append(
                _code(
                    "INFERRED FROM",
                    SINGLE_IMAGE_FINDING,
                    BREAST_DENSITY_FINDING,
                    [
                        _code("HAS CONCEPT MOD", RENDERING_INTENT, PRESENTATION_REQUIRED),
                        *_algorithm_props(content.algorithm),
                        _num("HAS PROPERTIES", PROBABILITY_OF_CANCER, m.score),
                        _point("HAS PROPERTIES", CENTER, m.x, m.y, by_uid[m.sop_instance_uid]),
                    ],
                )
            )
        composite = _code(
            "CONTAINS",
            COMPOSITE_FEATURE,
            BREAST_MASS,
            [
                _code("HAS CONCEPT MOD", RENDERING_INTENT, PRESENTATION_REQUIRED),
                *_algorithm_props(content.algorithm),
                _code("HAS PROPERTIES", FINDING_SITE, LEFT_BREAST if side == "L" else RIGHT_BREAST),
                _num("HAS PROPERTIES", PROBABILITY_OF_CANCER, content.breasts[side]),
                *singles,
            ],
        )
        impressions.append(_container("INFERRED FROM", IMPRESSION, [intent, composite]))

    with_findings = bool(impressions)
    if content.exam_score is None and not content.complete:
        key = "failed"
    else:
        key = ("complete" if content.complete else "partial") + (
            "-with-findings" if with_findings else "-without-findings"
        )
    exam_num = (
        []
        if content.exam_score is None
        else [_num("HAS PROPERTIES", PROBABILITY_OF_CANCER, content.exam_score)]
    )
    summary = _code("CONTAINS", CAD_SUMMARY, SUMMARY_CODES[key], [*exam_num, *impressions])
    detections = _code(
        "CONTAINS",
        SUMMARY_OF_DETECTIONS,
        SUCCEEDED if content.complete else FAILED,
        [
            _container(
                "INFERRED FROM",
                SUCCESSFUL_DETECTIONS if content.complete else FAILED_DETECTIONS,
                [
                    _code(
                        "CONTAINS",
                        DETECTION_PERFORMED,
                        BREAST_MASS,
                        [
                            *_algorithm_props(content.algorithm),
                            *[_image("HAS PROPERTIES", im) for im in images],
                        ],
                    ),
                ],
            ),
        ],
    )
    analyses = _code("CONTAINS", SUMMARY_OF_ANALYSES, NOT_ATTEMPTED)

    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = DicomSequence([code_item(MAMMO_CAD_REPORT)])
    ds.ContinuityOfContent = "SEPARATE"
    tmpl = Dataset()
    tmpl.MappingResource = "DCMR"
    tmpl.TemplateIdentifier = "4000"
    ds.ContentTemplateSequence = DicomSequence([tmpl])
    ds.ContentSequence = DicomSequence(
        [
            _container("CONTAINS", IMAGE_LIBRARY, library),
            summary,
            detections,
            analyses,
        ]
    )
    return ds


def write_tid1500_sr(
    images: Sequence[Dataset],
    content: ReportContent,
    *,
    manufacturer: str = "mammocert",
    series_number: int = 9002,
    now: _dt.datetime | None = None,
) -> Dataset:
    """A Comprehensive SR with a TID 1500 Measurement Report: one measurement group per breast
    (Finding Site + score) and one per mark (planar ROI: Image Region POINT + score)."""
    now = now or _dt.datetime.now()
    by_uid = {str(im.SOPInstanceUID): im for im in images}
    ds = _sr_header(images, COMPREHENSIVE_SR, generate_uid(), series_number, manufacturer, now)
    groups = []
    n = 0
    for side in sorted(content.breasts):
        site = LEFT_BREAST if side == "L" else RIGHT_BREAST
        n += 1
        groups.append(
            _container(
                "CONTAINS",
                MEASUREMENT_GROUP,
                [
                    _text("HAS OBS CONTEXT", TRACKING_ID, f"breast {side}"),
                    _uidref("HAS OBS CONTEXT", TRACKING_UID, generate_uid()),
                    _code("CONTAINS", FINDING, BREAST_MASS),
                    _code("HAS CONCEPT MOD", FINDING_SITE, site),
                    _num("CONTAINS", PROBABILITY_OF_CANCER, content.breasts[side]),
                ],
            )
        )
        for m in content.marks.get(side, ()):
            n += 1
            region = _item("CONTAINS", "SCOORD", IMAGE_REGION)
            region.GraphicType = "POINT"
            region.GraphicData = [float(m.x), float(m.y)]
            region.ContentSequence = DicomSequence(
                [_image("SELECTED FROM", by_uid[m.sop_instance_uid])]
            )
            groups.append(
                _container(
                    "CONTAINS",
                    MEASUREMENT_GROUP,
                    [
                        _text("HAS OBS CONTEXT", TRACKING_ID, f"finding {n}"),
                        _uidref("HAS OBS CONTEXT", TRACKING_UID, generate_uid()),
                        _code("CONTAINS", FINDING, BREAST_DENSITY_FINDING),
                        _code("HAS CONCEPT MOD", FINDING_SITE, site),
                        region,
                        _num("CONTAINS", PROBABILITY_OF_CANCER, m.score),
                    ],
                )
            )
    library = _container(
        "CONTAINS",
        IMAGE_LIBRARY,
        [
            _container(
                "CONTAINS",
                IMAGE_LIBRARY_GROUP,
                [_image("CONTAINS", im) for im in images],
            ),
        ],
    )
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = DicomSequence([code_item(MEASUREMENT_REPORT)])
    ds.ContinuityOfContent = "SEPARATE"
    tmpl = Dataset()
    tmpl.MappingResource = "DCMR"
    tmpl.TemplateIdentifier = "1500"
    ds.ContentTemplateSequence = DicomSequence([tmpl])
    ds.ContentSequence = DicomSequence(
        [
            _code("HAS CONCEPT MOD", LANGUAGE, ENGLISH),
            _code("HAS CONCEPT MOD", PROCEDURE_REPORTED, MAMMOGRAPHY),
            library,
            _container(
                "CONTAINS",
                IMAGING_MEASUREMENTS,
                [
                    *(
                        []
                        if content.exam_score is None
                        else [_num("CONTAINS", PROBABILITY_OF_CANCER, content.exam_score)]
                    ),
                    *groups,
                ],
            ),
        ]
    )
    return ds


def _uidref(rel: str, concept: Code, uid: str) -> Dataset:
    d = _item(rel, "UIDREF", concept)
    d.UID = uid
    return d


# --------------------------------------------------------------------------------------------
# Parsing


@dataclass(frozen=True)
class Mark:
    """A SCOORD on one image: its centre (column, row) and the referenced SOP Instance UID."""

    sop_instance_uid: str
    x: float
    y: float


@dataclass(frozen=True)
class Lesion:
    """A finding of the report: kind, score (report units, None if absent), side, marks."""

    kind: str  # single | composite | group
    score: float | None
    laterality: (
        str | None
    )  # from Finding Site or the Image Library; the adapter prefers its own map
    marks: tuple[Mark, ...]
    parent: int | None = None  # index of the enclosing lesion (a Composite Feature), if any


@dataclass(frozen=True)
class ParsedReport:
    """The machine-readable content of one result report."""

    template: str  # "4000" | "1500"
    sop_instance_uid: str
    study_uid: str
    exam_score: float | None
    complete: bool
    summary: str | None  # e.g. "111242 All algorithms succeeded; with findings"
    lesions: tuple[Lesion, ...]
    image_laterality: Mapping[str, str]  # SOP UID -> L/R from the Image Library


@dataclass
class _Node:
    item: Dataset
    path: tuple[int, ...]
    children: list[_Node]


def _concept(item: Dataset) -> tuple[str, str] | None:
    seq = item.get("ConceptNameCodeSequence")
    if not seq:
        return None
    return (str(seq[0].get("CodeValue", "")), str(seq[0].get("CodingSchemeDesignator", "")))


def _value_code(item: Dataset) -> tuple[str, str, str] | None:
    seq = item.get("ConceptCodeSequence")
    if not seq:
        return None
    c = seq[0]
    return (
        str(c.get("CodeValue", "")),
        str(c.get("CodingSchemeDesignator", "")),
        str(c.get("CodeMeaning", "")),
    )


def _tree(ds: Dataset, path: tuple[int, ...] = (1,)) -> _Node:
    children = [_tree(c, path + (i,)) for i, c in enumerate(ds.get("ContentSequence", []) or [], 1)]
    return _Node(ds, path, children)


def _walk(node: _Node) -> Iterator[_Node]:
    yield node
    for c in node.children:
        yield from _walk(c)


def _num_value(item: Dataset) -> float | None:
    mv = item.get("MeasuredValueSequence")
    if not mv:
        return None
    try:
        return float(mv[0].NumericValue)
    except (AttributeError, ValueError, TypeError):
        raise SrError("a NUM content item has no numeric value") from None


def _ref_uid(item: Dataset) -> str | None:
    seq = item.get("ReferencedSOPSequence")
    if not seq:
        return None
    return str(seq[0].get("ReferencedSOPInstanceUID", "")) or None


def parse_report(
    ds: Dataset, score_code: tuple[str, str] = key(PROBABILITY_OF_CANCER)
) -> ParsedReport:
    """Parse a TID 4000 or TID 1500 report; raise :class:`SrError` for anything unusable."""
    sop_class = str(ds.get("SOPClassUID", ""))
    if sop_class not in SR_SOP_CLASSES:
        raise SrError(f"object of SOP class {sop_class or 'unknown'} is not a structured report")
    if ds.get("ValueType") != "CONTAINER" or "ContentSequence" not in ds:
        raise SrError("structured report has no root CONTAINER with content")
    root_concept = _concept(ds)
    if root_concept == key(MAMMO_CAD_REPORT):
        template = "4000"
    elif root_concept == key(MEASUREMENT_REPORT):
        template = "1500"
    else:
        raise SrError(
            f"foreign report: root concept {root_concept} is neither TID 4000 (111036) nor TID 1500 (126000)"
        )
    study_uid = str(ds.get("StudyInstanceUID", ""))
    if not study_uid:
        raise SrError("structured report has no Study Instance UID")
    root = _tree(ds)
    by_path = {n.path: n for n in _walk(root)}

    def image_of(node: _Node) -> str | None:
        """The SOP UID a SCOORD is SELECTED FROM: an IMAGE child, or a by-reference item."""
        for c in node.children:
            if c.item.get("RelationshipType") != "SELECTED FROM":
                continue
            if c.item.get("ValueType") == "IMAGE":
                return _ref_uid(c.item)
            ref = c.item.get("ReferencedContentItemIdentifier")
            if ref is not None:
                parts = list(ref) if isinstance(ref, MultiValue | list | tuple) else [ref]
                target = by_path.get(tuple(int(v) for v in parts))
                if target is None or target.item.get("ValueType") != "IMAGE":
                    raise SrError(f"SCOORD refers to content item {parts} which is not an IMAGE")
                return _ref_uid(target.item)
        return None

    def marks_of(node: _Node) -> list[Mark]:
        out = []
        for c in node.children:
            if c.item.get("ValueType") != "SCOORD":
                continue
            # GraphicData is float32 (FL): take the shortest decimal that round-trips in float32,
            # so a writer's 21.67 reads back as 21.67, not 21.670000076.
            data = [float(str(np.float32(v))) for v in (c.item.get("GraphicData") or [])]
            if len(data) < 2 or len(data) % 2:
                raise SrError("a SCOORD has no (column, row) pairs")
            uid = image_of(c)
            if uid is None:
                raise SrError("a SCOORD is not SELECTED FROM an image")
            xs, ys = data[0::2], data[1::2]
            if (
                c.item.get("GraphicType") in ("POLYLINE", "POLYGON")
                and len(xs) > 1
                and (xs[0], ys[0]) == (xs[-1], ys[-1])
            ):
                xs, ys = xs[:-1], ys[:-1]  # closed outline: do not count the repeated vertex twice
            out.append(Mark(uid, sum(xs) / len(xs), sum(ys) / len(ys)))
        return out

    def score_of(node: _Node) -> float | None:
        for c in node.children:
            if c.item.get("ValueType") == "NUM" and _concept(c.item) == score_code:
                return _num_value(c.item)
        return None

    def site_of(node: _Node) -> str | None:
        for c in node.children:
            if _concept(c.item) == key(FINDING_SITE):
                v = _value_code(c.item)
                if v and v[0] in SIDE_OF_CODE_VALUE:
                    return SIDE_OF_CODE_VALUE[v[0]]
        return None

    image_lat: dict[str, str] = {}
    for n in _walk(root):
        if n.item.get("ValueType") == "IMAGE":
            uid = _ref_uid(n.item)
            for c in n.children:
                if _concept(c.item) == key(IMAGE_LATERALITY):
                    v = _value_code(c.item)
                    if v and uid:
                        image_lat[uid] = SIDE_OF_CODE_VALUE.get(v[0], "")

    lesions: list[Lesion] = []
    exam_score: float | None = None
    summary: str | None = None
    complete = True

    def collect(node: _Node, parent: int | None) -> None:
        concept = _concept(node.item)
        vtype = node.item.get("ValueType")
        here = parent
        kind = None
        if template == "4000" and vtype == "CODE" and concept == key(SINGLE_IMAGE_FINDING):
            kind = "single"
        elif template == "4000" and vtype == "CODE" and concept == key(COMPOSITE_FEATURE):
            kind = "composite"
        elif template == "1500" and vtype == "CONTAINER" and concept == key(MEASUREMENT_GROUP):
            kind = "group"
        if kind is not None:
            marks = marks_of(node)
            lat = site_of(node)
            lesions.append(Lesion(kind, score_of(node), lat, tuple(marks), parent))
            here = len(lesions) - 1
        for c in node.children:
            collect(c, here)

    if template == "4000":
        summaries = [n for n in root.children if _concept(n.item) == key(CAD_SUMMARY)]
        if len(summaries) != 1:
            raise SrError(
                f"TID 4000 report has {len(summaries)} CAD Processing and Findings Summary items, expected 1"
            )
        s = summaries[0]
        v = _value_code(s.item)
        if v is None:
            raise SrError("CAD Processing and Findings Summary has no coded value")
        summary = f"{v[0]} {v[2]}".strip()
        complete = v[0] not in INCOMPLETE_SUMMARIES
        exam_score = score_of(s)
    else:
        meas = [n for n in root.children if _concept(n.item) == key(IMAGING_MEASUREMENTS)]
        if meas:
            exam_score = score_of(meas[0])
    collect(root, None)
    return ParsedReport(
        template,
        str(ds.get("SOPInstanceUID", "")),
        study_uid,
        exam_score,
        complete,
        summary,
        tuple(lesions),
        image_lat,
    )
