"""Power and set size of a standard (`mammocert standard power`).

Before a reference set is curated, a standard's authors need to know whether its criteria can
tell a good model from a poor one on a set of a given composition. This simulates a model with a
stated true performance on sets of that composition, judges each simulated set with the suite's
own evaluators (``conformance.engine.judge``, the verdict code itself), and reports per criterion
the probability to pass, the expected half-width of the interval it judges, and the smallest set
(the composition scaled) on which a model at the target passes with the chosen probability while
a model at the standard's limits (the "below" model) does not surely pass more than
``false_pass`` of the time. A bound on an interval keeps a model at its limit to about the
interval's one-sided level at every size; a bound on a point estimate passes such a model about
half the time at any size, so no set meets it.

The simulated model (``Model``): exam scores are binormal on a latent scale: non-cancers
N(0, 1), cancers N(mu, sigma^2), the score is Phi(x - t) so that the operating point 0.5 has the
stated specificity (t = Phi^-1(spec)) and sensitivity, and mu, sigma give the stated AUC. The
exam's score is its cancer's breast's (or one breast's); the other breast scores as a non-cancer
exam, so the breast-level AUC is the stated AUC too. Readers recall on a latent
``u`` with their own sensitivity and specificity (every reader on the same ``u``, so the first
reader's recalls are nested in double reading's); the model's latent is
``rho * u + sqrt(1 - rho^2) * e``, ``rho`` the reader correlation. From a set (``--cases``,
``--recipe``) the reads are the set's own and ``u`` is drawn given the comparator's decision.
Subgroups: the model performs the same in every group, so a subgroup criterion's probability is
that of a fair model passing (and of the groups being large enough to be assessed).

A perfect model (AUC, sensitivity and specificity 1) is the deterministic case that
``standard bar`` tabulates: its probability to pass is 0 or 1, as bar's verdict for every cancer
found and no false positive (tested).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import brentq
from scipy.stats import norm

from conformance.criteria import KINDS
from conformance.engine import judge
from harness.cases.manifest import Exam, Lesion, Manifest
from harness.errors import UsageError
from harness.passif import PASS_KEYS
from harness.predictions import ORIGINAL, Prediction
from harness.results import CriterionResult
from harness.standard import CriterionSpec, Standard

OPERATING_POINT = 0.5
NEGATIVE_TRUTHS = ("benign", "normal")
# Elhakim et al. 2023 (Southern Denmark), the readers the draft standard cites: first reader and
# double reading (consensus), (sensitivity, specificity). Used when a composition states none.
DEFAULT_READERS: Mapping[str, tuple[float, float]] = {
    "reader1": (0.637, 0.978),
    "consensus": (0.739, 0.979),
}
DEFAULT_AUC = 0.93  # DK-AUC-01's cited evidence: Norway 2025, PERFORMS
SHORTFALL = 0.05  # the "below" model where the standard states no limit on a quantity
# the set sizes searched: the composition scaled by 2^(k/2), from a quarter to 16 times
SCALES = tuple(2 ** (k / 2) for k in range(-4, 9))

# kinds judged from predictions that the simulation still cannot produce, and why
NOT_SIMULATED: Mapping[str, str] = {
    "localization": "not simulated: needs the images' lesion marks and the model's findings",
    "latency": "not simulated: the time per exam depends on the installation, not on the set",
}
LIVE = "not simulated: needs a live model (it re-sends or perturbs exams)"


def not_simulated(kind: str) -> str | None:
    """Why a kind is not simulated, or None when it is."""
    spec = KINDS.get(kind)
    if spec is None:
        return "not simulated: no evaluator for this kind"
    if spec.needs_live:
        return LIVE
    return NOT_SIMULATED.get(kind)


@dataclass(frozen=True)
class Design:
    """A set's composition, per exam: truth, attributes and (from a built or planned set) reads.

    ``reads`` is None for a composition: the readers are simulated from ``readers`` (name ->
    sensitivity, specificity). Scaling copies exams evenly within each truth."""

    name: str
    truths: tuple[str, ...]
    attributes: tuple[Mapping[str, Any], ...]
    reads: tuple[Mapping[str, int], ...] | None
    readers: Mapping[str, tuple[float, float]]

    @property
    def cancers(self) -> int:
        return sum(t not in NEGATIVE_TRUTHS for t in self.truths)

    def counts(self) -> dict[str, int]:
        return {
            "cancers": self.cancers,
            "benign": self.truths.count("benign"),
            "normal": self.truths.count("normal"),
        }

    def scaled(self, factor: float) -> Design:
        """Each truth's exams scaled by ``factor`` (rounded, at least one), spread evenly."""
        idx: list[int] = []
        for truth in dict.fromkeys(self.truths):
            where = [i for i, t in enumerate(self.truths) if t == truth]
            m = max(1, round(len(where) * factor))
            idx.extend(where[int((j + 0.5) * len(where) / m)] for j in range(m))
        return replace(
            self,
            truths=tuple(self.truths[i] for i in idx),
            attributes=tuple(self.attributes[i] for i in idx),
            reads=None if self.reads is None else tuple(self.reads[i] for i in idx),
        )


def design_from_manifest(manifest: Manifest) -> Design:
    exams = manifest.exams
    names = sorted({r for e in exams for r in e.readers})
    readers = {}
    for name in names:
        pos = [e.readers[name] for e in exams if e.label == 1 and name in e.readers]
        neg = [e.readers[name] for e in exams if e.label == 0 and name in e.readers]
        if pos and neg:
            readers[name] = (float(np.mean(pos)), 1.0 - float(np.mean(neg)))
    return Design(
        name=f"{manifest.id} {manifest.version}",
        truths=tuple(
            "cancer" if e.label == 1 else e.truth if e.truth in NEGATIVE_TRUTHS else "normal"
            for e in exams
        ),
        attributes=tuple(dict(e.attributes) for e in exams),
        reads=tuple(dict(e.readers) for e in exams),
        readers=readers,
    )


def _number(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def parse_composition(text: str, readers: Mapping[str, tuple[float, float]]) -> Design:
    """``cancers=N,benign=N,normal=N[,ATTR=value:share/value:share...]``: each attribute's
    shares are the same among cancers and non-cancers (numbers are read as numbers: ages)."""
    counts = {"cancers": 0, "benign": 0, "normal": 0}
    groups: dict[str, list[tuple[Any, float]]] = {}
    for token in (t.strip() for t in text.split(",") if t.strip()):
        key, sep, value = token.partition("=")
        if not sep or not key or not value:
            raise UsageError(
                f"--composition: {token!r} is not KEY=VALUE; write e.g. "
                "cancers=250,benign=100,normal=650,density=a:0.1/b:0.4/c:0.4/d:0.1"
            )
        if key in counts:
            if not value.isdigit():
                raise UsageError(f"--composition {key}={value}: give a whole number of exams")
            counts[key] = int(value)
            continue
        shares = []
        for part in value.split("/"):
            v, sep, share = part.rpartition(":")
            try:
                w = float(share)
            except ValueError:
                w = -1.0
            if not sep or not v or not (w > 0 and math.isfinite(w)):
                raise UsageError(
                    f"--composition {key}: {part!r} is not VALUE:SHARE with a share > 0; "
                    f"write e.g. {key}=a:0.1/b:0.4/c:0.4/d:0.1"
                )
            shares.append((_number(v), w))
        groups[key] = shares
    if counts["cancers"] < 1 or counts["benign"] + counts["normal"] < 1:
        raise UsageError(
            "--composition: give at least one cancer and one non-cancer (cancers=N, normal=N)"
        )
    truths: list[str] = []
    attributes: list[dict[str, Any]] = []
    for truth, n in (("cancer", counts["cancers"]), *((t, counts[t]) for t in NEGATIVE_TRUTHS)):
        rows: list[dict[str, Any]] = [{} for _ in range(n)]
        for attr, shares in groups.items():
            for row, v in zip(rows, _apportion(shares, n), strict=True):
                row[attr] = v
        truths.extend([truth] * n)
        attributes.extend(rows)
    parts = [f"{k}={v}" for k, v in counts.items()] + [
        f"{a}=" + "/".join(f"{v}:{w:g}" for v, w in s) for a, s in groups.items()
    ]
    return Design(",".join(parts), tuple(truths), tuple(attributes), None, dict(readers))


def _apportion(shares: Sequence[tuple[Any, float]], n: int) -> list[Any]:
    """``n`` values in blocks by largest remainder (scaling spreads evenly, keeping the shares)."""
    total = sum(w for _, w in shares)
    exact = [n * w / total for _, w in shares]
    k = [math.floor(x) for x in exact]
    for i in sorted(range(len(k)), key=lambda i: k[i] - exact[i])[: n - sum(k)]:
        k[i] += 1
    return [v for (v, _), m in zip(shares, k, strict=True) for _ in range(m)]


@dataclass(frozen=True)
class Model:
    """A model's true performance: AUC, sensitivity and specificity at its operating point."""

    auc: float
    sensitivity: float
    specificity: float
    reader_correlation: float = 0.5
    failure_rate: float = 0.0

    @property
    def perfect(self) -> bool:
        return self.auc == self.sensitivity == self.specificity == 1.0

    def binormal(self) -> tuple[float, float, float]:
        return _binormal(self.auc, self.sensitivity, self.specificity)

    def describe(self) -> str:
        if self.perfect:
            return "a perfect model (every cancer above every non-cancer)"
        return (
            f"AUC {self.auc:.4g}, sensitivity {self.sensitivity:.4g} and specificity "
            f"{self.specificity:.4g} at the operating point, reader correlation "
            f"{self.reader_correlation:.4g}"
            + (f", technical failures {self.failure_rate:.4g}" if self.failure_rate else "")
        )


@lru_cache(maxsize=64)
def _binormal(auc: float, sensitivity: float, specificity: float) -> tuple[float, float, float]:
    """(mu, sigma, t): cancers' latent mean and SD, and the operating point's latent cut.

    The AUC of N(mu, s^2) against N(0, 1) is Phi(mu / sqrt(1 + s^2)) with mu = t + s z_sens;
    it runs from the specificity's Phi(t) at s -> 0 up to Phi(sqrt(t^2 + z^2)) at
    s = z / t and down to the sensitivity at s -> inf. Of two roots, the nearer equal
    variance (s = 1 on a log scale) is taken."""
    for name, v in (("sensitivity", sensitivity), ("specificity", specificity)):
        if not 0.0 < v < 1.0:
            raise UsageError(f"--{name} {v:g}: give a value strictly between 0 and 1")
    if not 0.5 < auc < 1.0:
        raise UsageError(f"--auc {auc:g}: give a value above 0.5 and below 1")
    t, z, za = norm.ppf(specificity), norm.ppf(sensitivity), norm.ppf(auc)

    def f(log_s: float) -> float:
        s = math.exp(log_s)
        return (t + s * z) / math.sqrt(1 + s * s) - za

    grid = np.linspace(-9.0, 9.0, 721)
    vals = np.array([f(g) for g in grid])
    roots = [
        brentq(f, grid[i], grid[i + 1])
        for i in range(len(grid) - 1)
        if vals[i] == 0 or vals[i] * vals[i + 1] < 0
    ]
    if not roots:
        top = norm.cdf(math.hypot(t, z)) if t > 0 and z > 0 else max(sensitivity, specificity)
        raise UsageError(
            f"AUC {auc:g} is not reachable with sensitivity {sensitivity:g} at "
            f"specificity {specificity:g} (binormal scores): give an AUC between "
            f"{min(sensitivity, specificity):.3f} and {top:.3f}, or other "
            "--sensitivity/--specificity"
        )
    log_s = min(roots, key=abs)
    s = math.exp(log_s)
    return t + s * z, s, t


def simulate(
    design: Design, model: Model, rng: np.random.Generator
) -> tuple[Manifest, list[Prediction]]:
    """One simulated set: the manifest (truths, attributes, reads) and the model's predictions."""
    n = len(design.truths)
    label = np.array([t not in NEGATIVE_TRUTHS for t in design.truths])
    if design.reads is None:
        u = rng.standard_normal(n)
        reads = {}
        for name, (sens, spec) in design.readers.items():
            cut = np.where(label, norm.ppf(1 - sens), norm.ppf(spec))
            reads[name] = (u >= cut).astype(np.int64)
        columns = {k: v.tolist() for k, v in reads.items()}
        read_rows = [
            dict(zip(columns, row, strict=True)) for row in zip(*columns.values(), strict=True)
        ]
    else:
        read_rows = [dict(r) for r in design.reads]
        u = _reader_latent(design, label, rng)
    rho = model.reader_correlation
    z = rho * u + math.sqrt(1 - rho * rho) * rng.standard_normal(n)
    other = rng.standard_normal(n)  # the breast without cancer scores as a non-cancer exam
    side = rng.random(n) < 0.5
    failed = rng.random(n) < model.failure_rate
    if model.perfect:
        # every cancer in [0.75, 0.99], every non-cancer in [0, 0.25]: distinct, ranked by z
        exam = np.where(label, 0.75 + 0.24 * norm.cdf(z), 0.25 * norm.cdf(z))
        rest = 0.25 * norm.cdf(other)
    else:
        mu, sigma, t = model.binormal()
        x = np.where(label, mu + sigma * z, z)
        exam, rest = norm.cdf(x - t), norm.cdf(other - t)
    exams, preds = [], []
    truths, attributes = design.truths, design.attributes
    rows = zip(
        label.tolist(), side.tolist(), failed.tolist(), exam.tolist(), rest.tolist(), strict=True
    )
    for i, (cancer, left, fail, s, r) in enumerate(rows):
        eid = f"S{i + 1:06d}"
        lat, opp = ("L", "R") if left else ("R", "L")
        exams.append(
            Exam(
                eid,
                int(cancer),
                "screen_detected" if cancer else truths[i],
                attributes[i],
                read_rows[i],
                (),
                (Lesion(lat, "mass", ()),) if cancer else (),
            )
        )
        if fail:
            preds.append(Prediction.failed(eid, ORIGINAL, "error", "simulated failure", None))
        else:
            preds.append(Prediction(eid, ORIGINAL, "ok", s, {lat: s, opp: r}, (), None, None))
    manifest = Manifest(Path("."), "simulated", "0", design.name, tuple(exams), "sha256:simulated")
    return manifest, preds


def _reader_latent(design: Design, label: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A standard-normal latent consistent with the set's comparator read (double reading's,
    else the first reader's), so the model's correlation with the readers holds on a real set."""
    assert design.reads is not None
    names = sorted({k for r in design.reads for k in r})
    if not names:
        return rng.standard_normal(len(label))
    ref = "consensus" if "consensus" in names else names[0]
    recalled = np.array([r.get(ref, 0) == 1 for r in design.reads])
    u = np.empty(len(label))
    v = rng.random(len(label))
    for cls in (True, False):
        on = label == cls
        rate = recalled[on].mean() if on.any() else 0.0
        cut = 1 - rate  # recalled: uniform quantile in [cut, 1), else in [0, cut)
        lo = np.where(recalled[on], cut, 0.0)
        hi = np.where(recalled[on], 1.0, cut)
        q = np.clip(lo + (hi - lo) * v[on], 1e-12, 1 - 1e-12)
        u[on] = norm.ppf(q)
    return u


# --- the analysis -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Estimate:
    """One criterion under one model on one set size, over the simulations."""

    p_pass: float
    half_width: float | None  # mean half-width of the interval the criterion judges
    errors: int  # simulations where it could not be evaluated
    error: str | None  # the first such reason


@dataclass(frozen=True)
class CriterionPower:
    id: str
    kind: str
    mandatory: bool
    status: str  # "simulated" or why not
    at_size: Estimate | None  # the target model on the composition as given
    below: Estimate | None  # the below model on the composition as given (None: not defined)
    smallest_cancers: int | None  # None: not reached within the searched sizes
    smallest_exams: int | None


@dataclass(frozen=True)
class PowerReport:
    standard: str
    design: str
    counts: Mapping[str, int]
    target: Model
    below: Model
    simulations: int
    seed: int
    target_probability: float
    false_pass: float
    criteria: tuple[CriterionPower, ...]
    whole: Estimate  # every simulated mandatory criterion passes (target model, composition)
    whole_smallest_cancers: int | None
    searched_cancers: tuple[int, ...]


# kinds whose "below" model is the standard's limits; for the others (a fair model in every
# subgroup, valid scores, no failures) the below model is the same model, so no 5 % bound applies
BELOW_KINDS = frozenset(
    {
        "auc",
        "sensitivity_at_specificity",
        "sensitivity_at_operating_point",
        "specificity_at_operating_point",
        "recall_rate",
        "cancer_detection_rate",
        "ppv",
        "triage_safety",
        "workload_reduction",
    }
)


def _bound(spec: CriterionSpec) -> float | None:
    for key in ("ci_lower_gte", "value_gte"):
        v = spec.pass_if.get(key)
        if isinstance(v, int | float) and not isinstance(v, bool):
            return float(v)
    return None


def below_model(standard: Standard, design: Design, target: Model) -> Model:
    """A model at the standard's limits: the highest AUC bound, the highest specificity bound,
    and the highest sensitivity bound (a non-inferiority comparator's sensitivity less its
    margin); ``SHORTFALL`` below the target where the standard states no limit."""
    auc, sens, spec = [], [], []
    for c in standard.criteria:
        b = _bound(c)
        if c.kind == "auc" and b is not None:
            auc.append(b)
        elif c.kind == "specificity_at_operating_point" and b is not None:
            spec.append(b)
        elif c.kind in ("sensitivity_at_operating_point", "sensitivity_at_specificity"):
            if b is not None:
                sens.append(b)
            comp = c.params.get("comparator")
            if isinstance(comp, Mapping) and comp.get("reader") in design.readers:
                sens.append(design.readers[comp["reader"]][0] - float(comp["margin_abs"]))
    return replace(
        target,
        auc=max(auc) if auc else target.auc - SHORTFALL,
        sensitivity=max(sens) if sens else target.sensitivity - SHORTFALL,
        specificity=max(spec) if spec else target.specificity - SHORTFALL,
    )


def _half_width(r: CriterionResult) -> float | None:
    """Half the width of the interval the pass condition reads: the AI/reader ratio's for the
    programme kinds, the paired difference's for non-inferiority, else the value's."""
    ev = r.evidence or {}
    measured = ev.get("measured") or {}
    keys = set(r.threshold)
    if keys & {"ratio_ci_lower_gte", "ratio_ci_upper_lte"} and "ratio_ci_lower" in measured:
        return (measured["ratio_ci_upper"] - measured["ratio_ci_lower"]) / 2
    if "noninferior" in keys and isinstance(ev.get("comparator"), Mapping):
        lo, hi = ev["comparator"]["difference_ci"]
        return (hi - lo) / 2
    if r.ci is not None and None not in r.ci:
        return (r.ci[1] - r.ci[0]) / 2
    return None


# a bootstrap whose interval no pass condition reads runs with this many replicates: the
# verdict cannot depend on it (e.g. a non-inferiority criterion's sensitivity interval)
UNREAD_REPLICATES = 200
BATCH = 10  # the size search decides a criterion after any batch that settles it


def lean(spec: CriterionSpec) -> CriterionSpec:
    """The spec as simulated: unchanged, except fewer replicates for a bootstrap interval that
    none of its ``pass_if`` keys reads."""
    ci = spec.params.get("ci")
    reads_ci = any("ci" in PASS_KEYS[k].quantity for k in spec.pass_if if k in PASS_KEYS)
    if reads_ci or not isinstance(ci, Mapping) or "replicates" not in ci:
        return spec
    reps = min(int(ci["replicates"]), UNREAD_REPLICATES)
    return replace(spec, params={**spec.params, "ci": {**ci, "replicates": reps}})


@dataclass
class _Tally:
    """Running counts of one criterion under one model on one set size."""

    runs: int = 0
    passed: int = 0
    errors: int = 0
    error: str | None = None
    widths: list[float] = field(default_factory=list)

    def add(self, r: CriterionResult) -> None:
        self.runs += 1
        self.passed += r.outcome == "passed"
        if r.outcome == "error":
            self.errors += 1
            if self.error is None:
                self.error = str((r.evidence or {}).get("error", r.explanation))
        else:
            w = _half_width(r)
            if w is not None:
                self.widths.append(w)

    def estimate(self) -> Estimate:
        return Estimate(
            self.passed / self.runs if self.runs else 0.0,
            float(np.mean(self.widths)) if self.widths else None,
            self.errors,
            self.error,
        )

    def settled(self, threshold: float) -> bool | None:
        """True once the pass rate is surely at least ``threshold``, False once surely below
        it, None while neither."""
        if self.runs == 0:
            return None
        p = self.passed / self.runs
        if _surely_above(p, self.runs, threshold):
            return True
        if _surely_above(1 - p, self.runs, 1 - threshold) and p < threshold:
            return False
        return None


def _surely_above(p: float, runs: int, threshold: float) -> bool:
    """A pass rate ``p`` over ``runs`` simulations is at least ``threshold`` by 3 standard errors
    (with a floor of 1/runs, so 0 or 1 after a few runs still needs a batch)."""
    se = max(math.sqrt(p * (1 - p) / runs), 1 / runs)
    return p - 3 * se >= threshold


class _Simulator:
    """Simulated sets of one size under one model, drawn in order from one stream: the n-th
    set depends only on the seed, the size, the model and n, not on what was evaluated. Only
    the current set is kept (a large set is tens of megabytes of records)."""

    def __init__(self, standard: Standard, design: Design, model: Model, seed: int, tag: int):
        self.standard, self.design, self.model = standard, design, model
        self.rng = np.random.default_rng([seed, len(design.truths), tag])
        self.index = -1
        self.current: tuple[Manifest, list[Prediction]] | None = None

    def results(self, i: int, specs: Sequence[CriterionSpec]) -> list[CriterionResult]:
        if i < self.index:
            raise ValueError("simulated sets are drawn in order")
        while self.index < i:
            self.current = simulate(self.design, self.model, self.rng)
            self.index += 1
        assert self.current is not None
        manifest, preds = self.current
        return judge(self.standard, manifest, preds, OPERATING_POINT, [lean(c) for c in specs])


def _estimates(
    standard: Standard,
    specs: Sequence[CriterionSpec],
    design: Design,
    model: Model,
    sims: int,
    seed: int,
    tag: int,
) -> tuple[dict[str, Estimate], Estimate]:
    """Each criterion's estimate over ``sims`` simulated sets, and the whole standard's
    (every mandatory criterion of ``specs`` passes)."""
    sim = _Simulator(standard, design, model, seed, tag)
    tally = {c.id: _Tally() for c in specs}
    mandatory = {c.id for c in specs if c.mandatory}
    whole = _Tally()
    for i in range(sims):
        results = sim.results(i, specs)
        for r in results:
            tally[r.id].add(r)
        whole.runs += 1
        whole.passed += all(r.outcome == "passed" for r in results if r.id in mandatory)
    return {k: t.estimate() for k, t in tally.items()}, whole.estimate()


def _decide(
    standard: Standard,
    design: Design,
    target: Model,
    below: Model,
    specs: Sequence[CriterionSpec],
    below_ids: frozenset[str],
    sims: int,
    seed: int,
    probability: float,
    false_pass: float,
) -> set[str]:
    """The ids of ``specs`` met on sets of this size: the target model passes with at least
    ``probability`` and (for ``below_ids``) the below model does not surely pass more often than
    ``false_pass``.

    Simulated in batches; a criterion is settled as soon as its pass rates are surely on one
    side (3 standard errors), else by the estimates after ``sims`` sets. Each set is judged once
    for every criterion still open, then dropped."""
    hi = _Simulator(standard, design, target, seed, 0)
    lo = _Simulator(standard, design, below, seed, 1)
    t_tally = {c.id: _Tally() for c in specs}
    b_tally = {c.id: _Tally() for c in specs if c.id in below_ids}
    met: set[str] = set()
    open_ids = {c.id for c in specs}
    for i in range(sims):
        t_specs = [c for c in specs if c.id in open_ids]
        b_specs = [c for c in t_specs if c.id in b_tally]
        for r in hi.results(i, t_specs):
            t_tally[r.id].add(r)
        if b_specs:
            for r in lo.results(i, b_specs):
                b_tally[r.id].add(r)
        if (i + 1) % BATCH and i + 1 < sims:
            continue
        for cid in list(open_ids):
            up = t_tally[cid].settled(probability)
            # the below model rules a size out only when it surely passes too often
            down = b_tally[cid].settled(false_pass) if cid in b_tally else False
            if up is False or down is True:
                open_ids.discard(cid)
            elif up is True and down is False:
                open_ids.discard(cid)
                met.add(cid)
            elif i + 1 == sims and t_tally[cid].estimate().p_pass >= probability:
                met.add(cid)
        if not open_ids:
            break
    return met


def _whole_met(
    standard: Standard,
    design: Design,
    target: Model,
    specs: Sequence[CriterionSpec],
    sims: int,
    seed: int,
    probability: float,
) -> bool:
    """Every mandatory criterion of ``specs`` passes together with at least ``probability``."""
    sim = _Simulator(standard, design, target, seed, 0)
    whole = _Tally()
    for i in range(sims):
        results = sim.results(i, specs)
        whole.runs += 1
        whole.passed += all(r.outcome == "passed" for r in results)
        if (i + 1) % BATCH == 0 and whole.settled(probability) is not None:
            return bool(whole.settled(probability))
    return whole.estimate().p_pass >= probability


def power(
    standard: Standard,
    design: Design,
    target: Model,
    below: Model,
    *,
    simulations: int = 200,
    seed: int = 0,
    target_probability: float = 0.8,
    false_pass: float = 0.05,
    scales: Iterable[float] = SCALES,
) -> PowerReport:
    """The whole analysis: every criterion at the composition's size under both models, then
    the set sizes ``scales`` (ascending, until every criterion is met) for the smallest sets,
    then the smallest size where every simulated mandatory criterion passes together."""
    if simulations < 1:
        raise UsageError("--simulations: give at least 1")
    if not 0 < target_probability < 1 or not 0 < false_pass < 1:
        raise UsageError("--target-probability and --false-pass: give probabilities in (0, 1)")
    specs = [c for c in standard.criteria if not_simulated(c.kind) is None]
    below_specs = [c for c in specs if c.kind in BELOW_KINDS]
    below_ids = frozenset(c.id for c in below_specs)
    at, whole = _estimates(standard, specs, design, target, simulations, seed, 0)
    low = (
        _estimates(standard, below_specs, design, below, simulations, seed, 1)[0]
        if below_specs
        else {}
    )
    sizes: list[Design] = []
    for factor in sorted({*scales, 1.0}):
        d = design.scaled(factor)
        if all(d.cancers != s.cancers for s in sizes):
            sizes.append(d)
    base = next(i for i, d in enumerate(sizes) if d.cancers == design.cancers)
    # per criterion: the largest size index known not met and the smallest known met; the size
    # as given is decided by the estimates above, the rest by bisection (pass rates grow with
    # the set), each probe judging a size once for all criteria whose bisection lands there
    lo = {c.id: -1 for c in specs}
    hi = {c.id: len(sizes) for c in specs}
    for c in specs:
        ok = at[c.id].p_pass >= target_probability and (
            c.id not in low or not _surely_above(low[c.id].p_pass, simulations, false_pass)
        )
        (hi if ok else lo)[c.id] = base
    while True:
        probes: dict[int, list[CriterionSpec]] = {}
        for c in specs:
            if hi[c.id] - lo[c.id] > 1:
                probes.setdefault((lo[c.id] + hi[c.id]) // 2, []).append(c)
        if not probes:
            break
        for i, group in sorted(probes.items()):
            met = _decide(
                standard,
                sizes[i],
                target,
                below,
                group,
                below_ids,
                simulations,
                seed,
                target_probability,
                false_pass,
            )
            for c in group:
                (hi if c.id in met else lo)[c.id] = i
    smallest = {cid: sizes[i] for cid, i in hi.items() if i < len(sizes)}
    mandatory = [c for c in specs if c.mandatory]
    whole_smallest: Design | None = None
    if mandatory and all(c.id in smallest for c in mandatory):
        first = max(len(smallest[c.id].truths) for c in mandatory)
        for d in (s for s in sizes if len(s.truths) >= first):
            if _whole_met(standard, d, target, mandatory, simulations, seed, target_probability):
                whole_smallest = d
                break
    rows = []
    for c in standard.criteria:
        why = not_simulated(c.kind)
        size = smallest.get(c.id)
        rows.append(
            CriterionPower(
                c.id,
                c.kind,
                c.mandatory,
                why or "simulated",
                None if why else at[c.id],
                low.get(c.id),
                size.cancers if size else None,
                len(size.truths) if size else None,
            )
        )
    return PowerReport(
        standard=f"{standard.id} {standard.version}",
        design=design.name,
        counts=design.counts(),
        target=target,
        below=below,
        simulations=simulations,
        seed=seed,
        target_probability=target_probability,
        false_pass=false_pass,
        criteria=tuple(rows),
        whole=whole,
        whole_smallest_cancers=whole_smallest.cancers if whole_smallest else None,
        searched_cancers=tuple(s.cancers for s in sizes),
    )


# --- the command ------------------------------------------------------------------------------


def _reader_option(values: Sequence[str] | None) -> dict[str, tuple[float, float]]:
    out: dict[str, tuple[float, float]] = {}
    for v in values or ():
        name, sep, rates = v.partition("=")
        sens, sep2, spec = rates.partition("/")
        try:
            pair = (float(sens), float(spec))
        except ValueError:
            pair = (-1.0, -1.0)
        if not sep or not sep2 or not name or not all(0 < x < 1 for x in pair):
            raise UsageError(
                f"--reader {v}: write NAME=SENSITIVITY/SPECIFICITY, e.g. reader1=0.637/0.978"
            )
        out[name] = pair
    return out


def design_of(args: Any) -> Design:
    """The set from exactly one of ``--cases``, ``--recipe`` or ``--composition``."""
    from harness.cases.build import planned_manifest
    from harness.cases.manifest import load_manifest

    given = [x for x in (args.cases, args.recipe, args.composition) if x is not None]
    if len(given) != 1:
        raise UsageError(
            "give exactly one of --cases DIR (a built set), --recipe FILE (planned) or "
            "--composition cancers=N,benign=N,normal=N[,ATTR=value:share/...]"
        )
    if args.exams is not None and args.recipe is None:
        raise UsageError("--exams plans a recipe; use it with --recipe")
    readers = _reader_option(args.reader)
    if args.composition is not None:
        return parse_composition(args.composition, readers or DEFAULT_READERS)
    if readers:
        raise UsageError("--reader states simulated readers; a set (--cases/--recipe) has its own")
    manifest = (
        load_manifest(args.cases)
        if args.cases
        else planned_manifest(Path(args.recipe), exams=args.exams)
    )
    return design_from_manifest(manifest)


def models_of(args: Any, standard: Standard, design: Design) -> tuple[Model, Model]:
    """The target model (stated, else AUC ``DEFAULT_AUC`` at double reading's sensitivity and
    specificity) and the below model (stated, else the standard's limits)."""
    ref = design.readers.get("consensus") or DEFAULT_READERS["consensus"]
    target = Model(
        auc=args.auc if args.auc is not None else DEFAULT_AUC,
        sensitivity=args.sensitivity if args.sensitivity is not None else ref[0],
        specificity=args.specificity if args.specificity is not None else ref[1],
        reader_correlation=args.reader_correlation,
        failure_rate=args.failure_rate,
    )
    if not -1 < target.reader_correlation < 1:
        raise UsageError("--reader-correlation: give a value in (-1, 1)")
    if not 0 <= target.failure_rate < 1:
        raise UsageError("--failure-rate: give a share in [0, 1)")
    limits = below_model(standard, design, target)
    below = replace(
        limits,
        auc=args.below_auc if args.below_auc is not None else limits.auc,
        sensitivity=args.below_sensitivity
        if args.below_sensitivity is not None
        else limits.sensitivity,
        specificity=args.below_specificity
        if args.below_specificity is not None
        else limits.specificity,
    )
    for m, name, flag in ((target, "target", ""), (below, "below", "below-")):
        if not m.perfect:
            try:
                m.binormal()
            except UsageError as exc:
                message = str(exc).replace("--", f"--{flag}")
                raise UsageError(f"the {name} model: {message}") from exc
    return target, below


def report_dict(r: PowerReport) -> dict[str, Any]:
    def est(e: Estimate | None) -> dict[str, Any] | None:
        if e is None:
            return None
        return {
            "p_pass": e.p_pass,
            "half_width": e.half_width,
            "errors": e.errors,
            "error": e.error,
        }

    return {
        "standard": r.standard,
        "set": r.design,
        "counts": dict(r.counts),
        "target_model": r.target.__dict__,
        "below_model": r.below.__dict__,
        "simulations": r.simulations,
        "seed": r.seed,
        "target_probability": r.target_probability,
        "false_pass": r.false_pass,
        "searched_cancers": list(r.searched_cancers),
        "criteria": [
            {
                "id": c.id,
                "kind": c.kind,
                "mandatory": c.mandatory,
                "status": c.status,
                "target": est(c.at_size),
                "below": est(c.below),
                "smallest_cancers": c.smallest_cancers,
                "smallest_exams": c.smallest_exams,
            }
            for c in r.criteria
        ],
        "whole": {"p_pass": r.whole.p_pass, "smallest_cancers": r.whole_smallest_cancers},
    }


def render_text(r: PowerReport) -> str:
    top = max(r.searched_cancers)
    lines = [
        f"{r.standard} on {r.design} ({r.counts['cancers']} cancers, {r.counts['benign']} benign, "
        f"{r.counts['normal']} normal); {r.simulations} simulations, seed {r.seed}",
        f"target model: {r.target.describe()}",
        f"below model:  {r.below.describe()}",
        f"smallest set: the target model passes with >= {r.target_probability:.0%} and the below "
        f"model not surely more than {r.false_pass:.0%} of the time (sets of "
        f"{min(r.searched_cancers)}-{top} cancers searched)",
        "",
        f"{'criterion':<16} {'kind':<31} {'P target':>8} {'P below':>7} {'CI ±':>7}  smallest set",
    ]
    for c in r.criteria:
        if c.at_size is None:
            continue
        a = c.at_size
        below = "-" if c.below is None else f"{c.below.p_pass:.2f}"
        width = "-" if a.half_width is None else f"{a.half_width:.3f}"
        size = (
            f"{c.smallest_cancers} cancers ({c.smallest_exams} exams)"
            if c.smallest_cancers is not None
            else f"not reached with {top} cancers"
        )
        note = f"; cannot be evaluated in {a.errors}: {a.error}" if a.errors else ""
        mark = "" if c.mandatory else " (optional)"
        lines.append(
            f"{c.id:<16} {c.kind + mark:<31} {a.p_pass:>8.2f} {below:>7} {width:>7}  {size}{note}"
        )
    whole = (
        f"{r.whole_smallest_cancers} cancers"
        if r.whole_smallest_cancers is not None
        else f"not reached with {top} cancers"
    )
    lines += [
        "",
        f"every simulated mandatory criterion together: P target {r.whole.p_pass:.2f} at this "
        f"size; smallest set {whole}",
    ]
    skipped = [c for c in r.criteria if c.at_size is None]
    if skipped:
        lines += ["", "not simulated (the verdict for these needs more than predictions):"]
        by_reason: dict[str, list[str]] = {}
        for c in skipped:
            by_reason.setdefault(c.status, []).append(f"{c.id} ({c.kind})")
        for reason, ids in by_reason.items():
            lines.append(f"  {reason.removeprefix('not simulated: ')}: {', '.join(ids)}")
    return "\n".join(lines)


def power_cli(args: Any) -> int:
    """``mammocert standard power``: print (or write as JSON) the analysis."""
    import json

    from harness.standard import load_standard

    standard = load_standard(args.standard)
    design = design_of(args)
    target, below = models_of(args, standard, design)
    if args.max_scale < 1:
        raise UsageError("--max-scale: give a factor of at least 1")
    scales = [f for f in SCALES if f <= args.max_scale] + [args.max_scale]
    report = power(
        standard,
        design,
        target,
        below,
        simulations=args.simulations,
        seed=standard.seed if args.seed is None else args.seed,
        target_probability=args.target_probability,
        false_pass=args.false_pass,
        scales=scales,
    )
    if args.format == "json":
        print(json.dumps(report_dict(report), indent=2))
    else:
        print(render_text(report))
    return 0
