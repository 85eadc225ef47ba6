"""report.html: deterministic, self-contained, strictly valid HTML, and faithful to results.json."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

import html5lib
import pytest
import reports_bundle_factory as synthetic

from conformance.criteria import KIND_FACTS
from harness.passif import describe, numeric_limits
from harness.results import SELF_TEST_BANNER, CriterionResult, KindFacts, write_results
from mammocert.cli import main
from reports import plots
from reports.render import render_report


@pytest.fixture()
def bundle(tmp_path: Path) -> Path:
    synthetic.write_bundle(tmp_path)
    return tmp_path


def html_of(bundle: Path) -> str:
    return render_report(bundle, KIND_FACTS).read_text(encoding="utf-8")


def test_render_is_deterministic_across_processes(bundle: Path) -> None:
    first = render_report(bundle, KIND_FACTS).read_bytes()
    assert render_report(bundle, KIND_FACTS).read_bytes() == first
    # A fresh interpreter with another hash seed: no hidden dependence on set order or ids.
    code = (
        "import sys; from pathlib import Path; from reports.render import render_report; "
        "from conformance.criteria import KIND_FACTS; render_report(Path(sys.argv[1]), KIND_FACTS)"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-c", code, str(bundle)], check=True, env=env)
    assert (
        hashlib.sha256((bundle / "report.html").read_bytes()).hexdigest()
        == hashlib.sha256(first).hexdigest()
    )


def test_html_is_strictly_valid(bundle: Path) -> None:
    parser = html5lib.HTMLParser(strict=True, namespaceHTMLElements=False)
    doc = parser.parse(html_of(bundle))
    assert doc.find(".//title") is not None


def test_strict_parser_rejects_broken_html() -> None:
    """Control: the strict check does fail on malformed markup."""
    with pytest.raises(html5lib.html5parser.ParseError):
        html5lib.HTMLParser(strict=True).parse(
            "<!DOCTYPE html><html><head><title>x</title></head><body></p></body></html>"
        )


def test_self_contained(bundle: Path) -> None:
    html = html_of(bundle)
    assert "<script" not in html.lower()
    assert "<link" not in html.lower()
    assert "@import" not in html and "@font-face" not in html
    for m in re.finditer(r'(?:src|href|xlink:href)\s*=\s*"([^"]*)"', html):
        assert m.group(1).startswith(("data:", "#")), m.group(0)[:80]
    for m in re.finditer(r"url\(([^)]*)\)", html):
        assert m.group(1).strip("'\"").startswith(("#", "data:")), m.group(0)
    assert not re.search(r"https?://(?!www\.w3\.org/)", html.replace("http://www.w3.org/", "")), (
        "no absolute URLs apart from XML namespace names"
    )


def test_identity_and_every_criterion_shown(bundle: Path) -> None:
    html = html_of(bundle)
    for text in (
        "Example Medical ApS",
        "ExampleMammo",
        "2.1.0",
        "onnx",
        synthetic.MODEL_DIGEST,
        "sha256:" + "cd" * 32,
        "DK-MAMMO-AI",
        "synthetic-v1",
        "sha256:" + "ab" * 32,
        "be5a68a0d1c2e3f4",
        "CPUExecutionProvider",
        "2026-11-27T10:00:00Z",
        "2026-11-27T10:42:00Z",
    ):
        assert text in html, text
    for c in synthetic.criteria():
        assert f'id="row-{c.id}"' in html
    assert "ci lower ≥ 0.85" in html
    assert "p50 s ≤ 1.0 and p95 s ≤ 2.0" in html
    assert "0.874 – 0.950" in html
    assert "20261127" in html  # the seed, verbatim


def test_plots_and_counterexample_and_faults(bundle: Path) -> None:
    html = html_of(bundle)
    for cid in ("DK-AUC-01", "DK-SUB-01", "DK-LOC-01", "DK-ROB-01", "DK-LAT-01"):
        fig = re.search(rf'<figure id="fig-{cid}">(.*?)</figure>', html, re.S)
        assert fig and "<svg" in fig.group(1), cid
    assert 'id="fig-DK-TFR-01"' not in html  # no evidence, no plot
    ce = re.search(r'<div class="ce" id="ce-DK-INV-01">(.*?)</div>\n</div>', html, re.S)
    assert ce and "E0042" in ce.group(1) and "0.710 before → 0.320 after" in ce.group(1)
    assert ce.group(1).count('src="data:image/png;base64,') == 2
    flip = re.search(r'<div class="ce" id="ce-DK-DEC-NOISE">(.*?)</div>\n</div>', html, re.S)
    assert flip and "E0101" in flip.group(1) and "0.700 before → 0.620 after" in flip.group(1)
    assert "dose" in flip.group(1) and "0.93" in flip.group(1)
    assert "flip fraction ≤ 0.05" in html
    assert KIND_FACTS["decision_stability"].section in html
    for exam in ("E0007", "E0131", "E0288"):
        assert exam in html
    assert "&lt;MONOCHROME3&gt;" in html  # escaped, not markup


def test_svg_ids_are_unique(bundle: Path) -> None:
    ids = re.findall(r'\sid="([^"]+)"', html_of(bundle))
    dupes = {i for i in ids if ids.count(i) > 1}
    assert not dupes


@pytest.mark.parametrize(
    ("mode", "headline"),
    [("certify", "NOT CONFORMANT"), ("self-test", SELF_TEST_BANNER), ("demo", "DEMONSTRATION")],
)
def test_banner_per_mode(tmp_path: Path, mode: str, headline: str) -> None:
    synthetic.write_bundle(tmp_path, mode=mode)
    html = html_of(tmp_path)
    m = re.search(r'<div class="headline">([^<]*)</div>', html)
    assert m and m.group(1) == headline
    if mode != "certify":
        assert (
            "Outcome" in html and "NOT CONFORMANT" in html
        )  # the criteria outcome is still stated


def test_conformant_banner(tmp_path: Path) -> None:
    crit = [c for c in synthetic.criteria() if c.outcome == "passed"]
    synthetic.write_bundle(tmp_path, crit=crit)
    assert '<div class="headline">CONFORMANT</div>' in html_of(tmp_path)
    assert 'class="banner pass"' in html_of(tmp_path)


def test_unsigned_is_stated(tmp_path: Path) -> None:
    synthetic.write_bundle(tmp_path, mode="self-test", signing="unsigned")
    assert "Unsigned: no attestation was signed" in html_of(tmp_path)


def _with_evidence(c: CriterionResult, evidence: dict) -> CriterionResult:
    return dataclasses.replace(c, evidence=evidence)


@pytest.mark.parametrize(
    "evidence",
    [
        {},
        {"roc": "nonsense"},
        {"roc": {"fpr": [0, 1]}},
        {"roc": {"fpr": ["a", "b"], "tpr": [0, 1]}},
        {"roc": {"fpr": [0, 0.5, 1], "tpr": [0, 1]}},
        {"groups": [{"name": "x"}]},
        {"froc": {"nlf": [0.1]}},
        {"levels": [{"level": "high"}]},
        {"histogram": {"edges": [0, 1], "counts": [1, 2]}},
        {"latencies_s": []},
        {"counterexample": "x"},
        {"counterexample": {"thumbnails": {"before": "https://evil.example/x.png"}}},
    ],
)
def test_missing_or_malformed_evidence_means_no_plot(tmp_path: Path, evidence: dict) -> None:
    crit = [_with_evidence(c, evidence) for c in synthetic.criteria()]
    synthetic.write_bundle(tmp_path, crit=crit)
    html = html_of(tmp_path)
    assert "<figure" not in html
    assert "evil.example" not in html
    html5lib.HTMLParser(strict=True).parse(html)


def test_sections_and_methods_come_from_the_kind_facts_given(bundle: Path) -> None:
    """The report knows no kind itself: headings and method texts are the facts it is given, and a
    kind without facts is titled from its name."""
    facts = {"auc": KindFacts(section="Ranking of exams", method="A method text for AUC.")}
    html = render_report(bundle, facts).read_text(encoding="utf-8")
    assert '<th colspan="7">Ranking of exams</th>' in html
    assert "A method text for AUC." in html
    assert '<th colspan="7">Latency</th>' in html  # fallback: from the kind's name
    assert KIND_FACTS["latency"].section not in html
    full = render_report(bundle, KIND_FACTS).read_text(encoding="utf-8")
    assert f'<th colspan="7">{KIND_FACTS["latency"].section}</th>' in full
    assert KIND_FACTS["latency"].method in full


def test_report_cli(bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(bundle)]) == 0
    assert (bundle / "report.html").is_file()
    assert "report.html" in capsys.readouterr().out


def test_report_cli_without_results_is_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "results.json" in err


def test_text_from_results_is_escaped(tmp_path: Path) -> None:
    crit = synthetic.criteria()
    crit[0] = dataclasses.replace(crit[0], explanation='<script>alert("x")</script>', title="A & B")
    synthetic.write_bundle(tmp_path, crit=crit)
    html = html_of(tmp_path)
    assert "<script>" not in html and "&lt;script&gt;" in html and "A &amp; B" in html


def test_results_are_not_modified_by_rendering(bundle: Path) -> None:
    before = (bundle / "results.json").read_bytes()
    render_report(bundle, KIND_FACTS)
    assert (bundle / "results.json").read_bytes() == before
    write_results(
        bundle / "results.json",
        synthetic.make_results(standard_digest=synthetic.make_results().standard["digest"]),
    )


@pytest.mark.parametrize(
    ("pass_if", "text"),
    [  # the wording of results.json's explanations (harness.passif.describe), shown as is
        ({"ci_lower_gte": 0.85}, "ci lower ≥ 0.85"),
        ({"value_gte": 0.9}, "value ≥ 0.9"),
        ({"p50_lte_s": 1.0, "p95_lte_s": 2.5}, "p50 s ≤ 1.0 and p95 s ≤ 2.5"),
        ({"ratio_ci_upper_lte": 1.1}, "ratio ci upper ≤ 1.1"),
        ({"ratio_gte": 0.9}, "ratio ≥ 0.9"),
        ({"value_per_1000_gt": 5}, "value per 1000 > 5"),
        ({"max_gap": 0.05}, "significant gap ≤ 0.05"),
        ({"min_distinct_scores": 10}, "distinct scores ≥ 10"),
        ({"noninferior": True}, "non-inferior to the reader"),
        ({"strange": [1, 2]}, "strange: [1, 2]"),
        ({"lesion_sensitivity_gte": 0.75}, "lesion_sensitivity_gte: 0.75"),
        (
            {"odd": {"comparator": "reader1", "margin": 0.05}},
            "odd: comparator reader1, margin 0.05",
        ),
        ({}, "—"),
    ],
)
def test_threshold_text(pass_if: dict, text: str) -> None:
    assert describe(pass_if) == text


def test_numeric_limits() -> None:
    assert numeric_limits({"p50_lte_s": 1, "p95_lte_s": 2}) == {"p50": 1.0, "p95": 2.0}
    assert numeric_limits({"ci_lower_gte": 0.85}) == {"reference": 0.85}
    assert numeric_limits({"max_gap": 0.05}) == {}


def test_plot_svg_is_deterministic_and_salted() -> None:
    ev = synthetic.criteria()[0].evidence
    a, b = plots.roc_plot(ev, "s1"), plots.roc_plot(ev, "s1")
    assert a == b and a.startswith("<svg") and "<?xml" not in a and "Date" not in a
    assert plots.roc_plot(ev, "s2") != a  # the salt reaches the ids, so two figures never share one


def test_the_operating_point_is_shown_on_the_vendors_scale_and_mapped(tmp_path: Path) -> None:
    """#35 item 15: the report said "score ≥ 0.6 means recall" for a [0, 100] vendor's 60."""
    results = synthetic.write_bundle(tmp_path)
    vendor = dict(results.vendor, operating_point=0.6, operating_point_native=60.0)
    vendor["score_range"] = [0.0, 100.0]
    write_results(tmp_path / "results.json", dataclasses.replace(results, vendor=vendor))
    html = html_of(tmp_path)
    assert "score ≥ 60.0 on the vendor scale 0.0–100.0 means recall" in html
    assert "(mapped threshold 0.6 on the 0–1 scores)" in html


def test_a_row_shows_the_figure_its_threshold_is_held_to(tmp_path: Path) -> None:
    """#35 item 19: "value 0 · violations ≤ 0 · failed" showed the largest score change."""
    crit = synthetic.criteria()
    k = next(i for i, c in enumerate(crit) if c.kind == "invariance")
    ev = dict(crit[k].evidence, measured={"value": 0.0, "violations": 1})
    crit[k] = dataclasses.replace(crit[k], value=0.0, evidence=ev)
    synthetic.write_bundle(tmp_path, crit=crit)
    html = html_of(tmp_path)
    row = html[html.index(f'<tr id="row-{crit[k].id}">') :]
    row = row[: row.index("</tr>")]
    cells = re.findall(r'<td class="num">([^<]*)</td>', row)
    assert cells[:2] == ["violations 1", "—"]


def _scoped_out(c: CriterionResult) -> CriterionResult:
    """A mandatory criterion the standard scopes to products that receive DICOM, for a tensor
    package (docs/contracts.md change 23)."""
    return dataclasses.replace(
        c,
        mandatory=True,
        outcome="not_applicable",
        value=None,
        ci=None,
        n=0,
        explanation="Not applicable: the standard applies this criterion to products that ...",
        evidence={"applies_to": {"inputs": ["dicom"]}, "product_inputs": "tensors"},
    )


def test_a_criterion_that_does_not_apply_is_shown_and_left_out_of_the_verdict(
    tmp_path: Path,
) -> None:
    passed = [c for c in synthetic.criteria() if c.outcome == "passed"]
    crit = [*passed, _scoped_out(synthetic.criteria()[0])]
    results = synthetic.write_bundle(tmp_path, crit=crit)
    assert results.verdict == "CONFORMANT"
    html = html_of(tmp_path)
    assert '<div class="headline">CONFORMANT</div>' in html
    mandatory = sum(c.mandatory for c in passed)
    assert f"{mandatory} of {mandatory} mandatory criteria passed; 1 not applicable" in html
    assert '<span class="badge not_applicable">not applicable</span>' in html
    assert re.search(r'Not applicable to this product</div><div class="v">1<', html)
    assert "Mandatory criteria not passed" not in html
