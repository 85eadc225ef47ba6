"""Fixtures the vendor-interface tests share."""

from __future__ import annotations

import pytest
from vendors.mgfactory import write_package

from harness.vendors import load_vendor_package, open_adapter


@pytest.fixture(scope="module")
def scorer(tmp_path_factory):
    """The tiny test model's ONNX adapter: what the reference nodes score exams with."""
    adapter = open_adapter(
        load_vendor_package(write_package(tmp_path_factory.mktemp("onnx") / "pkg"))
    )
    yield adapter
    adapter.close()
