"""Screening protocols replayed exam by exam on the recorded reads and the AI's scores (vectorised).

Every protocol turns a :class:`~harness.programme.screening.ScreeningSet` into a
:class:`Pathway`: per exam the human reads, whether it went to arbitration and whether the woman
was recalled. Nothing is simulated that the reference set does not record, with one stated
exception, the arbitration of a discordance the two original readers never had (below).

``double_reading``
    The recorded programme: two independent reads; arbitration when they disagree; the recall is
    the recorded ``consensus``.
``ai_second_reader``
    The AI replaces one reader (``replace``: reader2 by default). AI positive = score >=
    threshold. Concordant with the remaining reader: that decision, no arbitration. Discordant:
    arbitration. When the AI agrees with the replaced reader the disagreement is the one the
    readers had, and the recorded consensus is its outcome. When the AI disagrees with two
    readers who agreed (a *new* discordance) no arbitration was ever recorded; ``arbitration``
    states the model: ``consensus`` (the arbitrator sides with the two readers' recorded
    decision), ``recall_all`` (every new discordance recalled: the upper bound on recalls) or
    ``recall_none`` (none recalled: the lower bound). The pathway always carries both bounds
    (``recall_low``, ``recall_high``), so any arbitrator lies between them.
``ai_triage``
    Exams scoring below the band threshold are read once, by ``single_reader`` (reader1,
    reader2, or ``random``: one of the two per exam, seeded), whose recorded read decides; the
    rest are double read as recorded.
``ai_rule_out``
    Exams below the band are not read and not recalled; the rest are double read as recorded.
    An optional safety net (``safety_net``, a threshold) recalls, without a human read, any exam
    scoring at or above it that double reading did not recall.

Thresholds (``threshold`` / ``band`` / ``safety_net``) are one of: ``{quantile: q}`` - the
smallest set of lowest-scoring screens holding at least the share q of the *screening
population* (the set reweighted to the standard's prevalence, :func:`screening_weights`);
``{score: s}`` - a vendor score; ``{operating_point: true}`` - the vendor's declared operating
point; ``{match_reader: NAME}`` (second reader only) - the lowest threshold whose population
positive rate does not exceed that reader's. An exam the AI could not read is in no band, never
AI-positive, and follows double reading.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from harness.errors import UsageError
from harness.programme.screening import ScreeningSet

PROTOCOLS = ("double_reading", "ai_second_reader", "ai_triage", "ai_rule_out")
ARBITRATION_MODELS = ("consensus", "recall_all", "recall_none")
SINGLE_READERS = ("reader1", "reader2", "random")
BASELINE = "double_reading"


@dataclass(frozen=True)
class ProtocolSpec:
    """One protocol to replay: a label, the protocol and its parameters."""

    name: str
    protocol: str
    params: Mapping[str, Any] = field(default_factory=dict)

    @property
    def uses_ai(self) -> bool:
        return self.protocol != BASELINE


@dataclass(frozen=True)
class Pathway:
    """Per-exam outcome of one protocol (arrays of length N)."""

    spec: ProtocolSpec
    reads: NDArray[np.int8]  # human screen reads of the exam: 0, 1 or 2
    arbitrations: NDArray[np.bool_]  # went to arbitration
    recall: NDArray[np.bool_]  # recalled, under the stated arbitration model
    recall_low: NDArray[np.bool_]  # the bounds over every arbitration of new discordances
    recall_high: NDArray[np.bool_]
    in_band: NDArray[np.bool_]  # single-read (triage) or not read (rule-out)
    ai_only_recall: NDArray[np.bool_]  # recalled by the safety net without a human read
    thresholds: Mapping[str, float]  # the resolved score thresholds


def population_share_below(
    scores: NDArray[np.float64], weights: NDArray[np.float64], thresholds: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Weighted share of all screens with a (readable) score strictly below each threshold."""
    ok = np.isfinite(scores)
    order = np.argsort(scores[ok], kind="stable")
    s, w = scores[ok][order], weights[ok][order]
    cum = np.concatenate([[0.0], np.cumsum(w)])
    return cum[np.searchsorted(s, thresholds, side="left")] / weights.sum()


def thresholds_for_shares(
    scores: NDArray[np.float64], weights: NDArray[np.float64], shares: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Per share: the lowest threshold t with a population share of scores below t of at least it.

    Candidates are the distinct readable scores and +inf (every readable exam below); a share
    no threshold reaches (unreadable exams are never below) gives +inf.
    """
    q = np.asarray(shares, dtype=np.float64)
    if np.any((q < 0) | (q > 1)) or np.any(np.isnan(q)):
        raise UsageError(f"a score quantile must be between 0 and 1, got {q.tolist()!r}")
    cand = np.concatenate([np.unique(scores[np.isfinite(scores)]), [np.inf]])
    below = population_share_below(scores, weights, cand)  # nondecreasing
    idx = np.searchsorted(below, q - 1e-12, side="left")
    return np.where(idx < cand.size, cand[np.minimum(idx, cand.size - 1)], np.inf)


def threshold_for_share(
    scores: NDArray[np.float64], weights: NDArray[np.float64], share: float
) -> float:
    """:func:`thresholds_for_shares` for one share."""
    return float(thresholds_for_shares(scores, weights, np.array([float(share)]))[0])


def resolve_threshold(
    spec: Mapping[str, Any],
    where: str,
    ss: ScreeningSet,
    weights: NDArray[np.float64],
    operating_point: float | None,
) -> float:
    """A threshold specification (module docstring) as a score."""
    if not isinstance(spec, Mapping) or len(spec) != 1:
        raise UsageError(
            f"{where}: give exactly one of quantile, score, operating_point, match_reader"
        )
    ((kind, value),) = spec.items()
    if kind == "quantile":
        return threshold_for_share(ss.scores, weights, float(value))
    if kind == "score":
        return float(value)
    if kind == "operating_point":
        if operating_point is None:
            raise UsageError(
                f"{where}: uses the vendor's operating point; give --operating-point (or a bundle)"
            )
        return float(operating_point)
    if kind == "match_reader":
        if value not in ("reader1", "reader2", "consensus"):
            raise UsageError(
                f"{where}.match_reader: {value!r} is not reader1, reader2 or consensus"
            )
        rate = float(np.sum(weights * getattr(ss, value)) / weights.sum())
        return threshold_for_share(ss.scores, weights, 1.0 - rate)
    raise UsageError(
        f"{where}: {kind!r} is not a threshold; use quantile, score, operating_point or match_reader"
    )


def _double(ss: ScreeningSet) -> tuple[NDArray[np.int8], NDArray[np.bool_], NDArray[np.bool_]]:
    reads = np.full(ss.n, 2, dtype=np.int8)
    return reads, ss.reader1 != ss.reader2, ss.consensus.copy()


def replay(
    spec: ProtocolSpec,
    ss: ScreeningSet,
    weights: NDArray[np.float64],
    operating_point: float | None = None,
    rng: np.random.Generator | None = None,
) -> Pathway:
    """Replay every exam of ``ss`` through one protocol (see the module docstring)."""
    p = spec.params
    where = f"protocols.{spec.name}"
    reads, arb, recall = _double(ss)
    none = np.zeros(ss.n, dtype=bool)
    in_band, ai_only = none.copy(), none.copy()
    low = high = None
    thr: dict[str, float] = {}
    if spec.protocol == BASELINE:
        pass
    elif spec.protocol == "ai_second_reader":
        replaced = p.get("replace", "reader2")
        if replaced not in ("reader1", "reader2"):
            raise UsageError(f"{where}.replace: {replaced!r} is not reader1 or reader2")
        kept = "reader1" if replaced == "reader2" else "reader2"
        t = resolve_threshold(
            p.get("threshold", {"match_reader": replaced}),
            f"{where}.threshold",
            ss,
            weights,
            operating_point,
        )
        thr["threshold"] = t
        human, other = getattr(ss, kept), getattr(ss, replaced)
        ai = ss.readable & (ss.scores >= t)
        ai_read = ss.readable
        disc = ai_read & (ai != human)
        old = disc & (ai == other)  # the readers' own disagreement: recorded consensus
        new = disc & ~old  # AI against two agreeing readers: never arbitrated
        base = np.where(ai_read, human, recall)  # concordant: the shared decision
        base = np.where(old, ss.consensus, base)
        model = p.get("arbitration", "consensus")
        if model not in ARBITRATION_MODELS:
            raise UsageError(
                f"{where}.arbitration: {model!r} is not one of {', '.join(ARBITRATION_MODELS)}"
            )
        low = np.where(new, False, base)
        high = np.where(new, True, base)
        recall = {
            "consensus": np.where(new, ss.consensus, base),
            "recall_all": high,
            "recall_none": low,
        }[model]
        arb = np.where(ai_read, disc, arb)
        # the AI's read is not a human read: the kept reader only (double reading if unread)
        reads = np.where(ai_read, 1, 2).astype(np.int8)
    elif spec.protocol in ("ai_triage", "ai_rule_out"):
        t = resolve_threshold(p.get("band", {}), f"{where}.band", ss, weights, operating_point)
        thr["band"] = t
        in_band = ss.readable & (ss.scores < t)
        if spec.protocol == "ai_triage":
            who = p.get("single_reader", "reader1")
            if who not in SINGLE_READERS:
                raise UsageError(
                    f"{where}.single_reader: {who!r} is not one of {', '.join(SINGLE_READERS)}"
                )
            single = single_reads(ss, who, rng)
            reads = np.where(in_band, 1, reads).astype(np.int8)
            arb = arb & ~in_band
            recall = np.where(in_band, single, recall)
        else:
            reads = np.where(in_band, 0, reads).astype(np.int8)
            arb = arb & ~in_band
            recall = recall & ~in_band
            net = p.get("safety_net")
            if net is not None:
                tn = resolve_threshold(net, f"{where}.safety_net", ss, weights, operating_point)
                thr["safety_net"] = tn
                ai_only = ss.readable & (ss.scores >= tn) & ~recall
                recall = recall | ai_only
    else:
        raise UsageError(
            f"{where}.protocol: {spec.protocol!r} is not one of {', '.join(PROTOCOLS)}"
        )
    recall = np.asarray(recall, dtype=bool)
    return Pathway(
        spec=spec,
        reads=reads,
        arbitrations=np.asarray(arb, dtype=bool),
        recall=recall,
        recall_low=recall if low is None else np.asarray(low, dtype=bool),
        recall_high=recall if high is None else np.asarray(high, dtype=bool),
        in_band=in_band,
        ai_only_recall=ai_only,
        thresholds=thr,
    )


def reader1_reads_alone(n: int, rng: np.random.Generator | None) -> NDArray[np.bool_]:
    """``single_reader: random``: per exam, whether reader 1 (else reader 2) is the single
    reader; one seeded coin per exam, in exam order (default seed 0)."""
    gen = rng if rng is not None else np.random.default_rng(0)
    return gen.random(n) < 0.5


def single_reads(ss: ScreeningSet, who: str, rng: np.random.Generator | None) -> NDArray[np.bool_]:
    """The recorded read of each exam's single reader (``reader1``, ``reader2`` or ``random``)."""
    if who == "random":
        return np.where(reader1_reads_alone(ss.n, rng), ss.reader1, ss.reader2)
    return getattr(ss, who)


def replay_loop(
    spec: ProtocolSpec,
    ss: ScreeningSet,
    thresholds: Mapping[str, float],
    rng: np.random.Generator | None = None,
) -> dict[str, list[Any]]:
    """Reference: the same rules one exam at a time (for tests and the benchmark's baseline).

    Takes resolved thresholds (``Pathway.thresholds``) and, for ``single_reader: random``, a
    generator in the state :func:`replay` got. Returns per-exam lists of reads, arbitration,
    recall (the stated model).
    """
    p = spec.params
    out: dict[str, list[Any]] = {"reads": [], "arbitrations": [], "recall": []}
    coin = reader1_reads_alone(ss.n, rng).tolist() if p.get("single_reader") == "random" else None
    for i in range(ss.n):
        r1, r2, cons = bool(ss.reader1[i]), bool(ss.reader2[i]), bool(ss.consensus[i])
        s, ok = float(ss.scores[i]), bool(ss.readable[i])
        reads, arb, rec = 2, r1 != r2, cons
        if spec.protocol == "ai_second_reader" and ok:
            replaced = p.get("replace", "reader2")
            human, other = (r1, r2) if replaced == "reader2" else (r2, r1)
            ai = s >= thresholds["threshold"]
            reads, arb = 1, ai != human
            if ai == human:
                rec = human
            elif ai == other:
                rec = cons
            else:
                rec = {"consensus": cons, "recall_all": True, "recall_none": False}[
                    p.get("arbitration", "consensus")
                ]
        elif spec.protocol == "ai_triage" and ok and s < thresholds["band"]:
            reads, arb = 1, False
            who = p.get("single_reader", "reader1")
            rec = r1 if (coin[i] if coin is not None else who == "reader1") else r2
        elif spec.protocol == "ai_rule_out":
            if ok and s < thresholds["band"]:
                reads, arb, rec = 0, False, False
            elif ok and "safety_net" in thresholds and s >= thresholds["safety_net"]:
                rec = True
        out["reads"].append(reads)
        out["arbitrations"].append(arb)
        out["recall"].append(rec)
    return out
