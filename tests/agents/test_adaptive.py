"""``ap``: the adaptive mixture of a frozen pretrained policy and an online learner, on SB3's machinery."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from stable_baselines3 import A2C, PPO
from stable_baselines3.common.distributions import Distribution
from stable_baselines3.common.logger import configure
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import MultiInputActorCriticPolicy
from stable_baselines3.common.utils import set_random_seed

from ialp.agents.adaptive import PRETRAINED_LOG_P, AdaptiveA2C, MixturePolicy, adaptive_mixture, load_adaptive
from ialp.agents.policy import FastCategorical
from ialp.envs import make_batched
from ialp.envs.vector import BatchedRecEnv

N_ITEMS = 30
HP: dict[str, Any] = {"learning_rate": 1e-3, "n_steps": 8, "gamma": 0.9, "ent_coef": 0.01}
TINY = {"net_arch": [16]}


def make_env(seed: int = 0) -> BatchedRecEnv:
    return make_batched("ialp/Synthetic-v0", num_envs=8, seed=seed, n_items=N_ITEMS)


def sb3(algo: str, seed: int, policy: Any = "MultiInputPolicy", policy_kwargs: dict[str, Any] | None = None
        ) -> OnPolicyAlgorithm:
    cls: Any = {"a2c": A2C, "ppo": PPO}[algo]
    extra = {"batch_size": 32, "n_epochs": 2} if algo == "ppo" else {}
    return cls(policy, make_env(), seed=seed, device="cpu", policy_kwargs=policy_kwargs or dict(TINY), **HP, **extra)


def favouring(items: np.ndarray, seed: int = 1, logit: float = 8.0) -> OnPolicyAlgorithm:
    """A 'pretrained' A2C whose logits favour ``items`` in every state."""
    model = sb3("a2c", seed)
    net = model.policy.action_net
    with torch.no_grad():
        net.weight.zero_()
        net.bias.zero_()
        net.bias[items] = logit
    return model


def probs(dist: Distribution) -> torch.Tensor:
    if isinstance(dist, FastCategorical):  # the mixture's (and ItemScoringPolicy's) distribution
        return dist.log_p.exp()
    return dist.distribution.probs  # type: ignore[union-attr]


@pytest.mark.parametrize("algo", ["a2c", "ppo"])
def test_weight_zero_update_equals_plain_sb3(algo: str) -> None:
    plain = sb3(algo, seed=0)
    mix = adaptive_mixture(sb3(algo, seed=1), make_env(), algo, seed=0, init_weight=0.0, floor=0.0, gate_lr=0.0,
                           **HP, **({"batch_size": 32, "n_epochs": 2} if algo == "ppo" else {}))
    learner = mix.policy.learner
    assert mix.policy.weight == 0.0
    start = [p.detach().clone() for p in plain.policy.parameters()]
    for a, b in zip(start, learner.parameters(), strict=True):  # same seed, same initial weights
        assert torch.equal(a, b)
    frozen = [p.detach().clone() for p in mix.policy.pretrained.parameters()]

    _, callback = plain._setup_learn(plain.n_steps * plain.n_envs, None)
    assert plain.env is not None
    plain.collect_rollouts(plain.env, callback, plain.rollout_buffer, plain.n_steps)
    mix._setup_learn(mix.n_steps * mix.n_envs, None)
    mix.rollout_buffer = plain.rollout_buffer  # the same rollout for both
    for model in (plain, mix):
        set_random_seed(0)  # PPO's minibatch order (SB3 draws it from NumPy's global generator)
        model.train()

    moved = False
    for a, b, s in zip(plain.policy.parameters(), learner.parameters(), start, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-7)
        moved |= not torch.allclose(a, s)
    assert moved  # the update did something
    for a, b in zip(frozen, mix.policy.pretrained.parameters(), strict=True):
        assert torch.equal(a, b)
    assert mix.policy.weight == 0.0


def test_probabilities_are_the_weighted_mixture() -> None:
    pre = sb3("a2c", seed=1)
    with torch.no_grad():
        pre.policy.action_net.bias.copy_(torch.linspace(-3.0, 3.0, N_ITEMS))
    env = make_env()
    mix = adaptive_mixture(pre, env, "a2c", seed=0, init_weight=0.3, **HP)
    obs, _ = mix.policy.obs_to_tensor(env.reset())  # type: ignore[arg-type]
    with torch.no_grad():
        p = probs(mix.policy.get_distribution(obs))
        p_pre = probs(pre.policy.get_distribution(obs))
        p_on = probs(mix.policy.learner.get_distribution(obs))
    assert mix.policy.weight == pytest.approx(0.3)
    torch.testing.assert_close(p.sum(-1), torch.ones(len(p)))
    torch.testing.assert_close(p, 0.3 * p_pre + 0.7 * p_on)
    assert not torch.allclose(p_pre, p_on)


class Banning(MultiInputActorCriticPolicy):
    """A policy that rules some items out with ``-inf`` logits (as a masking catalogue head does)."""

    def __init__(self, *args: Any, banned: tuple[int, ...] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.banned = list(banned)

    def _get_action_dist_from_latent(self, latent_pi: torch.Tensor) -> Distribution:
        logits = self.action_net(latent_pi).clone()
        logits[:, self.banned] = -torch.inf
        return self.action_dist.proba_distribution(action_logits=logits)


def test_masked_actions_keep_zero_probability_and_no_nans() -> None:
    pre = sb3("a2c", seed=1, policy=Banning, policy_kwargs={**TINY, "banned": tuple(range(10))})
    env = make_env()
    mix = adaptive_mixture(pre, env, "a2c", seed=0, init_weight=0.5, gate_lr=0.05, **HP)
    learner: Any = mix.policy.learner
    learner.banned = list(range(5, 15))
    mix.learn(1024)
    for param in mix.policy.parameters():
        assert torch.isfinite(param).all()
    obs, _ = mix.policy.obs_to_tensor(env.reset())  # type: ignore[arg-type]
    dist = mix.policy.get_distribution(obs)
    p = probs(dist)
    entropy = dist.entropy()
    assert torch.isfinite(p).all() and entropy is not None and torch.isfinite(entropy).all()
    assert (p[:, 5:10] == 0).all()  # ruled out by both
    assert (p[:, :5] > 0).all() and (p[:, 10:15] > 0).all()  # ruled out by one only
    torch.testing.assert_close(p.sum(-1), torch.ones(len(p)))
    buffer_actions = mix.rollout_buffer.actions.ravel()
    assert not np.isin(buffer_actions, np.arange(5, 10)).any()


def mean_item_rewards(steps: int = 300) -> np.ndarray:
    """Mean reward of each item under uniformly random recommendations (only what ``step`` returns)."""
    env = make_env(seed=100)
    env.reset()
    rng = np.random.default_rng(0)
    total, count = np.zeros(N_ITEMS), np.zeros(N_ITEMS)
    for _ in range(steps):
        actions = rng.integers(0, N_ITEMS, env.num_envs)
        _, rewards, _, _ = env.step(actions)
        np.add.at(total, actions, rewards)
        np.add.at(count, actions, 1)
    return total / np.maximum(count, 1)


@pytest.mark.parametrize("kind", ["compromised", "good"])
def test_weight_follows_the_evidence(kind: str) -> None:
    order = np.argsort(mean_item_rewards())
    items = order[:3] if kind == "compromised" else order[-5:]
    mix = adaptive_mixture(favouring(items), make_env(), "a2c", seed=0, init_weight=0.5, **HP)
    mix.learn(1536)
    w = mix.policy.weight
    print(f"{kind}: w 0.5 -> {w:.3f}")
    if kind == "compromised":
        assert w < 0.25
    else:
        assert w > 0.65


def test_learn_logs_weight_then_save_load_predict(tmp_path: Path) -> None:
    env = make_env()
    mix = adaptive_mixture(sb3("a2c", seed=1), env, "a2c", seed=0, gate_lr=0.03, **HP)
    mix.set_logger(configure(str(tmp_path), ["csv"]))
    mix.learn(512, log_interval=1)
    groups = mix.policy.optimizer.param_groups
    assert [g["lr"] for g in groups] == [HP["learning_rate"], 0.03]  # SB3's schedule did not overwrite the gate's
    header, *rows = (tmp_path / "progress.csv").read_text().splitlines()
    col = header.split(",").index("train/ap_weight")
    logged = [float(v) for r in rows if (v := r.split(",")[col])]  # SB3 dumps before each update: one fewer
    assert len(logged) == 512 // (8 * 8) - 1 and all(0.05 <= w <= 0.95 for w in logged) and logged[-1] != 0.5

    mix.save(tmp_path / "ap.zip")
    back = load_adaptive(tmp_path / "ap.zip", "a2c", env)
    assert isinstance(back, AdaptiveA2C) and isinstance(back.policy, MixturePolicy)
    assert back.policy.weight == mix.policy.weight
    for (k, a), (k2, b) in zip(mix.policy.state_dict().items(), back.policy.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(a, b)
    obs = env.reset()
    assert isinstance(obs, dict)
    np.testing.assert_array_equal(back.predict(obs, deterministic=True)[0], mix.predict(obs, deterministic=True)[0])
    back.learn(128)  # continues online


def test_pretrained_init_and_argument_checks() -> None:
    pre = sb3("a2c", seed=1)
    mix = adaptive_mixture(pre, make_env(), "a2c", seed=0, init="pretrained", **HP)
    for a, b in zip(pre.policy.state_dict().values(), mix.policy.learner.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    for bad in ({"floor": 0.5}, {"init_weight": 0.01}, {"gate_lr": -1.0}, {"init": "copy"},
                {"floor": 0.0, "init_weight": 1.0}):
        with pytest.raises(ValueError):
            adaptive_mixture(pre, make_env(), "a2c", seed=0, **HP, **bad)
    with pytest.raises(ValueError):
        adaptive_mixture(pre, make_batched("ialp/Synthetic-v0", num_envs=8, seed=0, n_items=20), "a2c", seed=0, **HP)


def test_critic_warmup_freezes_the_actor_then_releases_it() -> None:
    from ialp.agents.adaptive import finetune
    from ialp.agents.policy import ItemScoringPolicy

    env = make_env()
    model = A2C(ItemScoringPolicy, env, seed=0, device="cpu", **HP,
                policy_kwargs={"net_arch": [16], "item_embeddings": env.item_embeddings})
    policy = model.policy
    critic_ids = {id(p) for p in [*policy.value_net.parameters(), *policy.mlp_extractor.value_net.parameters()]}
    snapshot = {n: p.detach().clone() for n, p in policy.named_parameters()}
    warmup = 5 * env.num_envs * HP["n_steps"]
    _, episodes = finetune(model, env, warmup, critic_warmup=warmup)
    assert episodes.returns  # the frozen actor still acted and sessions were recorded
    for name, p in policy.named_parameters():
        moved = not torch.equal(p, snapshot[name])
        assert p.requires_grad  # released at the end of training
        assert moved == (id(p) in critic_ids), name
    finetune(model, env, 2 * env.num_envs * HP["n_steps"], critic_warmup=0)
    assert not torch.equal(policy.query.weight, snapshot["query.weight"])  # afterwards the actor trains


def test_finetune_trains_online_at_the_rate_it_is_given() -> None:
    from ialp.agents.adaptive import finetune
    from ialp.agents.policy import ItemScoringPolicy

    env = make_env()
    model = A2C(ItemScoringPolicy, env, seed=0, device="cpu", **{**HP, "learning_rate": 4e-3},
                policy_kwargs={"net_arch": [16], "item_embeddings": env.item_embeddings})
    steps = 2 * env.num_envs * HP["n_steps"]
    finetune(model, env, steps)
    assert model.policy.optimizer.param_groups[0]["lr"] == 4e-3  # default: the rate the model was trained at
    finetune(model, env, steps, learning_rate=1e-3)
    assert model.policy.optimizer.param_groups[0]["lr"] == 1e-3


def test_train_reads_the_frozen_policys_log_probs_stored_with_the_rollout() -> None:
    """The frozen policy is evaluated once per rollout: the stored log-probabilities stay aligned with the
    observations when SB3 flattens and shuffles the buffer, and ``evaluate_actions`` gives the same with them."""
    pre = sb3("a2c", seed=1)
    with torch.no_grad():
        pre.policy.action_net.bias.copy_(torch.linspace(-3.0, 3.0, N_ITEMS))
    mix = adaptive_mixture(pre, make_env(), "ppo", seed=0, init_weight=0.3, batch_size=32, n_epochs=2, **HP)
    _, callback = mix._setup_learn(mix.n_steps * mix.n_envs, None)
    assert mix.env is not None
    mix.collect_rollouts(mix.env, callback, mix.rollout_buffer, mix.n_steps)
    buffer = mix.rollout_buffer
    mix.train()
    assert buffer.generator_ready and PRETRAINED_LOG_P in buffer.observations
    obs = {k: buffer.to_torch(v) for k, v in buffer.observations.items() if k != PRETRAINED_LOG_P}  # flattened
    stored = buffer.to_torch(buffer.observations[PRETRAINED_LOG_P])
    assert stored.shape == (mix.n_steps * mix.n_envs, N_ITEMS)
    with torch.no_grad():
        torch.testing.assert_close(stored.exp(), probs(mix.policy.pretrained.get_distribution(obs)))
        actions = buffer.to_torch(buffer.actions).flatten()
        with_stored = mix.policy.evaluate_actions({**obs, PRETRAINED_LOG_P: stored}, actions)
        computed = mix.policy.evaluate_actions(obs, actions)
    for a, b in zip(with_stored, computed, strict=True):
        torch.testing.assert_close(a, b)
