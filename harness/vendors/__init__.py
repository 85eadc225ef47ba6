"""Vendor packages and their adapters: :func:`load_vendor_package`, :data:`ADAPTERS` and
:func:`open_adapter`.

Every adapter is built the same way, ``Adapter(package, *, device, evidence_dir)``: ``device``
is where a local model runs (``cpu`` or ``cuda``), ``evidence_dir`` receives what a network
interface gets back besides results (the DICOM objects a node sends; part of the evidence
bundle). Adapter classes are imported only when opened, so each interface's dependencies stay
optional. A remote interface's rules (the de-identification gate, pseudonymisation) are in
:mod:`harness.vendors.remote`.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import VendorPackageError
from harness.vendors.package import VendorPackage, load_vendor_package

if TYPE_CHECKING:
    from harness.cases.manifest import Manifest
    from harness.vendors.adapter import VendorAdapter

__all__ = ["ADAPTERS", "AdapterEntry", "VendorPackage", "load_vendor_package", "open_adapter"]


@dataclass(frozen=True)
class AdapterEntry:
    """One interface's adapter: ``module:name`` of its class (imported on use) and whether it
    sends exams over the network (then the rules of :mod:`harness.vendors.remote` apply)."""

    module: str
    name: str
    remote: bool

    @property
    def adapter_class(self) -> type[VendorAdapter]:
        """The adapter class, imported now."""
        return getattr(importlib.import_module(self.module), self.name)


ADAPTERS: Mapping[str, AdapterEntry] = {
    "onnx": AdapterEntry("harness.vendors.onnx_adapter", "OnnxAdapter", remote=False),
    "dicom": AdapterEntry("harness.vendors.dicom_adapter", "DicomAdapter", remote=True),
    "rest": AdapterEntry("harness.vendors.rest", "RestAdapter", remote=True),
}


def open_adapter(
    pkg: VendorPackage,
    device: str = "cpu",
    evidence_dir: Path | None = None,
    manifest: Manifest | None = None,
) -> VendorAdapter:
    """The adapter for the package's interface (see :data:`ADAPTERS`).

    For a remote interface, pass the reference set as ``manifest``: the de-identification gate
    (:func:`harness.vendors.remote.refuse_identifiable`) then runs over every file of the set
    before the adapter is opened, so an identifiable set is refused before any connection.
    """
    entry = ADAPTERS.get(pkg.interface)
    if entry is None:
        raise VendorPackageError(
            f"{pkg.source}: interface {pkg.interface!r} is not supported yet; "
            f"use one of {', '.join(sorted(ADAPTERS))}"
        )
    if entry.remote and manifest is not None:
        from harness.vendors import remote

        remote.refuse_identifiable(pkg, manifest)
    return entry.adapter_class(pkg, device=device, evidence_dir=evidence_dir)
