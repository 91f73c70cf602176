"""The OpenAI-compatible backend against a real HTTP server on the loopback interface."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest

from finemem_lib.agents import AnswerRequest, build_reasoner
from finemem_lib.agents.llm_client import ChatClient, LLMError
from finemem_lib.agents.reasoner_offline import OfflineReader
from finemem_lib.agents.reasoner_openai import OpenAIReasoner
from finemem_lib.core.memory import Memory, MemoryItem, Operation, OpKind
from finemem_lib.data.instance import QA
from finemem_lib.episodes import qa
from tests.loopback_llm import LoopbackLLM


@pytest.fixture
def server() -> Iterator[LoopbackLLM]:
    """A started loopback OpenAI-compatible server, stopped after the test."""
    with LoopbackLLM() as running:
        yield running


def reading_responder(messages: list[dict[str, Any]]) -> str:
    """Reads the numbered memory items and the question out of the prompt and answers like the offline reader,
    behind a (closed) reasoning block as Qwen3 may emit."""
    system = next(m["content"] for m in messages if m["role"] == "system")
    user = next(m["content"] for m in messages if m["role"] == "user")
    block = re.search(r"<memory>\n(.*?)\n</memory>", system, re.DOTALL).group(1)
    contents = re.findall(r"^\d+\. (.*)$", block, re.MULTILINE)
    items = tuple(MemoryItem(f"x{i}", text, 0) for i, text in enumerate(contents))
    question = user.rsplit("\n\n", 1)[-1]
    source = "synth_icl" if "\\boxed{label}" in user else "synth_factoid"
    return "<think>\n</think>\n\n" + OfflineReader().answer_one(AnswerRequest(question, source, items))


def reasoner_for(server: LoopbackLLM, **kwargs: Any) -> OpenAIReasoner:
    client = ChatClient(server.base_url, "qwen3-32b", timeout_s=5, max_retries=2, backoff_s=0.01, concurrency=4)
    return OpenAIReasoner(client, **kwargs)


def memory_with(*texts: str) -> Memory:
    memory = Memory(id_style="short")
    for step, text in enumerate(texts):
        memory.apply(Operation(OpKind.INSERT, content=text), step)
    return memory


MEMORY_TEXTS = (
    "The favourite colour of Zorvan Kell is teal.",
    "Mira Holt lives in the city of Oslo.",
    "Sample: the striker and the referee; Label: 3.",
)
QUESTIONS = [
    QA("What is the favourite colour of Zorvan Kell?", ("teal",)),
    QA("In which city does Mira Holt live?", ("Oslo",)),
    QA("What is the job of Ivo Dal?", ("baker",)),
]


def test_answers_flow_through_in_order(server: LoopbackLLM) -> None:
    server.responder = reading_responder
    results = qa.answer_over_memory(memory_with(*MEMORY_TEXTS), QUESTIONS, "squad", reasoner_for(server))
    assert [r.prediction for r in results] == ["teal", "Oslo", "I don't know"]
    assert [r.score for r in results] == [1.0, 1.0, 0.0]
    assert server.request_count == 3


def test_requests_carry_the_sampling_settings(server: LoopbackLLM) -> None:
    reasoner_for(server, max_new_tokens=64).answer([AnswerRequest("Who?", "synth_icl")])
    body = server.requests[-1]
    assert body["model"] == "qwen3-32b" and body["temperature"] == 0.1 and body["max_tokens"] == 64
    assert body["chat_template_kwargs"] == {"enable_thinking": False}
    assert body["messages"][1]["content"].endswith("\\boxed{label}. Note that the label is a single number.\n\nWho?")
    reasoner_for(server, enable_thinking=None).answer([AnswerRequest("Who?", "squad")])
    assert "chat_template_kwargs" not in server.requests[-1]


def test_a_server_error_is_retried(server: LoopbackLLM) -> None:
    server.responder = reading_responder
    server.fail_next(1, status=503)
    server.malformed_next(1, kind="no_choices")
    results = qa.answer_over_memory(memory_with(*MEMORY_TEXTS), QUESTIONS[:1], "squad", reasoner_for(server))
    assert results[0].prediction == "teal" and results[0].score == 1.0
    assert server.request_count == 3


def test_a_server_that_keeps_failing_raises_instead_of_scoring_zero(server: LoopbackLLM) -> None:
    server.fail_next(50, status=500)
    with pytest.raises(LLMError, match="HTTP 500"):
        qa.answer_over_memory(memory_with(*MEMORY_TEXTS), QUESTIONS, "squad", reasoner_for(server))


def test_built_from_config_and_environment(server: LoopbackLLM, monkeypatch: pytest.MonkeyPatch) -> None:
    server.responder = lambda messages: "\\boxed{3}"
    monkeypatch.setenv("REASONER_BASE_URL", server.base_url)
    monkeypatch.setenv("REASONER_MODEL", "served-name")
    reasoner = build_reasoner({"backend": "openai", "base_url": None, "max_retries": 0, "concurrency": 2})
    memory = memory_with(*MEMORY_TEXTS)
    icl = QA("Sample: the striker\nWhat is the label for the above sample?", ("3",))
    assert qa.answer_over_memory(memory, [icl], "synth_icl", reasoner)[0].score == 1.0
    assert server.requests[-1]["model"] == "served-name"
