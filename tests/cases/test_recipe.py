"""Recipe validation: unknown keys and out-of-range values name the key (exit 2 from the CLI)."""

import subprocess
import sys

import pytest
import yaml

from harness.cases import DEFAULT_RECIPE, FULL_RECIPE, TRAIN_RECIPE
from harness.cases.recipe import load_recipe
from harness.errors import RecipeError


def test_bundled_recipes_load():
    ids = {load_recipe(p).id for p in (DEFAULT_RECIPE, TRAIN_RECIPE, FULL_RECIPE)}
    assert ids == {"synthetic-v1", "synthetic-train-v1", "synthetic-full-v1"}
    assert load_recipe(DEFAULT_RECIPE).seed != load_recipe(TRAIN_RECIPE).seed


def _write(tmp_path, mutate):
    data = yaml.safe_load(DEFAULT_RECIPE.read_text())
    mutate(data)
    p = tmp_path / "r.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


@pytest.mark.parametrize(
    "mutate, needle",
    [
        (lambda d: d["population"].update(colour="red"), "population.colour"),
        (lambda d: d.update(exams=0), "exams"),
        (lambda d: d["lesions"].update(mass_size_mm=[2, 30]), "lesions.mass_size_mm"),
        (lambda d: d["mix"].update(normal=0.9), "mix"),
    ],
)
def test_bad_recipe_names_key(tmp_path, mutate, needle):
    with pytest.raises(RecipeError, match=needle.replace(".", r"\.")):
        load_recipe(_write(tmp_path, mutate))


def test_cli_bad_recipe_exit_2_one_line(tmp_path):
    p = _write(tmp_path, lambda d: d.update(unknown_knob=1))
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "mammocert.cli",
            "cases",
            "build",
            "--recipe",
            str(p),
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2
    assert "unknown_knob" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert "Traceback" not in r.stderr


def test_cli_unwritable_out_exit_2(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "mammocert.cli",
            "cases",
            "build",
            "--recipe",
            str(DEFAULT_RECIPE),
            "--out",
            str(blocker / "sub"),
            "--exams",
            "1",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2
    assert "choose a writable --out" in r.stderr and "Traceback" not in r.stderr
