"""Standards that lint clean but cannot work (issue #35, item 17): a subgroup ``by`` that names no
attribute of any set, age bands in months and overlapping bands are lint problems with their
line; at run time the error names the real cause, not "the reference set is too small"."""

from __future__ import annotations

from pathlib import Path

import pytest
import synthetic_set as synthetic

from conformance.context import EvaluationContext
from conformance.criteria import evaluate
from harness.attributes import ATTRIBUTES
from harness.standard import CriterionSpec, lint_text
from mammocert.cli import main

ROOT = Path(__file__).resolve().parents[1]
HEADER = """schema: mammocert/standard/v1
id: TEST-STD
version: 1.0.0
status: draft
title: test
issuer: tests
effective: "2026-01-01"
expires: "2030-01-01"
population: {prevalence_per_1000: 6.0}
seed: 7
criteria:
"""


def subgroup(by: str, bands: str | None = None) -> str:
    return (
        "  - id: T-SUB\n"
        "    title: subgroup\n"
        "    kind: subgroup\n"
        "    metric: auc\n"
        f"    by: {by}\n" + (f"    bands: {bands}\n" if bands else "") + "    min_n: 8\n"
        "    alpha: 0.05\n"
        "    pass_if: {max_gap: 0.05}\n"
        "    mandatory: true\n"
        "    source: test\n"
    )


def problems(by: str, bands: str | None = None) -> list[str]:
    _, probs = lint_text(HEADER + subgroup(by, bands))
    return [p.format("s.yaml") for p in probs]


@pytest.mark.parametrize(
    "by, bands, needle, line",
    [
        ("Age", None, "'Age' is not an exam attribute of a reference set; did you mean 'age'?", 16),
        ("ethnicity", None, "'ethnicity' is not an exam attribute", 16),
        ("age", "[[600, 719], [720, 839]]", "ages are in years, not months", 17),
        ("age", "[[50, 60], [60, 69]]", "bands [50, 60] and [60, 69] overlap (age 60", 17),
        ("age", "[[60, 69], [50, 65]]", "overlap", 17),
        ("age", "[[69, 50]]", "band [69, 50] is empty", 17),
        ("age", "[[50, .inf]]", "must be two finite numbers", 17),
        ("density", "[[1, 2]]", "'density' is categorical", 17),
        ("glandular_fraction", "[[0, 50]]", "outside the plausible glandular_fraction range", 17),
    ],
)
def test_lint_finds_subgroups_that_cannot_work(by, bands, needle, line):
    found = problems(by, bands)
    assert any(needle in p for p in found), found
    assert any(p.startswith(f"s.yaml:{line}: criteria[0](T-SUB).") for p in found), found


@pytest.mark.parametrize(
    "by, bands",
    [
        ("age", "[[50, 59], [60, 69], [70, 79]]"),
        ("age", "[[50, 59.5], [59.6, 69]]"),
        ("density", None),
        ("manufacturer", None),
        ("thickness_mm", "[[20, 50], [51, 100]]"),
    ],
)
def test_sound_subgroups_lint_clean(by, bands):
    assert problems(by, bands) == []


def test_lint_cli_exit_2_names_the_line(tmp_path, capsys):
    f = tmp_path / "s.yaml"
    f.write_text(HEADER + subgroup("Age"))
    assert main(["standard", "lint", str(f)]) == 2
    out = capsys.readouterr().out
    assert f"{f}:16: criteria[0](T-SUB).by: 'Age' is not an exam attribute" in out


def test_vocabulary_is_what_synthetic_sets_write():
    from harness.cases import DEFAULT_RECIPE
    from harness.cases.build import planned_manifest

    m = planned_manifest(DEFAULT_RECIPE, exams=12)
    written = {k for e in m.exams for k in e.attributes} - {"woman_id"}
    assert written == set(ATTRIBUTES)


# ------------------------------------------------------------------ the run-time message


def _ctx(m) -> EvaluationContext:
    std = synthetic.standard(6.0)
    return EvaluationContext(std, m, synthetic.predictions(m), 0.5, {}, "self-test")


def _spec(**params) -> CriterionSpec:
    return CriterionSpec(
        "T-SUB",
        "t",
        "subgroup",
        True,
        "test",
        {"max_gap": 0.1},
        {"metric": "auc", "min_n": 5, "alpha": 0.05, **params},
    )


def test_run_time_error_names_an_attribute_no_exam_has():
    m = synthetic.manifest()
    r = evaluate(_spec(by="Age"), _ctx(m))
    assert r.outcome == "error"
    assert "no exam of the reference set has the attribute 'Age'" in r.explanation
    assert "age, density, manufacturer" in r.explanation
    assert "too small" not in r.explanation


def test_run_time_error_names_bands_no_exam_falls_in():
    m = synthetic.manifest()
    r = evaluate(_spec(by="age", bands=[[600, 719], [720, 839]]), _ctx(m))
    assert r.outcome == "error"
    assert (
        "no exam's age falls in the bands" in r.explanation and "values range 50" in r.explanation
    )


def test_run_time_error_on_a_really_small_set_still_says_so():
    m = synthetic.manifest()
    r = evaluate(_spec(by="density", min_n=500), _ctx(m))
    assert r.outcome == "error" and "too small" in r.explanation
