"""The online comparison that the summary prints: head start and when a learner reaches a reference's final return."""

from __future__ import annotations

from typing import Any

from ialp.eval.report import online_comparison


def _curve(method: str, returns: list[float], total: int) -> list[dict[str, Any]]:
    """One episode per tenth of ``total`` steps, ending in its middle."""
    return [{"method": method, "seed": 0, "setting": "free", "step": (i + 0.5) * total / len(returns), "return": r}
            for i, r in enumerate(returns)]


def test_online_comparison_reports_head_start_and_crossing_against_the_named_reference() -> None:
    total = 1000
    curves = (_curve("ppo-scratch", [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], total)
              + _curve("a2c-scratch", [1, 1, 2, 2, 3, 3, 4, 4, 5, 5], total)
              + _curve("a-ialp-ft", [6, 7, 8, 9, 9, 10, 10, 11, 11, 11], total))
    line = online_comparison(curves, total, "a-ialp-ft", "ppo-scratch")
    assert "first 10% of steps 6.000 vs 1.000" in line
    assert "final return (10.000) after 60% of its online steps" in line  # bin 6 is the first at >= 10
    against_a2c = online_comparison(curves, total, "a-ialp-ft", "a2c-scratch")
    assert "final return (5.000) after 10% of its online steps" in against_a2c
    never = online_comparison(_curve("a-ialp-ft", [1] * 10, total) + curves[:10], total, "a-ialp-ft", "ppo-scratch")
    assert "not within its steps" in never
    assert online_comparison(curves, total, "a-ialp-ap", "ppo-scratch") == ""  # a missing learner prints nothing
