"""Reasoner backend: an OpenAI-compatible chat endpoint (vLLM serving Qwen3-32B, OpenAI, ...).

Requests run concurrently through :class:`~finemem_lib.agents.llm_client.ChatClient` (timeouts, retries
with backoff). A request that still fails raises :class:`~finemem_lib.agents.llm_client.LLMError`: the
caller never gets a silent empty answer scored 0.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from finemem_lib.agents.llm_client import ChatClient, LLMError
from finemem_lib.agents.reasoner import AnswerRequest, Reasoner

ENV_PREFIX = "REASONER"
"""``REASONER_BASE_URL``, ``REASONER_MODEL``, ``REASONER_API_KEY`` when the config leaves them empty."""


class OpenAIReasoner(Reasoner):
    """Answers through a chat-completions endpoint.

    Args:
        client: the chat client (server, model, retries, concurrency).
        temperature: sampling temperature (paper: 0.1).
        max_new_tokens: ``max_tokens`` of each completion.
        enable_thinking: sent as vLLM's ``chat_template_kwargs`` (Qwen3: False = non-thinking mode);
            None sends nothing (for servers that reject unknown fields, e.g. OpenAI's).
    """

    def __init__(
        self,
        client: ChatClient,
        temperature: float = 0.1,
        max_new_tokens: int = 256,
        enable_thinking: bool | None = False,
    ) -> None:
        if temperature < 0 or max_new_tokens < 1:
            raise ValueError("temperature must be >= 0 and max_new_tokens >= 1")
        self.client = client
        self.temperature = float(temperature)
        self.max_new_tokens = int(max_new_tokens)
        self.enable_thinking = enable_thinking

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> OpenAIReasoner:
        """Build from the ``reasoner:`` config section; an empty ``base_url`` / ``model`` is read from
        ``REASONER_BASE_URL`` / ``REASONER_MODEL`` (the key from ``api_key_env``, default ``REASONER_API_KEY``)."""
        base_url = cfg.get("base_url") or os.environ.get(f"{ENV_PREFIX}_BASE_URL")
        model = cfg.get("model") or os.environ.get(f"{ENV_PREFIX}_MODEL")
        if not base_url or not model:
            raise LLMError(
                "the openai reasoner needs a server: set reasoner.base_url and reasoner.model in the profile, "
                f"or {ENV_PREFIX}_BASE_URL and {ENV_PREFIX}_MODEL (and {ENV_PREFIX}_API_KEY if the server needs one)"
            )
        client_keys = ("timeout_s", "max_retries", "backoff_s", "concurrency")
        client_kwargs = {k: cfg[k] for k in client_keys if cfg.get(k) is not None}
        api_key_env = cfg.get("api_key_env") or f"{ENV_PREFIX}_API_KEY"
        client = ChatClient(base_url, model, api_key_env=api_key_env, **client_kwargs)
        reasoner_keys = ("temperature", "max_new_tokens")
        kwargs: dict[str, Any] = {k: cfg[k] for k in reasoner_keys if cfg.get(k) is not None}
        return cls(client, enable_thinking=cfg.get("enable_thinking", False), **kwargs)

    def _answer_texts(self, requests: list[AnswerRequest]) -> list[str]:
        params: dict[str, Any] = {"temperature": self.temperature, "max_tokens": self.max_new_tokens}
        if self.enable_thinking is not None:
            params["extra_body"] = {"chat_template_kwargs": {"enable_thinking": self.enable_thinking}}
        texts = self.client.chat_many([r.messages() for r in requests], **params)
        return [str(text) for text in texts]
