"""Users fitted on a real interaction log: matrix factorisation predicts feedback for any pair.

As in EasyRL4Rec and DORL, a model fitted on the log stands in for the real user: a simulated
session samples one of the log's users, and each recommended item receives the feedback the model
predicts for that (user, item) pair. Leave rules (``ialp.simulators.leave``) end the session.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ialp import random as crng
from ialp.data import InteractionLog, LoggedData
from ialp.simulators.base import Response, UserModel, UserState
from ialp.storage import cache_root, stage_key


@dataclass(frozen=True)
class MFConfig:
    """Biased matrix factorisation fitted by alternating least squares."""

    dim: int = 16
    reg: float = 0.1
    iterations: int = 12
    holdout_fraction: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.dim < 1 or self.iterations < 1:
            raise ValueError(f"dim and iterations must be >= 1, got {self.dim}, {self.iterations}")
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ValueError(f"holdout_fraction must be in (0, 1), got {self.holdout_fraction}")
        if self.reg <= 0:
            raise ValueError(f"reg must be > 0, got {self.reg}")


@dataclass(frozen=True)
class FitReport:
    """Held-out quality of a fitted model next to the predict-the-mean baseline."""

    rmse: float
    baseline_rmse: float
    auc: float | None
    n_train: int
    n_test: int

    def __str__(self) -> str:
        auc = f", AUC {self.auc:.3f}" if self.auc is not None else ""
        return (f"held-out RMSE {self.rmse:.4f} (predict-the-mean {self.baseline_rmse:.4f}){auc} "
                f"on {self.n_test} interactions, trained on {self.n_train}")


@dataclass
class MatrixFactorization:
    """``feedback(u, i) ≈ mean + user_bias[u] + item_bias[i] + user_factors[u] · item_factors[i]``."""

    mean: float
    user_bias: np.ndarray
    item_bias: np.ndarray
    user_factors: np.ndarray
    item_factors: np.ndarray

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Predicted feedback for aligned arrays of users and items."""
        dot = (self.user_factors[users] * self.item_factors[items]).sum(axis=-1)
        return self.mean + self.user_bias[users] + self.item_bias[items] + dot

    def predict_all(self, users: np.ndarray) -> np.ndarray:
        """Predicted feedback of every item for each user: shape (len(users), n_items)."""
        scores = self.user_factors[users] @ self.item_factors.T
        return scores + (self.mean + self.user_bias[users])[:, None] + self.item_bias[None, :]

    @classmethod
    def fit(cls, users: np.ndarray, items: np.ndarray, y: np.ndarray, n_users: int, n_items: int,
            config: MFConfig) -> MatrixFactorization:
        """Alternating ridge regressions, each solved for all users (or items) at once."""
        rng = np.random.default_rng(config.seed)
        mean = float(y.mean())
        d = config.dim
        user_f = rng.normal(0, 0.1, (n_users, d))
        item_f = rng.normal(0, 0.1, (n_items, d))
        user_b, item_b = np.zeros(n_users), np.zeros(n_items)
        r = y.astype(np.float64) - mean
        for _ in range(config.iterations):
            user_f, user_b = _solve_side(users, n_users, item_f, r - item_b[items], items, config.reg)
            item_f, item_b = _solve_side(items, n_items, user_f, r - user_b[users], users, config.reg)
        return cls(mean, user_b, item_b, user_f, item_f)

    def save(self, path: Path, report: FitReport | None = None) -> None:
        """Write the factors (and the fit's ``report``) to the ``.npz`` file ``path``, atomically."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
        extra = {} if report is None else {"report": json.dumps(asdict(report))}
        np.savez(tmp, mean=self.mean, user_bias=self.user_bias, item_bias=self.item_bias,
                 user_factors=self.user_factors, item_factors=self.item_factors, **extra)  # type: ignore[arg-type]
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> tuple[MatrixFactorization, FitReport | None]:
        """The factors and report written by :meth:`save`."""
        with np.load(path) as f:
            model = cls(float(f["mean"]), f["user_bias"], f["item_bias"], f["user_factors"], f["item_factors"])
            report = FitReport(**json.loads(str(f["report"]))) if "report" in f else None
        return model, report


def _solve_side(rows: np.ndarray, n_rows: int, other: np.ndarray, target: np.ndarray,
                other_idx: np.ndarray, reg: float, chunk: int = 32768) -> tuple[np.ndarray, np.ndarray]:
    """Solve ``[factors, bias]`` of every row entity by ridge regression on its interactions."""
    k = other.shape[1] + 1
    gram = np.zeros((n_rows, k, k))
    rhs = np.zeros((n_rows, k))
    order = np.argsort(rows, kind="stable")
    rows_s, idx_s, t_s = rows[order], other_idx[order], target[order]
    for start in range(0, len(rows_s), chunk):
        sl = slice(start, start + chunk)
        x = np.concatenate([other[idx_s[sl]], np.ones((len(idx_s[sl]), 1))], axis=1)
        r_chunk = rows_s[sl]
        starts = np.flatnonzero(np.r_[True, r_chunk[1:] != r_chunk[:-1]])
        ents = r_chunk[starts]
        gram[ents] += np.add.reduceat(x[:, :, None] * x[:, None, :], starts, axis=0)
        rhs[ents] += np.add.reduceat(x * t_s[sl, None], starts, axis=0)
    counts = np.bincount(rows, minlength=n_rows).astype(np.float64)
    gram += (reg * np.maximum(counts, 1.0))[:, None, None] * np.eye(k)
    sol = np.linalg.solve(gram, rhs[..., None])[..., 0]
    return sol[:, :-1], sol[:, -1]


def roc_auc(y_true: np.ndarray, score: np.ndarray) -> float | None:
    """Area under the ROC curve by the rank statistic; None when only one class is present."""
    pos = y_true > 0
    n_pos, n_neg = int(pos.sum()), int((~pos).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(score, kind="stable")
    ranks = np.empty(len(score))
    ranks[order] = np.arange(1, len(score) + 1)
    return float((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def fit_matrix_factorization(log: InteractionLog, config: MFConfig, cache_dir: Path | None = None,
                             verbose: bool = True) -> tuple[MatrixFactorization, FitReport]:
    """Fit (or load from the on-disk cache) an MF model on ``log`` and report held-out error.

    The cache key hashes the log's fingerprint and ``config``; the report is printed to stderr.
    """
    path = (cache_dir or cache_root()) / "models" / f"mf-{stage_key(log.fingerprint(), asdict(config))}.npz"
    stored = MatrixFactorization.load(path) if path.exists() else None
    if stored is not None and stored[1] is not None:
        model, report = stored[0], stored[1]
        source = f"loaded from cache {path}"
    else:
        train, test = log.split_by_time(config.holdout_fraction)
        model = MatrixFactorization.fit(train.users, train.items, train.feedback, log.n_users, log.n_items,
                                        config)
        pred = np.clip(model.predict(test.users, test.items), *log.feedback_range)
        truth = test.feedback.astype(np.float64)
        binary = bool(np.isin(log.feedback, (0.0, 1.0)).all())
        report = FitReport(rmse=float(np.sqrt(np.mean((pred - truth) ** 2))),
                           baseline_rmse=float(np.sqrt(np.mean((train.feedback.mean() - truth) ** 2))),
                           auc=roc_auc(truth, pred) if binary else None, n_train=len(train), n_test=len(test))
        model.save(path, report)
        source = "fitted"
    if verbose:
        print(f"[ialp] {log.name}: matrix factorisation {source}: {report}", file=sys.stderr)
    return model, report


class LoggedUserModel(UserModel):
    """Users of a real log; feedback predicted by matrix factorisation fitted on that log.

    Each episode samples one of the log's users uniformly. The reward for an item is the model's
    predicted feedback for that user (clipped to the log's feedback range) plus optional Gaussian
    ``reward_noise``. The model has no leave propensity of its own (``leave_probability`` is 0):
    sessions end by the environment's leave rules. Observable user features are the user's
    activity (log-scaled number of interactions) and mean feedback in the log, scaled to [-1, 1].
    Item embeddings are the fitted item factors scaled into [-1, 1] and, as one more column, the fitted item bias
    scaled the same way (an item's quality in the log: what a real recommender knows from its ratings).
    """

    def __init__(self, data: LoggedData, mf: MFConfig | None = None, reward_noise: float = 0.0,
                 cache_dir: Path | None = None, verbose: bool = True) -> None:
        if reward_noise < 0:
            raise ValueError(f"reward_noise must be >= 0, got {reward_noise}")
        log = data.log
        self.data = data
        self.catalog = data.catalog
        self.name = log.name
        self.mf, self.fit_report = fit_matrix_factorization(log, mf or MFConfig(), cache_dir, verbose)
        self.reward_range = (float(log.feedback_range[0]), float(log.feedback_range[1]))
        self.reward_noise = reward_noise
        self.n_users = log.n_users
        factors, bias = self.mf.item_factors, self.mf.item_bias[:, None]
        self.item_embeddings = np.concatenate([factors / max(float(np.abs(factors).max()), 1e-12),
                                               bias / max(float(np.abs(bias).max()), 1e-12)], axis=1).astype(np.float32)
        counts = np.bincount(log.users, minlength=log.n_users).astype(np.float64)
        sums = np.bincount(log.users, weights=log.feedback, minlength=log.n_users)
        lo, hi = self.reward_range
        mean_fb = np.where(counts > 0, sums / np.maximum(counts, 1), (lo + hi) / 2)
        activity = np.log1p(counts) / max(float(np.log1p(counts).max()), 1e-12)
        self._features = np.stack([2 * activity - 1, 2 * (mean_fb - lo) / max(hi - lo, 1e-12) - 1], axis=1)
        self._features = np.clip(self._features, -1, 1).astype(np.float32)
        self.user_feature_dim = 2
        self._log = log
        self._recent: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def init_state(self, keys: np.ndarray) -> UserState:
        u = crng.uniform(crng.derive(keys, 0), 1)[:, 0]
        return {"user": np.minimum((u * self.n_users).astype(np.int64), self.n_users - 1)}

    def respond(self, state: UserState, items: np.ndarray, keys: np.ndarray) -> Response:
        expected = np.clip(self.mf.predict(state["user"], items), *self.reward_range)
        reward = expected
        if self.reward_noise > 0:
            reward = np.clip(expected + self.reward_noise * crng.normal(keys, 1)[:, 0], *self.reward_range)
        return Response(reward=reward, expected=expected, leave_probability=np.zeros(len(items)))

    def expected_rewards(self, state: UserState) -> np.ndarray:
        return np.clip(self.mf.predict_all(state["user"]), *self.reward_range)

    def user_features(self, state: UserState) -> np.ndarray:
        return self._features[state["user"]]

    def warm_history(self, state: UserState, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Each user's last ``n`` interactions in the log this model was built from (time order)."""
        if n not in self._recent:
            log = self._log
            counts = np.bincount(log.users, minlength=self.n_users)
            ends = np.cumsum(counts)
            offsets = np.arange(-n, 0)
            pos = ends[:, None] + offsets[None, :]
            valid = offsets[None, :] >= -counts[:, None]
            safe = np.clip(pos, 0, max(len(log) - 1, 0))
            items = np.where(valid, log.items[safe], -1)
            self._recent[n] = (items, np.where(valid, log.feedback[safe], 0.0).astype(np.float32))
        items, feedback = self._recent[n]
        return items[state["user"]], feedback[state["user"]]
