"""A realistic synthetic evidence bundle for the report, signing and verification tests.

It holds one criterion of each plotted kind with evidence for every plot, a failed invariance
criterion with its counterexample and thumbnails, faults, a standard.yaml whose digest the
results pin, and a predictions.jsonl.
"""

from __future__ import annotations

import base64
import io
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from harness.jsonutil import sha256_file  # noqa: E402
from harness.results import (  # noqa: E402
    SELF_TEST_BANNER,
    CriterionResult,
    RunResults,
    verdict_of,
    write_results,
)

MODEL_DIGEST = "3b2f0f4c1d9a7e5b6c8d0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d"


def standard_yaml(
    ids: list[str], effective: str = "2026-01-01", expires: str = "2099-01-01"
) -> str:
    """A minimal standard document listing the given criterion ids."""
    lines = [
        "schema: mammocert/standard/v1",
        "id: DK-MAMMO-AI",
        "version: 0.1.0",
        "status: draft",
        "title: Danish national acceptance criteria for AI in screening mammography",
        "issuer: Test issuer",
        f"effective: {effective}",
        f"expires: {expires}",
        "population: {prevalence_per_1000: 6.0}",
        "seed: 20261127",
        "criteria:",
    ]
    for cid in ids:
        lines += [
            f"  - id: {cid}",
            f"    title: criterion {cid}",
            "    kind: auc",
            "    pass_if: {ci_lower_gte: 0.85}",
            "    mandatory: true",
            "    source: test",
        ]
    return "\n".join(lines) + "\n"


def _thumb(seed: int, shift: float) -> str:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:48, 0:40]
    img = np.exp(-((xx - 10) ** 2 / 300 + (yy - 24) ** 2 / 500)) + 0.05 * rng.standard_normal(
        (48, 40)
    )
    img = np.clip(img * (1 + shift), 0, 1)
    buf = io.BytesIO()
    plt.imsave(buf, img, format="png", cmap="gray", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _roc(auc_target: float) -> tuple[list[float], list[float]]:
    fpr = np.linspace(0, 1, 41)
    k = auc_target / (1 - auc_target)
    tpr = 1 - (1 - fpr) ** k
    return [round(float(x), 4) for x in fpr], [round(float(x), 4) for x in tpr]


def criteria() -> list[CriterionResult]:
    """One criterion per plotted kind, plus a failed invariance and an error criterion."""
    fpr, tpr = _roc(0.91)
    band_lo = [max(0.0, t - 0.06 * math.sin(math.pi * f)) for f, t in zip(fpr, tpr, strict=True)]
    band_hi = [min(1.0, t + 0.06 * math.sin(math.pi * f)) for f, t in zip(fpr, tpr, strict=True)]
    lat = [round(0.3 + 0.05 * i % 0.7 + (0.9 if i % 37 == 0 else 0), 3) for i in range(200)]
    return [
        CriterionResult(
            id="DK-AUC-01",
            title="Exam-level discrimination",
            kind="auc",
            mandatory=True,
            outcome="passed",
            value=0.912,
            ci=(0.874, 0.950),
            threshold={"ci_lower_gte": 0.85},
            n=400,
            explanation="The model separates cancer from non-cancer exams well enough: the lower end of its AUC interval (0.874) is above 0.85.",
            evidence={
                "roc": {"fpr": fpr, "tpr": tpr},
                "ci_band": {"fpr": fpr, "tpr_low": band_lo, "tpr_high": band_hi},
                "operating_points": [
                    {"label": "vendor threshold 0.5", "fpr": 0.12, "tpr": 0.83},
                    {"label": "reader 1", "fpr": 0.08, "tpr": 0.78},
                    {"label": "consensus", "fpr": 0.05, "tpr": 0.81},
                ],
                "method": "DeLong 1988, 95% CI",
            },
            source="Rodriguez-Ruiz 2019 JNCI",
        ),
        CriterionResult(
            id="DK-SUB-01",
            title="AUC gap across breast density",
            kind="subgroup",
            mandatory=True,
            outcome="passed",
            value=0.041,
            ci=None,
            threshold={"max_gap": 0.05},
            n=400,
            explanation="Performance is similar in every breast-density group: the largest gap in AUC is 0.041, within 0.05.",
            evidence={
                "metric": "AUC",
                "groups": [
                    {"name": "density a", "value": 0.93, "ci": [0.86, 0.99], "n": 80},
                    {"name": "density b", "value": 0.92, "ci": [0.87, 0.97], "n": 140},
                    {"name": "density c", "value": 0.90, "ci": [0.84, 0.96], "n": 120},
                    {"name": "density d", "value": 0.889, "ci": [0.80, 0.97], "n": 60},
                ],
                "overall": {"value": 0.912, "ci": [0.874, 0.950], "n": 400},
                "method": "DeLong per subgroup",
            },
            source="Larsen 2025",
        ),
        CriterionResult(
            id="DK-LOC-01",
            title="Lesion localization",
            kind="localization",
            mandatory=False,
            outcome="passed",
            value=0.84,
            ci=(0.78, 0.89),
            threshold={"localised_fraction_gte": 0.75},
            n=160,
            explanation="The model marked 84% of cancers at the right place with at most 0.5 false marks per image.",
            evidence={
                "froc": {
                    "nlf": [0.0, 0.05, 0.1, 0.2, 0.35, 0.5, 0.8, 1.2],
                    "llf": [0.0, 0.45, 0.6, 0.72, 0.8, 0.84, 0.87, 0.88],
                },
                "fp_per_image": 0.5,
                "method": "FROC, hit within 10 mm",
            },
            source="Test",
        ),
        CriterionResult(
            id="DK-ROB-01",
            title="Robustness to noise",
            kind="robustness_sweep",
            mandatory=True,
            outcome="passed",
            value=0.021,
            ci=None,
            threshold={"max_auc_drop": 0.03, "max_sensitivity_drop": 0.05},
            n=400,
            explanation="Adding image noise lowers AUC by at most 0.021, within the allowed 0.03.",
            evidence={
                "level_label": "noise σ (fraction of range)",
                "levels": [
                    {"level": 0.0, "auc": 0.912, "ci": [0.874, 0.95], "sensitivity": 0.83},
                    {"level": 0.01, "auc": 0.909, "ci": [0.87, 0.948], "sensitivity": 0.82},
                    {"level": 0.02, "auc": 0.903, "ci": [0.864, 0.942], "sensitivity": 0.81},
                    {"level": 0.04, "auc": 0.891, "ci": [0.85, 0.932], "sensitivity": 0.79},
                ],
                "method": "DeLong per level, paired",
            },
            source="Test",
        ),
        CriterionResult(
            id="DK-LAT-01",
            title="Time per exam",
            kind="latency",
            mandatory=False,
            outcome="passed",
            value=0.62,
            ci=None,
            threshold={"p50_lte_s": 1.0, "p95_lte_s": 2.0},
            n=200,
            explanation="95% of exams were scored within 0.62 seconds.",
            evidence={"latencies_s": lat, "unit": "s", "method": "harness wall clock"},
            source="Test",
        ),
        CriterionResult(
            id="DK-INV-01",
            title="Invariance to horizontal flip",
            kind="invariance",
            mandatory=True,
            outcome="failed",
            value=3,
            ci=None,
            threshold={"max_violations": 0},
            n=100,
            explanation="Mirroring the image, which must not change the answer, changed the model's decision in 3 of 100 tries.",
            evidence={
                "counterexample": {
                    "relation": "mirror_laterality",
                    "parameters": {"axis": "horizontal", "gamma": 1.05},
                    "exam_id": "E0042",
                    "score_before": 0.71,
                    "score_after": 0.32,
                    "thumbnails": {"before": _thumb(1, 0.0), "after": _thumb(1, 0.3)},
                },
                "examples": 100,
                "method": "Hypothesis, shrunk",
            },
            source="Test",
        ),
        CriterionResult(
            id="DK-DEC-NOISE",
            title="Lower-dose quantum noise rarely flips the recall decision",
            kind="decision_stability",
            mandatory=True,
            outcome="failed",
            value=0.125,
            ci=(0.027, 0.324),
            threshold={"max_flip_fraction": 0.05},
            n=24,
            explanation="Under noise the recall decision flipped on 3 of 24 sampled exams.",
            evidence={
                "relation": "noise",
                "operating_point": 0.6685,
                "flipped": [
                    {"exam_id": "E0101", "score_before": 0.70, "score_after": 0.62},
                ],
                "score_drift": {"max_abs_score_change": 0.21, "median_abs_score_change": 0.01},
                "counterexample": {
                    "relation": "noise",
                    "parameters": {"dose": 0.93, "seed": 0},
                    "exam_id": "E0101",
                    "score_before": 0.70,
                    "score_after": 0.62,
                    "shrunk": True,
                    "thumbnails": {"before": _thumb(2, 0.0), "after": _thumb(2, 0.1)},
                },
                "examples": 3,
                "method": "24 exams sampled, one level each; Clopper-Pearson 95% interval",
            },
            source="Test",
        ),
        CriterionResult(
            id="DK-TFR-01",
            title="Technical failure rate",
            kind="technical_failure_rate",
            mandatory=True,
            outcome="error",
            value=None,
            ci=None,
            threshold={"ci_upper_lte": 0.01},
            n=0,
            explanation="Could not be evaluated: the timing journal was incomplete.",
            evidence={},
            source="Test",
        ),
    ]


def make_results(
    mode: str = "certify",
    crit: list[CriterionResult] | None = None,
    standard_digest: str = "",
    finished: str = "2026-11-27T10:42:00Z",
    signing: str = "key",
) -> RunResults:
    """A RunResults as the engine would write it."""
    crit = criteria() if crit is None else crit
    return RunResults(
        verdict=verdict_of(crit),
        mode=mode,
        standard={
            "id": "DK-MAMMO-AI",
            "version": "0.1.0",
            "status": "draft",
            "title": "Danish national acceptance criteria for AI in screening mammography",
            "digest": standard_digest,
            "effective": "2026-01-01",
            "expires": "2099-01-01",
        },
        reference_set={
            "id": "synthetic-v1",
            "version": "1.0.0",
            "digest": "sha256:" + "ab" * 32,
            "n_exams": 400,
        },
        vendor={
            "vendor": "Example Medical ApS",
            "product": "ExampleMammo",
            "version": "2.1.0",
            "interface": "onnx",
            "operating_point": 0.5,
            "package_digest": "sha256:" + "cd" * 32,
            "model_digests": {"model.onnx": MODEL_DIGEST},
        },
        harness={
            "version": "0.1.0",
            "git_commit": "be5a68a0d1c2e3f4a5b6c7d8e9f00112233445566",
            "git_dirty": False,
            "python": "3.11.2",
            "packages": {"numpy": "1.26.4", "onnxruntime": "1.18.0"},
            "execution_provider": "CPUExecutionProvider",
        },
        seeds={"seed": 20261127, "hypothesis": {"derandomize": True, "max_examples": 100}},
        started="2026-11-27T10:00:00Z",
        finished=finished,
        criteria=crit,
        summary={
            "predictions": {"ok": 397, "rejected": 1, "error": 2},
            "faults": [
                {
                    "exam_id": "E0007",
                    "condition": "original",
                    "status": "error",
                    "reason": "timeout after 300 s",
                },
                {
                    "exam_id": "E0131",
                    "condition": "noise-0.04",
                    "status": "error",
                    "reason": "model returned NaN",
                },
                {
                    "exam_id": "E0288",
                    "condition": "original",
                    "status": "rejected",
                    "reason": "unsupported photometric interpretation <MONOCHROME3>",
                },
            ],
        },
        notice=SELF_TEST_BANNER if mode == "self-test" else "",
        signing=signing,
    )


def write_bundle(
    bundle: Path,
    mode: str = "certify",
    crit: list[CriterionResult] | None = None,
    effective: str = "2026-01-01",
    expires: str = "2099-01-01",
    signing: str = "key",
    standard_ids: list[str] | None = None,
) -> RunResults:
    """Write results.json, predictions.jsonl and standard.yaml into ``bundle``; return the results."""
    bundle.mkdir(parents=True, exist_ok=True)
    crit = criteria() if crit is None else crit
    ids = [c.id for c in crit] if standard_ids is None else standard_ids
    (bundle / "standard.yaml").write_text(standard_yaml(ids, effective, expires), encoding="utf-8")
    digest = "sha256:" + sha256_file(bundle / "standard.yaml")
    results = make_results(mode, crit, digest, signing=signing)
    write_results(bundle / "results.json", results)
    with open(bundle / "predictions.jsonl", "w", encoding="utf-8") as fh:
        for i in range(20):
            fh.write(
                json.dumps(
                    {
                        "exam_id": f"E{i:04d}",
                        "condition": "original",
                        "status": "ok",
                        "score": round(i / 20, 3),
                        "breasts": {"L": round(i / 20, 3)},
                        "findings": [],
                        "latency_s": 0.4,
                        "error": None,
                    }
                )
                + "\n"
            )
    return results
