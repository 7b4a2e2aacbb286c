"""A pretrained policy trained on INVERTED preferences: ``ft`` starts worse, ``ap`` recovers toward the learner."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ialp.config import load_config
from ialp.experiment import Pipeline

REPO = Path(__file__).resolve().parents[2]


def test_ap_guards_against_a_compromised_pretrained_policy(tmp_path: Path) -> None:
    cfg = load_config(REPO / "configs" / "synthetic.yaml", [
        "llm.backend=oracle", "distill.mode=score", "distill.invert=true", "env.kwargs={n_items: 30}",
        "distill.queries=300", "distill.log_users=200", "reward.epochs=30", "pretrain.total_timesteps=2000",
        "online.total_timesteps=3000", "online.ap_min_episodes=5", "eval.users=16", "eval.seeds=[0, 1, 2]",
        "methods=[a2c-scratch, ialp, a-ialp-ft, a-ialp-ap]"])
    rows = Pipeline(cfg, tmp_path, progress=False).run()

    def mean(method: str, key: str) -> float:
        return float(np.mean([r[key] for r in rows if r["method"] == method]))

    scratch_first, scratch_last = mean("a2c-scratch", "online_first"), mean("a2c-scratch", "online_last")
    ft_first, ap_last = mean("a-ialp-ft", "online_first"), mean("a-ialp-ap", "online_last")
    inverted = mean("ialp", "online_first")
    print(f"scratch {scratch_first:.2f}->{scratch_last:.2f}, inverted {inverted:.2f}, ft first {ft_first:.2f}, "
          f"ap last {ap_last:.2f}")
    assert inverted < scratch_first  # the compromise is real: worse than a random start
    assert ft_first < scratch_first  # ft starts from the compromised policy
    assert ap_last > ft_first + 0.5 * (scratch_first - ft_first)  # ap moved toward the learner
    assert ap_last > 0.7 * scratch_last
