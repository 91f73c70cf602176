"""The memory length of every summary row: RAG's retrieved text, long context's window, never NaN."""

import numpy as np

from finemem_lib.agents.reasoner_factory import build_reasoner
from finemem_lib.core.tokens import regex_token_count
from finemem_lib.data.instance import QA, Instance
from finemem_lib.episodes.baselines import tail_window
from finemem_lib.episodes.qa import QAResult
from finemem_lib.evaluation.memory_length import baseline_memory_tokens, raw_item_texts, retrieved_memory
from finemem_lib.evaluation.methods import baseline_result

CHUNKS = (
    "Ada Brook lives in Porto. She keeps bees.",
    "Ben Cole repairs organs in Leeds.",
    "Cy Dale grows pears by the river. The river floods in spring.",
)
INSTANCE = Instance(
    "mysrc/0",
    "squad",
    CHUNKS,
    (QA("Where does Ada Brook live?", ("Porto",)), QA("What does Ben Cole repair?", ("organs",))),
)
CFG = {"retrieval": {"top_k": 1}, "baselines": {"long_context_tokens": 12}}


def _result(*ids: str) -> QAResult:
    return QAResult("q", ("g",), "p", 0.0, ids, tuple(0 for _ in ids), "squad")


def test_retrieved_memory_is_the_mean_over_questions_of_the_retrieved_text():
    lookup = raw_item_texts(INSTANCE)
    # c0: 10 pieces ("Ada Brook lives in Porto ." + "She keeps bees ."), c1: 7, c2: 14
    assert [regex_token_count(lookup[c]) for c in ("c0", "c1", "c2")] == [10, 7, 14]
    assert retrieved_memory([_result("c0"), _result("c1", "c2")], lookup) == (round((10 + 21) / 2), round(3 / 2))
    assert retrieved_memory([], lookup) == (0, 0)
    assert regex_token_count(lookup["c0.s1"]) == 4  # sentence items (the offline reader) count the same way


def test_every_baseline_has_a_memory_length():
    reasoner = build_reasoner({"backend": "offline"})
    window = sum(regex_token_count(i.content) for i in tail_window(INSTANCE, 12))
    for name in ("rag_bm25", "long_context", "store_everything", "closed_book"):
        result = baseline_result(name, INSTANCE, reasoner, CFG)
        tokens = baseline_memory_tokens(name, INSTANCE, result.results, CFG)
        assert result.memory_tokens == tokens and not np.isnan(tokens), name
        if name == "rag_bm25":  # top-1 chunk per question, not all three chunks (31 tokens)
            per_question = [sum(regex_token_count(t) for t in texts) for texts in result.evidence_texts]
            assert tokens == round(np.mean(per_question)) and tokens < 31
        if name == "long_context":
            assert tokens == window and 0 < window <= 12
        if name == "closed_book":
            assert tokens == 0


def test_the_in_memory_summary_has_no_missing_memory_length():
    from finemem_lib.evaluation.per_instance import evaluate_baselines, summary_table

    frame = evaluate_baselines([INSTANCE], build_reasoner({"backend": "offline"}), CFG)
    assert frame["memory_tokens"].notna().all()  # was NaN for rag_bm25 and long_context
    assert summary_table(frame)["memory_tokens"].notna().all()
