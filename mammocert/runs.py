"""``mammocert run`` and ``mammocert evaluate``: options → :class:`conformance.engine.RunRequest`
→ :func:`conformance.engine.run` → the verdict table."""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conformance.engine import RunRequest, run
from harness.executor_choice import ExecutorChoice
from harness.predictions import ORIGINAL, Prediction, is_valid_score
from harness.profile import open_profile, report_profile
from harness.results import CONFORMANT, CriterionResult, RunResults

PREFLIGHT_BINS = 10
SATURATED_SHARE = 0.5  # at least this share of scores pinned at 0 or at 1: saturated


def _path(value: Any) -> Path | None:
    return Path(value) if value else None


def request_of(args: Any) -> RunRequest:
    """The run request for parsed ``run``/``evaluate`` options (absent options take defaults)."""
    get = lambda name, default=None: getattr(args, name, default)  # noqa: E731
    return RunRequest(
        standard=Path(args.standard),
        cases=Path(args.cases),
        out=_path(get("out")),
        mode=get("mode") or "self-test",
        vendor=_path(get("vendor")),
        predictions=_path(get("predictions")),
        operating_point=get("operating_point"),
        device=get("device") or "cpu",
        key=_path(get("key")),
        resume=bool(get("resume")),
        select=get("keyword") or "",
        audience=get("audience") or "vendor",
        executor=ExecutorChoice.from_args(args),
    )


@dataclass(frozen=True)
class Preflight:
    """What the original condition's scores look like at the declared operating point."""

    exams: int
    scored: int  # valid scores in [0, 1]
    histogram: tuple[int, ...]  # PREFLIGHT_BINS equal bins over [0, 1]
    recalled: int  # valid scores >= the operating point
    operating_point: float  # on the mapped [0, 1] scores
    native: str  # "60 on [0, 100]" when the vendor's scale is another one, else ""
    warnings: tuple[str, ...]

    @property
    def recalled_share(self) -> float:
        return self.recalled / self.scored if self.scored else math.nan


def preflight(
    predictions: Sequence[Prediction], operating_point: float, vendor: Mapping[str, Any]
) -> Preflight:
    """The preflight summary of a run: a histogram of the original scores, the share recalled at
    the operating point, and warnings for scores that make the verdict suspect (none valid, one
    constant value, most pinned at an end of the range, nothing or everything recalled)."""
    original = [p for p in predictions if p.condition == ORIGINAL]
    scores = [float(p.score) for p in original if p.status == "ok" and is_valid_score(p.score)]
    counts = [0] * PREFLIGHT_BINS
    for v in scores:
        counts[min(int(v * PREFLIGHT_BINS), PREFLIGHT_BINS - 1)] += 1
    recalled = sum(v >= operating_point for v in scores)
    native = ""
    rng, op_native = vendor.get("score_range"), vendor.get("operating_point_native")
    if rng and op_native is not None and tuple(rng) != (0.0, 1.0):
        native = f"{op_native:g} on [{rng[0]:g}, {rng[1]:g}]"
    warnings: list[str] = []
    if not scores:
        warnings.append("no exam has a valid score: every criterion rests on failures")
    else:
        if len(set(scores)) == 1:
            warnings.append(f"every valid score is the same value ({scores[0]:.6g})")
        else:
            pinned = max(sum(v <= 0.0 for v in scores), sum(v >= 1.0 for v in scores))
            if pinned >= SATURATED_SHARE * len(scores):
                warnings.append(
                    f"{pinned} of {len(scores)} scores sit at an end of the score range "
                    "(saturated); check score_range"
                )
        if recalled in (0, len(scores)):
            warnings.append(
                f"the operating point recalls {'no' if recalled == 0 else 'every'} scored exam; "
                "check that operating_point is on the score_range scale"
            )
    return Preflight(
        exams=len(original),
        scored=len(scores),
        histogram=tuple(counts),
        recalled=recalled,
        operating_point=float(operating_point),
        native=native,
        warnings=tuple(warnings),
    )


def preflight_text(pf: Preflight) -> str:
    """The preflight as printed on stderr before the criteria are judged."""
    op = f"{pf.operating_point:.6g}" + (f" (vendor scale: {pf.native})" if pf.native else "")
    share = f" ({pf.recalled_share:.1%})" if pf.scored else ""
    lines = [
        f"preflight: {pf.scored} of {pf.exams} exams scored; operating point {op}: "
        f"{pf.recalled} recalled{share}"
    ]
    top = max(pf.histogram, default=0) or 1
    for k, c in enumerate(pf.histogram):
        lo, hi = k / PREFLIGHT_BINS, (k + 1) / PREFLIGHT_BINS
        bar = "#" * math.ceil(30 * c / top) if c else ""
        lines.append(f"  {lo:.1f}-{hi:.1f} {bar:<30} {c}")
    lines.extend(f"  warning: {w}" for w in pf.warnings)
    return "\n".join(lines)


def print_preflight(ctx: Any) -> None:
    """``on_start`` of :func:`conformance.engine.run`: the preflight, before any criterion."""
    pf = preflight(ctx.predictions, ctx.operating_point, ctx.vendor)
    print(preflight_text(pf), file=sys.stderr, flush=True)


def progress(res: CriterionResult) -> None:
    print(f"  {res.id:<22} {res.outcome}", file=sys.stderr, flush=True)


def _figure(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float | int) and not isinstance(v, bool) else ""


def note(text: str) -> None:
    print(f"Note: {text}", file=sys.stderr, flush=True)


def print_verdict(results: RunResults, out: Path | None) -> None:
    from rich.console import Console
    from rich.table import Table

    from harness.passif import describe, row_figures

    console = Console(stderr=False, width=160)
    table = Table(
        title=f"{results.standard['id']} {results.standard['version']} — "
        f"{results.vendor.get('product') or 'predictions file'}"
    )
    for col in ("criterion", "kind", "value", "CI", "threshold", "n", "outcome"):
        table.add_column(col)
    for c in results.criteria:
        style = {"passed": "green", "failed": "red", "error": "yellow", "not_applicable": "dim"}[
            c.outcome
        ]
        measured = c.evidence.get("measured") if isinstance(c.evidence, Mapping) else None
        val, with_ci = row_figures(c.threshold, c.value, measured, _figure)
        ci = f"{c.ci[0]:.3f}–{c.ci[1]:.3f}" if c.ci and with_ci else ""
        table.add_row(
            c.id + ("" if c.mandatory else " (opt)"),
            c.kind,
            val,
            ci,
            describe(c.threshold),
            str(c.n),
            f"[{style}]{c.outcome}[/{style}]",
        )
    console.print(table)
    banner = results.verdict + (f"  [{results.notice}]" if results.notice else "")
    console.print(f"[bold]{banner}[/bold]")
    set_note = results.summary.get("set_note") if isinstance(results.summary, Mapping) else None
    if set_note:
        console.print(f"Note: {set_note}", markup=False)
    if out is None:
        return
    for name in (
        "results.json",
        "report.html",
        "vendor/results.json",
        "vendor/report.html",
        "attestation.intoto.json",
        "predictions.jsonl",
    ):
        if (out / name).exists():
            console.print(f"  {name}: {out / name}")


def run_cli(args: Any) -> int:
    """``mammocert run`` (and ``evaluate``, whose options omit the model's): exit 0 conformant,
    1 not conformant."""
    request = request_of(args)
    profile, profile_path = open_profile(getattr(args, "profile", None), request.out)
    results = run(
        request, on_result=progress, on_start=print_preflight, on_note=note, profile=profile
    )
    print_verdict(results, request.out)
    report_profile(profile, profile_path)
    return 0 if results.verdict == CONFORMANT else 1
