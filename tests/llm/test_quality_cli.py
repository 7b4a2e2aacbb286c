"""``ialp llm eval`` JSON contract (oracle and embedded model, cached rerun), config options, the table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ialp.cli import main
from ialp.data import load_dataset
from ialp.llm.quality import (
    POOL,
    evaluate_preferences,
    load_llm_config,
    paired_difference,
    sample_cases,
    sample_training_cases,
    wilson_interval,
)

MOVIELENS = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "movielens"
SMALL = MOVIELENS / "ml-latest-small"


pytestmark = pytest.mark.usefixtures("module_model_cache")


def _eval(capsys: pytest.CaptureFixture[str], *args: str) -> dict:
    assert main(["llm", "eval", "--data-dir", str(SMALL), "--json", "--no-progress", *args]) == 0
    out = capsys.readouterr().out
    assert len(out.strip().splitlines()) == 1
    return json.loads(out)


def _check_contract(result: dict, methods: set[str], users: int, negatives: str = "uniform") -> None:
    assert set(result) == {"negatives", "methods", "llm"} and result["negatives"] == negatives
    assert set(result["llm"]) == {"calls", "cache_hits", "failures", "prompt_tokens", "completion_tokens"}
    assert set(result["methods"]) == methods
    for m in result["methods"].values():
        assert {"hit_rate", "ci_low", "ci_high", "n"} <= set(m)
        assert m["n"] + m["failures"] == users
        if m["n"]:
            assert 0.0 <= m["ci_low"] <= m["hit_rate"] <= m["ci_high"] <= 1.0
        assert ("ndcg@10" in m) == (negatives == "pool")
        if negatives == "pool" and m["n"]:
            assert 0.0 <= m["ndcg@10"] <= m["hit_rate"]


def test_eval_oracle_json_contract(capsys: pytest.CaptureFixture[str]) -> None:
    assert SMALL.is_dir(), f"MovieLens data missing at {SMALL}"
    result = _eval(capsys, "--backend", "oracle", "--k", "4", "--users", "20", "--seed", "1")
    _check_contract(result, {"random", "popularity", "user_model", "oracle", "oracle:choice", "oracle:score"}, 20)
    assert result["methods"]["oracle:choice"]["hit_rate"] == result["methods"]["oracle"]["hit_rate"]
    assert result["llm"]["calls"] == 0 and result["llm"]["prompt_tokens"] == 0
    assert result["methods"]["random"]["expected"] == 0.25
    assert result["methods"]["oracle:choice"]["failures"] == 0
    for name in ("oracle:choice", "oracle:score"):  # paired against the baselines on the same 20 queries
        for base in ("popularity", "user_model"):
            d, m = result["methods"][name]["vs"][base], result["methods"]
            assert d["n"] == 20
            assert d["diff"] == pytest.approx(m[name]["hit_rate"] - m[base]["hit_rate"])
            assert d["ci_low"] <= d["diff"] <= d["ci_high"]
    assert "vs" not in result["methods"]["popularity"]


def test_eval_embedded_model_second_run_is_served_from_cache(capsys: pytest.CaptureFixture[str],
                                                             tmp_path: Path) -> None:
    assert SMALL.is_dir(), f"MovieLens data missing at {SMALL}"
    args = ("--backend", "llamacpp", "--k", "3", "--users", "3", "--validation-users", "4", "--seed", "0", "--set",
            f"llm.cache_dir={tmp_path}", "--set", "llm.max_tokens=4", "--distill-queries", "12")
    first = _eval(capsys, *args)
    methods = {"random", "popularity", "user_model", "oracle", "llamacpp:choice", "llamacpp:choice-perm3",
               "llamacpp:score-sum", "llamacpp:score-mean", "llamacpp:score-pmi", "llamacpp:hybrid",
               "llamacpp:reward-pmi"}
    _check_contract(first, methods, 3)
    assert first["llm"]["calls"] > 0 and first["llm"]["prompt_tokens"] > 0
    second = _eval(capsys, *args)
    _check_contract(second, methods, 3)
    assert second["llm"]["calls"] == 0 and second["llm"]["cache_hits"] >= 3
    assert second["methods"] == first["methods"]
    assert first["methods"]["llamacpp:hybrid"]["validation_n"] == 4
    assert set(first["methods"]["llamacpp:hybrid"]["weights"]) == {"score-pmi", "score-sum", "log-popularity",
                                                                   "user_model"}
    reward = first["methods"]["llamacpp:reward-pmi"]  # distilled from the model's answers on 12 other users' queries
    assert (reward["distill_n"], reward["heldout_n"]) == (12, 2) and 0.0 <= reward["source_hit_rate"] <= 1.0


def test_samplers_draw_unrated_distinct_negatives_of_the_promised_popularity() -> None:
    data = load_dataset(SMALL)
    log = data.log
    train, _ = log.split_by_time(0.2)
    counts = np.log1p(np.bincount(train.items, minlength=log.n_items))
    starts = np.searchsorted(log.users, np.arange(log.n_users + 1))
    gaps = {}
    for negatives in ("uniform", "popularity", "pool"):
        cases = sample_cases(log, train, 5, 200, np.random.default_rng(3), 4.0, negatives)  # type: ignore[arg-type]
        gap = []
        for c in cases:
            assert len(c.candidates) == (POOL if negatives == "pool" else 5) == len(set(c.candidates))
            rated = set(log.items[starts[c.user]:starts[c.user + 1]].tolist())
            negs = [i for j, i in enumerate(c.candidates) if j != c.positive]
            assert not rated & set(negs)
            gap += [abs(counts[i] - counts[c.candidates[c.positive]]) for i in negs]
        gaps[negatives] = float(np.median(gap))
    assert gaps["popularity"] < 0.3 < 1.0 < gaps["uniform"], gaps  # same stratum vs mostly obscure items
    other = sample_cases(log, train, 5, 50, np.random.default_rng(3), 4.0, exclude=[c.user for c in cases])
    assert not {c.user for c in other} & {c.user for c in cases}


def test_training_cases_stay_inside_the_training_part_of_other_users() -> None:
    log = load_dataset(SMALL).log
    train, _ = log.split_by_time(0.2)
    starts = np.searchsorted(log.users, np.arange(log.n_users + 1))
    train_counts = np.bincount(train.users, minlength=log.n_users)
    held_out = sample_cases(log, train, 5, 100, np.random.default_rng(0), 4.0)
    cases = sample_training_cases(log, train, 5, 400, np.random.default_rng(1), 4.0, "popularity",
                                  exclude=[c.user for c in held_out])
    assert len(cases) == 400 and not {c.user for c in cases} & {c.user for c in held_out}
    for c in cases:
        assert 1 <= c.history_end < train_counts[c.user]  # a training item, with history before it
        at = starts[c.user] + c.history_end
        assert log.items[at] == c.candidates[c.positive] and log.feedback[at] >= 4.0
        rated = set(log.items[starts[c.user]:starts[c.user + 1]].tolist())
        assert len(set(c.candidates)) == 5 and not rated & (set(c.candidates) - {c.candidates[c.positive]})


def test_distilled_reward_from_oracle_answers_is_measured_on_unseen_users() -> None:
    methods = {n: evaluate_preferences(SMALL, load_llm_config(None, [], "oracle"), k=5, n_users=150, seed=0,
                                       modes=("score",), negatives=n, distill_queries=1000,  # type: ignore[arg-type]
                                       progress=False)["methods"] for n in ("uniform", "popularity")}
    for m in methods.values():
        reward = m["oracle:reward"]
        assert (reward["distill_n"], reward["heldout_n"], reward["n"]) == (1000, 200, 150)
        assert reward["source_hit_rate"] > 0.35  # the oracle's answers find the positives...
        assert reward["agreement"] > 0.4 and reward["eval_agreement"] > 0.35  # ...the reward copies them (chance 0.2)
    # What the distillation keeps: on uniform negatives the reward beats chance on the unseen users' positives
    assert methods["uniform"]["oracle:reward"]["ci_low"] > 0.2


def test_popularity_alone_is_near_chance_only_on_matched_negatives() -> None:
    rates = {n: evaluate_preferences(SMALL, None, k=5, n_users=300, seed=2, negatives=n,  # type: ignore[arg-type]
                                     progress=False)["methods"] for n in ("uniform", "popularity", "pool")}
    assert rates["uniform"]["popularity"]["ci_low"] > 0.5
    matched = rates["popularity"]["popularity"]
    assert matched["hit_rate"] < 0.3 < rates["uniform"]["popularity"]["hit_rate"] - 0.2  # chance: 0.2
    assert rates["pool"]["random"]["expected"] == 0.1 and rates["pool"]["random"]["hit_rate"] < 0.2
    for name, methods in rates.items():  # the ground truth beats the fitted model everywhere, popularity where matched
        rivals = ("random", "user_model") if name == "uniform" else ("random", "popularity", "user_model")
        assert methods["oracle"]["hit_rate"] > max(methods[m]["hit_rate"] for m in rivals)


def test_readable_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["llm", "eval", "--data-dir", str(SMALL), "--backend", "oracle", "--k", "3", "--users", "5",
                 "--seed", "1", "--no-progress", "--modes", "choice"]) == 0
    out = capsys.readouterr().out
    assert "hit rate" in out and "oracle:choice" in out and "llm: 0 calls" in out


def test_llm_config_sources(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg_file = tmp_path / "exp.yaml"
    cfg_file.write_text("llm:\n  backend: openai\n  concurrency: 8\n  temperature: 0\n")
    cfg = load_llm_config(cfg_file, ["llm.max_tokens=3", "llm.base_url=http://127.0.0.1:1/v1"], None)
    assert (cfg.backend, cfg.concurrency, cfg.max_tokens, cfg.temperature) == ("openai", 8, 3, 0.0)
    assert load_llm_config(cfg_file, [], "llamacpp").backend == "llamacpp"
    with pytest.raises(ValueError, match="unknown field"):
        load_llm_config(None, ["llm.colour=red"])
    with pytest.raises(ValueError, match="concurrency"):
        load_llm_config(None, ["llm.concurrency=many"])
    assert main(["llm", "eval", "--data-dir", str(SMALL), "--set", "llm.nope=1"]) == 2
    assert "nope" in capsys.readouterr().err


def test_wilson_interval() -> None:
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and 0.2 < hi < 0.35
    assert wilson_interval(0, 0) == (0.0, 1.0)


def _closed_port() -> int:
    """A loopback port with nothing listening (bound, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("modes", ["choice", "score"])
def test_eval_against_closed_port_is_an_error_naming_url_and_failures(capsys: pytest.CaptureFixture[str],
                                                                      tmp_path: Path, modes: str) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    code = main(["llm", "eval", "--data-dir", str(SMALL), "--backend", "openai", "--users", "6", "--k", "3",
                 "--modes", modes, "--no-progress", "--set", f"llm.base_url={url}", "--set", "llm.model=m-test",
                 "--set", "llm.max_retries=0", "--set", f"llm.cache_dir={tmp_path}"])
    err = capsys.readouterr().err
    assert code == 3, err
    assert url in err and "m-test" in err
    assert "6 of 6 preference queries failed" in err and "6 x backend: connection error" in err


def test_run_distillation_against_closed_port_fails(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    repo = Path(__file__).resolve().parents[2]
    code = main(["run", str(repo / "configs" / "synthetic.yaml"), "--out", str(tmp_path / "run"),
                 "--set", "llm.backend=openai", "--set", f"llm.base_url={url}", "--set", "llm.max_retries=0",
                 "--set", f"llm.cache_dir={tmp_path}", "--set", "distill.queries=20",
                 "--set", "methods=[random, ialp]"])
    err = capsys.readouterr().err
    assert code == 3, err
    assert url in err and "preference queries failed" in err and "backend: connection error" in err


def test_hybrid_weights_come_from_the_data() -> None:
    from ialp.llm.quality import _conditional_logit

    rng = np.random.default_rng(0)
    feats, positives = [], []
    for _ in range(200):  # the positive is the argmax of feature 0 plus noise; feature 1 is pure noise
        x = rng.normal(size=(5, 2))
        feats.append(x)
        positives.append(int(np.argmax(2.0 * x[:, 0] + rng.normal(size=5))))
    w, _, _ = _conditional_logit(feats, positives)
    assert w[0] > 1.0 and abs(w[1]) < 0.3, w
    w_flipped, _, _ = _conditional_logit([-x for x in feats], positives)
    assert w_flipped[0] < -1.0


def test_bench_llm_reports_candidates_scored_per_second(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "llm", "--backend", "llamacpp", "--prompts", "2", "--json", "--set", "llm.max_tokens=2"]) == 0
    rows = {r["mode"]: r for r in json.loads(capsys.readouterr().out)}
    assert list(rows) == ["sequential", "concurrent", "cached", "score", "score-cached"]
    assert rows["score"]["candidates"] == 10 and rows["score"]["calls"] == 20  # 10 titles and their 10 priors
    assert rows["score-cached"]["calls"] == 0 and rows["score-cached"]["cache_hits"] == 20
    assert rows["score"]["candidates_per_s"] > 0 and rows["score"]["failures"] == 0


def test_paired_difference_of_hits() -> None:
    d = paired_difference(np.array([1.0, 1, 0, 1, 0]), np.array([0.0, 1, 0, 0, np.nan]))
    assert (d["diff"], d["n"]) == (0.5, 4)  # the query one method failed on is left out
    assert d["ci_low"] == pytest.approx(0.5 - 1.96 * np.std([1, 0, 0, 1], ddof=1) / 2)
    same = paired_difference(np.array([1.0, 0, 1]), np.array([1.0, 0, 1]))
    assert (same["diff"], same["ci_low"], same["ci_high"]) == (0.0, 0.0, 0.0)
