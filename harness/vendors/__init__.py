"""Vendor packages and their adapters: :func:`load_vendor_package` and :func:`open_adapter`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.errors import VendorPackageError
from harness.vendors.package import VendorPackage, load_vendor_package

if TYPE_CHECKING:
    from harness.vendors.adapter import VendorAdapter

__all__ = ["VendorPackage", "load_vendor_package", "open_adapter"]


def open_adapter(pkg: VendorPackage, device: str = "cpu") -> VendorAdapter:
    """The adapter for the package's interface; imports are lazy so each interface stays optional."""
    if pkg.interface == "onnx":
        from harness.vendors.onnx_adapter import OnnxAdapter

        return OnnxAdapter(pkg, device)
    if pkg.interface == "dicom":
        from harness.vendors.dicom_adapter import DicomAdapter

        return DicomAdapter(pkg)
    raise VendorPackageError(f"{pkg.source}: interface {pkg.interface!r} is not supported yet; use onnx or dicom")
