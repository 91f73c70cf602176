"""A small client for OpenAI-compatible chat endpoints (vLLM, OpenAI, ...), built on ``openai``.

Adds what batch jobs need on top of the ``openai`` client: concurrency with order kept, a timeout
per request, retries with exponential backoff on connection errors, timeouts, 408/409/429/5xx and
malformed responses, and one clear :class:`LLMError` when a request still fails.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai

Messages = list[dict[str, Any]]

_RETRYABLE_STATUS = {408, 409, 429}


class LLMError(RuntimeError):
    """A chat request that failed after all retries (or cannot succeed)."""


class ChatClient:
    """Chat completions against an OpenAI-compatible server.

    Args:
        base_url: e.g. ``http://localhost:8000/v1`` for vLLM.
        model: model name as the server knows it.
        api_key: the key; if None, read from ``api_key_env`` (a placeholder is used when unset, as
            local servers such as vLLM accept any key).
        timeout_s: per-request timeout.
        max_retries: retries after the first attempt.
        backoff_s: first backoff; doubles each retry, with jitter.
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
    ) -> None:
        if not base_url or not model:
            raise ValueError("ChatClient needs base_url and model")
        self.base_url, self.model = base_url, model
        self.max_retries, self.backoff_s, self.concurrency = max_retries, backoff_s, max(1, concurrency)
        key = api_key or os.environ.get(api_key_env) or "EMPTY"
        self._client = openai.OpenAI(base_url=base_url, api_key=key, timeout=timeout_s, max_retries=0)

    @classmethod
    def from_env(cls, prefix: str, **kwargs: Any) -> ChatClient:
        """Build from ``{prefix}_BASE_URL``, ``{prefix}_MODEL`` and ``{prefix}_API_KEY``."""
        base_url, model = os.environ.get(f"{prefix}_BASE_URL"), os.environ.get(f"{prefix}_MODEL")
        if not base_url or not model:
            raise LLMError(f"set {prefix}_BASE_URL and {prefix}_MODEL (and {prefix}_API_KEY if the server needs one)")
        return cls(base_url, model, api_key_env=f"{prefix}_API_KEY", **kwargs)

    def chat(self, messages: Messages, **params: Any) -> str:
        """One completion's text; raises :class:`LLMError` once retries are spent."""
        last_error = "no attempt made"
        for attempt in range(self.max_retries + 1):
            try:
                response = self._client.chat.completions.create(model=self.model, messages=messages, **params)
                return _message_text(response)
            except openai.APIStatusError as exc:
                last_error = f"HTTP {exc.status_code}: {_short(exc.message)}"
                if exc.status_code < 500 and exc.status_code not in _RETRYABLE_STATUS:
                    break
            except (openai.APIConnectionError, openai.APIResponseValidationError, _MalformedResponse) as exc:
                last_error = f"{type(exc).__name__}: {_short(str(exc))}"
            except ValueError as exc:  # a body that is not JSON
                last_error = f"malformed response: {_short(str(exc))}"
            if attempt < self.max_retries:
                time.sleep(self.backoff_s * 2**attempt * (1 + 0.25 * random.random()))
        raise LLMError(f"chat request to {self.base_url} (model {self.model}) failed: {last_error}")

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


class _MalformedResponse(Exception):
    """The server answered 200 with a body that is not a chat completion."""


def _message_text(response: Any) -> str:
    try:
        content = response.choices[0].message.content
    except (AttributeError, IndexError, TypeError) as exc:
        raise _MalformedResponse(f"no choices[0].message.content in response ({exc})") from None
    if not isinstance(content, str):
        raise _MalformedResponse("choices[0].message.content is not a string")
    return content


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."
