"""Render an evidence bundle's ``results.json`` into a self-contained, printable ``report.html``.

The report adds nothing that is not in ``results.json`` (and, when the standard asks for a
programme-impact section, the ``programme.json`` whose SHA-256 results.json records): every
number, plot and list comes from the results model (criterion ``evidence`` carries the plot data; ``summary.faults`` lists the
cases with errors or rejections). Rendering is deterministic, so ``mammocert report DIR``
reproduces the exact bytes whose SHA-256 the attestation signs.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
from markupsafe import Markup

from harness.errors import UsageError
from harness.fsio import write_atomic
from harness.jsonutil import sha256_file
from harness.passif import describe, numeric_limits, row_figures
from harness.programme.analysis import validate_document
from harness.results import (
    CONFORMANT,
    NOT_PASSED,
    OUTCOMES,
    SELF_TEST_BANNER,
    CriterionResult,
    KindFacts,
    RunResults,
    read_results,
)
from reports import plots
from reports.programme_page import PROGRAMME_FILE, programme_view
from reports.templating import _environment, fmt_number

_THUMBNAIL = re.compile(r"^data:image/(png|jpeg|webp);base64,[A-Za-z0-9+/]+={0,2}$")


@dataclass(frozen=True)
class Counterexample:
    """The minimal perturbation that broke an invariance criterion, flipped a recall decision
    (decision_stability) or that the model did not respond to (insertion_response)."""

    relation: str
    exam_id: str
    parameters: tuple[tuple[str, str], ...]
    score_before: str
    score_after: str
    thumb_before: str | None  # a validated data: URI, never a URL that would leave the file
    thumb_after: str | None


@dataclass(frozen=True)
class CriterionView:
    """One criterion, formatted for reading."""

    id: str
    title: str
    kind: str
    mandatory: bool
    outcome: str
    value: str
    ci: str
    threshold: str
    n: int
    explanation: str
    source: str
    method: str
    examples: str
    plot: Markup | None = None
    plot_caption: str = ""
    counterexample: Counterexample | None = None


@dataclass(frozen=True)
class Family:
    """Criteria of one family, shown as one table group."""

    name: str
    criteria: tuple[CriterionView, ...] = field(default_factory=tuple)


def _plot_for(c: CriterionResult) -> tuple[str | None, str]:
    ev = c.evidence if isinstance(c.evidence, Mapping) else {}
    salt = f"mammocert:{c.id}"
    if c.kind == "auc":
        return (
            plots.roc_plot(ev, salt),
            "ROC curve: the higher and further left the curve, the better. Markers are operating points.",
        )
    if c.kind == "subgroup":
        ref = numeric_limits(c.threshold).get("reference")
        return plots.forest_plot(
            ev, salt, ref
        ), "Each row is a subgroup: square = estimate, line = confidence interval."
    if c.kind == "localization":
        return plots.froc_plot(
            ev, salt
        ), "FROC curve: share of lesions marked correctly against false marks per image."
    if c.kind == "robustness_sweep":
        return plots.sweep_plot(ev, salt), "Performance as the images are degraded step by step."
    if c.kind == "latency":
        limits = {k: v for k, v in numeric_limits(c.threshold).items() if k != "reference"}
        return plots.latency_plot(
            ev, salt, limits
        ), "Distribution of the time the model took per exam."
    return None, ""


# kinds whose evidence may carry a Hypothesis-shrunk ``counterexample`` (shown when they fail)
COUNTEREXAMPLE_KINDS = ("invariance", "decision_stability", "insertion_response")


def _counterexample(c: CriterionResult) -> Counterexample | None:
    if (
        c.kind not in COUNTEREXAMPLE_KINDS
        or c.outcome != "failed"
        or not isinstance(c.evidence, Mapping)
    ):
        return None
    ce = c.evidence.get("counterexample")
    if not isinstance(ce, Mapping):
        return None
    params = ce.get("parameters")
    thumbs = ce.get("thumbnails") if isinstance(ce.get("thumbnails"), Mapping) else {}

    def thumb(key: str) -> str | None:
        v = thumbs.get(key)
        return v if isinstance(v, str) and _THUMBNAIL.match(v) else None

    return Counterexample(
        relation=str(ce.get("relation", "")),
        exam_id=str(ce.get("exam_id", "")),
        parameters=tuple((str(k), plain(v)) for k, v in sorted(params.items()))
        if isinstance(params, Mapping)
        else (),
        score_before=fmt_number(ce.get("score_before")),
        score_after=fmt_number(ce.get("score_after")),
        thumb_before=thumb("before"),
        thumb_after=thumb("after"),
    )


def criterion_view(c: CriterionResult) -> CriterionView:
    """Format one criterion result for the report."""
    ev = c.evidence if isinstance(c.evidence, Mapping) else {}
    unit = str(ev.get("unit", ""))
    svg, caption = _plot_for(c)
    value, with_ci = row_figures(
        c.threshold, c.value, ev.get("measured"), lambda v: fmt_number(v, unit)
    )
    return CriterionView(
        id=c.id,
        title=c.title,
        kind=c.kind,
        mandatory=c.mandatory,
        outcome=c.outcome,
        value=value,
        ci=f"{fmt_number(c.ci[0])} – {fmt_number(c.ci[1])}"
        if c.ci is not None and with_ci
        else "—",
        threshold=describe(c.threshold),
        n=c.n,
        explanation=c.explanation,
        source=c.source,
        method=str(ev.get("method", "")),
        examples=fmt_number(ev["examples"]) if isinstance(ev.get("examples"), int) else "",
        plot=Markup(svg) if svg else None,  # our own matplotlib output, not producer text
        plot_caption=caption if svg else "",
        counterexample=_counterexample(c),
    )


def section_of(kind: str, kinds: Mapping[str, KindFacts]) -> str:
    """The report section a kind is shown under; a kind without facts is titled from its name."""
    facts = kinds.get(kind)
    return facts.section if facts is not None else kind.replace("_", " ").capitalize()


def families(criteria: Sequence[CriterionResult], kinds: Mapping[str, KindFacts]) -> list[Family]:
    """Group criteria by section, sections in first-appearance order, criteria in results order."""
    groups: dict[str, list[CriterionView]] = {}
    for c in criteria:
        name = section_of(c.kind, kinds)
        groups.setdefault(name, []).append(criterion_view(c))
    return [Family(name, tuple(views)) for name, views in groups.items()]


@dataclass(frozen=True)
class Banner:
    """The verdict banner: what the document is, and the outcome of the criteria."""

    headline: str
    css: str
    detail: str


def banner(r: RunResults) -> Banner:
    """The headline: the verdict for certify runs; self-test and demo say what they are first."""
    mandatory = [c for c in r.criteria if c.mandatory and c.outcome != "not_applicable"]
    passed = sum(c.outcome == "passed" for c in mandatory)
    counts = f"{passed} of {len(mandatory)} mandatory criteria passed"
    if scoped := sum(c.outcome == "not_applicable" for c in r.criteria):
        counts += f"; {scoped} not applicable to this product"
    if r.mode == "self-test" or r.notice == SELF_TEST_BANNER:
        return Banner(
            SELF_TEST_BANNER, "selftest", f"Outcome of this self-test: {r.verdict} ({counts})."
        )
    if r.mode == "demo":
        return Banner(
            "DEMONSTRATION",
            "demo",
            f"Demonstration run, not a certificate. Outcome: {r.verdict} ({counts}).",
        )
    css = "pass" if r.verdict == CONFORMANT else "fail"
    return Banner(r.verdict, css, f"{counts}.")


VENDOR_DIR = "vendor"  # the vendor's copy inside a bundle (written by conformance.redaction)


def audience_note(r: RunResults) -> str:
    """For the vendor's copy, what it withholds and why (``summary.withheld``); else ""."""
    summary = r.summary if isinstance(r.summary, Mapping) else {}
    if summary.get("audience") != "vendor":
        return ""
    return str(summary.get("withheld") or "Vendor copy: aggregate figures only.")


def signing_note(r: RunResults) -> str:
    """What the reader must check besides this page, given how the run was to be signed."""
    if audience_note(r) and r.signing != "unsigned":
        return (
            "This is the vendor's copy of the run. The run's signed attestation, which the "
            "authority holds, records this file's SHA-256; ask the authority to confirm it."
        )
    if r.signing == "unsigned":
        return (
            "Unsigned: no attestation was signed for this run, so nothing proves this report "
            "unchanged. Do not rely on it outside the team that produced it."
        )
    if r.signing == "demo-key" or (
        r.signing == "" and r.mode == "demo"
    ):  # demo runs always use one
        return (
            "Signed with a demonstration key generated for this run (demo-key.pub.pem). The "
            "signature proves only that the files are unchanged, not who produced them."
        )
    return (
        "This report is valid only together with its signed attestation (attestation.intoto.json), "
        "which records this file's SHA-256. Check both with: mammocert verify BUNDLE --key KEY.pub.pem"
    )


def plain(v: Any) -> str:
    """A value exactly as recorded (seeds, counts, parameters): no rounding, no separators."""
    if isinstance(v, bool):
        return "yes" if v else "no"
    return "—" if v is None else str(v)


def _scalars(m: Any) -> list[tuple[str, str]]:
    """Flatten a mapping of scalars and small mappings into readable key/value rows."""
    rows: list[tuple[str, str]] = []
    if not isinstance(m, Mapping):
        return rows
    for k, v in m.items():
        if isinstance(v, Mapping):
            rows += [
                (f"{k} · {k2}", plain(v2))
                for k2, v2 in v.items()
                if not isinstance(v2, Mapping | list)
            ]
        elif not isinstance(v, list):
            rows.append((str(k), plain(v)))
    return rows


# what a badge says for each outcome (docs/contracts.md §3.5)
OUTCOME_LABELS = {
    "passed": "passed",
    "failed": "failed",
    "error": "not evaluated",
    "not_applicable": "not applicable",
}


@dataclass(frozen=True)
class ProgrammeSection:
    """The report's "Programme impact" section (the standard's ``programme_impact`` block, change
    24): the bundle's ``programme.json`` with its SHA-256, or why the run could not compute it."""

    document: Mapping[str, Any] | None
    sha256: str = ""
    not_computed: str = ""


def programme_section(bundle_dir: Path, results: RunResults) -> ProgrammeSection | None:
    """The section ``results.summary.programme_impact`` asks for; None when the standard asked
    for none. The file is read only under the name and SHA-256 results.json records for it."""
    summary = results.summary if isinstance(results.summary, Mapping) else {}
    entry = summary.get("programme_impact")
    if entry is None:
        return None
    if not isinstance(entry, Mapping):
        raise UsageError(
            f"{bundle_dir / 'results.json'}: summary.programme_impact is not a mapping; "
            "re-run the suite"
        )
    if "not_computed" in entry:
        return ProgrammeSection(None, not_computed=str(entry["not_computed"]))
    if entry.get("file") != PROGRAMME_FILE:
        raise UsageError(
            f"{bundle_dir / 'results.json'}: summary.programme_impact.file is "
            f"{entry.get('file')!r}, not {PROGRAMME_FILE!r}; re-run the suite"
        )
    path = bundle_dir / PROGRAMME_FILE
    if not path.is_file():
        raise UsageError(
            f"{path}: missing; results.json records the programme analysis the report shows"
        )
    digest = sha256_file(path)
    if digest != entry.get("sha256"):
        raise UsageError(
            f"{path}: sha256 differs from results.json summary.programme_impact.sha256 "
            "(the file was changed)"
        )
    try:
        doc = json.loads(path.read_bytes())
        validate_document(doc)
    except (UnicodeDecodeError, json.JSONDecodeError, jsonschema.ValidationError) as exc:
        raise UsageError(
            f"{path}: not a programme/v1 document ({exc.__class__.__name__})"
        ) from None
    return ProgrammeSection(doc, sha256=digest)


@functools.lru_cache(maxsize=2)
def _programme_view(document: str) -> dict[str, Any]:
    """The section's tables and figures, drawn once for the report and the vendor's copy (the
    same document: its nine figures take seconds to draw)."""
    return programme_view(json.loads(document), "report-prog")


def render_html(
    results: RunResults,
    results_sha256: str,
    kinds: Mapping[str, KindFacts],
    programme: ProgrammeSection | None = None,
) -> str:
    """The report as an HTML string (pure: the same inputs give the same string).

    ``kinds`` holds the section heading and method text of each criterion kind (the suite's
    ``conformance.criteria.KIND_FACTS``); a kind missing from it is titled from its name.
    ``programme``: the programme-impact section (:func:`programme_section`), if the run has one."""
    summary = results.summary if isinstance(results.summary, Mapping) else {}
    faults = [f for f in summary.get("faults", []) if isinstance(f, Mapping)]
    outcome_counts = {o: sum(c.outcome == o for c in results.criteria) for o in OUTCOMES}
    model_digests = results.vendor.get("model_digests", {})
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            r=results,
            banner=banner(results),
            signing_note=signing_note(results),
            audience_note=audience_note(results),
            set_note=str(summary.get("set_note") or ""),
            families=families(results.criteria, kinds),
            outcome_counts=outcome_counts,
            outcome_label=OUTCOME_LABELS,
            failed_mandatory=[
                c for c in results.criteria if c.mandatory and c.outcome in NOT_PASSED
            ],
            model_digests=sorted(model_digests.items())
            if isinstance(model_digests, Mapping)
            else [],
            faults=faults,
            summary_rows=[
                row
                for row in _scalars(
                    {
                        k: v
                        for k, v in summary.items()
                        if k not in ("faults", "withheld", "set_note", "programme_impact")
                    }
                )
            ],
            seed_rows=_scalars(results.seeds),
            package_rows=_scalars(results.harness.get("packages", {})),
            methods=[
                (kind, kinds[kind].method if kind in kinds else "")
                for kind in dict.fromkeys(c.kind for c in results.criteria)
            ],
            results_sha256=results_sha256,
            programme=programme,
            prog=(
                _programme_view(json.dumps(programme.document, ensure_ascii=False))
                if programme is not None and programme.document is not None
                else None
            ),
            hx="h3",
        )
    )


def render_bundle_html(bundle_dir: Path, kinds: Mapping[str, KindFacts]) -> str:
    """The report of the bundle in ``bundle_dir`` (its results.json and, when results.json names
    one, its programme.json) as an HTML string."""
    results_path = Path(bundle_dir) / "results.json"
    results = read_results(results_path)
    return render_html(
        results, sha256_file(results_path), kinds, programme_section(Path(bundle_dir), results)
    )


def render_report(bundle_dir: Path, kinds: Mapping[str, KindFacts]) -> Path:
    """Write ``bundle_dir/report.html`` from ``bundle_dir/results.json``; return its path.

    ``kinds``: the facts about each criterion kind (see ``render_html``). The same results and
    facts always give the same bytes."""
    bundle_dir = Path(bundle_dir)
    out = bundle_dir / "report.html"
    # bytes, not text mode: the same on every platform (the attestation signs them)
    html = render_bundle_html(bundle_dir, kinds)
    write_atomic(out, html.encode("utf-8"), "report.html")
    return out


def report_cli(args: argparse.Namespace, kinds: Mapping[str, KindFacts]) -> int:
    """``mammocert report DIR`` (and the vendor's copy in ``DIR/vendor``, when the run wrote one);
    the application passes the suite's kind facts."""
    bundle = Path(args.dir)
    if not bundle.is_dir():
        raise UsageError(
            f"{bundle}: not a directory; give the evidence bundle written by `mammocert run`"
        )
    out = render_report(bundle, kinds)
    print(f"report: {out}")
    if (bundle / VENDOR_DIR / "results.json").is_file():
        print(f"vendor's copy: {render_report(bundle / VENDOR_DIR, kinds)}")
    return 0
