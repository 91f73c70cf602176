"""The LLM judge of LongMemEval-style sources (``lme_train``, ``longmemeval_s*``), over an OpenAI-compatible endpoint.

The rule is Mem-alpha's (``evaluate_agent_results.py`` ``_compute_score`` and the training reward
manager ``verl/workers/reward_manager/naive.py`` ``_compute_score_for_data_source``): one user
message asks whether the response satisfies a rubric, in Qwen3's non-thinking mode; the answer
counts as correct when the reply contains ``yes`` and does not contain ``no`` (lower-cased, as
substrings, so ``"not"`` or ``"know"`` also read as no).

Configured like the reasoner: the ``scoring.judge`` section of a profile (``model``, ``base_url``,
``temperature``, ``max_new_tokens``, ``enable_thinking``, client settings) or, where it leaves them
empty, ``JUDGE_BASE_URL`` / ``JUDGE_MODEL`` / ``JUDGE_API_KEY``. A request that fails after the
client's retries raises :class:`~finemem_lib.agents.llm_client.LLMError`; it is never scored 0 silently.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from finemem_lib.agents.llm_client import ChatClient, LLMError

ENV_PREFIX = "JUDGE"

JUDGE_TEMPLATE = (
    "I will give you a question, a rubric for desired personalized response, and a response from a model. "
    "Please answer yes if the response satisfies the desired response. Otherwise, answer no. The model does not "
    "need to reflect all the points in the rubric. The response is correct as long as it recalls and utilizes the "
    "user's personal information correctly.\n\nQuestion: {question}\n\nRubric: {rubric}\n\nModel Response: "
    "{response}\n\nIs the model response correct? Answer yes or no only."
)
"""Mem-alpha's LongMemEval judge prompt (its wording, kept so judged scores are comparable)."""


def judge_prompt(question: str, prediction: str, golds: Sequence[str]) -> str:
    """The judge's user message; several acceptable answers are joined with ``" / "``."""
    rubric = golds[0] if len(golds) == 1 else " / ".join(golds)
    return JUDGE_TEMPLATE.format(question=question, rubric=rubric, response=prediction)


def verdict(reply: str) -> float:
    """Mem-alpha's reading of the judge's reply: 1.0 iff ``yes`` occurs and ``no`` does not (lower-cased)."""
    text = reply.strip().lower()
    return 1.0 if "yes" in text and "no" not in text else 0.0


class LLMJudge:
    """A yes/no judge over a chat client.

    Args:
        client: the chat client (server, model, retries, concurrency).
        temperature: sent when not None (Mem-alpha sends none: the server's default).
        max_new_tokens: ``max_tokens`` when not None.
        enable_thinking: vLLM's ``chat_template_kwargs`` (Mem-alpha: False); None sends nothing.
    """

    def __init__(
        self,
        client: ChatClient,
        temperature: float | None = None,
        max_new_tokens: int | None = None,
        enable_thinking: bool | None = False,
    ) -> None:
        self.client = client
        self.temperature = temperature
        self.max_new_tokens = max_new_tokens
        self.enable_thinking = enable_thinking
        self.name = f"llm judge {client.model}"

    def _params(self) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if self.temperature is not None:
            params["temperature"] = float(self.temperature)
        if self.max_new_tokens is not None:
            params["max_tokens"] = int(self.max_new_tokens)
        if self.enable_thinking is not None:
            params["extra_body"] = {"chat_template_kwargs": {"enable_thinking": self.enable_thinking}}
        return params

    def __call__(self, question: str, prediction: str, golds: Sequence[str]) -> float:
        return self.judge_many([(question, prediction, golds)])[0]

    def judge_many(self, items: Sequence[tuple[str, str, Sequence[str]]]) -> list[float]:
        """Verdicts for ``(question, prediction, golds)`` items, requested concurrently."""
        batch = [[{"role": "user", "content": judge_prompt(q, p, list(g))}] for q, p, g in items]
        replies = self.client.chat_many(batch, **self._params())
        return [verdict(str(reply)) for reply in replies]

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> LLMJudge:
        """Build from a ``scoring.judge`` section; empty ``base_url`` / ``model`` are read from the environment."""
        base_url = cfg.get("base_url") or os.environ.get(f"{ENV_PREFIX}_BASE_URL")
        model = cfg.get("model") or os.environ.get(f"{ENV_PREFIX}_MODEL")
        if not base_url or not model:
            raise LLMError(
                "the LLM judge needs a server: set scoring.judge.base_url and scoring.judge.model in the profile, "
                f"or {ENV_PREFIX}_BASE_URL and {ENV_PREFIX}_MODEL (and {ENV_PREFIX}_API_KEY if the server needs one)"
            )
        client_keys = ("timeout_s", "max_retries", "backoff_s", "concurrency")
        client_kwargs = {k: cfg[k] for k in client_keys if cfg.get(k) is not None}
        api_key_env = cfg.get("api_key_env") or f"{ENV_PREFIX}_API_KEY"
        client = ChatClient(base_url, model, api_key_env=api_key_env, **client_kwargs)
        return cls(
            client,
            temperature=cfg.get("temperature"),
            max_new_tokens=cfg.get("max_new_tokens"),
            enable_thinking=cfg.get("enable_thinking", False),
        )


def judge_factory(cfg: Mapping[str, Any]) -> Callable[[], LLMJudge]:
    """A zero-argument builder of the configured judge (built on first use, so that a missing server
    fails when a judged source is checked, not when a profile is loaded)."""
    backend = str(cfg.get("backend", "openai")).lower()
    if backend != "openai":
        raise ValueError(f"unknown judge backend {backend!r}; choose lexical or openai")
    section = dict(cfg)

    def build() -> LLMJudge:
        return LLMJudge.from_config(section)

    build.is_factory = True  # type: ignore[attr-defined]
    build.name = f"llm judge {section.get('model') or os.environ.get(f'{ENV_PREFIX}_MODEL') or '?'}"  # type: ignore[attr-defined]
    return build
