"""The batched environment as a Gymnasium ``VectorEnv``: the ``vector_entry_point`` of every ialp id.

``gym.make_vec("ialp/Synthetic-v0", num_envs=64, vectorization_mode="vector_entry_point")`` returns a
:class:`RecVectorEnv`: B users stepped at once with array operations (``BatchedRecEnv``) behind Gymnasium's
vector API, instead of B ``RecEnv`` copies in a loop (``"sync"``) or in processes (``"async"``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

if TYPE_CHECKING:
    from ialp.envs.vector import BatchedRecEnv

__all__ = ["RecVectorEnv"]


class RecVectorEnv(VectorEnv):
    """A ``BatchedRecEnv`` behind Gymnasium's ``VectorEnv`` API.

    Sub-environments reset in the same step as they finish (``AutoresetMode.SAME_STEP``): the returned observation
    of a finished user is its next session's first, and ``infos["final_obs"]`` (with the mask ``"_final_obs"``)
    holds the last one. ``infos`` hold the per-user arrays ``item``, ``expected_reward`` and ``repeat``.
    ``reset(seed=s)`` gives user ``i`` the seed ``s + i``, as ``BatchedRecEnv.seed`` does.
    """

    def __init__(self, venv: BatchedRecEnv) -> None:
        self.venv = venv
        self.num_envs = venv.num_envs
        self.single_observation_space = venv.observation_space
        self.single_action_space = venv.action_space
        self.observation_space = batch_space(venv.observation_space, venv.num_envs)
        self.action_space = batch_space(venv.action_space, venv.num_envs)
        self.render_mode = venv.render_mode
        self.metadata = {"autoreset_mode": AutoresetMode.SAME_STEP,
                         "render_modes": [] if venv.render_mode is None else [venv.render_mode]}

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None
              ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Start every user's session; ``seed`` seeds user ``i`` with ``seed + i``."""
        super().reset(seed=seed)
        if seed is not None:
            self.venv.seed(seed)
        obs = self.venv.reset()
        return obs, {}

    def step(self, actions: Any) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """One item to every user; see the class docstring for ``infos``."""
        obs, rewards, dones, step_infos = self.venv.step(np.asarray(actions))
        truncated = np.array([bool(i.get("TimeLimit.truncated", False)) for i in step_infos])
        infos: dict[str, Any] = {k: np.array([i[k] for i in step_infos]) for k in ("item", "expected_reward", "repeat")}
        if dones.any():
            final = np.full(self.num_envs, None, dtype=object)
            for row in np.flatnonzero(dones):
                final[row] = step_infos[row]["terminal_observation"]
            infos["final_obs"], infos["_final_obs"] = final, dones.copy()
        return obs, rewards, dones & ~truncated, truncated, infos

    def render(self) -> tuple[np.ndarray, ...] | None:
        """One picture per user with ``render_mode="rgb_array"`` (see ``ialp.envs.render``)."""
        if self.render_mode != "rgb_array":
            return None
        return tuple(image for image in self.venv.get_images() if image is not None)

    def close_extras(self, **kwargs: Any) -> None:
        """Close the batched environment."""
        self.venv.close()
