"""Simulator fidelity report: real figures against their baselines, planted distortions, fixtures, CLI contract."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from ialp.cli import main
from ialp.data import LoggedData, load_dataset, load_movielens
from ialp.envs.registration import build_parts
from ialp.eval.fidelity import FidelityOptions, assess, fidelity_report, format_report, write_report
from ialp.simulators import LoggedUserModel, UserModel, UserState
from ialp.simulators.leave import LeaveRule

REPO = Path(__file__).resolve().parents[2]
SMALL = REPO.parent / "shared" / "data" / "movielens" / "ml-latest-small"
FIXTURES = REPO / "tests" / "data" / "fixtures"
OPTIONS = FidelityOptions(policy_users=32)


pytestmark = pytest.mark.usefixtures("module_model_cache")


@pytest.fixture(scope="module")
def movielens() -> tuple[LoggedData, LoggedUserModel, list[LeaveRule]]:
    """ml-latest-small, the MovieLens-v0 simulator fitted on it and the env's default leave rules."""
    assert SMALL.is_dir(), f"shared data missing: {SMALL}"
    model, env_kw = build_parts("ialp/MovieLens-v0", {"data_dir": str(SMALL)})
    assert isinstance(model, LoggedUserModel)
    return load_movielens(SMALL), model, env_kw["leave_rules"]


@pytest.fixture(scope="module")
def base_report(movielens: tuple[LoggedData, LoggedUserModel, list[LeaveRule]]) -> dict[str, Any]:
    data, model, rules = movielens
    return assess(data, model, rules, OPTIONS)


def _with_mf(model: LoggedUserModel, **changes: Any) -> LoggedUserModel:
    """A copy of the simulator whose matrix factorisation has ``changes``."""
    planted = copy.copy(model)
    planted.mf = dataclasses.replace(model.mf, **changes)
    return planted


class AlwaysLeave(LeaveRule):
    """Every user quits after every item."""

    def leaves(self, model: UserModel, state: UserState, items: np.ndarray, rewards: np.ndarray,
               history: np.ndarray) -> np.ndarray:
        return np.ones(len(items), dtype=bool)


def _heldout_session_lengths(data: LoggedData, gap: float, holdout: float = 0.1) -> np.ndarray:
    """Logged session lengths in the held-out part, computed here with pandas from the raw log."""
    _, test = data.log.split_by_time(holdout)
    df = pd.DataFrame({"user": test.users, "t": test.timestamps})
    new = df.groupby("user")["t"].diff().isna() | (df.groupby("user")["t"].diff() > gap)
    return df.groupby(new.cumsum()).size().to_numpy()


def test_fitted_movielens_simulator_beats_its_baselines(base_report: dict[str, Any]) -> None:
    r, c, s, p = (base_report[k] for k in ("response", "choice", "session", "policy"))
    assert base_report["data"]["n_test"] == 10093 and base_report["data"]["n_train"] == 90743
    assert r["rmse"] < r["rmse_user_mean_baseline"] < r["rmse_mean_baseline"]
    assert r["calibration_error"] < r["calibration_error_user_mean_baseline"] and abs(r["bias"]) < 0.1
    assert 0.1 < r["spearman"] < 0.5 and r["spearman_users"] > 400 and r["auc"] is None  # ratings: no AUC
    assert c["feedback_emd"] < c["feedback_emd_user_mean_baseline"] < c["feedback_emd_mean_baseline"]
    assert c["popularity_js"] < c["popularity_js_shuffled"] and c["genre_js"] < c["genre_js_shuffled"]
    # the shuffled log forgets which items are liked: its liked items are spread more evenly
    assert c["gini_shuffled"] < c["gini_log"] and c["liked_share_shuffled"] == pytest.approx(c["liked_share_log"])
    assert 0 < s["early_end_share"] < s["early_end_share_leave_at_once"]
    assert 0 < s["length_emd"] < s["length_emd_leave_at_once"] and s["mean_length_sim"] < s["mean_length_log"]
    assert p["spearman"] > 0 and p["policies"]["greedy"]["log_estimate"] > p["policies"]["anti-greedy"]["log_estimate"]
    assert json.loads(json.dumps(base_report)) == base_report


def test_shifted_predictions_move_calibration_not_ranking(
        movielens: tuple[LoggedData, LoggedUserModel, list[LeaveRule]], base_report: dict[str, Any]) -> None:
    data, model, rules = movielens
    shifted = assess(data, _with_mf(model, mean=model.mf.mean + 1.0), rules, OPTIONS)
    r0, r1 = base_report["response"], shifted["response"]
    # +1 everywhere, less where the clip at 5 stars bites
    assert 0.85 < r1["bias"] - r0["bias"] <= 1.0
    assert 0.85 < r1["calibration_error"] - r0["calibration_error"] <= 1.0
    assert r1["rmse"] > r0["rmse_mean_baseline"] > r0["rmse"] and r1["rmse_mean_baseline"] == r0["rmse_mean_baseline"]
    assert abs(r1["spearman"] - r0["spearman"]) < 0.02  # a shift keeps each user's ranking
    c0, c1 = base_report["choice"], shifted["choice"]
    assert 0.5 < c1["feedback_emd"] - c0["feedback_emd"] <= 1.0
    assert c1["liked_share_sim"] > c0["liked_share_sim"] + 0.3
    assert c1["popularity_js"] > 2 * c0["popularity_js"]  # liking nearly everything: the liked items blur
    low = next(k for k in shifted["session"]["rules"] if k.startswith("LowRewardLeave"))  # fewer low ratings
    assert shifted["session"]["rules"][low]["trigger_rate"] < 0.5 * base_report["session"]["rules"][low]["trigger_rate"]


def test_reversed_preferences_reverse_the_rankings(
        movielens: tuple[LoggedData, LoggedUserModel, list[LeaveRule]], base_report: dict[str, Any]) -> None:
    data, model, rules = movielens
    mf = model.mf
    flipped = assess(data, _with_mf(model, user_bias=-mf.user_bias, item_bias=-mf.item_bias,
                                    user_factors=-mf.user_factors), rules, OPTIONS)
    assert flipped["response"]["spearman"] < -0.1 < 0.1 < base_report["response"]["spearman"]
    assert flipped["choice"]["genre_js"] > flipped["choice"]["genre_js_shuffled"] > base_report["choice"]["genre_js"]
    assert flipped["policy"]["spearman"] < 0 < base_report["policy"]["spearman"]


def test_leave_rules_against_logged_session_lengths(
        movielens: tuple[LoggedData, LoggedUserModel, list[LeaveRule]]) -> None:
    data, model, _ = movielens
    lengths = _heldout_session_lengths(data, OPTIONS.gap)
    always = assess(data, model, [AlwaysLeave()], OPTIONS)["session"]
    assert always["n_sessions"] == len(lengths) and always["mean_length_sim"] == 1.0
    assert always["early_end_share"] == pytest.approx(np.mean(lengths > 1))
    assert always["length_emd"] == pytest.approx(lengths.mean() - 1)
    assert always["rules"] == {"AlwaysLeave": {"trigger_rate": 1.0, "early_end_share": always["early_end_share"]}}
    never = assess(data, model, [], OPTIONS)["session"]
    assert never["early_end_share"] == 0.0 and never["length_emd"] == 0.0
    assert never["mean_length_sim"] == pytest.approx(lengths.mean())


def test_mismatched_split_is_refused(movielens: tuple[LoggedData, LoggedUserModel, list[LeaveRule]]) -> None:
    data, model, rules = movielens
    with pytest.raises(ValueError, match=r"holdout_fraction=0\.2"):
        assess(data, model, rules, OPTIONS, holdout_fraction=0.2)


@pytest.mark.parametrize(("env_id", "folder", "kwargs"), [
    ("ialp/KuaiRec-v0", FIXTURES / "kuairec", {"matrix": "big"}),
    ("ialp/KuaiRand-v0", FIXTURES / "kuairand" / "KuaiRand-Pure", {}),
], ids=["kuairec", "kuairand"])
def test_kuai_fixtures_report_and_files(env_id: str, folder: Path, kwargs: dict[str, Any], tmp_path: Path) -> None:
    report = fidelity_report(env_id, folder, tmp_path, options=FidelityOptions(policy_users=8),
                             mf={"holdout_fraction": 0.5}, **kwargs)
    assert report["env"] == env_id and report["data"]["n_test"] == report["data"]["n_train"]
    assert (report["response"]["auc"] is not None) == (env_id == "ialp/KuaiRand-v0")  # is_click is 0/1
    lengths = _heldout_session_lengths(load_dataset(folder, **kwargs), OPTIONS.gap, 0.5)
    assert report["session"]["n_sessions"] == len(lengths)
    assert report["session"]["mean_length_log"] == pytest.approx(lengths.mean())
    assert set(report["policy"]["policies"]) == {"greedy", "popularity", "random", "unpopular", "anti-greedy"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fidelity.json", "fidelity.md", "fidelity.png"]
    assert json.loads((tmp_path / "fidelity.json").read_text()) == report
    assert "| response | RMSE |" in (tmp_path / "fidelity.md").read_text()


def test_synthetic_env_is_refused() -> None:
    with pytest.raises(ValueError, match="needs a logged env"):
        fidelity_report("ialp/Synthetic-v0", SMALL)


def test_write_report_then_markdown(base_report: dict[str, Any], tmp_path: Path) -> None:
    paths = write_report(base_report, tmp_path / "run")
    assert [p.name for p in paths] == ["fidelity.json", "fidelity.md", "fidelity.png"]
    md = format_report(base_report)
    assert (tmp_path / "run" / "fidelity.md").read_text() == md
    assert f"| choice | genre JS of liked items | {base_report['choice']['genre_js']:.4g} |" in md


def test_cli_json_contract(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["fidelity", "--env", "ialp/MovieLens-v0", "--data-dir", str(SMALL), "--json", "--users", "16",
                 "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert len(out.strip().splitlines()) == 1
    report = json.loads(out)
    for section, keys in {"response": ("rmse", "mae", "rmse_mean_baseline"),
                          "choice": ("popularity_js", "genre_js", "feedback_emd"),
                          "session": ("length_emd", "early_end_share")}.items():
        assert all(isinstance(report[section][k], float) for k in keys), section
    assert report["response"]["rmse"] < report["response"]["rmse_mean_baseline"]
    assert json.loads((tmp_path / "fidelity.json").read_text()) == report


def test_cli_rejects_bad_env_arg(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["fidelity", "--data-dir", str(SMALL), "--env-arg", "matrix"]) == 2
    assert "override 'matrix': expected dotted.key=value" in capsys.readouterr().err
    missing = "/nonexistent/ialp-data"  # never read: the arguments fail first
    assert main(["fidelity", "--data-dir", missing, "--env-arg", "colour=red"]) == 2
    assert "unknown argument(s) 'colour'" in capsys.readouterr().err
    assert main(["fidelity", "--data-dir", missing, "--env-arg", "mf.dim=0"]) == 2
    assert "dim and iterations must be >= 1, got 0" in capsys.readouterr().err
