"""A-iALP: online adaptation of a pretrained policy in the target environment.

``ft`` (:func:`finetune`) keeps training the pretrained actor-critic online with its own algorithm.

``ap`` (:func:`adaptive_mixture`) deploys an adaptive MIXTURE of the frozen pretrained policy and an online
learner, as an ordinary stable-baselines3 ``A2C``/``PPO`` whose policy is a :class:`MixturePolicy`:

- **The deployed policy** is the action-distribution mixture ``pi_w(a|s) = w pi_pre(a|s) + (1 - w) pi_on(a|s)``
  (``Discrete(n)`` actions). ``pi_pre`` is a frozen copy of the pretrained policy; ``pi_on`` (the learner) has
  the pretrained policy's class and kwargs, so any ``ActorCriticPolicy`` with a categorical head works, masking
  components included: the mixture is computed from log-probabilities with a logsumexp, and an action that both
  components rule out (``-inf`` logit) keeps probability exactly 0, without NaNs. Deterministic actions are the
  mixture's argmax.
- **The weight** is ``w = floor + (1 - 2 floor) sigmoid(theta)``, with ``theta`` (the gate) trained by the same
  loss as the learner, at its own learning rate. With ``A`` the advantage, ``-A log pi_w(a|s)`` gives the gate
  ``E_{a~pi_w}[A (pi_pre(a|s) - pi_on(a|s)) / pi_w(a|s)] * dw/dtheta = (E_{a~pi_pre}[A] - E_{a~pi_on}[A]) *
  dw/dtheta``: weight moves to the component whose own actions the critic rates higher. A compromised pretrained
  policy (favouring bad items) loses weight; a good one keeps it until the learner overtakes it. The entropy
  bonus acts on the mixture's entropy, so it also nudges ``w`` (by ``ent_coef``) toward the more spread component.
- **The learner learns from every step, importance-weighted**: its actor gets ``rho A grad log pi_on(a|s)`` with
  ``rho = min(pi_on / pi_w, ratio_clip)`` (detached; ACER/Retrace-style truncation at 1 by default), the
  off-policy actor-critic estimate of its OWN policy gradient on the mixture's data. The exact on-policy gradient
  of the mixture would weight the learner by its responsibility ``(1 - w) pi_on / pi_w`` instead, and that
  starves it: measured on Synthetic-v0, a useful pretrained policy took ``w`` to ``1 - floor`` within 50k steps,
  the learner then saw 5% of the signal and the mixture stayed near the frozen policy for 1M steps. With ``rho``
  the learner learns at full strength from every action it would also take, whatever ``w``. The loss's VALUE is
  still ``log pi_w`` (a straight-through surrogate), so PPO's ratio ``pi_w / pi_w_old`` and clipping are those of
  the deployed policy. The value function is the learner's, and it estimates the mixture's value (the policy
  that produced the data).
- **Stock SB3 machinery.** ``MixturePolicy`` implements ``forward``, ``evaluate_actions``, ``get_distribution``,
  ``predict_values`` and ``_predict``; :class:`AdaptiveA2C` / :class:`AdaptivePPO` only keep the gate's learning
  rate (SB3 sets one rate on every parameter group), log ``train/ap_weight`` (the pretrained policy's weight) and,
  before each ``train()``, evaluate the frozen policy once over the rollout (:data:`PRETRAINED_LOG_P`) instead of
  once per epoch and minibatch.
  Rollouts, GAE, ``train()``, callbacks, TensorBoard, ``learn``/``predict``/``save``/``load`` are SB3's; the frozen
  copy and the gate are saved inside the policy (:func:`load_adaptive` restores a checkpoint).

Defaults (``online.ap_*``):

- ``init_weight = 0.5``: no prior preference between the components, and the point where ``w`` is most sensitive
  to the gate. It costs little to a good pretrained policy: the fresh learner is near uniform, so the mixture's
  argmax (what evaluation deploys) is the pretrained argmax from the start, and half of the online actions
  explore. ``floor <= init_weight <= 1 - floor``.
- ``floor = 0.05``: each component keeps at least 1 action in 20. The learner keeps learning while a good
  pretrained policy dominates, the gate keeps seeing both components (its per-sample signal is bounded by
  ``1 / floor``), and a compromised pretrained policy costs at most a 5% share of the actions.
- ``gate_lr = 0.05``: RMSprop and Adam move the gate by about ``gate_lr`` per update whatever the loss scale
  (more in RMSprop's first updates), so consistent evidence takes ``theta`` from 0 to about -3 or 3 (``w`` near
  the floor or its mirror) in a few tens of updates (in the tests, 24 A2C updates take a compromised policy
  from 0.5 to 0.1): well inside the default online phase (~120 updates of 16 users x 8 steps), leaving the rest
  to the winner, while pure noise moves ``w`` by about +-0.1 over it. 0.02 was too slow (a compromised policy
  kept a quarter of the actions after 3k steps).
- ``init = "fresh"``: a compromised pretrained policy cannot leak into the learner; ``"pretrained"`` starts the
  learner (actor and critic) from the pretrained weights.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.buffers import DictRolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.distributions import Distribution
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from stable_baselines3.common.vec_env import VecEnv, VecMonitor
from torch.nn import functional as F

from ialp.agents.common import EpisodeLog, RecorderCallback, log_interval
from ialp.agents.policy import FastCategorical
from ialp.config import AP_INITS, Algo, ApInit
from ialp.envs.vector import BatchedRecEnv

INIT_WEIGHT, FLOOR, GATE_LR, RATIO_CLIP = 0.5, 0.05, 0.05, 1.0



class CriticWarmup(BaseCallback):
    """Train only the critic for the first ``steps`` environment steps: the actor's parameters are frozen.

    A critic pretrained offline estimates returns of the learned reward in the offline simulator; online, its
    values are on another scale, and the advantages they give in the first updates steer the actor away from
    what it learned (measured: ``ft`` started online below the frozen pretrained policy). The actor acts, unchanged,
    while the critic learns the online returns; then both train.
    """

    def __init__(self, steps: int) -> None:
        super().__init__()
        self.steps = steps
        self._frozen: list[torch.nn.Parameter] = []

    def _on_training_start(self) -> None:
        policy: ActorCriticPolicy = self.model.policy  # type: ignore[assignment]
        critic_modules: list[torch.nn.Module] = [policy.value_net, getattr(policy.mlp_extractor, "value_net",
                                                                           torch.nn.Identity())]
        critic = {id(p) for m in critic_modules for p in m.parameters()}
        if self.num_timesteps < self.steps:
            self._frozen = [p for p in policy.parameters() if p.requires_grad and id(p) not in critic]
            for p in self._frozen:
                p.requires_grad_(False)

    def _on_rollout_start(self) -> None:  # updates on rollouts collected after the warm-up train the actor too
        if self._frozen and self.num_timesteps >= self.steps:
            self._release()

    def _on_step(self) -> bool:
        return True

    def _on_training_end(self) -> None:
        self._release()

    def _release(self) -> None:
        for p in self._frozen:
            p.requires_grad_(True)
        self._frozen = []


def finetune(model: OnPolicyAlgorithm, venv: BatchedRecEnv, total_timesteps: int, tb_name: str = "a-ialp-ft",
             progress: bool = False, critic_warmup: int = 0,
             learning_rate: float | None = None) -> tuple[OnPolicyAlgorithm, EpisodeLog]:
    """``ft``: continue training ``model`` (an SB3 actor-critic) online in ``venv``; returns it and its episodes.

    ``critic_warmup``: environment steps during which only the critic trains (:class:`CriticWarmup`); they count
    in ``total_timesteps`` and in the recorded episodes. ``learning_rate``: the online rate (default: the one
    ``model`` was trained at). Also runs the online phase of ``ap``: pass the model built by
    :func:`adaptive_mixture`.
    """
    if learning_rate is not None:
        model.learning_rate = learning_rate
        model._setup_lr_schedule()  # SB3 sets the optimiser's rate from this schedule at every update
    model.set_env(VecMonitor(venv))
    recorder = RecorderCallback(venv)
    callbacks: list[BaseCallback] = [recorder, CriticWarmup(critic_warmup)] if critic_warmup > 0 else [recorder]
    model.learn(total_timesteps, callback=CallbackList(callbacks), tb_log_name=tb_name, reset_num_timesteps=True,
                progress_bar=progress, log_interval=log_interval(total_timesteps, venv.num_envs, model.n_steps))
    return model, recorder.log


def mixture_log_probs(log_p_pre: torch.Tensor, log_p_on: torch.Tensor, log_w: torch.Tensor,
                      log_1mw: torch.Tensor) -> torch.Tensor:
    """``log(w p_pre + (1 - w) p_on)`` from normalised log-probabilities, NaN-free where either is ``-inf``.

    ``-inf`` terms are clamped to the dtype's lowest finite value before the logsumexp: their probability stays
    exactly 0 and their gradient 0 (a plain logsumexp of two ``-inf`` has a NaN gradient).

    Args:
        log_p_pre, log_p_on: (B, n) log-probabilities of the two components.
        log_w, log_1mw: Scalars ``log w`` and ``log(1 - w)``.

    Returns:
        (B, n) log-probabilities of the mixture.

    Example:
        >>> lp = mixture_log_probs(torch.tensor([[0.0, -math.inf]]), torch.tensor([[-math.inf, 0.0]]),
        ...                        torch.tensor(0.25).log(), torch.tensor(0.75).log())
        >>> lp.exp()
        tensor([[0.2500, 0.7500]])
    """
    terms = torch.stack((log_w + log_p_pre, log_1mw + log_p_on))
    return torch.logsumexp(terms.clamp(min=torch.finfo(terms.dtype).min), dim=0)


def _log_probs(dist: Distribution) -> torch.Tensor:
    """Normalised log-probabilities of a component's categorical action distribution."""
    if isinstance(dist, FastCategorical):
        return dist.log_p
    inner = getattr(dist, "distribution", None)
    if not isinstance(inner, torch.distributions.Categorical):
        raise TypeError(f"ap mixes categorical policies; the component's distribution is {type(inner).__name__}")
    return inner.logits


#: Observation key under which :class:`_Adaptive` stores the frozen policy's log-probabilities in the rollout buffer
#: (the buffer flattens and slices it with the observations); components read only their space's keys.
PRETRAINED_LOG_P = "pretrained_log_p"


class MixturePolicy(ActorCriticPolicy):
    """``pi_w = w pi_pre + (1 - w) pi_on``: a frozen pretrained policy, an online learner and a learned weight.

    See the module docstring. ``learner`` and ``pretrained`` are instances of ``component_class``; the caller loads
    the pretrained weights into ``pretrained`` (:func:`adaptive_mixture` does). Only the learner and the gate are
    optimised (the algorithm's optimiser class; the gate in its own parameter group, named ``"gate"``).

    ``ActorCriticPolicy.__init__`` is skipped on purpose: it would build an MLP head and value net that this
    policy never uses (for a catalogue-scale head, millions of parameters). Every method SB3's on-policy
    algorithms call is overridden here; the subclassing keeps ``isinstance(policy, ActorCriticPolicy)`` true.

    Args:
        observation_space, action_space, lr_schedule: As for any SB3 policy (``action_space`` is ``Discrete``).
        component_class: ``ActorCriticPolicy`` subclass of both components (the pretrained model's ``policy_class``).
        component_kwargs: Its kwargs (the pretrained model's ``policy_kwargs``).
        init_weight: Initial ``w`` (weight of the pretrained policy), in ``[floor, 1 - floor]``.
        floor: ``w`` stays in ``[floor, 1 - floor]``; in ``[0, 0.5)``.
        gate_lr: Learning rate of the gate; 0 freezes ``w`` at ``init_weight``.
        ratio_clip: Truncation of the learner's importance weight ``pi_on / pi_w``.
        optimizer_class, optimizer_kwargs: The optimiser (set by the algorithm: RMSprop for A2C, Adam for PPO).
        use_sde: Must be False (categorical actions).
    """

    def __init__(self, observation_space: spaces.Space, action_space: spaces.Space, lr_schedule: Schedule, *,
                 component_class: type[ActorCriticPolicy], component_kwargs: dict[str, Any] | None = None,
                 init_weight: float = INIT_WEIGHT, floor: float = FLOOR, gate_lr: float = GATE_LR,
                 ratio_clip: float = RATIO_CLIP, optimizer_class: type[torch.optim.Optimizer] = torch.optim.Adam,
                 optimizer_kwargs: dict[str, Any] | None = None, use_sde: bool = False) -> None:
        if not isinstance(action_space, spaces.Discrete):
            raise TypeError(f"ap needs a Discrete action space, got {action_space}")
        if use_sde:
            raise ValueError("ap mixes categorical policies: use_sde must be False")
        if not 0.0 <= floor < 0.5:
            raise ValueError(f"floor must be in [0, 0.5), got {floor}")
        if not floor <= init_weight <= 1.0 - floor:
            raise ValueError(f"init_weight must be in [floor, 1 - floor] = [{floor}, {1 - floor}], got {init_weight}")
        if gate_lr < 0:
            raise ValueError(f"gate_lr must be >= 0, got {gate_lr}")
        if ratio_clip <= 0:
            raise ValueError(f"ratio_clip must be > 0, got {ratio_clip}")
        if optimizer_kwargs is None:  # ActorCriticPolicy's default
            optimizer_kwargs = {"eps": 1e-5} if optimizer_class is torch.optim.Adam else {}
        BasePolicy.__init__(self, observation_space, action_space, optimizer_class=optimizer_class,
                            optimizer_kwargs=optimizer_kwargs)
        self.use_sde = False
        self.component_class, self.component_kwargs = component_class, dict(component_kwargs or {})
        self.init_weight, self.floor, self.gate_lr, self.ratio_clip = init_weight, floor, gate_lr, ratio_clip
        # The learner is built first: with the same seed it starts exactly like a plain policy of its class.
        self.learner = component_class(observation_space, action_space, lr_schedule, **self.component_kwargs)
        with torch.random.fork_rng(devices=[]):  # the frozen copy's throwaway init leaves the RNG stream alone
            self.pretrained = component_class(observation_space, action_space, lr_schedule, **self.component_kwargs)
        self.pretrained.requires_grad_(False)
        self.pretrained.set_training_mode(False)
        with np.errstate(divide="ignore"):
            theta = float(np.log(init_weight - floor) - np.log(1.0 - floor - init_weight))
        if gate_lr > 0 and not math.isfinite(theta):
            raise ValueError("a weight of exactly 0 or 1 cannot be learned: use floor > 0, an inner init_weight "
                             "or gate_lr = 0")
        self.gate = torch.nn.Parameter(torch.tensor(theta), requires_grad=gate_lr > 0)
        groups: list[dict[str, Any]] = [{"params": list(self.learner.parameters())}]
        if gate_lr > 0:
            groups.append({"params": [self.gate], "lr": gate_lr, "name": "gate"})
        self.optimizer = optimizer_class(groups, lr=lr_schedule(1), **self.optimizer_kwargs)  # type: ignore[call-arg]

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = BasePolicy._get_constructor_parameters(self)
        data.update(lr_schedule=self._dummy_schedule, component_class=self.component_class,
                    component_kwargs=self.component_kwargs, init_weight=self.init_weight, floor=self.floor,
                    gate_lr=self.gate_lr, ratio_clip=self.ratio_clip, optimizer_class=self.optimizer_class,
                    optimizer_kwargs=self.optimizer_kwargs)
        return data

    def log_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(log w, log(1 - w))``, computed stably from the gate (differentiable)."""
        log_floor = torch.tensor(math.log(self.floor) if self.floor > 0 else -math.inf, device=self.gate.device)
        scale = math.log1p(-2.0 * self.floor)
        return (torch.logaddexp(log_floor, scale + F.logsigmoid(self.gate)),
                torch.logaddexp(log_floor, scale + F.logsigmoid(-self.gate)))

    @property
    def weight(self) -> float:
        """Current weight ``w`` of the pretrained policy."""
        with torch.no_grad():
            return float(self.log_weights()[0].exp())

    def train(self, mode: bool = True) -> MixturePolicy:
        """``nn.Module.train``; the frozen pretrained policy always stays in eval mode."""
        super().train(mode)
        self.pretrained.train(False)
        return self

    def pretrained_log_probs(self, obs: PyTorchObs) -> tuple[torch.Tensor, PyTorchObs]:
        """The frozen policy's (B, n) log-probabilities (stored with a rollout's observations, else computed) and
        the observations without them (SB3's preprocessing rejects keys outside the space)."""
        if isinstance(obs, dict) and PRETRAINED_LOG_P in obs:
            return obs[PRETRAINED_LOG_P], {k: v for k, v in obs.items() if k != PRETRAINED_LOG_P}
        with torch.no_grad():
            return _log_probs(self.pretrained.get_distribution(obs)), obs

    def get_distribution(self, obs: PyTorchObs) -> Distribution:
        """The mixture's categorical distribution."""
        log_pre, obs = self.pretrained_log_probs(obs)
        log_on = _log_probs(self.learner.get_distribution(obs))
        logits = mixture_log_probs(log_pre, log_on, *self.log_weights())
        return FastCategorical().proba_distribution(logits)

    def predict_values(self, obs: PyTorchObs) -> torch.Tensor:
        """The learner's value estimate."""
        return self.learner.predict_values(obs)

    def forward(self, obs: PyTorchObs, deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Actions sampled from the mixture (argmax if ``deterministic``), the learner's values, log pi_w."""
        dist = self.get_distribution(obs)
        actions = dist.get_actions(deterministic=deterministic)
        return actions.reshape((-1, *self.action_space.shape)), self.predict_values(obs), dist.log_prob(actions)  # type: ignore[misc]

    def evaluate_actions(self, obs: PyTorchObs, actions: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Values, the surrogate log-probability and the mixture's entropy (what A2C/PPO's losses differentiate).

        The surrogate's value is ``log pi_w(actions)``; its gradient is the gate's ``grad log pi_w`` plus the
        learner's ``rho grad log pi_on`` (see the module docstring).
        """
        log_pre, obs = self.pretrained_log_probs(obs)
        log_on_all = _log_probs(self.learner.get_distribution(obs))
        log_w, log_1mw = self.log_weights()
        mixed = FastCategorical().proba_distribution(mixture_log_probs(log_pre, log_on_all, log_w, log_1mw))
        flat = actions.long().reshape(-1, 1)
        log_on = log_on_all.gather(1, flat).squeeze(1)
        # The mixture's log-probability with the learner held fixed: the gate's gradient only.
        log_mix = mixture_log_probs(log_pre.gather(1, flat), log_on_all.detach().gather(1, flat),
                                    log_w, log_1mw).squeeze(1)
        rho = (log_on.detach() - log_mix.detach()).exp().clamp(max=self.ratio_clip)
        surrogate = log_mix + rho * (log_on - log_on.detach())
        return self.predict_values(obs), surrogate, mixed.entropy()

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> torch.Tensor:
        return self.get_distribution(observation).get_actions(deterministic=deterministic)


class _Adaptive(OnPolicyAlgorithm):
    """An SB3 on-policy algorithm over a :class:`MixturePolicy`: keeps the gate's learning rate, logs ``w``."""

    policy: MixturePolicy

    def _update_learning_rate(self, optimizers: list[torch.optim.Optimizer] | torch.optim.Optimizer) -> None:
        super()._update_learning_rate(optimizers)
        for group in self.policy.optimizer.param_groups:
            if group.get("name") == "gate":
                group["lr"] = self.policy.gate_lr

    def train(self) -> None:
        buffer = self.rollout_buffer
        if isinstance(buffer, DictRolloutBuffer) and not buffer.generator_ready:  # a fresh rollout, not flattened
            obs = {k: buffer.to_torch(v.reshape(-1, *v.shape[2:])) for k, v in buffer.observations.items()}
            log_pre = self.policy.pretrained_log_probs(obs)[0].cpu().numpy()
            buffer.observations[PRETRAINED_LOG_P] = log_pre.reshape(buffer.buffer_size, buffer.n_envs, -1)
        super().train()
        self.logger.record("train/ap_weight", self.policy.weight)


class AdaptiveA2C(_Adaptive, A2C):
    """SB3 ``A2C`` for ``ap`` (see :class:`MixturePolicy`)."""


class AdaptivePPO(_Adaptive, PPO):
    """SB3 ``PPO`` for ``ap`` (see :class:`MixturePolicy`)."""


#: The mixture's learner per ``agent.algo`` (``ialp.config.Algo``: the same names).
ALGOS: dict[Algo, type[AdaptiveA2C] | type[AdaptivePPO]] = {"a2c": AdaptiveA2C, "ppo": AdaptivePPO}


def adaptive_mixture(pretrained: OnPolicyAlgorithm, env: VecEnv, algo: str, *, learning_rate: float | Schedule,
                     n_steps: int, gamma: float, ent_coef: float, seed: int | None, floor: float = FLOOR,
                     init_weight: float = INIT_WEIGHT, gate_lr: float = GATE_LR, init: ApInit = "fresh",
                     tensorboard_log: str | None = None, **algo_kwargs: Any) -> AdaptiveA2C | AdaptivePPO:
    """``ap``: an SB3 model whose ``learn`` is the online phase and whose ``predict`` acts with the mixture.

    Args:
        pretrained: The pretrained SB3 actor-critic (``A2C``/``PPO``, any categorical ``ActorCriticPolicy``); it
            is copied, never modified.
        env: The online environment (same spaces as ``pretrained``'s).
        algo: ``a2c`` or ``ppo``: the algorithm that trains the learner and the gate.
        learning_rate, n_steps, gamma, ent_coef, seed: The algorithm's hyperparameters.
        floor, init_weight, gate_lr: The gate's (see the module docstring for the defaults).
        init: ``fresh`` (a new learner) or ``pretrained`` (the learner starts as a copy of the pretrained policy).
        tensorboard_log: TensorBoard folder.
        **algo_kwargs: More arguments of ``algo`` (e.g. PPO's ``batch_size``, ``n_epochs``; ``device`` defaults to
            the pretrained model's, ``verbose`` to 0).

    Returns:
        An :class:`AdaptiveA2C` or :class:`AdaptivePPO`.
    """
    if algo not in ALGOS:
        raise ValueError(f"algo must be one of {sorted(ALGOS)}, got {algo!r}")
    if init not in AP_INITS:
        raise ValueError(f"init must be one of {AP_INITS}, got {init!r}")
    if not isinstance(pretrained.policy, ActorCriticPolicy) or isinstance(pretrained.policy, MixturePolicy):
        raise TypeError(f"pretrained must be an actor-critic model, got a {type(pretrained.policy).__name__}")
    if pretrained.observation_space != env.observation_space or pretrained.action_space != env.action_space:
        raise ValueError("the pretrained model's observation/action spaces differ from the environment's")
    policy_kwargs = {"component_class": pretrained.policy_class, "component_kwargs": dict(pretrained.policy_kwargs),
                     "init_weight": init_weight, "floor": floor, "gate_lr": gate_lr}
    kwargs: dict[str, Any] = {"device": pretrained.device, "verbose": 0, **algo_kwargs}
    model = ALGOS[algo](MixturePolicy, env, learning_rate=learning_rate, n_steps=n_steps, gamma=gamma,
                        ent_coef=ent_coef, seed=seed, policy_kwargs=policy_kwargs, tensorboard_log=tensorboard_log,
                        **kwargs)
    state = pretrained.policy.state_dict()
    model.policy.pretrained.load_state_dict(state)
    if init == "pretrained":
        model.policy.learner.load_state_dict(state)
    return model


def load_adaptive(path: str | Path, algo: Algo, env: VecEnv | None = None,
                  device: str | torch.device = "cpu") -> AdaptiveA2C | AdaptivePPO:
    """A model saved by ``adaptive_mixture(...).save(path)`` (learner, frozen copy, gate and optimiser)."""
    return ALGOS[algo].load(str(path), env=env, device=device)
