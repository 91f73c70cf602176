"""ChatClient and the OpenAI reasoner against a misbehaving OpenAI-compatible server on 127.0.0.1.

A reply without an answer (empty, whitespace, cut off by the length limit, an unclosed or empty
reasoning block) is a failed attempt: retried, then an error naming endpoint, model and reason,
never a silent "" scored 0. Retry-After is honoured; a server trickling its body cannot hold a
request past its deadline.
"""

from __future__ import annotations

import email.utils
import time

import pytest

from finemem_lib.agents import llm_client
from finemem_lib.agents.llm_client import ChatClient, LLMError, no_answer_reason, retry_after_s
from finemem_lib.agents.reasoner_openai import OpenAIReasoner
from finemem_lib.core.memory import Memory, Operation, OpKind
from finemem_lib.data.instance import QA
from finemem_lib.episodes import qa
from tests.loopback_llm import LoopbackLLM

HELLO = [{"role": "user", "content": "hello"}]


@pytest.fixture
def server():
    with LoopbackLLM() as running:
        yield running


@pytest.fixture
def waits(monkeypatch):
    """The waits between attempts, recorded instead of slept."""
    recorded: list[float] = []
    monkeypatch.setattr(llm_client, "_sleep", recorded.append)
    return recorded


def client(server, **kwargs) -> ChatClient:
    options = {"timeout_s": 5.0, "max_retries": 2, "backoff_s": 0.01, **kwargs}
    return ChatClient(server.base_url, "test-model", **options)


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("", "empty reply"),
        ("  \n\t", "empty reply"),
        ("<think>\nthe answer is probably", "unclosed <think>"),
        ("<think>done</think>\n  ", "empty answer after the </think>"),
    ],
)
def test_a_reply_without_an_answer_is_retried_then_an_error(server, waits, reply, reason):
    server.responder = lambda messages: reply
    with pytest.raises(LLMError) as error:
        client(server).chat(HELLO)  # was: returned the empty text after one request
    message = str(error.value)
    assert server.base_url in message and "test-model" in message and reason in message
    assert server.request_count == 3 and len(waits) == 2


def test_a_reply_cut_off_by_the_length_limit_is_retried(server, waits):
    server.responder = lambda messages: "The capital is Par"
    server.finish_next(2, reason="length")
    assert client(server).chat(HELLO, max_tokens=4) == "The capital is Par"  # the third, complete, reply
    assert server.request_count == 3
    server.reset()
    server.finish_next(5, reason="length")
    with pytest.raises(LLMError, match="finish_reason 'length'"):
        client(server).chat(HELLO)


def test_an_empty_reply_then_an_answer_returns_the_answer(server, waits):
    replies = iter(["", "<think>hm</think>", "<think>hm</think>Paris"])
    server.responder = lambda messages: next(replies)
    assert client(server).chat(HELLO) == "<think>hm</think>Paris" and server.request_count == 3


def test_the_reasoner_never_scores_an_empty_reply(server, waits):
    server.responder = lambda messages: "<think>\n</think>\n\n"
    reasoner = OpenAIReasoner(client(server))
    memory = Memory()
    memory.apply(Operation(OpKind.INSERT, content="Ada lives in Oslo."), 0)
    with pytest.raises(LLMError, match="empty answer"):
        qa.answer_over_memory(memory, [QA("Where does Ada live?", ("Oslo",))], "squad", reasoner)


def test_no_answer_reason_rules():
    assert no_answer_reason("Paris") == "" and no_answer_reason("<think>x</think>Paris") == ""
    assert no_answer_reason("Paris", "length") and no_answer_reason("", "stop")
    assert no_answer_reason("<think>a</think><think>b")  # the last block never closes


def test_retry_after_on_429_and_503_is_honoured(server, waits):
    server.fail_next(1, status=429, retry_after=3)
    server.fail_next(1, status=503, retry_after=1.5)
    assert client(server).chat(HELLO) == "hello"
    assert server.request_count == 3
    assert waits[0] >= 3.0 and waits[1] >= 1.5  # was: the 0.01 s backoff, ignoring the header


def test_a_retry_after_longer_than_max_wait_fails_at_once(server, waits):
    server.fail_next(5, status=429, retry_after=3600)
    with pytest.raises(LLMError, match="retry after 3600 s"):
        client(server, max_wait_s=60).chat(HELLO)
    assert server.request_count == 1 and waits == []


def test_retry_after_header_forms():
    assert retry_after_s({"retry-after": "2"}) == 2.0
    assert retry_after_s({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= retry_after_s({"retry-after": later}) <= 31
    assert retry_after_s({"retry-after": "soon"}) is None and retry_after_s({}) is None


def test_a_trickling_server_cannot_hold_a_request_past_its_deadline(server):
    server.trickle_next(1, interval=0.05)  # every byte within the 5 s read timeout; the body takes ~15 s
    started = time.monotonic()
    with pytest.raises(LLMError, match="deadline") as error:
        client(server, timeout_s=5.0, deadline_s=1.0, max_retries=0).chat(HELLO)  # was: returned after ~15 s
    assert "1 s deadline" in str(error.value) and time.monotonic() - started < 10.0
    assert client(server, deadline_s=1.0).chat(HELLO) == "hello"  # the next request is served normally


def test_the_deadline_defaults_to_the_timeout():
    assert ChatClient("http://127.0.0.1:9/v1", "m", timeout_s=7.0).deadline_s == 7.0
    with pytest.raises(ValueError, match="deadline_s"):
        ChatClient("http://127.0.0.1:9/v1", "m", deadline_s=0)
