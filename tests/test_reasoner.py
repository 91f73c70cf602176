"""The reasoner interface, the per-source instructions, the offline reader and the backend factory."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from finemem_lib.agents import AnswerRequest, Reasoner, build_reasoner
from finemem_lib.agents.instructions import (
    CHUNK_QA_SOURCE,
    EMPTY_MEMORY,
    build_messages,
    build_query,
    expects_boxed_label,
    query_instruction,
)
from finemem_lib.agents.llm_client import LLMError
from finemem_lib.agents.reasoner import clean_output
from finemem_lib.agents.reasoner_offline import UNKNOWN, OfflineReader
from finemem_lib.agents.reasoner_openai import OpenAIReasoner
from finemem_lib.core.memory import MemoryItem
from finemem_lib.infra.config import load_profile


def items(*texts: str) -> tuple[MemoryItem, ...]:
    return tuple(MemoryItem(f"m{i}", text, i) for i, text in enumerate(texts))


def ask(question: str, *texts: str, source: str = "synth_factoid") -> str:
    return OfflineReader().answer([AnswerRequest(question, source, items(*texts))])[0].text


# ---------------------------------------------------------------------------- instructions
@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("squad", None),
        ("hotpotqa", None),
        ("perltqa", None),
        ("lme_train", None),
        ("ruler_qa1_197K", None),
        ("longmemeval_s_star", None),
        ("synth_factoid", None),
        ("synth_update", None),
        (CHUNK_QA_SOURCE, None),
        ("booksum", "comprehensive book summary"),
        ("infbench_sum_eng_shots2", "comprehensive book summary"),
        ("infbench_qa_eng_shots2", "as briefly as possible"),
        ("pubmed-rct", "\\boxed{label}"),
        ("icl_trec_coarse_6600shot_balance", "\\boxed{label}"),
        ("icl_banking77_5900shot_balance", "Your semantic memory likely includes example labels."),
        ("ttl_train", "Your semantic memory likely includes example labels."),
        ("synth_icl", "Your semantic memory likely includes example labels."),
    ],
)
def test_query_instruction_per_source(source: str, expected: str | None) -> None:
    prefix = query_instruction(source)
    if expected is None:
        assert prefix is None
        assert build_query("Who?", source) == "Who?"
    else:
        assert expected in prefix
        assert build_query("Who?", source) == f"{prefix}\n\nWho?"


def test_trec_uses_the_prefix_without_example_labels() -> None:
    assert "example labels" not in query_instruction("icl_trec_fine_6400shot_balance")
    assert "example labels" not in query_instruction("pubmed-rct")


def test_boxed_label_sources() -> None:
    assert expects_boxed_label("synth_icl") and expects_boxed_label("icl_nlu_8296shot_balance")
    assert not expects_boxed_label("synth_factoid") and not expects_boxed_label("booksum")


def test_unknown_source_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"no query instruction for data source 'mystery'.*squad"):
        query_instruction("mystery")


def test_messages_number_the_items_and_carry_the_query() -> None:
    system, user = build_messages("Where?", "synth_icl", ["first fact", "second fact"])
    assert system["role"] == "system" and user["role"] == "user"
    assert "1. first fact\n2. second fact" in system["content"]
    assert user["content"].endswith("\n\nWhere?") and "\\boxed{label}" in user["content"]
    assert EMPTY_MEMORY in build_messages("Where?", "squad", [])[0]["content"]


def test_clean_output_drops_reasoning() -> None:
    assert clean_output("<think>hmm</think>\n Lima ") == "Lima"
    assert clean_output("<think>never finished") == "Empty"
    assert clean_output("  teal\n") == "teal"


# ---------------------------------------------------------------------------- interface
def test_request_validation() -> None:
    with pytest.raises(ValueError, match="question"):
        AnswerRequest("  ", "squad")
    with pytest.raises(ValueError, match="source"):
        AnswerRequest("Who?", "")
    with pytest.raises(ValueError, match="MemoryItem"):
        AnswerRequest("Who?", "squad", ("not an item",))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"requests\[0\]"):
        OfflineReader().answer(["Who?"])  # type: ignore[list-item]


class _ShortReasoner(Reasoner):
    def _answer_texts(self, requests: list[AnswerRequest]) -> list[str]:
        return ["x"] * (len(requests) - 1)


def test_a_backend_losing_answers_raises() -> None:
    with pytest.raises(RuntimeError, match="1 answers for 2 requests"):
        _ShortReasoner().answer([AnswerRequest("a?", "squad"), AnswerRequest("b?", "squad")])


# ---------------------------------------------------------------------------- offline reader
FACT = "The favourite colour of Zorvan Kell is teal."
OTHER_PERSON = "The favourite colour of Mira Holt is crimson."
SAME_PERSON_OTHER_RELATION = "Zorvan Kell lives in the city of Oslo."
QUESTION = "What is the favourite colour of Zorvan Kell?"


def test_reader_answers_from_the_right_item() -> None:
    assert ask(QUESTION, OTHER_PERSON, FACT, SAME_PERSON_OTHER_RELATION) == "teal"
    assert ask("In which city does Zorvan Kell live?", FACT, SAME_PERSON_OTHER_RELATION) == "Oslo"
    assert ask("Which company does Ivo Dal work for?", "Ivo Dal works for a company called Halvex.") == "called Halvex"


def test_reader_does_not_know_what_was_not_retrieved() -> None:
    assert ask(QUESTION) == UNKNOWN
    assert ask(QUESTION, "On Monday, the ferry was closed for repairs.") == UNKNOWN
    assert ask("What is the job of Ivo Dal?", OTHER_PERSON) == UNKNOWN
    assert ask("What is the favourite colour of Ana Bo?", OTHER_PERSON) == UNKNOWN  # another person's fact


def test_conflicting_versions_go_to_the_higher_ranked_item() -> None:
    stale, fresh = "Zorvan Kell lives in the city of Oslo.", "Zorvan Kell now lives in the city of Lima."
    question = "According to the latest information, in which city does Zorvan Kell live?"
    assert ask(question, fresh, stale) == "Lima"
    assert ask(question, stale, fresh) == "Oslo"


def test_reader_classifies_by_majority_label_with_rank_tie_break() -> None:
    q = "Sample: the striker and the referee\nWhat is the label for the above sample?"
    a, b, c = "Sample: the coach; Label: 3.", "Sample: the oven; Label: 7.", "Sample: the medal; Label: 7."
    assert ask(q, a, b, c, source="synth_icl") == "\\boxed{7}"
    assert ask(q, a, b, source="synth_icl") == "\\boxed{3}"
    assert ask(q, b, a, source="synth_icl") == "\\boxed{7}"
    assert ask(q, "On Monday, the ferry was closed.", source="synth_icl") == UNKNOWN


def test_classification_votes_among_the_closest_labelled_items() -> None:
    q = "Sample: the striker and the referee at the stadium\nWhat is the label for the above sample?"
    close = ["Sample: the striker and the referee; Label: 2.", "Sample: the referee at the stadium; Label: 2."]
    far = [f"Sample: the oven number {i}; Label: 5." for i in range(4)]
    assert ask(q, *far, *close, source="synth_icl") == "\\boxed{2}"  # not the most frequent label
    reader = OfflineReader(vote_k=6)
    request = AnswerRequest(q, "synth_icl", items(*far, *close))
    assert reader.answer([request])[0].text == "\\boxed{5}"  # a vote over everything: the majority
    with pytest.raises(ValueError, match="vote_k"):
        OfflineReader(vote_k=0)


def test_reader_evidence_is_the_retrieved_ids_in_order() -> None:
    retrieved = (MemoryItem("b7", OTHER_PERSON, 4), MemoryItem("a1", FACT, 2))
    answer = OfflineReader().answer([AnswerRequest(QUESTION, "synth_factoid", retrieved)])[0]
    assert answer.evidence_ids == ("b7", "a1")
    assert OfflineReader().answer([AnswerRequest(QUESTION, "synth_factoid")])[0].evidence_ids == ()


def test_min_overlap_is_validated() -> None:
    with pytest.raises(ValueError, match="min_overlap"):
        OfflineReader(min_overlap=1.5)


WORDS = st.sampled_from("alpha beta gamma delta epsilon zeta eta theta iota kappa the of is".split())  # noqa: SIM905
SENTENCES = st.lists(WORDS, min_size=1, max_size=8).map(lambda ws: " ".join(ws) + ".")


@settings(max_examples=60, deadline=None)
@given(question=SENTENCES, texts=st.lists(SENTENCES, max_size=4))
def test_reader_answers_only_with_words_of_the_retrieved_items(question: str, texts: list[str]) -> None:
    answer = ask(question.rstrip(".") + "?", *texts)
    if answer != UNKNOWN:
        pool = set(re.findall(r"\w+", " ".join(texts).lower()))
        assert set(re.findall(r"\w+", answer.lower())) <= pool
        assert answer == ask(question.rstrip(".") + "?", *texts)  # deterministic


# ---------------------------------------------------------------------------- factory
def test_build_reasoner_backends() -> None:
    assert isinstance(build_reasoner(None), OfflineReader)
    assert build_reasoner({"backend": "offline", "min_overlap": 0.75}).min_overlap == 0.75
    openai_reasoner = build_reasoner(
        {"backend": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m", "temperature": 0.3}
    )
    assert isinstance(openai_reasoner, OpenAIReasoner)
    assert openai_reasoner.temperature == 0.3 and openai_reasoner.enable_thinking is False
    with pytest.raises(ValueError, match="unknown reasoner backend"):
        build_reasoner({"backend": "oracle"})
    with pytest.raises(ValueError, match=r"reasoner\.model"):
        build_reasoner({"backend": "hf"})


def test_openai_backend_without_server_settings_says_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("REASONER_BASE_URL", raising=False)
    monkeypatch.delenv("REASONER_MODEL", raising=False)
    with pytest.raises(LLMError, match=r"reasoner\.base_url.*REASONER_BASE_URL"):
        build_reasoner({"backend": "openai"})


@pytest.mark.parametrize("profile", ["smoke", "default", "paper"])
def test_profiles_build_their_reasoner(profile: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REASONER_BASE_URL", "http://127.0.0.1:9/v1")
    reasoner = build_reasoner(load_profile(profile)["reasoner"])
    if profile == "paper":
        assert isinstance(reasoner, OpenAIReasoner)
        assert reasoner.client.model == "Qwen/Qwen3-32B" and reasoner.temperature == 0.1
    else:
        assert isinstance(reasoner, OfflineReader)
