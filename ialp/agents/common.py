"""Shared pieces of the agents: model views, the offline/target world, SB3 factories and the episode recorder.

Observation consistency (why :class:`ModelView` exists): a policy pretrained offline must see the same
observation space and the same item representation in the target environment, or its weights mean nothing
there. Both environments are therefore built over views of their user models that share ONE item-embedding
table and one user-feature function:

- Synthetic: the items' public topic mixtures (the catalogue's metadata, what any recommender would have);
  user features are the simulator's observable features, recorded in the log for the logged users.
- Logged data (MovieLens, ...): the item factors and item biases of the matrix factorisation fitted on the
  TRAINING users' log only (held-out users' data never shape what the agent sees); user features are the log's
  public per-user statistics (activity, mean rating).

The ground-truth dynamics are untouched: a view only changes what the agent observes and which users a
session samples (``users=``: the training users offline, the held-out users online and in evaluation).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv

from ialp import random as crng
from ialp.config import AgentConfig
from ialp.envs.vector import BatchedRecEnv
from ialp.simulators.base import Response, UserModel, UserState
from ialp.simulators.leave import LeaveRule


class ModelView(UserModel):
    """A user model seen through a fixed item-embedding table, user-feature function and user subset.

    Args:
        base: The model whose dynamics are used.
        item_embeddings: (N, d) float32 in [-1, 1] shown to the agent instead of ``base.item_embeddings``.
        user_features: Replaces ``base.user_features``: a table (n_users, F) indexed by ``state["user"]``,
            or a function of the state.
        users: Logged models only: sessions sample uniformly from these user indices.
    """

    def __init__(self, base: UserModel, item_embeddings: np.ndarray | None = None,
                 user_features: np.ndarray | Callable[[UserState], np.ndarray] | None = None,
                 users: np.ndarray | None = None) -> None:
        self.base = base
        self.catalog = base.catalog
        self.reward_range = base.reward_range
        emb = base.item_embeddings if item_embeddings is None else np.asarray(item_embeddings, np.float32)
        if emb.shape[0] != base.n_items:
            raise ValueError(f"item_embeddings has {emb.shape[0]} rows; the catalogue has {base.n_items} items")
        self.item_embeddings = emb
        self._features = user_features
        if isinstance(user_features, np.ndarray):
            self.user_feature_dim = int(user_features.shape[1])
        elif user_features is not None:
            self.user_feature_dim = int(np.asarray(user_features(self._probe_state())).shape[-1])
        else:
            self.user_feature_dim = base.user_feature_dim
        self.users = None if users is None else np.asarray(users, dtype=np.int64)
        if self.users is not None and not len(self.users):
            raise ValueError("users must not be empty")

    def _probe_state(self) -> UserState:
        return self.base.init_state(np.array([1], dtype=np.uint64))

    def init_state(self, keys: np.ndarray) -> UserState:
        state = self.base.init_state(keys)
        if self.users is not None:
            u = crng.uniform(crng.derive(keys, 7), 1)[:, 0]
            state["user"] = self.users[np.minimum((u * len(self.users)).astype(np.int64), len(self.users) - 1)]
        return state

    def respond(self, state: UserState, items: np.ndarray, keys: np.ndarray) -> Response:
        return self.base.respond(state, items, keys)

    def expected_rewards(self, state: UserState) -> np.ndarray:
        return self.base.expected_rewards(state)

    def warm_history(self, state: UserState, n: int) -> tuple[np.ndarray, np.ndarray] | None:
        return self.base.warm_history(state, n)

    def user_features(self, state: UserState) -> np.ndarray:
        if self._features is None:
            return self.base.user_features(state)
        if isinstance(self._features, np.ndarray):
            return self._features[state["user"]]
        return np.asarray(self._features(state), dtype=np.float32)


@dataclass
class World:
    """The environments of an experiment and what was logged.

    Attributes:
        target: Ground-truth model over the evaluation users.
        offline: The logged-data simulator (fitted on the training users' log), same observation space.
        env_kwargs: Environment arguments shared by all (history length, leave rules, candidates, ...).
        max_episode_steps: Session cap.
        log: The training users' interaction log (``ialp.data.InteractionLog``).
        user_features: (n_log_users, F) observable features of the logged users.
        log_states: Synthetic only: the ground-truth user state before each logged interaction (for the oracle).
        synthetic: Whether target users are generated (True) or drawn from a log (False).
        info: Sizes of the user pools and other facts for the summary.
        offline_leave_rules: Leave rules of the offline simulator only (``pretrain.leave_rules``).
        online: Ground-truth model over the online-adaptation users (default: ``target``; synthetic users are
            told apart by their seeds instead).
    """

    target: UserModel
    offline: UserModel
    env_kwargs: dict[str, Any]
    max_episode_steps: int
    log: Any
    user_features: np.ndarray
    log_states: dict[str, np.ndarray] | None = None
    synthetic: bool = True
    info: dict[str, Any] = field(default_factory=dict)
    offline_leave_rules: tuple[LeaveRule, ...] = ()
    online: UserModel | None = None

    def target_env(self, num_envs: int, seed: int, setting: str = "free") -> BatchedRecEnv:
        """Batched environment of the evaluation users under ``setting``, user ``i`` seeded ``seed + i``."""
        return self._make(self.target, num_envs, seed, setting)

    def online_env(self, num_envs: int, seed: int, setting: str = "free") -> BatchedRecEnv:
        """Batched environment of the online-adaptation users under ``setting``."""
        return self._make(self.online or self.target, num_envs, seed, setting)

    def offline_env(self, num_envs: int, seed: int, setting: str = "free") -> BatchedRecEnv:
        """Batched logged-data simulator (its reward is the logged model's until wrapped), with the
        offline-only leave rules on top of the shared ones."""
        return self._make(self.offline, num_envs, seed, setting, self.offline_leave_rules)

    def _make(self, model: UserModel, num_envs: int, seed: int, setting: str,
              extra_leave_rules: Sequence[LeaveRule] = ()) -> BatchedRecEnv:
        from ialp.envs.registration import SETTINGS

        kwargs = {**self.env_kwargs, **SETTINGS[setting]}
        cap = kwargs.pop("max_episode_steps", self.max_episode_steps)
        kwargs["leave_rules"] = [*kwargs.get("leave_rules", ()), *extra_leave_rules]
        venv = BatchedRecEnv(model, num_envs, max_episode_steps=cap, **kwargs)
        venv.seed(seed)
        return venv


def sb3_model(algo: str, venv: VecEnv, agent: AgentConfig, seed: int, tensorboard_log: str | None = None
              ) -> BaseAlgorithm:
    """A fresh SB3 ``A2C``/``PPO`` with :class:`~ialp.agents.policy.ItemScoringPolicy` (``DQN``: SB3's
    ``MultiInputPolicy``) and the configured hyperparameters."""
    from stable_baselines3 import A2C, DQN, PPO

    from ialp.agents.policy import ItemScoringPolicy

    common: dict[str, Any] = {"seed": seed, "learning_rate": agent.learning_rate, "gamma": agent.gamma,
                              "verbose": 0, "tensorboard_log": tensorboard_log, "device": "cpu"}
    if algo == "dqn":
        return DQN("MultiInputPolicy", venv, buffer_size=20_000, learning_starts=500, train_freq=4,
                   target_update_interval=500, exploration_fraction=0.3,
                   policy_kwargs={"net_arch": list(agent.net_arch)}, **common)
    policy_kwargs = {"net_arch": list(agent.net_arch), "score_dim": agent.score_dim,
                     "item_embeddings": venv.get_attr("item_embeddings")[0]}
    if algo == "a2c":
        return A2C(ItemScoringPolicy, venv, n_steps=agent.n_steps, ent_coef=agent.ent_coef, gae_lambda=agent.gae_lambda,
                   policy_kwargs=policy_kwargs, **common)
    if algo == "ppo":
        n_steps = max(agent.n_steps, 16)
        return PPO(ItemScoringPolicy, venv, n_steps=n_steps, batch_size=min(agent.batch_size, n_steps * venv.num_envs),
                   n_epochs=agent.n_epochs, ent_coef=agent.ent_coef, gae_lambda=agent.gae_lambda,
                   policy_kwargs=policy_kwargs, **common)
    raise ValueError(f"algo must be a2c, ppo or dqn, got {algo!r}")


def log_interval(total_timesteps: int, num_envs: int, n_steps: int, dumps: int = 20) -> int:
    """SB3 ``log_interval`` (in rollouts) that writes about ``dumps`` TensorBoard points per run."""
    return max(1, total_timesteps // (num_envs * n_steps * dumps))


@dataclass
class EpisodeLog:
    """Online episodes in the order they finished: return, length and the env step at which each ended."""

    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)


class EpisodeTracker:
    """Running per-user returns of a batched env; reports finished episodes and catalogue coverage."""

    def __init__(self, num_envs: int, n_items: int) -> None:
        self.running = np.zeros(num_envs)
        self.length = np.zeros(num_envs, dtype=np.int64)
        self.shown = np.zeros(n_items, dtype=bool)
        self.log = EpisodeLog()

    def update(self, rewards: np.ndarray, dones: np.ndarray, items: np.ndarray, step: int) -> np.ndarray:
        """Add one step; returns the rows whose episode finished."""
        self.running += rewards
        self.length += 1
        self.shown[items] = True
        rows = np.flatnonzero(dones)
        for i in rows:
            self.log.returns.append(float(self.running[i]))
            self.log.lengths.append(int(self.length[i]))
            self.log.steps.append(step)
        self.running[rows] = 0.0
        self.length[rows] = 0
        return rows


class RecorderCallback(BaseCallback):
    """Records every finished online episode and logs ``rec/`` metrics next to SB3's own (x = env steps).

    It reads what ``step`` returns: rewards are the environment's (under a learned-reward wrapper,
    ``info["env_reward"]``), the shown item is ``info["item"]``.
    """

    def __init__(self, venv: BatchedRecEnv) -> None:
        super().__init__()
        self.tracker = EpisodeTracker(venv.num_envs, venv.model.n_items)

    @property
    def log(self) -> EpisodeLog:
        """The finished episodes."""
        return self.tracker.log

    def _on_step(self) -> bool:
        infos = self.locals["infos"]
        rewards = np.array([i.get("env_reward", r) for i, r in zip(infos, self.locals["rewards"], strict=True)])
        items = np.array([i["item"] for i in infos])
        rows = self.tracker.update(rewards, np.asarray(self.locals["dones"]), items, self.num_timesteps)
        if len(rows):
            self.logger.record_mean("rec/episode_return", float(np.mean(self.tracker.log.returns[-len(rows):])))
            self.logger.record_mean("rec/episode_length", float(np.mean(self.tracker.log.lengths[-len(rows):])))
            self.logger.record("rec/coverage", float(self.tracker.shown.mean()))
        return True
