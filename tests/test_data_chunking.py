"""Sentence packing under a token budget, and the pluggable token counter."""

import itertools
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from finemem_lib.core.sentences import split_sentences
from finemem_lib.core.tokens import regex_token_count
from finemem_lib.data.chunking import (
    DEFAULT_CHUNK_SIZE,
    TTL_CHUNK_SIZE,
    chunk_text,
    default_chunk_size,
    make_token_counter,
    pack_sentences,
)


def words(n: int, start: int = 0) -> str:
    """A sentence body of ``n`` one-token words, capitalised so the splitter sees a sentence start."""
    return " ".join(f"w{i}" for i in range(start, start + n)).capitalize()


def test_empty_or_blank_text_gives_no_chunks():
    assert chunk_text("", 10) == []
    assert chunk_text("   \n\n  ", 10) == []


def test_sentences_are_packed_greedily_within_the_budget():
    text = f"{words(3)}. {words(3, 10)}. {words(3, 20)}. {words(3, 30)}."  # 4 tokens per sentence
    chunks = chunk_text(text, chunk_size=8)
    assert chunks == [f"{words(3)}. {words(3, 10)}.", f"{words(3, 20)}. {words(3, 30)}."]
    assert chunk_text(text, chunk_size=7) == [s for s in split_sentences(text)]
    assert chunk_text(text, chunk_size=1000) == [text]


def test_an_oversize_sentence_stays_whole_in_its_own_chunk():
    long_sentence = f"{words(30)}."
    text = f"Short one. {long_sentence} Short two."
    chunks = chunk_text(text, chunk_size=5)
    assert chunks == ["Short one.", long_sentence, "Short two."]


def test_a_single_sentence_text_is_one_chunk():
    assert chunk_text("Just one sentence without a final stop", chunk_size=3) == [
        "Just one sentence without a final stop"
    ]


def test_the_token_counter_is_pluggable():
    text = "Aaaa bb. Cc dddd. Ee ff."
    by_chars = chunk_text(text, chunk_size=12, count_tokens=len)  # sentences of 8, 9 and 7 characters
    assert by_chars == ["Aaaa bb.", "Cc dddd.", "Ee ff."]
    assert chunk_text(text, chunk_size=12) == [text]  # 9 regex tokens in all


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="chunk_size"):
        pack_sentences(["a."], 0, regex_token_count)
    with pytest.raises(TypeError, match="string"):
        chunk_text(None)  # type: ignore[arg-type]


def test_default_chunk_sizes_follow_mem_alpha():
    assert default_chunk_size("Test_Time_Learning") == TTL_CHUNK_SIZE == 1024
    for split in ("Accurate_Retrieval", "Long_Range_Understanding", "Conflict_Resolution"):
        assert default_chunk_size(split) == DEFAULT_CHUNK_SIZE == 2048


def test_unavailable_tokenizer_falls_back_to_regex_or_raises_when_strict(tmp_path, caplog):
    missing = tmp_path / "no-tokenizer-here"
    with caplog.at_level(logging.WARNING):
        counter = make_token_counter(missing)
    assert counter is regex_token_count and "regex fallback" in caplog.text
    with pytest.raises(FileNotFoundError, match="not available offline"):
        make_token_counter(missing, strict=True)
    assert make_token_counter(None) is regex_token_count and make_token_counter("regex") is regex_token_count


sentence = st.lists(st.sampled_from(["alpha", "beta", "gamma", "delta", "x1", "y22"]), min_size=1, max_size=12).map(
    lambda ws: " ".join(ws).capitalize() + "."
)


@settings(max_examples=60, deadline=None)
@given(st.lists(sentence, max_size=30), st.integers(min_value=1, max_value=40))
def test_packing_keeps_every_sentence_in_order_and_respects_the_budget(sentences, budget):
    text = " ".join(sentences)
    chunks = chunk_text(text, chunk_size=budget)
    assert " ".join(chunks) == " ".join(split_sentences(text))
    for chunk in chunks:
        parts = split_sentences(chunk)
        assert sum(regex_token_count(p) for p in parts) <= budget or len(parts) == 1
    for left, right in itertools.pairwise(chunks):  # greedy: the next sentence would not have fit
        first_next = split_sentences(right)[0]
        assert sum(regex_token_count(p) for p in split_sentences(left)) + regex_token_count(first_next) > budget
