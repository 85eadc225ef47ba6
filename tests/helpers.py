"""Shared test helpers (importable as `helpers`: pyproject sets pythonpath = ["tests"]).

External tools (dciodvfy, R, dcmtk, Orthanc, Chromium) are real components, not mocks. Where a
tool is missing a test skips visibly with the reason, except when ``MAMMOCERT_REQUIRE_TOOLS=1``
(set by ``.ci/run``): there a missing tool is a failure, so CI can never pass by skipping.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Collection, Mapping
from pathlib import Path

import pytest

# The mutant matrix's and certify tests' known-good base: reference model 2.0.0, kept here
# unchanged so those tests measure the harness, not whichever reference model ships (see
# tests/assets/README.md).
KNOWN_GOOD_VENDOR = Path(__file__).resolve().parent / "assets" / "reference-2.0.0"


def require_tool(name: str, install_hint: str = "") -> str:
    """Return the tool's path, or skip (fail in CI) with the reason."""
    path = shutil.which(name)
    if path is None:
        _missing(f"external tool {name!r} not found", install_hint)
    return path


def require_module(name: str, install_hint: str = ""):
    """Import and return a Python module, or skip (fail in CI) with the reason."""
    try:
        return __import__(name)
    except ImportError:
        _missing(f"Python module {name!r} not installed", install_hint)


def _missing(msg: str, install_hint: str) -> None:
    """Skip with the reason, or fail when CI demands every tool (MAMMOCERT_REQUIRE_TOOLS=1)."""
    if install_hint:
        msg += f"; install it with {install_hint}"
    if os.environ.get("MAMMOCERT_REQUIRE_TOOLS") == "1":
        pytest.fail(msg + " (MAMMOCERT_REQUIRE_TOOLS=1: CI must have every tool)")
    pytest.skip(msg)


def certify_standard(
    base: Path,
    cases: Path,
    keep,
    out: Path,
    sizes: Mapping[str, Mapping[str, object]] | None = None,
    order=None,
) -> Path:
    """``base`` cut to the criteria ``keep(criterion) -> bool`` selects and pinned to the set in
    ``cases``: a standard a certify run accepts on a small test set (certify runs every criterion
    of its standard on the set it pins). ``sizes`` (kind -> fields) sets the kept criteria's
    counts; ``order`` (criterion -> sort key) reorders them."""
    import yaml

    from harness.cases.manifest import load_manifest

    manifest = load_manifest(cases)
    doc = yaml.safe_load(Path(base).read_text(encoding="utf-8"))
    doc["reference_set"] = {"id": manifest.id, "digest": manifest.digest}
    doc["criteria"] = [c for c in doc["criteria"] if keep(c)]
    assert doc["criteria"], "no criterion kept"
    for c in doc["criteria"]:
        c.update((sizes or {}).get(c["kind"], {}))
    if order is not None:
        doc["criteria"].sort(key=order)
    out.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return out


# The relations a small run of the demo standard keeps: mirror and intensity need no upsampling,
# JPEG 2000 or lesion insertion, so each example costs little more than a model call.
SMALL_RELATIONS = (None, "mirror", "intensity")


def small_demo_standard(
    cases: Path,
    kinds: Collection[str],
    sizes: Mapping[str, Mapping[str, object]],
    out: Path,
    order=None,
) -> Path:
    """The demo standard cut to its criteria of ``kinds`` (of a relation only mirror and
    intensity), with ``sizes`` (kind -> fields) set on them, pinned to ``cases``: a certify-ready
    standard whose run on a few small exams still goes through every phase of a real one."""
    from harness.resources import DEMO_STANDARD

    return certify_standard(
        Path(DEMO_STANDARD),
        cases,
        lambda c: c["kind"] in kinds and c.get("relation") in SMALL_RELATIONS,
        out,
        sizes=sizes,
        order=order,
    )
