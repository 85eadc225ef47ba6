"""``programme.html``: the programme-impact page, rendered from ``programme.json`` alone.

A reader of the document ``mammocert programme`` writes (schema ``mammocert/programme/v1``,
``harness.programme.analysis``): a table per protocol, the yearly figures with every unverified
input flagged, and four figures drawn as deterministic inline SVG with the report's style
(:mod:`reports.plots`): the protocols side by side, a tornado per AI protocol, the triage-band
trade-off and the probabilistic net-cost intervals.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from markupsafe import Markup

from reports import plots
from reports.templating import _environment, fmt_number

PROGRAMME_FILE = "programme.json"  # a bundle's programme analysis (the report's section)

MEASURE_ROWS = (
    ("reads_per_1000", "Human reads per 1,000 screens", "{:.0f}", 1),
    ("arbitrations_per_1000", "Arbitrations per 1,000", "{:.1f}", 1),
    ("recall_rate", "Recall rate", "{:.2f} %", 100),
    ("cdr_per_1000", "Cancers detected per 1,000", "{:.2f}", 1),
    ("ppv", "PPV of recall", "{:.1f} %", 100),
    (
        "missed_vs_double_reading_per_1000",
        "Missed that double reading found, per 1,000",
        "{:.2f}",
        1,
    ),
    (
        "found_vs_double_reading_per_1000",
        "Found that double reading missed, per 1,000",
        "{:.2f}",
        1,
    ),
    ("interval_flagged_per_1000", "Interval cancers recalled, per 1,000", "{:.2f}", 1),
    ("in_band_share", "Screens single-read or not read", "{:.1f} %", 100),
)
YEAR_ROWS = (
    ("reads", "Human reads"),
    ("arbitrations", "Arbitrations"),
    ("radiologist_hours", "Radiologist hours"),
    ("ftes", "Radiologist FTEs"),
    ("reading_cost", "Reading cost"),
    ("recalls", "Recalls"),
    ("workup_cost", "Work-up cost"),
    ("ai_cost", "AI cost"),
    ("total_cost", "Total cost"),
    ("cancers_detected", "Cancers detected"),
    ("net_cost", "Net cost vs double reading"),
    ("additional_cancers", "Additional cancers detected"),
    ("cost_per_additional_cancer", "Cost per additional cancer"),
    ("break_even_ai_price", "Break-even AI price"),
)


def _cell(est: Any, fmt: str, scale: float) -> str:
    if not isinstance(est, Mapping) or est.get("value") is None:
        return "—"
    text = fmt.format(est["value"] * scale)
    ci = est.get("ci")
    if ci:
        unit = " %" if fmt.endswith("%") else ""
        lo, hi = (fmt.replace(" %", "").format(x * scale) for x in ci)
        text += f" ({lo}–{hi}{unit})"
    return text


def _fig_value(fig: Any) -> str:
    if not isinstance(fig, Mapping):
        return ""
    v = fig.get("value")
    if v is None:
        return "—"
    text = fmt_number(v) if abs(v) < 1000 else f"{v:,.0f}"
    ci = fig.get("ci")
    if ci:
        text += (
            f" ({ci[0]:,.0f} to {ci[1]:,.0f})"
            if abs(v) >= 1000
            else (f" ({fmt_number(ci[0])} to {fmt_number(ci[1])})")
        )
    if fig.get("unverified"):
        text += " *"
    return text


@plots._styled
def protocols_plot(protocols: Sequence[Mapping[str, Any]], salt: str) -> str | None:
    """Reads per 1,000 against cancers detected per 1,000, one point per protocol, with CIs."""
    pts = []
    for p in protocols:
        m = p.get("measures", {})
        r, c = m.get("reads_per_1000", {}), m.get("cdr_per_1000", {})
        if r.get("value") is None or c.get("value") is None:
            continue
        pts.append((p["name"], r["value"], c["value"], r.get("ci"), c.get("ci")))
    if not pts:
        return None
    fig, ax = plots._figure(5.6, 3.6)
    for i, (name, x, y, xci, yci) in enumerate(pts):
        color = plots.GREY if i == 0 else plots.BLUE
        xerr = [[x - xci[0]], [xci[1] - x]] if xci else None
        yerr = [[y - yci[0]], [yci[1] - y]] if yci else None
        ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="o", color=color, ecolor=plots.BAND, capsize=2)
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(5, 4), fontsize=7.5)
    ax.set_xlabel("human reads per 1,000 screens")
    ax.set_ylabel("cancers detected per 1,000")
    return plots._to_svg(fig, salt)


@plots._styled
def tornado_plot(entry: Mapping[str, Any], currency: str, salt: str) -> str | None:
    """Net cost when each ranged input is at its low and its high end."""
    bars = [b for b in entry.get("bars", []) if isinstance(b, Mapping)][:12]
    base = entry.get("net_cost")
    if not bars or base is None:
        return None
    fig, ax = plots._figure(5.6, 0.9 + 0.32 * len(bars))
    ys = np.arange(len(bars))[::-1]
    for y, b in zip(ys, bars, strict=True):
        lo, hi = b["net_cost_at_low"] / 1e6, b["net_cost_at_high"] / 1e6
        ax.barh(y, lo - base / 1e6, left=base / 1e6, color=plots.BLUE, height=0.6)
        ax.barh(y, hi - base / 1e6, left=base / 1e6, color=plots.ORANGE, height=0.6)
    ax.axvline(base / 1e6, color=plots.INK, linewidth=0.8)
    ax.set_yticks(ys)
    ax.set_yticklabels([b["input"] + ("" if b["verified"] else " *") for b in bars], fontsize=7.5)
    ax.set_xlabel(f"net cost vs double reading, M {currency}/year (blue: low end, orange: high)")
    return plots._to_svg(fig, salt)


@plots._styled
def band_plot(band: Mapping[str, Any], salt: str) -> str | None:
    """Reads removed against cancers moved into the band, over band quantiles."""
    x = plots._floats(band.get("reads_removed_share"))
    y = plots._floats(band.get("cancers_in_band_share"))
    lost = plots._floats(band.get("cancers_lost_share_of_found"))
    if x is None or y is None or len(x) != len(y):
        return None
    fig, ax = plots._figure(5.2, 3.4)
    ax.plot(
        [100 * v for v in x],
        [100 * v for v in y],
        "o-",
        color=plots.BLUE,
        ms=3,
        label="cancers in the band",
    )
    if lost is not None and len(lost) == len(x):
        ax.plot(
            [100 * v for v in x],
            [100 * v for v in lost],
            "s--",
            color=plots.RED,
            ms=3,
            label="cancers double reading found, now missed",
        )
    ax.set_xlabel("share of double reading's reads removed (%)")
    ax.set_ylabel("share of cancers (%)")
    ax.legend(loc="upper left")
    return plots._to_svg(fig, salt)


@plots._styled
def probabilistic_plot(
    entries: Sequence[Mapping[str, Any]], currency: str, salt: str
) -> str | None:
    """Median and interval of each AI protocol's net cost over the probabilistic draws."""
    rows = [e for e in entries if isinstance(e, Mapping) and e.get("interval")]
    if not rows:
        return None
    fig, ax = plots._figure(5.6, 0.9 + 0.45 * len(rows))
    ys = np.arange(len(rows))[::-1]
    for y, e in zip(ys, rows, strict=True):
        lo, hi = (v / 1e6 for v in e["interval"])
        ax.plot([lo, hi], [y, y], color=plots.BAND, linewidth=5, solid_capstyle="butt")
        ax.plot([e["median"] / 1e6], [y], "o", color=plots.BLUE)
    ax.axvline(0, color=plots.INK, linewidth=0.8)
    ax.set_yticks(ys)
    ax.set_yticklabels([e["protocol"] for e in rows], fontsize=8)
    ax.set_xlabel(f"net cost vs double reading, M {currency}/year (below 0: saving)")
    return plots._to_svg(fig, salt)


def programme_view(doc: Mapping[str, Any], salt: str = "prog") -> dict[str, Any]:
    """What ``programme_body.html.j2`` shows of a programme/v1 document: the per-protocol and
    yearly tables, the figures and the cost inputs. ``salt`` prefixes the figures' SVG ids, so
    the page and the report section can each hold them once."""
    cost = doc.get("cost_model", {})
    cur = cost.get("currency", "")
    protocols = list(doc.get("protocols", []))
    measures = [
        (label, [_cell(p["measures"].get(key), fmt, scale) for p in protocols])
        for key, label, fmt, scale in MEASURE_ROWS
    ]
    yearly = []
    for key, label in YEAR_ROWS:
        cells = [_fig_value(p["yearly"].get(key)) for p in protocols]
        unit = next((p["yearly"][key]["unit"] for p in protocols if key in p["yearly"]), "")
        yearly.append((f"{label} ({unit})", cells))
    figures = []
    svg = protocols_plot(protocols, f"{salt}-protocols")
    if svg:
        figures.append((Markup(svg), "Protocols: workload against cancers detected (95 % CIs)."))
    for i, t in enumerate(doc.get("sensitivity", {}).get("one_way", [])):
        svg = tornado_plot(t, cur, f"{salt}-tornado-{i}")
        if svg:
            figures.append(
                (Markup(svg), f"One-way sensitivity: {t['protocol']}. * unverified input.")
            )
    for i, b in enumerate(doc.get("sensitivity", {}).get("band", [])):
        svg = band_plot(b, f"{salt}-band-{i}")
        if svg:
            figures.append(
                (Markup(svg), f"Band sweep: {b['protocol']} ({b['kind']}), quantiles 0–0.95.")
            )
    svg = probabilistic_plot(
        doc.get("sensitivity", {}).get("probabilistic", []), cur, f"{salt}-psa"
    )
    if svg:
        figures.append(
            (Markup(svg), "Probabilistic sensitivity: median and 95 % interval of net cost.")
        )
    inputs = [(name, q) for name, q in cost.get("inputs", {}).items() if isinstance(q, Mapping)]
    return {
        "doc": doc,
        "protocols": protocols,
        "measures": measures,
        "yearly": yearly,
        "figures": figures,
        "inputs": inputs,
        "currency": cur,
    }


def render_programme_html(doc: Mapping[str, Any]) -> str:
    """The page as an HTML string (the same document gives the same string)."""
    return (
        _environment()
        .get_template("programme.html.j2")
        .render(doc=doc, prog=programme_view(doc), hx="h2")
    )


def write_programme_page(doc: Mapping[str, Any], out: Path) -> Path:
    with open(out, "w", encoding="utf-8", newline="") as fh:
        fh.write(render_programme_html(doc))
    return out
