"""The synthetic ICL question's wording: retrieval must not prefer filler for words only filler holds."""

from __future__ import annotations

import pytest

from finemem_lib.agents.reasoner_factory import build_reasoner
from finemem_lib.core.memory import Memory, Operation, OpKind
from finemem_lib.core.retrieval import tokenize
from finemem_lib.core.sentences import split_sentences
from finemem_lib.data.roles import sentence_kinds
from finemem_lib.data.synthetic import DEFAULT_ICL_QUESTION, ICL_FRAME, SyntheticConfig, build_synthetic
from finemem_lib.episodes.qa import answer_over_memory

FIXED = "Which label fits this sample?"
KNOBS = {"sources": ["synth_icl"], "train_instances": 0, "test_instances": 4}


def _examples_and_some_filler(instance, n_filler=1):
    """Every labelled example and the first ``n_filler`` filler sentences of each chunk."""
    memory = Memory(id_style="short")
    for t, (chunk, kinds) in enumerate(zip(instance.chunks, sentence_kinds(instance), strict=True)):
        sentences = split_sentences(chunk)
        keep = [i for i, k in enumerate(kinds) if k == "example"]
        keep += [i for i, k in enumerate(kinds) if k == "filler"][:n_filler]
        memory.apply_all([Operation(OpKind.INSERT, sentence=i + 1) for i in sorted(keep)], t, sentences)
    return memory


def _score(question: str, n_filler: int = 1) -> float:
    reasoner = build_reasoner({"backend": "offline"})
    scores = []
    for instance in build_synthetic({**KNOBS, "icl_question": question}, 0)["test"]:
        results = answer_over_memory(
            _examples_and_some_filler(instance, n_filler), instance.questions, instance.source, reasoner
        )
        scores += [r.score for r in results]
    return sum(scores) / len(scores)


def test_default_wording_lets_filler_win_retrieval_and_the_fixed_one_does_not():
    examples_only = _score(DEFAULT_ICL_QUESTION, n_filler=0)
    assert examples_only == _score(FIXED, n_filler=0) >= 0.9
    assert _score(DEFAULT_ICL_QUESTION) < examples_only - 0.3
    assert _score(FIXED) >= examples_only - 0.05


def test_fixed_wording_uses_only_words_every_example_holds():
    words = set(tokenize(FIXED)) - set(tokenize(ICL_FRAME + " Sample Label"))
    assert words == {"which", "fits", "this"}  # in no example and no filler sentence either
    assert {"the", "for"} <= set(tokenize(DEFAULT_ICL_QUESTION))


def test_the_wording_reaches_global_and_chunk_questions_only():
    default = build_synthetic(KNOBS, 0)["test"][0]
    fixed = build_synthetic({**KNOBS, "icl_question": FIXED}, 0)["test"][0]
    assert default.chunks == fixed.chunks and default.metadata == fixed.metadata
    assert all(q.question.endswith("\n" + FIXED) for q in fixed.questions)
    assert all(q.question.endswith("\n" + FIXED) for qs in fixed.chunk_qas for q in qs)
    assert [q.answers for q in default.questions] == [q.answers for q in fixed.questions]
    with pytest.raises(ValueError, match="icl_question"):
        SyntheticConfig(icl_question="two\nlines")
