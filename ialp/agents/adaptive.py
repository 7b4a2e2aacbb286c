"""A-iALP: online adaptation of a pretrained policy in the target environment.

``ft`` (:func:`finetune`) keeps training the pretrained actor-critic online with its own algorithm.

``ap`` (:class:`AdaptiveBlend`) keeps a FROZEN copy of the pretrained policy next to an online learner (a
fresh actor-critic of the same architecture) and serves every user session with one of them, chosen by a
two-armed bandit over the evidence each earns online:

- **Who serves a session.** At the start of each session, the pretrained policy serves with probability
  ``w = clip(sigmoid((R_pre - R_on) / (temperature * sigma)), floor, 1 - floor)``, else the learner. ``R_pre``
  and ``R_on`` are recency-weighted averages (step ``ap_step``) of the returns of the sessions each served;
  ``sigma`` is a recency-weighted standard deviation of all session returns (so the gate is scale-free); until
  both arms have ``ap_min_episodes`` sessions, ``w = 1/2``. Recency weighting lets the gate follow a learner
  that improves.
- **Exploration floor.** ``floor`` (``ap_floor``) keeps a share of sessions for each arm whatever the
  evidence: the learner always gets data (guard against too little exploration) and a policy that looked bad
  early can still win back traffic.
- **Compromised pretrained policy.** A pretrained policy trained on wrong or adversarial preferences earns
  low returns online; the gate then sends ``1 - floor`` of the sessions to the learner, which never inherits
  the pretrained weights, so the compromise cannot leak into it.
- **Sound learning.** Sessions are served by one arm from start to end, so the learner is trained with the
  ordinary A2C loss (n-step returns, value baseline, entropy bonus) on ITS OWN on-policy sessions only: the
  rollout is masked to the steps it acted on, and returns never bootstrap across a session boundary (where
  the other arm may take over).
- **Evaluation.** The deployed policy is the arm with the higher estimate (deterministic actions).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.vec_env import VecMonitor
from tqdm import tqdm

from ialp.agents.common import EpisodeLog, EpisodeTracker, RecorderCallback, log_interval
from ialp.envs.vector import BatchedRecEnv


def finetune(model: Any, venv: BatchedRecEnv, total_timesteps: int, tb_name: str = "a-ialp-ft",
             progress: bool = False) -> tuple[Any, EpisodeLog]:
    """``ft``: continue training ``model`` (an SB3 actor-critic) online in ``venv``; returns it and its episodes."""
    model.set_env(VecMonitor(venv))
    recorder = RecorderCallback(venv)
    model.learn(total_timesteps, callback=recorder, tb_log_name=tb_name, reset_num_timesteps=True,
                progress_bar=progress, log_interval=log_interval(total_timesteps, venv.num_envs, model.n_steps))
    return model, recorder.log


class AdaptiveBlend:
    """``ap``: a frozen pretrained policy and an online learner, gated per session (see the module docstring).

    Args:
        pretrained: SB3 model whose policy is frozen (never trained here).
        learner: A fresh SB3 ``A2C`` (its policy and optimiser are used; ``learn`` is not).
        floor, temperature, step, min_episodes: The gate's hyperparameters (``online.ap_*``).
        seed: Seed of the gate's coin flips.
        deterministic: Whether the deployed arm acts by argmax when evaluated.
    """

    PRE, LEARN = 0, 1

    def __init__(self, pretrained: Any, learner: Any, floor: float = 0.1, temperature: float = 0.1,
                 step: float = 0.05, min_episodes: int = 10, seed: int = 0, deterministic: bool = True) -> None:
        self.pretrained, self.learner = pretrained, learner
        self.deterministic = deterministic
        for p in pretrained.policy.parameters():
            p.requires_grad_(False)
        self.floor, self.temperature, self.step, self.min_episodes = floor, temperature, step, min_episodes
        self.rng = np.random.default_rng(seed)
        self.estimate = np.zeros(2)
        self.counts = np.zeros(2, dtype=np.int64)
        self.mean_all, self.var_all = 0.0, 1.0
        self.history: list[tuple[int, float]] = []  # (env step, w) after each session

    # ---------------------------------------------------------------------------------------- gate
    def weight(self) -> float:
        """Current probability that the pretrained policy serves a new session."""
        if self.counts.min() < self.min_episodes:
            return 0.5
        sigma = max(np.sqrt(self.var_all), 1e-6)
        z = (self.estimate[self.PRE] - self.estimate[self.LEARN]) / (self.temperature * sigma)
        w = 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))
        return float(np.clip(w, self.floor, 1.0 - self.floor))

    def _observe(self, arm: int, ret: float) -> None:
        self.counts[arm] += 1
        a = max(self.step, 1.0 / self.counts[arm])  # plain average at first, then recency-weighted
        self.estimate[arm] += a * (ret - self.estimate[arm])
        n = int(self.counts.sum())
        b = max(self.step, 1.0 / n)
        delta = ret - self.mean_all
        self.mean_all += b * delta
        self.var_all = (1 - b) * (self.var_all + b * delta * delta) if n > 1 else 1.0

    def _draw(self, n: int) -> np.ndarray:
        return np.where(self.rng.random(n) < self.weight(), self.PRE, self.LEARN)

    # ---------------------------------------------------------------------------------------- online
    def learn(self, venv: BatchedRecEnv, total_timesteps: int, n_steps: int = 8, gamma: float = 0.9,
              ent_coef: float = 0.01, vf_coef: float = 0.5, max_grad_norm: float = 0.5, writer: Any = None,
              progress: bool = False) -> EpisodeLog:
        """Serve and learn online for ``total_timesteps`` env steps; returns the finished sessions."""
        policy = self.learner.policy
        b = venv.num_envs
        obs: dict[str, np.ndarray] = venv.reset()  # type: ignore[assignment]
        arm = self._draw(b)
        tracker = EpisodeTracker(b, venv.model.n_items)
        steps = 0
        bar = tqdm(total=total_timesteps, desc="a-ialp-ap online", unit="step", disable=not progress)
        while steps < total_timesteps:
            buf: dict[str, list[Any]] = {"obs": [], "act": [], "rew": [], "done": [], "own": []}
            for _ in range(n_steps):
                with torch.no_grad():
                    obs_t, _ = policy.obs_to_tensor(obs)
                    a_learn = policy(obs_t)[0].cpu().numpy()
                a_pre, _ = self.pretrained.predict(obs, deterministic=False)
                actions = np.where(arm == self.PRE, a_pre, a_learn).astype(np.int64)
                new_obs, rewards, dones, infos = venv.step(actions)
                rewards = rewards.astype(np.float64)
                own = arm == self.LEARN
                boot = rewards.copy()
                for i in np.flatnonzero(dones & own):  # time cap: bootstrap from the last observation
                    if infos[i].get("TimeLimit.truncated"):
                        last = infos[i]["terminal_observation"]
                        term, _ = policy.obs_to_tensor({k: v[None] for k, v in last.items()})
                        with torch.no_grad():
                            boot[i] += gamma * float(policy.predict_values(term)[0, 0])
                buf["obs"].append(obs)
                buf["act"].append(actions)
                buf["rew"].append(boot)
                buf["done"].append(dones.copy())
                buf["own"].append(own)
                steps += b
                done_rows = tracker.update(rewards, dones, venv.session.last_items, steps)
                for i, ret in zip(done_rows, tracker.log.returns[len(tracker.log.returns) - len(done_rows):],
                                  strict=True):
                    self._observe(int(arm[i]), ret)
                if len(done_rows):
                    arm[done_rows] = self._draw(len(done_rows))
                    self.history.append((steps, self.weight()))
                    if writer is not None:
                        writer.add_scalar("rec/episode_return", float(np.mean(tracker.log.returns[-len(done_rows):])),
                                          steps)
                        writer.add_scalar("rec/ap_weight_pretrained", self.weight(), steps)
                        writer.add_scalar("rec/coverage", float(tracker.shown.mean()), steps)
                obs = new_obs  # type: ignore[assignment]
            self._update(buf, obs, arm, gamma, ent_coef, vf_coef, max_grad_norm)
            bar.update(n_steps * b)
        bar.close()
        return tracker.log

    def _update(self, buf: dict[str, list[Any]], last_obs: dict[str, np.ndarray], arm: np.ndarray, gamma: float,
                ent_coef: float, vf_coef: float, max_grad_norm: float) -> None:
        own = np.stack(buf["own"])  # (T, B)
        if not own.any():
            return
        policy = self.learner.policy
        t_len, b = own.shape
        obs = {k: np.concatenate([o[k] for o in buf["obs"]]) for k in buf["obs"][0]}
        obs_t, _ = policy.obs_to_tensor(obs)
        actions = torch.as_tensor(np.concatenate(buf["act"]), dtype=torch.long)
        values, log_prob, entropy = policy.evaluate_actions(obs_t, actions)
        with torch.no_grad():
            last_t, _ = policy.obs_to_tensor(last_obs)
            next_value = policy.predict_values(last_t)[:, 0].cpu().numpy() * (arm == self.LEARN)
        rew, done = np.stack(buf["rew"]), np.stack(buf["done"])
        returns = np.zeros((t_len, b))
        running = next_value
        for t in reversed(range(t_len)):
            running = rew[t] + gamma * running * (1.0 - done[t])
            returns[t] = running
        ret_t = torch.as_tensor(returns.reshape(-1), dtype=torch.float32)
        mask = torch.as_tensor(own.reshape(-1))
        values = values.flatten()
        adv = (ret_t - values.detach())[mask]
        loss = (-(adv * log_prob[mask]).mean() + vf_coef * ((ret_t - values)[mask] ** 2).mean()
                - ent_coef * (entropy[mask].mean() if entropy is not None else 0.0))
        policy.optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), max_grad_norm)
        policy.optimizer.step()

    # ---------------------------------------------------------------------------------------- deployment
    @property
    def best(self) -> int:
        """The arm with the higher estimate (the pretrained one while evidence is lacking)."""
        if self.counts.min() == 0:
            return self.PRE if self.counts[self.PRE] >= self.counts[self.LEARN] else self.LEARN
        return int(self.estimate.argmax())

    def act(self, obs: dict[str, np.ndarray], venv: BatchedRecEnv) -> np.ndarray:
        """Actions of the deployed arm (``ialp.eval.Policy`` protocol), argmax unless ``deterministic=False``."""
        model = self.pretrained if self.best == self.PRE else self.learner
        actions, _ = model.predict(obs, deterministic=self.deterministic)
        return np.asarray(actions, dtype=np.int64)

    def save(self, folder: str | Path) -> None:
        """Learner checkpoint and the gate's state."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.learner.save(str(folder / "learner.zip"))
        np.savez(folder / "gate.npz", estimate=self.estimate, counts=self.counts, var=self.var_all,
                 mean=self.mean_all, history=np.asarray(self.history, dtype=np.float64).reshape(-1, 2))

    def load_state(self, folder: str | Path) -> None:
        """Restore the gate's state saved by :meth:`save` (the learner is loaded by the caller)."""
        with np.load(Path(folder) / "gate.npz") as f:
            self.estimate, self.counts = f["estimate"], f["counts"]
            self.var_all, self.mean_all = float(f["var"]), float(f["mean"])
            self.history = [(int(s), float(w)) for s, w in f["history"]]

