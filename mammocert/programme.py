"""``mammocert programme``: what deploying the AI each way does to a screening programme.

Reads predictions and the reference set's truth and reads (either ``--predictions/--standard``
or a finished evidence bundle with ``--bundle``), runs :func:`harness.programme.analysis.analyse`
with a cost model (the shipped Danish defaults, ``--costs FILE``, ``--region NAME``), and writes
``programme.json`` and ``programme.html`` to ``--out``, printing a summary table.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from harness import __version__
from harness.cases.manifest import load_manifest
from harness.errors import UsageError
from harness.predictions import read_predictions
from harness.programme.analysis import analyse
from harness.programme.costs import load_costs
from harness.programme.screening import ScreeningSet
from harness.results import read_results
from harness.standard import load_standard
from reports.programme_page import write_programme_page
from reports.signing import OUTSIDE_SEAL


def _inputs(args: Any) -> tuple[Path, Path, float | None, dict[str, Any]]:
    """(standard, predictions, operating point, vendor identity) from a bundle or the options."""
    if args.bundle:
        if args.predictions or args.standard:
            raise UsageError(
                "--bundle gives the predictions and the standard; drop --predictions/--standard"
            )
        bundle = Path(args.bundle)
        results = read_results(bundle / "results.json")
        op = args.operating_point
        if op is None:
            op = results.vendor.get("operating_point")
        vendor = {
            k: results.vendor.get(k)
            for k in ("vendor", "product", "version")
            if results.vendor.get(k)
        }
        return (
            bundle / "standard.yaml",
            bundle / "predictions.jsonl",
            op,
            vendor
            | {
                "bundle": str(bundle),
                "reference_set_digest": results.reference_set.get("digest"),
            },
        )
    if not args.predictions or not args.standard:
        raise UsageError(
            "give --predictions and --standard, or --bundle DIR (a finished evidence bundle)"
        )
    return Path(args.standard), Path(args.predictions), args.operating_point, {}


def _v(measures: dict[str, Any], key: str) -> float:
    return measures[key]["value"]


def _star(figure: dict[str, Any]) -> str:
    return " *" if figure.get("unverified") else ""


def print_summary(doc: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    cur = doc["cost_model"]["currency"]
    console = Console(stderr=False, width=170)
    table = Table(
        title=f"Programme impact — region {doc['cost_model']['region']}, "
        f"{doc['cost_model']['inputs']['screens_per_year']['value']:,.0f} screens/year, "
        f"prevalence {doc['population']['prevalence_per_1000']:g}/1000"
    )
    for col in (
        "protocol",
        "reads/1000",
        "arbitr./1000",
        "recall",
        "CDR/1000",
        "PPV",
        "missed/found vs DR per 1000",
        "hours/yr",
        "FTE",
        f"net {cur}/yr (95% CI)",
        f"break-even {cur}/exam",
    ):
        table.add_column(col, justify="left" if col == "protocol" else "right")
    for p in doc["protocols"]:
        m, y = p["measures"], p["yearly"]
        net = y.get("net_cost")
        net_s = "baseline"
        if net is not None and net["value"] is not None:
            ci = net.get("ci")
            net_s = (
                f"{net['value']:,.0f}"
                + (f" ({ci[0]:,.0f} to {ci[1]:,.0f})" if ci else "")
                + _star(net)
            )
        be = y.get("break_even_ai_price")
        table.add_row(
            p["name"],
            f"{_v(m, 'reads_per_1000'):.0f}",
            f"{_v(m, 'arbitrations_per_1000'):.1f}",
            f"{100 * _v(m, 'recall_rate'):.2f} %",
            f"{_v(m, 'cdr_per_1000'):.2f}",
            "—" if m["ppv"]["value"] is None else f"{100 * m['ppv']['value']:.1f} %",
            f"{_v(m, 'missed_vs_double_reading_per_1000'):.2f} / {_v(m, 'found_vs_double_reading_per_1000'):.2f}",
            f"{y['radiologist_hours']['value']:,.0f}{_star(y['radiologist_hours'])}",
            f"{y['ftes']['value']:.2f}{_star(y['ftes'])}",
            net_s,
            "—" if be is None or be["value"] is None else f"{be['value']:.1f}{_star(be)}",
        )
    console.print(table)
    if doc["unverified_inputs"]:
        console.print(f"* rests on unverified inputs: {', '.join(doc['unverified_inputs'])}")


def programme_cli(args: Any) -> int:
    """``mammocert programme``: exit 0 when the analysis was written."""
    sealed = [n for n in OUTSIDE_SEAL if (Path(args.out) / n).is_file()]
    if sealed:  # every file of a signed bundle is sealed: an added one fails `verify`
        raise UsageError(
            f"--out {args.out}: an evidence bundle sealed by {sealed[0]}; write the programme "
            "analysis to another directory (programme.json names the bundle it came from)"
        )
    model = load_costs(args.costs, args.region)
    standard_path, predictions_path, op, vendor = _inputs(args)
    standard = load_standard(standard_path)
    manifest = load_manifest(args.cases)
    pinned = vendor.pop("reference_set_digest", None)
    if pinned is not None and pinned != manifest.digest:
        raise UsageError(
            f"{args.cases}: reference set {manifest.digest} is not the bundle's {pinned}; "
            "give the set the bundle was run on"
        )
    ss = ScreeningSet.from_manifest(manifest, read_predictions(predictions_path))
    if args.replicates < 100 or args.draws < 100:
        raise UsageError("--replicates and --draws must be at least 100")
    doc = analyse(
        ss,
        standard.prevalence_per_1000,
        standard.seed,
        model,
        operating_point=op,
        n_boot=args.replicates,
        draws=args.draws,
        identity={
            "standard": {"id": standard.id, "version": standard.version, "digest": standard.digest},
            "reference_set": {
                "id": manifest.id,
                "version": manifest.version,
                "digest": manifest.digest,
            },
            "vendor": vendor,
            "predictions": str(predictions_path),
            "harness": {"version": __version__},
        },
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "programme.json").write_text(
        json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8"
    )
    write_programme_page(doc, out / "programme.html")
    print_summary(doc)
    print(f"  programme.json: {out / 'programme.json'}\n  programme.html: {out / 'programme.html'}")
    return 0
