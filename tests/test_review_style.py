"""The review op style: one line per sentence, restated, then the decision; parsed, rendered, taught, probed."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from finemem_lib.agents import prompts
from finemem_lib.agents.sft import build_sft_examples
from finemem_lib.core.memory import Memory, Operation, OpKind
from finemem_lib.core.ops import MAX_CALLS, format_score, parse_operations, render_tool_calls, tool_schemas
from finemem_lib.core.review import parse_review_line, render_review
from finemem_lib.data.roles import sentence_kinds
from finemem_lib.data.synthetic import build_synthetic
from finemem_lib.evaluation.content_probe import kind_of, probe
from tests.tiny import tiny_policy

SENTENCES = ["Last week, a van hosted a concert.", "The job of Ada Lund is a baker.", "Ada Lund now bakes pies."]


def test_each_decision_parses_to_its_operation():
    assert parse_review_line("2. The job of Ada Lund is a baker. => keep") == (Operation(OpKind.INSERT, sentence=2), "")
    assert parse_review_line("1. Last week. => skip") == (Operation(OpKind.SKIP), "")
    assert parse_review_line("3. Ada Lund now bakes pies. => update m4") == (
        Operation(OpKind.UPDATE, sentence=3, item_id="m4"),
        "",
    )
    assert parse_review_line("4. => delete [m2]") == (Operation(OpKind.DELETE, item_id="m2"), "")
    assert parse_review_line("  7: Text => KEEP ")[0] == Operation(OpKind.INSERT, sentence=7)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("The job of Ada Lund is a baker. => keep", "review line"),
        ("2. The job of Ada Lund is a baker.", "review line"),
        ("2. The job of Ada Lund is a baker. => remember", "unknown decision"),
        ("3. Ada Lund now bakes pies. => update", "needs a memory id"),
    ],
)
def test_a_line_that_is_not_a_decision_is_an_invalid_call_with_its_reason(line, reason):
    op, error = parse_review_line(line)
    assert op is None and reason in error
    parsed = parse_operations(f"1. {SENTENCES[0]} => skip\n{line}", "review")
    assert parsed.n_emitted == 2 and parsed.n_valid == 1
    assert reason in parsed.calls[1].error


def test_render_then_parse_gives_back_the_operations():
    ops = [Operation(OpKind.INSERT, sentence=2), Operation(OpKind.UPDATE, sentence=3, item_id="m1")]
    text = render_tool_calls(ops, "review", SENTENCES)
    assert text.splitlines()[0] == f"1. {SENTENCES[0]} => skip"
    parsed = parse_operations(text, "review")
    assert parsed.n_emitted == parsed.n_valid == 3
    assert [op for op in parsed.operations if op.kind is not OpKind.SKIP] == ops


def test_a_delete_takes_a_skipped_line_or_a_line_of_its_own():
    delete = Operation(OpKind.DELETE, item_id="m3")
    assert render_review([delete], SENTENCES).splitlines()[0].endswith("=> delete m3")
    every = [Operation(OpKind.INSERT, sentence=n) for n in (1, 2, 3)]
    text = render_review([*every, delete], SENTENCES)
    assert text.splitlines()[-1] == "4. => delete m3"
    assert parse_operations(text, "review").operations[-1] == delete


def test_lines_past_the_cap_are_one_invalid_call():
    parsed = parse_operations("\n".join(f"{n}. x => skip" for n in range(1, MAX_CALLS + 5)), "review")
    assert parsed.n_emitted == MAX_CALLS + 1 and not parsed.calls[-1].valid


def test_a_review_applied_to_memory_stores_the_kept_sentences_and_scores_its_format():
    memory = Memory(id_style="short")
    parsed = parse_operations(render_review([Operation(OpKind.INSERT, sentence=2)], SENTENCES), "review")
    results = memory.apply_all(parsed.operations, 0, SENTENCES)
    assert [item.content for item in memory.items] == [SENTENCES[1]]
    assert format_score(parsed, results) == 1.0
    assert parse_operations("", "review").n_emitted == 0


def test_the_prompt_numbers_the_sentences_and_offers_no_tools():
    assert tool_schemas("review") == []
    text = prompts.user_prompt(" ".join(SENTENCES), [], "review")
    assert "1. Last week, a van hosted a concert." in text and "=>" in text
    assert "review its sentences" in prompts.system_prompt("review")


@pytest.fixture(scope="module")
def data():
    return build_synthetic({"synthetic": {"train_instances": 2, "test_instances": 2, "chunks_per_instance": 3}}, 0)


def test_sft_examples_review_every_sentence_of_every_chunk(data):
    examples = build_sft_examples(data["train"], style="review")
    assert len(examples) == sum(i.num_chunks for i in data["train"])
    for example in examples:
        chunk = example["prompt"][1]["content"].split("<new_chunk>\n")[1].split("\n</new_chunk>")[0]
        review = example["completion"][0]["content"]
        assert "tool_calls" not in example["completion"][0]
        assert len(review.splitlines()) == len(chunk.splitlines())
        for shown, line in zip(chunk.splitlines(), review.splitlines(), strict=True):
            assert line.startswith(shown + " => ")
        parsed = parse_operations(review, "review")
        assert parsed.n_valid == parsed.n_emitted > 0


class _ReviewStub(torch.nn.Module):
    """Next-token logits after ``N. sentence =>``: ' keep' when the sentence is in ``keep`` (a manager that
    reads), else ' skip'; with ``keep`` None, ' keep' on odd lines whatever they say (one that goes by position)."""

    def __init__(self, tokenizer, keep: set[str] | None):
        super().__init__()
        self.tokenizer, self.keep = tokenizer, keep
        self.keep_id = tokenizer(" keep", add_special_tokens=False).input_ids[0]
        self.skip_id = tokenizer(" skip", add_special_tokens=False).input_ids[0]
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def forward(self, ids):
        logits = torch.zeros(ids.shape[0], ids.shape[1], len(self.tokenizer))
        last = self.tokenizer.decode(ids[0]).splitlines()[-1]
        number, _, sentence = last.removesuffix("=>").strip().partition(". ")
        store = int(number) % 2 == 1 if self.keep is None else sentence in self.keep
        logits[0, -1, self.keep_id if store else self.skip_id] = 12.0
        return SimpleNamespace(logits=logits)


def test_the_probe_reads_a_review_decision_after_its_sentence(data):
    instances = data["test"]
    policy = tiny_policy(data["train"] + instances, style="review")
    facts = {
        sentence
        for instance in instances
        for chunk, kinds in zip(instance.chunks, sentence_kinds(instance), strict=True)
        for sentence, kind in zip(prompts.chunk_sentences(chunk), kinds, strict=True)
        if kind_of(kind) == "fact"
    }
    policy.model = _ReviewStub(policy.tokenizer, facts)
    reading = probe(policy, instances)
    assert reading["fact_minus_filler"] > 0.5
    assert reading["swap"]["fact->filler"]["mean_change"] < -0.5
    policy.model = _ReviewStub(policy.tokenizer, None)
    blind = probe(policy, instances)
    assert blind["fact_over_filler"] == pytest.approx(1.0, abs=0.2)
    assert all(abs(v["mean_change"]) < 1e-6 for v in blind["swap"].values())


class _Reviewer(torch.nn.Module):
    """``generate`` answers every prompt with a review of its chunk that keeps the odd-numbered sentences."""

    def __init__(self, tokenizer):
        super().__init__()
        self.tokenizer = tokenizer
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def generate(self, ids, **_):
        chunk = self.tokenizer.decode(ids[0]).split("<new_chunk>\n")[-1].split("\n</new_chunk>")[0].splitlines()
        sentences = [line.split(". ", 1)[1] for line in chunk]
        ops = [Operation(OpKind.INSERT, sentence=n) for n in range(1, len(sentences) + 1, 2)]
        review = self.tokenizer(render_review(ops, sentences), add_special_tokens=False, return_tensors="pt")
        return torch.cat([ids, review.input_ids], dim=1)


def test_restatement_counts_exact_lines_and_what_a_review_keeps(data):
    from finemem_lib.agents.teacher import TeacherConfig
    from finemem_lib.evaluation.content_probe import restatement

    instances = data["test"]
    policy = tiny_policy(data["train"] + instances, style="review")
    policy.model = _Reviewer(policy.tokenizer)
    report = restatement(policy, instances, TeacherConfig(), max_steps=4)
    assert report["steps"] == 4 and report["lines"] > 20
    assert report["restated_exactly"] == 1.0
    assert 0.0 < report["kept"]["fact"] < 1.0  # odd positions kept, whatever the sentence says


def test_harness_restates_every_line_and_the_manager_writes_only_decisions(data):
    from finemem_lib.agents.policy import SamplingParams
    from finemem_lib.agents.review_decoding import restated_line

    policy = tiny_policy(data["train"], style="review")
    assert policy.restate == "harness"
    chunks = data["test"][0].chunks[:2]
    steps, generations = policy.act(chunks, [Memory(id_style="short"), Memory(id_style="short")], SamplingParams(), 7)
    for step, generation in zip(steps, generations, strict=True):
        lines = generation.text.splitlines()
        assert 1 <= len(generation.segments) <= len(step.sentences)
        for number, (line, segment) in enumerate(zip(lines, generation.segments, strict=False), start=1):
            head = restated_line(number, step.sentences[number - 1])
            assert line.startswith(head)  # the sentence as the chunk has it, whatever the weights
            assert segment.prompt_ids[: len(step.ids)].tolist() == step.ids
            assert policy.tokenizer.decode(segment.prompt_ids[len(step.ids) :]).endswith(head)
            assert 1 <= len(segment.completion_ids) == len(segment.logprobs)
        assert torch.equal(generation.completion_ids, torch.cat([s.completion_ids for s in generation.segments]))
    again = policy.act(chunks, [Memory(id_style="short"), Memory(id_style="short")], SamplingParams(), 7)[1]
    assert [g.text for g in again] == [g.text for g in generations]  # seeded


def test_each_decision_is_a_training_sample_with_its_steps_advantage(data):
    from finemem_lib.agents.review_decoding import Segment
    from finemem_lib.core.reward_spec import RewardSpec
    from finemem_lib.episodes.rollout import Episode, StepRecord
    from finemem_lib.training.samples import step_samples

    def record(t: int, decisions: int, fmt: float) -> StepRecord:
        segments = [
            Segment(torch.arange(5 + n), torch.tensor([9, 10 + n]), torch.tensor([-0.5, -0.25]))
            for n in range(decisions)
        ]
        return StepRecord(
            t, torch.arange(5), torch.cat([s.completion_ids for s in segments]), torch.zeros(2 * decisions), "",
            [], [], 1, fmt, 0, 0, np.zeros(0), segments=segments,
        )  # fmt: skip

    groups = []
    for _ in range(1):
        group = []
        for g in range(2):
            episode = Episode("i", "synth_factoid", g, [10, 10])
            episode.steps = [record(0, 3, 1.0 - 0.5 * g), record(1, 2, 1.0)]
            episode.global_results = []
            group.append(episode)
        groups.append(group)
    samples, credit = step_samples(groups, RewardSpec.of("or_only"))
    assert len(samples) == 2 * (3 + 2)
    for sample in samples:
        assert sample.advantage == pytest.approx(float(credit.advantages[0][sample.rollout, sample.step]))
        assert sample.completion_ids.tolist()[0] == 9 and sample.sampling_logprobs.tolist() == [-0.5, -0.25]
    assert any(sample.advantage != 0.0 for sample in samples)


def test_a_line_splits_into_number_restated_sentence_and_decision():
    from finemem_lib.core.review import restated_line, split_review_line

    line = f"{restated_line(2, SENTENCES[1])} update m4"
    assert split_review_line(line) == (2, SENTENCES[1], "update m4")
    assert split_review_line(SENTENCES[1] + " => keep") is None  # no number
    assert split_review_line("2. " + SENTENCES[1]) is None  # no decision
    long_line = "1. " + " " * 100_000 + "x"  # no arrow: rejected without scanning the line twice per space
    assert parse_review_line(long_line)[0] is None


class _Updater(torch.nn.Module):
    """After a review line's arrow: ``update`` when the line's sentence says ``now`` or ``These days``, else keep."""

    def __init__(self, tokenizer):
        super().__init__()
        self.tokenizer = tokenizer
        self.ids = {w: tokenizer(" " + w, add_special_tokens=False).input_ids[0] for w in ("keep", "update")}
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    def forward(self, ids):
        logits = torch.zeros(ids.shape[0], ids.shape[1], len(self.tokenizer))
        last = self.tokenizer.decode(ids[0]).splitlines()[-1]
        changed = " now " in last or "These days" in last
        logits[0, -1, self.ids["update" if changed else "keep"]] = 12.0
        return SimpleNamespace(logits=logits)


def test_the_decision_probe_tells_when_a_start_updates():
    from finemem_lib.agents.teacher import TeacherConfig
    from finemem_lib.evaluation.content_probe import review_decisions

    spec = {"sources": ["synth_update"], "train_instances": 2, "test_instances": 2, "chunks_per_instance": 4}
    data = build_synthetic({"synthetic": spec}, 0)
    policy = tiny_policy(data["train"] + data["test"], style="review")
    policy.model = _Updater(policy.tokenizer)
    report = review_decisions(policy, data["test"], TeacherConfig(p_update=1.0))
    assert {"fact", "update", "distractor"} <= set(report)
    assert report["update"]["model"]["update"] > 0.99 and report["fact"]["model"]["update"] < 0.01
    assert report["fact"]["model"]["keep"] > 0.99
    for role in report.values():  # the teacher's decisions on the probed lines: shares of one
        assert sum(role["teacher"].values()) == pytest.approx(1.0) and role["lines"] > 0
    assert report["distractor"]["teacher"]["update"] == 0
