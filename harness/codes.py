"""Coded concepts and UIDs: the one place mammocert takes them from.

Everything here comes from the tables pydicom and pynetdicom generate from the DICOM standard:
coded concepts from :data:`pydicom.sr.codedict.codes` (PS3.16), storage SOP classes and transfer
syntaxes from :mod:`pydicom.uid` (PS3.6 Annex A), service SOP classes from
:mod:`pynetdicom.sop_class` (PS3.4). Where the table's Code Meaning differs from what mammocert
has always written, the concept is taken from the table and only its meaning is overridden
(:func:`_as_written`), so the objects mammocert writes (and the reference set's digest) stay
byte-identical. The one concept no table holds is defined here, naming the standard's table.

Codes are :class:`pydicom.sr.coding.Code` named tuples ``(value, scheme_designator, meaning,
scheme_version)``; :func:`code_item` turns one into a code sequence item and :func:`key` gives
the ``(value, scheme designator)`` pair a parser compares.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from pydicom import uid as _uid
from pydicom.dataset import Dataset
from pydicom.sr._snomed_dict import mapping as _snomed_mapping
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code
from pynetdicom import sop_class as _sop_class

__all__ = ["Code", "code_item", "key", "is_dicom_defined"]

_DCM, _SCT, _UCUM = codes.DCM, codes.SCT, codes.UCUM


def _as_written(code: Code, meaning: str) -> Code:
    """``code`` from the table with the Code Meaning mammocert writes (kept byte-for-byte)."""
    return code._replace(meaning=meaning)


def key(code: Code) -> tuple[str, str]:
    """(Code Value, Coding Scheme Designator): what identifies a concept when parsing."""
    return (code.value, code.scheme_designator)


def code_item(code: Code) -> Dataset:
    """A code sequence item: Code Value, Coding Scheme Designator, Code Meaning (and Coding
    Scheme Version when the code has one)."""
    d = Dataset()
    d.CodeValue = code.value
    d.CodingSchemeDesignator = code.scheme_designator
    if code.scheme_version:
        d.CodingSchemeVersion = code.scheme_version
    d.CodeMeaning = code.meaning
    return d


def is_dicom_defined(uid: str) -> bool:
    """Whether ``uid`` is under the DICOM root 1.2.840.10008 (SOP classes, transfer syntaxes,
    coding schemes): pydicom's :attr:`pydicom.uid.UID.is_private` negated."""
    return not _uid.UID(str(uid)).is_private


# --------------------------------------------------------------------------------------------
# SOP classes (PS3.4 Annex B; UIDs from PS3.6 Annex A)

MG_FOR_PRESENTATION = _uid.DigitalMammographyXRayImageStorageForPresentation
MG_FOR_PROCESSING = _uid.DigitalMammographyXRayImageStorageForProcessing
CR_IMAGE_STORAGE = _uid.ComputedRadiographyImageStorage
DX_FOR_PRESENTATION_STORAGE = _uid.DigitalXRayImageStorageForPresentation
MAMMO_CAD_SR = _uid.MammographyCADSRStorage
COMPREHENSIVE_SR = _uid.ComprehensiveSRStorage
COMPREHENSIVE_3D_SR = _uid.Comprehensive3DSRStorage
ENHANCED_SR = _uid.EnhancedSRStorage
BASIC_TEXT_SR = _uid.BasicTextSRStorage
SECONDARY_CAPTURE = _uid.SecondaryCaptureImageStorage
GRAYSCALE_SOFTCOPY_PRESENTATION_STATE = _uid.GrayscaleSoftcopyPresentationStateStorage
ENCAPSULATED_PDF = _uid.EncapsulatedPDFStorage
SEGMENTATION = _uid.SegmentationStorage
PARAMETRIC_MAP = _uid.ParametricMapStorage
KEY_OBJECT_SELECTION = _uid.KeyObjectSelectionDocumentStorage

# The mammography image SOP classes a model accepts, with the name the ONNX adapter reports.
MAMMO_SOP_CLASSES: Mapping[str, str] = MappingProxyType(
    {
        MG_FOR_PRESENTATION: "Digital Mammography For Presentation",
        MG_FOR_PROCESSING: "Digital Mammography For Processing",
    }
)
# The structured reports the result parser reads.
SR_SOP_CLASSES = frozenset(
    {MAMMO_CAD_SR, COMPREHENSIVE_SR, COMPREHENSIVE_3D_SR, ENHANCED_SR, BASIC_TEXT_SR}
)
# What a node may put in the PACS as results; each needs an SCP-role context for C-GET.
RESULT_SOP_CLASSES = (
    MAMMO_CAD_SR,
    COMPREHENSIVE_SR,
    COMPREHENSIVE_3D_SR,
    ENHANCED_SR,
    BASIC_TEXT_SR,
    SECONDARY_CAPTURE,
    GRAYSCALE_SOFTCOPY_PRESENTATION_STATE,
    ENCAPSULATED_PDF,
    SEGMENTATION,
    PARAMETRIC_MAP,
    KEY_OBJECT_SELECTION,
)

# Service classes (pynetdicom's table)
VERIFICATION = _sop_class.Verification
STUDY_ROOT_FIND = _sop_class.StudyRootQueryRetrieveInformationModelFind
STUDY_ROOT_GET = _sop_class.StudyRootQueryRetrieveInformationModelGet

# Transfer syntaxes (PS3.5 Section 10, Annex A)
EXPLICIT_VR_LITTLE_ENDIAN = _uid.ExplicitVRLittleEndian
IMPLICIT_VR_LITTLE_ENDIAN = _uid.ImplicitVRLittleEndian
JPEG2000_LOSSLESS = _uid.JPEG2000Lossless
UNCOMPRESSED = (EXPLICIT_VR_LITTLE_ENDIAN, IMPLICIT_VR_LITTLE_ENDIAN)

# Implementation Class UIDs of the file meta information
PYDICOM_IMPLEMENTATION_UID = _uid.PYDICOM_IMPLEMENTATION_UID
# mammocert's own (a 2.25 UUID-derived UID, no table holds it): fixed, so the reference set's
# bytes depend only on the recipe.
MAMMOCERT_IMPLEMENTATION_UID = _uid.UID("2.25.229395410564937402719307722125096131717")

# --------------------------------------------------------------------------------------------
# Anatomy, laterality and views (Mammography Image Module, PS3.3 C.8.11.7; CID 4013, 6022, 4014)

BREAST = _SCT.Breast  # Anatomic Region (CID 4013)
HAND = _SCT.Hand  # the anatomy of the "not a mammogram" invalid input
LEFT_BREAST = _SCT.LeftBreast  # CID 6022 Side
RIGHT_BREAST = _SCT.RightBreast
BREAST_OF_SIDE: Mapping[str, Code] = MappingProxyType({"L": LEFT_BREAST, "R": RIGHT_BREAST})
SIDE_OF_CODE_VALUE: Mapping[str, str] = MappingProxyType(
    {c.value: side for side, c in BREAST_OF_SIDE.items()}
)

# View Code Sequence (CID 4014 View for Mammography). The table names the MLO concept
# "...Projection"; its meaning is "medio-lateral oblique", as written.
VIEW_CODES: Mapping[str, Code] = MappingProxyType(
    {"CC": _SCT.CranioCaudal, "MLO": _SCT.MedioLateralObliqueProjection}
)
# Legacy SNOMED-RT (SRT) values of the same views, still found in older images: pydicom's
# SRT -> SCT mapping read backwards.
LEGACY_VIEW_CODE_VALUES: Mapping[str, str] = MappingProxyType(
    {
        srt: view
        for srt, sct in _snomed_mapping["SRT"].items()
        for view, c in VIEW_CODES.items()
        if sct == c.value
    }
)
# CC/MLO of a View Code Sequence item's Code Value (SCT or legacy SRT).
VIEW_OF_CODE_VALUE: Mapping[str, str] = MappingProxyType(
    {**{c.value: view for view, c in VIEW_CODES.items()}, **LEGACY_VIEW_CODE_VALUES}
)

# --------------------------------------------------------------------------------------------
# Mammography CAD SR (TID 4000 and its sub-templates; CID 6014, 6016, 6042, 6047, 6048)

MAMMO_CAD_REPORT = _DCM.MammographyCADReport
IMAGE_LIBRARY = _DCM.ImageLibrary
CAD_SUMMARY = _DCM.CADProcessingAndFindingsSummary
# The table's meaning has a zero-width space after the slash; the written one has none.
IMPRESSION = _as_written(
    _DCM.IndividualImpressionRecommendation, "Individual Impression/Recommendation"
)
RENDERING_INTENT = _DCM.RenderingIntent
PRESENTATION_REQUIRED = _DCM.PresentationRequiredRenderingDeviceIsExpectedToPresent
COMPOSITE_FEATURE = _DCM.CompositeFeature
SINGLE_IMAGE_FINDING = _DCM.SingleImageFinding
BREAST_MASS = _SCT.MammographicBreastMass
BREAST_DENSITY_FINDING = _SCT.MammographyBreastDensity
PROBABILITY_OF_CANCER = _DCM.ProbabilityOfCancer
CERTAINTY_OF_FINDING = _DCM.CertaintyOfFinding
CENTER = _DCM.Center
OUTLINE = _DCM.Outline
ALGORITHM_NAME = _DCM.AlgorithmName
ALGORITHM_VERSION = _DCM.AlgorithmVersion
IMAGE_LATERALITY = _DCM.ImageLaterality
IMAGE_VIEW = _DCM.ImageView
FINDING_SITE = _SCT.FindingSite
SUMMARY_OF_DETECTIONS = _DCM.SummaryOfDetections
SUMMARY_OF_ANALYSES = _DCM.SummaryOfAnalyses
SUCCESSFUL_DETECTIONS = _DCM.SuccessfulDetections
FAILED_DETECTIONS = _DCM.FailedDetections
DETECTION_PERFORMED = _DCM.DetectionPerformed
SUCCEEDED = _DCM.Succeeded
FAILED = _DCM.Failed
NOT_ATTEMPTED = _DCM.NotAttempted
# CID 6047 CAD Processing and Findings Summary
SUMMARY_CODES: Mapping[str, Code] = MappingProxyType(
    {
        "complete-without-findings": _DCM.AllAlgorithmsSucceededWithoutFindings,
        "complete-with-findings": _DCM.AllAlgorithmsSucceededWithFindings,
        "partial-without-findings": _DCM.NotAllAlgorithmsSucceededWithoutFindings,
        "partial-with-findings": _DCM.NotAllAlgorithmsSucceededWithFindings,
        "failed": _DCM.NoAlgorithmsSucceededWithoutFindings,
    }
)
# Summaries that mean not every algorithm succeeded (Code Values).
INCOMPLETE_SUMMARIES = frozenset(
    SUMMARY_CODES[k].value for k in ("partial-without-findings", "partial-with-findings", "failed")
)

# --------------------------------------------------------------------------------------------
# TID 1500 Measurement Report

MEASUREMENT_REPORT = _DCM.ImagingMeasurementReport
LANGUAGE = _DCM.LanguageOfContentItemAndDescendants
# PS3.16 CID 5000 Languages (RFC 5646 tags): absent from pydicom's tables, defined once here.
ENGLISH = Code("en-US", "RFC5646", "English (United States)")
PROCEDURE_REPORTED = _DCM.ProcedureReported
MAMMOGRAPHY = _SCT.Mammography
IMAGE_LIBRARY_GROUP = _DCM.ImageLibraryGroup
IMAGING_MEASUREMENTS = _DCM.ImagingMeasurements
MEASUREMENT_GROUP = _DCM.MeasurementGroup
TRACKING_ID = _DCM.TrackingIdentifier
TRACKING_UID = _DCM.TrackingUniqueIdentifier
FINDING = _DCM.Finding
IMAGE_REGION = _DCM.ImageRegion
# The unit of 111047 (UCUM "%"); the table's meaning is "Percent", the written one "percent".
PERCENT = _as_written(_UCUM.Percent, "percent")
