"""The mammocert pytest plugin: options for running the conformance suite.

Registered through the ``pytest11`` entry point so a vendor can run
``pytest --pyargs conformance --vendor PKG --standard FILE --cases DIR``. It does nothing
unless ``--standard`` is given.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("mammocert", "mammocert conformance suite")
    group.addoption("--vendor", default=None, help="vendor package (directory or .zip)")
    group.addoption("--predictions", default=None, help="predictions.jsonl (evaluate without running a model)")
    group.addoption("--standard", default=None, help="standard YAML")
    group.addoption("--cases", default=None, help="reference-set directory")
    group.addoption("--mode", default="self-test", choices=["certify", "self-test", "demo"], help="run mode")
    group.addoption("--out", default=None, help="evidence bundle directory")
    group.addoption("--device", default="cpu", choices=["cpu", "cuda"], help="ONNX execution device")
