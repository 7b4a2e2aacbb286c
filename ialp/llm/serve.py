"""Start an OpenAI-compatible LLM server (vLLM or llama.cpp's) for the ``openai`` backend; ``ialp llm serve``."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from ialp.llm.base import LLMError

ENGINES = ("llamacpp", "vllm")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def serve_command(engine: str, model: str = "", host: str = "127.0.0.1", port: int = 8000,
                  extra: Sequence[str] = (), *, n_ctx: int = 2048, seed: int = 0) -> list[str]:
    """The command line that serves ``model`` with ``engine`` on ``host:port``.

    Args:
        engine: ``vllm`` (``vllm serve MODEL``) or ``llamacpp`` (``python -m llama_cpp.server``).
        model: A Hugging Face id or path for vLLM; a GGUF path for llama.cpp, where ``""`` or
            ``"gemma-3-270m-q4_k_m"`` means the packaged default (served under that name).
        host: Address to bind; keep the loopback default unless the server must be reachable from elsewhere.
        port: TCP port.
        extra: More arguments for the server, appended as given.
        n_ctx: Context length (llama.cpp; for vLLM pass ``--max-model-len`` in ``extra``).
        seed: Server-side sampling seed.
    """
    if engine == "vllm":
        if not model:
            raise ValueError("serve_command: engine 'vllm' needs a model (Hugging Face id or path)")
        exe = shutil.which("vllm") or "vllm"
        return [exe, "serve", model, "--host", host, "--port", str(port), "--seed", str(seed), *extra]
    if engine == "llamacpp":
        from ialp.llm.llamacpp_backend import DEFAULT_MODEL, DEFAULT_NAMES, resolve_model_path

        path = resolve_model_path(model)
        cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(path), "--host", host, "--port", str(port),
               "--n_ctx", str(n_ctx), "--seed", str(seed)]
        if model in DEFAULT_NAMES:
            # The GGUF has no chat template: tell the server gemma's turn markers; answer to the short name.
            cmd += ["--model_alias", DEFAULT_MODEL, "--chat_format", "gemma"]
        return cmd + list(extra)
    raise ValueError(f"unknown serving engine {engine!r}; allowed: {list(ENGINES)}")


def _models_ready(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/models", timeout=2.0) as resp:
            return bool(resp.status == 200 and "data" in json.loads(resp.read()))
    except (OSError, ValueError, urllib.error.URLError):
        return False


def _tail(path: Path, n: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def start_server(engine: str, model: str = "", host: str = "127.0.0.1", port: int | None = None,
                 extra: Sequence[str] = (), *, timeout_s: float = 300.0, n_ctx: int = 2048, seed: int = 0,
                 log_path: str | os.PathLike[str] | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """Start the server and wait until ``GET {base_url}/models`` answers.

    Args:
        engine, model, host, extra, n_ctx, seed: As for :func:`serve_command`.
        port: TCP port; a free one when None.
        timeout_s: How long to wait for the server to answer.
        log_path: Where the server's stdout/stderr go (a temporary file when None); ``proc.log_path`` holds it.

    Returns:
        The process and the base URL (``http://host:port/v1``) to put in ``LLMConfig.base_url``.

    Raises:
        LLMError: The server exited or did not answer in time (with the tail of its log).
    """
    port = free_port(host) if port is None else port
    cmd = serve_command(engine, model, host, port, extra, n_ctx=n_ctx, seed=seed)
    if log_path is None:
        fd, name = tempfile.mkstemp(prefix=f"ialp-{engine}-", suffix=".log")
        os.close(fd)
        log = Path(name)
    else:
        log = Path(log_path)
    with log.open("wb") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    proc.log_path = log  # type: ignore[attr-defined]
    base_url = f"http://{host}:{port}/v1"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LLMError(f"{engine} server exited with code {proc.returncode}; command: {' '.join(cmd)}\n"
                           f"--- log tail ({log}) ---\n{_tail(log)}")
        if _models_ready(base_url):
            return proc, base_url
        time.sleep(0.25)
    stop_server(proc)
    raise LLMError(f"{engine} server did not answer {base_url}/models within {timeout_s:.0f}s\n"
                   f"--- log tail ({log}) ---\n{_tail(log)}")


def stop_server(proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    """Terminate the server, then kill it if it does not exit within ``timeout_s``."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout_s)
