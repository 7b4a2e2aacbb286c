"""A pretrained policy trained on INVERTED preferences: ``ft`` starts worse, ``ap`` moves its weight away from it.

Every curve compared here is measured the same way: returns of the online sessions of the online-adaptation
users, with actions sampled from the acting policy, binned by online environment steps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ialp.agents.adaptive import load_adaptive
from ialp.config import load_config
from ialp.experiment import Pipeline

REPO = Path(__file__).resolve().parents[2]


def test_ap_guards_against_a_compromised_pretrained_policy(tmp_path: Path) -> None:
    cfg = load_config(REPO / "configs" / "synthetic.yaml", [
        "llm.backend=oracle", "distill.mode=score", "distill.invert=true", "env.kwargs={n_items: 30, warm_start: 3}",
        "distill.queries=300", "distill.log_users=200", "reward.epochs=30", "agent.algo=a2c", "agent.num_envs=16",
        "agent.net_arch=[64]", "agent.learning_rate=0.001", "pretrain.total_timesteps=4000", "pretrain.leave_rules=[]",
        "online.total_timesteps=6000", "online.ap_init=fresh", "online.critic_warmup=0", "agent.gamma=0.9",
        "agent.gae_lambda=1.0",
        "eval.users=16", "eval.seeds=[0, 1, 2]", "eval.modes=[sample]", "settings=[free]",
        "methods=[a2c-scratch, ialp, a-ialp-ft, a-ialp-ap]"])
    rows = Pipeline(cfg, tmp_path, progress=False).run()

    def mean(method: str, key: str) -> float:
        return float(np.mean([r[key] for r in rows if r["method"] == method]))

    scratch_first, scratch_last = mean("a2c-scratch", "online_first"), mean("a2c-scratch", "online_last")
    inverted, ft_first = mean("ialp", "online_first"), mean("a-ialp-ft", "online_first")
    ap_first, ap_last = mean("a-ialp-ap", "online_first"), mean("a-ialp-ap", "online_last")
    weights = [load_adaptive(tmp_path / "runs" / f"a-ialp-ap_free_s{s}.zip", "a2c").policy.weight for s in (0, 1, 2)]
    print(f"scratch {scratch_first:.2f}->{scratch_last:.2f}, inverted {inverted:.2f}, ft first {ft_first:.2f}, "
          f"ap {ap_first:.2f}->{ap_last:.2f}, ap weights {weights}")
    assert inverted < 0.8 * scratch_first  # the compromise is real: worse than a random start
    assert ft_first < 0.8 * scratch_first  # ft starts from the compromised policy
    assert max(weights) < 0.3  # ap moved its weight off the compromised policy (it starts at 0.5)
    assert ap_last > ap_first + 0.5 * (scratch_first - ap_first)  # and recovered online
    assert ap_last > 0.7 * scratch_last
