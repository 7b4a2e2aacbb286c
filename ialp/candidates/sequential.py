"""SASRec-style sequential recommender: item towers, causal user encoder, training and ranking metrics."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.checkpoint import checkpoint

from ialp.candidates.adapter import SideAdapterNetwork

__all__ = [
    "IDItemTower",
    "LeaveOneOut",
    "SASRec",
    "SequentialRecommender",
    "SideItemTower",
    "TextFinetuneTower",
    "leave_one_out",
    "popularity_scores",
    "rank_metrics",
    "train_epoch",
]


# --------------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class LeaveOneOut:
    """Leave-one-out split of item sequences.

    Attributes:
        train: Per user, all items but the last two (the training sequence).
        valid: Per user, (input sequence, target) with the second-to-last item as target.
        test: Per user, (input sequence, target) with the last item as target.
        n_items: Catalogue size.
    """

    train: list[np.ndarray]
    valid: list[tuple[np.ndarray, int]]
    test: list[tuple[np.ndarray, int]]
    n_items: int


def leave_one_out(histories: Sequence[np.ndarray], n_items: int, min_len: int = 3) -> LeaveOneOut:
    """Split each user's time-ordered items: last one to test, the one before to validation, the rest to train.

    Users with fewer than ``min_len`` items are left out of validation and test (their items still train).
    """
    train, valid, test = [], [], []
    for h in histories:
        h = np.asarray(h, dtype=np.int64)
        if len(h) < min_len:
            train.append(h)
            continue
        train.append(h[:-2])
        valid.append((h[:-2], int(h[-2])))
        test.append((h[:-1], int(h[-1])))
    return LeaveOneOut(train, valid, test, n_items)


def pad_left(seqs: Sequence[np.ndarray], length: int) -> np.ndarray:
    """The last ``length`` items of each sequence, left-padded with -1, int64 (B, length)."""
    out = np.full((len(seqs), length), -1, dtype=np.int64)
    for i, s in enumerate(seqs):
        tail = np.asarray(s, dtype=np.int64)[-length:]
        if len(tail):
            out[i, length - len(tail) :] = tail
    return out


def training_windows(train: Sequence[np.ndarray], max_len: int) -> np.ndarray:
    """Non-overlapping windows of ``max_len + 1`` items cut from the end of each sequence, left-padded (W, max_len+1).

    Input is ``w[:, :-1]``, target ``w[:, 1:]`` (-1 where no target).
    """
    windows = []
    for s in train:
        end = len(s)
        while end >= 2:
            start = max(0, end - (max_len + 1))
            windows.append(s[start:end])
            end = start + 1 if start > 0 else 0
    return pad_left(windows, max_len + 1)


def item_popularity(train: Sequence[np.ndarray], n_items: int) -> np.ndarray:
    """Interaction counts per item over the training sequences, float64 (n_items,)."""
    flat = np.concatenate([np.asarray(s, dtype=np.int64) for s in train]) if train else np.zeros(0, np.int64)
    return np.bincount(flat, minlength=n_items).astype(np.float64)


# ------------------------------------------------------------------------------------------ metrics


def rank_metrics(scores: np.ndarray, targets: np.ndarray, exclude: Sequence[np.ndarray] | None = None,
                 k: int = 10) -> dict[str, float]:
    """HR@k and NDCG@k of full-catalogue rankings.

    The rank of a target counts the items scored strictly higher plus the other items tied with it
    (pessimistic ties); excluded items (e.g. each user's history, the target never) do not count.

    Args:
        scores: (U, N) scores.
        targets: (U,) target item per user.
        exclude: Per user, items removed from the ranking.
        k: Cut-off.

    Returns:
        ``{"hr@k": ..., "ndcg@k": ...}`` averaged over users.
    """
    scores = np.array(scores, dtype=np.float64, copy=True)
    targets = np.asarray(targets, dtype=np.int64)
    rows = np.arange(len(targets))
    target_scores = scores[rows, targets].copy()
    if exclude is not None:
        for i, items in enumerate(exclude):
            scores[i, np.asarray(items, dtype=np.int64)] = -np.inf
    scores[rows, targets] = -np.inf  # the target itself does not count against itself
    rank = (scores >= target_scores[:, None]).sum(axis=1)
    hit = rank < k
    ndcg = np.where(hit, 1.0 / np.log2(rank + 2.0), 0.0)
    return {f"hr@{k}": float(hit.mean()) if len(hit) else 0.0, f"ndcg@{k}": float(ndcg.mean()) if len(hit) else 0.0}


def popularity_scores(popularity: np.ndarray, n_users: int) -> np.ndarray:
    """The popularity ranker's scores: every user gets log(1 + count), (n_users, N)."""
    return np.broadcast_to(np.log1p(popularity), (n_users, len(popularity)))


# ------------------------------------------------------------------------------------------- models


class IDItemTower(nn.Module):
    """Item representations as free ID embeddings (the ``sasrec-id`` baseline)."""

    def __init__(self, n_items: int, width: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(n_items, width)
        nn.init.normal_(self.embedding.weight, std=0.1)

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        return self.embedding(items)


class SideItemTower(nn.Module):
    """Item representations from cached frozen-encoder states through a ``SideAdapterNetwork``.

    Args:
        taps: Per modality, one (n_items, D_l) array (float16 memory-map is fine) per tapped layer. They are
            read row-wise per batch and are not part of the module's state.
        width: Output width.
        chunk: While training, run the side network over this many items at a time, each chunk checkpointed
            (activations recomputed in the backward pass), so that memory is bounded by one chunk rather than by
            the few thousand distinct items of a batch (0: all at once, activations kept).
        **kwargs: ``SideAdapterNetwork`` options (``side_width``, ``bottleneck``, ``fusion``, ``dropout``,
            ``design``, ``gates``).
    """

    def __init__(self, taps: Mapping[str, Sequence[np.ndarray]], width: int, chunk: int = 0, **kwargs: Any) -> None:
        super().__init__()
        self.taps = {m: list(layers) for m, layers in taps.items()}
        widths = {m: [int(a.shape[1]) for a in layers] for m, layers in self.taps.items()}
        self.side = SideAdapterNetwork(widths, width, **kwargs)
        self.chunk = chunk

    def read(self, items: np.ndarray) -> dict[str, list[torch.Tensor]]:
        """Cached states of ``items`` as float32 tensors."""
        return {m: [torch.from_numpy(np.asarray(a[items], dtype=np.float32)) for a in layers]
                for m, layers in self.taps.items()}

    def _run(self, *flat: torch.Tensor) -> torch.Tensor:
        """The side network over flattened taps (modality by modality, layer by layer), for ``checkpoint``."""
        it = iter(flat)
        return self.side({m: [next(it) for _ in layers] for m, layers in self.taps.items()})

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        flat = items.reshape(-1).numpy()
        if not (self.chunk and self.training and torch.is_grad_enabled()) or len(flat) <= self.chunk:
            return self.side(self.read(flat)).reshape(*items.shape, -1)
        parts = []
        for s in range(0, len(flat), self.chunk):
            taps = self.read(flat[s : s + self.chunk])
            parts.append(checkpoint(self._run, *(x for layers in taps.values() for x in layers), use_reentrant=False))
        return torch.cat(parts).reshape(*items.shape, -1)


class TextFinetuneTower(nn.Module):
    """Item representations from a TRAINABLE text encoder (the ``finetune-text`` comparison, no cache).

    Each item's text runs through ``backbone`` (whose own weights are trained), its last layer is mean-pooled
    over the attention mask and projected to ``width``. Texts run in length-sorted chunks of ``chunk``; while
    training each chunk is checkpointed (activations recomputed in the backward pass), so memory is bounded
    by one chunk rather than by the few thousand distinct items of a batch.

    Args:
        backbone: A transformers encoder (its parameters are set trainable).
        token_ids: Per item, its text's token ids (not part of the module's state).
        width: Output width.
        pad_id: The tokenizer's padding id.
        chunk: Texts per encoder pass.
        checkpointed: Checkpoint each chunk while training (``False``: keep all activations, plain fine-tuning).
    """

    def __init__(self, backbone: nn.Module, token_ids: Sequence[Sequence[int]], width: int, pad_id: int = 0,
                 chunk: int = 64, checkpointed: bool = True) -> None:
        super().__init__()
        self.backbone = backbone.requires_grad_(True)
        self.token_ids = [np.asarray(t, dtype=np.int64) for t in token_ids]
        self.pad_id, self.chunk, self.checkpointed = pad_id, chunk, checkpointed
        config: Any = backbone.config
        self.proj = nn.Linear(int(config.hidden_size), width)

    def _pooled(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        last = self.backbone(input_ids=ids, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).to(last.dtype)
        return (last * m).sum(1) / m.sum(1).clamp_min(1.0)

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        flat = items.reshape(-1).numpy()
        texts = [self.token_ids[i] for i in flat]
        order = np.argsort([len(t) for t in texts], kind="stable")
        parts, grad = [], torch.is_grad_enabled() and self.training and self.checkpointed
        for s in range(0, len(order), self.chunk):
            rows = order[s : s + self.chunk]
            ids = torch.full((len(rows), max(len(texts[i]) for i in rows)), self.pad_id, dtype=torch.int64)
            mask = torch.zeros_like(ids)
            for j, i in enumerate(rows):
                ids[j, : len(texts[i])] = torch.from_numpy(texts[i])
                mask[j, : len(texts[i])] = 1
            pooled = checkpoint(self._pooled, ids, mask, use_reentrant=False) if grad else self._pooled(ids, mask)
            parts.append(pooled)
        pooled_all = torch.cat(parts)[torch.from_numpy(np.argsort(order, kind="stable"))]
        return self.proj(pooled_all).reshape(*items.shape, -1)


@dataclass
class KVCache:
    """Keys and values of B sessions' items for every block of a ``SASRec``, for incremental user states.

    Row b holds ``length[b]`` items at slots ``0 .. length[b] - 1`` (slot = position from the session's start).

    Attributes:
        keys: (n_layers, B, n_heads, max_len, d / n_heads).
        values: Same shape as ``keys``.
        length: (B,) int64 items held per row.
    """

    keys: torch.Tensor
    values: torch.Tensor
    length: torch.Tensor


class SASRec(nn.Module):
    """Causal transformer over a left-padded sequence of item vectors (SASRec-style, pre-LayerNorm).

    Positions count from the first item of the sequence (the session's start), so that a new item never moves
    the others: the states of a growing sequence are computed once (``prefill``) and extended one item at a time
    from a key/value cache (``extend``) with the same result as a full pass.

    Args:
        width: Model width d.
        max_len: Longest sequence (learned positions).
        n_layers: Transformer blocks.
        n_heads: Attention heads.
        dropout: Dropout rate.
    """

    def __init__(self, width: int, max_len: int = 50, n_layers: int = 2, n_heads: int = 2,
                 dropout: float = 0.2) -> None:
        super().__init__()
        self.max_len, self.n_heads, self.dropout = max_len, n_heads, dropout
        self.position = nn.Embedding(max_len, width)
        self.input_norm = nn.LayerNorm(width)
        self.drop = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(width, n_heads, dim_feedforward=width * 2, dropout=dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, n_layers, enable_nested_tensor=False)
        self.out_norm = nn.LayerNorm(width)
        nn.init.normal_(self.position.weight, std=0.02)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, d) -> (B, H, T, d / H)."""
        b, t, d = x.shape
        return x.view(b, t, self.n_heads, d // self.n_heads).transpose(1, 2)

    def _block(self, layer: Any, x: torch.Tensor, attend: torch.Tensor,
               store: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None,
               ) -> torch.Tensor:
        """One pre-LayerNorm block (the weights of an ``nn.TransformerEncoderLayer``) with an explicit mask.

        ``attend`` (B, 1, T_q, T_k) is an additive mask (0 where a query may see a key, -inf elsewhere). ``store``
        receives the block's keys and values (B, H, T_q, d / H) and returns those to attend to (a cache writes them
        and returns all it holds).
        """
        attn = layer.self_attn
        q, k, v = F.linear(layer.norm1(x), attn.in_proj_weight, attn.in_proj_bias).chunk(3, dim=-1)
        q, k, v = self._heads(q), self._heads(k), self._heads(v)
        keys, values = store(k, v) if store is not None else (k, v)
        # Plain matmuls: on CPU they beat scaled_dot_product_attention for the one-query steps of ``extend``
        weights = torch.matmul(q, keys.transpose(-1, -2)).mul_(q.shape[-1] ** -0.5).add_(attend).softmax(-1)
        a = torch.matmul(F.dropout(weights, self.dropout, self.training), values)
        x = x + layer.dropout1(attn.out_proj(a.transpose(1, 2).reshape(x.shape)))
        return x + layer.dropout2(layer.linear2(layer.dropout(layer.activation(layer.linear1(layer.norm2(x))))))

    @staticmethod
    def _causal(pad: torch.Tensor) -> torch.Tensor:
        """Additive (B, 1, T, T) mask: a query sees past and present keys that are items, and always itself (so
        that an empty row stays finite)."""
        t = pad.shape[1]
        causal = torch.ones(t, t, dtype=torch.bool, device=pad.device).tril()
        seen = (causal.unsqueeze(0) & ~pad.unsqueeze(1)) | torch.eye(t, dtype=torch.bool, device=pad.device)
        return torch.zeros(seen.shape, device=pad.device).masked_fill_(~seen, float("-inf")).unsqueeze(1)

    def _embed(self, item_vectors: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return self.drop(self.input_norm(item_vectors + self.position(positions)))

    def forward(self, item_vectors: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
        """Hidden state after each position, (B, T, d); ``pad`` is True at empty (leading) positions."""
        positions = (torch.cumsum(~pad, dim=1) - 1).clamp_min(0)
        x = self._embed(item_vectors, positions).masked_fill(pad.unsqueeze(-1), 0.0)
        attend = self._causal(pad)
        for layer in self.blocks.layers:
            x = self._block(layer, x, attend)
        return self.out_norm(x)

    def user_states(self, seq: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """Normalised user states after each position of a left-padded (-1) item sequence, (B, T, d).

        ``table`` holds the item vectors (row i: item i; rows of items absent from ``seq`` are never read).
        """
        return F.normalize(self(table[seq.clamp_min(0)], seq < 0), dim=-1)

    # ---------------------------------------------------------------------------------- incremental states

    def new_cache(self, batch: int) -> KVCache:
        """An empty cache for ``batch`` sessions."""
        width = self.position.embedding_dim
        shape = (len(self.blocks.layers), batch, self.n_heads, self.max_len, width // self.n_heads)
        return KVCache(torch.zeros(shape), torch.zeros(shape), torch.zeros(batch, dtype=torch.int64))

    def prefill(self, cache: KVCache, rows: torch.Tensor, seq: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """Start ``rows`` of ``cache`` afresh from left-padded (-1) sequences (R, T <= max_len).

        Returns:
            Normalised user states after each row's last item, (R, d); rows without items get zeros.
        """
        r, t = seq.shape
        if t > self.max_len:
            raise ValueError(f"prefill: {t} items per row exceed max_len={self.max_len}")
        n = (seq >= 0).sum(1)
        # Left-align: slot j holds the row's j-th item
        left = torch.gather(seq, 1, (torch.arange(t).unsqueeze(0) + (t - n).unsqueeze(1)) % t)
        pad = torch.arange(t).unsqueeze(0) >= n.unsqueeze(1)
        x = self._embed(table[left.clamp_min(0)], torch.arange(t).expand(r, t))
        attend = self._causal(pad)

        def store(i: int) -> Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
            def write(k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                cache.keys[i, rows, :, :t] = k
                cache.values[i, rows, :, :t] = v
                return k, v
            return write

        for i, layer in enumerate(self.blocks.layers):
            x = self._block(layer, x, attend, store(i))
        cache.length[rows] = n
        last = torch.gather(x, 1, (n - 1).clamp_min(0).view(r, 1, 1).expand(r, 1, x.shape[2]))[:, 0]
        return F.normalize(self.out_norm(last), dim=-1) * (n > 0).unsqueeze(1)

    def extend(self, cache: KVCache, items: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """Append one item to every row of ``cache`` (each at its own position) and return the new states (B, d).

        Raises:
            ValueError: A row already holds ``max_len`` items (start it afresh with ``prefill``).
        """
        slot = cache.length
        if int(slot.max()) >= self.max_len:
            raise ValueError(f"extend: a row already holds max_len={self.max_len} items; prefill it afresh")
        b = len(slot)
        span = int(slot.max()) + 1
        x = self._embed(table[items], slot).unsqueeze(1)
        # Additive mask (cheaper than a boolean one): a row sees its own slots up to the new one
        attend = torch.zeros(b, 1, 1, span).masked_fill_(
            (torch.arange(span).unsqueeze(0) > slot.unsqueeze(1)).view(b, 1, 1, span), float("-inf"))
        _, heads, slots, head_width = cache.keys.shape[1:]
        # Row (b, h) of the new key goes to flat row (b * H + h) * S + slot[b] of the cache's (B*H*S, d/H) view
        flat = ((torch.arange(b).unsqueeze(1) * heads + torch.arange(heads)) * slots + slot.unsqueeze(1)).flatten()

        def store(i: int) -> Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
            def write(k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                cache.keys[i].view(-1, head_width).index_copy_(0, flat, k.reshape(-1, head_width))
                cache.values[i].view(-1, head_width).index_copy_(0, flat, v.reshape(-1, head_width))
                return cache.keys[i, :, :, :span], cache.values[i, :, :, :span]
            return write

        for i, layer in enumerate(self.blocks.layers):
            x = self._block(layer, x, attend, store(i))
        cache.length = slot + 1
        return F.normalize(self.out_norm(x[:, 0]), dim=-1)


class SequentialRecommender(nn.Module):
    """An item tower shared by the input sequence and the output scores, and a SASRec user encoder.

    Scores are cosine similarities divided by ``temperature``.
    """

    def __init__(self, tower: nn.Module, encoder: SASRec, temperature: float = 0.1) -> None:
        super().__init__()
        self.tower, self.encoder, self.temperature = tower, encoder, temperature

    def embed(self, items: torch.Tensor) -> torch.Tensor:
        """Normalised item vectors for item indices."""
        return F.normalize(self.tower(items), dim=-1)

    @torch.no_grad()
    def item_table(self, n_items: int, chunk: int = 4096) -> torch.Tensor:
        """Normalised vectors of every item, (n_items, d)."""
        was = self.training
        self.eval()
        table = torch.cat([self.embed(torch.arange(s, min(s + chunk, n_items))) for s in range(0, n_items, chunk)])
        self.train(was)
        return table

    @torch.no_grad()
    def user_vectors(self, seqs: np.ndarray, table: torch.Tensor, batch: int = 512) -> torch.Tensor:
        """Last-position user states of left-padded sequences, (B, d)."""
        was = self.training
        self.eval()
        out = [self.encoder.user_states(torch.from_numpy(seqs[s : s + batch]), table)[:, -1]
               for s in range(0, len(seqs), batch)]
        self.train(was)
        return torch.cat(out) if out else torch.zeros((0, table.shape[1]))


def in_batch_loss(model: SequentialRecommender, inputs: torch.Tensor, targets: torch.Tensor,
                  log_q: torch.Tensor | None, chunk: int = 0, negatives: torch.Tensor | None = None) -> torch.Tensor:
    """In-batch softmax over the distinct target items of the batch, with log-popularity correction.

    A position trains when both its input and its target are items (an empty input predicts nothing). Its
    logits are its cosine score with each distinct target item of the batch, divided by the temperature, minus
    ``log q(item)`` (the item's sampling probability as an in-batch negative, so that popular items are not
    over-penalised). The items of the position's own sequence (its past and its later targets) are not its
    negatives: they are masked, all but its own target.

    Args:
        model: The recommender.
        inputs: (B, T) item indices, -1 where empty.
        targets: (B, T) next items, -1 where none.
        log_q: log sampling probability per item, or ``None``.
        chunk: Score this many positions at a time, each chunk checkpointed, so that the (positions x items)
            logits never exist whole (0: all at once).
        negatives: Extra sampled negatives shared by the batch (sampled softmax), drawn from the distribution
            ``log_q`` describes, so that the same correction applies to them.
    """
    valid = (targets >= 0) & (inputs >= 0)
    positives = targets[valid]
    uniq = torch.unique(positives if negatives is None else torch.cat([positives, negatives]))
    label = torch.searchsorted(uniq, positives)
    # One tower call for the distinct input and target items (they overlap: targets are the inputs shifted by one)
    present = torch.unique(torch.cat([inputs[inputs >= 0], uniq]))
    vectors = model.embed(present)
    table = vectors.new_zeros(int(present[-1]) + 1, vectors.shape[1]).index_copy(0, present, vectors)
    h = model.encoder.user_states(inputs, table)[valid]
    rows = torch.arange(len(inputs)).unsqueeze(1).expand_as(valid)[valid]
    # own[b, j]: the batch's target j is in sequence b
    window = torch.cat([inputs, targets], dim=1)
    slot = torch.searchsorted(uniq, window.clamp_min(0)).clamp_max(len(uniq) - 1)
    inside = (window >= 0) & (uniq[slot] == window)
    own = torch.zeros(len(inputs), len(uniq), dtype=torch.bool)
    own[torch.arange(len(inputs)).unsqueeze(1).expand_as(inside)[inside], slot[inside]] = True
    bias = -log_q[uniq] if log_q is not None else torch.zeros(len(uniq))

    def part(h: torch.Tensor, targets: torch.Tensor, rows: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
        logits = h @ targets.T / model.temperature + bias
        mask = own[rows]
        mask[torch.arange(len(label)), label] = False
        return F.cross_entropy(logits.masked_fill(mask, float("-inf")), label, reduction="sum")

    target_vectors = table[uniq]
    if chunk <= 0 or chunk >= len(h):
        return part(h, target_vectors, rows, label) / max(len(h), 1)
    total = sum(checkpoint(part, h[s : s + chunk], target_vectors, rows[s : s + chunk], label[s : s + chunk],
                           use_reentrant=False) for s in range(0, len(h), chunk))
    return torch.as_tensor(total) / len(h)


def train_epoch(model: SequentialRecommender, windows: np.ndarray, optimizer: torch.optim.Optimizer,
                rng: np.random.Generator, batch_size: int = 128, log_q: torch.Tensor | None = None,
                progress: Callable[[int], object] | None = None, max_batches: int | None = None,
                softmax_chunk: int = 0, negatives: int = 0, n_items: int = 0) -> tuple[float, float]:
    """One pass over the training windows in random order (or its first ``max_batches`` batches).

    ``softmax_chunk``: see ``in_batch_loss``'s ``chunk``. ``negatives``: per batch, that many items of the
    ``n_items`` drawn with probabilities ``exp(log_q)`` (uniformly without ``log_q``) join the in-batch negatives.

    Returns:
        (mean loss, seconds).
    """
    model.train()
    order = rng.permutation(len(windows))
    start, losses = time.perf_counter(), []
    for s in range(0, len(order), batch_size)[:max_batches]:
        w = torch.from_numpy(windows[order[s : s + batch_size]])
        extra = None
        if negatives:
            p = None if log_q is None else log_q.exp().double().numpy()
            extra = torch.from_numpy(rng.choice(n_items, negatives, p=None if p is None else p / p.sum()))
        loss = in_batch_loss(model, w[:, :-1], w[:, 1:], log_q, softmax_chunk, extra)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        if progress is not None:
            progress(1)
    return float(np.mean(losses)) if losses else 0.0, time.perf_counter() - start
