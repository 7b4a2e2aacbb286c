"""Evaluation: roll policies out on batched environments, summarise their episodes, write result files."""

from ialp.eval.report import CURVE_FIELDS, RESULT_FIELDS, plot_curves, plot_results, summary_table, write_csv
from ialp.eval.rollout import EpisodeStats, OraclePolicy, Policy, RandomPolicy, SB3Policy, evaluate, summarize

__all__ = ["CURVE_FIELDS", "RESULT_FIELDS", "EpisodeStats", "OraclePolicy", "Policy", "RandomPolicy", "SB3Policy",
           "evaluate", "plot_curves", "plot_results", "summarize", "summary_table", "write_csv"]
