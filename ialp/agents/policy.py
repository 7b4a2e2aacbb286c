"""A stable-baselines3 actor-critic whose actor scores items through the item table, with invalid actions masked.

Why not SB3's ``MultiInputPolicy``: its actor ends in a ``Linear(latent, n_actions)`` head, one free row per item,
so nothing learned about an item transfers to similar ones, and it feeds item ids (``blocked``, ``candidate_ids``)
and the K candidate embeddings to an MLP as if they were features. :class:`ItemScoringPolicy` instead

- summarises the session (:class:`SessionFeatures`: the window, its feedback-weighted mean, the last item, the
  user features) and maps it to a query vector ``q(s)``;
- scores item ``i`` as ``q(s) · g(e_i) + b_i``, where ``e_i`` is the item's embedding (the observation's
  representation of items), ``g`` a small item tower shared by all items (similar items get similar scores)
  and ``b_i`` a learned per-item bias (what the embedding does not show, e.g. quality);
- acts over the whole catalogue (``Discrete(n_items)``, the table passed as ``item_embeddings``) or over the
  candidate slots of the observation (scored by their ``candidate_ids`` through the same table);
- masks what the setting forbids now (the observation's ``blocked`` item ids, or its ``candidate_mask``), in
  rollouts and in the update alike, since the mask is part of the stored observation;
- uses :class:`FastCategorical`: one softmax per batch, inverse-CDF sampling, no ``torch.distributions``
  argument validation. The item tower's outputs over the catalogue are cached while parameters are unchanged
  and gradients are off (rollouts).
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3.common.distributions import Distribution
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

SESSION_KEYS = ("history", "feedback", "mask", "user")


class SessionFeatures(BaseFeaturesExtractor):
    """Flattened window (embeddings, centred feedback, mask), user features, and three window summaries:
    the mean embedding, the feedback-weighted mean (feedback centred on the middle of its range) and the last
    item. Item ids and candidate embeddings are left to the policy's head."""

    def __init__(self, observation_space: spaces.Dict) -> None:
        hist, user, fb = (observation_space[k] for k in ("history", "user", "feedback"))
        assert isinstance(hist, spaces.Box) and isinstance(user, spaces.Box) and isinstance(fb, spaces.Box)
        w, d = hist.shape
        super().__init__(observation_space, features_dim=w * d + 2 * w + user.shape[0] + 3 * d)
        self.fb_mid = float((fb.high.max() + fb.low.min()) / 2)
        self.fb_half = float(max((fb.high.max() - fb.low.min()) / 2, 1e-6))

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        hist, mask = obs["history"], obs["mask"]
        fb = (obs["feedback"] - self.fb_mid) / self.fb_half * mask
        n = mask.sum(dim=1, keepdim=True).clamp_min(1.0)
        mean = (hist * mask.unsqueeze(-1)).sum(dim=1) / n
        liked = (hist * fb.unsqueeze(-1)).sum(dim=1) / n
        return torch.cat([hist.flatten(1), fb, mask, obs["user"], mean, liked, hist[:, -1]], dim=1)


#: Logit of a masked action: finite, so that ``p * log p`` is exactly 0 there (no NaN) and a row with every
#: action masked falls back to uniform.
MASKED = -1e9


class FastCategorical(Distribution):
    """Categorical over the last axis of logits in which masked actions hold :data:`MASKED`.

    Sampling takes one softmax and a cumulative sum (inverse CDF, no per-sample Python); the log-softmax is
    computed only when log-probabilities of given actions or the entropy are asked for (the update).
    """

    def __init__(self) -> None:
        super().__init__()
        self.logits: torch.Tensor
        self._log_p: torch.Tensor | None = None
        self._sampled: tuple[torch.Tensor, torch.Tensor] | None = None

    def proba_distribution_net(self, *args: Any, **kwargs: Any) -> nn.Module:
        raise NotImplementedError("ItemScoringPolicy builds its own head")

    def proba_distribution(self, logits: torch.Tensor) -> FastCategorical:
        self.logits, self._log_p, self._sampled = logits, None, None
        return self

    @property
    def log_p(self) -> torch.Tensor:
        """Log-probabilities of every action (computed once)."""
        if self._log_p is None:
            self._log_p = torch.log_softmax(self.logits, dim=-1)
        return self._log_p

    def log_prob(self, actions: torch.Tensor) -> torch.Tensor:
        if self._sampled is not None and actions is self._sampled[0]:  # just sampled: reuse its softmax
            return self._sampled[1].gather(-1, actions.reshape(-1, 1)).squeeze(-1).log()
        return self.log_p.gather(-1, actions.long().reshape(-1, 1)).squeeze(-1)

    def entropy(self) -> torch.Tensor:
        return -(self.log_p.exp() * self.log_p).sum(-1)

    def sample(self) -> torch.Tensor:
        probs = torch.softmax(self.logits, dim=-1)
        cdf = probs.cumsum(-1)
        u = torch.rand(cdf.shape[0], 1, device=cdf.device) * cdf[:, -1:]
        actions = torch.searchsorted(cdf, u).clamp_max(cdf.shape[-1] - 1).squeeze(-1)
        self._sampled = (actions, probs)
        return actions

    def mode(self) -> torch.Tensor:
        return self.logits.argmax(-1)

    def actions_from_params(self, logits: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        return self.proba_distribution(logits).get_actions(deterministic=deterministic)

    def log_prob_from_params(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        actions = self.actions_from_params(logits)
        return actions, self.log_prob(actions)


class _LogProbEntropy(torch.autograd.Function):
    """``(log p(a), entropy)`` of categorical logits in one pass each way; autograd's chain for the same terms
    makes about three times as many passes over the (B, n_actions) tensor.

    With ``log_p = log_softmax(z)`` and ``H = -sum(p * log_p)``: ``d log_p(a) / dz = onehot(a) - p`` and
    ``dH / dz = -p * (log_p + H)``.
    """

    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_p = torch.log_softmax(logits, dim=-1)
        p = log_p.exp()
        entropy = -torch.bmm(p.unsqueeze(1), log_p.unsqueeze(2)).reshape(-1)
        idx = actions.long().reshape(-1, 1)
        ctx.save_for_backward(p, log_p, idx, entropy)
        return log_p.gather(1, idx).squeeze(1), entropy

    @staticmethod
    def backward(ctx: Any, g_log_prob: torch.Tensor, g_entropy: torch.Tensor) -> tuple[torch.Tensor, None]:
        p, log_p, idx, entropy = ctx.saved_tensors
        grad = log_p + entropy.unsqueeze(1)
        grad.mul_(g_entropy.unsqueeze(1)).add_(g_log_prob.unsqueeze(1)).mul_(p).neg_()
        grad.scatter_add_(1, idx, g_log_prob.unsqueeze(1))
        return grad, None


def log_prob_and_entropy(logits: torch.Tensor, actions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probabilities of ``actions`` (B,) and entropies (B,) of categorical ``logits`` (B, n)."""
    log_prob, entropy = _LogProbEntropy.apply(logits, actions)
    return log_prob, entropy


class ItemScoringPolicy(ActorCriticPolicy):
    """Actor-critic that scores items through their embeddings (see the module docstring).

    Args:
        observation_space: An ialp environment's ``Dict`` space.
        action_space: ``Discrete(n_items)`` or ``Discrete(K)`` with candidates in the observation.
        lr_schedule: SB3's learning-rate schedule.
        item_embeddings: (n_items, d) table the environment shows items by (``BatchedRecEnv.item_embeddings``);
            with candidates, the candidates' rows are looked up by their ``candidate_ids``.
        score_dim: Width of the query and item vectors.
        item_hidden: Hidden width of the item tower.
        **kwargs: ``ActorCriticPolicy`` arguments (``net_arch``, ``activation_fn``, ``ortho_init``, ...).
    """

    def __init__(self, observation_space: spaces.Dict, action_space: spaces.Discrete, lr_schedule: Any,
                 item_embeddings: np.ndarray, score_dim: int = 32, item_hidden: int = 64, **kwargs: Any) -> None:
        self.candidate_mode = "candidates" in observation_space.spaces
        table = np.asarray(item_embeddings, dtype=np.float32)
        if not self.candidate_mode and len(table) != action_space.n:
            raise ValueError(f"item_embeddings has {len(table)} rows; the action space has {action_space.n}")
        self.n_items, self.score_dim, self.item_hidden = len(table), score_dim, item_hidden
        self._table = table
        self._tower_cache: tuple[tuple[int, ...], torch.Tensor] | None = None
        kwargs.setdefault("features_extractor_class", SessionFeatures)
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)
        self.action_dist = FastCategorical()

    def _build(self, lr_schedule: Any) -> None:
        self._build_mlp_extractor()
        d = self.observation_space["history"].shape[1]  # type: ignore[index]
        self.query = nn.Linear(self.mlp_extractor.latent_dim_pi, self.score_dim)
        self.item_tower = nn.Sequential(nn.Linear(d, self.item_hidden), nn.Tanh(),
                                        nn.Linear(self.item_hidden, self.score_dim))
        self.item_bias = nn.Parameter(torch.zeros(self.n_items))
        self.value_net = nn.Linear(self.mlp_extractor.latent_dim_vf, 1)
        self.register_buffer("items", torch.as_tensor(self._table))
        if self.ortho_init:
            gains = {self.features_extractor: np.sqrt(2), self.mlp_extractor: np.sqrt(2), self.item_tower: 1.0,
                     self.query: 0.01, self.value_net: 1.0}
            for module, gain in gains.items():
                module.apply(functools.partial(self.init_weights, gain=gain))
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)  # type: ignore[call-arg]

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(item_embeddings=self._table, score_dim=self.score_dim, item_hidden=self.item_hidden)
        return data

    # ------------------------------------------------------------------------------------------ scoring
    def _catalogue_vectors(self) -> torch.Tensor:
        """The item tower over the whole table, cached while the tower is unchanged and gradients are off."""
        if torch.is_grad_enabled():
            self._tower_cache = None
            return self.item_tower(self.items)
        version = tuple(p._version for p in self.item_tower.parameters())
        if self._tower_cache is None or self._tower_cache[0] != version:
            self._tower_cache = (version, self.item_tower(self.items))
        return self._tower_cache[1]

    def logits(self, obs: dict[str, torch.Tensor], latent_pi: torch.Tensor) -> torch.Tensor:
        """Action logits (B, n_actions), :data:`MASKED` at the observation's ``blocked`` items (catalogue) or
        where its ``candidate_mask`` is 0 (candidates)."""
        q = self.query(latent_pi)
        vectors = self._catalogue_vectors()
        if self.candidate_mode:
            ids = obs["candidate_ids"].long()
            scores = torch.bmm(vectors[ids], q.unsqueeze(2)).squeeze(2) + self.item_bias[ids]
            return scores.masked_fill(obs["candidate_mask"] < 0.5, MASKED)
        scores = torch.addmm(self.item_bias, q, vectors.T)
        blocked = obs["blocked"].long()
        rows, slots = torch.nonzero(blocked >= 0, as_tuple=True)
        if len(rows):  # a row with every action masked samples uniformly (all logits equal)
            scores = scores.index_put((rows, blocked[rows, slots]), torch.tensor(MASKED))
        return scores

    # ------------------------------------------------------------------------------------------ SB3 hooks
    def _latents(self, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.extract_features(obs)
        if self.share_features_extractor:
            return self.mlp_extractor(features)
        pi_features, vf_features = features
        return self.mlp_extractor.forward_actor(pi_features), self.mlp_extractor.forward_critic(vf_features)

    def _dist(self, obs: dict[str, torch.Tensor], latent_pi: torch.Tensor) -> FastCategorical:
        return FastCategorical().proba_distribution(self.logits(obs, latent_pi))

    def forward(self, obs: Any, deterministic: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        latent_pi, latent_vf = self._latents(obs)
        dist = self._dist(obs, latent_pi)
        actions = dist.get_actions(deterministic=deterministic)
        return actions, self.value_net(latent_vf), dist.log_prob(actions)

    def evaluate_actions(self, obs: Any, actions: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        latent_pi, latent_vf = self._latents(obs)
        log_prob, entropy = log_prob_and_entropy(self.logits(obs, latent_pi), actions)
        return self.value_net(latent_vf), log_prob, entropy

    def get_distribution(self, obs: Any) -> FastCategorical:
        """The action distribution from the actor's path alone (as SB3's own ``get_distribution``: rollouts of a
        frozen policy, evaluation and ``ap``'s components need no value)."""
        features = BasePolicy.extract_features(self, obs, self.pi_features_extractor)
        return self._dist(obs, self.mlp_extractor.forward_actor(features))

    def _predict(self, observation: Any, deterministic: bool = False) -> torch.Tensor:
        return self.get_distribution(observation).get_actions(deterministic=deterministic)
