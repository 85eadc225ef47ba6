"""Invalid-input builders: what each breaks, and that the input exam stays intact."""

from __future__ import annotations

import pytest

from harness.perturb.invalid import INVALID_BUILDERS, InvalidExam


@pytest.mark.parametrize("kind", sorted(INVALID_BUILDERS))
def test_builders_copy_and_explain(kind, exam, to_bytes):
    before = to_bytes(exam)
    invalid = INVALID_BUILDERS[kind](exam)
    assert isinstance(invalid, InvalidExam) and invalid.kind == kind
    assert invalid.reason and "\n" not in invalid.reason
    assert invalid.exam.exam_id == exam.exam_id and len(invalid.exam.images) == len(exam.images)
    assert to_bytes(exam) == before


def test_chest_cr_keeps_pixels_and_changes_identity(exam):
    out = INVALID_BUILDERS["chest_cr"](exam).exam
    for (_, ds), (_, cds) in zip(exam.images, out.images, strict=True):
        assert (cds.Modality, cds.SOPClassUID, cds.BodyPartExamined) == (
            "CR",
            "1.2.840.10008.5.1.4.1.1.1",
            "CHEST",
        )
        assert cds.file_meta.MediaStorageSOPClassUID == cds.SOPClassUID
        assert cds.PixelData == ds.PixelData
        assert "ImageLaterality" not in cds and "ViewCodeSequence" not in cds


def test_non_mammo_modality(exam):
    for _, ds in INVALID_BUILDERS["non_mammo_modality"](exam).exam.images:
        assert ds.Modality == "DX" and ds.BodyPartExamined == "HAND"
        assert ds.AnatomicRegionSequence[0].CodeMeaning == "Hand"


def test_truncated_and_missing_laterality_touch_the_first_image_only(exam):
    truncated = INVALID_BUILDERS["truncated_pixels"](exam).exam
    assert len(truncated.images[0][1].PixelData) * 2 == len(exam.images[0][1].PixelData)
    with pytest.raises(ValueError):
        truncated.images[0][1].pixel_array  # noqa: B018 - decoding is the check
    assert truncated.images[1][1].PixelData == exam.images[1][1].PixelData
    missing = INVALID_BUILDERS["missing_laterality"](exam).exam
    assert "ImageLaterality" not in missing.images[0][1]
    assert all("ImageLaterality" in ds for _, ds in missing.images[1:])
