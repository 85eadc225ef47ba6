"""A standard's ``programme_impact`` block: lint, and the report's "Programme impact" section.

A self-test run of a predictions file on the 200-exam synthetic set under a standard with the
block writes ``programme.json`` (equal to ``harness.programme`` run directly on the same
predictions), shows its figures in ``report.html`` and verifies; without the block there is no
section and no file.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from html import unescape
from pathlib import Path

import html5lib
import pytest
import synthetic_set
import yaml

from conformance.criteria import KIND_FACTS
from conformance.engine import RunRequest, run
from harness.cases.manifest import load_manifest
from harness.errors import StandardError, UsageError
from harness.jsonutil import sha256_file
from harness.predictions import read_predictions, write_predictions
from harness.programme.analysis import analyse, validate_document
from harness.programme.costs import load_shipped
from harness.programme.screening import ScreeningSet
from harness.standard import lint_text, load_standard
from reports.render import render_bundle_html, render_report
from reports.signing import generate_keypair
from reports.verify import verify_bundle

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "standards" / "demo.yaml"
PROTOCOLS = ["ai_second_reader", "ai_triage_masai"]
BLOCK = {
    "costs": "dk-default",
    "region": "midtjylland",
    "protocols": PROTOCOLS,
    "bootstrap": {"replicates": 300, "level": 0.95},
    "draws": 300,
    "source": "test",
}
OPERATING_POINT = 0.5


def standard_text(block: dict | None, criteria: tuple[str, ...] = ("DK-AUC-01",)) -> str:
    doc = yaml.safe_load(DEMO.read_text(encoding="utf-8"))
    doc["criteria"] = [c for c in doc["criteria"] if c["id"] in criteria]
    doc.pop("programme_impact", None)
    if block is not None:
        doc["programme_impact"] = block
    return yaml.safe_dump(doc, sort_keys=False)


# -- lint -------------------------------------------------------------------------------------


def test_lint_accepts_the_block_and_load_gives_its_defaults(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text(
        standard_text({"costs": "dk-default", "bootstrap": {"replicates": 1000}}), encoding="utf-8"
    )
    assert lint_text(path.read_text())[1] == []
    spec = load_standard(path).programme_impact
    assert spec is not None
    assert (spec.costs, spec.region, spec.protocols) == ("dk-default", None, ())
    assert (spec.seed, spec.replicates, spec.level, spec.draws) == (20261127, 1000, 0.95, 4000)
    path.write_text(standard_text(BLOCK | {"seed": 5}), encoding="utf-8")
    spec = load_standard(path).programme_impact
    assert spec is not None
    assert (spec.region, spec.protocols, spec.seed) == ("midtjylland", tuple(PROTOCOLS), 5)
    path.write_text(standard_text(None), encoding="utf-8")
    assert load_standard(path).programme_impact is None


@pytest.mark.parametrize(
    ("change", "where", "says"),
    [
        ({"costs": "my-costs.yaml"}, "programme_impact.costs", "not a cost model shipped"),
        ({"region": "fyn"}, "programme_impact.region", "use one of hovedstaden, midtjylland"),
        ({"protocols": ["ai_triage_masai", "masai"]}, "programme_impact.protocols", "'masai'"),
        ({"bootstrap": {"replicates": 10}}, "programme_impact.bootstrap.replicates", "range"),
        ({"bootstrap": {"level": 0.9}}, "programme_impact.bootstrap", "'replicates'"),
        ({"draws": 5}, "programme_impact.draws", "range"),
        ({"region": None}, "programme_impact.region", "expected string"),
        ({"tables": ["x"]}, "programme_impact.tables", "unknown key 'tables'"),
    ],
)
def test_lint_refuses_a_bad_block_with_one_line(change: dict, where: str, says: str) -> None:
    text = standard_text(BLOCK | change)
    _, problems = lint_text(text)
    assert len(problems) == 1, problems
    line = problems[0].format("s.yaml")
    assert "\n" not in line and line.startswith("s.yaml:")
    assert f": {where}: " in line and says in line
    # the line number points into the block
    block_line = text.splitlines().index("programme_impact:") + 1
    assert problems[0].line >= block_line


def test_lint_cli_refuses_with_exit_2_and_load_raises_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(standard_text(BLOCK | {"region": "fyn"}), encoding="utf-8")
    r = subprocess.run(
        [sys.executable, "-m", "mammocert.cli", "standard", "lint", str(bad)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2
    assert "programme_impact.region: 'fyn' is not a region of cost model dk-default" in r.stdout
    assert "Traceback" not in r.stderr
    with pytest.raises(StandardError, match=r"bad\.yaml:\d+: programme_impact\.region"):
        load_standard(bad)


# -- the run and its report -------------------------------------------------------------------


@pytest.fixture(scope="module")
def ws(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("impact")
    synthetic_set.write_set(d / "cases")
    manifest = load_manifest(d / "cases")
    write_predictions(d / "preds.jsonl", synthetic_set.predictions(manifest, 2.5))
    (d / "with.yaml").write_text(standard_text(BLOCK), encoding="utf-8")
    (d / "without.yaml").write_text(standard_text(None), encoding="utf-8")
    generate_keypair(d / "keys")
    return d


def self_test(ws: Path, standard: str, out: Path, cases: Path | None = None, key: bool = True):
    return run(
        RunRequest(
            standard=ws / standard,
            cases=cases or ws / "cases",
            out=out,
            predictions=ws / "preds.jsonl",
            operating_point=OPERATING_POINT,
            key=ws / "keys" / "signing-key.pem" if key else None,
        )
    )


@pytest.fixture(scope="module")
def bundle(ws: Path) -> Path:
    out = ws / "bundle"
    self_test(ws, "with.yaml", out)
    return out


def direct_analysis(ws: Path) -> dict:
    """harness.programme on the same predictions, set and settings, without the engine."""
    manifest = load_manifest(ws / "cases")
    ss = ScreeningSet.from_manifest(manifest, read_predictions(ws / "preds.jsonl"))
    std = load_standard(ws / "with.yaml")
    return analyse(
        ss,
        std.prevalence_per_1000,
        std.seed,
        load_shipped("dk-default", "midtjylland").only(PROTOCOLS),
        operating_point=OPERATING_POINT,
        n_boot=300,
        draws=300,
    )


def test_the_bundle_holds_the_analysis_of_its_own_predictions(ws: Path, bundle: Path) -> None:
    doc = json.loads((bundle / "programme.json").read_text(encoding="utf-8"))
    validate_document(doc)
    direct = direct_analysis(ws)
    assert [p["name"] for p in doc["protocols"]] == ["double_reading", *PROTOCOLS]
    for key in ("protocols", "sensitivity", "set", "population", "cost_model", "seed"):
        assert doc[key] == direct[key], key
    assert doc["cost_model"]["region"] == "midtjylland"
    assert doc["bootstrap"] == {"replicates": 300, "level": 0.95}
    assert doc["standard"]["digest"] == load_standard(ws / "with.yaml").digest
    results = json.loads((bundle / "results.json").read_text(encoding="utf-8"))
    assert results["summary"]["programme_impact"] == {
        "file": "programme.json",
        "sha256": sha256_file(bundle / "programme.json"),
    }


def _pct(est: dict, digits: int) -> str:
    lo, hi = (100 * x for x in est["ci"])
    return f"{100 * est['value']:.{digits}f} % ({lo:.{digits}f}–{hi:.{digits}f} %)"


def _per_1000(est: dict, digits: int) -> str:
    lo, hi = est["ci"]
    return f"{est['value']:.{digits}f} ({lo:.{digits}f}–{hi:.{digits}f})"


def test_the_report_shows_the_figures_of_the_analysis(ws: Path, bundle: Path) -> None:
    html = (bundle / "report.html").read_text(encoding="utf-8")
    assert html.count("<h2>Programme impact</h2>") == 1
    section = html[html.index('id="programme-impact"') : html.index("Cases with errors")]
    direct = direct_analysis(ws)
    for p in direct["protocols"]:
        m, y = p["measures"], p["yearly"]
        assert f"<th>{p['name']}</th>" in section
        expected = [
            _per_1000(m["reads_per_1000"], 0),
            _per_1000(m["arbitrations_per_1000"], 1),
            _pct(m["recall_rate"], 2),
            _per_1000(m["cdr_per_1000"], 2),
            _pct(m["ppv"], 1),
            _per_1000(m["missed_vs_double_reading_per_1000"], 2),
            _per_1000(m["found_vs_double_reading_per_1000"], 2),
            # yearly radiologist hours for the region, with its CI, flagged: unverified inputs
            f"{y['radiologist_hours']['value']:,.0f} ({y['radiologist_hours']['ci'][0]:,.0f} to "
            f"{y['radiologist_hours']['ci'][1]:,.0f}) *",
            f"{y['total_cost']['value']:,.0f} (",
        ]
        if p["uses_ai"]:
            expected.append(f"{y['net_cost']['value']:,.0f} (")
        for text in expected:
            assert f'<td class="num">{text}' in section, (p["name"], text)
    assert "midtjylland (70,000 screens a year" in section
    for name in direct["unverified_inputs"]:
        assert name in section
    assert "yes</td>" in section and "no *</td>" in section  # verified and unverified inputs
    assert section.count("<svg") >= 4  # protocols, two tornados, the band sweep, the PSA
    assert sha256_file(bundle / "programme.json") in html  # the page names the file it shows


def test_the_report_with_the_section_is_valid_self_contained_html(bundle: Path) -> None:
    html = (bundle / "report.html").read_text(encoding="utf-8")
    html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse(html)
    assert "<script" not in html.lower()
    ids = re.findall(r'\sid="([^"]+)"', html)
    assert len(ids) == len(set(ids))  # the section's SVG ids do not clash with the criteria's


def test_the_bundle_verifies_and_rerenders_byte_for_byte(ws: Path, bundle: Path) -> None:
    rep = verify_bundle(bundle, ws / "keys" / "signing-key.pub.pem")
    assert rep.verdict == "CONFORMANT" and rep.criteria == 1
    envelope = json.loads((bundle / "attestation.intoto.json").read_text(encoding="utf-8"))
    statement = json.loads(base64.b64decode(envelope["payload"]))
    names = {s["name"] for s in statement["subject"]}
    assert {"bundle/programme.json", "bundle/vendor/programme.json"} <= names
    assert render_bundle_html(bundle, KIND_FACTS) == (bundle / "report.html").read_text(
        encoding="utf-8"
    )
    vendor = bundle / "vendor"
    assert "Programme impact" in (vendor / "report.html").read_text(encoding="utf-8")
    assert (vendor / "programme.json").read_bytes() == (bundle / "programme.json").read_bytes()


def test_the_section_is_deterministic(ws: Path, bundle: Path) -> None:
    again = ws / "again"
    self_test(ws, "with.yaml", again, key=False)
    assert (again / "programme.json").read_bytes() == (bundle / "programme.json").read_bytes()


def test_a_changed_programme_file_is_refused_by_the_report_and_verify(
    ws: Path, tmp_path: Path
) -> None:
    out = tmp_path / "b"
    self_test(ws, "with.yaml", out)
    doc = json.loads((out / "programme.json").read_text(encoding="utf-8"))
    doc["protocols"][1]["measures"]["recall_rate"]["value"] = 0.001
    (out / "programme.json").write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    with pytest.raises(UsageError, match=r"programme\.json: sha256 differs from results\.json"):
        render_report(out, KIND_FACTS)
    with pytest.raises(Exception, match=r"programme\.json: sha256 differs"):
        verify_bundle(out, ws / "keys" / "signing-key.pub.pem")


def test_without_the_block_no_section_and_no_file(ws: Path, tmp_path: Path) -> None:
    out = tmp_path / "b"
    self_test(ws, "with.yaml", out, key=False)
    assert (out / "programme.json").is_file()
    self_test(ws, "without.yaml", out, key=False)  # the same --out: the earlier file goes
    assert not (out / "programme.json").exists()
    assert not (out / "vendor" / "programme.json").exists()
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert "programme_impact" not in results["summary"]
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "Programme impact" not in html and "programme.json" not in html
    statement = json.loads((out / "statement.unsigned.json").read_text(encoding="utf-8"))
    assert not any("programme" in s["name"] for s in statement["subject"])


def test_a_set_without_reads_says_why_the_section_is_empty(ws: Path, tmp_path: Path) -> None:
    from harness.cases.manifest import seal

    raw = synthetic_set.manifest_dict()
    del raw["exams"][3]["readers"]
    raw = seal(raw)
    (tmp_path / "cases").mkdir()
    (tmp_path / "cases" / "manifest.json").write_text(json.dumps(raw), encoding="utf-8")
    out = tmp_path / "b"
    res = self_test(ws, "with.yaml", out, cases=tmp_path / "cases", key=False)
    why = res.summary["programme_impact"]["not_computed"]
    assert why.startswith("1 of the set's 200 exams have no recorded reader1, reader2, consensus")
    assert not (out / "programme.json").exists()
    html = unescape((out / "report.html").read_text(encoding="utf-8"))
    assert "this run could not compute it: 1 of the set's 200 exams" in html
    vendor = unescape((out / "vendor" / "report.html").read_text(encoding="utf-8"))
    assert "this run could not compute it: the programme analysis could not be computed" in vendor
