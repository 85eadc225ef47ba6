"""The programme impact a standard asks every run's report to show (its ``programme_impact``).

:func:`programme_impact` replays the run's own original predictions with the reference set's
recorded reads through the protocols the block names, reweighted to the standard's prevalence and
priced for the block's region with a shipped cost model (:func:`harness.programme.analysis.
analyse`, seeded, so the same run gives the same bytes). The engine writes the document as the
bundle's ``programme.json`` before the attestation is made, so the seal covers it, and records its
name and SHA-256 in ``results.json`` (``summary.programme_impact``), which the report renders it
under. A set whose exams lack the reads a replay needs (an imported set without ``readers``)
gives no document and the reason instead: the report says why the section is empty, and the run
goes on, since the section informs and judges nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import __version__
from harness.cases.manifest import Manifest
from harness.errors import UsageError
from harness.fsio import write_atomic
from harness.jsonutil import sha256_bytes
from harness.predictions import Prediction
from harness.programme.analysis import analyse
from harness.programme.costs import load_shipped
from harness.programme.screening import READS, ScreeningSet
from harness.standard import Standard
from reports.programme_page import PROGRAMME_FILE


@dataclass(frozen=True)
class ProgrammeImpact:
    """The section's document and its exact bytes, or why it could not be computed."""

    document: Mapping[str, Any] | None
    data: bytes = b""
    not_computed: str = ""

    def summary(self) -> dict[str, Any]:
        """``results.summary.programme_impact``: where the document is, or why there is none."""
        if self.document is None:
            return {"not_computed": self.not_computed}
        return {"file": PROGRAMME_FILE, "sha256": sha256_bytes(self.data)}


def programme_identity(
    standard: Standard, manifest: Manifest, vendor: Mapping[str, Any], predictions: str
) -> dict[str, Any]:
    """What a programme document was computed from (standard, set, vendor, predictions)."""
    return {
        "standard": {"id": standard.id, "version": standard.version, "digest": standard.digest},
        "reference_set": {
            "id": manifest.id,
            "version": manifest.version,
            "digest": manifest.digest,
        },
        "vendor": {k: vendor[k] for k in ("vendor", "product", "version") if vendor.get(k)},
        "predictions": predictions,
        "harness": {"version": __version__},
    }


def programme_impact(
    standard: Standard,
    manifest: Manifest,
    predictions: Iterable[Prediction],
    operating_point: float,
    vendor: Mapping[str, Any],
) -> ProgrammeImpact | None:
    """The section the standard asks for (None when it asks for none)."""
    spec = standard.programme_impact
    if spec is None:
        return None
    model = load_shipped(spec.costs, spec.region)
    if spec.protocols:
        model = model.only(spec.protocols)
    unread = sum(any(r not in e.readers for r in READS) for e in manifest.exams)
    if unread:  # counted, not named: the vendor's copy shows this reason too
        return ProgrammeImpact(
            None,
            not_computed=(
                f"{unread} of the set's {len(manifest.exams)} exams have no recorded "
                f"{', '.join(READS)} reads, which a replay of the screening protocols needs "
                "(manifest 'readers')"
            ),
        )
    try:
        ss = ScreeningSet.from_manifest(manifest, predictions)
        if not ss.readable.any():
            raise UsageError("the AI read no exam of the set, so there is nothing to replay")
        doc = analyse(
            ss,
            standard.prevalence_per_1000,
            spec.seed,
            model,
            operating_point=operating_point,
            n_boot=spec.replicates,
            draws=spec.draws,
            level=spec.level,
            identity=programme_identity(standard, manifest, vendor, "predictions.jsonl"),
        )
    except UsageError as exc:  # the set cannot be replayed (no reads, one class only)
        return ProgrammeImpact(None, not_computed=str(exc))
    except Exception as exc:  # a harness fault costs the section, not the run's evidence
        return ProgrammeImpact(
            None,
            not_computed=f"the harness failed while computing it ({type(exc).__name__}: {exc})",
        )
    data = json.dumps(doc, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    return ProgrammeImpact(doc, data.encode("utf-8"))


def store(impact: ProgrammeImpact | None, directory: Path) -> None:
    """Write ``programme.json`` into a bundle directory, or remove one an earlier run left there
    (it would otherwise be sealed with this run's files)."""
    path = Path(directory) / PROGRAMME_FILE
    if impact is not None and impact.document is not None:
        write_atomic(path, impact.data, PROGRAMME_FILE)
    else:
        path.unlink(missing_ok=True)
