"""Retrieval-grounded prompts: facts beside each item, the token budget, candidate grounding, text neighbours."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ialp.data import ItemCatalog, load_movielens
from ialp.llm.base import LLMConfig
from ialp.llm.prompts import Grounding, PreferenceQuery, load_template, render_history, render_query, text_neighbours
from ialp.schema import ConfigError, parse

MOVIELENS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "movielens"
TITLES = ["Toy Story (1995)", "Toy Story 2 (1999)", "Alien (1979)", "Aliens (1986)", "Heat (1995)"]
GENRES = [("Animation", "Children", "Comedy", "Fantasy"), ("Animation", "Children", "Comedy"), ("Horror", "Sci-Fi"),
          ("Action", "Horror", "Sci-Fi"), ("Action", "Crime", "Thriller")]
DESCRIPTIONS = [f"{t}. Genres: {', '.join(g)}. Tags: pixar" if i < 2 else f"{t}. Genres: {', '.join(g)}"
                for i, (t, g) in enumerate(zip(TITLES, GENRES, strict=True))]
CATALOG = ItemCatalog(np.arange(5), TITLES, DESCRIPTIONS, GENRES)
QUERY = PreferenceQuery((0, 2), (5.0, 3.0), (1, 3, 4), (0.5, 5.0))


def test_the_default_grounding_renders_version_1_prompts_unchanged() -> None:
    assert render_history(QUERY, CATALOG) == ("- Toy Story (1995) [Animation, Children, Comedy]: rated 5/5\n"
                                              "- Alien (1979) [Horror, Sci-Fi]: rated 3/5")
    prompt = render_query(load_template("choice", 1), QUERY, CATALOG)
    assert "A. Toy Story 2 (1999) [Animation, Children, Comedy]" in prompt
    assert Grounding().continuation(CATALOG, 1) == " Toy Story 2 (1999)"


def test_descriptions_ground_the_history_and_candidates_keep_their_genres() -> None:
    grounding = Grounding(("description",))
    history = render_history(QUERY, CATALOG, grounding)
    assert history.splitlines()[0] == ("- Toy Story (1995). Genres: Animation, Children, Comedy, Fantasy. Tags: pixar:"
                                       " rated 5/5")
    # user tags mark what people watched (held-out items included), so candidates show no tags
    prompt = render_query(load_template("choice", 1), QUERY, CATALOG, grounding)
    assert "A. Toy Story 2 (1999) [Animation, Children, Comedy]" in prompt and prompt.count("pixar") == 1
    assert Grounding(candidates=True).continuation(CATALOG, 3) == " Aliens (1986) [Action, Horror, Sci-Fi]"


def test_the_token_budget_strips_the_oldest_items_facts_first() -> None:
    neighbours = np.array([[1, 2], [0, 2], [3, 0], [2, 0], [3, 2]])
    query = PreferenceQuery((4, 0, 2, 3), (4.0, 5.0, 3.0, 4.0), (1,), (0.5, 5.0))
    full = Grounding(("description", "neighbours"), neighbours=neighbours)
    lines = render_history(query, CATALOG, full).splitlines()
    assert lines[-1] == ("- Aliens (1986). Genres: Action, Horror, Sci-Fi (like Alien (1979); Toy Story (1995)):"
                         " rated 4/5")
    tight = Grounding(("description", "neighbours"), max_tokens=len("\n".join(lines)) // 4 - 10, neighbours=neighbours)
    cut = render_history(query, CATALOG, tight).splitlines()
    assert cut[0] == "- Heat (1995): rated 4/5" and cut[1:] == lines[1:]
    assert len("\n".join(cut)) <= tight.max_tokens * 4
    nothing = render_history(query, CATALOG, Grounding(("description",), max_tokens=1)).splitlines()
    assert [ln.split(":")[0] for ln in nothing] == [f"- {TITLES[i]}" for i in query.history_items]


def test_bad_grounding_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="not among"):
        Grounding(("plot",))
    with pytest.raises(ValueError, match="neighbour table"):
        Grounding(("neighbours",))
    with pytest.raises(ConfigError, match="grounding"):
        parse(LLMConfig, {"grounding": ["genres", "plot"]}, "llm")


def test_text_neighbours_find_the_sequels_in_movielens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IALP_CACHE_DIR", str(tmp_path))
    catalog = load_movielens(MOVIELENS / "ml-latest-small").catalog
    keep = [i for i, t in enumerate(catalog.titles) if t.startswith(("Toy Story", "Alien", "Heat (1995)",
                                                                     "Casino (1995)", "Jumanji"))]
    small = ItemCatalog(catalog.item_ids[keep], [catalog.titles[i] for i in keep],
                        [catalog.descriptions[i] for i in keep], [catalog.tags[i] for i in keep])
    table = text_neighbours(small, m=1)
    assert table.shape == (len(keep), 1) and (table[:, 0] != np.arange(len(keep))).all()
    first = small.titles.index("Toy Story (1995)")
    assert small.titles[table[first, 0]].startswith("Toy Story ")
    assert list(tmp_path.glob("neighbours/*.npy"))  # cached: the second call reads the file
    np.testing.assert_array_equal(text_neighbours(small, m=1), table)
