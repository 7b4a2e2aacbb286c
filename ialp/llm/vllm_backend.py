"""Offline vLLM (``vllm.LLM``) in this process: batched generation and prompt-logprob scoring on a GPU.

Needs ``pip install "ialp[vllm]"`` and a CUDA GPU. To share one model among processes, serve it instead
(``ialp llm serve --engine vllm``) and use the ``openai`` backend.
"""

from __future__ import annotations

import math
import time
from typing import Any

from ialp.llm.base import CachedBackend, Completion, LLMConfig, LLMError, ScoreResult

_INSTALL = ('the "vllm" backend needs vLLM and a CUDA GPU: pip install "ialp[vllm]" '
            '(or serve the model elsewhere and use the "openai" backend)')


class VLLMBackend(CachedBackend):
    """``vllm.LLM`` loaded on first use; the whole batch of misses goes to vLLM at once.

    Args:
        config: ``model`` is a Hugging Face id or local path; ``n_ctx`` becomes ``max_model_len``.
        **engine_kwargs: Passed to ``vllm.LLM`` (e.g. ``tensor_parallel_size``, ``gpu_memory_utilization``).
    """

    name = "vllm"
    supports_scoring = True

    def __init__(self, config: LLMConfig, **engine_kwargs: Any) -> None:
        try:
            import vllm  # noqa: F401
        except ImportError as exc:
            raise LLMError(_INSTALL) from exc
        super().__init__(config)
        self._engine_kwargs = engine_kwargs
        self._llm: Any = None

    def __repr__(self) -> str:
        return f"VLLMBackend(model={self.config.model!r})"

    @property
    def llm(self) -> Any:
        """The ``vllm.LLM`` engine (loaded now if needed)."""
        if self._llm is None:
            from vllm import LLM

            kwargs: dict[str, Any] = {"seed": self.config.seed, "max_model_len": self.config.n_ctx}
            kwargs.update(self._engine_kwargs)
            try:
                self._llm = LLM(model=self.config.model, **kwargs)
            except Exception as exc:
                raise LLMError(f"vllm could not load {self.config.model!r}: {type(exc).__name__}: {exc}") from exc
        return self._llm

    def api(self) -> str:
        """``chat`` or ``completions``: ``auto`` means chat when the tokenizer has a chat template."""
        if self.config.api != "auto":
            return self.config.api
        return "chat" if getattr(self.llm.get_tokenizer(), "chat_template", None) else "completions"

    def _complete_batch(self, prompts: list[str], params: dict[str, Any]) -> list[Completion]:
        from vllm import SamplingParams

        sp = SamplingParams(temperature=params["temperature"], max_tokens=params["max_tokens"], seed=params["seed"],
                            stop=params["stop"])
        t0 = time.perf_counter()
        try:
            if self.api() == "chat":
                outputs = self.llm.chat([[{"role": "user", "content": p}] for p in prompts], sp, use_tqdm=False)
            else:
                outputs = self.llm.generate(prompts, sp, use_tqdm=False)
        except Exception as exc:  # the engine failed for the whole batch: report it on every request
            err = f"vllm: {type(exc).__name__}: {exc}"
            self._record(latency_s=time.perf_counter() - t0)
            return [Completion(text=None, error=err) for _ in prompts]
        per_request = (time.perf_counter() - t0) / max(1, len(prompts))
        out = []
        for o in outputs:
            n_in = len(o.prompt_token_ids or [])
            n_out = len(o.outputs[0].token_ids) if o.outputs else 0
            self._record(latency_s=per_request, prompt_tokens=n_in, completion_tokens=n_out)
            if not o.outputs:
                out.append(Completion(text=None, error="vllm: no output"))
            else:
                out.append(Completion(text=o.outputs[0].text, prompt_tokens=n_in, completion_tokens=n_out))
        return out

    def _score_batch(self, pairs: list[tuple[str, str]]) -> list[ScoreResult]:
        from vllm import SamplingParams

        tokenizer = self.llm.get_tokenizer()
        sp = SamplingParams(temperature=0.0, max_tokens=1, prompt_logprobs=1, seed=self.config.seed)
        t0 = time.perf_counter()
        try:
            outputs = self.llm.generate([p + c for p, c in pairs], sp, use_tqdm=False)
        except Exception as exc:
            err = f"vllm: {type(exc).__name__}: {exc}"
            self._record(latency_s=time.perf_counter() - t0)
            return [ScoreResult(None, error=err) for _ in pairs]
        per_request = (time.perf_counter() - t0) / max(1, len(pairs))
        out = []
        for (prompt, _), o in zip(pairs, outputs, strict=True):
            full = list(o.prompt_token_ids)
            head = tokenizer.encode(prompt)
            k = 0
            for a, b in zip(head, full, strict=False):
                if a != b:
                    break
                k += 1
            self._record(latency_s=per_request, prompt_tokens=len(full))
            if k == 0 and len(full) > 0:
                out.append(ScoreResult(None, error="vllm: cannot score a continuation with no prompt token before it"))
                continue
            total = 0.0
            for pos in range(k, len(full)):
                entry = (o.prompt_logprobs or [])[pos] if o.prompt_logprobs and pos < len(o.prompt_logprobs) else None
                lp = entry.get(full[pos]) if entry else None
                if lp is None:
                    total = math.nan
                    break
                total += float(lp.logprob)
            if math.isnan(total):
                out.append(ScoreResult(None, error="vllm: missing prompt logprob for a continuation token"))
            else:
                out.append(ScoreResult(total, len(full) - k, len(full)))
        return out

    def close(self) -> None:
        """Drop the engine (GPU memory is freed when it is collected) and close the cache."""
        self._llm = None
        super().close()
