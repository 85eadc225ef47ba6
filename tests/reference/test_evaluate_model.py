"""The reference model's evaluation report: per-group AUCs against the normal exams."""

from __future__ import annotations

import dataclasses

from vendors.mgfactory import write_set

from harness.cases.manifest import load_manifest
from harness.predictions import Prediction
from harness.reference.evaluate_model import by_group, cancers_above_normals, group_of


def _pred(exam_id: str, score: float) -> Prediction:
    return Prediction(exam_id, "original", "ok", score, {"L": score, "R": score}, (), 0.1, None)


def test_groups_are_judged_against_the_normal_exams_only(tmp_path):
    manifest = load_manifest(write_set(tmp_path / "cases", n=8))
    exams = list(manifest.exams)
    # exam 1 a subtle mass, exam 3 a clear calcification cluster, exam 2 a benign mass
    attrs = {1: {"lesion_type": "mass", "subtle": True}, 3: {"lesion_type": "calcification"}}
    for k, a in attrs.items():
        exams[k] = dataclasses.replace(exams[k], attributes=a)
    exams[2] = dataclasses.replace(exams[2], truth="benign", attributes={"benign_finding": "mass"})
    manifest = dataclasses.replace(manifest, exams=tuple(exams))
    assert [group_of(e) for e in exams[:4]] == [
        "normal", "cancer:mass:subtle", "benign:mass", "cancer:calcification",
    ]  # fmt: skip
    # normal exams 0, 4, 6 score 0.2, 0.5, 0.8; the other cancers (5, 7) are ungrouped here too
    scores = {0: 0.2, 1: 0.6, 2: 0.9, 3: 0.5, 4: 0.5, 5: 0.1, 6: 0.8, 7: 0.3}
    groups = by_group(manifest, [_pred(exams[k].exam_id, s) for k, s in scores.items()])
    assert groups["normal"] == {"n": 3, "auc_vs_normal": None}
    assert groups["cancer:mass:subtle"]["auc_vs_normal"] == round(2 / 3, 4)  # above 0.2 and 0.5
    assert groups["benign:mass"]["auc_vs_normal"] == 1.0  # a benign finding taken for a cancer
    assert groups["cancer:calcification"]["auc_vs_normal"] == 0.5  # 1 above, 1 tie (1/2), 1 below
    # exams 5 and 7: write_set's cancers without a lesion type
    assert groups["cancer:None"] == {"n": 2, "auc_vs_normal": round((0 + 1 / 3) / 2, 4)}
    # benign exam 2 (0.9) is left out: cancers above all normals (0.8): none; above all but
    # one (0.5): exam 1 (0.6); above all but two (0.2): exams 1, 3 and 7; all three normals: all
    assert cancers_above_normals(
        manifest, [_pred(exams[k].exam_id, v) for k, v in scores.items()], 3
    ) == [0, 1, 3, 4]
