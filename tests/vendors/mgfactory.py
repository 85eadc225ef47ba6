"""Hand-made Digital Mammography datasets, reference sets and vendor packages for the tests.

The images are small and their pixels are chosen by the test, so every expected tensor can be
written down. ``write_set`` builds a tiny §3.3 reference set whose cancers are bright discs
(enough for the pipeline tests; the reference model is evaluated on the phantom sets).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import yaml
from onnx import TensorProto, helper
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from harness.cases.manifest import write_manifest
from harness.jsonutil import sha256_file

DM_PRESENTATION = "1.2.840.10008.5.1.4.1.1.1.2"
CR = "1.2.840.10008.5.1.4.1.1.1"
ORIENT = {
    ("L", "CC"): ["A", "R"],
    ("R", "CC"): ["P", "L"],
    ("L", "MLO"): ["A", "FR"],
    ("R", "MLO"): ["P", "FL"],
}


def make_mg(
    pixels: np.ndarray,
    laterality: str | None = "L",
    view: str | None = "CC",
    *,
    bits: int = 12,
    photometric: str = "MONOCHROME2",
    window: tuple[float, float] | None = None,
    voi_function: str | None = None,
    voi_lut: list[int] | None = None,
    lut_bits: int | None = None,
    rescale: tuple[float, float] | None = None,
    sop_class: str = DM_PRESENTATION,
    modality: str = "MG",
    orientation: list[str] | None | bool = True,
) -> Dataset:
    """A single-frame MG dataset with exactly these stored pixels (uint16, rows x cols)."""
    arr = np.asarray(pixels, dtype=np.uint16)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid(
        prefix=None,
        entropy_srcs=[str(arr.tobytes()[:64]), str(laterality), str(view), str(arr.sum())],
    )
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.Modality = modality
    ds.PatientID = "TEST"
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.1"
    ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.2"
    if laterality is not None:
        ds.ImageLaterality = laterality
    if view is not None:
        ds.ViewPosition = view
    if orientation is True and laterality and view:
        ds.PatientOrientation = ORIENT[(laterality, view)]
    elif isinstance(orientation, list):
        ds.PatientOrientation = orientation
    ds.Rows, ds.Columns = arr.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = 16
    ds.BitsStored = bits
    ds.HighBit = bits - 1
    ds.PixelRepresentation = 0
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept = rescale
        ds.RescaleType = "US"
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if voi_function is not None:
        ds.VOILUTFunction = voi_function
    if voi_lut is not None:
        item = Dataset()
        item.LUTDescriptor = [len(voi_lut), 0, lut_bits or bits]
        item.LUTData = list(voi_lut)
        ds.VOILUTSequence = [item]
    ds.PixelData = arr.tobytes()
    return ds


def tiny_score_model(
    path: Path,
    height: int = 64,
    width: int = 48,
    heatmap: bool = True,
    slow_matmuls: int = 0,
    input_name: str = "image",
    domain: str = "",
    channels: int = 1,
    multiply: float | None = None,
) -> None:
    """A small real ONNX model: score = mean of the brightest 8x8 block average, heatmap = 8x8 means.

    ``slow_matmuls`` appends that many 512x512 MatMuls (a deliberately slow but honest model);
    ``channels`` > 1 takes the max over channels; ``multiply`` scales the score (NaN: a broken model).
    """
    x = helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["N", channels, height, width])
    nodes = [
        helper.make_node(
            "AveragePool", [input_name], ["heat"], kernel_shape=[8, 8], strides=[8, 8]
        ),
        helper.make_node("GlobalMaxPool", ["heat"], ["gmp"]),
        helper.make_node("ReduceMax", ["gmp"], ["gmp1"], axes=[1], keepdims=1),
        helper.make_node("Flatten", ["gmp1"], ["score_pre"], axis=1),
    ]
    inits = []
    last = "score_pre"
    if multiply is not None:
        inits.append(helper.make_tensor("factor", TensorProto.FLOAT, [1], [multiply]))
        nodes.append(helper.make_node("Mul", ["score_pre", "factor"], ["score_mul"]))
        last = "score_mul"
    if slow_matmuls:
        inits.append(
            helper.make_tensor(
                "big", TensorProto.FLOAT, [512, 512], np.full(512 * 512, 1.0 / 512, np.float32)
            )
        )
        inits.append(
            helper.make_tensor("ones", TensorProto.FLOAT, [1, 512], np.ones(512, np.float32))
        )
        nodes.append(helper.make_node("MatMul", ["score_pre", "ones"], ["wide0"]))
        for k in range(slow_matmuls):
            nodes.append(helper.make_node("MatMul", [f"wide{k}", "big"], [f"wide{k + 1}"]))
        nodes.append(
            # per batch item (axis 1), so an image unit's four images keep four scores
            helper.make_node(
                "ReduceMean", [f"wide{slow_matmuls}"], ["score_slow"], axes=[1], keepdims=1
            )
        )
        last = "score_slow"
    nodes.append(
        helper.make_node("Identity", [last], ["score"], domain=domain)
        if domain
        else helper.make_node("Identity", [last], ["score"])
    )
    outputs = [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N", 1])]
    if heatmap:
        outputs.append(
            helper.make_tensor_value_info(
                "heat", TensorProto.FLOAT, ["N", channels, height // 8, width // 8]
            )
        )
    graph = helper.make_graph(nodes, "tiny", [x], outputs, initializer=inits)
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    onnx.save(model, str(path))


def hanging_model(path: Path, height: int = 64, width: int = 48) -> None:
    """A valid ONNX model that never returns: a Loop of 10^15 no-op iterations inside onnxruntime
    (a hung kernel, which no Python-level interrupt can stop)."""
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, height, width])
    body = helper.make_graph(
        [
            helper.make_node("Add", ["acc_in", "nothing"], ["acc_out"]),
            helper.make_node("Or", ["cond_in", "cond_in"], ["cond_out"]),
        ],
        "spin",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, [1]),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, [1]),
        ],
        initializer=[helper.make_tensor("nothing", TensorProto.FLOAT, [1], [0.0])],
    )
    nodes = [
        helper.make_node("ReduceMax", ["image"], ["peak"], axes=[1, 2, 3], keepdims=0),
        helper.make_node("Loop", ["trips", "go", "zero"], ["acc"], body=body),
        helper.make_node("Add", ["peak", "acc"], ["flat"]),
        helper.make_node("Unsqueeze", ["flat", "axis"], ["score"]),
    ]
    inits = [
        helper.make_tensor("trips", TensorProto.INT64, [], [10**15]),
        helper.make_tensor("go", TensorProto.BOOL, [], [True]),
        helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0]),
        helper.make_tensor("axis", TensorProto.INT64, [1], [1]),
    ]
    score = helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N", 1])
    graph = helper.make_graph(nodes, "hang", [x], [score], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def write_package(
    root: Path,
    *,
    unit: str = "image",
    height: int = 64,
    width: int = 48,
    heatmap: bool = True,
    extra: dict | None = None,
    model_kwargs: dict | None = None,
    input_name: str = "image",
) -> Path:
    """A directory vendor package around :func:`tiny_score_model`."""
    root.mkdir(parents=True, exist_ok=True)
    tiny_score_model(root / "model.onnx", height, width, heatmap, **(model_kwargs or {}))
    spec = {
        "schema": "mammocert/vendor/v1",
        "vendor": "Test ApS",
        "product": "Tiny",
        "version": "1.0",
        "interface": "onnx",
        "operating_point": 0.5,
        "score_range": [0.0, 1.0],
        "onnx": {
            "model": "model.onnx",
            "input": {
                "unit": unit,
                "name": input_name,
                "height": height,
                "width": width,
                "orientation": "chest_wall_left",
                "pixels": "presentation",
                "scale": [0.0, 1.0],
                "resize": "fit",
            },
            "output": {"score": "score", **({"heatmap": "heat"} if heatmap else {})},
            "aggregate": "max",
        },
    }
    for k, v in (extra or {}).items():
        spec[k] = v
    (root / "vendor.yaml").write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    return root


def breast_image(
    rows: int,
    cols: int,
    lesion: tuple[int, int] | None,
    rng: np.random.Generator,
    chest_right: bool,
) -> np.ndarray:
    """A breast-like half-disc from the chest wall with noise; a bright disc where the lesion is."""
    yy, xx = np.mgrid[0:rows, 0:cols]
    cx = cols - 1 if chest_right else 0
    inside = ((xx - cx) / (0.8 * cols)) ** 2 + ((yy - rows / 2) / (0.45 * rows)) ** 2 < 1
    img = np.where(inside, 1500 + rng.normal(0, 60, (rows, cols)), 50)
    if lesion is not None:
        r, c = lesion
        img = np.where((yy - r) ** 2 + (xx - c) ** 2 < (rows / 12) ** 2, img + 1600, img)
    return np.clip(img, 0, 4095).astype(np.uint16)


def write_set(
    out: Path,
    n: int = 8,
    rows: int = 96,
    cols: int = 72,
    seed: int = 1,
    spacing_mm: float | None = None,
) -> Path:
    """A tiny reference set: 4 views per exam, every other exam a cancer in the left breast;
    with ``spacing_mm`` the images carry ImagerPixelSpacing (resampling and lesion insertion
    need it)."""
    if out.exists():
        shutil.rmtree(out)
    rng = np.random.default_rng(seed)
    exams = []
    for k in range(n):
        eid = f"E{k:04d}"
        (out / eid).mkdir(parents=True)
        cancer = k % 2 == 1
        images, marks = [], []
        for lat, view in (("L", "CC"), ("L", "MLO"), ("R", "CC"), ("R", "MLO")):
            lesion = (rows // 2, cols // 3) if cancer and lat == "L" else None
            img = breast_image(rows, cols, lesion, rng, chest_right=lat == "R")
            ds = make_mg(img, lat, view, window=(2000, 4000))
            ds.PatientID = eid
            if spacing_mm is not None:
                ds.ImagerPixelSpacing = [spacing_mm, spacing_mm]
            f = f"{eid}/{lat}{view}.dcm"
            ds.save_as(out / f, enforce_file_format=True)
            images.append(
                {"file": f, "laterality": lat, "view": view, "sha256": sha256_file(out / f)}
            )
            if lesion is not None:
                r, c = lesion
                marks.append({"file": f, "box": [c - 8, r - 8, c + 8, r + 8]})
        exams.append(
            {
                "exam_id": eid,
                "label": int(cancer),
                "truth": "screen_detected" if cancer else "normal",
                "attributes": {},
                "readers": {},
                "images": images,
                "lesions": [{"laterality": "L", "type": "mass", "marks": marks}] if cancer else [],
            }
        )
    write_manifest(
        out,
        {
            "schema": "mammocert/reference-set/v1",
            "id": "test",
            "version": "1",
            "description": "hand-made test set",
            "exams": exams,
        },
    )
    return out
