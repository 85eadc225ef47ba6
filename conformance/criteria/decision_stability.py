"""Rates of clinical responses to perturbations: recall decisions that flip under acquisition
changes (``decision_stability``), and inserted lesions that raise the score (``insertion_response``).

**Why decisions, not score wiggles.** A screening programme acts on the recall decision at the
vendor's declared operating point, not on the score. The ``invariance`` kind with a tolerance
(|change of score| <= 0.05, zero violations) fails a model whose scores move by 0.06 far from the
operating point, where no decision changes, and passes one that moves by 0.04 right at it. So the
tolerance relations (``intensity``, ``noise``, ``resample``) are judged here by the fraction of
exams whose recall decision flips, with an exact (Clopper-Pearson) interval, against a limit; the
per-exam score drift is still measured and reported (largest and median |change|) but decides
nothing. The exact relations (mirror, metadata, encoding, order; caching, determinism) keep zero
violations with Hypothesis shrinking (``invariance``, ``operations``).

**The sample is a pure function of the inputs.** ``exams`` exams are drawn without replacement
from those the model read, and each is paired with one level of the standard's ``levels`` (the
relation's severity, ``Relation.at_level``: dose fraction for ``noise``, presentation gamma for
``intensity``, detector pitch in mm for ``resample``), the levels spread evenly over the exams in
a random order; where the relation's parameters have a noise ``seed``, each exam gets its own. All
draws come from ``ctx.rng(criterion id)`` (the standard's seed and the criterion id), in that
order: exams, level order, seeds. One perturbation per exam makes the flips independent Bernoulli
trials over the exams, which is what the binomial interval needs (every level on every exam would
give correlated pairs).

A flip: the recall decision (score >= operating point) differs before and after, or the model
gave no valid score after the perturbation (its decision is lost; counted against it, as
performance criteria count an unread exam). The evidence lists every flipped exam with both
scores. Then Hypothesis searches the flipped exams with the relation's own strategy (the whole
clinical range, shrinking towards the identity) for a flip and shrinks it to the mildest
perturbation that still flips the decision; that is the report's counterexample, seeded and
profiled as the ``invariance`` kind (``ctx.hypothesis``, ``seed ^ crc32(id)``). When its
``hypothesis_examples`` draws find none (the flip may need the far end of the range), the
counterexample is the sampled flip with the mildest level, marked as not shrunk.

**Lesion insertion is its own kind, not a parameterisation of ``decision_stability``.** Both are
a rate with an exact or score interval over one perturbation per sampled exam, and they share the
sampling, running and shrinking code in this module; but everything a standard states differs:
the population (normal exams only: inserting cancer evidence into a cancer proves nothing), the
perturbation (a lesion *above a conspicuity floor* - kinds, size and contrast ranges - not a
severity grid of the relation), the event (a *response*: the breast that received the lesion
rises and the exam score does not fall, ``Relation.check`` of the directional relation), the
direction of the limit (a lower bound on a response rate, not an upper bound on a flip rate) and
so the pass keys. One kind carrying both would make ``levels``, the event and every pass key mean
two things depending on ``relation``. ``insertion_response`` draws, per sampled normal exam, one
lesion (kind, size on the relation's 0.5 mm grid, contrast on its 0.01 grid, breast, placement
seed) from the standard's ``lesion`` ranges with ``ctx.rng(criterion id)``, applies the relation's
own transform (``harness/perturb/lesion.py``, unchanged) and counts responses. The floor is the
standard's to state and source (standards/README.md); Hypothesis shrinks one non-response to the
smallest, faintest lesion above the floor that the model still does not respond to.
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from conformance.context import EvaluationContext
from conformance.criteria.invariance import _eligible, _relations, _thumbnails
from conformance.outcome import NotEvaluable, result
from conformance.registry import evaluator
from harness import stats
from harness.results import CriterionResult
from harness.standard import CriterionSpec

if TYPE_CHECKING:
    from harness.perturb.relation import Relation

DEFAULT_HYPOTHESIS_EXAMPLES = 20
SEED_BOUND = 2**32  # the relations' seed range (harness.perturb.strategies.SEEDS)
# the level at which a relation is the identity (dose 1, gamma 1); a pitch has none in general
IDENTITY_LEVEL = {"noise": 1.0, "intensity": 1.0}


@dataclasses.dataclass(frozen=True)
class Pair:
    """One sampled exam under its one perturbation, and what the model said."""

    exam_id: str
    params: Any
    condition: str
    score_before: float | None
    score_after: float | None
    status_after: str
    event: bool  # a flip (decision_stability) or a response (insertion_response)
    detail: str
    level: float | None = None

    def row(self, op: float | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "exam_id": self.exam_id,
            "condition": self.condition,
            "parameters": dataclasses.asdict(self.params),
            "score_before": self.score_before,
            "score_after": self.score_after,
            "status_after": self.status_after,
            "detail": self.detail,
        }
        if self.level is not None:
            out["level"] = self.level
        if op is not None:
            out["recalled_before"] = recalled(self.score_before, op)
            out["recalled_after"] = recalled(self.score_after, op)
        return out


def recalled(score: float | None, op: float) -> bool | None:
    """The recall decision at the operating point (score >= it); None without a valid score."""
    if score is None or not math.isfinite(score):
        return None
    return score >= op


def flip(before: Any, after: Any, op: float) -> tuple[bool, str]:
    """Whether the recall decision differs after the perturbation, and in words."""
    b, a = recalled(before.score, op), recalled(after.score, op)
    if b is None:  # only exams read originally are sampled; guard anyway
        return False, "no valid score before the perturbation"
    if a is None:
        return True, f"no valid score after the perturbation ({after.status}): the decision is lost"
    word = {True: "recall", False: "no recall"}
    if a == b:
        return (
            False,
            f"{word[b]} kept ({before.score:.6g} -> {after.score:.6g}, operating point {op:g})",
        )
    return True, (
        f"{word[b]} -> {word[a]} (score {before.score:.6g} -> {after.score:.6g}, "
        f"operating point {op:g})"
    )


def _interval(params: Mapping[str, Any], k: int, n: int) -> tuple[float, float, str]:
    ci = params["ci"]
    level = float(ci["level"])
    fn = stats.clopper_pearson if ci["method"] == "clopper_pearson" else stats.wilson
    lo, hi = fn(k, n, level)
    return lo, hi, f"{ci['method'].replace('_', '-')} {level:.0%} interval"


def _run(
    live: Any,
    rel: Relation[Any],
    draws: Sequence[tuple[str, Any, float | None]],
    judge: Callable[[Any, Any, Any], tuple[bool, str]],
) -> list[Pair]:
    """Each (exam, parameters, level) through the journaled runner, exams of one condition in one
    call; judged against the exam's original prediction."""
    by_condition: dict[str, list[str]] = {}
    transforms: dict[str, Any] = {}
    for exam_id, params, _level in draws:
        cond, transform = rel.condition(params)
        by_condition.setdefault(cond, []).append(exam_id)
        transforms[cond] = transform
    got: dict[tuple[str, str], Any] = {}
    for cond, ids in by_condition.items():
        for exam_id, p in live.run(cond, transforms[cond], ids).items():
            got[(exam_id, cond)] = p
    pairs = []
    for exam_id, params, level in draws:
        cond, _ = rel.condition(params)
        before, after = live.original(exam_id), got[(exam_id, cond)]
        event, detail = judge(before, after, params)
        pairs.append(
            Pair(
                exam_id,
                params,
                cond,
                before.score,
                after.score,
                after.status,
                event,
                detail,
                level,
            )
        )
    return pairs


def _drift(pairs: Sequence[Pair]) -> dict[str, Any]:
    """Per-exam |change of the exam score|: reported, never judged."""
    d = [
        abs(p.score_after - p.score_before)
        for p in pairs
        if p.score_before is not None and p.score_after is not None and math.isfinite(p.score_after)
    ]
    return {
        "max_abs_score_change": max(d) if d else None,
        "median_abs_score_change": float(np.median(d)) if d else None,
        "scored_pairs": len(d),
    }


def _shrink(
    spec: CriterionSpec,
    ctx: EvaluationContext,
    live: Any,
    rel: Relation[Any],
    exam_ids: Sequence[str],
    strategy: Any,
    event_is_failure: Callable[[Any, Any, Any], tuple[bool, str]],
) -> tuple[dict[str, Any] | None, int]:
    """Hypothesis over (exam among ``exam_ids``, parameters from ``strategy``): the smallest
    perturbation for which ``event_is_failure`` holds, or None when none was drawn; and how many
    examples ran."""
    from hypothesis import given, seed
    from hypothesis import strategies as st

    examples = int(spec.params.get("hypothesis_examples", DEFAULT_HYPOTHESIS_EXAMPLES))
    if examples <= 0 or not exam_ids:
        return None, 0
    failures: list[dict[str, Any]] = []
    runs = [0]
    database_dir = live.journal.path.parent / ".hypothesis" if live.journal is not None else None

    @seed(ctx.standard.seed ^ zlib.crc32(spec.id.encode("utf-8")))
    @ctx.hypothesis.settings(examples, database_dir)
    @given(exam_id=st.sampled_from(sorted(exam_ids)), params=strategy)
    def holds(exam_id: str, params: Any) -> None:
        runs[0] += 1
        cond, transform = rel.condition(params)
        after = live.run(cond, transform, [exam_id])[exam_id]
        before = live.original(exam_id)
        bad, detail = event_is_failure(before, after, params)
        if bad:
            failures.append(
                Pair(
                    exam_id, params, cond, before.score, after.score, after.status, True, detail
                ).row()
            )
            raise AssertionError(detail)

    try:
        ctx.hypothesis.run(holds)
    except AssertionError:
        return dict(failures[-1]), runs[0]  # Hypothesis replays the shrunk example last
    return None, runs[0]


def _counterexample(
    ctx: EvaluationContext,
    rel: Relation[Any],
    found: dict[str, Any] | None,
    fallback: Pair | None,
    op: float | None,
) -> dict[str, Any] | None:
    if found is not None:
        ce = found | {"shrunk": True}
    elif fallback is not None:
        ce = fallback.row() | {"shrunk": False}
    else:
        return None
    if op is not None:
        ce["recalled_before"] = recalled(ce["score_before"], op)
        ce["recalled_after"] = recalled(ce["score_after"], op)
    ce["relation"] = rel.name
    ce["thumbnails"] = _thumbnails(
        ctx, ce["exam_id"], rel.transform(rel.params_type(**ce["parameters"]))
    )
    return ce


@evaluator(
    "decision_stability",
    family="invariance",
    section="Decision stability under acquisition changes",
    method=(
        "A fixed, seeded sample of exams, each re-read once under a clinical acquisition change "
        "(lower dose, display curve, detector pitch); the share whose recall decision at the "
        "declared operating point flips, with an exact (Clopper-Pearson) interval. One flip is "
        "shrunk by Hypothesis to the mildest change that still flips it."
    ),
    pass_keys=("max_flip_fraction", "flip_ci_upper_lte"),
    needs_live=True,
    replayable=True,
    searches=True,
)
def decision_stability(spec: CriterionSpec, ctx: EvaluationContext) -> CriterionResult:
    live = ctx.require_live(f"the {spec.params['relation']} relation")
    rel = _relations()[spec.params["relation"]]
    if rel.at_level is None:
        raise NotEvaluable(f"relation {rel.name} has no severity levels")
    op = float(ctx.operating_point)
    ids = _eligible(ctx, rel)
    if not ids:
        raise NotEvaluable("no exam the model read successfully is eligible for this relation")
    rng = ctx.rng(spec.id)
    n = min(int(spec.params["exams"]), len(ids))
    exams = sorted(rng.choice(ids, size=n, replace=False).tolist())
    levels = [float(v) for v in spec.params["levels"]]
    for level in levels:
        try:
            rel.at_level(level)
        except ValueError as exc:  # e.g. a dose above 1: the standard asks for no such change
            raise NotEvaluable(f"levels: {level:g} is not a {rel.name} level: {exc}") from exc
    order = rng.permutation(np.resize(np.arange(len(levels)), n))
    draws = []
    for exam_id, li in zip(exams, order, strict=True):
        params = rel.at_level(levels[int(li)])
        if any(f.name == "seed" for f in dataclasses.fields(params)):
            params = dataclasses.replace(params, seed=int(rng.integers(SEED_BOUND)))
        draws.append((exam_id, params, levels[int(li)]))

    def judge(before: Any, after: Any, _params: Any) -> tuple[bool, str]:
        return flip(before, after, op)

    pairs = _run(live, rel, draws, judge)
    flips = [p for p in pairs if p.event]
    k = len(flips)
    lo, hi, how = _interval(spec.params, k, n)
    drift = _drift(pairs)
    found, ran = (
        _shrink(spec, ctx, live, rel, sorted({p.exam_id for p in flips}), rel.strategy, judge)
        if flips
        else (None, 0)
    )
    # without a shrunk flip: the sampled flip with the mildest level (closest to the identity)
    identity = IDENTITY_LEVEL.get(rel.name)
    mildest = min(
        flips,
        key=lambda p: (
            abs((p.level or 0.0) - identity) if identity is not None else 0.0,
            p.exam_id,
        ),
        default=None,
    )
    ce = _counterexample(ctx, rel, found, mildest, op)
    measured = {
        "value": k / n,
        "ci": (lo, hi),
        "flip_fraction": k / n,
        "flip_ci_upper": hi,
        "flip_ci_lower": lo,
        "flips": k,
    } | {key: v for key, v in drift.items() if key != "scored_pairs"}
    grid = ", ".join(f"{v:g}" for v in levels)
    drift_text = (
        f"largest exam-score change {drift['max_abs_score_change']:.3g}, median "
        f"{drift['median_abs_score_change']:.3g}, reported only"
        if drift["max_abs_score_change"] is not None
        else "no score to compare"
    )
    summary = (
        f"Under {rel.name} (levels {grid}) the recall decision at the operating point {op:g} "
        f"flipped on {k} of {n} sampled exams ({k / n:.1%}; {how} {lo:.1%}-{hi:.1%}; "
        f"{drift_text})."
    )
    if ce is not None:
        summary += (
            f" {'Smallest flip found by Hypothesis' if ce['shrunk'] else 'Mildest sampled flip'}: "
            f"exam {ce['exam_id']} under {ce['condition']}, {ce['detail']}."
        )
    evidence = {
        "relation": rel.name,
        "relation_kind": rel.kind,
        "operating_point": op,
        "levels": levels,
        "exams": n,
        "by_level": [
            {
                "level": lv,
                "n": sum(p.level == lv for p in pairs),
                "flips": sum(p.level == lv and p.event for p in pairs),
            }
            for lv in levels
        ],
        "flipped": [p.row(op) for p in flips],
        "pairs": [p.row(op) for p in pairs],
        "score_drift": drift,
        "counterexample": ce,
        "examples": ran,
        "method": (
            f"{n} exams sampled from the standard's seed and the criterion id, one level each; "
            f"recall = score >= {op:g}; {how}; Hypothesis shrinking of one flip ({ran} examples)"
        ),
    }
    return result(spec, measured, n, summary, evidence)


def _lesion_strategy(lesion: Mapping[str, Any]) -> Any:
    """The relation's grid (0.5 mm, 0.01 contrast) restricted to the standard's floor and ranges;
    shrinks towards the first kind, the smallest size and the faintest contrast."""
    from hypothesis import strategies as st

    from harness.perturb.lesion import LesionParams
    from harness.perturb.strategies import SEEDS

    (s_lo, s_hi), (c_lo, c_hi) = _lesion_grid(lesion)
    return st.builds(
        LesionParams,
        kind=st.sampled_from(tuple(lesion["kinds"])),
        size_mm=st.integers(0, s_hi - s_lo).map(lambda k: (s_lo + k) / 2),
        contrast=st.integers(0, c_hi - c_lo).map(lambda k: round((c_lo + k) / 100, 2)),
        laterality=st.sampled_from(("L", "R")),
        seed=SEEDS,
    )


def _lesion_grid(lesion: Mapping[str, Any]) -> tuple[tuple[int, int], tuple[int, int]]:
    """Size in half millimetres and contrast in hundredths, both ends included."""
    s_lo, s_hi = (float(v) for v in lesion["size_mm"])
    c_lo, c_hi = (float(v) for v in lesion["contrast"])
    sizes = (math.ceil(s_lo * 2 - 1e-9), math.floor(s_hi * 2 + 1e-9))
    contrasts = (math.ceil(c_lo * 100 - 1e-9), math.floor(c_hi * 100 + 1e-9))
    if sizes[0] > sizes[1] or contrasts[0] > contrasts[1]:
        raise NotEvaluable("lesion: empty size or contrast range (give [lowest, highest])")
    return sizes, contrasts


@evaluator(
    "insertion_response",
    family="invariance",
    section="Response to inserted lesions",
    method=(
        "A fixed, seeded sample of normal exams, each with one synthetic lesion above a stated "
        "conspicuity floor inserted into one breast; the share where that breast's score rises "
        "and the exam score does not fall, with a Wilson or exact interval. One non-response is "
        "shrunk by Hypothesis to the smallest, faintest lesion that the model still ignores."
    ),
    pass_keys=("min_response_fraction", "response_ci_lower_gte"),
    needs_live=True,
    replayable=True,
    searches=True,
)
def insertion_response(spec: CriterionSpec, ctx: EvaluationContext) -> CriterionResult:
    from harness.perturb.lesion import LesionParams

    live = ctx.require_live("the lesion_insertion relation")
    rel = _relations()["lesion_insertion"]
    lesion = spec.params["lesion"]
    (s_lo, s_hi), (c_lo, c_hi) = _lesion_grid(lesion)
    kinds = tuple(lesion["kinds"])
    ids = _eligible(ctx, rel)  # normal exams the model read
    if not ids:
        raise NotEvaluable("no normal exam the model read successfully")
    rng = ctx.rng(spec.id)
    n = min(int(spec.params["exams"]), len(ids))
    exams = sorted(rng.choice(ids, size=n, replace=False).tolist())
    draws = []
    for exam_id in exams:
        params = LesionParams(
            kind=kinds[int(rng.integers(len(kinds)))],
            size_mm=int(rng.integers(s_lo, s_hi + 1)) / 2,
            contrast=round(int(rng.integers(c_lo, c_hi + 1)) / 100, 2),
            laterality=("L", "R")[int(rng.integers(2))],
            seed=int(rng.integers(SEED_BOUND)),
        )
        draws.append((exam_id, params, None))

    def judge(before: Any, after: Any, params: Any) -> tuple[bool, str]:
        return rel.check(before, after, 0.0, params)

    def ignored(before: Any, after: Any, params: Any) -> tuple[bool, str]:
        ok, detail = judge(before, after, params)
        return not ok, detail

    pairs = _run(live, rel, draws, judge)
    k = sum(p.event for p in pairs)
    misses = [p for p in pairs if not p.event]
    lo, hi, how = _interval(spec.params, k, n)
    op = float(ctx.operating_point)
    newly_recalled = sum(
        recalled(p.score_before, op) is False and recalled(p.score_after, op) is True for p in pairs
    )
    found, ran = (
        _shrink(
            spec,
            ctx,
            live,
            rel,
            sorted({p.exam_id for p in misses}),
            _lesion_strategy(lesion),
            ignored,
        )
        if misses
        else (None, 0)
    )
    faintest = min(
        misses, key=lambda p: (p.params.contrast, p.params.size_mm, p.exam_id), default=None
    )
    ce = _counterexample(ctx, rel, found, faintest, None)
    drift = _drift(pairs)
    measured = {
        "value": k / n,
        "ci": (lo, hi),
        "response_fraction": k / n,
        "response_ci_lower": lo,
        "response_ci_upper": hi,
        "responses": k,
        "newly_recalled": newly_recalled,
    }
    floor = (
        f"{' or '.join(kinds)} {s_lo / 2:g}-{s_hi / 2:g} mm, peak contrast "
        f"{c_lo / 100:g}-{c_hi / 100:g}"
    )
    summary = (
        f"A lesion ({floor}) inserted into one breast of {n} sampled normal exams raised that "
        f"breast's score without lowering the exam score in {k} ({k / n:.1%}; {how} "
        f"{lo:.1%}-{hi:.1%}); {newly_recalled} of the exams became recalls at the operating point."
    )
    if ce is not None:
        summary += (
            f" {'Smallest lesion ignored, found by Hypothesis' if ce['shrunk'] else 'Faintest sampled lesion ignored'}: "
            f"exam {ce['exam_id']} under {ce['condition']}, {ce['detail']}."
        )
    evidence = {
        "relation": rel.name,
        "relation_kind": rel.kind,
        "lesion": {
            "kinds": list(kinds),
            "size_mm": [s_lo / 2, s_hi / 2],
            "contrast": [c_lo / 100, c_hi / 100],
        },
        "exams": n,
        "operating_point": op,
        "ignored": [p.row(op) for p in misses],
        "pairs": [p.row(op) for p in pairs],
        "score_drift": drift,
        "counterexample": ce,
        "examples": ran,
        "method": (
            f"{n} normal exams sampled from the standard's seed and the criterion id, one lesion "
            f"each; response = that breast's score rises and the exam score does not fall; {how}; "
            f"Hypothesis shrinking of one non-response ({ran} examples)"
        ),
    }
    return result(spec, measured, n, summary, evidence)
