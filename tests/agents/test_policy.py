"""The item-scoring actor-critic: masks, its fused log-prob/entropy, generalisation through the item table."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from stable_baselines3 import A2C

from ialp.agents.common import sb3_model
from ialp.agents.policy import ItemScoringPolicy, log_prob_and_entropy
from ialp.config import AgentConfig
from ialp.envs import make_batched

WORLD = {"n_items": 40, "warm_start": 3}


def _obs(policy: ItemScoringPolicy, obs: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return policy.obs_to_tensor(obs)[0]  # type: ignore[return-value]


def test_fused_log_prob_and_entropy_match_autograd() -> None:
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 9, generator=gen, dtype=torch.float64) * 3
    logits[:, :2] = -1e9  # masked actions
    actions = torch.tensor([2, 3, 4, 5, 6, 8])
    assert torch.autograd.gradcheck(lambda z: log_prob_and_entropy(z, actions), (logits.requires_grad_(),))
    log_p = torch.log_softmax(logits.detach(), -1)
    lp, h = log_prob_and_entropy(logits.detach(), actions)
    torch.testing.assert_close(lp, log_p.gather(1, actions[:, None])[:, 0])
    torch.testing.assert_close(h, -(log_p.exp() * log_p).sum(-1))


def test_blocked_items_are_never_sampled_under_nx0() -> None:
    venv = make_batched("ialp/Synthetic-v0", num_envs=32, seed=0, repeat="forbid", **WORLD)
    model = sb3_model("a2c", venv, AgentConfig(net_arch=[16]), seed=0)
    obs = venv.reset()
    seen: list[set[int]] = [set() for _ in range(32)]
    for _ in range(30):
        actions, _ = model.predict(obs, deterministic=False)
        for i, a in enumerate(actions):
            assert int(a) not in seen[i]
        obs, _, dones, infos = venv.step(actions)
        for i in range(32):
            seen[i] = set() if dones[i] else seen[i] | {int(infos[i]["item"])}
            assert not infos[i].get("terminal_observation") or not dones[i] or not infos[i].get("repeat")
    # the masks enter the stored observation, so the update's log-probabilities see them as well
    t_obs = _obs(model.policy, obs)
    _, log_prob, entropy = model.policy.evaluate_actions(t_obs, torch.zeros(32, dtype=torch.long))
    assert torch.isfinite(entropy).all()
    blocked_zero = (t_obs["blocked"] == 0).any(1)
    assert (log_prob[blocked_zero] < -1e8).all() and (log_prob[~blocked_zero] > -1e8).all()


def test_candidate_mask_restricts_the_slots() -> None:
    venv = make_batched("ialp/Synthetic-v0", num_envs=8, seed=1, repeat="forbid",
                        candidates={"kind": "knn", "k": 6, "recent": 2}, **WORLD)
    model = sb3_model("ppo", venv, AgentConfig(algo="ppo", net_arch=[16]), seed=0)
    obs = venv.reset()
    for _ in range(15):
        obs, _, _, _ = venv.step(model.predict(obs, deterministic=False)[0])
    mask = obs["candidate_mask"] > 0.5
    assert (~mask).any()  # some candidates were already shown this session
    dist = model.policy.get_distribution(_obs(model.policy, obs))
    probs = dist.log_p.exp().detach().numpy()
    assert np.all(probs[~mask] == 0) and np.allclose(probs.sum(1), 1.0)


def test_scores_generalise_to_items_with_the_same_embedding(tmp_path: Path) -> None:
    """A gradient step toward item 0 raises its twin (same embedding, other bias) more than other items."""
    venv = make_batched("ialp/Synthetic-v0", num_envs=16, seed=0, **WORLD)
    table = venv.item_embeddings.copy()
    twin = int(np.argmax(np.abs(table - table[0]).sum(1) > 0.5))  # an item unlike item 0 ...
    table[twin] = table[0]  # ... made its exact twin
    model = A2C(ItemScoringPolicy, venv, policy_kwargs={"item_embeddings": table, "net_arch": [16]}, seed=0)
    policy = model.policy
    obs = _obs(policy, venv.reset())
    before = policy.get_distribution(obs).logits.detach()
    _, log_prob, _ = policy.evaluate_actions(obs, torch.zeros(16, dtype=torch.long))
    policy.optimizer.zero_grad()
    (-log_prob.mean()).backward()
    policy.optimizer.step()
    gain = (policy.get_distribution(obs).logits.detach() - before).mean(0)
    others = np.delete(np.arange(len(table)), [0, twin])
    assert gain[twin] > 0.5 * gain[0] and gain[twin] > gain[others].max()
    model.save(tmp_path / "m.zip")
    again = A2C.load(tmp_path / "m.zip", device="cpu")
    torch.testing.assert_close(again.policy.get_distribution(obs).logits, policy.get_distribution(obs).logits)
