"""Preference extraction: the oracle on a live synthetic env, and the embedded model's failure path."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import ialp  # noqa: F401  (registers the env ids)
from ialp.llm import LLMConfig, make_backend
from ialp.llm.base import CachedBackend, Completion, LLMBackend, LLMError
from ialp.llm.oracle import OracleBackend
from ialp.llm.preferences import PreferenceExtractor
from ialp.llm.prompts import PreferenceQuery, query_from_env
from ialp.simulators import SyntheticConfig, SyntheticUserModel


@pytest.fixture(scope="session")
def llamacpp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LLMBackend]:
    """The embedded model, loaded once, answering into a fresh cache."""
    backend = make_backend(LLMConfig(backend="llamacpp", cache_dir=str(tmp_path_factory.mktemp("llm-cache"))))
    yield backend
    backend.close()


def test_oracle_agrees_with_ground_truth_on_live_env() -> None:
    env = gym.make("ialp/Synthetic-v0", n_items=300, candidates=6)
    model = env.unwrapped.model  # type: ignore[attr-defined]
    oracle = make_backend(LLMConfig(backend="oracle"), truth=model)
    assert isinstance(oracle, OracleBackend) and oracle.name == "oracle"
    for mode in ("choice", "score"):
        extractor = PreferenceExtractor(oracle, model.catalog, mode)  # type: ignore[arg-type]
        env.reset(seed=3)
        agree = 0
        for _ in range(15):
            query = query_from_env(env, 0)
            (pref,) = extractor.prefer([query])
            truth = model.expected_rewards(env.unwrapped.session.user_state)[0]  # type: ignore[attr-defined]
            assert pref.ok and pref.scores is not None and pref.reason is None
            agree += pref.item == query.candidates[int(np.argmax(truth[list(query.candidates)]))]
            _, _, terminated, truncated, _ = env.step(pref.choice)
            if terminated or truncated:
                env.reset()
        assert agree == 15
    assert oracle.stats.calls == 0 and oracle.stats.prompt_tokens == 0
    with pytest.raises(LLMError, match="answer_query"):
        oracle.complete(["hello"])


def test_oracle_needs_truth() -> None:
    with pytest.raises(LLMError, match="ground truth"):
        make_backend(LLMConfig(backend="oracle"))


def test_embedded_model_choice_and_counted_parse_failures(llamacpp: LLMBackend) -> None:
    model = SyntheticUserModel(SyntheticConfig(n_items=100))
    queries = [PreferenceQuery((1, 2, 3), (0.9, 0.2, 0.7), (10 + 3 * i, 11 + 3 * i, 12 + 3 * i)) for i in range(3)]

    ok = PreferenceExtractor(llamacpp, model.catalog, "choice", max_tokens=4)
    prefs = ok.prefer(queries)
    assert len(prefs) == 3
    for p in prefs:  # a real answer is either read, or a counted failure with its reason; never a silent default
        assert (p.choice is not None) == (p.reason is None)
        assert p.choice is None or 0 <= p.choice < 3

    # One token cannot hold a letter after "Candidate" (" A" needs the space and the letter in this vocabulary
    # only sometimes), so force answers that are cut to nothing: max_tokens=1 with a stop at the first space.
    cut = PreferenceExtractor(llamacpp, model.catalog, "choice", max_tokens=1, stop=[" "], max_failure_share=1.0)
    before = cut.stats()
    failed = cut.prefer(queries)
    assert all(p.choice is None and p.attempts == 2 and p.reason and p.reason.startswith("unparseable")
               for p in failed)
    after = cut.stats()
    assert after["parse_failures"] == 3 and after["retried"] == 3
    assert after["failures"] - before["failures"] == 3


def test_embedded_model_score_mode(llamacpp: LLMBackend) -> None:
    model = SyntheticUserModel(SyntheticConfig(n_items=100))
    query = PreferenceQuery((1, 2), (0.9, 0.1), (20, 21, 22))
    (pref,) = PreferenceExtractor(llamacpp, model.catalog, "score").prefer([query])
    assert pref.ok and pref.scores is not None
    assert sum(pref.scores) == pytest.approx(1.0) and pref.choice == int(np.argmax(pref.scores))
    assert pref.ranking is not None and pref.ranking[0] == pref.choice
    extractor = PreferenceExtractor(llamacpp, model.catalog, "score")
    (ts,) = extractor.title_scores([query], prior=True)
    calls = llamacpp.stats.calls
    assert ts.error is None and ts.prior is not None and (ts.n_tokens > 0).all()
    for scoring in ("sum", "mean", "pmi"):  # each variant is read from the same log-probabilities, no new call
        (p,) = PreferenceExtractor(llamacpp, model.catalog, "score", scoring=scoring).prefer([query])  # type: ignore[arg-type]
        assert p.choice == int(np.argmax(ts.value(scoring)))  # type: ignore[arg-type]
    assert llamacpp.stats.calls == calls
    np.testing.assert_allclose(ts.value("pmi"), ts.logprob - ts.prior)


def test_unknown_mode_is_rejected() -> None:
    model = SyntheticUserModel(SyntheticConfig(n_items=10))
    with pytest.raises(ValueError, match="mode"):
        PreferenceExtractor(OracleBackend(truth=model), model.catalog, "vote")  # type: ignore[arg-type]


def test_failure_share_beyond_the_limit_raises_with_kinds(llamacpp: LLMBackend) -> None:
    model = SyntheticUserModel(SyntheticConfig(n_items=100))
    queries = [PreferenceQuery((1, 2), (0.9, 0.2), (10 + 3 * i, 11 + 3 * i, 12 + 3 * i)) for i in range(2)]
    cut = dict(max_tokens=1, stop=[" "])  # answers cut to nothing: unparseable (see the test above)
    with pytest.raises(LLMError, match=r"2 of 2 preference queries failed.*2 x unparseable") as info:
        PreferenceExtractor(llamacpp, model.catalog, "choice", **cut).prefer(queries)  # type: ignore[arg-type]
    assert "gemma-3-270m" in str(info.value)
    tolerant = PreferenceExtractor(llamacpp, model.catalog, "choice", max_failure_share=1.0, **cut)  # type: ignore[arg-type]
    assert [p.choice for p in tolerant.prefer(queries)] == [None, None]
    assert tolerant.failure_kinds == {"unparseable": 2}


class _LetterBackend(CachedBackend):
    """Answers choice prompts by rule, over no model: ``"A"`` always (pure position bias), or the letter of one
    favourite title wherever it is shown (no position bias)."""

    name = "letters"

    def __init__(self, favourite: str | None, tmp: str) -> None:
        super().__init__(LLMConfig(backend="openai", model="rule", cache_dir=tmp))
        self.favourite = favourite

    def _complete_batch(self, prompts: list[str], params: dict) -> list[Completion]:
        out = []
        for prompt in prompts:
            lines = [ln for ln in prompt.splitlines() if ln[:2] in {f"{c}." for c in "ABCDEFGH"}]
            fav = [ln[0] for ln in lines if self.favourite is not None and self.favourite in ln]
            out.append(Completion(text=" " + (fav[0] if fav else "A")))
        return out


def test_choice_permutations_cancel_position_bias(tmp_path: Any) -> None:
    model = SyntheticUserModel(SyntheticConfig(n_items=40))
    titles = model.catalog.titles
    queries = [PreferenceQuery((1,), (0.5,), (10 + i, 20 + i, 30 + i, 5 + i)) for i in range(3)]
    biased = PreferenceExtractor(_LetterBackend(None, str(tmp_path / "a")), model.catalog, "choice", permutations=4)
    for p in biased.prefer(queries):  # "A" in every shift: one vote per candidate, nothing learnt from position
        assert p.scores == (0.25, 0.25, 0.25, 0.25) and p.attempts == 4
    for slot in range(4):
        fav = titles[queries[0].candidates[slot]]
        backend = _LetterBackend(fav, str(tmp_path / f"f{slot}"))
        (p,) = PreferenceExtractor(backend, model.catalog, "choice", permutations=4).prefer(queries[:1])
        assert p.choice == slot and p.scores is not None and p.scores[slot] == 1.0
        assert backend.stats.calls == 4
    single = PreferenceExtractor(_LetterBackend(None, str(tmp_path / "s")), model.catalog, "choice")
    assert [p.choice for p in single.prefer(queries)] == [0, 0, 0] and single.permutations == 1
