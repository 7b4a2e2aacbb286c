"""iALP step 1: the offline world (logged data + its simulator) and LLM preference distillation.

For a logged data set, the log's users are split into training users (whose logs are distilled and whose
fitted model is the offline simulator) and held-out users (the target population). For a synthetic
environment there is no real log: training users are simulated under a uniformly random logging policy,
and a ``LoggedUserModel`` fitted on that log is the offline "logged-data simulator".

Distillation samples ``queries`` user states from the training log (a history window before a logged
interaction), K candidates each (the user's actual next item with probability ``positive_fraction``, the
rest uniform), and asks a :class:`~ialp.llm.preferences.PreferenceExtractor` which one the user prefers.
LLM calls therefore scale with ``queries`` only. Failed queries are dropped from the data set and counted
(with their reasons) in the stage's statistics; they are never turned into a default answer.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ialp.agents.common import ModelView, World
from ialp.config import ExperimentConfig
from ialp.data import InteractionLog, ItemCatalog, LoadReport, LoggedData
from ialp.envs.registration import MAX_EPISODE_STEPS, build_parts
from ialp.envs.vector import BatchedRecEnv
from ialp.llm.base import LLMConfig
from ialp.rewards.model import PreferenceSet, state_features
from ialp.simulators import LoggedUserModel, MFConfig, SyntheticUserModel, UserModel
from ialp.storage import stage_key


def simulate_log(model: UserModel, env_kwargs: dict[str, Any], max_steps: int, n_users: int,
                 seed: int) -> tuple[InteractionLog, np.ndarray, dict[str, np.ndarray]]:
    """One episode per user under a uniformly random logging policy.

    Returns:
        The log (user = episode), the users' observable features (n_users, F), and the ground-truth user
        state before each logged interaction (aligned with the log's rows).
    """
    venv = BatchedRecEnv(model, n_users, max_episode_steps=max_steps, **env_kwargs)
    venv.seed(seed)
    venv.reset()
    face = venv.face
    rng = np.random.default_rng(seed)
    features = model.user_features(face.user_state()).copy()
    active = np.ones(n_users, dtype=bool)
    users, items, feedback, times = [], [], [], []
    states: dict[str, list[np.ndarray]] = {}
    t = 0
    while active.any():
        rows = np.flatnonzero(active)
        for k, v in face.user_state(rows).items():  # the ground truth before the step, for the oracle
            states.setdefault(k, []).append(v)
        _, rewards, dones, infos = venv.step(rng.integers(0, venv.action_space.n, n_users))
        users.append(rows)
        items.append(np.array([infos[i]["item"] for i in rows.tolist()], dtype=np.int64))
        feedback.append(rewards[rows])
        times.append(np.full(len(rows), t))
        active &= ~dones
        t += 1
    u, i, f, ts = (np.concatenate(x) for x in (users, items, feedback, times))
    order = np.lexsort((ts, u))
    log = InteractionLog(users=u[order], items=i[order], feedback=f[order], timestamps=ts[order],
                         user_ids=np.arange(n_users), feedback_range=model.reward_range,
                         name="simulated-random-policy", n_items=model.n_items)
    return log, features, {k: np.concatenate(v)[order] for k, v in states.items()}


def attach_candidates(world: World, cfg: ExperimentConfig, catalog: ItemCatalog, folder: Path | None = None,
                      progress: bool = False) -> World:
    """Train (or load from ``folder``) the ``candidates`` generator on the world's training log and pass it to
    both environments (``env_kwargs["candidates"]``); without a ``candidates`` section ``world`` is unchanged."""
    cc = cfg.candidates
    if cc is None:
        return world
    from ialp.candidates.generator import SERVING, fit_or_load

    cc = dataclasses.replace(cc, progress=progress and cc.progress,
                             data_dir=cc.data_dir or str(cfg.env.kwargs.get("data_dir", "")))
    deps = [cfg.to_dict()["env"], {k: v for k, v in cc.to_dict().items() if k not in SERVING}]
    if world.synthetic:
        deps.append([cfg.distill.log_users, cfg.distill.log_seed_offset])
    key = stage_key(*deps)
    data = LoggedData(world.log, catalog, LoadReport(world.log.name, len(world.log), len(world.log)))
    gen = fit_or_load(cc, data, folder, key)
    world.env_kwargs["candidates"] = gen
    world.info["candidates"] = {"model": cc.model, "k": gen.k, **{m: gen.metrics.get(m) for m in ("hr@10", "ndcg@10")}}
    return world


def build_world(cfg: ExperimentConfig, cache_dir: Path | None = None, candidates_dir: Path | None = None,
                progress: bool = False) -> World:
    """The target environment's model, the logged training data and the offline simulator fitted on it.

    With a ``candidates`` section, a candidate generator trained on the training log (stored in and reloaded
    from ``candidates_dir``) proposes the actions of both environments (see ``attach_candidates``).
    """
    env_id = cfg.env.id
    model, env_kw = build_parts(env_id, cfg.env.kwargs)
    env_kw.pop("render_mode", None)
    cap = MAX_EPISODE_STEPS
    if isinstance(model, SyntheticUserModel):
        log, feats, states = simulate_log(model, env_kw, cap, cfg.distill.log_users, cfg.distill.log_seed_offset)
        data = LoggedData(log, model.catalog, LoadReport("simulated", len(log), len(log)), user_features=feats)
        fitted = LoggedUserModel(data, MFConfig(), cache_dir=cache_dir, verbose=False)
        offline = ModelView(fitted, item_embeddings=model.item_embeddings, user_features=feats)
        world = World(model, offline, env_kw, cap, log, feats, states, synthetic=True,
                      info={"train_users": log.n_users, "log_interactions": len(log)})
        return attach_candidates(world, cfg, model.catalog, candidates_dir, progress)
    if not isinstance(model, LoggedUserModel):
        raise TypeError(f"{env_id}: unsupported user model {type(model).__name__}")
    data = model.data  # the data the registered factory loaded (with its loader options, e.g. KuaiRec's matrix)
    n = data.log.n_users
    perm = np.random.default_rng(cfg.env.split_seed).permutation(n)
    n_eval, n_online = max(1, round(cfg.env.eval_fraction * n)), max(1, round(cfg.env.online_fraction * n))
    held, online_users = np.sort(perm[:n_eval]), np.sort(perm[n_eval:n_eval + n_online])
    train = np.sort(perm[n_eval + n_online:])
    train_log = data.log.select(np.isin(data.log.users, train), name=f"{data.log.name}:train-users")
    mf = cfg.env.kwargs.get("mf") or {}
    fitted = LoggedUserModel(LoggedData(train_log, data.catalog, data.report), mf=MFConfig(**mf),
                             cache_dir=cache_dir, verbose=False)
    feats = model.user_features({"user": np.arange(n)})
    offline = ModelView(fitted, item_embeddings=fitted.item_embeddings, user_features=feats, users=train)
    target = ModelView(model, item_embeddings=fitted.item_embeddings, user_features=feats, users=held)
    online = ModelView(model, item_embeddings=fitted.item_embeddings, user_features=feats, users=online_users)
    world = World(target, offline, env_kw, cap, train_log, feats, None, synthetic=False, online=online,
                  info={"train_users": len(train), "online_users": len(online_users), "eval_users": len(held),
                        "log_interactions": len(train_log)})
    return attach_candidates(world, cfg, data.catalog, candidates_dir, progress)


@dataclass
class StateSample:
    """Logged states: history windows (N, W) with feedback, the user, the next logged item and its feedback."""

    hist_items: np.ndarray
    hist_feedback: np.ndarray
    users: np.ndarray
    rows: np.ndarray
    next_items: np.ndarray
    next_feedback: np.ndarray

    def observations(self, world: World) -> dict[str, np.ndarray]:
        """The observation dicts (batch-first) a catalogue environment of the ``free`` setting would show in
        these states (nothing ``blocked``)."""
        emb = world.offline.item_embeddings
        mask = (self.hist_items >= 0).astype(np.float32)
        hist = emb[np.maximum(self.hist_items, 0)] * mask[..., None]
        return {"history": hist.astype(np.float32), "feedback": (self.hist_feedback * mask).astype(np.float32),
                "mask": mask, "user": world.user_features[self.users].astype(np.float32),
                "blocked": np.full((len(self.users), world.max_episode_steps), -1.0, dtype=np.float32)}


def sample_states(log: InteractionLog, n: int, window: int, rng: np.random.Generator,
                  min_history: int = 1) -> StateSample:
    """``n`` logged positions with at least ``min_history`` earlier interactions of the same user."""
    counts = np.bincount(log.users, minlength=log.n_users)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    position = np.arange(len(log)) - starts[log.users]
    eligible = np.flatnonzero(position >= min_history)
    if not len(eligible):
        raise ValueError("the log has no user with enough interactions to sample states from")
    rows = rng.choice(eligible, size=n, replace=len(eligible) < n)
    hist = np.full((n, window), -1, dtype=np.int64)
    fb = np.zeros((n, window), dtype=np.float32)
    for j, r in enumerate(rows):
        first = max(starts[log.users[r]], r - window)
        hist[j, window - (r - first):] = log.items[first:r]
        fb[j, window - (r - first):] = log.feedback[first:r]
    return StateSample(hist, fb, log.users[rows], rows, log.items[rows], log.feedback[rows])


def distill(world: World, cfg: ExperimentConfig, llm: LLMConfig | None = None,
            progress: bool = True) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Ask the LLM (or oracle) ``cfg.distill.queries`` questions about training users' logged states.

    Returns:
        Arrays (the sampled states, ``candidates`` (N, K), ``choice`` (N,), -1 where the query failed) and
        statistics: successes, failures by reason, answer-position histogram, the LLM's own counters.
    """
    from ialp.llm import make_backend
    from ialp.llm.preferences import PreferenceExtractor
    from ialp.llm.prompts import PreferenceQuery

    d = cfg.distill
    llm = cfg.llm if llm is None else llm
    rng = np.random.default_rng(d.seed)
    w = int(world.env_kwargs.get("history_len", 10))
    states = sample_states(world.log, d.queries, max(w, d.window), rng)
    n_items = world.target.n_items
    cands = np.zeros((d.queries, d.k), dtype=np.int64)
    for j in range(d.queries):
        banned = set(states.hist_items[j][states.hist_items[j] >= 0].tolist())
        pool = [int(states.next_items[j])] if rng.random() < d.positive_fraction else []
        banned.update(pool)
        while len(pool) < d.k:
            c = int(rng.integers(0, n_items))
            if c not in banned:
                banned.add(c)
                pool.append(c)
        cands[j] = rng.permutation(pool)
    kwargs = {"truth": world.target} if llm.backend == "oracle" else {}
    backend = make_backend(llm, **kwargs)
    extractor = PreferenceExtractor(backend, world.target.catalog, mode=d.mode)
    lo_hi = world.log.feedback_range
    queries = []
    for j in range(d.queries):
        keep = states.hist_items[j] >= 0
        items = states.hist_items[j][keep][-d.window:]
        fb = states.hist_feedback[j][keep][-d.window:]
        user_state = ({k: v[states.rows[j]:states.rows[j] + 1] for k, v in world.log_states.items()}
                      if world.log_states is not None else None)
        queries.append(PreferenceQuery(tuple(int(i) for i in items), tuple(float(f) for f in fb),
                                       tuple(int(c) for c in cands[j]), lo_hi,
                                       user=None if world.synthetic else int(states.users[j]),
                                       user_state=user_state))
    choice = np.full(d.queries, -1, dtype=np.int64)
    reasons: Counter[str] = Counter()
    batch = 16
    try:
        for start in tqdm(range(0, d.queries, batch), desc=f"distil ({llm.backend})", unit="batch",
                          disable=not progress):
            for j, pref in enumerate(extractor.prefer(queries[start:start + batch]), start):
                if not pref.ok:
                    reasons[(pref.reason or "unknown").split(":")[0]] += 1
                    continue
                c = int(pref.choice)  # type: ignore[arg-type]
                if d.invert:
                    if pref.scores is not None:
                        c = int(np.argmin(pref.scores))
                    elif d.k == 2:
                        c = 1 - c
                    else:
                        raise ValueError("distill.invert needs answer scores (score mode, oracle) or k = 2")
                choice[j] = c
    finally:
        backend.close()
    ok = choice >= 0
    stats = {"queries": int(d.queries), "ok": int(ok.sum()), "failed": int((~ok).sum()),
             "failure_reasons": dict(reasons), "position_histogram": np.bincount(choice[ok], minlength=d.k).tolist(),
             "positive_chosen": float((cands[ok, choice[ok]] == states.next_items[ok]).mean()) if ok.any() else 0.0,
             "extractor": extractor.stats(), "llm": backend.stats.as_dict(), "backend": llm.backend}
    arrays = {"hist_items": states.hist_items[:, -w:], "hist_feedback": states.hist_feedback[:, -w:],
              "users": states.users, "rows": states.rows, "next_items": states.next_items,
              "next_feedback": states.next_feedback, "candidates": cands, "choice": choice}
    return arrays, stats


def preference_set(world: World, arrays: dict[str, np.ndarray]) -> PreferenceSet:
    """The successful preferences as reward-model training data (state features from the observations)."""
    ok = arrays["choice"] >= 0
    obs = _sample(arrays).observations(world)
    feats = state_features(obs, world.log.feedback_range)
    return PreferenceSet(feats[ok], arrays["candidates"][ok], arrays["choice"][ok])


def _sample(arrays: dict[str, np.ndarray]) -> StateSample:
    return StateSample(arrays["hist_items"], arrays["hist_feedback"], arrays["users"], arrays["rows"],
                       arrays["next_items"], arrays["next_feedback"])


def logged_feedback_set(world: World, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(state features, shown item, logged feedback) of ``n`` logged interactions, for the log-only ablation."""
    w = int(world.env_kwargs.get("history_len", 10))
    states = sample_states(world.log, n, w, np.random.default_rng(seed), min_history=0)
    feats = state_features(states.observations(world), world.log.feedback_range)
    return feats, states.next_items, states.next_feedback
