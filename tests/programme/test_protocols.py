"""Protocols replayed on the hand-made set: reads, arbitrations, recalls and detections by hand."""

from __future__ import annotations

import numpy as np
import pytest
from handmade import PREV, handmade, rate

from harness.errors import UsageError
from harness.programme.outcomes import programme_outcomes
from harness.programme.protocols import (
    ProtocolSpec,
    replay,
    replay_loop,
    threshold_for_share,
)
from harness.stats.reweight import screening_weights

SS = handmade()
W = screening_weights(SS.labels, PREV)
DR = ProtocolSpec("double_reading", "double_reading")
SECOND = ProtocolSpec(
    "second", "ai_second_reader", {"threshold": {"score": 0.65}, "arbitration": "consensus"}
)
TRIAGE = ProtocolSpec("triage", "ai_triage", {"band": {"score": 0.5}, "single_reader": "reader1"})
RULE_OUT = ProtocolSpec(
    "rule_out", "ai_rule_out", {"band": {"score": 0.5}, "safety_net": {"score": 0.7}}
)
ALL = (DR, SECOND, TRIAGE, RULE_OUT)


def outcomes():
    paths = [replay(s, SS, W) for s in ALL]
    return programme_outcomes(paths, SS, W, np.random.default_rng(3), n_boot=500).measures


def test_double_reading_is_the_recorded_programme():
    p = replay(DR, SS, W)
    assert p.reads.tolist() == [2] * 10
    # arbitration where the readers disagree: C2, C3, N3, N4
    assert p.arbitrations.tolist() == [0, 1, 1, 0, 0, 0, 1, 1, 0, 0]
    assert p.recall.tolist() == [1, 1, 0, 0, 0, 0, 0, 1, 0, 1]


def test_ai_second_reader_uses_recorded_arbitration_and_bounds_new_discordances():
    p = replay(SECOND, SS, W)
    # AI positive (>= 0.65): C1 C2 C4 N5. Against reader 1:
    # C4 (0 vs AI 1, r2 0) new; N3 (1 vs 0, r2 0 = AI) old -> consensus 0;
    # N5 (0 vs 1, r2 0) new; N6 (1 vs 0, r2 1) new -> consensus 1
    assert p.arbitrations.tolist() == [0, 0, 0, 1, 0, 0, 1, 0, 1, 1]
    assert p.reads.tolist() == [1] * 10
    assert p.recall.tolist() == [1, 1, 0, 0, 0, 0, 0, 0, 0, 1]
    assert p.recall_low.tolist() == [1, 1, 0, 0, 0, 0, 0, 0, 0, 0]  # N6 not recalled
    assert p.recall_high.tolist() == [1, 1, 0, 1, 0, 0, 0, 0, 1, 1]  # C4 and N5 recalled
    spec = ProtocolSpec("s", "ai_second_reader", {**SECOND.params, "arbitration": "recall_all"})
    assert replay(spec, SS, W).recall.tolist() == p.recall_high.tolist()


def test_ai_triage_single_reads_the_low_band_with_the_named_reader():
    p = replay(TRIAGE, SS, W)
    # band (< 0.5): C3 N1 N2 N4 N6, single read by reader 1
    assert p.in_band.tolist() == [0, 0, 1, 0, 1, 1, 0, 1, 0, 1]
    assert p.reads.tolist() == [2, 2, 1, 2, 1, 1, 2, 1, 2, 1]
    assert p.arbitrations.tolist() == [0, 1, 0, 0, 0, 0, 1, 0, 0, 0]
    assert p.recall.tolist() == [1, 1, 0, 0, 0, 0, 0, 0, 0, 1]
    r2 = replay(
        ProtocolSpec("t", "ai_triage", {**TRIAGE.params, "single_reader": "reader2"}), SS, W
    )
    assert r2.recall.tolist() == [1, 1, 1, 0, 0, 0, 0, 1, 0, 1]


def test_ai_rule_out_skips_the_band_and_the_safety_net_adds_recalls():
    p = replay(RULE_OUT, SS, W)
    assert p.reads.tolist() == [2, 2, 0, 2, 0, 0, 2, 0, 2, 0]
    assert p.recall.tolist() == [1, 1, 0, 1, 0, 0, 0, 0, 1, 0]
    assert p.ai_only_recall.tolist() == [0, 0, 0, 1, 0, 0, 0, 0, 1, 0]


def test_measures_are_the_hand_computed_population_rates():
    m = outcomes()
    approx = pytest.approx
    dr, sec, tri, ro = m["double_reading"], m["second"], m["triage"], m["rule_out"]
    assert dr["reads_per_1000"]["value"] == approx(2000)
    assert dr["arbitrations_per_1000"]["value"] == approx(1000 * rate(2, 2))
    assert dr["recall_rate"]["value"] == approx(rate(2, 2))
    assert dr["cdr_per_1000"]["value"] == approx(1000 * rate(2, 0))
    assert dr["ppv"]["value"] == approx(rate(2, 0) / rate(2, 2))
    assert sec["reads_per_1000"]["value"] == approx(1000)
    assert sec["arbitrations_per_1000"]["value"] == approx(1000 * rate(1, 3))
    assert sec["recall_rate"]["value"] == approx(rate(2, 1))
    assert sec["recall_rate_bounds"] == approx([rate(2, 0), rate(3, 2)])
    assert sec["cdr_per_1000_bounds"] == approx([1000 * rate(2, 0), 1000 * rate(3, 0)])
    assert tri["reads_per_1000"]["value"] == approx(
        1000 * (P_ := 0.006) * 7 / 4 + 1000 * (1 - P_) * 8 / 6
    )
    assert tri["arbitrations_per_1000"]["value"] == approx(1000 * rate(1, 1))
    assert tri["recall_rate"]["value"] == approx(rate(2, 1))
    assert tri["in_band_share"]["value"] == approx(rate(1, 4))
    assert tri["cancers_in_band"] == {"count": 1, "of": 4, "share": 0.25}
    assert ro["reads_per_1000"]["value"] == approx(1000 * (0.006 * 6 / 4 + 0.994 * 4 / 6))
    assert ro["recall_rate"]["value"] == approx(rate(3, 1))
    assert ro["cdr_per_1000"]["value"] == approx(1000 * rate(3, 0))
    assert ro["found_vs_double_reading_per_1000"]["value"] == approx(1000 * rate(1, 0))
    assert ro["missed_vs_double_reading_per_1000"]["value"] == approx(0)
    assert ro["interval_cancers_flagged"] == {"count": 1, "of": 1, "share": 1.0}
    assert ro["ai_only_recalls_per_1000"]["value"] == approx(1000 * rate(1, 1))
    assert ro["reads_removed_share"]["value"] == approx(1 - ro["reads_per_1000"]["value"] / 2000)
    assert dr["interval_cancers_flagged"]["count"] == 0
    for prot in m.values():
        lo, hi = prot["recall_rate"]["ci"]
        assert lo <= prot["recall_rate"]["value"] <= hi


def test_the_vectorised_replay_matches_the_per_exam_loop_on_a_random_set():
    rng = np.random.default_rng(5)
    n = 3000
    y = rng.random(n) < 0.2
    r1 = np.where(y, rng.random(n) < 0.7, rng.random(n) < 0.03)
    r2 = np.where(y, rng.random(n) < 0.7, rng.random(n) < 0.03)
    cons = np.where(r1 != r2, rng.random(n) < 0.5, r1)
    s = np.round(np.clip(rng.normal(y * 1.5, 1), -3, 4), 2)
    s[rng.random(n) < 0.02] = np.nan
    ss = type(SS).from_arrays(y, r1, r2, cons, s, interval=y & (rng.random(n) < 0.3))
    w = screening_weights(ss.labels, PREV)
    specs = [
        DR,
        ProtocolSpec("a", "ai_second_reader", {"arbitration": "recall_all"}),
        ProtocolSpec("b", "ai_second_reader", {"replace": "reader1", "arbitration": "recall_none"}),
        ProtocolSpec("c", "ai_second_reader", {"threshold": {"quantile": 0.9}}),
        ProtocolSpec("d", "ai_triage", {"band": {"quantile": 0.6}, "single_reader": "reader2"}),
        ProtocolSpec("e", "ai_rule_out", {"band": {"quantile": 0.3}, "safety_net": {"score": 2.0}}),
    ]
    specs.append(
        ProtocolSpec("f", "ai_triage", {"band": {"quantile": 0.5}, "single_reader": "random"})
    )
    for spec in specs:
        p = replay(spec, ss, w, rng=np.random.default_rng(17))
        loop = replay_loop(spec, ss, p.thresholds, rng=np.random.default_rng(17))
        assert p.reads.tolist() == loop["reads"], spec.name
        assert p.arbitrations.tolist() == loop["arbitrations"], spec.name
        assert p.recall.tolist() == loop["recall"], spec.name


def test_thresholds_resolve_against_the_population():
    # the lowest threshold with at least 50 % of the population below: controls dominate
    t = threshold_for_share(SS.scores, W, 0.5)
    share = W[SS.scores < t].sum() / W.sum()
    assert share >= 0.5
    assert W[SS.scores < SS.scores[SS.scores < t].max()].sum() / W.sum() < 0.5
    # match reader 2's population positive rate: AI positive rate not above it
    p = replay(ProtocolSpec("m", "ai_second_reader", {}), SS, W)
    ai_rate = W[SS.scores >= p.thresholds["threshold"]].sum() / W.sum()
    assert ai_rate <= W[SS.reader2].sum() / W.sum() + 1e-12


def test_bad_protocol_parameters_are_usage_errors():
    with pytest.raises(UsageError, match="operating point"):
        replay(ProtocolSpec("x", "ai_triage", {"band": {"operating_point": True}}), SS, W)
    with pytest.raises(UsageError, match="not one of"):
        replay(
            ProtocolSpec("x", "ai_triage", {"band": {"score": 1}, "single_reader": "senior"}), SS, W
        )
    with pytest.raises(UsageError, match="not one of"):
        replay(ProtocolSpec("x", "magic"), SS, W)
