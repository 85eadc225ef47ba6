"""Commands that join the layers: ``reports`` never imports ``conformance``, so what a report
needs to know about the suite's criterion kinds is passed in here, by the application."""

from __future__ import annotations

import argparse


def report_cli(args: argparse.Namespace) -> int:
    """``mammocert report DIR``: re-render report.html with the suite's kind facts."""
    from conformance.criteria import KIND_FACTS
    from reports.render import report_cli as render_cli

    return render_cli(args, KIND_FACTS)
