"""Every kind of perturbed file stays a valid DICOM object (dciodvfy: 0 errors, no new warnings);
the deliberately broken invalid inputs are broken in exactly the documented way."""

from __future__ import annotations

import pytest
from helpers import require_tool

from harness.perturb import RELATIONS
from harness.perturb.encoding import EncodingParams
from harness.perturb.intensity import IntensityParams
from harness.perturb.invalid import INVALID_BUILDERS
from harness.perturb.lesion import LesionParams
from harness.perturb.metadata import MetadataParams
from harness.perturb.mirror import MirrorParams
from harness.perturb.noise import NoiseParams
from harness.perturb.order import OrderParams
from harness.perturb.resample import ResampleParams

pytestmark = pytest.mark.external

KINDS = [
    MirrorParams(),
    MetadataParams(seed=9, date_shift_days=1000),
    EncodingParams(syntax="explicit_le", invert=True),
    EncodingParams(syntax="implicit_le", invert=False),
    EncodingParams(syntax="jpeg2000_lossless", invert=True),
    EncodingParams(syntax="rle_lossless", invert=False),
    OrderParams(rank=17),
    IntensityParams(gamma=1.2, width_scale=0.9, center_shift=0.07),
    NoiseParams(dose=0.5, seed=4),
    ResampleParams(spacing_mm=0.05),
    LesionParams(kind="calcification", size_mm=5.0, contrast=0.3, laterality="R", seed=2),
]


def _write(ds, path):
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.mark.parametrize("params", KINDS, ids=lambda p: RELATIONS[p.relation].condition(p)[0])
def test_perturbed_files_validate(params, exam, validate, tmp_path):
    tool = require_tool("dciodvfy", "apt-get install dicom3tools")
    base_errors, base_warnings, _ = validate(tool, _write(exam.images[3][1], tmp_path / "base.dcm"))
    assert base_errors == 0
    out = RELATIONS[params.relation].apply(exam, params)
    # index 3 of the fixture is the MONOCHROME1 R MLO, index 0 a MONOCHROME2 L CC
    for k in (0, 3):
        errors, warnings, text = validate(tool, _write(out.images[k][1], tmp_path / f"out{k}.dcm"))
        assert errors == 0, text
        assert warnings <= base_warnings, text


@pytest.mark.parametrize("kind", ["chest_cr", "non_mammo_modality"])
def test_foreign_images_are_valid_objects_of_their_own_iod(kind, exam, validate, tmp_path):
    tool = require_tool("dciodvfy", "apt-get install dicom3tools")
    errors, _, text = validate(
        tool, _write(INVALID_BUILDERS[kind](exam).exam.images[0][1], tmp_path / "x.dcm")
    )
    assert errors == 0, text
    assert ("CRImage" if kind == "chest_cr" else "DXImageForPresentation") in text


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("truncated_pixels", "PixelData has incorrect value length"),
        ("missing_laterality", "Element=<ImageLaterality> Module=<MammographyImage>"),
    ],
)
def test_broken_inputs_are_broken_as_documented(kind, message, exam, validate, tmp_path):
    tool = require_tool("dciodvfy", "apt-get install dicom3tools")
    invalid = INVALID_BUILDERS[kind](exam)
    _, _, text = validate(tool, _write(invalid.exam.images[0][1], tmp_path / "x.dcm"))
    assert message in text
    _, _, rest = validate(tool, _write(invalid.exam.images[1][1], tmp_path / "y.dcm"))
    assert "Error" not in rest  # only the first image is broken
