"""``CandidateGenerator``: a trained sequential recommender that proposes the top-K items to the environments."""

from __future__ import annotations

import contextlib
import copy
import ctypes
import dataclasses
import json
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ialp.candidates.cache import HiddenStateCache
from ialp.candidates.config import CandidatesConfig
from ialp.candidates.data import item_texts
from ialp.candidates.encoders import Encoder, FeatureFileEncoder, ImageEncoder, TextEncoder, media_files, select_taps
from ialp.candidates.sequential import (
    IDItemTower,
    LeaveOneOut,
    SASRec,
    SequentialRecommender,
    SideItemTower,
    TextFinetuneTower,
    item_popularity,
    leave_one_out,
    pad_left,
    popularity_scores,
    rank_metrics,
    train_epoch,
    training_windows,
)
from ialp.candidates.tracker import SessionCandidates
from ialp.data import ItemCatalog, LoggedData
from ialp.storage import is_current, mark_current, stage_key

__all__ = ["FORMAT", "SERVING", "CandidateGenerator", "FitResult", "PeakMemory", "TensorPeak", "TopOnePolicy",
           "build_taps", "fit_or_load", "fit_recommender", "measure_tensor_peak"]


class PeakMemory:
    """Peak resident-memory growth of this process inside a ``with`` block, in MiB (sampled every 2 ms).

    Freed heap memory is first returned to the OS (``malloc_trim``) so that the baseline is not padded by
    earlier work. This counts what a block makes resident (tensors, activations, memory-mapped cache pages).
    """

    def __init__(self, interval: float = 0.002) -> None:
        self.interval, self.peak_mb = interval, 0.0
        self._stop = threading.Event()
        self._page = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

    def _rss(self) -> int:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * self._page
        except OSError:  # pragma: no cover - not Linux
            import resource

            return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024

    def _watch(self) -> None:
        peak = self._base
        while not self._stop.is_set():
            peak = max(peak, self._rss())
            time.sleep(self.interval)
        self.peak_mb = (max(peak, self._rss()) - self._base) / 2**20

    def __enter__(self) -> PeakMemory:
        with contextlib.suppress(OSError):  # not glibc: no trim
            ctypes.CDLL("libc.so.6").malloc_trim(0)
        self._base = self._rss()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _text_encoder(name: str, progress: bool) -> Encoder:
    if name in ("all-MiniLM-L6-v2", "minilm"):
        return TextEncoder.minilm(progress=progress)
    return TextEncoder.from_pretrained(name, progress=progress)


def build_taps(catalog: ItemCatalog, cfg: CandidatesConfig, encoders: dict[str, Encoder] | None = None,
               texts: Sequence[str] | None = None) -> dict[str, list[np.ndarray]]:
    """Cached tapped-layer states of the whole catalogue per modality (encoding on a cache miss).

    Args:
        catalog: Items.
        cfg: Chooses modalities, text encoder, media files and layer grouping.
        encoders: Encoders to use instead of the configured ones (e.g. a tiny one in tests).
        texts: Item texts (default ``catalog.descriptions``; see ``ialp.candidates.data.item_texts``).
    """
    cache = HiddenStateCache(cfg.cache_dir or None)
    out: dict[str, list[np.ndarray]] = {}
    for modality in cfg.modalities:
        encoder = (encoders or {}).get(modality)
        inputs: Sequence[Any]
        if modality == "text":
            encoder = encoder or _text_encoder(cfg.text_encoder, cfg.progress)
            inputs = list(catalog.descriptions if texts is None else texts)
        elif Path(cfg.media[modality]).is_dir():  # one file per item, named by item id
            inputs = media_files(cfg.media[modality], list(catalog.item_ids), modality)
            if encoder is None:
                encoder = ImageEncoder.lite0(image_size=cfg.image_size) if modality == "image" else \
                    FeatureFileEncoder(modality)
        else:  # one feature table (N, [L,] D) for all items
            encoder = encoder or FeatureFileEncoder(modality, cfg.media[modality])
            inputs = list(range(len(catalog)))
        if not encoder.n_layers:
            encoder.encode(inputs[:1])
        taps = select_taps(encoder.n_layers, cfg.layer_group)
        out[modality] = cache.get(encoder, inputs, taps)
    return out


def trainable_parameters(module: torch.nn.Module) -> int:
    """Number of parameters that receive gradients."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


class FitResult:
    """What training produced: the model, the split, metrics and efficiency figures."""

    def __init__(self, model: SequentialRecommender | None, split: LeaveOneOut, popularity: np.ndarray,
                 metrics: dict[str, Any]) -> None:
        self.model, self.split, self.popularity, self.metrics = model, split, popularity, metrics


def evaluate(model: SequentialRecommender | None, cases: Sequence[tuple[np.ndarray, int]], popularity: np.ndarray,
             max_len: int, k: int = 10) -> dict[str, float]:
    """HR@k and NDCG@k of full-catalogue ranking with each user's history masked."""
    seqs = [s for s, _ in cases]
    targets = np.array([t for _, t in cases], dtype=np.int64)
    if model is None:
        scores = popularity_scores(popularity, len(cases))
    else:
        table = model.item_table(len(popularity))
        scores = (model.user_vectors(pad_left(seqs, max_len), table) @ table.T).numpy()
    return rank_metrics(scores, targets, exclude=seqs, k=k)


def build_model(cfg: CandidatesConfig, n_items: int, taps: dict[str, list[np.ndarray]] | None,
                texts: Sequence[str] | None = None, text_encoder: TextEncoder | None = None) -> SequentialRecommender:
    """The configured recommender (``sidesan`` needs ``taps``; ``finetune-text`` the item ``texts``).

    ``finetune-text`` trains a copy of ``text_encoder``'s backbone (default: the configured ``text_encoder``);
    the encoder passed in stays frozen.
    """
    torch.manual_seed(cfg.seed)
    tower: torch.nn.Module
    if cfg.model == "finetune-text":
        if texts is None or len(texts) != n_items:
            raise ValueError("the finetune-text model needs one text per item")
        enc = text_encoder or _text_encoder(cfg.text_encoder, False)
        if not isinstance(enc, TextEncoder):
            raise TypeError(f"finetune-text needs a TextEncoder, got {type(enc).__name__}")
        ids = enc.tokenizer([str(t) for t in texts], truncation=True, max_length=enc.max_length)["input_ids"]
        pad_id = int(getattr(enc.tokenizer, "pad_token_id", None) or 0)
        tower = TextFinetuneTower(copy.deepcopy(enc.model).train(), ids, cfg.width, pad_id, cfg.text_chunk,
                                  cfg.text_checkpoint)
    elif cfg.model == "sidesan":
        if taps is None:
            raise ValueError("the sidesan model needs the cached encoder states (taps)")
        tower = SideItemTower(taps, cfg.width, chunk=cfg.side_chunk, side_width=cfg.side_width or None,
                              bottleneck=cfg.bottleneck, fusion=cfg.fusion, dropout=cfg.dropout, design=cfg.design,
                              gates=cfg.gates)
    else:
        tower = IDItemTower(n_items, cfg.width)
    encoder = SASRec(cfg.width, cfg.max_len, cfg.n_layers, cfg.n_heads, cfg.dropout)
    return SequentialRecommender(tower, encoder, cfg.temperature)


def _optimizer(model: SequentialRecommender, cfg: CandidatesConfig) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters; a fine-tuned text encoder's own weights at ``cfg.encoder_lr``."""
    tower: Any = model.tower
    backbone = {id(p) for p in tower.backbone.parameters()} if isinstance(tower, TextFinetuneTower) else set()
    groups: list[dict[str, Any]] = [
        {"params": [p for p in model.parameters() if p.requires_grad and id(p) not in backbone]}]
    if backbone:
        groups.append({"params": [p for p in model.parameters() if id(p) in backbone], "lr": cfg.encoder_lr})
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


class TensorPeak:
    """Peak tensor memory held inside a ``with`` block, in MiB, from the torch profiler's allocation records.

    Every allocation and free of the CPU allocator is attributed to the op that made it; summed in time order they
    give the live tensor bytes, whose maximum is the peak (tensors alive before the block are not counted).
    Unlike ``PeakMemory`` (process resident-set growth) this sees tensors only: activations, gradients, optimizer
    state, logits.
    """

    peak_mb = 0.0

    def __enter__(self) -> TensorPeak:
        from torch.profiler import ProfilerActivity, profile

        self._prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
        self._prof.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._prof.__exit__(None, None, None)
        events = sorted(self._prof.events(), key=lambda e: e.time_range.start)
        live = np.cumsum([e.self_cpu_memory_usage for e in events]) if events else np.zeros(1)
        self.peak_mb = max(0.0, float(live.max())) / 2**20


def measure_tensor_peak(model: SequentialRecommender, windows: np.ndarray, cfg: CandidatesConfig,
                        log_q: torch.Tensor | None, n_items: int) -> float:
    """``TensorPeak`` of ``cfg.tensor_probe`` training batches (forward, backward, optimizer step) run on a copy of
    ``model`` and of its optimizer, so that the profiler slows no timed batch and changes no trained weight."""
    probe = copy.deepcopy(model)
    optimizer = _optimizer(probe, cfg)
    with TensorPeak() as peak:
        train_epoch(probe, windows, optimizer, np.random.default_rng(cfg.seed), cfg.batch_size, log_q,
                    max_batches=cfg.tensor_probe, softmax_chunk=cfg.softmax_chunk, negatives=cfg.negatives,
                    n_items=n_items)
    return peak.peak_mb


def fit_recommender(histories: Sequence[np.ndarray], n_items: int, cfg: CandidatesConfig,
                    taps: dict[str, list[np.ndarray]] | None = None, texts: Sequence[str] | None = None,
                    text_encoder: TextEncoder | None = None) -> FitResult:
    """Train on a leave-one-out split and report test HR@10/NDCG@10 and efficiency figures.

    Metrics: ``hr@10``, ``ndcg@10`` (test), ``valid_hr@10``, ``valid_ndcg@10``, ``trainable_params``,
    ``peak_mem_mb`` (peak resident-memory growth while training, validation passes included), ``tensor_peak_mb``
    (peak tensor memory of ``cfg.tensor_probe`` training batches, ``TensorPeak``; ``None`` when 0), ``s_per_epoch``
    (training batches only), ``epochs_trained``, ``batches_trained``, ``best_epoch``, ``valid_ndcg_curve``.

    With ``cfg.patience``, validation NDCG@10 is checked after every epoch, training stops once it has not improved
    for ``patience`` epochs, and the best epoch's weights are kept. With ``cfg.max_steps`` cutting training short,
    ``s_per_epoch`` is the measured time per batch times the batches of an epoch (``s_per_epoch_extrapolated`` is
    True) and the four HR/NDCG figures are ``None``: a partly trained model is not scored.
    """
    from tqdm.auto import tqdm

    split = leave_one_out(histories, n_items)
    popularity = item_popularity(split.train, n_items)
    metrics: dict[str, Any]
    if cfg.model == "popularity":
        metrics = dict(evaluate(None, split.test, popularity, cfg.max_len))
        valid = evaluate(None, split.valid, popularity, cfg.max_len)
        metrics.update({f"valid_{k}": v for k, v in valid.items()})
        metrics.update(trainable_params=0, peak_mem_mb=0.0, tensor_peak_mb=0.0, s_per_epoch=0.0)
        return FitResult(None, split, popularity, metrics)
    model = build_model(cfg, n_items, taps, texts, text_encoder)
    windows = training_windows(split.train, cfg.max_len)
    rng = np.random.default_rng(cfg.seed)
    log_q = None
    if cfg.pop_correction:
        log_q = torch.from_numpy(np.log((popularity + 1.0) / (popularity + 1.0).sum())).to(torch.float32)
    optimizer = _optimizer(model, cfg)
    tensor_peak = measure_tensor_peak(model, windows, cfg, log_q, n_items) if cfg.tensor_probe else None
    steps = -(-len(windows) // cfg.batch_size)
    budget = cfg.max_steps if 0 < cfg.max_steps < cfg.epochs * steps else cfg.epochs * steps
    seconds, done, loss = 0.0, 0, float("nan")
    best: tuple[float, int, dict[str, torch.Tensor]] | None = None  # (valid NDCG@10, epoch, state) when early stopping
    curve: list[float] = []
    with PeakMemory() as mem, tqdm(total=budget, desc=f"train {cfg.model}", unit="step",
                                   disable=not cfg.progress) as bar:
        while done < budget:
            n = min(steps, budget - done)
            loss, sec = train_epoch(model, windows, optimizer, rng, cfg.batch_size, log_q, bar.update, n,
                                    cfg.softmax_chunk, cfg.negatives, n_items)
            seconds, done = seconds + sec, done + n
            bar.set_postfix(loss=f"{loss:.3f}")
            if cfg.patience and n == steps:
                epoch, ndcg = done // steps, evaluate(model, split.valid, popularity, cfg.max_len)["ndcg@10"]
                curve.append(ndcg)
                if best is None or ndcg > best[0]:
                    best = (ndcg, epoch, copy.deepcopy(model.state_dict()))
                bar.set_postfix(loss=f"{loss:.3f}", valid_ndcg=f"{ndcg:.4f}", best_epoch=best[1])
                if epoch - best[1] >= cfg.patience:
                    break
    if best is not None:
        model.load_state_dict(best[2])
    if budget < cfg.epochs * steps:  # cut short by max_steps: measured, not scored
        metrics = {"hr@10": None, "ndcg@10": None, "valid_hr@10": None, "valid_ndcg@10": None}
    else:
        metrics = dict(evaluate(model, split.test, popularity, cfg.max_len))
        valid = evaluate(model, split.valid, popularity, cfg.max_len)
        metrics.update({f"valid_{k}": v for k, v in valid.items()})
    metrics.update(trainable_params=trainable_parameters(model), peak_mem_mb=mem.peak_mb, tensor_peak_mb=tensor_peak,
                   s_per_epoch=seconds / done * steps if done else 0.0,
                   s_per_epoch_extrapolated=bool(steps) and done % steps != 0,
                   epochs_trained=done / steps if steps else 0.0, batches_trained=done, final_loss=loss,
                   best_epoch=best[1] if best is not None else None, valid_ndcg_curve=curve)
    return FitResult(model, split, popularity, metrics)


FORMAT = "ialp.CandidateGenerator/2"
"""Saved-file format; 2: positions count from the sequence's first item (1: from its end)."""

SERVING = ("refresh", "pool", "progress", "cache_dir")
"""Config fields that do not change a trained generator (how it serves, not what it learned)."""


class CandidateGenerator:
    """Proposes the top-K items for a history: one matrix product and a top-k over the cached item table.

    Implements ``ialp.envs.CandidateProvider``: an environment built with ``candidates=generator`` gets
    ``Discrete(k)`` actions over the proposals, sorted best first, so action 0 is the recommender's own top-1
    (``TopOnePolicy`` plays it as a baseline). Items already in the history are never proposed. With
    ``config.refresh`` >= 1 an environment proposes through ``tracker`` (``SessionCandidates``: a key/value-cached
    user state per session and a pool refreshed every ``refresh`` steps) instead of ``propose`` at every step.

    Holds only CPU state (numpy item table, a small torch user encoder), so it pickles for ``SubprocVecEnv``.

    Args:
        k: Candidates per step.
        config: Training configuration (``fit`` reads it; ``k`` defaults to ``config.k``).
    """

    def __init__(self, k: int | None = None, config: CandidatesConfig | None = None) -> None:
        self.config = config or CandidatesConfig()
        self.k = int(k if k is not None else self.config.k)
        self.item_table: np.ndarray | None = None
        self.encoder: SASRec | None = None
        self.log_popularity = np.zeros(0, dtype=np.float32)
        self.metrics: dict[str, Any] = {}

    @property
    def n_items(self) -> int:
        """Catalogue size."""
        return len(self.log_popularity)

    def fit(self, data: LoggedData | None = None, histories: Sequence[np.ndarray] | None = None,
            n_items: int | None = None, encoders: dict[str, Encoder] | None = None) -> CandidateGenerator:
        """Train the configured model on ``data`` (or on raw ``histories`` over ``n_items``; ID models only).

        Test HR@10/NDCG@10 on the leave-one-out split land in ``metrics``; the final generator is the one
        trained on the split's training part.
        """
        cfg = self.config
        if data is not None:
            histories, n_items = data.log.user_histories(), data.log.n_items
        if histories is None or n_items is None:
            raise ValueError("fit needs data, or histories and n_items")
        taps, texts, text_encoder = None, None, None
        if cfg.model in ("sidesan", "finetune-text") and data is None:
            raise ValueError(f"the {cfg.model} model needs data with an item catalogue")
        if cfg.model == "sidesan":
            assert data is not None
            taps = build_taps(data.catalog, cfg, encoders, item_texts(data, cfg.data_dir))
        elif cfg.model == "finetune-text":
            assert data is not None
            texts, enc = item_texts(data, cfg.data_dir), (encoders or {}).get("text")
            text_encoder = enc if isinstance(enc, TextEncoder) else None
        result = fit_recommender(histories, n_items, cfg, taps, texts, text_encoder)
        self.metrics = result.metrics
        self.log_popularity = np.log1p(result.popularity).astype(np.float32)
        if result.model is not None:
            self._set_model(result.model, n_items)
        return self

    def _set_model(self, model: SequentialRecommender, n_items: int) -> None:
        self.item_table = model.item_table(n_items).numpy().astype(np.float32)
        self.encoder = model.encoder.eval()
        self.temperature = model.temperature

    def user_vectors(self, history: np.ndarray) -> np.ndarray:
        """Normalised user vectors (B, d) of histories (B, H; -1 = empty, oldest first)."""
        if self.encoder is None or self.item_table is None:
            raise RuntimeError("the generator has no trained model (fit or load one, or use model=popularity)")
        hist = np.asarray(history, dtype=np.int64)
        seqs = [row[row >= 0] for row in hist]
        # Positions are right-aligned and empty keys are masked, so trimming the common left padding changes nothing
        padded = pad_left(seqs, max(1, min(self.encoder.max_len, max((len(s) for s in seqs), default=1))))
        with torch.no_grad():
            return self.encoder.user_states(torch.from_numpy(padded), torch.from_numpy(self.item_table))[:, -1].numpy()

    def scores(self, history: np.ndarray) -> np.ndarray:
        """Scores of every item, (B, n_items); empty histories get the popularity prior."""
        hist = np.atleast_2d(np.asarray(history, dtype=np.int64))
        if self.encoder is None:
            return np.broadcast_to(self.log_popularity, (len(hist), self.n_items)).copy()
        assert self.item_table is not None
        out = self.user_vectors(hist) @ self.item_table.T
        empty = ~(hist >= 0).any(axis=1)
        out[empty] = self.log_popularity
        return out

    def candidates(self, history: np.ndarray, k: int | None = None,
                   exclude: Sequence[Sequence[int]] | np.ndarray | None = None) -> np.ndarray:
        """Top-``k`` items per history, best first, int64 (B, k); history items and ``exclude`` are never proposed.

        Args:
            history: (B, H) item indices, oldest first, -1 where empty.
            k: Candidates (default ``self.k``).
            exclude: Extra items to leave out: a boolean (B, n_items) mask, or per row a list of items.
        """
        hist = np.atleast_2d(np.asarray(history, dtype=np.int64))
        k = self.k if k is None else int(k)
        scores = self.scores(hist)
        rows, cols = np.nonzero(hist >= 0)
        scores[rows, hist[rows, cols]] = -np.inf
        if exclude is not None:
            if isinstance(exclude, np.ndarray) and exclude.dtype == bool:
                scores[exclude] = -np.inf
            else:
                for i, items in enumerate(exclude):
                    scores[i, np.asarray(items, dtype=np.int64)] = -np.inf
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        return np.take_along_axis(top, order, axis=1).astype(np.int64)

    def tracker(self, model: Any, n: int) -> SessionCandidates | None:
        """Per-session candidates for ``n`` sessions of ``model`` when ``config.refresh`` >= 1 (see
        ``SessionCandidates``); ``None`` otherwise (the environment then calls ``propose`` at every step)."""
        self._check(model)
        if self.config.refresh < 1 or self.encoder is None or self.item_table is None:
            return None
        pool = min(self.config.pool or 2 * self.k, self.n_items)
        return SessionCandidates(self.encoder, self.item_table, self.log_popularity, n, self.k, pool,
                                 self.config.refresh)

    def _check(self, model: Any) -> None:
        if model.n_items != self.n_items:
            raise ValueError(f"the generator covers {self.n_items} items but the environment has {model.n_items}")

    def propose(self, model: Any, history: np.ndarray, keys: np.ndarray) -> np.ndarray:
        """``CandidateProvider.propose``: the top ``k`` for each environment history (``keys`` unused)."""
        self._check(model)
        return self.candidates(history, self.k)

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the generator to one ``torch.save`` file (tensors and plain data only)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state: dict[str, Any] = {
            "format": FORMAT, "k": self.k, "config": self.config.to_dict(),
            "metrics": dict(self.metrics), "log_popularity": torch.from_numpy(self.log_popularity),
            "item_table": None if self.item_table is None else torch.from_numpy(self.item_table),
            "encoder": None if self.encoder is None else self.encoder.state_dict(),
        }
        torch.save(state, path)
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CandidateGenerator:
        """Read a generator written by ``save``."""
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
        if state.get("format") != FORMAT:
            raise ValueError(f"{path}: not a saved CandidateGenerator of format {FORMAT} (got {state.get('format')!r}; "
                             "format 1 counted positions from the window's end: retrain it)")
        gen = cls(state["k"], CandidatesConfig(**state["config"]))
        gen.metrics = dict(state["metrics"])
        gen.log_popularity = state["log_popularity"].numpy()
        if state["encoder"] is not None:
            cfg = gen.config
            gen.encoder = SASRec(cfg.width, cfg.max_len, cfg.n_layers, cfg.n_heads, cfg.dropout)
            gen.encoder.load_state_dict(state["encoder"])
            gen.encoder.eval()
            gen.item_table = state["item_table"].numpy()
        return gen


def fit_or_load(cfg: CandidatesConfig, data: LoggedData, folder: str | os.PathLike[str] | None = None, key: str = "",
                encoders: dict[str, Encoder] | None = None) -> CandidateGenerator:
    """The generator stored in ``folder`` when it was trained under ``key``, else one trained on ``data``.

    A trained generator is written to ``folder`` as ``generator.pt`` (marked current for ``key`` and the file
    format, ``ialp.storage``), ``metrics.json`` (its test HR@10/NDCG@10 and efficiency figures) and
    ``config.json``. A stored generator serves with ``cfg``'s serving fields (``SERVING``: refresh, pool), which
    ``key`` need not cover.
    """
    out = None if folder is None else Path(folder)
    key = stage_key(FORMAT, key)
    if out is not None and is_current(out / "generator.pt", key):
        gen = CandidateGenerator.load(out / "generator.pt")
        gen.config = dataclasses.replace(gen.config, **{f: getattr(cfg, f) for f in SERVING})
        return gen
    gen = CandidateGenerator(config=cfg).fit(data, encoders=encoders)
    if out is not None:
        gen.save(out / "generator.pt")
        (out / "metrics.json").write_text(json.dumps(gen.metrics, indent=2))
        (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
        mark_current(out / "generator.pt", key)
    return gen


class TopOnePolicy:
    """Baseline policy for an environment with a ``CandidateGenerator``: always the generator's top-1 (action 0)."""

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None,
                deterministic: bool = True) -> tuple[np.ndarray, None]:
        """SB3-style ``predict``: zeros, one per observation in the batch."""
        cands = observation["candidates"] if isinstance(observation, dict) else np.asarray(observation)
        batch = cands.shape[0] if np.ndim(cands) == 3 else 1
        return np.zeros(batch, dtype=np.int64), None
