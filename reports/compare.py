"""Vendors side by side: ``mammocert compare BUNDLE... --key PUB --out DIR``.

Each bundle's attestation is verified first (:func:`reports.verify.verify_bundle`); a bundle
that does not verify is shown as such, with the reason, and none of its numbers are used.
Verified bundles are comparable when they were judged under the same standard (digest) on the
same reference set (digest); otherwise the page and the terminal say so before anything else.

The page (``compare.html``, one self-contained file, checked in headless Chromium like the
report) has the vendors as columns and the criteria as rows (the standard's order): value with
its CI, and the outcome; the ROC curves of the AUC criterion overlaid with each vendor's
operating point; and, with ``--programme DIR`` (a ``mammocert programme --bundle B --out DIR``
output, which names its bundle), each vendor's programme figures.
``compare.json`` holds the same table.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from markupsafe import Markup

from harness.errors import MammocertError, UsageError
from harness.fsio import make_dir, write_atomic
from harness.passif import row_figures
from harness.results import CriterionResult, RunResults, read_results
from reports.plots import BLUE, GREY, INK, ORANGE, _figure, _floats, _styled, _to_svg
from reports.programme_page import MEASURE_ROWS, _cell
from reports.render import _environment, fmt_number
from reports.verify import verify_bundle

PALETTE = (BLUE, ORANGE, "#2a9d8f", "#9b5de5", "#e76f51", INK)


@dataclass(frozen=True)
class Column:
    """One bundle: verified (with its results) or not (with the reason)."""

    path: Path
    verified: bool
    reason: str
    results: RunResults | None

    @property
    def name(self) -> str:
        if self.results is None:
            return self.path.name
        v = self.results.vendor
        return f"{v.get('product', '?')} {v.get('version', '')}".strip()


@dataclass(frozen=True)
class Row:
    """One criterion across the columns (None where a column lacks it or is unverified)."""

    id: str
    title: str
    mandatory: bool
    cells: tuple[CriterionResult | None, ...]


def load_columns(bundles: Sequence[Path], public_key: Path) -> list[Column]:
    cols = []
    for b in bundles:
        try:
            verify_bundle(b, public_key)
        except MammocertError as exc:
            cols.append(Column(Path(b), False, str(exc), None))
            continue
        cols.append(Column(Path(b), True, "verified", read_results(Path(b) / "results.json")))
    return cols


def comparability(cols: Sequence[Column]) -> list[str]:
    """Why the verified columns cannot be compared (empty: they can)."""
    ok = [c for c in cols if c.results is not None]
    problems = []
    for what, key in (("standard", "standard"), ("reference set", "reference_set")):
        digests = {str(getattr(c.results, key).get("digest")) for c in ok}
        if len(digests) > 1:
            named = "; ".join(
                f"{c.name}: {getattr(c.results, key).get('id')} {getattr(c.results, key).get('version')}"
                f" ({str(getattr(c.results, key).get('digest'))[:19]})"
                for c in ok
            )
            problems.append(
                f"NOT COMPARABLE: the bundles were judged on different {what}s ({named})"
            )
    if len(ok) < 2:
        problems.append(f"only {len(ok)} verified bundle(s): nothing to compare")
    return problems


def rows(cols: Sequence[Column]) -> list[Row]:
    """The criteria of every verified column, in the order of the first one that has each."""
    order: dict[str, CriterionResult] = {}
    for c in cols:
        for cr in c.results.criteria if c.results else ():
            order.setdefault(cr.id, cr)
    out = []
    for cid, first in order.items():
        cells = tuple(
            next((cr for cr in c.results.criteria if cr.id == cid), None) if c.results else None
            for c in cols
        )
        out.append(Row(cid, first.title, first.mandatory, cells))
    return out


def cell_text(cr: CriterionResult | None) -> str:
    """A criterion's figure in the unit of its threshold (as the report shows it), its CI where
    the CI belongs to that figure, and the outcome."""
    if cr is None:
        return "—"
    value, with_ci = row_figures(
        cr.threshold, cr.value, (cr.evidence or {}).get("measured"), fmt_number
    )
    if with_ci and cr.ci is not None:
        value += f" ({fmt_number(cr.ci[0])}–{fmt_number(cr.ci[1])})"
    return f"{value} · {cr.outcome}"


@_styled
def roc_overlay(cols: Sequence[Column], salt: str) -> str | None:
    """Every verified vendor's ROC curve (kind ``auc``) on one axis, operating point marked."""
    curves = []
    for i, c in enumerate(cols):
        if c.results is None:
            continue
        auc = next((cr for cr in c.results.criteria if cr.kind == "auc"), None)
        roc = (auc.evidence or {}).get("roc") if auc else None
        if not isinstance(roc, Mapping):
            continue
        fpr, tpr = _floats(roc.get("fpr")), _floats(roc.get("tpr"))
        if fpr is None or tpr is None or len(fpr) != len(tpr):
            continue
        points = [
            p for p in (auc.evidence or {}).get("operating_points", []) if isinstance(p, Mapping)
        ]
        curves.append((c.name, auc.value, fpr, tpr, points[:1], PALETTE[i % len(PALETTE)]))
    if not curves:
        return None
    fig, ax = _figure(4.8, 4.4)
    ax.plot([0, 1], [0, 1], color=GREY, lw=0.8, ls="--", label="chance")
    for name, value, fpr, tpr, points, color in curves:
        ax.plot(fpr, tpr, color=color, lw=1.8, label=f"{name} (AUC {fmt_number(value)})")
        for p in points:
            if isinstance(p.get("fpr"), int | float) and isinstance(p.get("tpr"), int | float):
                ax.plot(p["fpr"], p["tpr"], marker="o", ms=7, ls="none", color=color, mec="white")
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1.01),
        xlabel="False-positive rate (1 − specificity)",
        ylabel="True-positive rate (sensitivity)",
    )
    ax.set_aspect("equal")
    ax.legend(loc="lower right")
    return _to_svg(fig, salt)


def load_programmes(dirs: Sequence[Path]) -> list[Mapping[str, Any]]:
    """``programme.json`` of each ``mammocert programme --bundle B --out DIR`` directory."""
    docs = []
    for d in dirs:
        path = Path(d) / "programme.json"
        if not path.is_file():
            raise UsageError(
                f"--programme {d}: no programme.json; give a `mammocert programme` output"
            )
        docs.append(json.loads(path.read_text(encoding="utf-8")))
    return docs


def programme_rows(
    cols: Sequence[Column], programmes: Sequence[Mapping[str, Any]] = ()
) -> list[tuple[str, list[str]]]:
    """Each verified vendor's programme figures, from the analysis that names its bundle
    (``vendor.bundle`` in ``programme.json``), per protocol, formatted as the programme page."""
    by_bundle = {
        str(Path(d.get("vendor", {}).get("bundle", "")).resolve()): d
        for d in programmes
        if d.get("vendor", {}).get("bundle")
    }
    docs = [by_bundle.get(str(c.path.resolve())) if c.verified else None for c in cols]
    if not any(docs):
        return []
    names = dict.fromkeys(p["name"] for d in docs if d for p in d.get("protocols", []))
    out = []
    for proto in names:
        for key, label, fmt, scale in MEASURE_ROWS:
            cells = []
            for d in docs:
                p = next((p for p in (d or {}).get("protocols", []) if p["name"] == proto), None)
                cells.append(_cell(p["measures"].get(key), fmt, scale) if p else "—")
            out.append((f"{proto}: {label}", cells))
    return out


def render_compare_html(
    cols: Sequence[Column],
    acceptances: Sequence[Acceptance] = (),
    programmes: Sequence[Mapping[str, Any]] = (),
) -> str:
    """The page: vendors' bundles side by side, or (``acceptances``) regions' site acceptances."""
    if acceptances:
        heads = [a.name for a in acceptances]
        table = acceptance_rows(acceptances)
        problems = acceptance_problems(acceptances)
        svg = None
    else:
        heads = [c.name + ("" if c.verified else " (not verified)") for c in cols]
        table = [("verdict", "", [(c.results.verdict if c.results else "—", "") for c in cols])]
        table.append(("mode", "", [(c.results.mode if c.results else "—", "") for c in cols]))
        for r in rows(cols):
            cells = [(cell_text(c), c.outcome if c else "") for c in r.cells]
            table.append((r.id + (" *" if r.mandatory else ""), r.title, cells))
        problems = comparability(cols)
        svg = roc_overlay(cols, "compare-roc")
    return (
        _environment()
        .get_template("compare.html.j2")
        .render(
            heads=heads,
            cols=cols,
            problems=problems,
            table=table,
            roc=Markup(svg) if svg else None,
            programme=programme_rows(cols, programmes),
            acceptance=bool(acceptances),
        )
    )


@dataclass(frozen=True)
class Acceptance:
    """One region's site acceptance (``mammocert accept --sign``), verified or not."""

    path: Path
    verified: bool
    reason: str
    doc: Mapping[str, Any] | None

    @property
    def name(self) -> str:
        site = (self.doc or {}).get("site") or self.path.name
        return site + ("" if self.verified else " (not verified)")


def is_acceptance(path: Path) -> bool:
    from reports.acceptance import ACCEPTANCE_FILE

    return (Path(path) / ACCEPTANCE_FILE).is_file()


def load_acceptances(paths: Sequence[Path], public_key: Path) -> list[Acceptance]:
    from reports.acceptance import verify_acceptance

    out = []
    for p in paths:
        try:
            verify_acceptance(Path(p), public_key)
        except MammocertError as exc:
            out.append(Acceptance(Path(p), False, str(exc), None))
            continue
        doc = json.loads((Path(p) / "acceptance.json").read_text(encoding="utf-8"))
        out.append(Acceptance(Path(p), True, "verified", doc))
    return out


def acceptance_problems(accs: Sequence[Acceptance]) -> list[str]:
    certs = {a.doc["certificate"]["attestation_sha256"] for a in accs if a.doc}
    problems = []
    if len(certs) > 1:
        problems.append(
            "NOT COMPARABLE: the acceptances are against different certificates "
            + ", ".join(sorted(c[:12] for c in certs))
        )
    problems += [f"{a.path}: NOT VERIFIED ({a.reason})" for a in accs if not a.verified]
    return problems


def acceptance_rows(accs: Sequence[Acceptance]) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """Sites as columns: verdict, certificate, interface, then each check of the standard."""
    docs = [a.doc or {} for a in accs]

    def cell(d: Mapping[str, Any], fn: Any) -> tuple[str, str]:
        return (fn(d), "") if d else ("—", "")

    table = [
        ("verdict", "", [(d.get("verdict", "—"), "passed" if d.get("verdict") == "ACCEPTED" else "failed" if d else "") for d in docs]),
        ("certificate", "", [cell(d, lambda d: f"{d['certificate']['vendor'].get('product')} {d['certificate']['vendor'].get('version')} · {d['certificate']['verdict']}") for d in docs]),
        ("local interface", "", [cell(d, lambda d: str(d["local"]["vendor"].get("interface"))) for d in docs]),
        ("exams compared", "", [cell(d, lambda d: str(d["exams"])) for d in docs]),
    ]  # fmt: skip
    names = dict.fromkeys(c["name"] for d in docs for c in d.get("checks", []))
    for name in names:
        cells = []
        for d in docs:
            c = next((c for c in d.get("checks", []) if c["name"] == name), None)
            if c is None:
                cells.append(("—", ""))
            else:
                text = f"{fmt_number(c['measured'])} (≤ {fmt_number(c['limit'])})"
                cells.append((text, "passed" if c["passed"] else "failed"))
        table.append((name, "", cells))
    return table


def compare_document(cols: Sequence[Column]) -> dict[str, Any]:
    return {
        "bundles": [
            {
                "path": str(c.path),
                "verified": c.verified,
                "reason": c.reason,
                "vendor": dict(c.results.vendor) if c.results else None,
                "verdict": c.results.verdict if c.results else None,
                "standard": dict(c.results.standard) if c.results else None,
                "reference_set": dict(c.results.reference_set) if c.results else None,
            }
            for c in cols
        ],
        "comparable": not comparability(cols),
        "problems": comparability(cols),
        "criteria": [
            {
                "id": r.id,
                "title": r.title,
                "mandatory": r.mandatory,
                "cells": [
                    None if c is None else {"value": c.value, "ci": c.ci, "outcome": c.outcome}
                    for c in r.cells
                ],
            }
            for r in rows(cols)
        ],
    }


def compare_cli(args: Any) -> int:
    """Exit 0 when every bundle verified and they are comparable; 1 otherwise (page written)."""
    from rich.console import Console
    from rich.table import Table

    paths = [Path(b) for b in args.bundles]
    out = make_dir(Path(args.out), "--out")
    if any(is_acceptance(p) for p in paths):
        return _compare_acceptances(paths, Path(args.key), out)
    cols = load_columns(paths, Path(args.key))
    programmes = load_programmes([Path(d) for d in (getattr(args, "programme", None) or [])])
    html = render_compare_html(cols, programmes=programmes)
    write_atomic(out / "compare.html", html.encode("utf-8"), "compare.html")
    doc = compare_document(cols)
    write_atomic(out / "compare.json", (json.dumps(doc, indent=1) + "\n").encode(), "compare.json")
    console = Console()
    for p in doc["problems"]:
        console.print(f"[bold red]{p}[/]")
    for c in cols:
        if not c.verified:
            console.print(f"[bold red]{c.path}: NOT VERIFIED[/] ({c.reason}); not compared")
    table = Table(title="vendors side by side")
    table.add_column("criterion")
    for c in cols:
        table.add_column(c.name if c.verified else f"{c.path.name} (not verified)")
    table.add_row("verdict", *[c.results.verdict if c.results else "—" for c in cols])
    for r in rows(cols):
        table.add_row(r.id + (" *" if r.mandatory else ""), *[cell_text(x) for x in r.cells])
    console.print(table)
    console.print(f"wrote {out / 'compare.html'} and compare.json (* mandatory)")
    return 0 if doc["comparable"] and all(c.verified for c in cols) else 1


def _compare_acceptances(paths: Sequence[Path], key: Path, out: Path) -> int:
    """Regions' site acceptances side by side (every path must hold one)."""
    from rich.console import Console
    from rich.table import Table

    not_acc = [p for p in paths if not is_acceptance(p)]
    if not_acc:
        raise UsageError(
            f"{not_acc[0]}: not a site acceptance; compare either bundles or acceptances, not both"
        )
    accs = load_acceptances(paths, key)
    html = render_compare_html([], accs)
    write_atomic(out / "compare.html", html.encode("utf-8"), "compare.html")
    table_rows = acceptance_rows(accs)
    problems = acceptance_problems(accs)
    doc = {
        "acceptances": [
            {"path": str(a.path), "verified": a.verified, "reason": a.reason, "site": a.name}
            for a in accs
        ],
        "comparable": not problems,
        "problems": problems,
        "rows": [{"row": label, "cells": [t for t, _ in cells]} for label, _, cells in table_rows],
    }
    write_atomic(out / "compare.json", (json.dumps(doc, indent=1) + "\n").encode(), "compare.json")
    console = Console()
    for p in problems:
        console.print(f"[bold red]{p}[/]")
    table = Table(title="site acceptances side by side")
    table.add_column("")
    for a in accs:
        table.add_column(a.name)
    for label, _, cells in table_rows:
        table.add_row(label, *[t for t, _ in cells])
    console.print(table)
    console.print(f"wrote {out / 'compare.html'} and compare.json")
    return 0 if not problems else 1
