"""Facts about each criterion kind are stated once, on its evaluator, and agree with the schema."""

from __future__ import annotations

import ast
import dataclasses
import importlib
import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import synthetic_set as synthetic

import conformance.criteria as criteria
from conformance.context import EvaluationContext
from conformance.registry import REGISTERED, evaluator
from harness.passif import PASS_KEYS
from harness.results import CriterionResult
from harness.standard import CriterionSpec

ROOT = Path(__file__).resolve().parents[2]


def _schema_criteria() -> dict:
    schema = json.loads((ROOT / "standards" / "schema" / "standard.schema.json").read_text())
    return schema["properties"]["criteria"]["items"]


def test_schema_kinds_and_pass_keys_are_the_registered_ones():
    items = _schema_criteria()
    assert set(items["properties"]["kind"]["enum"]) == set(criteria.KINDS)
    per_kind = {
        branch["if"]["properties"]["kind"]["const"]: branch["then"]["properties"]["pass_if"]
        for branch in items["allOf"]
    }
    assert set(per_kind) == set(criteria.KINDS)
    for kind, spec in criteria.KINDS.items():
        assert set(per_kind[kind]["properties"]) == set(spec.pass_keys), kind
        assert per_kind[kind]["additionalProperties"] is False, kind
        assert set(spec.pass_keys) <= set(PASS_KEYS), kind


def test_every_kind_has_one_family_with_a_suite_module():
    family_kinds = [k for ks in criteria.FAMILIES.values() for k in ks]
    assert sorted(family_kinds) == sorted(criteria.KINDS)
    assert set(criteria.FAMILIES) == {
        "discrimination",
        "programme",
        "subgroups",
        "localization",
        "output_validity",
        "invariance",
        "operations",
    }
    for fam in criteria.FAMILIES:
        assert (ROOT / "conformance" / f"test_{fam}.py").is_file()
    suite_modules = {p.stem.removeprefix("test_") for p in (ROOT / "conformance").glob("test_*.py")}
    assert suite_modules == set(criteria.FAMILIES)
    assert all(criteria.FAMILY_OF[k] == s.family for k, s in criteria.KINDS.items())


def test_the_derived_tables():
    assert criteria.LIVE_KINDS == {
        "invariance",
        "robustness_sweep",
        "decision_stability",
        "insertion_response",
        "determinism",
        "input_rejection",
        "caching",
    }
    # every live kind's verdict is a function of the predictions it asked for: `verify --cases`
    # replays them all from the bundle's records; only the searching ones depend on Hypothesis
    assert all(criteria.KINDS[k].replayable for k in criteria.LIVE_KINDS)
    assert criteria.MODEL_ONLY_KINDS == frozenset()
    assert {k for k, s in criteria.KINDS.items() if s.searches} == {
        "invariance",
        "decision_stability",
        "insertion_response",
    }
    assert criteria.OPERATING_POINT_KINDS == (
        "sensitivity_at_specificity",
        "sensitivity_at_operating_point",
        "specificity_at_operating_point",
        "recall_rate",
        "cancer_detection_rate",
        "ppv",
    )
    assert set(criteria.KIND_FACTS) == set(criteria.KINDS)
    assert all(f.section and f.method for f in criteria.KIND_FACTS.values())
    assert criteria.KIND_FACTS["auc"].section == "Discrimination"


def test_registry_imports_no_criteria_module():
    code = (
        "import sys, conformance.registry; "
        "sys.exit(any(m.startswith('conformance.criteria') for m in sys.modules))"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def _imports(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module


@pytest.mark.parametrize("package", ["harness", "reports"])
def test_lower_layers_never_import_conformance(package):
    bad = [
        f"{p.relative_to(ROOT)}: {m}"
        for p in sorted((ROOT / package).rglob("*.py"))
        for m in _imports(p)
        if m == "conformance" or m.startswith("conformance.")
    ]
    assert bad == []


def test_a_kind_registered_twice_or_with_an_unknown_pass_key_is_refused():
    with pytest.raises(RuntimeError, match="two evaluators"):
        evaluator("auc", family="x", section="x", method="x", pass_keys=("value_gte",))(
            lambda spec, ctx: None
        )
    with pytest.raises(RuntimeError, match="not keys of harness.passif"):
        evaluator("new_kind", family="x", section="x", method="x", pass_keys=("value_nearly",))
    with pytest.raises(RuntimeError, match="declare the pass_if keys"):
        evaluator("new_kind", family="x", section="x", method="x", pass_keys=())
    for fact in ("replayable", "searches"):  # facts about how a live kind asks the model
        with pytest.raises(RuntimeError, match="without needs_live"):
            evaluator(
                "new_kind",
                family="x",
                section="x",
                method="x",
                pass_keys=("value_gte",),
                **{fact: True},
            )
    assert "new_kind" not in REGISTERED


@pytest.fixture()
def example_kind():
    """Load tests/conformance/example_kind.py (one new module, no other table edited), re-derive
    conformance.criteria's tables, and undo both afterwards."""
    name = "mammocert_example_kind"
    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name("example_kind.py"))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        importlib.reload(criteria)
        yield module
    finally:
        REGISTERED.pop("example_warm_restart", None)
        sys.modules.pop(name, None)
        importlib.reload(criteria)


def test_adding_a_kind_is_one_module(example_kind):
    from reports.render import families

    kind = example_kind.KIND
    assert criteria.KINDS[kind].evaluate is example_kind.example_warm_restart
    assert criteria.FAMILIES["operations"][-1] == kind
    assert criteria.FAMILY_OF[kind] == "operations"
    assert kind in criteria.LIVE_KINDS and kind not in criteria.OPERATING_POINT_KINDS
    # a restart cannot be replayed from recorded predictions: `verify --cases` names it
    assert kind in criteria.MODEL_ONLY_KINDS
    facts = criteria.KIND_FACTS[kind]
    assert facts.section == "Example: behaviour after a restart"

    spec = CriterionSpec("T-RESTART", "Restart", kind, True, "test", {"max_abs_diff_lte": 0.01})
    m = synthetic.manifest(n_cancer=2, n_normal=2)
    ctx = EvaluationContext(synthetic.standard(), m, synthetic.predictions(m), 0.5, {}, "x")
    passed = criteria.evaluate(dataclasses.replace(spec, params={"diff": 0.0}), ctx)
    assert passed.outcome == "passed"
    assert passed.explanation.endswith("Meets the requirement (max abs diff ≤ 0.01).")
    assert criteria.evaluate(spec, ctx).outcome == "error"  # NotEvaluable -> error result

    shown = families([_result(kind), _result("auc")], criteria.KIND_FACTS)
    assert [f.name for f in shown] == [facts.section, "Discrimination"]


def test_the_example_kind_is_gone_afterwards():
    assert "example_warm_restart" not in criteria.KINDS
    assert "example_warm_restart" not in REGISTERED
    assert "example_warm_restart" not in criteria.FAMILIES["operations"]


def _result(kind: str) -> CriterionResult:
    return CriterionResult(kind.upper(), kind, kind, True, "passed", 0.0, None, {}, 1, "")
