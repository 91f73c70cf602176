"""ChatClient against a real OpenAI-compatible HTTP server on loopback, with injected faults."""

import pytest

from finemem_lib.agents.llm_client import ChatClient, LLMError
from tests.loopback_llm import MALFORMED_KINDS, LoopbackLLM

HELLO = [{"role": "user", "content": "hello"}]


@pytest.fixture
def server():
    with LoopbackLLM() as running:
        yield running


def client(server: LoopbackLLM, **kwargs) -> ChatClient:
    options = {"timeout_s": 0.5, "max_retries": 2, "backoff_s": 0.01, "concurrency": 4, **kwargs}
    return ChatClient(server.base_url, "test-model", **options)


def test_a_plain_completion_reaches_the_server(server):
    server.responder = lambda messages: f"{len(messages)} messages, last: {messages[-1]['content']}"
    assert client(server).chat(HELLO, temperature=0.1) == "1 messages, last: hello"
    (body,) = server.requests
    assert body["model"] == "test-model" and body["temperature"] == 0.1 and body["messages"] == HELLO


def test_5xx_is_retried_until_it_succeeds(server):
    server.fail_next(2, status=503)
    assert client(server).chat(HELLO) == "hello"
    assert server.request_count == 3


def test_5xx_every_time_gives_llm_error_after_the_retries(server):
    server.fail_next(10, status=500)
    with pytest.raises(LLMError, match="HTTP 500"):
        client(server).chat(HELLO)
    assert server.request_count == 3  # first try + 2 retries


def test_429_is_retried_and_400_is_not(server):
    server.fail_next(1, status=429)
    assert client(server).chat(HELLO) == "hello"
    server.reset()
    server.fail_next(1, status=400)
    with pytest.raises(LLMError, match="HTTP 400"):
        client(server).chat(HELLO)
    assert server.request_count == 1


def test_a_timeout_is_retried(server):
    server.slow_next(1, seconds=3.0)
    assert client(server, timeout_s=0.3).chat(HELLO) == "hello"
    assert server.request_count == 2


def test_timeouts_every_time_give_llm_error(server):
    server.slow_next(3, seconds=3.0)
    with pytest.raises(LLMError, match="Timeout"):
        client(server, timeout_s=0.3).chat(HELLO)


@pytest.mark.parametrize("kind", MALFORMED_KINDS)
def test_malformed_responses_are_retried_then_reported(server, kind):
    server.malformed_next(1, kind)
    assert client(server).chat(HELLO) == "hello"
    server.reset()
    server.malformed_next(3, kind)
    with pytest.raises(LLMError, match=r"malformed|Malformed|choices"):
        client(server).chat(HELLO)
    assert server.request_count == 3


def test_chat_many_keeps_order_and_can_return_errors_in_place(server):
    def responder(messages):
        text = messages[-1]["content"]
        if text == "boom":
            raise RuntimeError("responder refuses")
        return text.upper()

    server.responder = responder
    batch = [[{"role": "user", "content": w}] for w in ["a", "b", "boom", "c", "d"]]
    results = client(server, max_retries=1).chat_many(batch, return_exceptions=True)
    assert results[:2] == ["A", "B"] and results[3:] == ["C", "D"]
    assert isinstance(results[2], LLMError) and "responder refuses" in str(results[2])
    with pytest.raises(LLMError):
        client(server, max_retries=0).chat_many(batch)


def test_from_env_reads_url_model_and_key(server, monkeypatch):
    monkeypatch.setenv("LOOPTEST_BASE_URL", server.base_url)
    monkeypatch.setenv("LOOPTEST_MODEL", "env-model")
    monkeypatch.setenv("LOOPTEST_API_KEY", "secret-key")
    assert ChatClient.from_env("LOOPTEST", timeout_s=1.0).chat(HELLO) == "hello"
    assert server.requests[-1]["model"] == "env-model"
    monkeypatch.delenv("LOOPTEST_MODEL")
    with pytest.raises(LLMError, match="LOOPTEST_MODEL"):
        ChatClient.from_env("LOOPTEST")


def test_an_unreachable_endpoint_is_an_llm_error():
    with LoopbackLLM() as server:
        url = server.base_url
    with pytest.raises(LLMError, match="Connection"):
        ChatClient(url, "m", timeout_s=0.5, max_retries=1, backoff_s=0.01).chat(HELLO)
