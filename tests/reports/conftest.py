"""Fixtures: a rendered and signed synthetic evidence bundle, built once and copied per test."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

import pytest


def _register_factory() -> None:
    # The suite runs with --import-mode=importlib and only tests/ on sys.path, so sibling modules
    # are not importable; register the bundle factory under a unique name for the test modules.
    name = "reports_bundle_factory"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).with_name("bundle_factory.py")
        )
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)


_register_factory()
import reports_bundle_factory as synthetic  # noqa: E402

from conformance.criteria import KIND_FACTS  # noqa: E402
from reports.render import render_report  # noqa: E402
from reports.signing import generate_keypair, write_attestation  # noqa: E402


@pytest.fixture(scope="session")
def keypair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An ephemeral Ed25519 key pair for this test session."""
    return generate_keypair(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="session")
def other_keypair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A second, unrelated key pair (the 'wrong key')."""
    return generate_keypair(tmp_path_factory.mktemp("other-keys"))


@pytest.fixture(scope="session")
def signed_bundle_master(
    tmp_path_factory: pytest.TempPathFactory, keypair: tuple[Path, Path]
) -> Path:
    """Render + sign once per session; tests get copies (rendering plots costs about a second)."""
    bundle = tmp_path_factory.mktemp("bundle-master") / "bundle"
    synthetic.write_bundle(bundle)
    render_report(bundle, KIND_FACTS)
    write_attestation(bundle, key_path=keypair[0])
    return bundle


@pytest.fixture()
def signed_bundle(tmp_path: Path, signed_bundle_master: Path) -> Path:
    """A private copy of the signed bundle that a test may tamper with."""
    return Path(shutil.copytree(signed_bundle_master, tmp_path / "bundle"))
