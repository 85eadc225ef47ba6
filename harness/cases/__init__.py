"""Reference sets: the manifest, the synthetic phantom generator, DICOM writing, build and verify."""

from pathlib import Path

import reference_cases

#: The default recipe (package data, so it works when mammocert is installed).
DEFAULT_RECIPE: Path = Path(reference_cases.__file__).resolve().parent / "default.yaml"
TRAIN_RECIPE: Path = DEFAULT_RECIPE.with_name("train.yaml")
FULL_RECIPE: Path = DEFAULT_RECIPE.with_name("full.yaml")
