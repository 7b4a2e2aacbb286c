"""Learning sanity: A2C and PPO with the item-scoring policy learn on a small synthetic world."""

from __future__ import annotations

import numpy as np
import pytest

from ialp.agents.common import sb3_model
from ialp.config import AgentConfig
from ialp.envs import make_batched
from ialp.eval import RandomPolicy, SB3Policy, evaluate

WORLD = {"n_items": 20, "boredom_weight": 0.3}


@pytest.mark.parametrize("algo", ["a2c", "ppo"])
def test_agent_beats_random_policy_on_small_synthetic_env(algo: str) -> None:
    evaluation = make_batched("ialp/Synthetic-v0", num_envs=300, **WORLD)
    random_return = evaluate(RandomPolicy(seed=1), evaluation, seed=1000).returns.mean()
    learned = []
    for seed in (0, 1, 2):
        venv = make_batched("ialp/Synthetic-v0", num_envs=16, seed=seed, **WORLD)
        model = sb3_model(algo, venv, AgentConfig(algo=algo, net_arch=[64]), seed)
        model.learn(8000)
        learned.append(evaluate(SB3Policy(model, deterministic=False), evaluation, seed=1000).returns.mean())
    assert min(learned) > random_return, (learned, random_return)
    assert np.mean(learned) > 1.2 * random_return, (learned, random_return)


def test_evaluate_counts_one_episode_per_user() -> None:
    venv = make_batched("ialp/Synthetic-v0", num_envs=50, **WORLD)
    stats = evaluate(RandomPolicy(seed=0), venv, seed=3, episodes_per_user=2)
    assert len(stats.returns) == len(stats.lengths) == 100
    assert (stats.lengths >= 1).all() and (stats.lengths <= 50).all()
    assert 0 < stats.coverage <= 1
    again = evaluate(RandomPolicy(seed=0), venv, seed=3, episodes_per_user=2)
    np.testing.assert_array_equal(stats.returns, again.returns)
