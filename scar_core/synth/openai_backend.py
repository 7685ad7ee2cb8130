"""Back end for any OpenAI-compatible chat-completions server (vLLM, llama.cpp server, Ollama,
`transformers serve`, hosted APIs): concurrent requests, retries with exponential back-off on
connection errors, 429 and 5xx, and a cap on requests per second."""
from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

import httpx

from scar_core.synth.client import BackendError, Client, OnResult, as_messages
from scar_core.synth.prompts import Messages

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class RateLimit:
    """At most `per_second` request starts per second across threads (None: unlimited)."""

    def __init__(self, per_second: float | None):
        self.interval = 1.0 / per_second if per_second else 0.0
        self.next_start = 0.0
        self.lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self.lock:
            now = time.monotonic()
            start = max(now, self.next_start)
            self.next_start = start + self.interval
        time.sleep(max(0.0, start - now))


class OpenAIBackend(Client):
    """Chat completions from `base_url` (e.g. http://127.0.0.1:8000/v1).

    The API key is read from the environment variable `api_key_env`; when that variable is unset no
    key is sent (local servers need none). A failed request is retried `max_retries` times, waiting
    `backoff * 2**attempt` seconds (at most 60, or the server's Retry-After) between tries.
    """

    name = "openai"

    def __init__(self, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY",
                 concurrency: int = 4, rate_limit: float | None = None, max_retries: int = 6,
                 backoff: float = 1.0, timeout: float = 300.0):
        if not base_url.startswith(("http://", "https://")):
            raise BackendError(f"--base-url must start with http:// or https://, got '{base_url}'")
        if concurrency < 1:
            raise BackendError(f"concurrency must be at least 1, got {concurrency}")
        self.model, self.base_url = model, base_url.rstrip("/")
        self.concurrency, self.max_retries, self.backoff = concurrency, max_retries, backoff
        self.rate = RateLimit(rate_limit)
        key = os.environ.get(api_key_env)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.http = httpx.Client(headers=headers, timeout=timeout,
                                 limits=httpx.Limits(max_connections=concurrency))

    def generate(self, prompt: str | Messages, temperature: float = 0.0, max_tokens: int = 512) -> str:
        return self._generate(prompt, temperature, max_tokens, threading.Event())

    def _generate(self, prompt: str | Messages, temperature: float, max_tokens: int,
                  stop: threading.Event) -> str:
        body = {"model": self.model, "messages": as_messages(prompt),
                "temperature": temperature, "max_tokens": max_tokens}
        url = f"{self.base_url}/chat/completions"
        for attempt in range(self.max_retries + 1):
            self.rate.wait()
            try:
                response = self.http.post(url, json=body)
            except httpx.TransportError as e:
                problem, wait_s = f"{type(e).__name__}: {e}", None
            else:
                if response.status_code == 200:
                    return _content(response)
                if response.status_code not in RETRY_STATUS:
                    raise BackendError(f"{url} refused the request: HTTP {response.status_code} "
                                       f"{response.text[:300]}")
                problem, wait_s = f"HTTP {response.status_code}", _retry_after(response)
            if attempt < self.max_retries and stop.wait(wait_s if wait_s is not None else self._delay(attempt)):
                raise BackendError(f"{url}: stopped retrying because another call failed")
        raise BackendError(f"{url} did not answer after {self.max_retries + 1} tries (last: {problem}); "
                           "finished calls are cached, so running the same command again resumes")

    def _delay(self, attempt: int) -> float:
        return min(60.0, self.backoff * 2 ** attempt) * random.uniform(0.8, 1.2)

    def generate_many(self, prompts: Sequence[str | Messages], on_result: OnResult,
                      temperature: float = 0.0, max_tokens: int = 512) -> None:
        """Up to `concurrency` requests in flight; `on_result` runs in the calling thread. On the first
        failure, requests not yet sent are cancelled and the error is raised."""
        stop = threading.Event()
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="synth") as pool:
            pending: dict[Future, int] = {
                pool.submit(self._generate, p, temperature, max_tokens, stop): i for i, p in enumerate(prompts)}
            try:
                while pending:
                    done, _ = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        on_result(pending.pop(future), future.result())
            finally:
                stop.set()
                for future in pending:
                    future.cancel()

    def close(self) -> None:
        self.http.close()


def _content(response: httpx.Response) -> str:
    try:
        return response.json()["choices"][0]["message"]["content"] or ""
    except (ValueError, KeyError, IndexError, TypeError):
        raise BackendError(f"{response.request.url} answered without choices[0].message.content: "
                           f"{response.text[:300]}") from None


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return min(60.0, max(0.0, float(response.headers["retry-after"])))
    except (KeyError, ValueError):
        return None
