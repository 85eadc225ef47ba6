"""``mammocert run`` and ``mammocert evaluate``: options → :class:`conformance.engine.RunRequest`
→ :func:`conformance.engine.run` → the verdict table."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from conformance.engine import RunRequest, run
from harness.results import CONFORMANT, CriterionResult, RunResults


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
    )


def progress(res: CriterionResult) -> None:
    print(f"  {res.id:<22} {res.outcome}", file=sys.stderr, flush=True)


def note(text: str) -> None:
    print(f"Note: {text}", file=sys.stderr, flush=True)


def print_verdict(results: RunResults, out: Path | None) -> None:
    from rich.console import Console
    from rich.table import Table

    from harness.passif import describe

    console = Console(stderr=False, width=160)
    table = Table(
        title=f"{results.standard['id']} {results.standard['version']} — "
        f"{results.vendor.get('product') or 'predictions file'}"
    )
    for col in ("criterion", "kind", "value", "CI", "threshold", "n", "outcome"):
        table.add_column(col)
    for c in results.criteria:
        style = {"passed": "green", "failed": "red", "error": "yellow"}[c.outcome]
        ci = f"{c.ci[0]:.3f}–{c.ci[1]:.3f}" if c.ci else ""
        val = f"{c.value:.4g}" if isinstance(c.value, float | int) else ""
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
    results = run(request, on_result=progress, on_note=note)
    print_verdict(results, request.out)
    return 0 if results.verdict == CONFORMANT else 1
