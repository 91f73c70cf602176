"""SFT on the teacher: decision-weighted loss and teacher replays."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from finemem_lib.agents.sft import build_sft_examples
from finemem_lib.agents.sft_loss import (
    arrow_and_newline_ids,
    decision_mask,
    decision_vocabulary,
    decision_weighted_loss,
    review_decision_mask,
)
from finemem_lib.agents.teacher import TeacherConfig
from finemem_lib.data.synthetic import build_synthetic
from tests.tiny import tiny_policy

CALLS = (
    '<tool_call>\n{"name": "memory_update", "arguments": {"memory_id": "m12", "sentence": 2}}\n</tool_call>\n'
    '<tool_call>\n{"name": "memory_skip", "arguments": {}}\n</tool_call><|im_end|>'
)


@pytest.fixture(scope="module")
def bench():
    return build_synthetic({"train_instances": 1, "test_instances": 0, "chunks_per_instance": 3}, 0)["train"]


@pytest.fixture(scope="module")
def tokenizer(bench):
    return tiny_policy(bench).tokenizer


def test_decisions_are_names_digits_and_what_follows_a_call(tokenizer):
    ids = torch.tensor([tokenizer(CALLS)["input_ids"]])
    vocab, end = decision_vocabulary(tokenizer)
    marked = [tokenizer.decode([int(i)]) for i in ids[0][decision_mask(ids, vocab, end)[0]]]
    assert "update" in marked and "skip" in marked and "<|im_end|>" in marked and "\n" in marked
    assert "".join(t for t in marked if t.strip().isdigit()) == "122"
    assert not {"name", "arguments", "memory", "sentence", '{"'} & set(marked)


def test_weight_one_is_the_plain_token_mean_and_more_weight_raises_decision_errors(tokenizer):
    ids = torch.tensor([tokenizer(CALLS)["input_ids"]])
    labels = ids.clone()
    labels[0, :3] = -100  # a masked prompt part
    torch.manual_seed(0)
    logits = torch.randn(1, ids.size(1), len(tokenizer))
    outputs = SimpleNamespace(logits=logits)
    plain = F.cross_entropy(logits[0, :-1], labels[0, 1:], ignore_index=-100)
    assert torch.allclose(decision_weighted_loss(tokenizer, 1.0)(outputs, labels), plain)
    assert decision_weighted_loss(tokenizer, 5.0)(outputs, labels) > plain
    with pytest.raises(ValueError):
        decision_weighted_loss(tokenizer, 0.0)


def test_replays_repeat_each_prompt_with_other_coin_flips(bench):
    one = build_sft_examples(bench, TeacherConfig(seed=3))
    two = build_sft_examples(bench, TeacherConfig(seed=3), replays=2)
    steps = sum(inst.num_chunks for inst in bench)
    assert len(one) == steps and len(two) == 2 * steps
    T = bench[0].num_chunks  # per instance: its replays one after the other
    assert two[:T] == one[:T]  # the first replay is the teacher itself
    assert two[0]["prompt"] == two[T]["prompt"]  # step 0 of each replay: empty memory, same chunk
    assert all(e in two for e in one)
    assert [e["completion"] for e in two[0::2]] != [e["completion"] for e in two[1::2]]


def test_sentence_numbers_can_follow_their_sentences(bench):
    from finemem_lib.agents.prompts import numbered_sentences, user_prompt

    sentences = ["The pet of Ivo Kelmont is a gecko.", "On Monday, the ferry was late."]
    assert numbered_sentences(sentences) == "1. The pet of Ivo Kelmont is a gecko.\n2. On Monday, the ferry was late."
    after = numbered_sentences(sentences, "after")
    assert after == "The pet of Ivo Kelmont is a gecko. (1)\nOn Monday, the ferry was late. (2)"
    assert after in user_prompt(" ".join(sentences), [], "extractive", numbering="after")
    with pytest.raises(ValueError, match="numbering"):
        numbered_sentences(sentences, "middle")
    examples = build_sft_examples(bench[:1], TeacherConfig(), numbering="after")
    assert "(1)\n" in examples[0]["prompt"][1]["content"]


def test_a_reviews_decisions_are_what_follows_each_lines_arrow():
    bench = build_synthetic({"train_instances": 1, "test_instances": 0, "chunks_per_instance": 3}, 0)["train"]
    tokenizer = tiny_policy(bench, style="review").tokenizer
    review = "1. The job of Ada is a baker. => keep\n2. Rain fell => on the roof. => skip\n3. Now. => update m12\n"
    ids = torch.tensor([tokenizer(review)["input_ids"]])
    arrows, newlines = arrow_and_newline_ids(tokenizer)
    marked = tokenizer.decode(ids[0][review_decision_mask(ids, arrows, newlines)[0]].tolist())
    # a second arrow in a line: what follows the first one counts (the restated sentence never holds one here)
    assert marked.split() == ["keep", "on", "the", "roof.", "=>", "skip", "update", "m12"]
    assert marked.count("\n") == 3  # each line break after a decision is one
    labels = ids.clone()
    labels[0, -4:] = -100  # masked labels are never decisions
    assert not review_decision_mask(labels, arrows, newlines)[0, -4:].any()
    torch.manual_seed(0)
    outputs = SimpleNamespace(logits=torch.randn(1, ids.size(1), len(tokenizer)))
    plain = decision_weighted_loss(tokenizer, 1.0, "review")(outputs, ids)
    assert decision_weighted_loss(tokenizer, 10.0, "review")(outputs, ids) > plain
