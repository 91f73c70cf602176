"""The LongMemEval yes/no judge against a real OpenAI-compatible server on the loopback interface."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from finemem_lib.agents.judge import LLMJudge, judge_prompt, verdict
from finemem_lib.agents.llm_client import ChatClient, LLMError
from finemem_lib.agents.reasoner_offline import OfflineReader
from finemem_lib.core import metrics
from finemem_lib.core.memory import Memory, Operation, OpKind
from finemem_lib.data.instance import QA, Instance
from finemem_lib.episodes import qa
from finemem_lib.episodes.baselines import run_baseline
from finemem_lib.infra.config import load_profile
from tests.loopback_llm import LoopbackLLM


@pytest.fixture
def server() -> Iterator[LoopbackLLM]:
    with LoopbackLLM() as running:
        yield running


def _judge(server: LoopbackLLM) -> LLMJudge:
    return LLMJudge(ChatClient(server.base_url, server.model, max_retries=0, backoff_s=0.0))


def test_verdict_is_mem_alphas_yes_without_no_rule():
    """Mem-alpha evaluate_agent_results.py, _compute_score (lme branch): ``"yes" in reply.lower() and
    "no" not in reply.lower()``, substrings, so "know" reads as no."""
    assert verdict(" Yes ") == 1.0
    assert verdict("yes.") == 1.0
    assert verdict("No") == 0.0
    assert verdict("Yes, I know the user") == 0.0
    assert verdict("maybe") == 0.0


def test_judge_sends_mem_alphas_prompt_in_non_thinking_mode(server):
    """Mem-alpha evaluate_agent_results.py, _compute_score: one user message, the rubric template,
    ``chat_template_kwargs: {enable_thinking: False}``."""
    server.responder = lambda messages: "yes"
    assert _judge(server)("Where do I live?", "You live in Lyon.", ["The user lives in Lyon"]) == 1.0
    body = server.requests[-1]
    assert body["messages"] == [
        {"role": "user", "content": judge_prompt("Where do I live?", "You live in Lyon.", ["The user lives in Lyon"])}
    ]
    assert "Rubric: The user lives in Lyon\n\nModel Response: You live in Lyon." in body["messages"][0]["content"]
    assert body["chat_template_kwargs"] == {"enable_thinking": False}


def test_judge_scores_a_personalised_answer_that_substring_match_fails(server):
    """The rubric-style gold is never a substring of a correct answer: lexical 0, judge 1."""

    def responder(messages: list[dict[str, Any]]) -> str:
        return "yes" if "Lyon" in messages[0]["content"].split("Model Response:")[1] else "no"

    server.responder = responder
    memory = Memory()
    memory.apply(Operation(OpKind.INSERT, content="The user moved to Lyon last spring."), step=0)
    question = QA("Where does the user live now?", ("The response should mention that the user lives in Lyon",))
    lexical = qa.answer_over_memory(memory, [question], "lme_train", OfflineReader())[0]
    judged_opts = qa.QAOptions(scorer=metrics.Scorer(judge=_judge(server), require_judge=True))
    judged = qa.answer_over_memory(memory, [question], "lme_train", OfflineReader(), options=judged_opts)[0]
    assert "Lyon" in judged.prediction
    assert lexical.score == 0.0 and judged.score == 1.0


def test_a_failing_judge_raises_instead_of_scoring_zero(server):
    server.fail_next(1, status=500)
    with pytest.raises(LLMError):
        _judge(server)("q", "a", ["g"])


def test_paper_profile_needs_a_judge_before_work_starts(server, monkeypatch):
    """The paper profile scores lme_train with the judge only: without a server it fails at the check,
    before any reasoner call; with JUDGE_BASE_URL set it judges."""
    monkeypatch.delenv("JUDGE_BASE_URL", raising=False)
    monkeypatch.delenv("JUDGE_MODEL", raising=False)
    cfg = load_profile("paper")
    instance = Instance("i0", "lme_train", ("The user moved to Lyon.",), (QA("Where?", ("Lyon",)),))

    class CountingReader(OfflineReader):
        calls = 0

        def _answer_texts(self, requests):
            CountingReader.calls += 1
            return super()._answer_texts(requests)

    with pytest.raises(LLMError, match="JUDGE_BASE_URL"):
        run_baseline("store_everything", [instance], CountingReader(), cfg)
    assert CountingReader.calls == 0
    monkeypatch.setenv("JUDGE_BASE_URL", server.base_url)
    monkeypatch.setenv("JUDGE_MODEL", server.model)
    cfg = load_profile("paper")
    cfg["scoring"]["judge"]["model"] = None
    server.responder = lambda messages: "yes"
    results = run_baseline("store_everything", [instance], OfflineReader(), cfg)
    assert results[0][0].score == 1.0 and server.request_count == 1
    assert metrics.build_scorer(cfg).rule_name("lme_train").startswith("llm_judge_yes_no")
