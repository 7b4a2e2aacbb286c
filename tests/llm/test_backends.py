"""The same calls against the embedded llama.cpp model and the real llama.cpp server (OpenAI-compatible API)."""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import pytest
from pydantic import ValidationError

from ialp.llm import LLMConfig, LLMError, make_backend, serve_command
from ialp.llm.llamacpp_backend import DEFAULT_MODEL, LlamaCppBackend
from ialp.schema import parse

QUESTION = "Question: What is the capital of France?\nAnswer:"
SECRET = "sk-test-4f1c2a9e7b-must-not-leak"


def config(kind: str, url: str, tmp_path: Path, **overrides: object) -> LLMConfig:
    """The only thing that differs between backends: the config."""
    fields: dict[str, object] = {"cache_dir": str(tmp_path / "cache"), "max_tokens": 8}
    if kind == "llamacpp":
        fields |= {"backend": "llamacpp"}
    else:
        fields |= {"backend": "openai", "base_url": url, "model": DEFAULT_MODEL, "api_key_env": "IALP_TEST_KEY"}
        if kind == "openai-completions":
            fields["api"] = "completions"
    fields |= overrides
    return parse(LLMConfig, fields)


KINDS = ["llamacpp", "openai", "openai-completions"]


@pytest.fixture
def url(request: pytest.FixtureRequest, embedded_model: LlamaCppBackend) -> str:
    """The server's base URL, started only for the tests that need it."""
    kind = request.node.callspec.params.get("kind", "openai")
    return "" if kind == "llamacpp" else str(request.getfixturevalue("llama_server"))


@pytest.mark.parametrize("kind", KINDS)
def test_complete_same_call_any_backend(kind: str, url: str, tmp_path: Path) -> None:
    with make_backend(config(kind, url, tmp_path, max_tokens=4)) as backend:
        [answer] = backend.complete([QUESTION], temperature=0.0, stop=["\n"])
        assert answer.error is None and answer.text, answer
        assert answer.text.strip(), answer
        if kind != "openai":  # raw completion of a base model answers; the chat endpoint may just echo the turn
            assert "Paris" in answer.text
        assert backend.stats.calls == 1 and backend.stats.failures == 0
        assert backend.stats.prompt_tokens > 0 and backend.stats.completion_tokens > 0


@pytest.mark.parametrize("kind", ["llamacpp", "openai"])
def test_score_ranks_likely_continuation_first(kind: str, url: str, tmp_path: Path,
                                               embedded_model: LlamaCppBackend) -> None:
    args = (["The capital of France is"], [[" Paris", " banana"]])
    with make_backend(config(kind, url, tmp_path)) as backend:
        assert backend.supports_scoring
        [scores] = backend.score(*args)
        assert scores is not None
        paris, banana = scores
        assert all(math.isfinite(s) and s < 0 for s in scores)
        assert paris > banana + 3
    # the server's echo+logprobs and the embedded evaluation agree on the same weights
    assert scores == pytest.approx(embedded_model.score(*args)[0], abs=1e-3)


def test_embedded_score_independent_of_call_order(embedded_model: LlamaCppBackend, tmp_path: Path) -> None:
    backend = make_backend(config("llamacpp", "", tmp_path, cache=False))
    prompt = "My favourite fruit is the"
    first = backend.score([prompt], [[" apple", " pear"]])
    backend.score(["Something else entirely:"], [[" x"]])  # moves the KV cache elsewhere
    again = backend.score([prompt], [[" pear", " apple"]])
    assert first[0] is not None and again[0] is not None
    assert first[0] == pytest.approx(list(reversed(again[0])), abs=1e-5)
    # A token that merges the prompt's trailing space with the continuation belongs to the continuation.
    assert backend.score([prompt + " "], [["apple"]])[0] == pytest.approx([first[0][0]], abs=1e-5)


@pytest.mark.parametrize("kind", ["llamacpp", "openai-completions"])
def test_deterministic_at_temperature_zero(kind: str, url: str, tmp_path: Path) -> None:
    prompt = "Here is a list of fruits: apple, banana,"
    texts = []
    for _ in range(2):
        with make_backend(config(kind, url, tmp_path, cache=False)) as backend:
            [answer] = backend.complete([prompt], temperature=0.0)
            assert backend.stats.calls == 1 and backend.stats.cache_hits == 0
            texts.append(answer.text)
    assert texts[0] and texts[0] == texts[1]


@pytest.mark.parametrize("kind", ["llamacpp", "openai-completions"])
def test_second_call_served_from_cache(kind: str, url: str, tmp_path: Path) -> None:
    with make_backend(config(kind, url, tmp_path)) as backend:
        first = backend.complete([QUESTION, QUESTION], stop=["\n"])  # the duplicate is answered once
        assert backend.stats.calls == 1 and backend.stats.cache_hits == 1
        second = backend.complete([QUESTION], stop=["\n"])
        assert backend.stats.calls == 1 and backend.stats.cache_hits == 2
        assert second[0].cached and second[0].text == first[0].text
        assert len(backend.stats.latencies_s) == 1
    with make_backend(config(kind, url, tmp_path)) as reopened:  # a rerun: nothing goes to the model
        assert reopened.complete([QUESTION], stop=["\n"])[0].text == first[0].text
        assert reopened.stats.calls == 0 and reopened.stats.cache_hits == 1
        reopened.complete([QUESTION], stop=["\n", "."])  # other sampling params: a new request
        assert reopened.stats.calls == 1


def test_api_key_never_leaks(llama_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IALP_TEST_KEY", SECRET)
    cfg = config("openai-completions", llama_server, tmp_path)
    with make_backend(cfg) as backend:
        backend.complete(["Hello"], max_tokens=2)
        for text in (repr(backend), str(backend), repr(backend.stats), str(backend.stats.as_dict()), repr(cfg),
                     str(cfg.to_dict())):
            assert SECRET not in text
    db = tmp_path / "cache" / "cache.sqlite"
    rows = sqlite3.connect(db).execute("SELECT key || value FROM entries").fetchall()
    assert rows and not any(SECRET in r[0] for r in rows)


def test_make_backend_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown llm backend 'gpt5'.*llamacpp.*openai.*vllm"):
        make_backend({"backend": "gpt5"})
    with pytest.raises(ValueError, match=r"llm: unknown field\(s\) \['temprature'\]"):
        make_backend({"backend": "llamacpp", "temprature": 0.0})
    with pytest.raises(ValueError, match=r"llm\.api: got 'rpc'; Input should be 'auto', 'chat' or 'completions'"):
        make_backend({"api": "rpc"})
    with pytest.raises(ValidationError, match=r"api"):
        LLMConfig(api="rpc")  # type: ignore[arg-type]
    with pytest.raises(LLMError, match="neither"):
        make_backend({"backend": "llamacpp", "model": str(tmp_path / "missing.gguf"), "cache_dir": str(tmp_path)}
                     ).complete(["x"])


def test_vllm_without_vllm_names_the_extra(tmp_path: Path) -> None:
    pytest.importorskip("ialp.llm.vllm_backend")
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(LLMError, match=r'GPU: pip install "ialp\[vllm\]"'):
            make_backend({"backend": "vllm", "model": "Qwen/Qwen2.5-0.5B-Instruct", "cache_dir": str(tmp_path)})
    else:
        pytest.skip("vllm is installed")


def test_serve_command() -> None:
    vllm_cmd = serve_command("vllm", "Qwen/Qwen2.5-0.5B-Instruct", port=8001, extra=["--max-model-len", "4096"])
    assert vllm_cmd[1:] == ["serve", "Qwen/Qwen2.5-0.5B-Instruct", "--host", "127.0.0.1", "--port", "8001",
                            "--seed", "0", "--max-model-len", "4096"]
    cmd = serve_command("llamacpp", "", port=8002)
    assert cmd[1:3] == ["-m", "llama_cpp.server"]
    assert cmd[cmd.index("--model") + 1].endswith(".gguf") and cmd[cmd.index("--port") + 1] == "8002"
    with pytest.raises(ValueError, match="unknown serving engine"):
        serve_command("tgi", "x")


@pytest.mark.gpu
def test_vllm_offline_complete_and_score(tmp_path: Path) -> None:
    pytest.importorskip("vllm")
    cfg = LLMConfig(backend="vllm", model="Qwen/Qwen2.5-0.5B-Instruct", cache_dir=str(tmp_path), max_tokens=8)
    with make_backend(cfg) as backend:
        [answer] = backend.complete(["What is the capital of France? Answer in one word."])
        assert answer.text and "Paris" in answer.text
        [[paris, banana]] = backend.score(["The capital of France is"], [[" Paris", " banana"]])  # type: ignore[misc]
        assert math.isfinite(paris) and paris > banana
