"""Reference-set recipes: the YAML that says what synthetic set to build, validated strictly.

Unknown keys and out-of-range values are :class:`RecipeError` naming the key; a recipe is the
sole input of a build besides the seed, so every choice it makes is explicit here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema

from harness import yamlio
from harness.cases.devices import MANUFACTURERS
from harness.errors import RecipeError

RECIPE_SCHEMA_ID = "mammocert/recipe/v1"
DENSITIES = ("a", "b", "c", "d")

# Volumetric glandular fraction band of each BI-RADS density class. BI-RADS 5th ed. classes are
# descriptive; these bands follow the Yaffe 2009 distribution (mean VGF 19 %, 80 % below 27 %,
# 95 % below 45 %) so that the classes split it in the usual a 10 / b 40 / c 40 / d 10 proportions.
DENSITY_VGF_BANDS: dict[str, tuple[float, float]] = {
    "a": (0.03, 0.08),
    "b": (0.08, 0.16),
    "c": (0.16, 0.30),
    "d": (0.30, 0.50),
}

_prob = {"type": "number", "minimum": 0, "maximum": 1}


def _probs(keys: tuple[str, ...] | list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "additionalProperties": False,
        "minProperties": 1,
        "properties": {k: _prob for k in keys},
    }


def _range(lo: float, hi: float) -> dict[str, Any]:
    return {
        "type": "array",
        "minItems": 2,
        "maxItems": 2,
        "items": {"type": "number", "minimum": lo, "maximum": hi},
    }


SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["schema", "id", "version", "seed", "exams", "mix"],
    "properties": {
        "schema": {"const": RECIPE_SCHEMA_ID},
        "id": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"},
        "version": {"type": "string", "minLength": 1},
        "description": {"type": "string"},
        "seed": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
        "exams": {"type": "integer", "minimum": 1, "maximum": 100000},
        "image_size": {"enum": ["ci", "full"]},
        "lesion_model": {"enum": ["v1", "birads"]},
        "reader_model": {"enum": ["v1", "pixels"]},
        "dose": {"type": "number", "minimum": 0.05, "maximum": 4.0},
        "mix": _probs(["screen_detected", "interval", "benign", "normal"]),
        "population": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "age": _range(40, 90),
                "density": _probs(list(DENSITIES)),
                "thickness_mm": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "mean": {"type": "number", "minimum": 20, "maximum": 100},
                        "sd": {"type": "number", "minimum": 0, "maximum": 40},
                        "min": {"type": "number", "minimum": 10, "maximum": 100},
                        "max": {"type": "number", "minimum": 20, "maximum": 130},
                    },
                },
            },
        },
        "manufacturers": _probs(list(MANUFACTURERS)),
        "lesions": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "cancer_types": _probs(["mass", "calcification", "distortion", "asymmetry"]),
                "spiculated_fraction": _prob,
                "mass_size_mm": _range(5, 30),
                "screen_detected_subtle_fraction": _prob,
                "benign_types": _probs(["mass", "calcification"]),
            },
        },
        "readers": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "reader_sensitivity": {"type": "number", "minimum": 0.3, "maximum": 0.99},
                "reader_specificity": {"type": "number", "minimum": 0.8, "maximum": 0.999},
                "consensus_specificity": {"type": "number", "minimum": 0.8, "maximum": 0.999},
                "interval_reader_recall": {"type": "number", "minimum": 0.0, "maximum": 0.3},
            },
        },
    },
}


@dataclass(frozen=True)
class Recipe:
    """A validated recipe with every default filled in."""

    path: str
    id: str
    version: str
    description: str
    seed: int
    exams: int
    image_size: str
    dose: float
    mix: Mapping[str, float]
    age: tuple[int, int]
    density: Mapping[str, float]
    thickness_mm: Mapping[str, float]
    manufacturers: Mapping[str, float]
    cancer_types: Mapping[str, float]
    spiculated_fraction: float
    mass_size_mm: tuple[float, float]
    screen_detected_subtle_fraction: float
    benign_types: Mapping[str, float]
    reader_sensitivity: float
    reader_specificity: float
    consensus_specificity: float
    interval_reader_recall: float
    lesion_model: str = "v1"  # v1: the 2025 lesions | birads: lesions drawn by BI-RADS descriptors
    reader_model: str = "v1"  # v1: reads drawn from truth | pixels: reads from the rendered pixels

    def with_overrides(self, exams: int | None = None, seed: int | None = None) -> Recipe:
        """The same recipe with ``--exams`` / ``--seed`` applied (validated like the YAML)."""
        import dataclasses

        if exams is not None and not (1 <= exams <= 100000):
            raise RecipeError(f"--exams {exams}: out of range; use 1..100000")
        if seed is not None and not (0 <= seed < 2**63):
            raise RecipeError(f"--seed {seed}: out of range; use 0..2^63-1")
        return dataclasses.replace(
            self,
            exams=self.exams if exams is None else exams,
            seed=self.seed if seed is None else seed,
        )


def _normalised(where: str, probs: Mapping[str, float]) -> dict[str, float]:
    total = sum(probs.values())
    if abs(total - 1.0) > 1e-6:
        raise RecipeError(f"{where}: probabilities sum to {total:g}, not 1; adjust the values")
    return dict(probs)


def _key_path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(top level)"


def parse_recipe(data: Any, source: str = "recipe") -> Recipe:
    """Validate a recipe mapping; every error names the key and the fix."""
    if not isinstance(data, Mapping):
        raise RecipeError(f"{source}: top level is not a mapping; write the recipe as YAML keys")
    validator = jsonschema.Draft202012Validator(SCHEMA)
    errors = sorted(
        validator.iter_errors(data), key=lambda e: (list(map(str, e.absolute_path)), e.message)
    )
    if errors:
        err = errors[0]
        key = _key_path(err)
        if err.validator == "additionalProperties":
            allowed = sorted(err.schema.get("properties", {}))
            unknown = sorted(set(err.instance) - set(allowed))
            where = f"{key}." if key != "(top level)" else ""
            raise RecipeError(
                f"{source}: unknown key {where}{unknown[0]}; allowed keys here: {', '.join(allowed)}"
            )
        if err.validator == "required":
            raise RecipeError(f"{source}: {key}: {err.message}; add it")
        raise RecipeError(
            f"{source}: key {key}: {err.message}; see reference_cases/README.md for the allowed range"
        )
    pop = data.get("population", {})
    les = data.get("lesions", {})
    rd = data.get("readers", {})
    th = {"mean": 59.0, "sd": 16.0, "min": 25.0, "max": 100.0, **pop.get("thickness_mm", {})}
    if th["min"] >= th["max"]:
        raise RecipeError(
            f"{source}: key population.thickness_mm: min {th['min']} >= max {th['max']}; make min < max"
        )
    age = tuple(pop.get("age", [50, 69]))
    if age[0] > age[1]:
        raise RecipeError(
            f"{source}: key population.age: {list(age)} is not [low, high]; swap the values"
        )
    size = tuple(les.get("mass_size_mm", [5, 30]))
    if size[0] >= size[1]:
        raise RecipeError(
            f"{source}: key lesions.mass_size_mm: {list(size)} is not [low, high]; make low < high"
        )
    lesion_model = str(data.get("lesion_model", "v1"))
    reader_model = str(data.get("reader_model", "v1"))
    if reader_model == "pixels" and lesion_model != "birads":
        raise RecipeError(
            f"{source}: key reader_model: 'pixels' reads the BI-RADS descriptors of the lesions; "
            "add lesion_model: birads"
        )
    if lesion_model != "birads" and "asymmetry" in les.get("cancer_types", {}):
        raise RecipeError(
            f"{source}: key lesions.cancer_types.asymmetry: focal asymmetries are rendered only by "
            "lesion_model: birads; add it or drop the key"
        )
    return Recipe(
        path=source,
        id=data["id"],
        version=data["version"],
        description=str(data.get("description", "")),
        seed=int(data["seed"]),
        exams=int(data["exams"]),
        image_size=data.get("image_size", "ci"),
        dose=float(data.get("dose", 1.0)),
        mix=_normalised(f"{source}: key mix", data["mix"]),
        age=(int(age[0]), int(age[1])),
        density=_normalised(
            f"{source}: key population.density",
            pop.get("density", {"a": 0.1, "b": 0.4, "c": 0.4, "d": 0.1}),
        ),
        thickness_mm={k: float(v) for k, v in th.items()},
        manufacturers=_normalised(
            f"{source}: key manufacturers",
            data.get("manufacturers", {m: 1 / len(MANUFACTURERS) for m in MANUFACTURERS}),
        ),
        cancer_types=_normalised(
            f"{source}: key lesions.cancer_types",
            les.get("cancer_types", {"mass": 0.6, "calcification": 0.3, "distortion": 0.1}),
        ),
        spiculated_fraction=float(les.get("spiculated_fraction", 0.6)),
        mass_size_mm=(float(size[0]), float(size[1])),
        screen_detected_subtle_fraction=float(les.get("screen_detected_subtle_fraction", 0.1)),
        benign_types=_normalised(
            f"{source}: key lesions.benign_types",
            les.get("benign_types", {"mass": 0.6, "calcification": 0.4}),
        ),
        reader_sensitivity=float(rd.get("reader_sensitivity", 0.637)),
        reader_specificity=float(rd.get("reader_specificity", 0.978)),
        consensus_specificity=float(rd.get("consensus_specificity", 0.979)),
        interval_reader_recall=float(rd.get("interval_reader_recall", 0.06)),
        lesion_model=lesion_model,
        reader_model=reader_model,
    )


def load_recipe(path: Path | str) -> Recipe:
    """Read and validate a recipe YAML file."""
    p = Path(path)
    if not p.is_file():
        raise RecipeError(
            f"{p}: recipe not found; pass an existing YAML file (e.g. reference_cases/default.yaml)"
        )
    data = yamlio.safe_load(p.read_bytes(), str(p), RecipeError)
    return parse_recipe(data, str(p))
