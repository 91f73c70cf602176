"""An LLM yes/no judge for LongMemEval-style sources, as Mem-alpha scores ``lme`` / ``longmemeval``.

Mem-alpha asks its reasoner model (Qwen3-32B, non-thinking) whether a response satisfies the gold rubric and
counts an answer right when the reply says yes and not no. The template below keeps its wording so scores
stay comparable. Only these sources are judged: InfBench-Sum keeps Mem-alpha's keyword-hit score.

``evaluation.judge``: null (the lexical fallback of :func:`finemem_lib.metrics.rule_for`), ``reasoner``
(the reasoner's endpoint and model) or ``{base_url, model}``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

from finemem_lib.llm_client import ChatClient

JUDGED_SOURCES = r"lme.*|longmemeval.*"

LME_TEMPLATE = (
    "I will give you a question, a rubric for desired personalized response, and a response from a model. "
    "Please answer yes if the response satisfies the desired response. Otherwise, answer no. The model does not "
    "need to reflect all the points in the rubric. The response is correct as long as it recalls and utilizes "
    "the user's personal information correctly.\n\nQuestion: {}\n\nRubric: {}\n\nModel Response: {}\n\n"
    "Is the model response correct? Answer yes or no only."
)


def is_judged(source: str) -> bool:
    """Whether a source is scored by the judge when one is configured."""
    return re.fullmatch(JUDGED_SOURCES, source.strip().lower()) is not None


def verdict(reply: str) -> float:
    """1.0 when the reply says yes and does not say no (Mem-alpha's reading), else 0.0."""
    text = reply.strip().lower()
    return float("yes" in text and "no" not in text)


class LLMJudge:
    """Judges (question, prediction, golds) triples through a chat endpoint, many at once."""

    def __init__(self, client: ChatClient, enable_thinking: bool | None = False) -> None:
        self.client, self.enable_thinking = client, enable_thinking

    def judge_many(self, items: Sequence[tuple[str, str, Sequence[str]]]) -> list[float]:
        prompts = [
            [{"role": "user", "content": LME_TEMPLATE.format(q, "; ".join(golds), prediction)}]
            for q, prediction, golds in items
        ]
        params: dict[str, Any] = {"temperature": 0.0, "max_tokens": 8}
        if self.enable_thinking is not None:
            params["extra_body"] = {"chat_template_kwargs": {"enable_thinking": self.enable_thinking}}
        return [verdict(str(reply)) for reply in self.client.chat_many(prompts, **params)]


def judge_from_config(cfg: Mapping[str, Any]) -> LLMJudge | None:
    """The judge named by ``evaluation.judge`` (None when unset)."""
    spec = (cfg.get("evaluation") or {}).get("judge")
    if not spec:
        return None
    reasoner = dict(cfg.get("reasoner") or {})
    if spec == "reasoner":
        spec = {"base_url": reasoner.get("base_url"), "model": reasoner.get("model")}
    if not isinstance(spec, Mapping):
        raise ValueError(f"evaluation.judge must be null, 'reasoner' or {{base_url, model}}, got {spec!r}")
    base_url = spec.get("base_url") or os.environ.get("REASONER_BASE_URL")
    model = spec.get("model") or reasoner.get("model") or os.environ.get("REASONER_MODEL")
    if not base_url or not model:
        raise ValueError("evaluation.judge needs a base_url and model (or REASONER_BASE_URL / REASONER_MODEL)")
    client = ChatClient(
        base_url, model, api_key_env="REASONER_API_KEY", timeout_s=float(reasoner.get("timeout_s", 120))
    )
    return LLMJudge(client, reasoner.get("enable_thinking", False))
