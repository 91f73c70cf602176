"""The content probe tells a manager that reads the chunk from one that chooses by position."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from finemem_lib.agents import prompts
from finemem_lib.data.roles import sentence_kinds
from finemem_lib.data.synthetic import build_synthetic
from finemem_lib.evaluation.content_probe import insert_prefix, kind_of, number_tokens, probe
from tests.tiny import tiny_policy


class _Stub(torch.nn.Module):
    """Logits for the next token: +4 on the number of every chunk line in ``keep`` (a manager that reads), or
    a fixed preference for small numbers whatever the text (``keep`` None: one that chooses by position)."""

    def __init__(self, tokenizer, keep: set[str] | None):
        super().__init__()
        self.tokenizer, self.keep = tokenizer, keep
        self.numbers = number_tokens(tokenizer, 9)
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # a device for the policy to read

    def forward(self, ids):
        logits = torch.zeros(ids.shape[0], ids.shape[1], len(self.tokenizer))
        text = self.tokenizer.decode(ids[0])
        lines = text.split("<new_chunk>")[-1].split("</new_chunk>")[0].strip().splitlines()
        for number, token in self.numbers.items():
            logits[0, -1, token] = -0.5 * number
        for line in lines:
            head, _, sentence = line.partition(". ")
            if self.keep is not None and head.isdigit() and sentence in self.keep and int(head) in self.numbers:
                logits[0, -1, self.numbers[int(head)]] += 4.0
        return SimpleNamespace(logits=logits)


@pytest.fixture(scope="module")
def setup():
    data = build_synthetic({"synthetic": {"train_instances": 2, "test_instances": 2, "chunks_per_instance": 3}}, 0)
    instances = data["test"]
    policy = tiny_policy(data["train"] + instances)
    facts = set()
    for instance in instances:
        for chunk, kinds in zip(instance.chunks, sentence_kinds(instance), strict=True):
            for sentence, kind in zip(prompts.chunk_sentences(chunk), kinds, strict=True):
                if kind_of(kind) == "fact":
                    facts.add(sentence)
    return policy, instances, facts


def test_insert_prefix_ends_where_the_sentence_number_goes(setup):
    policy, _, _ = setup
    prefix = insert_prefix(policy)
    assert prefix.rstrip().endswith('"sentence":')
    assert "memory_insert" in prefix


def test_a_reading_manager_shows_a_gap_and_follows_swaps(setup):
    policy, instances, facts = setup
    policy.model = _Stub(policy.tokenizer, facts)
    report = probe(policy, instances)
    assert report["steps"] == sum(i.num_chunks for i in instances)
    assert report["fact_minus_filler"] > 0.0
    assert report["fact_over_filler"] > 5.0
    assert report["swap"]["filler->fact"]["mean_change"] > 0.01
    assert report["swap"]["fact->filler"]["mean_change"] < -0.01


def test_a_positional_manager_shows_none(setup):
    policy, instances, _ = setup
    policy.model = _Stub(policy.tokenizer, None)
    report = probe(policy, instances)
    assert abs(report["fact_minus_filler"]) < 1e-9
    assert report["fact_over_filler"] == pytest.approx(1.0)
    assert all(abs(v["mean_change"]) < 1e-9 for v in report["swap"].values())
    first = report["by_position"]["1"]
    assert all(0.0 < p < 1.0 for p in first.values())


def test_pair_fit_separates_a_fact_first_prompt_from_a_filler_first_one(setup):
    from finemem_lib.evaluation.content_probe import pair_fit

    policy, instances, _ = setup
    policy = tiny_policy(instances)
    before = [p.detach().clone() for p in policy.model.parameters()]
    trace = pair_fit(policy, instances, steps=60, lr=3e-3)
    assert [t["step"] for t in trace] == list(range(0, 61, 5))
    assert abs(trace[0]["fact_first"] - trace[0]["filler_first"]) < 0.01  # random weights: no preference yet
    assert trace[-1]["fact_first"] - trace[-1]["filler_first"] > 0.3
    assert all(torch.equal(a, b) for a, b in zip(before, policy.model.parameters(), strict=True))  # a copy is fitted


def test_decision_fit_trains_a_copy_on_first_decisions(setup):
    from finemem_lib.agents.teacher import TeacherConfig
    from finemem_lib.evaluation.content_probe import decision_fit

    policy, instances, _ = setup
    policy = tiny_policy(instances)
    before = [p.detach().clone() for p in policy.model.parameters()]
    fitted = decision_fit(policy, instances, TeacherConfig(), steps=3, batch=2)
    assert fitted.model is not policy.model
    assert any(not torch.equal(a, b) for a, b in zip(before, fitted.model.parameters(), strict=True))
    assert all(torch.equal(a, b) for a, b in zip(before, policy.model.parameters(), strict=True))
    assert probe(fitted, instances)["steps"] == sum(i.num_chunks for i in instances)
