"""Data-level behaviour of every perturbation on hand-made 4-view DM exams."""

from __future__ import annotations

import io

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import JPEG2000Lossless, RLELossless
from scipy import ndimage

from harness import pixels as harness_pixels
from harness.perturb import RELATIONS
from harness.perturb.encoding import SYNTAXES, EncodingParams, apply_encoding
from harness.perturb.intensity import IntensityParams, apply_intensity
from harness.perturb.lesion import LesionParams, apply_lesion, insert_lesion
from harness.perturb.metadata import INSTANCE_UID_KEYWORDS, MetadataParams, apply_metadata
from harness.perturb.mirror import MirrorParams, apply_mirror
from harness.perturb.noise import NoiseParams, added_sigma, apply_noise
from harness.perturb.order import OrderParams, apply_order, permutation
from harness.perturb.resample import ResampleParams, apply_resample, resample_pixels

# One non-trivial parameter set per relation.
SAMPLES = [
    MirrorParams(),
    MetadataParams(seed=7, date_shift_days=-400),
    EncodingParams(syntax="jpeg2000_lossless", invert=True),
    OrderParams(rank=5),
    IntensityParams(gamma=0.85, width_scale=1.1, center_shift=-0.05),
    NoiseParams(dose=0.5, seed=3),
    ResampleParams(spacing_mm=0.085),
    LesionParams(kind="mass", size_mm=6.0, contrast=0.2, laterality="R", seed=1),
]


def roundtrip(ds: Dataset) -> Dataset:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return dcmread(io.BytesIO(buf.getvalue()))


def test_samples_cover_every_relation():
    assert sorted(p.relation for p in SAMPLES) == sorted(RELATIONS)


@pytest.mark.parametrize("params", SAMPLES, ids=lambda p: p.relation)
def test_input_exam_is_never_mutated(params, exam, to_bytes):
    before = to_bytes(exam)
    RELATIONS[params.relation].apply(exam, params)
    assert to_bytes(exam) == before


@pytest.mark.parametrize("params", SAMPLES, ids=lambda p: p.relation)
def test_same_parameters_give_identical_bytes(params, exam_factory, to_bytes):
    relation = RELATIONS[params.relation]
    first = to_bytes(relation.apply(exam_factory(), params))
    second = to_bytes(relation.apply(exam_factory(), params))
    assert first == second
    assert first != to_bytes(exam_factory()) or params.relation == "order"


# --- mirror -----------------------------------------------------------------------------------


def test_mirror_twice_is_identity_bytes(exam, to_bytes):
    twice = apply_mirror(apply_mirror(exam, MirrorParams()), MirrorParams())
    assert to_bytes(twice) == to_bytes(exam)
    assert [ref for ref, _ in twice.images] == [ref for ref, _ in exam.images]


def test_mirror_flips_pixels_and_swaps_sides(exam, present):
    out = apply_mirror(exam, MirrorParams())
    for (ref, ds), (mref, mds) in zip(exam.images, out.images, strict=True):
        np.testing.assert_array_equal(present(mds), present(ds)[:, ::-1])
        assert mds.ImageLaterality == mref.laterality == {"L": "R", "R": "L"}[ref.laterality]
        assert (mref.file, mref.view) == (ref.file, ref.view)
    orientations = {(r.laterality, r.view): list(d.PatientOrientation) for r, d in out.images}
    # a mirrored left CC carries exactly what a real right CC carries, and so on
    assert orientations == {
        ("R", "CC"): ["P", "L"],
        ("R", "MLO"): ["P", "FL"],
        ("L", "CC"): ["A", "R"],
        ("L", "MLO"): ["A", "FR"],
    }


def test_mirror_swaps_series_laterality_when_present(exam):
    exam.images[0][1].Laterality = "L"
    out = apply_mirror(exam, MirrorParams())
    assert out.images[0][1].Laterality == "R"
    assert "Laterality" not in out.images[1][1]


def test_mirror_keeps_a_compressed_syntax(exam, present):
    j2k = apply_encoding(exam, EncodingParams(syntax="jpeg2000_lossless"))
    out = apply_mirror(j2k, MirrorParams())
    for (_, ds), (_, mds) in zip(exam.images, out.images, strict=True):
        assert mds.file_meta.TransferSyntaxUID == JPEG2000Lossless
        np.testing.assert_array_equal(present(roundtrip(mds)), present(ds)[:, ::-1])


# --- metadata ---------------------------------------------------------------------------------


def _instance_uids(ds: Dataset) -> set[str]:
    found: set[str] = set()
    ds.walk(lambda _d, e: found.add(str(e.value)) if e.keyword in INSTANCE_UID_KEYWORDS else None)
    return found


def test_metadata_changes_identity_but_not_pixels(exam):
    out = apply_metadata(exam, MetadataParams(seed=11, date_shift_days=30))
    studies = {ds.StudyInstanceUID for _, ds in out.images}
    assert len(studies) == 1 and studies != {ds.StudyInstanceUID for _, ds in exam.images}
    for (_, ds), (_, nds) in zip(exam.images, out.images, strict=True):
        assert nds.PixelData == ds.PixelData
        assert not (_instance_uids(nds) & _instance_uids(ds))
        assert nds.file_meta.MediaStorageSOPInstanceUID == nds.SOPInstanceUID
        assert nds.SOPInstanceUID.startswith("2.25.")
        assert nds.PatientID != ds.PatientID and nds.PatientName != ds.PatientName
        assert (
            nds.AccessionNumber != ds.AccessionNumber and nds.InstitutionName != ds.InstitutionName
        )
        assert (nds.StudyDate, nds.PatientBirthDate) == ("20240414", "19650303")
        assert nds.SOPClassUID == ds.SOPClassUID


def test_metadata_seed_changes_uids_deterministically(exam):
    a = apply_metadata(exam, MetadataParams(seed=1))
    b = apply_metadata(exam, MetadataParams(seed=2))
    assert a.images[0][1].SOPInstanceUID != b.images[0][1].SOPInstanceUID
    assert (
        a.images[0][1].SOPInstanceUID
        == apply_metadata(exam, MetadataParams(seed=1)).images[0][1].SOPInstanceUID
    )
    assert a.images[0][1].StudyDate == exam.images[0][1].StudyDate  # no shift asked


# --- encoding ---------------------------------------------------------------------------------


@pytest.mark.parametrize("invert", [False, True])
@pytest.mark.parametrize("syntax", list(SYNTAXES))
def test_encoding_keeps_presentation_pixels(syntax, invert, exam, present):
    out = apply_encoding(exam, EncodingParams(syntax=syntax, invert=invert))
    for (_, ds), (_, eds) in zip(exam.images, out.images, strict=True):
        back = roundtrip(eds)
        assert back.file_meta.TransferSyntaxUID == SYNTAXES[syntax]
        flipped = {"MONOCHROME1": "MONOCHROME2", "MONOCHROME2": "MONOCHROME1"}[
            ds.PhotometricInterpretation
        ]
        assert back.PhotometricInterpretation == (
            flipped if invert else ds.PhotometricInterpretation
        )
        assert back.PresentationLUTShape == (
            "INVERSE" if back.PhotometricInterpretation == "MONOCHROME1" else "IDENTITY"
        )
        np.testing.assert_allclose(present(back), present(ds), rtol=0, atol=1e-12)
        np.testing.assert_allclose(
            harness_pixels.presentation_pixels(back),
            harness_pixels.presentation_pixels(ds),
            rtol=0,
            atol=1e-6,
        )
        if invert:
            assert back.PixelIntensityRelationshipSign == -ds.PixelIntensityRelationshipSign
            assert not np.array_equal(back.pixel_array, ds.pixel_array)


def test_encoding_invert_twice_restores_stored_values_and_window(exam):
    twice = apply_encoding(
        apply_encoding(exam, EncodingParams(invert=True)), EncodingParams(invert=True)
    )
    for (_, ds), (_, tds) in zip(exam.images, twice.images, strict=True):
        assert tds.PixelData == ds.PixelData
        assert (
            tds == ds
        )  # every element equal in value (DS "2300.0" and "2300" are the same number)


@pytest.mark.parametrize("function", ["LINEAR_EXACT", "SIGMOID"])
def test_encoding_invert_other_voi_functions(function, exam, present):
    for _, ds in exam.images:
        ds.VOILUTFunction = function
    out = apply_encoding(exam, EncodingParams(invert=True))
    for (_, ds), (_, eds) in zip(exam.images, out.images, strict=True):
        np.testing.assert_allclose(present(eds), present(ds), rtol=0, atol=1e-12)


def test_encoding_invert_voi_lut_sequence(exam, present):
    ds = exam.images[0][1]
    del ds.WindowCenter, ds.WindowWidth, ds.VOILUTFunction
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 12]
    item.LUTData = [min(4095, int(v * 1.5)) for v in range(4096)]  # a clipping curve
    ds.VOILUTSequence = Sequence([item])
    out = apply_encoding(exam, EncodingParams(invert=True))
    np.testing.assert_allclose(present(out.images[0][1]), present(ds), rtol=0, atol=1e-12)


def test_encoding_compressed_files_are_smaller_and_lossless(exam):
    for syntax in (JPEG2000Lossless, RLELossless):
        name = next(k for k, v in SYNTAXES.items() if v == syntax)
        out = apply_encoding(exam, EncodingParams(syntax=name))
        for (_, ds), (_, eds) in zip(exam.images, out.images, strict=True):
            assert len(eds.PixelData) < len(ds.PixelData)
            assert eds.LossyImageCompression == "00"
            np.testing.assert_array_equal(roundtrip(eds).pixel_array, ds.pixel_array)


# --- order ------------------------------------------------------------------------------------


def test_order_rank_zero_is_identity_and_ranks_cover_all_orders(exam, to_bytes):
    assert to_bytes(apply_order(exam, OrderParams(0))) == to_bytes(exam)
    perms = {permutation(4, r) for r in range(24)}
    assert len(perms) == 24 and permutation(4, 24) == permutation(4, 0)
    out = apply_order(exam, OrderParams(rank=23))
    assert [r.file for r, _ in out.images] == [r.file for r, _ in reversed(exam.images)]
    assert sorted(to_bytes(out)) == sorted(to_bytes(exam))


# --- intensity --------------------------------------------------------------------------------


def test_intensity_identity_is_bit_exact(exam, to_bytes):
    assert to_bytes(apply_intensity(exam, IntensityParams())) == to_bytes(exam)


def test_intensity_gamma_acts_on_presentation(exam, present):
    for _, ds in exam.images:
        ds.VOILUTFunction = "LINEAR_EXACT"  # here the stored-value gamma is exactly p -> p^gamma
    out = apply_intensity(exam, IntensityParams(gamma=0.8))
    for (_, ds), (_, ids) in zip(exam.images, out.images, strict=True):
        step = 1.0 / float(ds.WindowWidth)  # one stored step, rounding
        np.testing.assert_allclose(present(ids), present(ds) ** 0.8, rtol=0, atol=step)
        assert (ids.WindowCenter, ids.WindowWidth) == (ds.WindowCenter, ds.WindowWidth)


def test_intensity_window_change(exam):
    out = apply_intensity(exam, IntensityParams(width_scale=1.1, center_shift=0.1))
    for (_, ds), (_, ids) in zip(exam.images, out.images, strict=True):
        assert float(ids.WindowWidth) == pytest.approx(float(ds.WindowWidth) * 1.1)
        assert float(ids.WindowCenter) == pytest.approx(
            float(ds.WindowCenter) + 0.1 * float(ds.WindowWidth)
        )
        assert ids.PixelData == ds.PixelData


# --- noise ------------------------------------------------------------------------------------


def test_noise_full_dose_is_identity(exam, to_bytes):
    assert to_bytes(apply_noise(exam, NoiseParams(dose=1.0, seed=5))) == to_bytes(exam)


def test_noise_has_the_modelled_size_and_stays_in_the_breast(exam, present):
    out = apply_noise(exam, NoiseParams(dose=0.25, seed=1))
    for (_, ds), (_, nds) in zip(exam.images, out.images, strict=True):
        breast = present(ds) > 0
        diff = nds.pixel_array.astype(float) - ds.pixel_array.astype(float)
        sigma = added_sigma(0.25, float(ds.WindowWidth))
        assert np.std(diff[breast]) == pytest.approx(sigma, rel=0.05)
        assert not diff[~breast].any()
    other = apply_noise(exam, NoiseParams(dose=0.25, seed=2))
    assert other.images[0][1].PixelData != out.images[0][1].PixelData


# --- resample ---------------------------------------------------------------------------------


def test_resample_updates_geometry_consistently(exam, present):
    for spacing, rows, cols in ((0.05, 640, 512), (0.07, 457, 366), (0.1, 320, 256)):
        out = apply_resample(exam, ResampleParams(spacing_mm=spacing))
        for (_, ds), (_, rds) in zip(exam.images, out.images, strict=True):
            assert (rds.Rows, rds.Columns) == rds.pixel_array.shape == (rows, cols)
            assert [float(v) for v in rds.ImagerPixelSpacing] == [spacing, spacing]
            assert [float(v) for v in rds.PixelSpacing] == [spacing, spacing]
            # same field of view, same mean brightness
            assert rds.Rows * spacing == pytest.approx(ds.Rows * 0.1, abs=spacing)
            assert present(rds).mean() == pytest.approx(present(ds).mean(), abs=0.01)


def test_resample_to_the_same_spacing_is_identity(exam, to_bytes):
    assert to_bytes(apply_resample(exam, ResampleParams(spacing_mm=0.1))) == to_bytes(exam)


def test_resample_is_anti_aliased_when_shrinking():
    stripes = np.tile([0.0, 1000.0], (64, 32))  # the finest pattern the detector can hold
    coarse = resample_pixels(stripes, (0.05, 0.05), 0.085)
    naive = ndimage.zoom(stripes, coarse.shape[0] / 64, order=1, grid_mode=True, mode="nearest")
    assert naive.std() > 0.5 * stripes.std()  # without the filter a strong false pattern remains
    assert coarse.std() < 0.15 * stripes.std()
    assert coarse.mean() == pytest.approx(500.0, rel=0.02)


# --- lesion insertion -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["mass", "calcification"])
def test_lesion_brightens_one_breast_only(kind, exam, present):
    params = LesionParams(kind=kind, size_mm=6.0, contrast=0.2, laterality="L", seed=3)
    out = apply_lesion(exam, params)
    for (ref, ds), (_, lds) in zip(exam.images, out.images, strict=True):
        delta = present(lds) - present(ds)
        if ref.laterality == "L":
            assert delta.min() > -1e-9
            assert delta.max() == pytest.approx(0.2, abs=0.02)
            changed = np.argwhere(delta > 1e-9)
            extent_mm = (changed.max(axis=0) - changed.min(axis=0) + 1) * 0.1
            assert (extent_mm <= 6.0 * 1.25 + 0.5).all()
        else:
            assert lds.PixelData == ds.PixelData


def test_insert_lesion_is_pure_and_boxed():
    base = np.full((200, 200), 0.4)
    out, box = insert_lesion(
        base, 0.1, (100.0, 80.0), "mass", 8.0, np.random.default_rng(0), contrast=0.3
    )
    assert (base == 0.4).all()
    ys, xs = np.nonzero(out - base > 0.01 * 0.3)
    x0, y0, x1, y1 = box
    assert x0 <= xs.min() and xs.max() < x1 and y0 <= ys.min() and ys.max() < y1
    assert x0 < 100 < x1 and y0 < 80 < y1
    assert out.max() == pytest.approx(0.7, abs=0.02)
