"""Vendor packages and their adapters: :func:`load_vendor_package` and :func:`open_adapter`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import VendorPackageError
from harness.vendors.package import VendorPackage, load_vendor_package

if TYPE_CHECKING:
    from harness.vendors.adapter import VendorAdapter

__all__ = ["VendorPackage", "load_vendor_package", "open_adapter"]


def open_adapter(
    pkg: VendorPackage, device: str = "cpu", evidence_dir: Path | None = None
) -> VendorAdapter:
    """The adapter for the package's interface; imports are lazy so each interface stays optional.

    ``evidence_dir`` receives what a network interface gets back besides results (DICOM objects
    the node sends); it is part of the evidence bundle.
    """
    if pkg.interface == "onnx":
        from harness.vendors.onnx_adapter import OnnxAdapter

        return OnnxAdapter(pkg, device)
    if pkg.interface == "dicom":
        from harness.vendors.dicom_adapter import DicomAdapter

        return DicomAdapter(pkg, evidence_dir=evidence_dir)
    raise VendorPackageError(
        f"{pkg.source}: interface {pkg.interface!r} is not supported yet; use onnx or dicom"
    )
