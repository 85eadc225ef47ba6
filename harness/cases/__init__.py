"""Reference sets: the manifest, the synthetic phantom generator, DICOM writing, build and verify."""

from harness.resources import DEFAULT_RECIPE, FULL_RECIPE, TRAIN_RECIPE

__all__ = ["DEFAULT_RECIPE", "FULL_RECIPE", "TRAIN_RECIPE"]
