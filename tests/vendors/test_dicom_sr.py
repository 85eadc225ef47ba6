"""Parsing result reports: TID 4000 by value and by reference, TID 1500, configurable score
code, and rejection of what is not a usable report."""

from __future__ import annotations

import copy

import pytest
from dicom_testkit import make_exam
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from harness.dicomnet.sr import (
    MarkOut,
    ReportContent,
    SrError,
    parse_report,
    write_mammo_cad_sr,
    write_tid1500_sr,
)


@pytest.fixture
def images(tmp_path):
    return [ds for _, ds in make_exam(tmp_path, "E1").images]


def _content(images):
    lcc, rcc = str(images[0].SOPInstanceUID), str(images[2].SOPInstanceUID)
    return ReportContent(
        87.5,
        {"L": 87.5, "R": 12.0},
        {
            "L": [MarkOut(lcc, 10.25, 20.5, 87.5), MarkOut(lcc, 30.0, 40.0, 20.0)],
            "R": [MarkOut(rcc, 5.0, 6.0, 12.0)],
        },
    )


def test_tid4000_round_trip(images):
    rep = parse_report(write_mammo_cad_sr(images, _content(images)))
    assert rep.template == "4000" and rep.complete and rep.exam_score == 87.5
    assert rep.summary.startswith("111242")
    composites = [les for les in rep.lesions if les.kind == "composite"]
    assert sorted((c.laterality, c.score) for c in composites) == [("L", 87.5), ("R", 12.0)]
    singles = [les for les in rep.lesions if les.kind == "single"]
    assert sorted((m.x, m.y, s.score) for s in singles for m in s.marks) == [
        (5.0, 6.0, 12.0),
        (10.25, 20.5, 87.5),
        (30.0, 40.0, 20.0),
    ]
    assert all(rep.lesions[s.parent].kind == "composite" for s in singles)
    assert set(rep.image_laterality.values()) == {"L", "R"}


def test_scoord_by_reference_to_the_image_library(images):
    ds = write_mammo_cad_sr(images, _content(images))
    by_value = parse_report(ds)
    # Rewrite every SELECTED FROM IMAGE as a reference to the Image Library entry (1, 1, k).
    library = ds.ContentSequence[0].ContentSequence
    index = {
        str(item.ReferencedSOPSequence[0].ReferencedSOPInstanceUID): k
        for k, item in enumerate(library, 1)
    }

    def rewrite(item):
        for child in item.get("ContentSequence", []):
            if child.get("RelationshipType") == "SELECTED FROM" and child.ValueType == "IMAGE":
                k = index[str(child.ReferencedSOPSequence[0].ReferencedSOPInstanceUID)]
                for kw in ("ValueType", "ReferencedSOPSequence"):
                    del child[kw]
                child.ReferencedContentItemIdentifier = [1, 1, k]
            rewrite(child)

    rewrite(ds)
    by_ref = parse_report(ds)
    assert by_ref.lesions == by_value.lesions


def test_tid1500_round_trip(images):
    rep = parse_report(write_tid1500_sr(images, _content(images)))
    assert rep.template == "1500" and rep.exam_score == 87.5
    groups = [(les.laterality, les.score, len(les.marks)) for les in rep.lesions]
    assert ("L", 87.5, 0) in groups and ("R", 12.0, 0) in groups and ("L", 20.0, 1) in groups


def test_score_code_is_configurable(images):
    ds = write_mammo_cad_sr(images, _content(images))
    assert parse_report(ds, ("111012", "DCM")).exam_score is None  # not Certainty of Finding
    for item in ds.iterall():
        if item.keyword == "ConceptNameCodeSequence" and item.value[0].CodeValue == "111047":
            item.value[0].CodeValue, item.value[0].CodingSchemeDesignator = "99001", "99VENDOR"
    rep = parse_report(ds, ("99001", "99VENDOR"))
    assert rep.exam_score == 87.5 and parse_report(ds).exam_score is None


def test_partial_summary_is_flagged(images):
    c = _content(images)
    rep = parse_report(
        write_mammo_cad_sr(images, ReportContent(c.exam_score, c.breasts, c.marks, complete=False))
    )
    assert not rep.complete and rep.summary.startswith("111244")


@pytest.mark.parametrize(
    "breakage", ["not-sr", "no-content", "foreign-root", "scoord-without-image", "two-summaries"]
)
def test_unusable_reports_are_rejected(images, breakage):
    ds = write_mammo_cad_sr(images, _content(images))
    if breakage == "not-sr":
        ds = copy.deepcopy(images[0])
    elif breakage == "no-content":
        del ds.ContentSequence
    elif breakage == "foreign-root":
        ds.ConceptNameCodeSequence[0].CodeValue = "18748-4"
        ds.ConceptNameCodeSequence[0].CodingSchemeDesignator = "LN"
    elif breakage == "scoord-without-image":
        for item in ds.iterall():
            if item.keyword == "ContentSequence":
                for child in item.value:
                    if child.get("ValueType") == "SCOORD":
                        child.ContentSequence = Sequence([])
    else:
        ds.ContentSequence.append(copy.deepcopy(ds.ContentSequence[1]))
    with pytest.raises(SrError):
        parse_report(ds)


def test_empty_dataset_is_not_a_report():
    with pytest.raises(SrError, match="not a structured report"):
        parse_report(Dataset())
