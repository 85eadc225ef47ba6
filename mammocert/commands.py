"""Commands that join the layers: ``reports`` never imports ``conformance``, so what a report
needs to know about the suite's criterion kinds is passed in here, by the application."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.errors import UsageError


def report_cli(args: argparse.Namespace) -> int:
    """``mammocert report DIR [--out FILE]``: re-render report.html with the suite's kind facts.

    A bundle sealed by its attestation (or unsigned statement) is never rewritten: the statement
    lists report.html's digest, so a changed report.html would no longer verify. The report is
    a pure function of results.json and the kind facts, so re-rendering with the harness that ran
    the bundle gives the same bytes (nothing to write); a different rendering goes to ``--out``,
    outside the bundle."""
    from conformance.criteria import KIND_FACTS
    from harness.fsio import check_output_file, write_atomic
    from reports.render import VENDOR_DIR, render_bundle_html
    from reports.render import report_cli as render_cli
    from reports.signing import OUTSIDE_SEAL

    bundle = Path(args.dir)
    out = Path(args.out) if getattr(args, "out", None) else None
    seal = next((bundle / n for n in OUTSIDE_SEAL if (bundle / n).is_file()), None)
    if out is None and seal is None:
        return render_cli(args, KIND_FACTS)  # an unsealed bundle: rendered in place
    if not bundle.is_dir():
        raise UsageError(
            f"{bundle}: not a directory; give the evidence bundle written by `mammocert run`"
        )
    data = render_bundle_html(bundle, KIND_FACTS).encode("utf-8")
    if out is not None:
        if bundle.resolve() in out.resolve().parents:
            raise UsageError(
                f"--out {out}: inside the bundle {bundle}; every file there is sealed by its "
                "attestation, so write the re-rendered report elsewhere"
            )
        write_atomic(out, data, "--out")
        print(f"report: {out}")
        return 0
    assert seal is not None
    copies = [(bundle, data)]
    if (bundle / VENDOR_DIR / "results.json").is_file():  # the vendor's copy: the same rule
        vendor = bundle / VENDOR_DIR
        copies.append((vendor, render_bundle_html(vendor, KIND_FACTS).encode("utf-8")))
    for where, rendered in copies:
        current = check_output_file(where / "report.html", "report.html")
        if not (current.is_file() and current.read_bytes() == rendered):
            break
    else:
        print(f"report: {bundle / 'report.html'} (unchanged; the bundle's seal holds)")
        return 0
    raise UsageError(
        f"{current}: re-rendering changes it and {seal.name} seals the bundle, which would then "
        "fail `mammocert verify`; write the new rendering elsewhere with --out FILE"
    )
