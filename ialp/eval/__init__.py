"""Evaluation: roll policies out on batched environments and summarise their episodes."""

from ialp.eval.rollout import EpisodeStats, OraclePolicy, Policy, RandomPolicy, SB3Policy, evaluate, summarize

__all__ = ["EpisodeStats", "OraclePolicy", "Policy", "RandomPolicy", "SB3Policy", "evaluate", "summarize"]
