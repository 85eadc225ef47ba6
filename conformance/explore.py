"""Threshold exploration for a standards committee: ``mammocert standard explore CANDIDATE.yaml
BUNDLE... [--cases DIR] [--key PUB] [--sweep ID.KEY=A:B:STEP ...] [--out DIR]``.

Which vendors would a candidate standard pass, without running a model again? For each bundle
and each criterion of the candidate, the outcome comes from the cheapest honest source:

* **re-held**: the bundle judged a criterion with the same id measured the same way (kind and
  every parameter; only ``pass_if``, ``mandatory``, ``title`` and ``source`` may differ): its
  recorded measurement (``evidence.measured``) is held to the candidate's ``pass_if`` by the one
  pass_if table (:func:`harness.passif.check`), live criteria included. An ``error`` stays one.
* **recomputed**: a criterion that needs only predictions and is new or measured differently is
  judged from the bundle's predictions and the reference set (``--cases``), as ``verify --cases``
  does (:func:`conformance.engine.judge`).
* **needs a live run**: a criterion that needs the model (invariance, decision stability,
  latency...) and is new or measured differently; it is listed, never guessed.

A vendor's verdict under the candidate is CONFORMANT, NOT CONFORMANT, or UNDETERMINED while a
mandatory criterion needs a live run or ``--cases``. Re-evaluating a bundle under its own
standard reproduces its ``results.json`` outcomes exactly (tested). ``--sweep`` sets one
``pass_if`` key of one criterion to each value of a range and gives each vendor's outcome and
verdict per value: the pass/fail curve a committee reads a threshold from.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from conformance.criteria import LIVE_KINDS
from harness import passif
from harness.errors import UsageError
from harness.results import CriterionResult, read_results
from harness.standard import CriterionSpec, Standard, load_standard, recorded_inputs

RE_HELD, RECOMPUTED, NEEDS_LIVE, NEEDS_CASES, SCOPED_OUT = (
    "re-held",
    "recomputed",
    "needs a live run",
    "needs --cases",
    "applies_to",
)
UNDETERMINED = "UNDETERMINED"


@dataclass(frozen=True)
class Cell:
    """One criterion of the candidate for one bundle."""

    outcome: str | None  # passed | failed | error | not_applicable; None: not decided here
    how: str  # re-held | recomputed | needs a live run | needs --cases | applies_to
    value: float | None = None


@dataclass(frozen=True)
class Vendor:
    """One bundle under the candidate."""

    name: str
    path: Path
    cells: Mapping[str, Cell]  # criterion id -> cell
    verdict: str


def _measure_key(spec: CriterionSpec) -> tuple[str, str]:
    """What a criterion measures: its kind and parameters (not its threshold or wording)."""
    return spec.kind, json.dumps(dict(spec.params), sort_keys=True, default=str)


def _rejudge(stored: CriterionResult, pass_if: Mapping[str, Any]) -> Cell:
    measured = (stored.evidence or {}).get("measured")
    if stored.outcome == "error" or not isinstance(measured, Mapping):
        return Cell("error", RE_HELD, stored.value)
    ok, _ = passif.check(pass_if, measured)
    return Cell("passed" if ok else "failed", RE_HELD, stored.value)


def explore_bundle(candidate: Standard, bundle: Path, cases: Path | None) -> Vendor:
    """The candidate's criteria for one bundle (see the module docstring)."""
    results = read_results(bundle / "results.json")
    own = load_standard(bundle / "standard.yaml")
    own_specs = {s.id: s for s in own.criteria}
    stored = {c.id: c for c in results.criteria}
    cells: dict[str, Cell] = {}
    to_compute: list[CriterionSpec] = []
    inputs = recorded_inputs(results.vendor)
    for spec in candidate.criteria:
        mine = own_specs.get(spec.id)
        if spec.applies_to and inputs is not None and inputs not in spec.applies_to:
            cells[spec.id] = Cell("not_applicable", SCOPED_OUT)
        elif (
            mine is not None
            and spec.id in stored
            and stored[spec.id].outcome != "not_applicable"  # scoped out: never measured
            and _measure_key(mine) == _measure_key(spec)
        ):
            cells[spec.id] = _rejudge(stored[spec.id], spec.pass_if)
        elif spec.kind in LIVE_KINDS:
            cells[spec.id] = Cell(None, NEEDS_LIVE)
        elif cases is None:
            cells[spec.id] = Cell(None, NEEDS_CASES)
        else:
            to_compute.append(spec)
    if to_compute:
        from conformance.engine import judge
        from harness.cases.manifest import load_manifest
        from harness.predictions import read_predictions

        manifest = load_manifest(cases)  # the truth it pins is all a judgement needs
        if manifest.digest != results.reference_set.get("digest"):
            raise UsageError(
                f"--cases {cases}: set digest {manifest.digest} is not the bundle's "
                f"{results.reference_set.get('digest')} ({bundle}); give the set it ran on"
            )
        judged = judge(
            candidate,
            manifest,
            read_predictions(bundle / "predictions.jsonl"),
            float(results.vendor["operating_point"]),
            to_compute,
            vendor=results.vendor,
            mode=results.mode,
        )
        for r in judged:
            cells[r.id] = Cell(r.outcome, RECOMPUTED, r.value)
    return Vendor(_name(results.vendor), bundle, cells, verdict_of(candidate, cells))


def _name(vendor: Mapping[str, Any]) -> str:
    return f"{vendor.get('product', '?')} {vendor.get('version', '')}".strip()


def explore_bundles(
    candidate: Standard, bundles: Sequence[Path], cases: Path | None
) -> list[Vendor]:
    """:func:`explore_bundle` for each bundle; bundles of one product and version (a package and
    a defective build of it, two installations) are told apart by their folder, or their path
    where the folders share a name too."""
    vendors = [explore_bundle(candidate, b, cases) for b in bundles]
    names = [v.name for v in vendors]
    folders = [v.path.name for v in vendors]
    out = []
    for v in vendors:
        if names.count(v.name) > 1:
            where = v.path.name if folders.count(v.path.name) == 1 else str(v.path)
            v = replace(v, name=f"{v.name} ({where})")
        out.append(v)
    return out


def verdict_of(candidate: Standard, cells: Mapping[str, Cell]) -> str:
    mandatory = [s.id for s in candidate.criteria if s.mandatory]
    if any(cells[i].outcome not in (None, "passed", "not_applicable") for i in mandatory):
        return "NOT CONFORMANT"
    if any(cells[i].outcome is None for i in mandatory):
        return UNDETERMINED
    applied = any(c.outcome != "not_applicable" for c in cells.values())
    return "CONFORMANT" if applied else "NOT CONFORMANT"


def parse_sweep(text: str, candidate: Standard) -> tuple[str, str, list[float]]:
    """``ID.KEY=A:B:STEP`` -> (criterion id, pass_if key, values A, A+STEP, ..., B)."""
    try:
        target, rng = text.split("=", 1)
        cid, key = target.rsplit(".", 1)
        a, b, step = (float(x) for x in rng.split(":"))
    except ValueError:
        raise UsageError(
            f"--sweep {text!r}: write CRITERION.PASS_KEY=FROM:TO:STEP, e.g. DK-AUC-01.ci_lower_gte=0.80:0.95:0.01"
        ) from None
    spec = next((s for s in candidate.criteria if s.id == cid), None)
    if spec is None:
        raise UsageError(f"--sweep {text!r}: the candidate has no criterion {cid}")
    if key not in passif.PASS_KEYS:
        raise UsageError(
            f"--sweep {text!r}: {key} is not a pass_if key ({', '.join(passif.PASS_KEYS)})"
        )
    if not (step > 0 and b >= a) or (b - a) / step > 10_000:
        raise UsageError(
            f"--sweep {text!r}: needs FROM <= TO and a STEP > 0 (at most 10,000 values)"
        )
    n = int(round((b - a) / step))
    return cid, key, [round(a + k * step, 12) for k in range(n + 1)]


def with_pass_if(candidate: Standard, cid: str, key: str, value: float) -> Standard:
    specs = tuple(
        replace(s, pass_if={**s.pass_if, key: value}) if s.id == cid else s
        for s in candidate.criteria
    )
    return replace(candidate, criteria=specs)


def sweep(
    candidate: Standard, bundles: Sequence[Path], cases: Path | None, cid: str, key: str,
    values: Sequence[float],
) -> list[dict[str, Any]]:  # fmt: skip
    """Per value: each vendor's outcome of ``cid`` and verdict."""
    out = []
    for v in values:
        vendors = explore_bundles(with_pass_if(candidate, cid, key, v), bundles, cases)
        out.append(
            {
                "value": v,
                "vendors": [
                    {"name": x.name, "outcome": x.cells[cid].outcome, "verdict": x.verdict}
                    for x in vendors
                ],
            }
        )
    return out


def explore_cli(args: Any) -> int:
    from rich.console import Console
    from rich.table import Table

    candidate = load_standard(args.candidate)
    bundles = [Path(b) for b in args.bundles]
    for b in bundles:
        if not (b / "results.json").is_file() or not (b / "standard.yaml").is_file():
            raise UsageError(f"{b}: not an evidence bundle (needs results.json and standard.yaml)")
    if args.key:
        from reports.verify import verify_bundle

        for b in bundles:
            verify_bundle(b, Path(args.key))
    cases = Path(args.cases) if args.cases else None
    vendors = explore_bundles(candidate, bundles, cases)
    console = Console()
    table = Table(
        title=f"{candidate.id} {candidate.version} ({args.candidate}) over {len(vendors)} bundle(s)"
    )
    table.add_column("criterion")
    for v in vendors:
        table.add_column(v.name)
    table.add_row("verdict", *[v.verdict for v in vendors])
    for spec in candidate.criteria:
        row = []
        for v in vendors:
            c = v.cells[spec.id]
            row.append(c.outcome if c.outcome else c.how)
        table.add_row(spec.id + (" *" if spec.mandatory else ""), *row)
    console.print(table)
    doc: dict[str, Any] = {
        "candidate": candidate.identity(),
        "bundles": [
            {
                "name": v.name,
                "path": str(v.path),
                "verdict": v.verdict,
                "criteria": {
                    i: {"outcome": c.outcome, "how": c.how, "value": c.value}
                    for i, c in v.cells.items()
                },
            }
            for v in vendors
        ],
        "sweeps": [],
    }
    for text in args.sweep or []:
        cid, key, values = parse_sweep(text, candidate)
        curve = sweep(candidate, bundles, cases, cid, key, values)
        doc["sweeps"].append({"criterion": cid, "key": key, "curve": curve})
        kept = {
            k: v
            for k, v in next(x for x in candidate.criteria if x.id == cid).pass_if.items()
            if k != key
        }
        st = Table(title=f"sweep {cid}.{key}" + (f" (with {kept} kept)" if kept else ""))
        st.add_column(key)
        for v in vendors:
            st.add_column(v.name)
        for point in curve:
            st.add_row(
                f"{point['value']:g}",
                *[f"{x['outcome'] or '?'} · {x['verdict']}" for x in point["vendors"]],
            )
        console.print(st)
    if args.out:
        from harness.fsio import make_dir, write_atomic

        out = make_dir(Path(args.out), "--out")
        write_atomic(
            out / "explore.json", (json.dumps(doc, indent=1) + "\n").encode(), "explore.json"
        )
        console.print(f"wrote {out / 'explore.json'}")
    return 0
