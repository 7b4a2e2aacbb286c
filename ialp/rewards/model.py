"""A reward model fitted to preferences: which of K candidate items a user in a given state prefers.

The network scores a (state, item) pair. The state enters through fixed summary features of the observation
(:func:`state_features`: mean and feedback-weighted mean of the history embeddings, the last item, the user
features); the item through its embedding, elementwise products with the history summaries, and a learned
per-item bias (which carries what embeddings do not show, e.g. quality an LLM reads from a description).

Losses (``loss=``):

- ``listwise``: softmax cross-entropy over the K candidates (the choice model behind "pick one of K";
  Plackett–Luce's first choice).
- ``pairwise``: Bradley–Terry, ``-log sigmoid(s_chosen - s_other)`` averaged over the K - 1 others.
- ``pointwise``: binary cross-entropy, chosen = 1 and the others = 0, each pair on its own.

Outputs are standardised (mean 0, std 1 over the training pairs) and mapped into the environment's reward
range by a logistic squash, ``lo + (hi - lo) * sigmoid(z)``, so a learned reward has the scale of the true one
(a value function pretrained on it transfers online without a scale shock).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import numpy as np
import torch
from torch import nn

#: Losses of the reward model fitted to preferences (see :func:`preference_loss`).
Loss = Literal["listwise", "pairwise", "pointwise"]
LOSSES: tuple[str, ...] = get_args(Loss)


def state_features(obs: dict[str, np.ndarray], feedback_range: tuple[float, float]) -> np.ndarray:
    """Summary features of a batch of observations, float32 (B, 3d + F + 2).

    ``[mean history embedding, feedback-weighted mean (feedback centred on its range's middle), last item,
    user features, fraction of the window filled, mean normalised feedback]``.
    """
    hist = np.asarray(obs["history"], dtype=np.float32)
    if hist.ndim == 2:
        return state_features({k: np.asarray(v)[None] for k, v in obs.items()}, feedback_range)[0]
    mask = np.asarray(obs["mask"], dtype=np.float32)
    lo, hi = feedback_range
    fb = (np.asarray(obs["feedback"], dtype=np.float32) - lo) / max(hi - lo, 1e-9)
    n = np.maximum(mask.sum(axis=1, keepdims=True), 1.0)
    mean = (hist * mask[..., None]).sum(axis=1) / n
    liked = (hist * ((fb - 0.5) * mask)[..., None]).sum(axis=1) / n
    last = hist[:, -1]
    extra = np.stack([mask.mean(axis=1), (fb * mask).sum(axis=1) / n[:, 0]], axis=1)
    user = np.asarray(obs["user"], dtype=np.float32)
    return np.concatenate([mean, liked, last, user, extra], axis=1).astype(np.float32)


class RewardNet(nn.Module):
    """Scores (state features, item embedding, item index) triples; see the module docstring."""

    def __init__(self, state_dim: int, item_dim: int, n_items: int, hidden: int = 64) -> None:
        super().__init__()
        self.item_dim = item_dim
        self.mlp = nn.Sequential(nn.Linear(state_dim + 4 * item_dim, hidden), nn.ReLU(),
                                 nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.item_bias = nn.Embedding(n_items, 1)
        nn.init.zeros_(self.item_bias.weight)

    def forward(self, state: torch.Tensor, item_emb: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Scores of shape ``items.shape``; ``state`` broadcasts over trailing candidate axes."""
        d = self.item_dim
        while state.dim() < item_emb.dim():
            state = state.unsqueeze(-2)
        state = state.expand(*item_emb.shape[:-1], state.shape[-1])
        mean, liked, last = state[..., :d], state[..., d:2 * d], state[..., 2 * d:3 * d]
        x = torch.cat([state, item_emb, mean * item_emb, liked * item_emb, last * item_emb], dim=-1)
        return self.mlp(x).squeeze(-1) + self.item_bias(items).squeeze(-1)


@dataclass
class PreferenceSet:
    """Preferences as arrays: state features (N, S), candidates (N, K) item indices, chosen position (N,)."""

    states: np.ndarray
    candidates: np.ndarray
    choice: np.ndarray

    def __len__(self) -> int:
        return len(self.choice)

    def subset(self, idx: np.ndarray) -> PreferenceSet:
        """Rows ``idx``."""
        return PreferenceSet(self.states[idx], self.candidates[idx], self.choice[idx])


def _loss(scores: torch.Tensor, choice: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "listwise":
        return nn.functional.cross_entropy(scores, choice)
    if kind == "pairwise":
        chosen = scores.gather(1, choice[:, None])
        others = torch.ones_like(scores, dtype=torch.bool).scatter(1, choice[:, None], False)
        margins = (chosen - scores)[others].view(len(scores), -1)
        return -nn.functional.logsigmoid(margins).mean()
    if kind == "pointwise":
        target = nn.functional.one_hot(choice, scores.shape[1]).float()
        return nn.functional.binary_cross_entropy_with_logits(scores, target)
    raise ValueError(f"loss must be one of {LOSSES}, got {kind!r}")


class RewardModel:
    """A fitted :class:`RewardNet` with its item embeddings, feedback range and output standardisation.

    Args:
        item_embeddings: (N, d) embeddings, the ones the environments show the agent.
        feedback_range: Range of the observed feedback (normalises the state features).
        reward_range: Range the standardised score is squashed into.
        state_dim: Length of :func:`state_features`.
        hidden: Width of the network.
        seed: Seed of the initialisation and the minibatch order.
    """

    def __init__(self, item_embeddings: np.ndarray, feedback_range: tuple[float, float],
                 reward_range: tuple[float, float], state_dim: int, hidden: int = 64, seed: int = 0) -> None:
        self.item_embeddings = np.asarray(item_embeddings, dtype=np.float32)
        self.feedback_range = (float(feedback_range[0]), float(feedback_range[1]))
        self.reward_range = (float(reward_range[0]), float(reward_range[1]))
        self.state_dim, self.hidden, self.seed = state_dim, hidden, seed
        self.net = self._fresh_net()
        self.mean, self.std = 0.0, 1.0
        self._emb = torch.from_numpy(self.item_embeddings)

    def _fresh_net(self) -> RewardNet:
        torch.manual_seed(self.seed)
        return RewardNet(self.state_dim, self.item_embeddings.shape[1], len(self.item_embeddings), self.hidden)

    # ------------------------------------------------------------------------------------------ scoring
    def _scores(self, states: np.ndarray, items: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            idx = torch.from_numpy(np.asarray(items, dtype=np.int64))
            out = self.net(torch.from_numpy(np.asarray(states, dtype=np.float32)), self._emb[idx], idx)
        return out.numpy()

    def score(self, states: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Standardised scores of ``items`` (B,) or (B, K) given state features (B, S)."""
        return (self._scores(states, items) - self.mean) / self.std

    def reward(self, obs: dict[str, np.ndarray], items: np.ndarray) -> np.ndarray:
        """Learned reward of showing ``items`` (B,) to users in observation ``obs`` (batch-first), float32."""
        return self.reward_from_features(state_features(obs, self.feedback_range), items)

    def reward_from_features(self, states: np.ndarray, items: np.ndarray) -> np.ndarray:
        """:meth:`reward` given the state features (B, S) of :func:`state_features` instead of observations."""
        z = self.score(states, np.asarray(items, dtype=np.int64))
        lo, hi = self.reward_range
        return (lo + (hi - lo) / (1.0 + np.exp(-z))).astype(np.float32)

    def accuracy(self, data: PreferenceSet) -> float:
        """Fraction of queries whose chosen candidate gets the highest score."""
        if not len(data):
            return float("nan")
        return float((self._scores(data.states, data.candidates).argmax(axis=1) == data.choice).mean())

    # ------------------------------------------------------------------------------------------ fitting
    def fit(self, data: PreferenceSet, loss: str = "listwise", epochs: int = 300, learning_rate: float = 3e-3,
            weight_decay: float = 1e-3, batch_size: int = 256, patience: int = 0,
            validation: float = 0.2) -> list[float]:
        """Fit to preferences with ``loss`` (see the module docstring); returns the training loss per epoch.

        ``patience > 0``: early stopping. A seeded ``validation`` share of ``data`` is held out of training; the
        epoch with the fewest validation choice errors (ties: the lower loss) is found, stopping after
        ``patience`` epochs without a better one, and the model is refitted from the same initialisation on all
        of ``data`` for that many epochs. With few preferences per item the per-item biases otherwise memorise the
        training answers (training accuracy near 1, held-out accuracy falling with more epochs).
        """
        if loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
        states = torch.from_numpy(data.states.astype(np.float32))
        cands = torch.from_numpy(data.candidates.astype(np.int64))
        choice = torch.from_numpy(data.choice.astype(np.int64))

        def batch_loss(idx: torch.Tensor) -> torch.Tensor:
            return _loss(self.net(states[idx], self._emb[cands[idx]], cands[idx]), choice[idx], loss)

        rows = torch.arange(len(data))
        held = torch.zeros(0, dtype=torch.long)
        if patience > 0 and len(data) >= 10:
            perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(self.seed))
            n_held = max(2, round(validation * len(data)))
            held, rows = perm[:n_held], perm[n_held:]
        def validation_error() -> tuple[float, float]:  # choice errors first, the loss breaks ties
            scores = self.net(states[held], self._emb[cands[held]], cands[held])
            return float((scores.argmax(1) != choice[held]).float().mean()), float(_loss(scores, choice[held], loss))

        history, best = self._train(batch_loss, rows, epochs, learning_rate, weight_decay, batch_size,
                                    validation_error if len(held) else None, patience)
        if len(held):  # refit from the same initialisation on every preference, for the best epoch count
            self.net = self._fresh_net()
            history, _ = self._train(batch_loss, torch.arange(len(data)), best, learning_rate, weight_decay,
                                     batch_size)
        self._standardise(data.states, data.candidates)
        return history

    def fit_feedback(self, states: np.ndarray, items: np.ndarray, feedback: np.ndarray, epochs: int = 300,
                     learning_rate: float = 3e-3, weight_decay: float = 1e-3, batch_size: int = 256) -> list[float]:
        """Regress logged feedback of (state, item) pairs (the log-only ablation: no LLM)."""
        y = np.asarray(feedback, dtype=np.float32)
        y_t = torch.from_numpy((y - y.mean()) / max(float(y.std()), 1e-6))
        s = torch.from_numpy(np.asarray(states, dtype=np.float32))
        it = torch.from_numpy(np.asarray(items, dtype=np.int64))
        history, _ = self._train(lambda idx: nn.functional.mse_loss(self.net(s[idx], self._emb[it[idx]], it[idx]),
                                                                    y_t[idx]), torch.arange(len(y)), epochs,
                                 learning_rate, weight_decay, batch_size)
        self._standardise(np.asarray(states), np.asarray(items)[:, None])
        return history

    def _train(self, batch_loss: Any, rows: torch.Tensor, epochs: int, lr: float, wd: float, batch_size: int,
               validation_error: Any = None, patience: int = 0) -> tuple[list[float], int]:
        """Adam over minibatches of ``rows``; returns the loss per epoch and the number of epochs that gave the
        lowest ``validation_error`` (``epochs`` without one)."""
        gen = torch.Generator().manual_seed(self.seed)
        opt = torch.optim.Adam(self.net.parameters(), lr=lr, weight_decay=wd)
        history: list[float] = []
        best: tuple[float, ...] = (float("inf"),)
        best_epochs, since = epochs, 0
        for _ in range(epochs):
            self.net.train()
            total = 0.0
            for idx in rows[torch.randperm(len(rows), generator=gen)].split(batch_size):
                loss = batch_loss(idx)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
            history.append(total / max(len(rows), 1))
            if validation_error is not None:
                self.net.eval()
                with torch.no_grad():
                    current = validation_error()
                if current < best:
                    best, since = current, 0
                    best_epochs = len(history)
                else:
                    since += 1
                    if since >= patience:
                        break
        self.net.eval()
        return history, best_epochs

    def _standardise(self, states: np.ndarray, items: np.ndarray) -> None:
        raw = self._scores(states, items)
        self.mean, self.std = float(raw.mean()), max(float(raw.std()), 1e-6)

    # ------------------------------------------------------------------------------------------ storage
    def save(self, path: str | Path) -> None:
        """Weights, standardisation and construction arguments in one file."""
        torch.save({"state_dict": self.net.state_dict(), "mean": self.mean, "std": self.std,
                    "item_embeddings": self.item_embeddings, "feedback_range": self.feedback_range,
                    "reward_range": self.reward_range, "state_dim": self.state_dim, "hidden": self.hidden,
                    "seed": self.seed}, path)

    @classmethod
    def load(cls, path: str | Path) -> RewardModel:
        """The model saved by :meth:`save`."""
        blob = torch.load(path, weights_only=False)
        model = cls(blob["item_embeddings"], blob["feedback_range"], blob["reward_range"], blob["state_dim"],
                    blob["hidden"], blob["seed"])
        model.net.load_state_dict(blob["state_dict"])
        model.net.eval()
        model.mean, model.std = blob["mean"], blob["std"]
        return model
