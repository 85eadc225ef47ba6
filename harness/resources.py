"""Package data — the shipped standards, reference-set recipes and the reference vendor — found
through :mod:`importlib.resources`, so an installed mammocert finds it as a checkout does."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def resource(package: str, *parts: str) -> Path:
    """A file or directory shipped inside ``package`` (an installed, unzipped distribution)."""
    return Path(str(files(package).joinpath(*parts)))


STANDARD_SCHEMA = resource("standards", "schema", "standard.schema.json")
DEMO_STANDARD = resource("standards", "demo.yaml")
DRAFT_STANDARD = resource("standards", "dk-mammo-ai-draft.yaml")
DEFAULT_RECIPE = resource("reference_cases", "default.yaml")
TRAIN_RECIPE = resource("reference_cases", "train.yaml")
FULL_RECIPE = resource("reference_cases", "full.yaml")
REFERENCE_VENDOR = resource("harness.reference", "vendor")
IMPORT_MAPS = resource("reference_cases", "maps")
