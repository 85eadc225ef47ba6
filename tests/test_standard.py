"""Standards: schema validation with line numbers, lint/diff CLI, the shipped standards."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import StandardError
from harness.standard import SCHEMA_PATH, lint_text, load_standard

ROOT = Path(__file__).resolve().parents[1]
DRAFT = ROOT / "standards" / "dk-mammo-ai-draft.yaml"
DEMO = ROOT / "standards" / "demo.yaml"

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
AUC = """  - id: T-AUC
    title: discrimination
    kind: auc
    level: exam
    ci: {method: delong, level: 0.95}
    pass_if: {ci_lower_gte: 0.8}
    mandatory: true
    source: test
"""


def mammocert(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mammocert.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_shipped_standards_are_valid_and_cover_every_kind():
    kinds = set(
        json.loads(SCHEMA_PATH.read_text())["properties"]["criteria"]["items"]["properties"][
            "kind"
        ]["enum"]
    )
    # the programme-impact kinds are in the draft only until the demo set is sized for them
    not_in_demo = {"triage_safety", "workload_reduction"}
    for path, expected in ((DRAFT, kinds), (DEMO, kinds - not_in_demo)):
        std = load_standard(path)
        assert {c.kind for c in std.criteria} == expected, path
        assert all(c.source for c in std.criteria)
    assert load_standard(DRAFT).reference_set is None  # draft: certify refuses it by design
    assert load_standard(DEMO).reference_set is not None


def test_every_draft_threshold_cites_the_research_section():
    for c in load_standard(DRAFT).criteria:
        assert c.source.startswith("[§"), c.id


def test_problems_carry_line_numbers_and_fixes():
    text = (
        HEADER
        + AUC.replace("ci_lower_gte: 0.8", "ci_lower_gte: 1.8")
        + AUC.replace("    mandatory", "    bogus: 1\n    mandatory")
    )
    _, problems = lint_text(text)
    lines = {p.line: p.message for p in problems}
    assert any("out of range" in m for m in lines.values())
    assert lines[HEADER.count("\n") + 8 + 7].startswith(
        "unknown key 'bogus'"
    )  # the second criterion's bogus key
    assert any("duplicate criterion id 'T-AUC'" in p.message for p in problems)


def test_applies_to_scopes_a_criterion_by_what_the_product_receives(tmp_path):
    scoped = AUC.replace("    mandatory", "    applies_to: {inputs: [dicom]}\n    mandatory")
    std = tmp_path / "scoped.yaml"
    std.write_text(HEADER + scoped)
    (spec,) = load_standard(std).criteria
    assert spec.applies_to == ("dicom",) and "applies_to" not in spec.params
    assert spec.to_dict()["applies_to"] == {"inputs": ["dicom"]}
    for bad in ("{inputs: [pixels]}", "{inputs: []}", "{interfaces: [onnx]}"):
        _, problems = lint_text(HEADER + scoped.replace("{inputs: [dicom]}", bad))
        assert problems and all(p.line == HEADER.count("\n") + 7 for p in problems), bad
        assert "applies_to" in problems[0].where, problems[0]
    rej = next(c for c in load_standard(DRAFT).criteria if c.id == "DK-REJ-01")
    assert rej.applies_to == ("dicom",)


def test_unknown_kind_is_named_with_the_known_kinds():
    _, problems = lint_text(HEADER + AUC.replace("kind: auc", "kind: auroc"))
    msg = [p for p in problems if "unknown kind" in p.message]
    assert msg and "'auroc'" in msg[0].message and "auc" in msg[0].message
    assert msg[0].line == HEADER.count("\n") + 3


def test_load_raises_one_line_with_the_first_problem(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(HEADER + AUC.replace("level: exam", "level: woman"))
    with pytest.raises(StandardError) as exc:
        load_standard(bad)
    assert str(exc.value).startswith(f"{bad}:15: criteria[0](T-AUC).level:")
    assert "\n" not in str(exc.value)


def test_lint_cli_exit_codes(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text(HEADER + AUC)
    r = mammocert("standard", "lint", str(good))
    assert r.returncode == 0 and "1 criteria" in r.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(HEADER.replace('expires: "2030-01-01"', 'expires: "2025-01-01"') + AUC)
    r = mammocert("standard", "lint", str(bad))
    assert r.returncode == 2 and "bad.yaml:8: expires" in r.stdout
    r = mammocert(
        "run",
        "--vendor",
        "x",
        "--standard",
        str(bad),
        "--cases",
        str(tmp_path),
        "--out",
        str(tmp_path / "o"),
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_in_force_window():
    std = load_standard(DRAFT)
    assert not std.in_force(dt.date(2026, 12, 31))
    assert std.in_force(dt.date(2027, 1, 1))
    assert not std.in_force(dt.date(2029, 1, 1))


SPEC_OP = """  - id: T-SPEC
    title: specificity
    kind: specificity_at_operating_point
    ci: {method: wilson, level: 0.95}
    pass_if: {ci_lower_gte: 0.9}
    mandatory: true
    source: test
"""
RECALL = """  - id: T-RECALL
    title: recall
    kind: recall_rate
    ci: {method: bootstrap, level: 0.95, replicates: 200}
    comparator_reader: consensus
    pass_if: {ratio_ci_upper_lte: 1.1}
    mandatory: false
    source: test
"""


def test_diff_reports_changes_in_document_order_as_yaml_with_their_direction(tmp_path):
    a = tmp_path / "a.yaml"
    b = tmp_path / "b.yaml"
    a.write_text(HEADER + SPEC_OP + AUC + RECALL)
    b.write_text(
        HEADER.replace("1.0.0", "1.1.0")
        + SPEC_OP.replace("0.9}", "0.85}").replace("wilson", "clopper_pearson")
        + AUC.replace("T-AUC", "T-AUC-2")
        + AUC.replace("0.8}", "0.85}")
        + RECALL.replace("1.1}", "1.05}").replace("mandatory: false", "mandatory: true")
    )
    r = mammocert("standard", "diff", str(a), str(b))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    changes = [line for line in lines if line[:2] in ("~ ", "+ ", "- ")]
    assert changes == [
        "~ version: 1.0.0 -> 1.1.0 [changed]",
        "~ T-SPEC ci.method: wilson -> clopper_pearson [changed]",
        "~ T-SPEC pass_if.ci_lower_gte: 0.9 -> 0.85 [looser]",
        "+ T-AUC-2 [added]",
        "~ T-AUC pass_if.ci_lower_gte: 0.8 -> 0.85 [stricter]",
        "~ T-RECALL pass_if.ratio_ci_upper_lte: 1.1 -> 1.05 [stricter]",
        "~ T-RECALL mandatory: false -> true [stricter]",
    ]
    # the added criterion is shown whole, as YAML
    added = lines.index("+ T-AUC-2 [added]")
    assert lines[added + 1].strip() == "- id: T-AUC-2"
    assert "    ci: {method: delong, level: 0.95}" in "\n".join(lines[added : added + 9])
    assert not any(line.startswith("warning") for line in lines)
    md = mammocert("standard", "diff", str(a), str(b), "--format", "markdown").stdout
    assert "| T-SPEC | pass_if.ci_lower_gte | `0.9` | `0.85` | looser |" in md
    assert "**Added: T-AUC-2**" in md and "```yaml" in md
    doc = json.loads(mammocert("standard", "diff", str(a), str(b), "--format", "json").stdout)
    assert doc["warnings"] == []
    assert {
        "criterion": "T-AUC",
        "key": "pass_if.ci_lower_gte",
        "from": 0.8,
        "to": 0.85,
        "tag": "stricter",
    } in doc["changes"]
    removed = json.loads(mammocert("standard", "diff", str(b), str(a), "--format", "json").stdout)
    gone = [c for c in removed["changes"] if c["tag"] == "removed"]
    assert [c["criterion"] for c in gone] == ["T-AUC-2"] and gone[0]["from"]["kind"] == "auc"
    assert "to" not in gone[0]


def test_diff_warns_when_content_changes_without_a_version_bump_or_the_version_goes_down(
    tmp_path,
):
    a = tmp_path / "a.yaml"
    b = tmp_path / "b.yaml"
    a.write_text(HEADER + AUC)
    b.write_text(HEADER + AUC.replace("0.8}", "0.85}"))
    r = mammocert("standard", "diff", str(a), str(b))
    assert "warning: the content changed but the version did not (1.0.0)" in r.stdout
    b.write_text(HEADER.replace("1.0.0", "0.9.0") + AUC)
    r = mammocert("standard", "diff", str(a), str(b), "--format", "markdown")
    assert "> **Warning:** the version goes down (1.0.0 -> 0.9.0)" in r.stdout
    r = mammocert("standard", "diff", str(a), str(a))
    assert r.stdout.splitlines()[-1] == "(no differences in content)"
    r = mammocert("standard", "diff", str(a), str(b), "--format", "yaml")
    assert r.returncode == 2 and "invalid choice" in r.stderr
