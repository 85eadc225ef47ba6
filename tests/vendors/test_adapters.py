"""The adapter table: one entry per interface, one constructor signature, and the
de-identification gate before any remote adapter is opened."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest
import yaml
from dicom_testkit import deidentified_set
from vendors.mgfactory import write_package, write_set

from harness.cases.manifest import load_manifest
from harness.errors import UsageError, VendorPackageError
from harness.vendors import ADAPTERS, AdapterEntry, load_vendor_package, open_adapter
from harness.vendors.adapter import AdapterInfo
from harness.vendors.dicom_adapter import DicomAdapter
from harness.vendors.onnx_adapter import OnnxAdapter
from harness.vendors.rest import RestAdapter


class RecordingAdapter:
    """A remote adapter that connects nowhere; records how it was built."""

    opened: list[dict] = []

    def __init__(self, pkg, *, device: str = "cpu", evidence_dir: Path | None = None) -> None:
        RecordingAdapter.opened.append({"pkg": pkg, "device": device, "evidence_dir": evidence_dir})
        self.info = AdapterInfo(interface=pkg.interface)

    def prepare(self, exam):
        return exam

    def infer(self, prepared):
        raise AssertionError("never called here")

    def close(self) -> None:
        pass


@pytest.fixture
def recording():
    RecordingAdapter.opened = []
    return RecordingAdapter.opened


@pytest.fixture(scope="module")
def identifiable_set(tmp_path_factory) -> Path:
    # The hand-made ONNX set does not say PatientIdentityRemoved: YES.
    return write_set(tmp_path_factory.mktemp("ident") / "cases", n=2)


@pytest.fixture(scope="module")
def clean_set(tmp_path_factory) -> Path:
    return deidentified_set(tmp_path_factory.mktemp("clean") / "cases", n=2)


def package_for(root: Path, interface: str, *, allow_identifiable: bool = False) -> Path:
    """A package of ``interface`` (the tiny ONNX package's yaml, with that section added)."""
    pkg = write_package(root)
    data = yaml.safe_load((pkg / "vendor.yaml").read_text())
    data["interface"] = interface
    if interface == "dicom":
        data["dicom"] = {
            "ae_title": "VENDOR_AI",
            "host": "127.0.0.1",
            "port": 11112,
            "results": {"format": "mammography-cad-sr", "listen_port": 11113},
        }
    elif interface == "rest":
        data["rest"] = {
            "url": "http://127.0.0.1:8080/",
            "protocol": "json-job",
            "json_job": {"submit": {"path": "/exams"}, "result": {"exam_score": "score"}},
        }
    if allow_identifiable:
        data[interface]["allow_identifiable"] = True
    (pkg / "vendor.yaml").write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return pkg


def test_each_interface_maps_to_its_adapter_class():
    assert set(ADAPTERS) == {"onnx", "dicom", "rest"}
    assert ADAPTERS["onnx"].adapter_class is OnnxAdapter and not ADAPTERS["onnx"].remote
    assert ADAPTERS["dicom"].adapter_class is DicomAdapter and ADAPTERS["dicom"].remote
    assert ADAPTERS["rest"].adapter_class is RestAdapter and ADAPTERS["rest"].remote


@pytest.mark.parametrize("interface", sorted(ADAPTERS))
def test_every_adapter_has_the_one_constructor_signature(interface):
    params = list(inspect.signature(ADAPTERS[interface].adapter_class).parameters.values())
    positional = [p for p in params if p.kind is p.POSITIONAL_OR_KEYWORD]
    keyword = {p.name for p in params if p.kind is p.KEYWORD_ONLY}
    assert len(positional) == 1 and keyword == {"device", "evidence_dir"}, params


def test_an_unknown_interface_names_the_supported_ones(tmp_path, monkeypatch):
    monkeypatch.delitem(ADAPTERS, "rest")  # every interface the schema allows has an adapter
    pkg = load_vendor_package(package_for(tmp_path / "pkg", "rest"))
    with pytest.raises(VendorPackageError) as exc:
        open_adapter(pkg)
    message = str(exc.value)
    assert "interface 'rest' is not supported yet; use one of dicom, onnx" in message
    assert "\n" not in message


def test_open_adapter_builds_with_device_and_evidence_dir(tmp_path, monkeypatch, recording):
    monkeypatch.setitem(ADAPTERS, "rest", AdapterEntry(__name__, "RecordingAdapter", remote=True))
    pkg = load_vendor_package(package_for(tmp_path / "pkg", "rest"))
    adapter = open_adapter(pkg, "cuda", tmp_path / "ev")
    assert isinstance(adapter, RecordingAdapter)
    assert recording == [{"pkg": pkg, "device": "cuda", "evidence_dir": tmp_path / "ev"}]


REMOTE = sorted({name for name, entry in ADAPTERS.items() if entry.remote} | {"rest"})


@pytest.mark.parametrize("interface", REMOTE)
def test_the_gate_refuses_an_identifiable_set_before_a_remote_adapter_opens(
    tmp_path, monkeypatch, recording, identifiable_set, interface
):
    monkeypatch.setitem(
        ADAPTERS, interface, AdapterEntry(__name__, "RecordingAdapter", remote=True)
    )
    manifest = load_manifest(identifiable_set)
    pkg = load_vendor_package(package_for(tmp_path / "pkg", interface))
    with pytest.raises(UsageError) as exc:
        open_adapter(pkg, manifest=manifest)
    first = manifest.path(manifest.exams[0].images[0])
    assert str(exc.value) == (
        f"{first}: not de-identified (PatientIdentityRemoved is absent, not YES); nothing was "
        f"sent. De-identify the set, or set {interface}.allow_identifiable: true for a local, "
        "in-hospital endpoint"
    )
    assert recording == []  # never opened: nothing could have been sent


@pytest.mark.parametrize("interface", REMOTE)
def test_allow_identifiable_or_a_clean_set_passes_the_gate(
    tmp_path, monkeypatch, recording, identifiable_set, clean_set, interface
):
    monkeypatch.setitem(
        ADAPTERS, interface, AdapterEntry(__name__, "RecordingAdapter", remote=True)
    )
    allowed = load_vendor_package(
        package_for(tmp_path / "allowed", interface, allow_identifiable=True)
    )
    open_adapter(allowed, manifest=load_manifest(identifiable_set))
    strict = load_vendor_package(package_for(tmp_path / "strict", interface))
    open_adapter(strict, manifest=load_manifest(clean_set))
    assert [o["pkg"] for o in recording] == [allowed, strict]


def test_a_local_interface_is_not_gated(tmp_path, identifiable_set):
    pkg = load_vendor_package(write_package(tmp_path / "pkg"))
    adapter = open_adapter(pkg, manifest=load_manifest(identifiable_set))
    try:
        assert isinstance(adapter, OnnxAdapter)
    finally:
        adapter.close()
