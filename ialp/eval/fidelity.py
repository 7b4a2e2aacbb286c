"""Simulator fidelity: how closely a fitted simulator behaves like the users it was fitted on.

Every figure compares the simulator with the log on interactions the simulator's fit never saw, next to a
baseline that gives the number a scale.

**Held out.** The logged simulators (``ialp.simulators.logged``) fit matrix factorisation on the first
``1 - holdout_fraction`` of each user's interactions in time order (``InteractionLog.split_by_time``). The
report uses the same split: every user is known to the model, but the held-out tail of each user's history
(10% by default) was never seen by the fit. Sessions are cut in that tail by time gaps; a user's first held-out
session may start mid-visit (the split ignores session boundaries), for the simulator and the log alike.

Sections of the report (all on the held-out interactions):

* ``response``: predicted vs logged feedback. RMSE/MAE against predict-the-mean and per-user-mean baselines,
  bias, a calibration curve (equal-count bins of the prediction), per-user Spearman against an item-mean
  baseline, AUC for 0/1 feedback.
* ``choice``: the logged items replayed through the simulator. Earth mover's distance of the feedback
  distributions (baseline: a simulator that always answers the training mean); Jensen–Shannon distances (base 2,
  in [0, 1]) of the popularity profile (log2 training-count buckets) and of the tags (genres, categories) of the
  *liked* items (feedback >= ``like_threshold``); Gini and long-tail share of the liked items. The baseline is
  the shuffled log: the logged feedback permuted across the held-out interactions, which keeps its distribution
  but forgets which items were liked.
* ``session``: the env's leave rules applied along the logged sessions (logged items, simulated feedback).
  Simulated length = the step at which a rule first fires (else the logged length). EMD of the lengths, share of
  sessions the rules end early, per-rule trigger rates (share of steps at which the rule fires). Baselines:
  sessions of the same lengths filled with items shuffled across the held-out log, and a rule that ends every
  session after its first item (the largest possible EMD and early-end share).
* ``policy``: fixed policies (greedy on the simulator's own model, popularity, random, and their reverses) ranked
  by simulated return and by a replay estimate on the log (the logged feedback of the item each policy ranks
  first among a user's held-out items); Spearman between the two rankings (chance: 0).
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ialp import random as crng
from ialp.data import InteractionLog, ItemCatalog, LoggedData
from ialp.envs.registration import ENVIRONMENTS, build_parts
from ialp.simulators.leave import LeaveRule
from ialp.simulators.logged import LoggedUserModel, MFConfig, roc_auc

LOGGED_ENVS: tuple[str, ...] = tuple(env_id for env_id, env in ENVIRONMENTS.items() if env.dataset is not None)
"""The registered ids whose simulator is fitted on a log."""
POLICIES = ("greedy", "popularity", "random", "unpopular", "anti-greedy")
ENV_OPTIONS = ("history_len", "repeat", "repeat_penalty")


@dataclass(frozen=True)
class FidelityOptions:
    """Settings of the fidelity report.

    Attributes:
        gap: seconds without an interaction after which a logged session ends.
        bins: calibration bins (equal-count bins of the prediction).
        min_user_items: held-out interactions a user needs for the per-user rank correlation.
        like_threshold: feedback at or above which an interaction counts as liked in the choice figures;
            None: the mean feedback of the fitted part of the log.
        head_fraction: share of the catalogue, most popular in the fitted part first, that is the head; the
            rest is the long tail.
        policy_users: simulated users (one episode each) per policy in the policy check.
        max_episode_steps: session cap of those episodes (the registered envs use 50).
        seed: seed of the simulator's noise, the shuffles and the random policy.
    """

    gap: float = 1800.0
    bins: int = 10
    min_user_items: int = 3
    like_threshold: float | None = None
    head_fraction: float = 0.2
    policy_users: int = 256
    max_episode_steps: int = 50
    seed: int = 0

    def __post_init__(self) -> None:
        if self.gap <= 0 or self.bins < 1 or self.min_user_items < 2:
            raise ValueError(f"need gap > 0, bins >= 1, min_user_items >= 2; got {self.gap}, {self.bins}, "
                             f"{self.min_user_items}")
        if not 0.0 < self.head_fraction < 1.0:
            raise ValueError(f"head_fraction must be in (0, 1), got {self.head_fraction}")
        if self.policy_users < 1 or self.max_episode_steps < 1:
            raise ValueError(f"policy_users and max_episode_steps must be >= 1, got {self.policy_users}, "
                             f"{self.max_episode_steps}")


def fidelity_report(env_id: str, data_dir: str | Path, out: str | Path | None = None, *,
                    options: FidelityOptions | None = None, **env_kwargs: Any) -> dict[str, Any]:
    """The fidelity report of a registered logged env's simulator, as plain JSON-ready data.

    Args:
        env_id: ``ialp/MovieLens-v0``, ``ialp/KuaiRec-v0`` or ``ialp/KuaiRand-v0``.
        data_dir: the data folder the simulator is fitted on.
        out: if given, also write ``fidelity.json``, ``fidelity.md`` and PNG plots there (``write_report``).
        options: report settings.
        **env_kwargs: env arguments as for ``gym.make`` (``mf``, ``reward_noise``, ``leave_rules``, ``matrix``
            for KuaiRec, ``feedback`` for KuaiRand, ``history_len``, ``repeat``...).

    Returns:
        ``{"env", "data", "heldout", "options", "leave_rules", "response", "choice", "session", "policy"}``.
    """
    if env_id not in LOGGED_ENVS:
        raise ValueError(f"fidelity needs a logged env, one of {', '.join(LOGGED_ENVS)}; got {env_id!r}")
    model, env_kw = build_parts(env_id, {**env_kwargs, "data_dir": str(data_dir)})
    if not isinstance(model, LoggedUserModel):
        raise TypeError(f"{env_id}: expected a LoggedUserModel, got {type(model).__name__}")
    data = model.data
    mf = env_kwargs.get("mf") or {}
    holdout = (mf if isinstance(mf, MFConfig) else MFConfig(**mf)).holdout_fraction
    report = {"env": env_id, **assess(data, model, env_kw["leave_rules"], options, holdout_fraction=holdout,
                                      env_kwargs=env_kw)}
    if out is not None:
        write_report(report, out)
    return report


def assess(data: LoggedData, model: LoggedUserModel, leave_rules: Sequence[LeaveRule] = (),
           options: FidelityOptions | None = None, *, holdout_fraction: float = MFConfig.holdout_fraction,
           env_kwargs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Fidelity figures of ``model`` (a simulator fitted on ``data``) under ``leave_rules``.

    Args:
        data: the logged data the model was fitted on.
        model: the simulator; any object with ``LoggedUserModel``'s interface (tests plant distortions this way).
        leave_rules: the env's leave rules.
        options: report settings.
        holdout_fraction: the fit's ``MFConfig.holdout_fraction``; checked against the model's fit report.
        env_kwargs: env options for the policy rollouts (``history_len``, ``repeat``, ``repeat_penalty``).

    Raises:
        ValueError: the split does not match the one the model was fitted with.
    """
    opts = options or FidelityOptions()
    log = data.log
    train, test = log.split_by_time(holdout_fraction)
    fit = model.fit_report
    if (fit.n_train, fit.n_test) != (len(train), len(test)):
        raise ValueError(f"the model was fitted on {fit.n_train} interactions with {fit.n_test} held out, but the "
                         f"split of {log.name} with holdout_fraction={holdout_fraction} gives {len(train)} and "
                         f"{len(test)}: pass the MFConfig the model was fitted with")
    if not len(test):
        raise ValueError(f"{log.name}: no held-out interactions (every user has a single interaction)")
    rng = np.random.default_rng(opts.seed)
    y = test.feedback.astype(np.float64)
    expected, simulated = _replay(model, test.users, test.items, opts.seed, 0)
    threshold = float(train.feedback.mean()) if opts.like_threshold is None else opts.like_threshold
    shuffled_items = test.items[rng.permutation(len(test))]
    report: dict[str, Any] = {
        "data": {"name": log.name, "n_users": log.n_users, "n_items": log.n_items, "n_interactions": len(log),
                 "n_train": len(train), "n_test": len(test), "feedback_range": list(log.feedback_range),
                 "binary": bool(np.isin(log.feedback, (0.0, 1.0)).all())},
        "heldout": f"last {holdout_fraction:.0%} of each user's interactions in time order (the split the "
                   "simulator's own fit holds out)",
        "options": {**asdict(opts), "like_threshold": threshold},
        "leave_rules": [_name(r) for r in leave_rules],
        "response": _response(y, expected, train, test, opts),
        "choice": _choice(y, simulated, rng.permutation(y), threshold, train, test, data.catalog, opts),
        "session": _session(model, leave_rules, test, simulated, shuffled_items, opts),
        "policy": _policy(model, leave_rules, train, test, opts, dict(env_kwargs or {})),
    }
    return _plain(report)


# ----------------------------------------------------------------------------------------------- figures


def _replay(model: LoggedUserModel, users: np.ndarray, items: np.ndarray, seed: int,
            counter: int) -> tuple[np.ndarray, np.ndarray]:
    """The simulator's expected and realised (noisy, as an env step gives) feedback for logged pairs."""
    keys = crng.stream(crng.derive(np.arange(len(users), dtype=np.uint64), seed, counter), crng.Stream.RESPONSE)
    r = model.respond({"user": np.asarray(users)}, np.asarray(items), keys)
    return np.asarray(r.expected, dtype=np.float64), np.asarray(r.reward, dtype=np.float64)


def _group_mean(keys: np.ndarray, values: np.ndarray, n: int, default: float) -> np.ndarray:
    counts = np.bincount(keys, minlength=n)
    sums = np.bincount(keys, weights=values, minlength=n)
    return np.where(counts > 0, sums / np.maximum(counts, 1), default)


def _response(y: np.ndarray, pred: np.ndarray, train: InteractionLog, test: InteractionLog,
              opts: FidelityOptions) -> dict[str, Any]:
    mean = float(train.feedback.mean())
    user_mean = _group_mean(train.users, train.feedback, train.n_users, mean)[test.users]
    item_mean = _group_mean(train.items, train.feedback, train.n_items, mean)[test.items]
    out: dict[str, Any] = {}
    for name, p in (("", pred), ("_mean_baseline", np.full_like(y, mean)), ("_user_mean_baseline", user_mean)):
        out[f"rmse{name}"] = float(np.sqrt(np.mean((p - y) ** 2)))
        out[f"mae{name}"] = float(np.mean(np.abs(p - y)))
    out["bias"] = float(np.mean(pred - y))
    out["spearman"], out["spearman_users"] = _per_user_spearman(test.users, pred, y, opts.min_user_items)
    out["spearman_item_mean_baseline"], _ = _per_user_spearman(test.users, item_mean, y, opts.min_user_items)
    out["calibration"], out["calibration_error"] = _calibration(pred, y, opts.bins)
    _, out["calibration_error_user_mean_baseline"] = _calibration(user_mean, y, opts.bins)
    binary = bool(np.isin(y, (0.0, 1.0)).all() and np.isin(train.feedback, (0.0, 1.0)).all())
    out["auc"] = roc_auc(y, pred) if binary else None
    out["auc_item_mean_baseline"] = roc_auc(y, item_mean) if binary else None
    return out


def _ranks(groups: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Average ranks of ``values`` within each group."""
    return pd.Series(values).groupby(groups).rank().to_numpy()


def _per_user_spearman(users: np.ndarray, pred: np.ndarray, y: np.ndarray,
                       min_items: int) -> tuple[float | None, int]:
    """Mean over users (with >= ``min_items`` held-out interactions whose feedback varies) of the Spearman
    correlation between predicted and logged feedback; a constant prediction counts as 0."""
    n = np.bincount(users)
    rx, ry = _ranks(users, pred), _ranks(users, y)
    dx = rx - (np.bincount(users, weights=rx) / np.maximum(n, 1))[users]
    dy = ry - (np.bincount(users, weights=ry) / np.maximum(n, 1))[users]
    vx, vy = np.bincount(users, weights=dx * dx), np.bincount(users, weights=dy * dy)
    cov = np.bincount(users, weights=dx * dy)
    valid = (n >= min_items) & (vy > 1e-12)
    if not valid.any():
        return None, 0
    rho = np.where(vx[valid] > 1e-12, cov[valid] / np.sqrt(np.maximum(vx[valid] * vy[valid], 1e-24)), 0.0)
    return float(rho.mean()), int(valid.sum())


def _spearman(a: Sequence[float | None], b: Sequence[float | None]) -> float | None:
    if None in a or None in b:
        return None
    rho, _ = _per_user_spearman(np.zeros(len(a), dtype=np.int64), np.asarray(a, float), np.asarray(b, float), 2)
    return rho


def _calibration(pred: np.ndarray, y: np.ndarray, bins: int) -> tuple[dict[str, list[float]], float]:
    """Mean prediction and mean logged feedback per equal-count bin of the prediction, and their weighted mean
    absolute gap (the expected calibration error)."""
    order = np.argsort(pred, kind="stable")
    chunks = [c for c in np.array_split(order, min(bins, len(order))) if len(c)]
    p = np.array([pred[c].mean() for c in chunks])
    t = np.array([y[c].mean() for c in chunks])
    w = np.array([len(c) for c in chunks], dtype=np.float64)
    curve = {"predicted": p.tolist(), "logged": t.tolist(), "count": w.astype(int).tolist()}
    return curve, float((w * np.abs(p - t)).sum() / w.sum())


def _emd(a: np.ndarray, b: np.ndarray) -> float:
    """Earth mover's (Wasserstein-1) distance between two 1-D samples."""
    a, b = np.sort(a), np.sort(b)
    x = np.sort(np.concatenate([a, b]))
    ca = np.searchsorted(a, x[:-1], side="right") / len(a)
    cb = np.searchsorted(b, x[:-1], side="right") / len(b)
    return float((np.abs(ca - cb) * np.diff(x)).sum())


def _js(p: np.ndarray, q: np.ndarray) -> float | None:
    """Jensen–Shannon distance (base 2, in [0, 1]) of two histograms; None if one is empty."""
    if p.sum() <= 0 or q.sum() <= 0:
        return None
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float((a[nz] * np.log2(a[nz] / m[nz])).sum())

    return float(np.sqrt(max(0.5 * kl(p) + 0.5 * kl(q), 0.0)))


def _gini(counts: np.ndarray) -> float | None:
    c = np.sort(np.asarray(counts, dtype=np.float64))
    if c.sum() <= 0:
        return None
    i = np.arange(1, len(c) + 1)
    return float(((2 * i - len(c) - 1) * c).sum() / (len(c) * c.sum()))


def _choice(y: np.ndarray, sim: np.ndarray, shuffled: np.ndarray, threshold: float, train: InteractionLog,
            test: InteractionLog, catalog: ItemCatalog, opts: FidelityOptions) -> dict[str, Any]:
    n_items = test.n_items
    train_counts = np.bincount(train.items, minlength=n_items)
    bucket = np.floor(np.log2(1 + train_counts)).astype(np.int64)
    head = np.zeros(n_items, dtype=bool)
    head[np.argsort(-train_counts, kind="stable")[: int(np.ceil(opts.head_fraction * n_items))]] = True
    tags = catalog.tag_matrix().astype(np.float64)
    tags = np.concatenate([tags, (tags.sum(axis=1) == 0)[:, None]], axis=1)  # last column: untagged
    tags /= tags.sum(axis=1, keepdims=True)
    names = [*catalog.tag_vocabulary(), "(none)"]
    exposed = np.bincount(test.items, minlength=n_items) > 0
    liked = {"log": y >= threshold, "sim": sim >= threshold, "shuffled": shuffled >= threshold}
    counts = {k: np.bincount(test.items[m], minlength=n_items).astype(np.float64) for k, m in liked.items()}
    pop = {k: np.bincount(bucket, weights=c, minlength=bucket.max() + 1) for k, c in counts.items()}
    genre = {k: c @ tags for k, c in counts.items()}
    values = np.unique(y)
    if 2 < len(values) <= 20:  # a rating scale: one bin per logged value
        edges = np.r_[values[0] - (values[1] - values[0]) / 2, (values[1:] + values[:-1]) / 2,
                      values[-1] + (values[-1] - values[-2]) / 2]
    else:
        edges = np.linspace(values[0], max(float(np.quantile(np.r_[y, sim], 0.99)), values[0] + 1e-9), 21)
    top = np.argsort(-genre["log"], kind="stable")[:20]
    mean = float(train.feedback.mean())
    user_mean = _group_mean(train.users, train.feedback, train.n_users, mean)[test.users]
    return {
        "feedback_emd": _emd(sim, y),
        "feedback_emd_mean_baseline": _emd(np.full_like(y, mean), y),
        "feedback_emd_user_mean_baseline": _emd(user_mean, y),
        "popularity_js": _js(pop["sim"], pop["log"]),
        "popularity_js_shuffled": _js(pop["shuffled"], pop["log"]),
        "genre_js": _js(genre["sim"], genre["log"]),
        "genre_js_shuffled": _js(genre["shuffled"], genre["log"]),
        **{f"{fig}_{k}": v for k in liked for fig, v in (
            ("liked_share", float(liked[k].mean())),
            ("gini", _gini(counts[k][exposed])),
            ("long_tail_share", float((counts[k] * ~head).sum() / counts[k].sum()) if counts[k].sum() else None))},
        "feedback_hist": {"edges": edges.tolist(),
                          "log": np.histogram(np.clip(y, edges[0], edges[-1]), edges)[0].tolist(),
                          "sim": np.histogram(np.clip(sim, edges[0], edges[-1]), edges)[0].tolist()},
        "genre_shares": {"tags": [names[j] for j in top],
                         **{k: (g[top] / max(g.sum(), 1e-12)).tolist() for k, g in genre.items()}},
    }


def _session(model: LoggedUserModel, rules: Sequence[LeaveRule], test: InteractionLog, sim: np.ndarray,
             shuffled_items: np.ndarray, opts: FidelityOptions) -> dict[str, Any]:
    new = np.r_[True, (np.diff(test.users) != 0) | (np.diff(test.timestamps) > opts.gap)]
    starts = np.flatnonzero(new)
    lengths = np.diff(np.r_[starts, len(test)])
    _, shuffled_sim = _replay(model, test.users, shuffled_items, opts.seed, 1)
    out: dict[str, Any] = {"n_sessions": len(starts), "mean_length_log": float(lengths.mean()),
                           # scale: a rule that ends every session after its first item
                           "length_emd_leave_at_once": float(lengths.mean() - 1),
                           "early_end_share_leave_at_once": float(np.mean(lengths > 1))}
    for suffix, items, rewards in (("", test.items, sim), ("_shuffled", shuffled_items, shuffled_sim)):
        fired = _fire(model, rules, items, rewards, starts, lengths)
        sim_len = _first_fire(np.any(fired, axis=0), starts, lengths)
        out[f"length_emd{suffix}"] = _emd(sim_len.astype(np.float64), lengths.astype(np.float64))
        out[f"early_end_share{suffix}"] = float(np.mean(sim_len < lengths))
        out[f"mean_length_sim{suffix}"] = float(sim_len.mean())
        out[f"rules{suffix}"] = {_name(r): {"trigger_rate": float(f.mean()),
                                           "early_end_share": float(np.mean(_first_fire(f, starts, lengths) < lengths))}
                                 for r, f in zip(rules, fired, strict=True)}
        if not suffix:
            cap = min(int(lengths.max()), 50)
            out["length_hist"] = {"length": list(range(1, cap + 1)),
                                  "log": np.bincount(np.minimum(lengths, cap), minlength=cap + 1)[1:].tolist(),
                                  "sim": np.bincount(np.minimum(sim_len, cap), minlength=cap + 1)[1:].tolist()}
    return out


def _name(rule: LeaveRule) -> str:
    """A rule's parameters when it is a dataclass (as the shipped rules are), else its class name."""
    return repr(rule) if dataclasses.is_dataclass(rule) else type(rule).__name__


def _fire(model: LoggedUserModel, rules: Sequence[LeaveRule], items: np.ndarray, rewards: np.ndarray,
          starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Whether each rule fires at each interaction when the sessions are replayed from an empty history: bool
    (n_rules, n_interactions). Every step is evaluated, also after a rule has fired."""
    fired = np.zeros((len(rules), len(items)), dtype=bool)
    order = np.argsort(-lengths, kind="stable")  # longest first: the sessions still running are a prefix
    first, n_left = starts[order], lengths[order]
    states = [r.init_state(len(starts)) for r in rules]
    history = np.full((len(starts), max([1, *(r.window for r in rules)])), -1, dtype=np.int64)
    for t in range(int(n_left.max())):
        m = int((n_left > t).sum())
        idx = first[:m] + t
        for j, (rule, state) in enumerate(zip(rules, states, strict=True)):
            view = {k: v[:m] for k, v in state.items()}  # prefix views: rules update their state in place
            fired[j, idx] = rule.leaves(model, view, items[idx], rewards[idx], history[:m])
        history[:m, :-1] = history[:m, 1:]
        history[:m, -1] = items[idx]
    return fired


def _first_fire(fired: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Simulated session lengths: 1 + the step at which a rule first fires, else the logged length."""
    pos = np.arange(len(fired)) - np.repeat(starts, lengths)
    first = np.minimum.reduceat(np.where(fired, pos, len(fired)), starts)
    return np.minimum(first + 1, lengths)


class _ScorePolicy:
    """Recommends the best-scoring item not yet shown in the session."""

    def __init__(self, score: Callable[[np.ndarray], np.ndarray]) -> None:
        self.score = score
        self.shown: np.ndarray | None = None

    def act(self, obs: dict[str, np.ndarray], venv: Any) -> np.ndarray:
        face = venv.face
        if self.shown is None:
            self.shown = np.zeros((face.num_users, venv.model.n_items), dtype=bool)
        self.shown[face.steps() == 0] = False
        actions = np.where(self.shown, -np.inf, self.score(face.user_state()["user"])).argmax(axis=1)
        self.shown[np.arange(face.num_users), actions] = True
        return actions


def _scores(name: str, model: LoggedUserModel, popularity: np.ndarray, rng: np.random.Generator, seed: int,
            users: np.ndarray, items: np.ndarray | None = None) -> np.ndarray:
    """Scores of policy ``name`` for aligned (users, items), or for every item, (B, N), when ``items`` is None.

    ``greedy`` scores by the simulator's own expected feedback (it knows the user, as ``OraclePolicy`` does).
    """
    sign = -1.0 if name in ("unpopular", "anti-greedy") else 1.0
    if name == "random":
        return rng.random((len(users), model.n_items) if items is None else len(items))
    if name in ("popularity", "unpopular"):
        s = np.broadcast_to(popularity, (len(users), len(popularity))) if items is None else popularity[items]
    else:
        s = model.expected_rewards({"user": users}) if items is None else _replay(model, users, items, seed, 2)[0]
    return sign * s


def _policy(model: LoggedUserModel, rules: Sequence[LeaveRule], train: InteractionLog, test: InteractionLog,
            opts: FidelityOptions, env_kwargs: dict[str, Any]) -> dict[str, Any]:
    from ialp.agents.baselines import PopularityPolicy
    from ialp.envs.vector import BatchedRecEnv
    from ialp.eval.rollout import evaluate

    popularity = PopularityPolicy(train.items, train.feedback, train.n_items).scores
    y = test.feedback.astype(np.float64)
    group_start = np.flatnonzero(np.r_[True, np.diff(test.users) != 0])  # the log is sorted by user
    eligible = np.diff(np.r_[group_start, len(test)]) >= 2
    venv = BatchedRecEnv(model, opts.policy_users, max_episode_steps=opts.max_episode_steps, leave_rules=rules,
                         **{k: v for k, v in env_kwargs.items() if k in ENV_OPTIONS})
    rows: dict[str, dict[str, Any]] = {}
    for p, name in enumerate(POLICIES):
        score = functools.partial(_scores, name, model, popularity, np.random.default_rng([opts.seed, p]), opts.seed)
        # log: each eligible user's held-out item the policy ranks first (ties: earliest), its logged feedback
        s = score(test.users, test.items)
        best = np.lexsort((np.arange(len(test)), -s, test.users))[group_start][eligible]
        stats = evaluate(_ScorePolicy(score), venv, seed=opts.seed)
        rows[name] = {"sim_return": float(stats.returns.mean()), "sim_avg_reward": stats.avg_reward,
                      "sim_length": float(stats.lengths.mean()),
                      "log_estimate": float(y[best].mean()) if len(best) else None,
                      "log_se": float(y[best].std(ddof=1) / np.sqrt(len(best))) if len(best) > 1 else None}
    log_est = [r["log_estimate"] for r in rows.values()]
    return {"policies": rows, "log_users": int(eligible.sum()),
            "spearman": _spearman([r["sim_return"] for r in rows.values()], log_est),
            "spearman_avg_reward": _spearman([r["sim_avg_reward"] for r in rows.values()], log_est)}


def _plain(x: Any) -> Any:
    """JSON-ready copy: numpy scalars to Python numbers, NaN and infinities to None."""
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not np.isfinite(x):
        return None
    return x


# ----------------------------------------------------------------------------------------------- output

_ROWS: tuple[tuple[str, str, str, str | None, str | None, str], ...] = (
    # section, label, simulator key, log key, baseline key, what the baseline is
    ("response", "RMSE", "rmse", None, "rmse_mean_baseline", "predict the training mean"),
    ("response", "RMSE", "rmse", None, "rmse_user_mean_baseline", "predict the user's training mean"),
    ("response", "MAE", "mae", None, "mae_mean_baseline", "predict the training mean"),
    ("response", "MAE", "mae", None, "mae_user_mean_baseline", "predict the user's training mean"),
    ("response", "bias (mean predicted − logged)", "bias", None, None, "0 is unbiased"),
    ("response", "calibration error", "calibration_error", None, "calibration_error_user_mean_baseline",
     "user's training mean"),
    ("response", "per-user Spearman", "spearman", None, "spearman_item_mean_baseline", "item's training mean"),
    ("response", "AUC", "auc", None, "auc_item_mean_baseline", "item's training mean (random: 0.5)"),
    ("choice", "feedback EMD", "feedback_emd", None, "feedback_emd_mean_baseline", "predict the training mean"),
    ("choice", "popularity JS of liked items", "popularity_js", None, "popularity_js_shuffled", "shuffled log"),
    ("choice", "genre JS of liked items", "genre_js", None, "genre_js_shuffled", "shuffled log"),
    ("choice", "liked share", "liked_share_sim", "liked_share_log", "liked_share_shuffled", "shuffled log"),
    ("choice", "Gini of liked items", "gini_sim", "gini_log", "gini_shuffled", "shuffled log"),
    ("choice", "long-tail share of liked items", "long_tail_share_sim", "long_tail_share_log",
     "long_tail_share_shuffled", "shuffled log"),
    ("session", "session length EMD", "length_emd", None, "length_emd_shuffled", "shuffled items"),
    ("session", "session length EMD", "length_emd", None, "length_emd_leave_at_once", "leave after one item"),
    ("session", "share of sessions ended early", "early_end_share", None, "early_end_share_shuffled",
     "shuffled items"),
    ("session", "share of sessions ended early", "early_end_share", None, "early_end_share_leave_at_once",
     "leave after one item"),
    ("session", "mean session length", "mean_length_sim", "mean_length_log", "mean_length_sim_shuffled",
     "shuffled items"),
)


def _fmt(v: Any) -> str:
    return "–" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)


def format_report(report: Mapping[str, Any]) -> str:
    """The report as Markdown: every figure next to the log's value and its baseline."""
    d = report["data"]
    lines = [f"# Simulator fidelity: {report.get('env', '')} on {d['name']}", "",
             f"Held out: {report['heldout']}: {d['n_test']} interactions of {d['n_users']} users "
             f"({d['n_train']} fitted). Leave rules: {', '.join(report['leave_rules']) or 'none'}.", "",
             "| section | figure | simulator | log | baseline | baseline is |", "|---|---|---:|---:|---:|---|"]
    for section, label, key, log_key, base_key, base in _ROWS:
        s = report[section]
        lines.append(f"| {section} | {label} | {_fmt(s.get(key))} | {_fmt(s.get(log_key) if log_key else None)} | "
                     f"{_fmt(s.get(base_key) if base_key else None)} | {base} |")
    ses = report["session"]
    for rule, r in ses["rules"].items():
        shuffled = ses["rules_shuffled"][rule]
        for fig in ("trigger_rate", "early_end_share"):
            lines.append(f"| session | {rule} {fig.replace('_', ' ')} | {_fmt(r[fig])} | – | {_fmt(shuffled[fig])} "
                         "| shuffled items |")
    pol = report["policy"]
    lines += ["", f"Policies: simulated ({report['options']['policy_users']} users) vs replay estimate on the log "
              f"({pol['log_users']} users; the logged feedback of the held-out item each policy ranks first).", "",
              "| policy | simulated return | simulated reward/step | simulated length | log estimate ± s.e. |",
              "|---|---:|---:|---:|---:|"]
    for name, r in pol["policies"].items():
        lines.append(f"| {name} | {_fmt(r['sim_return'])} | {_fmt(r['sim_avg_reward'])} | {_fmt(r['sim_length'])} "
                     f"| {_fmt(r['log_estimate'])} ± {_fmt(r['log_se'])} |")
    lines += ["", f"Spearman of the policy rankings, simulated return vs log: {_fmt(pol['spearman'])}; simulated "
              f"reward per step vs log: {_fmt(pol['spearman_avg_reward'])} (chance: 0)."]
    return "\n".join(lines) + "\n"


def write_report(report: Mapping[str, Any], out_dir: str | Path) -> list[Path]:
    """Write ``fidelity.json``, ``fidelity.md`` and PNG plots (calibration, feedback, genres, session lengths).

    Returns:
        The paths written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "fidelity.json", out / "fidelity.md"]
    paths[0].write_text(json.dumps(report, indent=1) + "\n")
    paths[1].write_text(format_report(report))
    cal, choice, ses = report["response"]["calibration"], report["choice"], report["session"]
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    ax = axes[0, 0]
    lo, hi = report["data"]["feedback_range"]
    ax.plot([lo, hi], [lo, hi], color="grey", lw=1, ls="--", label="perfect")
    ax.plot(cal["predicted"], cal["logged"], marker="o", label="simulator")
    ax.set(xlabel="mean predicted feedback (equal-count bins)", ylabel="mean logged feedback", title="calibration")
    ax.legend(fontsize=8)
    ax = axes[0, 1]
    hist, edges = choice["feedback_hist"], np.asarray(choice["feedback_hist"]["edges"])
    for k in ("log", "sim"):
        ax.stairs(np.asarray(hist[k]) / max(sum(hist[k]), 1), edges, label=k)
    ax.set(xlabel="feedback on held-out items", ylabel="share", title="feedback distribution")
    ax.legend(fontsize=8)
    ax = axes[1, 0]
    g = choice["genre_shares"]
    x = np.arange(len(g["tags"]))
    for i, k in enumerate(("log", "sim", "shuffled")):
        ax.bar(x + (i - 1) * 0.27, g[k], width=0.27, label=k)
    ax.set_xticks(x, g["tags"], rotation=60, ha="right", fontsize=7)
    ax.set(ylabel="share of liked items", title="tags of liked items")
    ax.legend(fontsize=8)
    ax = axes[1, 1]
    lh = ses["length_hist"]
    for k in ("log", "sim"):
        ax.bar(np.asarray(lh["length"]) + (-0.2 if k == "log" else 0.2), lh[k], width=0.4, label=k)
    ax.set(xlabel="session length (last bin: this or longer)", ylabel="sessions", title="session lengths")
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(out / "fidelity.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)
    return paths


__all__ = ["LOGGED_ENVS", "POLICIES", "FidelityOptions", "assess", "fidelity_report", "format_report",
           "write_report"]
