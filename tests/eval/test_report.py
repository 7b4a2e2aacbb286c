"""What the summary prints about online curves: head start, when a learner reaches a reference's final return, and
the seed-averaged curve table."""

from __future__ import annotations

from typing import Any

from ialp.eval.report import binned_curves, curve_table, online_comparison


def _curve(method: str, returns: list[float], total: int, seed: int = 0) -> list[dict[str, Any]]:
    """One episode per tenth of ``total`` steps, ending in its middle."""
    return [{"method": method, "seed": seed, "setting": "free", "step": (i + 0.5) * total / len(returns), "return": r}
            for i, r in enumerate(returns)]


def test_online_comparison_reports_head_start_and_crossing_against_the_named_reference() -> None:
    total = 1000
    curves = (_curve("ppo-scratch", [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], total)
              + _curve("a2c-scratch", [1, 1, 2, 2, 3, 3, 4, 4, 5, 5], total)
              + _curve("a-ialp-ft", [6, 7, 8, 9, 9, 10, 10, 11, 11, 11], total))
    binned = binned_curves(curves, total)
    line = online_comparison(binned, "a-ialp-ft", "ppo-scratch")
    assert "first 10% of steps 6.000 vs 1.000" in line
    assert "final return (10.000) after 60% of its online steps" in line  # bin 6 is the first at >= 10
    against_a2c = online_comparison(binned, "a-ialp-ft", "a2c-scratch")
    assert "final return (5.000) after 10% of its online steps" in against_a2c
    flat = binned_curves(_curve("a-ialp-ft", [1] * 10, total) + curves[:10], total)
    never = online_comparison(flat, "a-ialp-ft", "ppo-scratch")
    assert "not within its steps" in never
    assert online_comparison(binned, "a-ialp-ap", "ppo-scratch") == ""  # a missing learner prints nothing


def test_curve_table_averages_each_tenth_over_seeds_and_marks_empty_tenths() -> None:
    total = 1000
    curves = (_curve("ppo-scratch", [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], total, seed=0)
              + _curve("ppo-scratch", [3, 4, 5, 6, 7, 8, 9, 10, 11, 12], total, seed=1)
              + [c for c in _curve("a-ialp-ft", [6, 7, 8, 9, 9, 10, 10, 11, 11, 11], total) if c["return"] != 7])
    lines = curve_table(binned_curves(curves, total)).splitlines()
    assert lines[0] == "| method | seeds | 10% | 20% | 30% | 40% | 50% | 60% | 70% | 80% | 90% | 100% |"
    assert lines[2] == "| ppo-scratch | 2 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 | 10 | 11 |"
    assert lines[3] == "| a-ialp-ft | 1 | 6 | – | 8 | 9 | 9 | 10 | 10 | 11 | 11 | 11 |"  # no episode ended in 10-20%
    assert curve_table(binned_curves([], total)) == ""
