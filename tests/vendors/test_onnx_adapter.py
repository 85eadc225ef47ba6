"""The ONNX adapter: input checks, decoding, units, score mapping and findings."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml
from pydicom import dcmread
from pydicom.uid import JPEG2000Lossless, RLELossless
from vendors.mgfactory import CR, breast_image, make_mg, write_package

from harness.cases.manifest import ImageRef
from harness.errors import VendorFault
from harness.exam_input import ExamInput
from harness.pixels import to_model_plane
from harness.vendors import load_vendor_package, open_adapter
from harness.vendors.onnx_adapter import run_bound, split_rows

REFERENCE_VENDOR = Path(__file__).resolve().parents[2] / "harness" / "reference" / "vendor"
VIEWS = (("L", "CC"), ("L", "MLO"), ("R", "CC"), ("R", "MLO"))


def exam_input(datasets, views=VIEWS) -> ExamInput:
    return ExamInput(
        "E1",
        tuple(
            (ImageRef(f"E1/{lat}{v}.dcm", lat, v, "0" * 64), ds)
            for (lat, v), ds in zip(views, datasets, strict=True)
        ),
    )


def four_views(seed=0, lesion_left=None):
    rng = np.random.default_rng(seed)
    return [
        make_mg(
            breast_image(96, 72, lesion_left if lat == "L" else None, rng, lat == "R"),
            lat,
            v,
            window=(2000, 4000),
        )
        for lat, v in VIEWS
    ]


@pytest.fixture
def adapter(tmp_path):
    return open_adapter(load_vendor_package(write_package(tmp_path / "pkg")))


def roundtrip(ds, tmp_path: Path, name: str):
    ds.save_as(tmp_path / name, enforce_file_format=True)
    return dcmread(tmp_path / name)


def test_prepare_builds_the_contract_tensor(adapter):
    dss = four_views()
    prepared = adapter.prepare(exam_input(dss))
    (batch,) = prepared.batches
    assert batch.tensor.shape == (4, 1, 64, 48) and batch.tensor.dtype == np.float32
    for k, ds in enumerate(dss):
        plane, _ = to_model_plane(ds, 64, 48)
        np.testing.assert_array_equal(batch.tensor[k, 0], plane)


@pytest.mark.parametrize("syntax", [JPEG2000Lossless, RLELossless])
def test_compressed_input_gives_the_same_tensor(adapter, tmp_path, syntax):
    dss = four_views()
    plain = adapter.prepare(
        exam_input([roundtrip(d, tmp_path, f"p{k}.dcm") for k, d in enumerate(dss)])
    )
    packed = []
    for k, d in enumerate(dss):
        d.compress(syntax)
        packed.append(roundtrip(d, tmp_path, f"c{k}.dcm"))
    assert packed[0].file_meta.TransferSyntaxUID == syntax
    comp = adapter.prepare(exam_input(packed))
    np.testing.assert_array_equal(plain.batches[0].tensor, comp.batches[0].tensor)


def _fault(adapter, dss, views=VIEWS) -> VendorFault:
    with pytest.raises(VendorFault) as info:
        adapter.infer(adapter.prepare(exam_input(dss, views)))
    return info.value


def test_chest_cr_is_rejected(adapter):
    dss = four_views()
    dss[0] = make_mg(np.zeros((96, 72)), "L", "CC", sop_class=CR, modality="CR")
    f = _fault(adapter, dss)
    assert f.status == "rejected" and "not a mammogram" in f.reason


def test_missing_laterality_is_rejected(adapter):
    dss = four_views()
    del dss[1].ImageLaterality
    f = _fault(adapter, dss)
    assert f.status == "rejected" and "Image Laterality" in f.reason


def test_missing_view_is_rejected(adapter):
    dss = four_views()
    del dss[2].ViewPosition
    f = _fault(adapter, dss)
    assert f.status == "rejected" and "View Position" in f.reason


def test_corrupt_pixel_data_is_an_error(adapter, tmp_path):
    dss = four_views()
    dss[3].PixelData = dss[3].PixelData[:100]
    f = _fault(adapter, [roundtrip(d, tmp_path, f"x{k}.dcm") for k, d in enumerate(dss)])
    assert f.status == "error" and "RMLO" in f.reason and "pixel data" in f.reason


def _unit_adapter(tmp_path, unit):
    pkg = write_package(
        tmp_path / unit,
        unit=unit,
        heatmap=False,
        model_kwargs={"channels": {"breast": 2, "exam": 4}[unit]},
    )
    return open_adapter(load_vendor_package(pkg))


def test_exam_unit_needs_all_four_views(tmp_path):
    a = _unit_adapter(tmp_path, "exam")
    dss = four_views()
    out = a.infer(a.prepare(exam_input(dss)))
    assert out.breasts == {} and 0 < out.score < 1
    f = _fault(a, dss[:3], VIEWS[:3])
    assert f.status == "rejected" and "missing RMLO" in f.reason


def test_breast_unit_channel_order_is_cc_then_mlo(tmp_path):
    a = _unit_adapter(tmp_path, "breast")
    dss = four_views()
    shuffled = [dss[1], dss[0], dss[3], dss[2]]
    prepared = a.prepare(exam_input(shuffled, [VIEWS[1], VIEWS[0], VIEWS[3], VIEWS[2]]))
    assert [b.key for b in prepared.batches] == ["L", "R"]
    for b, (cc, mlo) in zip(prepared.batches, ((dss[0], dss[1]), (dss[2], dss[3])), strict=True):
        np.testing.assert_array_equal(b.tensor[0, 0], to_model_plane(cc, 64, 48)[0])
        np.testing.assert_array_equal(b.tensor[0, 1], to_model_plane(mlo, 64, 48)[0])
    out = a.infer(prepared)
    assert set(out.breasts) == {"L", "R"} and out.score == max(out.breasts.values())
    f = _fault(a, dss[:3], VIEWS[:3])
    assert f.status == "rejected" and "missing RMLO" in f.reason


def test_findings_point_at_the_lesion_in_stored_pixels(adapter):
    out = adapter.infer(adapter.prepare(exam_input(four_views(lesion_left=(60, 20)))))
    assert out.breasts["L"] > out.breasts["R"] and out.score == out.breasts["L"]
    top = out.findings[0]
    assert top.laterality == "L" and top.file.startswith("E1/L")
    assert (
        abs(top.x - 20) <= 10 and abs(top.y - 60) <= 10
    )  # heatmap cells are 12 stored pixels wide


def test_score_range_mapping_is_not_clipped(tmp_path):
    pkg = write_package(tmp_path / "pkg")
    data = yaml.safe_load((pkg / "vendor.yaml").read_text())
    data["score_range"] = [0.0, 0.25]
    data["operating_point"] = 0.2  # on the score_range scale
    (pkg / "vendor.yaml").write_text(yaml.safe_dump(data))
    a = open_adapter(load_vendor_package(pkg))
    out = a.infer(a.prepare(exam_input(four_views())))
    assert out.score > 1.0  # out-of-range scores stay visible to the degenerate-output criterion


def test_nan_score_is_an_error(tmp_path):
    a = open_adapter(
        load_vendor_package(
            write_package(tmp_path / "pkg", model_kwargs={"multiply": float("nan")})
        )
    )
    with pytest.raises(VendorFault, match="NaN") as info:
        a.infer(a.prepare(exam_input(four_views())))
    assert info.value.status == "error"


def _batched(pkg: Path, batch_size: int):
    data = yaml.safe_load((pkg / "vendor.yaml").read_text())
    data["onnx"]["batch_size"] = batch_size
    (pkg / "vendor.yaml").write_text(yaml.safe_dump(data))
    return open_adapter(load_vendor_package(pkg))


def _exams(views_per_exam):
    """Prepared-to-be exams E1, E2, ... with the given views each (fresh pixels per exam)."""
    exams = []
    for k, views in enumerate(views_per_exam):
        views_of = four_views(seed=k, lesion_left=(60, 20) if k % 2 else None)
        dss = dict(zip(VIEWS, views_of, strict=True))
        exam = exam_input([dss[v] for v in views], views)
        exams.append(ExamInput(f"E{k + 1}", exam.images))
    return exams


@pytest.mark.parametrize(
    ("unit", "views_per_exam"),
    [
        ("exam", [VIEWS] * 3),
        # one exam images only its left breast: its one batch joins the first call
        ("breast", [VIEWS, VIEWS[:2], VIEWS]),
        ("image", [VIEWS, VIEWS[:3], VIEWS[1:]]),
    ],
)
def test_a_batch_of_exams_gives_what_each_exam_gives_alone(tmp_path, unit, views_per_exam):
    pkg = write_package(
        tmp_path / unit, unit=unit, model_kwargs={"channels": {"breast": 2, "exam": 4}.get(unit, 1)}
    )
    a = _batched(pkg, 3)
    assert a.info.batch_size == 3
    prepared = [a.prepare(e) for e in _exams(views_per_exam)]
    together = a.infer_batch(prepared)
    assert together == [a.infer(p) for p in prepared]
    assert all(out.findings for out in together)  # the comparison covers findings too


def test_one_exams_nan_is_that_exams_fault_in_a_batch(tmp_path):
    a = _batched(write_package(tmp_path / "pkg"), 3)
    prepared = [a.prepare(e) for e in _exams([VIEWS] * 3)]
    (batch,) = prepared[1].batches
    broken = replace(
        prepared[1], batches=(replace(batch, tensor=np.full_like(batch.tensor, np.nan)),)
    )
    outs = a.infer_batch([prepared[0], broken, prepared[2]])
    assert isinstance(outs[1], VendorFault) and "NaN" in outs[1].reason
    assert outs[1].status == "error"
    assert [outs[0], outs[2]] == [a.infer(prepared[0]), a.infer(prepared[2])]


def test_outputs_without_a_row_per_input_fail_the_whole_call():
    parts = [np.zeros((2, 1, 4, 4), np.float32), np.zeros((1, 1, 4, 4), np.float32)]
    rows = split_rows([np.arange(3.0), np.ones((3, 1, 2, 2))], ["score", "heat"], parts)
    assert [r[0].tolist() for r in rows] == [[0.0, 1.0], [2.0]]
    assert [r[1].shape for r in rows] == [(2, 1, 2, 2), (1, 1, 2, 2)]
    with pytest.raises(VendorFault, match="output 'score' of a batched call has shape"):
        split_rows([np.arange(1.0), np.ones((3, 1, 2, 2))], ["score", "heat"], parts)


@pytest.mark.parametrize("model", ["tiny", "reference"])
def test_io_binding_gives_what_session_run_gives_bit_for_bit(tmp_path, model):
    import onnxruntime as ort

    if model == "tiny":
        path = write_package(tmp_path / "pkg") / "model.onnx"
        shape, names = (5, 1, 64, 48), ["score", "heat"]
    else:
        path = REFERENCE_VENDOR / "model.onnx"
        shape, names = (3, 4, 512, 416), ["score", "heatmap", "breast_scores"]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(7).random(shape, dtype=np.float32)
    bound = run_bound(session, names, {"image": x})
    plain = session.run(names, {"image": x})
    assert [b.dtype for b in bound] == [p.dtype for p in plain]
    assert [b.shape for b in bound] == [p.shape for p in plain]
    assert [b.tobytes() for b in bound] == [p.tobytes() for p in plain]


def test_the_session_process_reads_its_input_from_shared_memory_or_the_pipe(tmp_path, monkeypatch):
    """Calls of growing and shrinking size through the shared block, then with no block to be
    had (a full /dev/shm): the outputs are session.run's on the stacked parts, bit for bit, and
    the block's name is removed once the session process has it mapped."""
    import onnxruntime as ort

    from harness.vendors import onnx_adapter

    model = str(write_package(tmp_path / "pkg") / "model.onnx")
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(3)
    process = onnx_adapter.SessionProcess(model, ["CPUExecutionProvider"])
    try:
        blocks = []
        for sizes in ([1], [2, 1, 3], [1, 1]):
            parts = [rng.random((n, 1, 64, 48), dtype=np.float32) for n in sizes]
            got = process.run(["score", "heat"], "image", parts)
            want = session.run(["score", "heat"], {"image": np.concatenate(parts)})
            assert [g.tobytes() for g in got] == [w.tobytes() for w in want]
            blocks.append(process._input._block.name)
            # mapped by the session process, so no name is left to outlive a killed harness
            assert not (Path("/dev/shm") / blocks[-1]).exists()
        assert blocks[0] != blocks[1] == blocks[2]  # grown once, then reused
        monkeypatch.setattr(onnx_adapter, "_reserved_block", lambda nbytes: None)
        parts = [rng.random((8, 1, 64, 48), dtype=np.float32)]  # more than the block holds
        got = process.run(["score"], "image", parts)
        assert process._input._block is None  # sent through the pipe
        assert got[0].tobytes() == session.run(["score"], {"image": parts[0]})[0].tobytes()
    finally:
        process.close()
