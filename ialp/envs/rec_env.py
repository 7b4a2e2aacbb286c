"""Gymnasium environment: recommend one item per step to one simulated user."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from ialp.envs.render import session_picture
from ialp.envs.session import CandidateProvider, RepeatMode, SessionBatch, SessionFace
from ialp.simulators.base import UserModel
from ialp.simulators.leave import LeaveRule

ObsType = dict[str, Any]


class RecEnv(gym.Env[ObsType, np.int64]):
    """One user's session with a recommender.

    ## Description
    Each episode samples a user from the user model (``model``); each step the agent recommends
    one item and the user responds. The user model and leave rule of each registered id are
    documented on its factory in ``ialp.envs.registration``.

    ## Action Space
    ``Discrete(n_items)``: the item to recommend; with a candidate provider, ``Discrete(K)``: the
    slot in the current candidate list (observation key ``candidates``).

    ## Observation Space
    ``Dict`` of float32 arrays: ``history`` (W, d) embeddings of the last W shown items (oldest
    first, zero-padded at the front), ``feedback`` (W,) the rewards they got, ``mask`` (W,) 1 where
    a slot holds an item, ``user`` (F,) observable user features, ``blocked`` (``max_blocked``,) the
    item ids that may not be recommended now (the session's items under ``repeat="forbid"``; -1 =
    empty), and with a candidate provider ``candidates`` (K, d) the candidates' embeddings,
    ``candidate_ids`` (K,) their item ids and ``candidate_mask`` (K,) 1 where a slot may be chosen.

    ## Rewards
    The user model's response to the item (e.g. predicted rating); under ``repeat="penalize"`` or
    ``"forbid"``, a repeated item earns ``repeat_penalty`` instead.

    ## Starting State
    A new user drawn from the user model, with an empty history, or with ``warm_start`` items in
    the window: the user's own last logged items (logged-data models) or a simulated warm-up.

    ## Episode End
    ``terminated`` when the user leaves (the model's leave probability or any leave rule, or a
    forbidden repeat; never with ``leave=False``); ``truncated`` by the ``TimeLimit`` of
    ``max_episode_steps``.

    ## Arguments
    ``model``, ``leave_rules``, ``history_len`` (W, default 10), ``repeat`` (``allow`` /
    ``penalize`` / ``forbid``), ``repeat_penalty``, ``candidates``, ``leave``, ``warm_start``,
    ``max_blocked``, ``render_mode`` (``"ansi"``: the recent titles and their feedback; ``"rgb_array"``: a small
    picture of the session, see ``ialp.envs.render``).

    ## Version History
    * v0: initial version.
    """

    metadata = {"render_modes": ["ansi", "rgb_array"], "render_fps": 4}  # noqa: RUF012

    def __init__(self, model: UserModel, leave_rules: Sequence[LeaveRule] = (), history_len: int = 10,
                 repeat: RepeatMode = "allow", repeat_penalty: float = 0.0,
                 candidates: CandidateProvider | None = None, leave: bool = True, warm_start: int = 0,
                 max_blocked: int = 50, render_mode: str | None = None) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']}, got {render_mode!r}")
        self.model = model
        self.render_mode = render_mode
        self.session = SessionBatch(model, 1, leave_rules, history_len, repeat, repeat_penalty, candidates, leave,
                                    warm_start, max_blocked)
        self.observation_space = self.session.observation_space
        self.action_space = spaces.Discrete(self.session.n_actions)
        self._seeded = False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[ObsType, dict]:
        """Start a new user's session; a seed fixes this and every later episode until the next seed."""
        super().reset(seed=seed)
        if seed is not None or not self._seeded:
            self.session.roots[0] = self.np_random.integers(0, 2**63, dtype=np.int64)
            self.session.episode[0] = 0
            self._seeded = True
        else:
            self.session.episode[0] += 1
        self.session.begin(np.array([0]))
        return self._obs(), {}

    def step(self, action: Any) -> tuple[ObsType, float, bool, bool, dict[str, Any]]:
        reward, leave, info = self.session.step(np.asarray([action]))
        out = {k: v[0].item() for k, v in info.items()}
        return self._obs(), float(reward[0]), bool(leave[0]), False, out

    def _obs(self) -> ObsType:
        return {k: v[0] for k, v in self.session.observation().items()}

    def action_masks(self) -> np.ndarray:
        """Valid actions (all, unless ``repeat="forbid"`` rules out seen items); for maskable agents."""
        return self.session.action_masks()[0]

    @property
    def face(self) -> SessionFace:
        """Read-only views of the session for code that needs more than ``info`` (see ``SessionFace``)."""
        return SessionFace(self.session)

    @property
    def history(self) -> np.ndarray:
        """Items shown so far in this episode (within the tracked window), oldest first."""
        h = self.session.hist_items[0]
        return h[h >= 0]

    def render(self) -> str | np.ndarray | None:
        if self.render_mode == "rgb_array":
            return session_picture(self.session, 0)
        if self.render_mode != "ansi":
            return None
        titles = self.model.catalog.titles
        lines = [f"t={int(self.session.t[0])}"]
        w = self.session.history_len
        feedback = self.session.observation()["feedback"][0]
        for item, fb in zip(self.session.hist_items[0, -w:], feedback, strict=True):
            if item >= 0:
                lines.append(f"  {titles[item]!r}: {fb:.3f}")
        return "\n".join(lines)
