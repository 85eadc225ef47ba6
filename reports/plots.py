"""Evidence plots for the report: matplotlib figures rendered to deterministic inline SVG.

Each plot function takes one criterion's ``evidence`` mapping (keys documented in
reports/README.md) and returns an SVG string, or ``None`` when the evidence lacks what the plot
needs: a missing or malformed key means "no plot", never a failed report.

Determinism: the same evidence gives the same SVG bytes. matplotlib would otherwise write the
render date into the metadata and random ids for clip paths; we drop the metadata and salt the
ids with the criterion id, which also keeps ids unique when several SVGs share one HTML page.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

# A calm palette that survives greyscale printing (differing lightness, not only hue).
INK = "#1f2933"
BLUE = "#1f5fa8"
BAND = "#9dbbe0"
ORANGE = "#c2571a"
GREEN = "#2e7d32"
RED = "#b3261e"
GREY = "#7b8794"

_STYLE = {
    "font.family": ["DejaVu Sans"],  # ships with matplotlib: metrics are the same everywhere
    "font.size": 9,
    "axes.edgecolor": GREY,
    "axes.labelcolor": INK,
    "axes.titlesize": 10,
    "xtick.color": INK,
    "ytick.color": INK,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e4e7eb",
    "grid.linewidth": 0.6,
    "svg.fonttype": "none",  # text stays text: small, crisp, searchable; fonts come from CSS
    "svg.image_inline": True,
    "legend.frameon": False,
    "legend.fontsize": 8,
}


def _floats(seq: Any) -> list[float] | None:
    """A list of finite floats, or None when the value is not one (robust to bad evidence)."""
    if not isinstance(seq, Sequence) or isinstance(seq, str) or not seq:
        return None
    try:
        out = [float(v) for v in seq]
    except (TypeError, ValueError):
        return None
    return out if all(math.isfinite(v) for v in out) else None


def _pair(v: Any) -> tuple[float, float] | None:
    f = _floats(v)
    return (f[0], f[1]) if f is not None and len(f) == 2 else None


def _to_svg(fig: Figure, salt: str) -> str:
    """Serialize a figure to an inline-ready SVG element (no XML prolog, no fixed size)."""
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": salt}):
        fig.savefig(
            buf, format="svg", metadata={"Date": None, "Creator": None}, bbox_inches="tight"
        )
    plt.close(fig)
    svg = buf.getvalue()
    svg = svg[svg.index("<svg") :]  # drop <?xml ...?> and <!DOCTYPE>: not allowed inside HTML
    # The RDF metadata only names matplotlib and namespace URLs; it adds bytes, not information.
    svg = re.sub(r"\s*<metadata>.*?</metadata>", "", svg, count=1, flags=re.S)
    # Let CSS size the figure; the viewBox keeps the aspect ratio.
    svg = re.sub(r'(<svg[^>]*?)\s+width="[^"]*"\s+height="[^"]*"', r"\1", svg, count=1)
    svg = svg.replace("<svg ", '<svg role="img" ', 1)
    # matplotlib numbers element ids per figure (figure_1, line2d_1, ...); several figures share one
    # HTML document, so prefix every id and every reference to one with this figure's salt.
    prefix = re.sub(r"[^A-Za-z0-9_-]", "-", salt) + "-"
    svg = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{prefix}{m[1]}"', svg)
    svg = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{prefix}{m[1]})", svg)
    svg = re.sub(r'href="#([^"]+)"', lambda m: f'href="#{prefix}{m[1]}"', svg)
    return svg.strip() + "\n"


def _figure(w: float = 5.2, h: float = 3.6) -> tuple[Figure, Any]:
    with matplotlib.rc_context(_STYLE):
        fig, ax = plt.subplots(figsize=(w, h))
    return fig, ax


def _styled(fn: Callable[..., str | None]) -> Callable[..., str | None]:
    """Run a plot function inside the report's rc style."""

    def wrapper(*args: Any, **kwargs: Any) -> str | None:
        with matplotlib.rc_context(_STYLE):
            return fn(*args, **kwargs)

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


@_styled
def roc_plot(evidence: Mapping[str, Any], salt: str) -> str | None:
    """ROC curve with its confidence band and operating points (kind ``auc``)."""
    roc = evidence.get("roc")
    if not isinstance(roc, Mapping):
        return None
    fpr, tpr = _floats(roc.get("fpr")), _floats(roc.get("tpr"))
    if fpr is None or tpr is None or len(fpr) != len(tpr):
        return None
    fig, ax = _figure(4.6, 4.2)
    ax.plot([0, 1], [0, 1], color=GREY, lw=0.8, ls="--", label="chance")
    band = evidence.get("ci_band")
    if isinstance(band, Mapping):
        bf, lo, hi = (
            _floats(band.get("fpr")),
            _floats(band.get("tpr_low")),
            _floats(band.get("tpr_high")),
        )
        if bf is not None and lo is not None and hi is not None and len(bf) == len(lo) == len(hi):
            ax.fill_between(bf, lo, hi, color=BAND, alpha=0.55, lw=0, label="confidence band")
    ax.plot(fpr, tpr, color=BLUE, lw=1.8, label="model")
    markers = ["o", "s", "^", "D", "v", "P"]
    points = evidence.get("operating_points")
    if isinstance(points, Sequence) and not isinstance(points, str):
        for i, p in enumerate(points):
            if not isinstance(p, Mapping):
                continue
            xy = _pair([p.get("fpr"), p.get("tpr")])
            if xy is None:
                continue
            color = ORANGE if i == 0 else INK
            ax.plot(
                *xy,
                marker=markers[i % len(markers)],
                ms=7,
                ls="none",
                color=color,
                mec="white",
                mew=0.8,
                label=str(p.get("label", f"point {i + 1}")),
            )
    ax.set(
        xlim=(0, 1),
        ylim=(0, 1.01),
        xlabel="False-positive rate (1 − specificity)",
        ylabel="True-positive rate (sensitivity)",
    )
    ax.set_aspect("equal")
    ax.legend(loc="lower right")
    return _to_svg(fig, salt)


@_styled
def forest_plot(
    evidence: Mapping[str, Any], salt: str, reference: float | None = None
) -> str | None:
    """Subgroup forest plot: one row per group with its CI, the overall estimate as a band."""
    groups = evidence.get("groups")
    if not isinstance(groups, Sequence) or isinstance(groups, str):
        return None
    rows: list[tuple[str, float, tuple[float, float] | None, Any]] = []
    for g in groups:
        if not isinstance(g, Mapping):
            continue
        v = _floats([g.get("value")])
        if v is None:
            continue
        rows.append((str(g.get("name", "?")), v[0], _pair(g.get("ci")), g.get("n")))
    if not rows:
        return None
    fig, ax = _figure(5.6, 0.9 + 0.36 * len(rows))
    ys = np.arange(len(rows))[::-1]
    overall = evidence.get("overall")
    if isinstance(overall, Mapping):
        ov = _floats([overall.get("value")])
        oci = _pair(overall.get("ci"))
        if oci is not None:
            ax.axvspan(oci[0], oci[1], color=BAND, alpha=0.35, lw=0, label="overall CI")
        if ov is not None:
            ax.axvline(ov[0], color=BLUE, lw=1.2, label=f"overall {ov[0]:.3f}")
    if reference is not None:
        ax.axvline(reference, color=RED, lw=1, ls="--", label=f"threshold {reference:g}")
    for y, (_name, v, ci, _n) in zip(ys, rows, strict=True):
        if ci is not None:
            ax.plot(ci, [y, y], color=INK, lw=1.4)
        ax.plot(v, y, marker="s", ms=6, color=INK)
    ax.set_yticks(ys, [f"{name}  (n={n})" if n is not None else name for name, _v, _ci, n in rows])
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.grid(axis="y", visible=False)
    ax.set_xlabel(str(evidence.get("metric", "value")))
    ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=3)  # above: never over the rows
    return _to_svg(fig, salt)


@_styled
def froc_plot(evidence: Mapping[str, Any], salt: str) -> str | None:
    """FROC curve: lesion localization fraction against false marks per image (kind ``localization``)."""
    froc = evidence.get("froc")
    if not isinstance(froc, Mapping):
        return None
    nlf, llf = _floats(froc.get("nlf")), _floats(froc.get("llf"))
    if nlf is None or llf is None or len(nlf) != len(llf):
        return None
    fig, ax = _figure(5.0, 3.4)
    ax.plot(nlf, llf, color=BLUE, lw=1.8, marker="o", ms=3)
    fp = _floats([evidence.get("fp_per_image")])
    if fp is not None:
        ax.axvline(fp[0], color=ORANGE, lw=1, ls="--", label=f"{fp[0]:g} false marks / image")
        ax.legend(loc="lower right")
    ax.set(
        ylim=(0, 1.01),
        xlim=(0, max(nlf) * 1.05 if max(nlf) > 0 else 1),
        xlabel="False marks per image",
        ylabel="Lesions found (fraction)",
    )
    return _to_svg(fig, salt)


@_styled
def sweep_plot(evidence: Mapping[str, Any], salt: str) -> str | None:
    """Robustness sweep: AUC (with CI) and sensitivity against perturbation strength."""
    levels = evidence.get("levels")
    if not isinstance(levels, Sequence) or isinstance(levels, str):
        return None
    xs, auc, lo, hi, sens = [], [], [], [], []
    for lv in levels:
        if not isinstance(lv, Mapping):
            continue
        x = _floats([lv.get("level")])
        a = _floats([lv.get("auc")])
        if x is None or a is None:
            continue
        ci = _pair(lv.get("ci")) or (a[0], a[0])
        s = _floats([lv.get("sensitivity")])
        xs.append(x[0])
        auc.append(a[0])
        lo.append(ci[0])
        hi.append(ci[1])
        sens.append(s[0] if s is not None else math.nan)
    if not xs:
        return None
    fig, ax = _figure(5.0, 3.4)
    ax.fill_between(xs, lo, hi, color=BAND, alpha=0.55, lw=0, label="AUC confidence band")
    ax.plot(xs, auc, color=BLUE, lw=1.8, marker="o", ms=4, label="AUC")
    if not all(math.isnan(s) for s in sens):
        ax.plot(xs, sens, color=ORANGE, lw=1.4, marker="s", ms=4, ls="--", label="sensitivity")
    ax.set(
        ylim=(0, 1.01),
        xlabel=str(evidence.get("level_label", "perturbation level")),
        ylabel="metric",
    )
    ax.legend(loc="lower left")
    return _to_svg(fig, salt)


@_styled
def latency_plot(
    evidence: Mapping[str, Any], salt: str, limits: Mapping[str, float] | None = None
) -> str | None:
    """Latency histogram, from raw per-exam latencies or a precomputed histogram (kind ``latency``)."""
    lat = _floats(evidence.get("latencies_s"))
    if lat is not None:
        counts, edges = np.histogram(lat, bins=min(30, max(5, len(lat) // 4)))
    else:
        hist = evidence.get("histogram")
        if not isinstance(hist, Mapping):
            return None
        e, c = _floats(hist.get("edges")), _floats(hist.get("counts"))
        if e is None or c is None or len(e) != len(c) + 1:
            return None
        counts, edges = np.asarray(c), np.asarray(e)
    fig, ax = _figure(5.0, 3.2)
    ax.stairs(counts, edges, fill=True, color=BAND, alpha=0.9)
    ax.stairs(counts, edges, color=BLUE, lw=1.2)
    for i, (label, x) in enumerate(sorted((limits or {}).items())):
        ax.axvline(
            x, color=RED if i == 0 else ORANGE, lw=1, ls="--", label=f"{label} limit {x:g} s"
        )
    if limits:
        ax.legend(loc="upper right")
    ax.set(xlabel="Seconds per exam", ylabel="Exams")
    ax.grid(axis="x", visible=False)
    return _to_svg(fig, salt)
