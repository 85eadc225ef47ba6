"""The fuzz tier (issue #35): every parser of an input file, fed mutated inputs.

Invariant: no traceback and no exit 3. Each input either parses or is refused with the parser's
own error (``UsageError`` and its subclasses, ``VerificationError``; for a DICOM file,
``VendorFault``, which the runner records as data), with a one-line message.

Inputs start from a valid file of each type and are mutated two ways: structurally (a value
replaced by an arbitrary JSON/YAML value, a key deleted or added, a list item duplicated) and
byte-wise (truncated, bytes flipped, inserted or deleted). Bounded for CI: ``FUZZ_EXAMPLES``
examples per parser (default 200, ``MAMMOCERT_FUZZ_EXAMPLES`` overrides; the lint CLI gets a
quarter), derandomized so a failure reproduces (``MAMMOCERT_FUZZ_RANDOM=1`` explores new inputs),
with a 10 s deadline per example. About 70 s on two busy cores. There is no cost file on this branch (the
programme-economics package adds one); its parser joins this table when it lands.
"""

from __future__ import annotations

import copy
import json
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.errors import MammocertError, UsageError, VendorFault, VerificationError
from mammocert.cli import main

ROOT = Path(__file__).resolve().parents[2]
FUZZ_EXAMPLES = int(os.environ.get("MAMMOCERT_FUZZ_EXAMPLES", "200"))
REFUSALS = (UsageError, VerificationError)

pytestmark = pytest.mark.fuzz

FUZZ = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=timedelta(seconds=10),  # a billion-laughs-like blow-up fails here, load spikes don't
    derandomize=not os.environ.get("MAMMOCERT_FUZZ_RANDOM"),  # set it to explore new inputs
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.function_scoped_fixture,
        HealthCheck.data_too_large,
        HealthCheck.filter_too_much,
    ],
)

# ----------------------------------------------------------------------------- mutations

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["", "0", "-1", "1e400", "nan", "L", "CC", "ok", "auc", "2026-13-45"])
)
VALUES = st.recursive(
    SCALARS,
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
    max_leaves=6,
)


def _paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.extend(_paths(v, prefix + (k,)))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out.extend(_paths(v, prefix + (i,)))
    return out


def _set(doc: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    node = doc
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value
    return doc


@st.composite
def structural(draw: st.DrawFn, doc: Any, max_ops: int = 4) -> Any:
    """``doc`` after 1..max_ops structural mutations."""
    doc = copy.deepcopy(doc)
    for _ in range(draw(st.integers(1, max_ops))):
        paths = _paths(doc)
        path = draw(st.sampled_from(paths))
        node = doc
        for p in path:
            node = node[p]
        op = draw(st.sampled_from(["replace", "replace", "delete", "add", "dup"]))
        if op == "replace" or (op != "replace" and not path and not isinstance(node, dict | list)):
            doc = _set(doc, path, draw(VALUES))
        elif op == "delete" and path:
            parent = doc
            for p in path[:-1]:
                parent = parent[p]
            del parent[path[-1]]
        elif op == "add" and isinstance(node, dict):
            node[draw(st.text(max_size=10))] = draw(VALUES)
        elif op == "dup" and isinstance(node, list) and node:
            node.append(copy.deepcopy(node[draw(st.integers(0, len(node) - 1))]))
    return doc


@st.composite
def corrupted(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` truncated, or with bytes flipped, inserted or deleted."""
    b = bytearray(data)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["truncate", "flip", "insert", "delete"]))
        i = draw(st.integers(0, max(len(b) - 1, 0)))
        if op == "truncate":
            del b[i:]
        elif op == "flip" and b:
            b[i] = draw(st.integers(0, 255))
        elif op == "insert":
            b[i:i] = draw(
                st.binary(min_size=1, max_size=8)
                | st.sampled_from([b"*a", b"&a ", b"\xff", b"[", b"{"])
            )
        elif op == "delete" and b:
            del b[i : i + draw(st.integers(1, 16))]
    return bytes(b)


def _yaml(doc: Any) -> bytes:
    return yaml.safe_dump(doc, sort_keys=False, allow_unicode=True).encode("utf-8")


def _json(doc: Any) -> bytes:
    return json.dumps(doc, ensure_ascii=False).encode("utf-8", "surrogatepass")


@st.composite
def file_bytes(draw: st.DrawFn, doc: Any, dump) -> bytes:
    """A mutated file: structural, byte-wise, or both."""
    how = draw(st.sampled_from(["structural", "bytes", "both"]))
    data = dump(draw(structural(doc))) if how != "bytes" else dump(doc)
    return draw(corrupted(data)) if how != "structural" else data


def refused_in_one_line(exc: BaseException, allowed=REFUSALS) -> None:
    assert isinstance(exc, allowed), f"{type(exc).__name__}: {exc}"
    assert str(exc) and "\n" not in str(exc), repr(str(exc))


def parses_or_refuses(fn, *args, allowed=REFUSALS) -> Any:
    try:
        return fn(*args)
    except allowed as exc:
        refused_in_one_line(exc, allowed)
        return None


# ----------------------------------------------------------------------------- standard


STANDARD_DOC = yaml.safe_load((ROOT / "standards" / "demo.yaml").read_text())


@FUZZ
@given(data=file_bytes(STANDARD_DOC, _yaml))
def test_fuzz_standard(tmp_path_factory, data):
    from harness.standard import lint_text, load_standard

    path = tmp_path_factory.mktemp("std") / "s.yaml"
    path.write_bytes(data)
    parses_or_refuses(load_standard, path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return
    _, problems = lint_text(text)  # never raises: every problem is a line of the report
    assert all("\n" not in p.format("s") for p in problems)


@settings(FUZZ, max_examples=max(FUZZ_EXAMPLES // 4, 10))
@given(data=file_bytes(STANDARD_DOC, _yaml))
def test_fuzz_standard_lint_cli(tmp_path_factory, data, capsys):
    path = tmp_path_factory.mktemp("std") / "s.yaml"
    path.write_bytes(data)
    rc = main(["standard", "lint", str(path)])
    err = capsys.readouterr().err
    assert rc in (0, 2), err
    assert "internal error" not in err and err.count("\n") <= 1, err


# ----------------------------------------------------------------------------- recipe


RECIPE_DOC = yaml.safe_load((ROOT / "reference_cases" / "default.yaml").read_text())


@FUZZ
@given(data=file_bytes(RECIPE_DOC, _yaml))
def test_fuzz_recipe(tmp_path_factory, data):
    from harness.cases.recipe import load_recipe

    path = tmp_path_factory.mktemp("recipe") / "r.yaml"
    path.write_bytes(data)
    parses_or_refuses(load_recipe, path)


# ----------------------------------------------------------------------------- vendor.yaml


@pytest.fixture(scope="module")
def vendor_dir(tmp_path_factory) -> Path:
    from vendors.mgfactory import write_package

    return write_package(tmp_path_factory.mktemp("vendor") / "pkg")


@pytest.fixture(scope="module")
def vendor_doc(vendor_dir) -> dict:
    return yaml.safe_load((vendor_dir / "vendor.yaml").read_text())


@FUZZ
@given(data=st.data())
def test_fuzz_vendor_yaml(vendor_dir, vendor_doc, data):
    from harness.vendors import load_vendor_package

    (vendor_dir / "vendor.yaml").write_bytes(data.draw(file_bytes(vendor_doc, _yaml)))
    parses_or_refuses(load_vendor_package, vendor_dir)


# ----------------------------------------------------------------------------- manifest


def _manifest_doc() -> dict:
    from synthetic_set import manifest_dict

    return manifest_dict(n_cancer=3, n_normal=4)


MANIFEST_DOC = _manifest_doc()


@st.composite
def manifest_bytes(draw: st.DrawFn) -> bytes:
    """Mostly re-sealed after mutation, so parsing goes past the digest check."""
    from harness.cases.manifest import seal

    how = draw(st.sampled_from(["sealed", "sealed", "unsealed", "bytes"]))
    if how == "bytes":
        return draw(corrupted(_json(MANIFEST_DOC)))
    doc = draw(structural(MANIFEST_DOC))
    if how == "sealed" and isinstance(doc, dict):
        try:
            doc = seal(doc)
        except (TypeError, ValueError):  # canonical JSON of a surrogate string: left unsealed
            pass
    return _json(doc)


@FUZZ
@given(data=manifest_bytes())
def test_fuzz_manifest(tmp_path_factory, data):
    from harness.cases.manifest import load_manifest

    d = tmp_path_factory.mktemp("set")
    (d / "manifest.json").write_bytes(data)
    parses_or_refuses(load_manifest, d)


# ----------------------------------------------------------------------------- predictions


def _prediction_lines() -> list[dict]:
    from synthetic_set import manifest, predictions

    return [p.to_dict() for p in predictions(manifest(n_cancer=3, n_normal=4))]


PREDICTION_DOCS = _prediction_lines()


@st.composite
def predictions_bytes(draw: st.DrawFn) -> bytes:
    how = draw(st.sampled_from(["record", "record", "bytes"]))
    if how == "bytes":
        return draw(corrupted(b"".join(_json(d) + b"\n" for d in PREDICTION_DOCS)))
    docs = copy.deepcopy(PREDICTION_DOCS)
    k = draw(st.integers(0, len(docs) - 1))
    docs[k] = draw(structural(docs[k], max_ops=3))
    return b"".join(_json(d) + b"\n" for d in docs)


@FUZZ
@given(data=predictions_bytes())
def test_fuzz_predictions(tmp_path_factory, data):
    from harness.predictions import read_predictions

    path = tmp_path_factory.mktemp("preds") / "predictions.jsonl"
    path.write_bytes(data)
    parses_or_refuses(read_predictions, path)


# ----------------------------------------------------------------------------- results.json


def _results_doc() -> dict:
    import importlib.util

    path = ROOT / "tests" / "reports" / "bundle_factory.py"
    spec = importlib.util.spec_from_file_location("fuzz_bundle_factory", path)
    assert spec is not None and spec.loader is not None
    factory = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(factory)
    return factory.make_results().to_dict()


RESULTS_DOC = _results_doc()


@FUZZ
@given(data=file_bytes(RESULTS_DOC, _json))
def test_fuzz_results(tmp_path_factory, data):
    from harness.results import read_results

    path = tmp_path_factory.mktemp("bundle") / "results.json"
    path.write_bytes(data)
    parses_or_refuses(read_results, path)


# ----------------------------------------------------------------------------- DICOM headers

HEADER_KEYWORDS = (
    "SOPClassUID",
    "Modality",
    "ImageLaterality",
    "ViewPosition",
    "PatientOrientation",
    "Rows",
    "Columns",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "RescaleSlope",
    "RescaleIntercept",
    "WindowCenter",
    "WindowWidth",
    "VOILUTFunction",
    "PixelData",
)
HEADER_VALUES = (
    st.none()
    | st.integers(-(2**17), 2**17)
    | st.floats(allow_nan=True, allow_infinity=True, width=32)
    | st.text(alphabet="ABCDLRPMOGNX12\\.-_ ", max_size=12)
    | st.sampled_from(["MONOCHROME1", "RGB", "SIGMOID", "LINEAR_EXACT", "MLO", "R", "1.2.3"])
    | st.lists(st.integers(-100, 5000), max_size=3)
    | st.binary(max_size=64)
)


def _mammogram_bytes() -> bytes:
    from io import BytesIO

    from vendors.mgfactory import make_mg

    rng = np.random.default_rng(3)
    ds = make_mg(rng.integers(0, 4000, (32, 24)).astype(np.uint16), window=(2000, 4000))
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


MAMMOGRAM = _mammogram_bytes()


@st.composite
def dicom_bytes(draw: st.DrawFn) -> bytes:
    """A mammogram with header elements set to arbitrary values, or its bytes corrupted."""
    from io import BytesIO

    if draw(st.booleans()):
        return draw(corrupted(MAMMOGRAM))
    ds = pydicom.dcmread(BytesIO(MAMMOGRAM))
    for _ in range(draw(st.integers(1, 4))):
        keyword = draw(st.sampled_from(HEADER_KEYWORDS))
        value = draw(HEADER_VALUES)
        try:
            if value is None:
                if keyword in ds:
                    delattr(ds, keyword)
            else:
                setattr(ds, keyword, value)
        except (TypeError, ValueError, OverflowError, AttributeError):
            continue  # pydicom refuses to hold it; try another
    buf = BytesIO()
    try:
        ds.save_as(buf, enforce_file_format=False)
    except Exception:  # noqa: BLE001 - pydicom cannot even write it: use the raw corruption path
        return draw(corrupted(MAMMOGRAM))
    return buf.getvalue()


@pytest.fixture(scope="module")
def image_adapter(vendor_dir):
    from vendors.mgfactory import write_package

    from harness.vendors import load_vendor_package, open_adapter

    pkg_dir = write_package(vendor_dir.parent / "image-pkg", unit="image")
    adapter = open_adapter(load_vendor_package(pkg_dir))
    yield adapter
    adapter.close()


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about the values it is given
@FUZZ
@given(data=dicom_bytes())
def test_fuzz_dicom_headers(tmp_path_factory, image_adapter, data):
    """load_exam + the ONNX adapter's prepare (presentation pixels, orientation, resize): a DICOM
    file is read and prepared, or refused as a VendorFault with a one-line reason."""
    from harness.exam_input import load_exam

    m, exam = _exam_with(tmp_path_factory.mktemp("dcm"), data)
    try:
        image_adapter.prepare(load_exam(m, exam))
    except VendorFault as exc:
        assert exc.reason and "\n" not in exc.reason, repr(exc.reason)
    except MammocertError as exc:  # pragma: no cover - would be a harness refusal of a DICOM
        pytest.fail(f"{type(exc).__name__}: {exc}")


def test_fuzz_corpus_sizes_are_bounded():
    """The tier's size, stated once: FUZZ_EXAMPLES examples per parser (the lint CLI a quarter)."""
    assert 10 <= FUZZ_EXAMPLES <= 100_000


# ----------------------------------------------------------------------------- found by the tier


def _exam_with(tmp_path: Path, data: bytes):
    from harness.cases.manifest import parse_manifest

    (tmp_path / "E1").mkdir()
    (tmp_path / "E1" / "LCC.dcm").write_bytes(data)
    m = parse_manifest(
        {
            "schema": "mammocert/reference-set/v1",
            "id": "f",
            "version": "1",
            "exams": [
                {
                    "exam_id": "E1",
                    "label": 0,
                    "truth": "normal",
                    "images": [
                        {"file": "E1/LCC.dcm", "laterality": "L", "view": "CC", "sha256": "0" * 64}
                    ],
                }
            ],
        },
        tmp_path,
    )
    return m, m.exams[0]


def test_unknown_vr_in_a_header_element_is_a_vendor_fault(tmp_path):
    """Fuzz finding: an element with an unknown VR raised NotImplementedError out of
    check_mammogram (ds.get) instead of a VendorFault from load_exam."""
    from harness.exam_input import load_exam

    b = bytearray(MAMMOGRAM)
    i = b.find(b"\x20\x00\x62\x00CS")  # (0020,0062) Image Laterality, explicit VR CS
    assert i > 0
    b[i + 4 : i + 6] = b"C\x00"
    m, exam = _exam_with(tmp_path, bytes(b))
    with pytest.raises(VendorFault, match="could not read the DICOM file"):
        load_exam(m, exam)


def test_empty_window_center_is_a_vendor_fault(tmp_path, image_adapter):
    """Fuzz finding: WindowCenter present but empty gave TypeError in presentation_pixels."""
    from io import BytesIO

    from harness.exam_input import load_exam

    ds = pydicom.dcmread(BytesIO(MAMMOGRAM))
    ds.WindowCenter = None
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    m, exam = _exam_with(tmp_path, buf.getvalue())
    with pytest.raises(VendorFault, match=r"WindowCenter \(0028,1050\) is .*expected a number"):
        image_adapter.prepare(load_exam(m, exam))


def test_a_key_with_a_newline_gives_a_one_line_message(vendor_dir, vendor_doc, tmp_path):
    """Random fuzz finding: an unknown vendor.yaml key "\\n" split the message in two lines."""
    from harness.standard import lint_text
    from harness.vendors import load_vendor_package

    (vendor_dir / "vendor.yaml").write_bytes(_yaml({**vendor_doc, "\n": 1}))
    with pytest.raises(UsageError) as exc:
        load_vendor_package(vendor_dir)
    refused_in_one_line(exc.value)
    _, problems = lint_text(_yaml({**STANDARD_DOC, "a\nb": 1}).decode())
    assert problems and all("\n" not in p.format("s.yaml") for p in problems)
    doc = copy.deepcopy(MANIFEST_DOC)
    doc["exams"][0]["exam_id"] = "E\n1"
    doc["exams"][0]["label"] = 7
    (tmp_path / "manifest.json").write_bytes(_json(doc))
    from harness.cases.manifest import load_manifest

    with pytest.raises(UsageError) as exc:
        load_manifest(tmp_path)
    refused_in_one_line(exc.value)


def test_results_criterion_without_value_is_refused(tmp_path):
    """Random fuzz finding: a criterion without "value" gave TypeError from the dataclass."""
    from harness.results import read_results

    doc = copy.deepcopy(RESULTS_DOC)
    del doc["criteria"][0]["value"]
    (tmp_path / "results.json").write_bytes(_json(doc))
    with pytest.raises(UsageError, match=r"criteria\[0\]: missing field 'value'"):
        read_results(tmp_path / "results.json")
