"""How good are an LLM's preferences? Hit rate of held-out positives hidden among unrated items.

Protocol (on a MovieLens-style log): each user's interactions are split in time (the last
``holdout_fraction`` held out). A sampled user's query shows their last ``window`` training items;
the positive is the first held-out item they rated at least ``positive_threshold``, hidden among
items they never rated, drawn with the seed by one of three samplers (``negatives``):

- ``uniform``: K-1 items drawn uniformly from those rated by someone in training (mostly obscure ones,
  so popularity alone wins often);
- ``popularity``: K-1 items from the positive's popularity stratum (:func:`popularity_strata`: ``STRATA``
  strata of equal training-interaction mass, each of at least ``STRATUM_MIN`` items; a neighbouring
  stratum joins only where the user rated nearly all of it), so that popularity alone is near chance;
- ``pool``: ``POOL`` - 1 items, one from each of ``POOL`` - 1 strata of equal training-interaction mass
  (so the pool is popularity-distributed like the positives); methods rank the whole pool and the
  hit rate is HR@10, reported with NDCG@10.

A method's hit rate is the fraction of queries with the positive ranked first (``uniform``,
``popularity``) or in the top 10 (``pool``), with a 95% Wilson interval; ties are broken at random
(seeded); queries a method failed on are excluded from its ``n`` and reported as ``failures``.

Methods: ``random`` (seeded uniform scores; expectation 1/K or 10/``POOL``), ``popularity``
(training interaction counts), ``user_model`` (``LoggedUserModel`` fitted on the training part only),
``oracle`` (an UPPER BOUND: matrix factorisation fitted on the FULL log, held-out ratings included,
i.e. the ground truth a log-based simulator uses), and for an LLM backend:
``<backend>:choice`` (one letter answer), ``<backend>:choice-perm<P>`` (votes over P cyclic shifts of the
candidates, P = K), ``<backend>:score-sum``, ``:score-mean``, ``:score-pmi`` (the title scorings of
:data:`~ialp.llm.base.Scoring`, all from one scoring pass) and ``<backend>:hybrid``: a conditional logit over
(PMI score, raw score, log popularity, user model) whose weights are fitted on VALIDATION users (a sample
disjoint from the evaluation users, same sampler), never on the users it is evaluated on. With
``distill_queries``, ``<backend>:reward-pmi`` is the iALP reward model distilled from the backend's PMI choices on
other users' training-part queries: what of the source's signal a distilled reward keeps.
Every backend method also carries ``vs``: its hit rate minus that of ``popularity`` and of ``user_model`` on the
same queries, with a paired 95% interval (:func:`paired_difference`), since unpaired Wilson intervals overlap long
after a paired difference is clear of zero.
With ``--backend oracle`` its ``oracle:choice``/``oracle:score`` answer structured queries as before.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np

from ialp.data import InteractionLog, LoggedData, load_dataset
from ialp.llm.base import LLMBackend, LLMConfig
from ialp.llm.preferences import PreferenceExtractor, TitleScores
from ialp.llm.prompts import PreferenceQuery, query_from_log
from ialp.schema import load
from ialp.simulators.logged import LoggedUserModel, MatrixFactorization, MFConfig
from ialp.storage import cache_root, stage_key

__all__ = ["NEGATIVES", "Negatives", "build_backend", "evaluate_preferences", "format_report", "load_llm_config",
           "paired_difference", "popularity_strata", "sample_cases", "wilson_interval"]

#: How negatives are drawn (see the module docstring).
Negatives = Literal["uniform", "popularity", "pool"]
NEGATIVES: tuple[str, ...] = get_args(Negatives)
STRATA, STRATUM_MIN = 100, 40  # popularity sampler: strata of equal interaction mass, each >= 40 items
POOL = 100  # pool sampler: candidates ranked (one positive)
TOP = 10  # pool sampler: HR@TOP and NDCG@TOP
HYBRID_FEATURES = ("score-pmi", "score-sum", "log-popularity", "user_model")


def wilson_interval(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95% for ``z = 1.96``).

    >>> [round(x, 3) for x in wilson_interval(5, 10)]
    [0.237, 0.763]
    """
    if n <= 0:
        return (0.0, 1.0)
    p = hits / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def paired_difference(a: np.ndarray, b: np.ndarray, z: float = 1.96) -> dict[str, Any]:
    """Mean per-query difference ``a - b`` of two methods' hits (1/0, NaN where a method failed) over the queries
    both answered, with a normal 95% interval from the differences' standard deviation (paired: both ranked the
    same queries, so what they share cancels).

    >>> d = paired_difference(np.array([1.0, 1, 0, 1, 0]), np.array([0.0, 1, 0, 0, np.nan]))
    >>> d["diff"], d["n"], round(d["ci_low"], 3), round(d["ci_high"], 3)
    (0.5, 4, -0.066, 1.066)
    """
    both = ~(np.isnan(a) | np.isnan(b))
    d = a[both] - b[both]
    n = len(d)
    if n == 0:
        return {"diff": None, "ci_low": None, "ci_high": None, "n": 0}
    mean = float(d.mean())
    half = z * float(d.std(ddof=1)) / math.sqrt(n) if n > 1 else math.inf
    return {"diff": mean, "ci_low": mean - half, "ci_high": mean + half, "n": n}


# ------------------------------------------------------------------------------------------- config
def load_llm_config(path: str | os.PathLike[str] | None = None, overrides: Sequence[str] = (),
                    backend: str | None = None) -> LLMConfig:
    """An ``LLMConfig`` from a YAML file's ``llm:`` section, ``llm.key=value`` overrides and a backend name.

    Raises:
        ConfigError: Unknown field or a bad value, naming the field, the value and what is allowed.
    """
    extra = [] if backend is None else [f"llm.backend={backend}"]
    return load(LLMConfig, path, [*overrides, *extra], section="llm")


def build_backend(config: LLMConfig, truth: Any = None) -> LLMBackend:
    """The backend a config names; ``oracle`` needs ``truth`` (see ``OracleBackend``) and is never a default."""
    from ialp.llm import make_backend

    if config.backend == "oracle":
        if truth is None:
            raise ValueError("backend 'oracle' answers from a ground truth, which this command does not have")
        return make_backend(config, truth=truth)
    return make_backend(config)


# ------------------------------------------------------------------------------------------- data
@dataclasses.dataclass(frozen=True)
class Case:
    """One evaluation query: a user, where their shown history stops, the candidates and the positive's slot."""

    user: int
    history_end: int  # position in the user's history where the shown history stops (exclusive)
    candidates: tuple[int, ...]
    positive: int  # position of the positive among the candidates


def _fit_full(log: InteractionLog, config: MFConfig, cache_dir: Path) -> MatrixFactorization:
    """MF on every interaction of ``log`` (the oracle's ground truth), cached on disk."""
    path = cache_dir / "models" / f"mf-full-{stage_key('full', log.fingerprint(), dataclasses.asdict(config))}.npz"
    if path.exists():
        return MatrixFactorization.load(path)[0]
    mf = MatrixFactorization.fit(log.users, log.items, log.feedback, log.n_users, log.n_items, config)
    mf.save(path)
    return mf


def popularity_strata(counts: np.ndarray, n_strata: int, min_items: int, rng: np.random.Generator) -> np.ndarray:
    """Each item's popularity stratum (0 = most popular): strata of about equal training-interaction mass
    (each holds ``1/n_strata`` of the interactions, and at least ``min_items`` items), in the order of ``counts``
    (ties in random order); items never interacted with form one last stratum.

    >>> popularity_strata(np.array([0, 6, 4, 3, 2, 1, 0]), 3, 1, np.random.default_rng(0)).tolist()
    [3, 0, 1, 1, 2, 2, 3]
    """
    order = np.lexsort((rng.random(counts.size), -counts))
    out = np.empty(counts.size, dtype=np.int64)
    share, stratum, mass, size = counts.sum() / n_strata, 0, 0.0, 0
    for item in order:
        if counts[item] == 0:
            out[item] = stratum + (size > 0)
            continue
        if mass >= share and size >= min_items:
            stratum, mass, size = stratum + 1, 0.0, 0
        out[item] = stratum
        mass, size = mass + counts[item], size + 1
    return out


class _Negatives:
    """Draws one user's negatives for a sampler (see the module docstring); all randomness from ``rng``."""

    def __init__(self, kind: Negatives, counts: np.ndarray, k: int, rng: np.random.Generator) -> None:
        if kind not in NEGATIVES:
            raise ValueError(f"negatives must be one of {NEGATIVES}, got {kind!r}")
        self.kind, self.k, self.rng = kind, k, rng
        self.pool = np.flatnonzero(counts > 0)
        if kind == "popularity":
            self.strata = popularity_strata(counts, STRATA, STRATUM_MIN, rng)
        elif kind == "pool":
            self.strata = popularity_strata(counts, POOL - 1, 1, rng)

    def _near(self, stratum: int, need: int, taken: set[int]) -> list[int]:
        """``need`` distinct items of ``stratum`` not in ``taken``; the nearest strata join only if it has too few."""
        for d in range(int(self.strata.max()) + 1):
            near = np.flatnonzero(np.abs(self.strata - stratum) <= d)
            free = [int(i) for i in near if int(i) not in taken]
            if len(free) >= need:
                return [int(i) for i in self.rng.choice(free, size=need, replace=False)]
        raise ValueError(f"fewer than {need} items the user has not rated")

    def draw(self, positive: int, rated: set[int]) -> list[int]:
        """Distinct negatives for one positive, none of them rated by the user."""
        if self.kind == "uniform":
            out: list[int] = []
            while len(out) < self.k - 1:
                for item in self.rng.choice(self.pool, size=2 * self.k, replace=True).tolist():
                    if item not in rated and item not in out and len(out) < self.k - 1:
                        out.append(int(item))
            return out
        if self.kind == "popularity":
            return self._near(int(self.strata[positive]), self.k - 1, rated)
        out = []
        for s in range(POOL - 1):  # one negative from each stratum of the interacted items
            out += self._near(s, 1, rated | set(out))
        return out


def sample_cases(log: InteractionLog, train: InteractionLog, k: int, n_users: int, rng: np.random.Generator,
                 positive_threshold: float, negatives: Negatives = "uniform", exclude: Sequence[int] = ()
                 ) -> list[Case]:
    """Queries for ``n_users`` users with a held-out positive (not in ``exclude``), negatives by the sampler.

    ``k`` is the number of candidates of the ``uniform`` and ``popularity`` samplers; ``pool`` has ``POOL``.
    """
    starts = np.searchsorted(log.users, np.arange(log.n_users + 1))
    train_counts = np.bincount(train.users, minlength=log.n_users)
    skip = set(exclude)
    eligible: list[tuple[int, int]] = []
    for u in range(log.n_users):
        lo, hi = starts[u], starts[u + 1]
        split = lo + train_counts[u]
        if train_counts[u] < 1 or u in skip:
            continue
        good = np.flatnonzero(log.feedback[split:hi] >= positive_threshold)
        if good.size:
            eligible.append((u, int(split + good[0] - lo)))
    if not eligible:
        raise ValueError(f"no user has a held-out rating >= {positive_threshold}"
                         + (f" outside the {len(skip)} excluded users" if skip else ""))
    picks = rng.choice(len(eligible), size=min(n_users, len(eligible)), replace=False)
    sampler = _Negatives(negatives, np.bincount(train.items, minlength=log.n_items), POOL if negatives == "pool" else k,
                         rng)
    cases = []
    for p in picks:
        u, pos_at = eligible[int(p)]
        cases.append(_case(log, starts, sampler, rng, u, pos_at, int(train_counts[u])))
    return cases


def sample_training_cases(log: InteractionLog, train: InteractionLog, k: int, n: int, rng: np.random.Generator,
                          positive_threshold: float, negatives: Negatives = "uniform", exclude: Sequence[int] = ()
                          ) -> list[Case]:
    """Distillation queries inside the TRAINING part of users not in ``exclude``: at ``n`` random positions whose
    item is rated at least ``positive_threshold`` (the positive; the history stops before it), negatives drawn
    from items the user never rated by the sampler, as :func:`sample_cases` draws them."""
    starts = np.searchsorted(log.users, np.arange(log.n_users + 1))
    train_counts = np.bincount(train.users, minlength=log.n_users)
    skip = set(exclude)
    spots = [(u, int(p)) for u in range(log.n_users) if u not in skip
             for p in np.flatnonzero(log.feedback[starts[u] + 1:starts[u] + train_counts[u]] >= positive_threshold) + 1]
    if not spots:
        raise ValueError(f"no training position rated >= {positive_threshold} outside the {len(skip)} excluded users")
    sampler = _Negatives(negatives, np.bincount(train.items, minlength=log.n_items), k, rng)
    cases = []
    for j in rng.choice(len(spots), size=min(n, len(spots)), replace=False):
        u, at = spots[int(j)]
        cases.append(_case(log, starts, sampler, rng, u, at, at))
    return cases


def _case(log: InteractionLog, starts: np.ndarray, sampler: _Negatives, rng: np.random.Generator, user: int,
          positive_at: int, history_end: int) -> Case:
    """The query whose positive is the user's item at ``positive_at`` (a position in their history), hidden at a
    random slot among negatives the sampler draws from items they never rated."""
    positive = int(log.items[starts[user] + positive_at])
    drawn = sampler.draw(positive, set(log.items[starts[user]:starts[user + 1]].tolist()))
    slot = int(rng.integers(0, len(drawn) + 1))
    return Case(user, history_end, (*drawn[:slot], positive, *drawn[slot:]), slot)


def _reward_states(queries: Sequence[PreferenceQuery], item_embeddings: np.ndarray, window: int,
                   feedback_range: tuple[float, float]) -> np.ndarray:
    """The reward model's state features of what each query shows: its history window (no user features)."""
    from ialp.rewards.model import state_features

    b, d = len(queries), item_embeddings.shape[1]
    hist, mask, fb = np.zeros((b, window, d), np.float32), np.zeros((b, window), np.float32), np.zeros((b, window))
    for j, q in enumerate(queries):
        n = len(q.history_items)
        if n:
            hist[j, -n:], mask[j, -n:], fb[j, -n:] = item_embeddings[list(q.history_items)], 1.0, q.history_feedback
    return state_features({"history": hist, "mask": mask, "feedback": fb, "user": np.zeros((b, 0), np.float32)},
                          feedback_range)


def _positive_rank(scores: np.ndarray, positive: int, rng: np.random.Generator) -> int:
    """0-based rank of ``scores[positive]`` (best first), ties broken at random."""
    ahead = int(np.sum(scores > scores[positive]))
    tied = int(np.sum(scores == scores[positive])) - 1
    return ahead + (int(rng.integers(0, tied + 1)) if tied else 0)


def _summary(scores: Sequence[np.ndarray | None], cases: Sequence[Case], pool: bool, seed: int
             ) -> tuple[dict[str, Any], np.ndarray]:
    """Hit rate (top 1, or top ``TOP`` for a pool) with its Wilson interval, plus NDCG@``TOP`` for a pool; and the
    per-query hits (NaN where ``scores`` is None)."""
    rng = np.random.default_rng([seed, 7])
    ranks = [_positive_rank(np.asarray(s, dtype=np.float64), c.positive, rng)
             for s, c in zip(scores, cases, strict=True) if s is not None]
    cut = TOP if pool else 1
    hits, n = sum(r < cut for r in ranks), len(ranks)
    lo, hi = wilson_interval(hits, n)
    out = {"hit_rate": hits / n if n else None, "ci_low": lo, "ci_high": hi, "n": n, "failures": len(cases) - n}
    if pool:
        out[f"ndcg@{TOP}"] = float(np.mean([1.0 / math.log2(r + 2) if r < TOP else 0.0 for r in ranks])) if n else None
    per_query = np.full(len(cases), np.nan)
    per_query[[j for j, s in enumerate(scores) if s is not None]] = [float(r < cut) for r in ranks]
    return out, per_query


def _conditional_logit(features: Sequence[np.ndarray], positives: Sequence[int], l2: float = 1e-2
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weights of a softmax over each query's candidates (rows of ``features``), fitted by maximum likelihood.

    Features are standardised over all candidates first; returns (weights, mean, scale).
    """
    from scipy.optimize import minimize

    stacked = np.concatenate(features)
    mean, scale = stacked.mean(axis=0), stacked.std(axis=0) + 1e-9
    xs = [(f - mean) / scale for f in features]

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        total, grad = l2 * float(w @ w), 2 * l2 * w
        for x, pos in zip(xs, positives, strict=True):
            z = x @ w
            p = np.exp(z - z.max())
            p /= p.sum()
            total -= float(z[pos] - z.max() - np.log(np.exp(z - z.max()).sum()))
            grad -= x[pos] - p @ x
        return total / len(xs), grad / len(xs)

    w = minimize(loss, np.zeros(stacked.shape[1]), jac=True, method="L-BFGS-B").x
    return w, mean, scale


# ------------------------------------------------------------------------------------------- eval
def evaluate_preferences(data_dir: str | os.PathLike[str], backend_config: LLMConfig | None = None, k: int = 5,
                         n_users: int = 100, seed: int = 0, modes: Sequence[str] = ("choice", "score"), *,
                         negatives: Negatives = "uniform", validation_users: int | None = None, window: int = 10,
                         holdout_fraction: float = 0.2, positive_threshold: float = 4.0, batch_size: int = 16,
                         distill_queries: int = 0, cache_dir: str | os.PathLike[str] | None = None,
                         progress: bool = True) -> dict[str, Any]:
    """Hit rates of the baselines and of an LLM backend's variants on held-out positives.

    Args:
        data_dir: A MovieLens folder (any layout ``ialp.data.load_dataset`` detects).
        backend_config: The LLM backend (``backend="oracle"`` for the ground-truth answers); None: baselines only.
        k: Candidates per query (one positive, k-1 unrated items) of the ``uniform``/``popularity`` samplers.
        n_users: Users sampled (at most the users with a held-out positive).
        seed: Seeds user and candidate sampling, the random baseline, tie-breaking and the MF fits.
        modes: The backend's modes (``choice``: plain and permutation-debiased; ``score``: the three scorings and
            the hybrid). Choice is skipped for the ``pool`` sampler (more candidates than letters).
        negatives: ``uniform``, ``popularity`` or ``pool`` (see the module docstring).
        validation_users: Users (disjoint from the evaluation users) the hybrid's weights are fitted on
            (default: ``n_users``).
        window: Recent training items shown per user.
        holdout_fraction: Fraction of each user's interactions held out (in time order).
        positive_threshold: Minimum held-out feedback of a positive.
        batch_size: Queries per backend call batch.
        distill_queries: Score mode: also distil the LLM's PMI choices on this many queries inside the training part
            of other users (:func:`sample_training_cases`, same sampler) into the iALP reward model (the pipeline's
            ``RewardConfig`` defaults, on the fitted user model's item embeddings and the query's history window)
            and report its hit rate on the evaluation cases as ``<backend>:reward-pmi`` (``oracle:reward`` from the
            oracle's answers), with ``agreement`` (its choices against the LLM's on a held-out fifth of those
            queries), ``eval_agreement`` (the same on the evaluation cases) and ``source_hit_rate`` (the LLM's own
            hit rate on the distillation queries). Not for ``pool``.
        cache_dir: Where fitted models are cached (default ``$IALP_CACHE_DIR`` or ``~/.cache/ialp``).
        progress: Show a progress bar on stderr.

    Returns:
        ``{"negatives": S, "methods": {name: {"hit_rate", "ci_low", "ci_high", "n", "failures"[, "ndcg@10"]}},
        "llm": {"calls", "cache_hits", "failures", "prompt_tokens", "completion_tokens"}}``.

    Raises:
        LLMError: The backend failed on more than ``llm.max_failure_share`` of the queries of a mode.
    """
    if not 2 <= k <= 26:
        raise ValueError(f"k must be in [2, 26], got {k}")
    if n_users < 1:
        raise ValueError(f"n_users must be >= 1, got {n_users}")
    if negatives not in NEGATIVES:
        raise ValueError(f"negatives must be one of {NEGATIVES}, got {negatives!r}")
    n_val = n_users if validation_users is None else validation_users
    if n_val < 1:
        raise ValueError(f"validation_users must be >= 1, got {n_val}")
    data = load_dataset(data_dir)
    log, cache = data.log, Path(cache_dir) if cache_dir is not None else cache_root()
    train, _ = log.split_by_time(holdout_fraction)
    rng = np.random.default_rng(seed)
    cases = sample_cases(log, train, k, n_users, rng, positive_threshold, negatives)
    pool = negatives == "pool"
    methods: dict[str, dict[str, Any]] = {}
    per_query: dict[str, np.ndarray] = {}

    def report(name: str, scores: Sequence[np.ndarray | None], **extra: Any) -> None:
        methods[name], per_query[name] = _summary(scores, cases, pool, seed)
        methods[name].update(extra)

    report("random", [rng.random(len(c.candidates)) for c in cases],
           expected=min(TOP if pool else 1, len(cases[0].candidates)) / len(cases[0].candidates))
    popularity = np.bincount(train.items, minlength=log.n_items).astype(np.float64)
    report("popularity", [popularity[list(c.candidates)] for c in cases])
    mf_config = MFConfig(seed=seed)
    fitted = LoggedUserModel(LoggedData(train, data.catalog, data.report, data.user_features), mf_config,
                             cache_dir=cache, verbose=False)

    def user_model(cs: Sequence[Case]) -> list[np.ndarray]:
        return [fitted.mf.predict(np.full(len(c.candidates), c.user), np.array(c.candidates)) for c in cs]

    report("user_model", user_model(cases))
    full = _fit_full(log, mf_config, cache)
    lo_fb, hi_fb = log.feedback_range

    def truth(q: PreferenceQuery) -> np.ndarray:
        return np.clip(full.predict(np.full(q.k, q.user), np.array(q.candidates)), lo_fb, hi_fb)

    report("oracle", [np.clip(full.predict(np.full(len(c.candidates), c.user), np.array(c.candidates)), lo_fb, hi_fb)
                      for c in cases])

    llm: dict[str, Any] = {"calls": 0, "cache_hits": 0, "failures": 0, "prompt_tokens": 0, "completion_tokens": 0}
    if backend_config is None:
        return {"negatives": negatives, "methods": methods, "llm": llm}
    backend = build_backend(backend_config, truth if backend_config.backend == "oracle" else None)
    run = _LLMRun(backend, data.catalog, train, window, batch_size, progress)

    def distilled(name: str, answer: Callable[[Sequence[Case]], list[np.ndarray | None]],
                  case_answers: Sequence[np.ndarray | None], taken: Sequence[Case]) -> None:
        found = sample_training_cases(log, train, k, distill_queries, rng, positive_threshold, negatives,
                                      exclude=[c.user for c in taken])
        report(name, **_distilled_reward(run, cases, found, answer, case_answers, fitted.item_embeddings,
                                         log.feedback_range, seed))

    failures = 0
    try:
        for mode in modes:
            if mode == "score" and not backend.supports_scoring and not run.is_oracle:
                print(f"[ialp] {backend.name}: no scoring support; skipping mode 'score'", file=sys.stderr)
                continue
            if run.is_oracle:
                choices, extractor = run.prefer(cases, mode)
                report(f"{backend.name}:{mode}", choices)
                if distill_queries and mode == "score" and not pool:
                    distilled(f"{backend.name}:reward", lambda cs: run.prefer(cs, "score")[0], choices, cases)
            elif mode == "choice":
                if pool:
                    print(f"[ialp] {backend.name}: choice mode cannot show {POOL} candidates; skipping it",
                          file=sys.stderr)
                    continue
                choices, extractor = run.prefer(cases, "choice", 1)
                report(f"{backend.name}:choice", choices)
                failures += extractor.parse_failures
                choices, extractor = run.prefer(cases, "choice", k)
                report(f"{backend.name}:choice-perm{k}", choices)
            else:
                titles, extractor = run.title_scores(cases)
                for scoring in ("sum", "mean", "pmi"):
                    report(f"{backend.name}:score-{scoring}",
                           [None if t.error else t.value(scoring) for t in titles])
                val = sample_cases(log, train, k, n_val, rng, positive_threshold, negatives,
                                   exclude=[c.user for c in cases])
                val_titles, _ = run.title_scores(val)

                def features(cs: Sequence[Case], ts: Sequence[Any]) -> list[np.ndarray | None]:
                    mf = user_model(cs)
                    return [None if t.error else np.column_stack([
                        t.value("pmi"), t.value("sum"), np.log1p(popularity[list(c.candidates)]), m])
                        for c, t, m in zip(cs, ts, mf, strict=True)]

                fit_x = features(val, val_titles)
                keep = [j for j, x in enumerate(fit_x) if x is not None]
                w, mean, scale = _conditional_logit([fit_x[j] for j in keep],  # type: ignore[misc]
                                                    [val[j].positive for j in keep])
                report(f"{backend.name}:hybrid", [None if x is None else ((x - mean) / scale) @ w
                                                  for x in features(cases, titles)],
                       weights=dict(zip(HYBRID_FEATURES, (round(float(v), 4) for v in w), strict=True)),
                       validation_n=len(keep))
                if distill_queries and pool:
                    print(f"[ialp] the distilled reward is measured on the uniform and popularity samplers only "
                          f"({POOL} candidates a distillation query would cost {POOL // k}x as many titles)",
                          file=sys.stderr)
                elif distill_queries:
                    def pmi(ts: Sequence[TitleScores]) -> list[np.ndarray | None]:
                        return [None if t.error else t.value("pmi") for t in ts]

                    distilled(f"{backend.name}:reward-pmi", lambda cs: pmi(run.title_scores(cs)[0]), pmi(titles),
                              [*cases, *val])
            failures += extractor.parse_failures
        s = backend.stats
        llm = {"calls": s.calls, "cache_hits": s.cache_hits, "failures": s.failures + failures,
               "prompt_tokens": s.prompt_tokens, "completion_tokens": s.completion_tokens}
    finally:
        backend.close()
    for name in methods:
        if name.startswith(f"{backend.name}:"):
            methods[name]["vs"] = {base: paired_difference(per_query[name], per_query[base])
                                   for base in ("popularity", "user_model")}
    return {"negatives": negatives, "methods": methods, "llm": llm}


def _distilled_reward(run: _LLMRun, cases: Sequence[Case], distill: Sequence[Case],
                      answer: Callable[[Sequence[Case]], list[np.ndarray | None]],
                      case_answers: Sequence[np.ndarray | None], item_embeddings: np.ndarray,
                      feedback_range: tuple[float, float], seed: int) -> dict[str, Any]:
    """Fit the iALP reward model (the pipeline's ``RewardConfig``) on the choices ``answer`` gives over ``distill``
    (four fifths; the rest held out) and score ``cases``: :func:`_summary`'s ``scores`` plus the evidence of what the
    distillation kept, among it how often it picks what the source picked on ``cases`` (``case_answers``: unseen
    users)."""
    from ialp.config import RewardConfig
    from ialp.rewards.model import PreferenceSet, RewardModel

    answers = answer(distill)
    ok = [j for j, a in enumerate(answers) if a is not None]
    if len(ok) < 10:
        raise ValueError(f"distilled reward: only {len(ok)} of {len(distill)} distillation queries were answered")
    states = _reward_states(run.queries([distill[j] for j in ok]), item_embeddings, run.window, feedback_range)
    data = PreferenceSet(states, np.array([distill[j].candidates for j in ok]),
                         np.array([int(np.argmax(answers[j])) for j in ok]))  # type: ignore[arg-type]
    order = np.random.default_rng([seed, 11]).permutation(len(data))
    n_held = max(2, len(data) // 5)
    rc = RewardConfig(seed=seed)
    model = RewardModel(item_embeddings, feedback_range, (0.0, 1.0), states.shape[1], rc.hidden, rc.seed)
    model.fit(data.subset(order[n_held:]), rc.loss, rc.epochs, rc.learning_rate, rc.weight_decay,
              patience=rc.patience, validation=rc.validation)
    eval_states = _reward_states(run.queries(cases), item_embeddings, run.window, feedback_range)
    scores = model.score(eval_states, np.array([c.candidates for c in cases]))
    same = [int(np.argmax(row) == np.argmax(a)) for row, a in zip(scores, case_answers, strict=True) if a is not None]
    return {"scores": list(scores), "agreement": round(model.accuracy(data.subset(order[:n_held])), 4),
            "eval_agreement": round(float(np.mean(same)), 4) if same else None, "heldout_n": n_held,
            "distill_n": len(ok), "source_hit_rate": _summary(answers, distill, False, seed)[0]["hit_rate"]}


class _LLMRun:
    """Asks one backend about evaluation cases in batches, with a progress bar; failures tallied per extractor."""

    def __init__(self, backend: LLMBackend, catalog: Any, train: InteractionLog, window: int, batch_size: int,
                 progress: bool) -> None:
        self.backend, self.catalog, self.train = backend, catalog, train
        self.window, self.batch_size, self.progress = window, batch_size, progress
        self.is_oracle = callable(getattr(backend, "answer_query", None))

    def queries(self, cases: Sequence[Case]) -> list[PreferenceQuery]:
        """The prompts' queries: each case's history window, up to where its history stops."""
        return [query_from_log(self.train, c.user, c.candidates, before=c.history_end, window=self.window)
                for c in cases]

    def _batches(self, queries: list[PreferenceQuery], desc: str) -> Any:
        from tqdm import tqdm

        bar = tqdm(total=len(queries), desc=desc, file=sys.stderr, disable=not self.progress, leave=False)
        for start in range(0, len(queries), self.batch_size):
            yield queries[start:start + self.batch_size]
            bar.update(min(self.batch_size, len(queries) - start))
        bar.close()

    def prefer(self, cases: Sequence[Case], mode: str, permutations: int = 1
               ) -> tuple[list[np.ndarray | None], PreferenceExtractor]:
        """Each case's answer as scores over its candidates (one-hot, vote shares or the oracle's), None on failure."""
        extractor = PreferenceExtractor(self.backend, self.catalog, mode, permutations=permutations)  # type: ignore[arg-type]
        out: list[np.ndarray | None] = []
        for batch in self._batches(self.queries(cases), f"{self.backend.name}:{mode}/{permutations}"):
            for p in extractor.prefer(batch):
                if p.choice is None:
                    out.append(None)
                else:
                    out.append(np.eye(p.query.k)[p.choice] if p.scores is None else np.asarray(p.scores))
        return out, extractor

    def title_scores(self, cases: Sequence[Case]) -> tuple[list[TitleScores], PreferenceExtractor]:
        """Every case's title scores (with priors) from one scoring pass, failures tallied."""
        extractor = PreferenceExtractor(self.backend, self.catalog, "score")
        out: list[TitleScores] = []
        for batch in self._batches(self.queries(cases), f"{self.backend.name}:score"):
            got = extractor.title_scores(batch, prior=True)
            extractor.tally([t.reason for t in got])
            out += got
        return out, extractor


def format_report(result: dict[str, Any]) -> str:
    """A readable table of :func:`evaluate_preferences`' result."""
    ndcg = f"ndcg@{TOP}"
    pool = any(ndcg in m for m in result["methods"].values())
    rate = f"HR@{TOP}" if pool else "hit rate"
    lines = [f"negatives: {result.get('negatives', 'uniform')}",
             f"{'method':<24} {rate:>8}  {'95% CI':<15} {'n':>5} {'failures':>8}" + (f" {ndcg:>8}" if pool else "")]
    for name, m in result["methods"].items():
        hr = "-" if m["hit_rate"] is None else f"{m['hit_rate']:.3f}"
        line = f"{name:<24} {hr:>8}  [{m['ci_low']:.3f}, {m['ci_high']:.3f}]  {m['n']:>5} {m['failures']:>8}"
        if pool:
            line += " " + ("-" if m.get(ndcg) is None else f"{m[ndcg]:.3f}").rjust(8)
        lines.append(line)
    for name, m in result["methods"].items():
        for base, d in m.get("vs", {}).items():
            if d["n"]:
                lines.append(f"{name} - {base}: {d['diff']:+.3f} [{d['ci_low']:+.3f}, {d['ci_high']:+.3f}] "
                             f"(paired, {d['n']} queries)")
    for name, m in result["methods"].items():
        if "agreement" in m:
            lines.append(f"{name}: the reward model fitted on {m['distill_n'] - m['heldout_n']} answers agrees with "
                         f"{m['agreement']:.3f} of {m['heldout_n']} held-out ones and picks the source's choice for "
                         f"{m['eval_agreement']:.3f} of the evaluation queries; the source's hit rate on the "
                         f"distillation queries: {m['source_hit_rate']:.3f}")
    s = result["llm"]
    lines.append(f"llm: {s['calls']} calls, {s['cache_hits']} cache hits, {s['failures']} failures, "
                 f"{s['prompt_tokens']} prompt + {s['completion_tokens']} completion tokens")
    return "\n".join(lines)
