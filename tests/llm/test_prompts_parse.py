"""Prompt templates, rendering from logged data and from a live env, and answer parsing."""

from __future__ import annotations

import re
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import ialp  # noqa: F401  (registers the env ids)
from ialp.data import load_movielens
from ialp.llm.parse import parse_choice, parse_ranking
from ialp.llm.prompts import (
    PreferenceQuery,
    available_templates,
    format_feedback,
    load_template,
    query_from_env,
    query_from_log,
    render_query,
)

REPO = Path(__file__).resolve().parents[2]
MOVIELENS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "movielens"
TITLES = ["Heat (1995)", "Toy Story (1995)", "Alien (1979)", "Aliens (1986)", "Casino (1995)"]


# ------------------------------------------------------------------------------------- parsing
@pytest.mark.parametrize(("answer", "expected"), [
    ("B", 1), ("b", 1), ("(B)", 1), ("B.", 1), ("b)", 1), (" C\n", 2), ("**D**", 3), ("'A'", 0),
    ("Answer: B", 1), ("answer: b", 1), ("The answer is C.", 2), ("Final answer: (E)", 4), ("Option 2", 1),
    ("Choice: D because the user likes sci-fi", 3), ("B) Toy Story", 1), ("C. Alien (1979)", 2),
    ("(A) fits the history best", 0), ("I think the user would pick B.", 1), ("A is the best match", 0),
    ("3", 2), ("#5", 4), ('{"choice": "B"}', 1), ('{"choice": 2}', 1), ('Sure! {"answer": "toy story"}', 1),
    ('{"ranking": ["C", "A", "B"]}', 2), ("toy story", 1), ("The user will love Casino.", 4),
    ("heat", 0), ("Aliens", 3), ("Alien", 2), ("I'd go with Toy Storyy", None), ("Toy Stroy", 1),
])
def test_parse_choice_understands_many_formats(answer: str, expected: int | None) -> None:
    assert parse_choice(answer, TITLES) == expected


@pytest.mark.parametrize("answer", [
    None, "", "   ", "B or C", "A and B", "Either B or D", "Answer: B. Answer: C", "F", "Z", "7", "0",
    "I don't know", "a movie I liked", "asdfgh qwerty", "Heat or Casino", '{"choice": "Q"}', '{"foo": 1}',
    "B) Heat", "The answer is a comedy",
])
def test_parse_choice_refuses_to_guess(answer: str | None) -> None:
    assert parse_choice(answer, TITLES) is None


def test_parse_choice_by_item_id() -> None:
    assert parse_choice("Candidate 318", TITLES, ids=[1, 318, 2, 5, 9]) == 1
    assert parse_choice("318", TITLES, ids=[1, 318, 2, 5, 9]) == 1


@pytest.mark.parametrize(("answer", "expected"), [
    ('{"ranking": ["C", "A", "B"]}', [2, 0, 1]), ("B > A > C", [1, 0, 2]), ("Ranking: D, E, A", [3, 4, 0]),
    ("B, B, A", None), ("nonsense > words", None), ("", None), ('{"ranking": ["A", "A"]}', None),
])
def test_parse_ranking(answer: str, expected: list[int] | None) -> None:
    assert parse_ranking(answer, TITLES) == expected


# ------------------------------------------------------------------------------------- templates
def test_templates_are_versioned_and_installed() -> None:
    known = available_templates()
    assert {"choice", "choice-retry", "score"} <= set(known)
    t = load_template("choice")
    assert t.cache_tag == f"choice:v{t.version}" and not t.text.startswith("#")
    assert set(re.findall(r"{(\w+)}", t.text)) == {"history", "candidates", "letters"}
    with pytest.raises(FileNotFoundError, match="installed"):
        load_template("choice", 999)


def test_every_subpackage_is_listed_for_the_wheel() -> None:
    text = (REPO / "pyproject.toml").read_text()
    block = re.search(r"^\[tool\.setuptools\]$.*?^packages = \[(.*?)\]", text, re.MULTILINE | re.DOTALL)
    assert block, "pyproject.toml lists its packages under [tool.setuptools]"
    listed = set(re.findall(r'"([\w.]+)"', block[1]))
    present = {".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "ialp").rglob("*.py")
               if "__pycache__" not in p.parts}
    assert present <= listed, f"add {sorted(present - listed)} to [tool.setuptools] packages in pyproject.toml"
    assert "ialp.llm_prompts" in listed


def test_format_feedback() -> None:
    assert format_feedback(3.5, (0.5, 5.0)) == "rated 3.5/5"
    assert format_feedback(0.25, (0.0, 1.0)).startswith("engagement 0.25")


# ------------------------------------------------------------------------------------- rendering
def _structure(prompt: str, k: int) -> tuple[int, list[str]]:
    history = [ln for ln in prompt.splitlines() if ln.startswith("- ")]
    labels = [ln[:2] for ln in prompt.splitlines() if re.match(r"^[A-Z]\. ", ln)]
    assert labels == [f"{c}." for c in "ABCDEFGHIJ"[:k]]
    return len(history), labels


def test_logged_and_live_queries_render_alike() -> None:
    data = load_movielens(MOVIELENS / "ml-latest-small")
    logged = query_from_log(data.log, 3, [10, 20, 30, 40], before=12, window=5)
    assert len(logged.history_items) == 5 and logged.user == 3 and logged.feedback_range == (0.5, 5.0)
    start = int(np.searchsorted(data.log.users, 3))
    assert logged.history_items == tuple(int(i) for i in data.log.items[start + 7:start + 12])

    env = gym.make("ialp/Synthetic-v0", n_items=200, candidates=4)
    env.reset(seed=0)
    for a in (0, 1, 2):
        env.step(a)
    live = query_from_env(env, 0)
    session = env.unwrapped.session  # type: ignore[attr-defined]
    assert live.candidates == tuple(int(i) for i in session.cand_items[0])
    assert live.history_items == tuple(int(i) for i in session.hist_items[0][session.hist_items[0] >= 0])
    assert live.history_feedback == pytest.approx(session.observation()["feedback"][0][-3:].tolist())
    assert live.user_state is not None and set(live.user_state) == set(session.user_state)

    for query, catalog in ((logged, data.catalog), (live, env.unwrapped.model.catalog)):  # type: ignore[attr-defined]
        prompt = render_query(load_template("choice"), query, catalog)
        n_hist, _ = _structure(prompt, 4)
        assert n_hist == len(query.history_items)
        assert "A, B, C, D" in prompt and "{" not in prompt
        assert ("rated" if query is logged else "engagement") in prompt


def test_query_from_batched_env_rows() -> None:
    from ialp.envs import make_batched

    venv = make_batched("ialp/Synthetic-v0", 3, seed=1, n_items=100, leave_base=0.0, leave_slope=0.0)
    venv.reset()
    for _ in range(12):  # more steps than the window: the history is the last W items
        venv.step(np.arange(3, dtype=np.int64) + 3 * _)
    q = query_from_env(venv, 2, candidates=[5, 6, 7])
    assert len(q.history_items) == venv.session.history_len
    assert q.history_items == tuple(int(i) for i in venv.session.hist_items[2, -venv.session.history_len:])
    with pytest.raises(ValueError, match="outside"):
        query_from_env(venv, 3, candidates=[5])


def test_query_validation() -> None:
    with pytest.raises(ValueError, match="distinct"):
        PreferenceQuery((), (), (1, 1))
    with pytest.raises(ValueError, match="feedback"):
        PreferenceQuery((1,), (), (1,))


def test_score_queries_take_any_number_of_candidates_choice_prompts_at_most_26() -> None:
    from ialp.llm.prompts import PreferenceQuery

    big = PreferenceQuery((1,), (4.0,), tuple(range(10, 110)), (0.5, 5.0))
    assert big.k == 100
    with pytest.raises(ValueError, match="at most 26"):
        big.labels  # noqa: B018
    with pytest.raises(ValueError, match="at least one"):
        PreferenceQuery((), (), ())
