"""Vendor packages: valid ones load with digests; unsafe or wrong ones are refused with exit 2."""

from __future__ import annotations

import copy
import os
import re
import shutil
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
import yaml
from onnx import TensorProto, helper, numpy_helper
from vendors.mgfactory import write_package, write_set

from harness.errors import UsageError, VendorPackageError
from harness.vendors import load_vendor_package, open_adapter


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> Path:
    return write_set(tmp_path_factory.mktemp("set") / "cases", n=2)


def predict(pkg: Path, cases: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "mammocert.cli",
            "predict",
            "--vendor",
            str(pkg),
            "--cases",
            str(cases),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def edit_yaml(pkg: Path, fn) -> None:
    data = yaml.safe_load((pkg / "vendor.yaml").read_text())
    fn(data)
    (pkg / "vendor.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def zip_dir(src: Path, dest: Path, extra: list[tuple[zipfile.ZipInfo, bytes]] = ()) -> Path:
    with zipfile.ZipFile(dest, "w") as zf:
        for p in sorted(src.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(src).as_posix())
        for info, data in extra:
            zf.writestr(info, data)
    return dest


def test_directory_and_zip_load_with_the_same_digests(tmp_path):
    pkg = write_package(tmp_path / "pkg")
    a = load_vendor_package(pkg)
    b = load_vendor_package(zip_dir(pkg, tmp_path / "pkg.zip"))
    assert a.package_digest == b.package_digest and a.package_digest.startswith("sha256:")
    assert a.model_digests == b.model_digests and set(a.model_digests) == {
        "model.onnx",
        "vendor.yaml",
    }
    assert (
        a.onnx.input.unit == "image"
        and a.onnx.graph.batch_dynamic
        and a.onnx.heatmap_output == "heat"
    )
    assert a.map_score(0.25) == 0.25
    assert open_adapter(a).info.execution_provider == "CPUExecutionProvider"


def test_batch_size_defaults_to_one_and_reaches_the_adapter(tmp_path):
    pkg = write_package(tmp_path / "pkg")
    assert load_vendor_package(pkg).onnx.batch_size == 1
    assert open_adapter(load_vendor_package(pkg)).info.batch_size == 1
    edit_yaml(pkg, lambda d: d["onnx"].update(batch_size=16))
    loaded = load_vendor_package(pkg)
    assert loaded.onnx.batch_size == 16 and open_adapter(loaded).info.batch_size == 16


def test_cuda_request_without_cuda_falls_back_with_a_warning(tmp_path, capsys):
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has CUDA; the fallback path is not reachable here")
    adapter = open_adapter(load_vendor_package(write_package(tmp_path / "pkg")), device="cuda")
    assert adapter.info.execution_provider == "CPUExecutionProvider"
    assert "running on CPU" in capsys.readouterr().err


def _bad_unknown_key(pkg: Path) -> None:
    edit_yaml(pkg, lambda d: d["onnx"]["input"].update(colour="blue"))


def _bad_unknown_value(pkg: Path) -> None:
    edit_yaml(pkg, lambda d: d["onnx"]["input"].update(unit="patch"))


def _bad_input_name(pkg: Path) -> None:
    edit_yaml(pkg, lambda d: d["onnx"]["input"].update(name="pixels"))


def _bad_height(pkg: Path) -> None:
    tiny = pkg / "model.onnx"
    m = onnx.load(str(tiny))
    m.graph.input[0].type.tensor_type.shape.dim[2].dim_value = 99
    onnx.save(m, str(tiny))


def _bad_custom_domain(pkg: Path) -> None:
    write_package(pkg, model_kwargs={"domain": "com.vendor.secret"})


def _bad_model_path(pkg: Path) -> None:
    edit_yaml(pkg, lambda d: d["onnx"].update(model="../model.onnx"))


def _bad_symlink_out(pkg: Path) -> None:
    outside = pkg.parent / "outside.onnx"
    shutil.move(pkg / "model.onnx", outside)
    os.symlink(outside, pkg / "model.onnx")


def _bad_external_data(pkg: Path) -> None:
    """Move a weight tensor's data into a file outside the package."""
    w = numpy_helper.from_array(np.ones((1, 1), np.float32), "w")
    w.data_location = TensorProto.EXTERNAL
    w.ClearField("raw_data")
    for k, v in (("location", "../weights.bin"), ("offset", "0"), ("length", "4")):
        e = w.external_data.add()
        e.key, e.value = k, v
    (pkg.parent / "weights.bin").write_bytes(np.ones(1, np.float32).tobytes())
    m = onnx.load(str(pkg / "model.onnx"))
    m.graph.initializer.append(w)
    m.graph.node.append(helper.make_node("Mul", ["score_pre", "w"], ["unused"]))
    onnx.save(m, str(pkg / "model.onnx"))


def _bad_missing_section(pkg: Path) -> None:
    edit_yaml(pkg, lambda d: d.pop("onnx"))


def _bad_timeout(pkg: Path) -> None:
    edit_yaml(pkg, lambda d: d["onnx"].update(timeout_s=0))


def _bad_batch_on_a_fixed_batch(pkg: Path) -> None:
    m = onnx.load(str(pkg / "model.onnx"))
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    onnx.save(m, str(pkg / "model.onnx"))
    edit_yaml(pkg, lambda d: d["onnx"].update(batch_size=4))


def _bad_batch_zero(pkg: Path) -> None:
    edit_yaml(pkg, lambda d: d["onnx"].update(batch_size=0))


def _bad_batch_text(pkg: Path) -> None:
    edit_yaml(pkg, lambda d: d["onnx"].update(batch_size="8"))


@pytest.mark.parametrize(
    ("breaker", "needle"),
    [
        (_bad_unknown_key, "onnx.input.colour: unknown key"),
        (_bad_unknown_value, "onnx.input.unit: 'patch' is not allowed"),
        (_bad_input_name, "onnx.input.name 'pixels' does not match"),
        (_bad_height, "onnx.input.height is 64 but the model input has 99"),
        (_bad_custom_domain, "custom operator domain 'com.vendor.secret'"),
        (_bad_model_path, "must be a relative path inside the package"),
        (_bad_symlink_out, "symlink"),
        (_bad_external_data, "outside the package"),
        (_bad_missing_section, "missing key 'onnx'"),
        (_bad_timeout, "onnx.timeout_s: 0 must be greater than 0"),
        (_bad_batch_on_a_fixed_batch, "onnx.batch_size 4 needs a dynamic batch dimension"),
        (_bad_batch_zero, "onnx.batch_size: 0 is less than the minimum of 1"),
        (_bad_batch_text, "onnx.batch_size: expected integer, got str '8'"),
    ],
)
def test_bad_packages_exit_2_with_one_line(tmp_path, small_set, breaker, needle):
    pkg = write_package(tmp_path / "pkg")
    breaker(pkg)
    r = predict(pkg, small_set, tmp_path / "p.jsonl")
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert not (tmp_path / "p.jsonl").exists()


@pytest.mark.parametrize(
    ("name", "mode", "needle"),
    [
        ("../evil.txt", 0o100644, "leaves the package"),
        ("/etc/evil.txt", 0o100644, "absolute path"),
        ("link", 0o120777, "is a symlink"),
    ],
)
def test_malicious_zips_exit_2(tmp_path, small_set, name, mode, needle):
    pkg = write_package(tmp_path / "pkg")
    info = zipfile.ZipInfo(name)
    info.external_attr = mode << 16
    z = zip_dir(
        pkg, tmp_path / "evil.zip", [(info, b"/etc/passwd" if stat.S_ISLNK(mode) else b"x")]
    )
    r = predict(z, small_set, tmp_path / "p.jsonl")
    assert r.returncode == 2 and needle in r.stderr, r.stderr
    assert not (tmp_path / "evil.txt").exists()


def test_zip_member_count_is_bounded(tmp_path, monkeypatch):
    from harness.vendors import package

    pkg = write_package(tmp_path / "pkg")
    monkeypatch.setattr(package, "MAX_MEMBERS", 1)
    with pytest.raises(VendorPackageError, match="members, more than 1"):
        load_vendor_package(zip_dir(pkg, tmp_path / "p.zip"))


def test_zip_size_is_bounded(tmp_path, monkeypatch):
    from harness.vendors import package

    pkg = write_package(tmp_path / "pkg")
    monkeypatch.setattr(package, "MAX_TOTAL_BYTES", 100)
    with pytest.raises(VendorPackageError, match="uncompressed, more than 100"):
        load_vendor_package(zip_dir(pkg, tmp_path / "p.zip"))


def test_dicom_section_with_pacs_results_parses(tmp_path):
    def to_dicom(d):
        d["interface"] = "dicom"
        d.pop("onnx")
        d["dicom"] = {
            "ae_title": "VENDOR_AI",
            "host": "127.0.0.1",
            "port": 11112,
            "calling_ae_title": "MAMMOCERT",
            "results": {
                "from": "pacs",
                "format": "tid1500-sr",
                "pacs": {"ae_title": "PACS", "host": "127.0.0.1", "port": 4242},
                "score": {"code": "111047", "scheme": "DCM"},
            },
            "timeout_s": 60,
        }

    pkg = write_package(tmp_path / "pkg")
    edit_yaml(pkg, to_dicom)
    p = load_vendor_package(pkg)
    assert (
        p.dicom.results.source == "pacs"
        and p.dicom.results.pacs.port == 4242
        and p.dicom.timeout_s == 60
    )
    edit_yaml(pkg, lambda d: d["dicom"]["results"].pop("pacs"))
    with pytest.raises(VendorPackageError, match="missing key 'pacs'"):
        load_vendor_package(pkg)


REST_JOB = {
    "url": "http://127.0.0.1:8080/",
    "protocol": "json-job",
    "json_job": {"submit": {"path": "/exams"}, "result": {"exam_score": "score"}},
}


def _rest(d: dict) -> None:
    d["interface"] = "rest"
    d["rest"] = copy.deepcopy(REST_JOB)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda r: r.update(url="http://user:secret@127.0.0.1:8080/"),
            "rest.url carries credentials",
        ),
        (lambda r: r.update(protocol="oip-v2"), "missing key 'oip'"),
        (lambda r: r["json_job"]["result"].update(exam_score="a.[b"), "not a JMESPath expression"),
        (lambda r: r.update(auth={"scheme": "bearer"}), "missing key 'token_env'"),
        (lambda r: r.update(tls={"ca_bundle": "nope.pem"}), "rest.tls.ca_bundle: no such file"),
        (lambda r: r.update(tls={"ca_bundle": "../../etc/ca.pem"}), "leaves the package"),
        (lambda r: r.update(retries=9), "rest.retries"),
        (lambda r: r.update(read_timeout_s=float("nan")), "read_timeout_s"),
    ],
)
def test_rest_section_is_checked_before_any_request(tmp_path, edit, message):
    def to_rest(d):
        _rest(d)
        edit(d["rest"])

    pkg = write_package(tmp_path / "pkg")
    edit_yaml(pkg, to_rest)
    with pytest.raises(VendorPackageError, match=re.escape(message)):
        load_vendor_package(pkg)


def test_rest_secret_comes_from_the_environment(tmp_path, monkeypatch):
    def to_rest(d):
        _rest(d)
        d["rest"]["auth"] = {"scheme": "bearer", "token_env": "MAMMOCERT_TEST_TOKEN"}

    pkg = write_package(tmp_path / "pkg")
    edit_yaml(pkg, to_rest)
    monkeypatch.delenv("MAMMOCERT_TEST_TOKEN", raising=False)
    with pytest.raises(UsageError, match="MAMMOCERT_TEST_TOKEN, which is not set"):
        open_adapter(load_vendor_package(pkg), evidence_dir=tmp_path / "ev")


def _dicom(d: dict) -> None:
    d["interface"] = "dicom"
    d["dicom"] = {
        "ae_title": "VENDOR_AI",
        "host": "127.0.0.1",
        "port": 11112,
        "results": {"format": "mammography-cad-sr", "listen_port": 11113},
    }


@pytest.mark.parametrize(
    ("to_interface", "section"), [(lambda d: None, "onnx"), (_dicom, "dicom"), (_rest, "rest")]
)
def test_every_interface_has_a_per_exam_deadline(tmp_path, to_interface, section):
    pkg = write_package(tmp_path / "pkg")
    edit_yaml(pkg, to_interface)
    p = load_vendor_package(pkg)
    assert p.interface == section and p.section is getattr(p, section)
    assert p.timeout_s == 300.0  # the default when the section does not say
    edit_yaml(pkg, lambda d: d[section].update(timeout_s=12.5))
    assert load_vendor_package(pkg).timeout_s == 12.5
    # Only the active interface's deadline counts; another section's is its own.
    edit_yaml(pkg, lambda d: d["onnx"].update(timeout_s=7))
    p = load_vendor_package(pkg)
    assert p.timeout_s == (7.0 if section == "onnx" else 12.5) and p.onnx.timeout_s == 7.0


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        (0, "onnx.timeout_s: 0 must be greater than 0"),
        (-5, "onnx.timeout_s: -5 must be greater than 0"),
        (float("nan"), "onnx.timeout_s: nan must be a finite number of seconds > 0"),
        (float("inf"), "onnx.timeout_s: inf must be a finite number of seconds > 0"),
        ("soon", "onnx.timeout_s: expected number"),
    ],
)
def test_a_deadline_that_is_not_a_finite_positive_number_is_refused(tmp_path, value, needle):
    pkg = write_package(tmp_path / "pkg")
    edit_yaml(pkg, lambda d: d["onnx"].update(timeout_s=value))
    with pytest.raises(VendorPackageError, match=re.escape(needle)) as exc:
        load_vendor_package(pkg)
    assert "\n" not in str(exc.value)


def test_rest_timeout_is_checked_too(tmp_path):
    pkg = write_package(tmp_path / "pkg")
    edit_yaml(pkg, _rest)
    edit_yaml(pkg, lambda d: d["rest"].update(timeout_s=float("inf")))
    with pytest.raises(VendorPackageError, match=r"rest\.timeout_s: inf must be a finite"):
        load_vendor_package(pkg)


@pytest.mark.parametrize(
    ("key", "value", "needle"),
    [
        ("score_range", [-1e308, 1e308], "score_range [-1e+308, 1e+308] is beyond +/-1e+09"),
        ("score_range", [0.0, float("inf")], "score_range [0.0, inf] must be finite numbers"),
        ("score_range", [float("nan"), 1.0], "score_range [nan, 1.0] must be finite numbers"),
        ("score_range", [1.0, 0.0], "score_range [1.0, 0.0] must have low < high"),
        ("score_range", [0.5, 0.5], "must have low < high"),
        ("score_range", [1e6, 1e6 + 1e-6], "is too narrow to map scores"),
        ("operating_point", float("nan"), "operating_point nan must be a finite number"),
        ("scale", [0.0, float("inf")], "onnx.input.scale [0.0, inf] must be finite numbers"),
    ],
)
def test_score_range_and_scales_must_be_finite_ordered_and_sane(tmp_path, key, value, needle):
    """#35 item 9: [-1e308, 1e308] was accepted and mapped every score to 0.0."""
    pkg = write_package(tmp_path / "pkg")
    if key == "scale":
        edit_yaml(pkg, lambda d: d["onnx"]["input"].update(scale=value))
    else:
        edit_yaml(pkg, lambda d: d.update({key: value}))
    with pytest.raises(VendorPackageError, match=re.escape(needle)) as exc:
        load_vendor_package(pkg)
    assert "\n" not in str(exc.value)


def test_wide_but_sane_score_ranges_still_load(tmp_path):
    pkg = write_package(tmp_path / "pkg")
    edit_yaml(pkg, lambda d: d.update(score_range=[-1000.0, 1000.0]))
    assert load_vendor_package(pkg).map_score(0.0) == 0.5


def test_the_operating_point_is_on_the_vendors_scale_and_mapped_with_it(tmp_path):
    """#35 item 15: ``score_range: [0, 100]`` with ``operating_point: 60`` was applied to the
    mapped [0, 1] scores as 60, so nothing was recalled and the verdict was silently wrong."""
    pkg = write_package(tmp_path / "pkg")
    edit_yaml(pkg, lambda d: d.update(score_range=[0, 100], operating_point=60))
    p = load_vendor_package(pkg)
    assert p.native_operating_point == 60.0 and p.score_range == (0.0, 100.0)
    assert p.operating_point == pytest.approx(0.6) and p.operating_point == p.map_score(60)
    edit_yaml(pkg, lambda d: d.update(score_range=[-5, 5], operating_point=0))
    assert load_vendor_package(pkg).operating_point == 0.5
    edit_yaml(pkg, lambda d: d.update(score_range=[0, 1], operating_point=0.7672))
    assert load_vendor_package(pkg).operating_point == 0.7672  # [0, 1] vendors: unchanged


@pytest.mark.parametrize(
    ("score_range", "op"), [([0, 1], 1.5), ([0, 100], 150), ([0, 100], -1), ([10, 20], 5)]
)
def test_an_operating_point_outside_the_score_range_is_refused(tmp_path, score_range, op):
    pkg = write_package(tmp_path / "pkg")
    edit_yaml(pkg, lambda d: d.update(score_range=score_range, operating_point=op))
    lo, hi = score_range
    with pytest.raises(
        VendorPackageError,
        match=re.escape(f"operating_point {op:g} is outside score_range [{lo:g}, {hi:g}]"),
    ) as exc:
        load_vendor_package(pkg)
    assert "\n" not in str(exc.value)


def test_predict_refuses_an_operating_point_outside_the_range_in_one_line(tmp_path):
    pkg = write_package(tmp_path / "pkg")
    edit_yaml(pkg, lambda d: d.update(score_range=[0, 100], operating_point=150))
    cases = write_set(tmp_path / "cases", n=2)
    r = subprocess.run(
        [sys.executable, "-m", "mammocert.cli", "predict", "--vendor", str(pkg)]
        + ["--cases", str(cases), "--out", str(tmp_path / "p.jsonl")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and "operating_point 150" in r.stderr
    assert not (tmp_path / "p.jsonl").exists()
