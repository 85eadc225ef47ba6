"""harness.codes against the standard: every value below is typed from PS3.16 / PS3.6 / PS3.4,
independently of pydicom's tables, so a table change (or a wrong pick from it) shows here. The
meanings are the ones mammocert writes; changing one changes the reference set's digest and the
SR that nodes and parsers see."""

from __future__ import annotations

import pytest

from harness import codes

# (value, scheme designator, meaning) as written, per concept (PS3.16 DCM / SNOMED CT / UCUM).
CONCEPTS = {
    # views (CID 4014), anatomy and side (CID 4013, CID 6022)
    "BREAST": ("76752008", "SCT", "Breast"),
    "HAND": ("85562004", "SCT", "Hand"),
    "LEFT_BREAST": ("80248007", "SCT", "Left breast"),
    "RIGHT_BREAST": ("73056007", "SCT", "Right breast"),
    # TID 4000 Mammography CAD
    "MAMMO_CAD_REPORT": ("111036", "DCM", "Mammography CAD Report"),
    "IMAGE_LIBRARY": ("111028", "DCM", "Image Library"),
    "CAD_SUMMARY": ("111017", "DCM", "CAD Processing and Findings Summary"),
    "IMPRESSION": ("111034", "DCM", "Individual Impression/Recommendation"),
    "RENDERING_INTENT": ("111056", "DCM", "Rendering Intent"),
    "PRESENTATION_REQUIRED": (
        "111150",
        "DCM",
        "Presentation Required: Rendering device is expected to present",
    ),
    "COMPOSITE_FEATURE": ("111015", "DCM", "Composite Feature"),
    "SINGLE_IMAGE_FINDING": ("111059", "DCM", "Single Image Finding"),
    "BREAST_MASS": ("129788004", "SCT", "Mammographic breast mass"),
    "BREAST_DENSITY_FINDING": ("129793001", "SCT", "Mammography breast density"),
    "PROBABILITY_OF_CANCER": ("111047", "DCM", "Probability of cancer"),
    "CERTAINTY_OF_FINDING": ("111012", "DCM", "Certainty of Finding"),
    "CENTER": ("111010", "DCM", "Center"),
    "OUTLINE": ("111041", "DCM", "Outline"),
    "IMAGE_REGION": ("111030", "DCM", "Image Region"),
    "ALGORITHM_NAME": ("111001", "DCM", "Algorithm Name"),
    "ALGORITHM_VERSION": ("111003", "DCM", "Algorithm Version"),
    "IMAGE_LATERALITY": ("111027", "DCM", "Image Laterality"),
    "IMAGE_VIEW": ("111031", "DCM", "Image View"),
    "FINDING_SITE": ("363698007", "SCT", "Finding Site"),
    "SUMMARY_OF_DETECTIONS": ("111064", "DCM", "Summary of Detections"),
    "SUMMARY_OF_ANALYSES": ("111065", "DCM", "Summary of Analyses"),
    "SUCCESSFUL_DETECTIONS": ("111063", "DCM", "Successful Detections"),
    "FAILED_DETECTIONS": ("111025", "DCM", "Failed Detections"),
    "DETECTION_PERFORMED": ("111022", "DCM", "Detection Performed"),
    "SUCCEEDED": ("111222", "DCM", "Succeeded"),
    "FAILED": ("111224", "DCM", "Failed"),
    "NOT_ATTEMPTED": ("111225", "DCM", "Not Attempted"),
    # TID 1500 Measurement Report
    "MEASUREMENT_REPORT": ("126000", "DCM", "Imaging Measurement Report"),
    "LANGUAGE": ("121049", "DCM", "Language of Content Item and Descendants"),
    "ENGLISH": ("en-US", "RFC5646", "English (United States)"),
    "PROCEDURE_REPORTED": ("121058", "DCM", "Procedure reported"),
    "MAMMOGRAPHY": ("71651007", "SCT", "Mammography"),
    "IMAGE_LIBRARY_GROUP": ("126200", "DCM", "Image Library Group"),
    "IMAGING_MEASUREMENTS": ("126010", "DCM", "Imaging Measurements"),
    "MEASUREMENT_GROUP": ("125007", "DCM", "Measurement Group"),
    "TRACKING_ID": ("112039", "DCM", "Tracking Identifier"),
    "TRACKING_UID": ("112040", "DCM", "Tracking Unique Identifier"),
    "FINDING": ("121071", "DCM", "Finding"),
    "PERCENT": ("%", "UCUM", "percent"),
}

# PS3.6 Annex A / PS3.4 Annex B
SOP_CLASSES = {
    "MG_FOR_PRESENTATION": "1.2.840.10008.5.1.4.1.1.1.2",
    "MG_FOR_PROCESSING": "1.2.840.10008.5.1.4.1.1.1.2.1",
    "CR_IMAGE_STORAGE": "1.2.840.10008.5.1.4.1.1.1",
    "DX_FOR_PRESENTATION_STORAGE": "1.2.840.10008.5.1.4.1.1.1.1",
    "MAMMO_CAD_SR": "1.2.840.10008.5.1.4.1.1.88.50",
    "COMPREHENSIVE_SR": "1.2.840.10008.5.1.4.1.1.88.33",
    "COMPREHENSIVE_3D_SR": "1.2.840.10008.5.1.4.1.1.88.34",
    "ENHANCED_SR": "1.2.840.10008.5.1.4.1.1.88.22",
    "BASIC_TEXT_SR": "1.2.840.10008.5.1.4.1.1.88.11",
    "SECONDARY_CAPTURE": "1.2.840.10008.5.1.4.1.1.7",
    "GRAYSCALE_SOFTCOPY_PRESENTATION_STATE": "1.2.840.10008.5.1.4.1.1.11.1",
    "ENCAPSULATED_PDF": "1.2.840.10008.5.1.4.1.1.104.1",
    "SEGMENTATION": "1.2.840.10008.5.1.4.1.1.66.4",
    "PARAMETRIC_MAP": "1.2.840.10008.5.1.4.1.1.30",
    "KEY_OBJECT_SELECTION": "1.2.840.10008.5.1.4.1.1.88.59",
    "VERIFICATION": "1.2.840.10008.1.1",
    "STUDY_ROOT_FIND": "1.2.840.10008.5.1.4.1.2.2.1",
    "STUDY_ROOT_GET": "1.2.840.10008.5.1.4.1.2.2.3",
    # transfer syntaxes (PS3.5 Section 10, Annex A)
    "EXPLICIT_VR_LITTLE_ENDIAN": "1.2.840.10008.1.2.1",
    "IMPLICIT_VR_LITTLE_ENDIAN": "1.2.840.10008.1.2",
    "JPEG2000_LOSSLESS": "1.2.840.10008.1.2.4.90",
}


@pytest.mark.parametrize("name", sorted(CONCEPTS))
def test_concept_is_the_standards(name):
    code = getattr(codes, name)
    assert (code.value, code.scheme_designator, code.meaning) == CONCEPTS[name]
    assert code.scheme_version is None  # nothing writes a Coding Scheme Version


@pytest.mark.parametrize("name", sorted(SOP_CLASSES))
def test_uid_is_the_standards(name):
    assert str(getattr(codes, name)) == SOP_CLASSES[name]


def test_view_codes():
    assert {v: (c.value, c.scheme_designator, c.meaning) for v, c in codes.VIEW_CODES.items()} == {
        "CC": ("399162004", "SCT", "cranio-caudal"),
        "MLO": ("399368009", "SCT", "medio-lateral oblique"),
    }
    # SCT and the legacy SNOMED-RT values (PS3.16 Annex O) both name the view
    assert dict(codes.VIEW_OF_CODE_VALUE) == {
        "399162004": "CC",
        "R-10242": "CC",
        "399368009": "MLO",
        "R-10226": "MLO",
    }


def test_laterality_and_summaries():
    assert dict(codes.SIDE_OF_CODE_VALUE) == {"80248007": "L", "73056007": "R"}
    assert {k: c.value for k, c in codes.SUMMARY_CODES.items()} == {
        "complete-without-findings": "111241",
        "complete-with-findings": "111242",
        "partial-without-findings": "111243",
        "partial-with-findings": "111244",
        "failed": "111245",
    }
    assert codes.SUMMARY_CODES["complete-with-findings"].meaning == (
        "All algorithms succeeded; with findings"
    )
    assert codes.INCOMPLETE_SUMMARIES == {"111243", "111244", "111245"}


def test_sop_class_groups():
    assert set(codes.SR_SOP_CLASSES) == {
        SOP_CLASSES[n]
        for n in (
            "MAMMO_CAD_SR",
            "COMPREHENSIVE_SR",
            "COMPREHENSIVE_3D_SR",
            "ENHANCED_SR",
            "BASIC_TEXT_SR",
        )
    }
    assert set(codes.SR_SOP_CLASSES) <= set(codes.RESULT_SOP_CLASSES)
    assert len(set(codes.RESULT_SOP_CLASSES)) == len(codes.RESULT_SOP_CLASSES) == 11
    assert set(codes.MAMMO_SOP_CLASSES) == {
        SOP_CLASSES["MG_FOR_PRESENTATION"],
        SOP_CLASSES["MG_FOR_PROCESSING"],
    }
    # plain-string membership works (received UIDs are str)
    assert "1.2.840.10008.5.1.4.1.1.88.50" in codes.SR_SOP_CLASSES


def test_code_item_and_key():
    item = codes.code_item(codes.VIEW_CODES["CC"])
    assert (item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning) == (
        "399162004",
        "SCT",
        "cranio-caudal",
    )
    assert "CodingSchemeVersion" not in item
    assert codes.key(codes.PROBABILITY_OF_CANCER) == ("111047", "DCM")


def test_is_dicom_defined():
    assert codes.is_dicom_defined("1.2.840.10008.5.1.4.1.1.1.2")
    assert not codes.is_dicom_defined("2.25.229395410564937402719307722125096131717")
    assert not codes.is_dicom_defined("1.2.840.100081")  # not under the root, only alike
