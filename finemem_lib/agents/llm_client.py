"""A small client for OpenAI-compatible chat endpoints (vLLM, OpenAI, ...), built on ``openai``.

Adds what batch jobs need on top of the ``openai`` client: concurrency with order kept, a wall-clock
deadline per request, retries with exponential backoff on connection errors, timeouts,
408/409/429/5xx and malformed responses (waiting as long as a ``Retry-After`` header asks), and one
clear :class:`LLMError` naming the endpoint, the model and the reason when a request still fails.

A reply that carries no answer is a failed attempt too, retried like a 5xx, so a scorer only ever
sees a real answer: an empty or whitespace reply, a reply cut off by the length limit
(``finish_reason: "length"``), a reasoning block (``<think>``) that never closes, or nothing after
the closed block.
"""

from __future__ import annotations

import email.utils
import importlib
import logging
import os
import random
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import openai

log = logging.getLogger(__name__)

Messages = list[dict[str, Any]]

_RETRYABLE_STATUS = {408, 409, 429}
_sleep = time.sleep  # the wait between attempts (a seam for tests)
_THINK_OPEN, _THINK_CLOSE = "<think>", "</think>"


class LLMError(RuntimeError):
    """A chat request that failed after all retries (or cannot succeed)."""


class ChatClient:
    """Chat completions against an OpenAI-compatible server.

    Args:
        base_url: e.g. ``http://localhost:8000/v1`` for vLLM.
        model: model name as the server knows it.
        api_key: the key; if None, read from ``api_key_env`` (a placeholder is used when unset, as
            local servers such as vLLM accept any key).
        timeout_s: limit of each network operation (connect, each read, each write).
        deadline_s: wall-clock limit of one request, from connecting to the last byte of the reply
            (a server trickling its reply cannot hold a request longer); None uses ``timeout_s``.
        max_retries: retries after the first attempt.
        backoff_s: first backoff; doubles each retry, with jitter. A ``Retry-After`` (or
            ``retry-after-ms``) header on a retried status makes the wait at least that long.
        max_wait_s: the longest ``Retry-After`` honoured; a server asking for more fails the request
            at once (with its number in the error) instead of blocking the job.
        concurrency: parallel requests in :meth:`chat_many`.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        timeout_s: float = 60.0,
        max_retries: int = 3,
        backoff_s: float = 0.5,
        concurrency: int = 8,
        deadline_s: float | None = None,
        max_wait_s: float = 120.0,
    ) -> None:
        if not base_url or not model:
            raise ValueError("ChatClient needs base_url and model")
        if timeout_s <= 0 or (deadline_s is not None and deadline_s <= 0) or max_wait_s < 0:
            raise ValueError("ChatClient timeout_s and deadline_s must be > 0 and max_wait_s >= 0")
        self.base_url, self.model = base_url, model
        self.max_retries, self.backoff_s, self.concurrency = max_retries, backoff_s, max(1, concurrency)
        self.deadline_s = float(deadline_s if deadline_s is not None else timeout_s)
        self.max_wait_s = float(max_wait_s)
        key = api_key or os.environ.get(api_key_env) or "EMPTY"
        http_client = openai.DefaultHttpxClient()
        _enforce_deadlines(http_client)
        self._client = openai.OpenAI(
            base_url=base_url, api_key=key, timeout=timeout_s, max_retries=0, http_client=http_client
        )

    @classmethod
    def from_env(cls, prefix: str, **kwargs: Any) -> ChatClient:
        """Build from ``{prefix}_BASE_URL``, ``{prefix}_MODEL`` and ``{prefix}_API_KEY``."""
        base_url, model = os.environ.get(f"{prefix}_BASE_URL"), os.environ.get(f"{prefix}_MODEL")
        if not base_url or not model:
            raise LLMError(f"set {prefix}_BASE_URL and {prefix}_MODEL (and {prefix}_API_KEY if the server needs one)")
        return cls(base_url, model, api_key_env=f"{prefix}_API_KEY", **kwargs)

    def chat(self, messages: Messages, **params: Any) -> str:
        """One completion's text (a real answer); raises :class:`LLMError` once retries are spent."""
        last_error = "no attempt made"
        for attempt in range(self.max_retries + 1):
            wait = self.backoff_s * 2**attempt * (1 + 0.25 * random.random())
            started = time.monotonic()
            _deadline.end = started + self.deadline_s
            try:
                response = self._client.chat.completions.create(model=self.model, messages=messages, **params)
                return _answer_text(response)
            except openai.APIStatusError as exc:
                last_error = f"HTTP {exc.status_code}: {_short(exc.message)}"
                if exc.status_code < 500 and exc.status_code not in _RETRYABLE_STATUS:
                    break
                asked = retry_after_s(exc.response.headers) if exc.response is not None else None
                if asked is not None:
                    if asked > self.max_wait_s:
                        last_error += f"; the server asks to retry after {asked:g} s (more than max_wait_s)"
                        break
                    wait = max(wait, asked)
            except openai.APITimeoutError as exc:
                if time.monotonic() - started >= self.deadline_s - 1e-3:
                    last_error = f"{type(exc).__name__}: no complete reply within the {self.deadline_s:g} s deadline"
                else:
                    last_error = f"{type(exc).__name__}: {_short(str(exc))}"
            except (openai.APIConnectionError, openai.APIResponseValidationError, _MalformedResponse) as exc:
                last_error = f"{type(exc).__name__}: {_short(str(exc))}"
            except _NoAnswer as exc:
                last_error = str(exc)
            except ValueError as exc:  # a body that is not JSON
                last_error = f"malformed response: {_short(str(exc))}"
            finally:
                _deadline.end = None
            if attempt < self.max_retries:
                _sleep(wait)
        raise LLMError(
            f"chat request to {self.base_url} (model {self.model}) failed after {attempt + 1} attempt(s): {last_error}"
        )

    def chat_many(
        self, batch: Sequence[Messages], return_exceptions: bool = False, **params: Any
    ) -> list[str | LLMError]:
        """Completions for many conversations, concurrently, in input order.

        With ``return_exceptions`` a failed request gives its :class:`LLMError` in place instead of
        raising, so callers can keep what succeeded.
        """

        def one(messages: Messages) -> str | LLMError:
            try:
                return self.chat(messages, **params)
            except LLMError as exc:
                if return_exceptions:
                    return exc
                raise

        if not batch:
            return []
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(batch))) as pool:
            return list(pool.map(one, batch))


# ---------------------------------------------------------------------------- replies
class _MalformedResponse(Exception):
    """The server answered 200 with a body that is not a chat completion."""


class _NoAnswer(Exception):
    """A well-formed completion that carries no answer (empty, cut off, unfinished reasoning)."""


def _answer_text(response: Any) -> str:
    try:
        choice = response.choices[0]
        content = choice.message.content
    except (AttributeError, IndexError, TypeError) as exc:
        raise _MalformedResponse(f"no choices[0].message.content in response ({exc})") from None
    if not isinstance(content, str):
        raise _MalformedResponse("choices[0].message.content is not a string")
    problem = no_answer_reason(content, getattr(choice, "finish_reason", None))
    if problem:
        raise _NoAnswer(problem)
    return content


def no_answer_reason(content: str, finish_reason: str | None = None) -> str:
    """Why a reply carries no answer ("" when it does): empty, cut off by the length limit, or an
    unclosed or empty reasoning block."""
    if finish_reason == "length":
        return "reply cut off by the length limit (finish_reason 'length'); raise max_tokens"
    if not content.strip():
        return "empty reply"
    if content.rfind(_THINK_OPEN) > content.rfind(_THINK_CLOSE):
        return "reply ends inside an unclosed <think> block (the answer never came)"
    if _THINK_CLOSE in content and not content.rsplit(_THINK_CLOSE, 1)[1].strip():
        return "empty answer after the </think> block"
    return ""


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """Seconds a ``retry-after-ms`` or ``Retry-After`` header (seconds or an HTTP date) asks to wait."""
    try:
        milliseconds = headers.get("retry-after-ms")
        if milliseconds is not None:
            return max(0.0, float(milliseconds) / 1000)
    except ValueError:
        pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


# ---------------------------------------------------------------------------- the per-request deadline
_deadline = threading.local()
"""``end``: the monotonic time by which the current thread's request must be done (None: no deadline)."""


def _time_left(timeout: float | None, error: type[Exception]) -> float | None:
    """``timeout`` shortened to the time left before this thread's deadline; raises ``error`` once it passed."""
    end = getattr(_deadline, "end", None)
    if end is None:
        return timeout
    left = end - time.monotonic()
    if left <= 0:
        raise error("the request's deadline passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream:
    """A connection whose every read and write waits no longer than the request's deadline allows."""

    def __init__(self, inner: Any, errors: Any) -> None:
        self._inner, self._errors = inner, errors

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _time_left(timeout, self._errors.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _time_left(timeout, self._errors.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None) -> Any:
        timeout = _time_left(timeout, self._errors.ConnectTimeout)
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, timeout), self._errors)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _DeadlineBackend:
    """Wraps an httpcore network backend so each connection it opens keeps the request's deadline."""

    def __init__(self, inner: Any, errors: Any) -> None:
        self._inner, self._errors = inner, errors

    def connect_tcp(self, host: str, port: int, timeout: float | None = None, *args: Any, **kwargs: Any) -> Any:
        timeout = _time_left(timeout, self._errors.ConnectTimeout)
        return _DeadlineStream(self._inner.connect_tcp(host, port, timeout, *args, **kwargs), self._errors)

    def connect_unix_socket(self, path: str, timeout: float | None = None, *args: Any, **kwargs: Any) -> Any:
        timeout = _time_left(timeout, self._errors.ConnectTimeout)
        return _DeadlineStream(self._inner.connect_unix_socket(path, timeout, *args, **kwargs), self._errors)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _enforce_deadlines(http_client: Any) -> None:
    """Give every connection pool of an httpx client a deadline-keeping network backend.

    httpx has no total timeout (its timeouts bound each network operation), so the deadline is kept
    one level down, where httpcore reads and writes the socket.
    """
    transports = [getattr(http_client, "_transport", None), *getattr(http_client, "_mounts", {}).values()]
    installed = 0
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if backend is None or isinstance(backend, _DeadlineBackend):
            continue
        errors = importlib.import_module(type(pool).__module__.split(".")[0])  # httpcore (or its fork)
        pool._network_backend = _DeadlineBackend(backend, errors)
        installed += 1
    if not installed:
        log.warning("could not install the per-request deadline on %s; only per-operation timeouts apply", http_client)
