"""Fault injection over real HTTP: a scripted OpenAI-style server on loopback (stdlib ``http.server``).

The prompt names the script: ``"500,429,ok"`` means the first request for that prompt gets HTTP 500, the second 429,
the third a proper answer. Scripts are per prompt, so the order in which concurrent requests arrive does not matter.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from ialp.llm import make_backend
from ialp.llm.openai_backend import OpenAIBackend, continuation_logprob

TIMEOUT_S = 0.4


class ScriptedHandler(BaseHTTPRequestHandler):
    """Answers /v1/chat/completions and /v1/completions according to the script in the prompt."""

    seen: ClassVar[Counter[str]] = Counter()
    lock: ClassVar[threading.Lock] = threading.Lock()
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, content_type: str = "application/json",
              headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
            self.wfile.write(body)

    def do_GET(self) -> None:
        self._send(200, json.dumps({"object": "list", "data": [{"id": "scripted", "object": "model"}]}).encode())

    def do_POST(self) -> None:
        req = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        chat = self.path.endswith("/chat/completions")
        prompt = req["messages"][0]["content"] if chat else req["prompt"]
        script = prompt.split("|")[0].split(",")
        with self.lock:
            n = self.seen[prompt]
            self.seen[prompt] += 1
        step = script[min(n, len(script) - 1)]
        if step == "sleep":
            time.sleep(TIMEOUT_S * 2.5)
            step = "ok"
        if step == "500":
            self._send(500, b'{"error": {"message": "boom"}}')
        elif step == "429":
            self._send(429, b'{"error": {"message": "slow down"}}', headers={"Retry-After": "0"})
        elif step == "garbage":
            self._send(200, b"<html>502 Bad Gateway</html>", content_type="text/html")
        elif step == "truncated":
            self._send(200, b'{"id": "x", "object": "chat.completion", "choices": [{"index": 0, "mess')
        elif step == "400":
            self._send(400, b'{"error": {"message": "bad request: prompt too long"}}')
        elif step == "ok":
            self._send(200, json.dumps(self._answer(req, prompt, chat)).encode())
        else:
            raise AssertionError(f"unknown step {step!r}")

    @staticmethod
    def _answer(req: dict[str, Any], prompt: str, chat: bool) -> dict[str, Any]:
        usage = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
        if chat:
            return {"id": "c", "object": "chat.completion", "created": 0, "model": req["model"], "usage": usage,
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": f"answer to {prompt}"}}]}
        if req.get("echo"):  # one token per word (with its leading space), log-prob -1 each, first token None
            tokens = [*re.findall(r"\s*\S+", prompt), "!"]
            offsets = [0]
            for t in tokens[:-1]:
                offsets.append(offsets[-1] + len(t))
            logprobs = {"tokens": tokens, "token_logprobs": [None] + [-1.0] * (len(tokens) - 1),
                        "text_offset": offsets, "top_logprobs": None}
            return {"id": "e", "object": "text_completion", "created": 0, "model": req["model"], "usage": usage,
                    "choices": [{"index": 0, "text": prompt + "!", "finish_reason": "length", "logprobs": logprobs}]}
        return {"id": "t", "object": "text_completion", "created": 0, "model": req["model"], "usage": usage,
                "choices": [{"index": 0, "text": f"answer to {prompt}", "finish_reason": "stop"}]}


@pytest.fixture
def scripted_url() -> Iterator[str]:
    ScriptedHandler.seen = Counter()
    server = ThreadingHTTPServer(("127.0.0.1", 0), ScriptedHandler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


def backend_for(url: str, tmp_path: Any, **overrides: Any) -> OpenAIBackend:
    cfg = {"backend": "openai", "base_url": url, "model": "scripted", "timeout_s": TIMEOUT_S, "max_retries": 3,
           "backoff_s": 0.01, "concurrency": 4, "cache_dir": str(tmp_path)} | overrides
    backend = make_backend(cfg)
    assert isinstance(backend, OpenAIBackend)
    return backend


@pytest.mark.parametrize("api", ["chat", "completions"])
def test_transient_faults_retried_permanent_reported(scripted_url: str, tmp_path: Any, api: str) -> None:
    expect_ok = {"ok": 0, "sleep,ok": 1, "500,500,ok": 2, "429,ok": 1, "garbage,ok": 1, "truncated,ok": 1}
    expect_fail = {"400,ok": ("http 400", 0), "garbage,garbage,ok": ("malformed", 1),
                   "truncated,truncated,ok": ("malformed", 1), "500,500,500,500,ok": ("http 500", 3),
                   "sleep,sleep,sleep,sleep,ok": ("timeout", 3)}
    prompts = list(expect_ok) + list(expect_fail)
    backend = backend_for(scripted_url, tmp_path, api=api)
    t0 = time.perf_counter()
    answers = backend.complete(prompts)  # returns normally, one answer per prompt
    elapsed = time.perf_counter() - t0
    assert len(answers) == len(prompts)
    by_prompt = dict(zip(prompts, answers, strict=True))
    for prompt in expect_ok:
        assert by_prompt[prompt].error is None and by_prompt[prompt].text == f"answer to {prompt}", by_prompt[prompt]
    for prompt, (what, retries) in expect_fail.items():
        answer = by_prompt[prompt]
        assert answer.text is None, answer  # nothing fabricated
        assert answer.error is not None and what in answer.error, answer.error
        assert (f"after {retries} retr" in answer.error) == (retries > 0), answer.error
    stats = backend.stats
    assert stats.calls == len(prompts) and stats.failures == len(expect_fail) and stats.cache_hits == 0
    assert stats.retries == sum(expect_ok.values()) + sum(r for _, r in expect_fail.values())
    assert stats.prompt_tokens == 5 * len(expect_ok)
    assert len(stats.latencies_s) == len(prompts)
    assert elapsed < 30

    # Failures are not cached: asking again goes to the server (whose scripts now answer); successes are cached.
    again = backend.complete(prompts)
    assert all(a.error is None for a in again)
    assert backend.stats.calls == len(prompts) + len(expect_fail)
    assert backend.stats.cache_hits == len(expect_ok)
    backend.close()


def test_retry_after_and_backoff_are_waited(scripted_url: str, tmp_path: Any) -> None:
    backend = backend_for(scripted_url, tmp_path, backoff_s=0.2, max_retries=2, concurrency=1)
    t0 = time.perf_counter()
    [answer] = backend.complete(["500,500,ok"])
    waited = time.perf_counter() - t0
    assert answer.text == "answer to 500,500,ok"
    assert waited >= 0.2 + 0.4  # backoff_s * 2**0 + backoff_s * 2**1 (plus jitter)
    t0 = time.perf_counter()
    assert backend.complete(["429,429,ok"])[0].error is None
    assert time.perf_counter() - t0 < 0.5  # Retry-After: 0 overrides the backoff


def test_score_faults(scripted_url: str, tmp_path: Any) -> None:
    backend = backend_for(scripted_url, tmp_path)
    scores = backend.score(["ok|the cat", "500,ok|the cat", "400|the cat", "garbage,garbage|x"],
                           [[" sat down", " ran"], [" sat"], [" sat"], [" y"]])
    assert scores[0] == [-2.0, -1.0]
    assert scores[1] == [-1.0]
    assert scores[2] is None and scores[3] is None
    assert backend.stats.failures == 2 and backend.stats.retries >= 2
    detailed = backend.score_detailed([("400|the cat", " sat")])
    assert detailed[0].logprob is None and detailed[0].error is not None and "http 400" in detailed[0].error
    # A scoring request that keeps timing out says why echo scoring can be slow and what to change.
    [slow] = backend_for(scripted_url, tmp_path, max_retries=1).score_detailed([("sleep,sleep,ok|the cat", " sat")])
    assert slow.logprob is None and slow.error is not None
    assert slow.error.startswith("timeout") and "after 1 retry" in slow.error and "llm.timeout_s (0.4 s)" in slow.error


def test_unreachable_server_fails_every_request_without_raising(tmp_path: Any) -> None:
    backend = backend_for("http://127.0.0.1:9/v1", tmp_path, max_retries=1)  # port 9 (discard): refused
    answers = backend.complete(["a", "b"])
    assert [a.text for a in answers] == [None, None]
    assert all(a.error is not None and "connection error" in a.error for a in answers)
    assert backend.stats.failures == 2 and backend.stats.retries == 2


def test_continuation_boundary() -> None:
    tokens, lps, offs = ["The", " cap", "ital", " is", " Par", "is", "!"], [None, -1, -2, -3, -4, -5, -9], [
        0, 3, 7, 11, 14, 18, 20]
    assert continuation_logprob("The capital is", " Paris", tokens, lps, offs) == (-9.0, 2)
    assert continuation_logprob("The capital is P", "aris", tokens, lps, offs) == (-9.0, 2)  # straddling token counts
    assert continuation_logprob("The capital is Par", "is", tokens, lps, offs) == (-5.0, 1)
