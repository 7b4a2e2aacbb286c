"""A stable-baselines3 ``VecEnv`` that steps B simulated users at once with array operations."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.utils import seeding
from stable_baselines3.common.vec_env.base_vec_env import (
    VecEnv,
    VecEnvIndices,
)

from ialp.envs.render import session_picture
from ialp.envs.session import CandidateProvider, RepeatMode, SessionBatch, SessionFace
from ialp.simulators.base import UserModel
from ialp.simulators.leave import LeaveRule


class BatchedRecEnv(VecEnv):
    """B independent user sessions stepped together; same dynamics as B ``RecEnv`` copies.

    User ``i`` seeded with ``s_i`` follows exactly the trajectory of ``RecEnv`` reset with seed
    ``s_i`` and wrapped in a ``TimeLimit(max_episode_steps)``, including the automatic resets: on
    ``done``, ``infos[i]["terminal_observation"]`` holds the last observation and
    ``infos[i]["TimeLimit.truncated"]`` tells a time cap from a user leaving (SB3's convention).
    ``seed(s)`` gives user ``i`` the seed ``s + i`` at the next ``reset()``. Every ``infos[i]`` carries
    the recommended ``item`` (with candidate slots the action is not the item), its ``expected_reward`` (the user
    model's noise-free response) and whether it was a ``repeat`` of the session's items (always False under
    ``repeat="allow"``).
    """

    action_space: spaces.Discrete

    def __init__(self, model: UserModel, num_envs: int, max_episode_steps: int | None = 50,
                 leave_rules: Sequence[LeaveRule] = (), history_len: int = 10, repeat: RepeatMode = "allow",
                 repeat_penalty: float = 0.0, candidates: CandidateProvider | None = None, leave: bool = True,
                 warm_start: int = 0, max_blocked: int | None = None, render_mode: str | None = None) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if max_episode_steps is not None and max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be >= 1 or None, got {max_episode_steps}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.model = model
        self.render_mode = render_mode  # read back by VecEnv.__init__
        self.max_episode_steps = max_episode_steps
        self.session = SessionBatch(model, num_envs, leave_rules, history_len, repeat, repeat_penalty,
                                    candidates, leave, warm_start, max_blocked or max_episode_steps or 50)
        super().__init__(num_envs, self.session.observation_space, spaces.Discrete(self.session.n_actions))
        self._actions = np.zeros(num_envs, dtype=np.int64)
        self._all = np.arange(num_envs)

    def reset(self) -> dict[str, np.ndarray]:
        roots = [seeding.np_random(s)[0].integers(0, 2**63, dtype=np.int64) for s in self._seeds]
        self.session.roots[:] = np.asarray(roots, dtype=np.int64).astype(np.uint64)
        self.session.episode[:] = 0
        self.session.begin(self._all)
        self._reset_seeds()
        self._reset_options()
        return self.session.observation()

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions, dtype=np.int64).reshape(self.num_envs)

    def step(self, actions: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, list[dict[str, Any]]]:
        """Show one item to every user: (observations, rewards, dones, infos), as ``VecEnv.step``."""
        self.step_async(actions)
        return self.step_wait()

    def step_wait(self) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, list[dict[str, Any]]]:
        session = self.session
        reward, terminated, step_info = session.step(self._actions)
        if self.max_episode_steps is not None:
            truncated = (session.t >= self.max_episode_steps) & ~terminated
            dones = terminated | truncated
        else:
            truncated, dones = np.zeros_like(terminated), terminated
        infos: list[dict[str, Any]] = [
            {"item": item, "expected_reward": expected, "repeat": repeat}
            for item, expected, repeat in zip(step_info["item"].tolist(), step_info["expected_reward"].tolist(),
                                              step_info["repeat"].tolist(), strict=True)]
        done_rows = np.flatnonzero(dones)
        if len(done_rows):
            # Last observations of the finished users (one copy), split into per-user row views at C speed;
            # then their new episodes start, and the full observation is taken once.
            terminal = session.observation(done_rows)
            keys = list(terminal)
            columns = [list(terminal[k]) for k in keys]
            for i, capped, *rows in zip(done_rows.tolist(), truncated[done_rows].tolist(), *columns, strict=True):
                infos[i].update(terminal_observation=dict(zip(keys, rows, strict=True)))
                infos[i]["TimeLimit.truncated"] = capped
            session.episode[done_rows] += 1
            session.begin(done_rows)
        obs = session.observation()
        return obs, reward.astype(np.float32), dones, infos

    @property
    def face(self) -> SessionFace:
        """Read-only views of the sessions for code that needs more than ``infos`` (see ``SessionFace``)."""
        return SessionFace(self.session)

    @property
    def item_embeddings(self) -> np.ndarray:
        """The (n_items, d) item table the observations show items by (what a policy may score items with)."""
        return self.model.item_embeddings

    def action_masks(self) -> np.ndarray:
        """Valid actions per user, (B, n_actions); see ``SessionBatch.action_masks``."""
        return self.session.action_masks()

    def close(self) -> None:
        """Nothing to release: the simulation lives in this process's arrays."""

    def get_images(self) -> list[np.ndarray | None]:
        """One picture per user (``render_mode="rgb_array"``; see ``ialp.envs.render``), else Nones."""
        if self.render_mode != "rgb_array":
            return [None] * self.num_envs
        return [session_picture(self.session, i) for i in range(self.num_envs)]

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        value = getattr(self, attr_name)
        return [value for _ in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None,
                   **method_kwargs: Any) -> list[Any]:
        rows = list(self._get_indices(indices))
        if method_name == "action_masks":
            masks = self.action_masks()
            return [masks[i] for i in rows]
        result = getattr(self, method_name)(*method_args, **method_kwargs)
        return [result for _ in rows]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        return [False for _ in self._get_indices(indices)]
