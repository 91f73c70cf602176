"""SFT cold start: dataset from the teacher's replay, a few TRL steps, and the held-out check."""

from __future__ import annotations

import json

import pytest
import torch

from finemem_lib.agents.offline_model import build_offline_model, tokenizer_corpus, train_tokenizer
from finemem_lib.agents.policy import Generation, ManagerPolicy, load_manager
from finemem_lib.agents.sft import build_sft_examples, evaluate_format, sft_stats, train_sft_manager
from finemem_lib.agents.teacher import TeacherConfig, replay_teacher
from finemem_lib.core.ops import render_tool_calls, tool_schemas
from finemem_lib.data.synthetic import build_synthetic
from finemem_lib.infra.config import load_profile
from tests.tiny import TINY_MODEL

KNOBS = {"train_instances": 2, "test_instances": 1, "chunks_per_instance": 3, "sentences_per_chunk": 5}

TINY = TINY_MODEL | {"vocab_size": 400}


@pytest.fixture(scope="module")
def bench():
    return build_synthetic(KNOBS, seed=0)


def test_examples_follow_the_teacher_replay(bench):
    teacher = TeacherConfig(seed=2)
    examples = build_sft_examples(bench["train"], teacher, view_k=5)
    steps = [s for inst in bench["train"] for s in replay_teacher(inst, teacher, view_k=5)]
    assert len(examples) == len(steps) == sum(inst.num_chunks for inst in bench["train"])
    for example, step in zip(examples, steps, strict=True):
        user = example["prompt"][1]["content"]
        for item in step.view:
            assert f"[{item.id}] {item.content}" in user
        assert json.loads(example["tools"]) == tool_schemas("extractive")
        calls = example["completion"][0]["tool_calls"]
        assert len(calls) == len(step.ops)
        assert all(isinstance(call["function"]["arguments"], str) for call in calls)
    assert any("[m1]" in ex["prompt"][1]["content"] for ex in examples)


def test_completion_renders_as_the_teacher_ops(bench):
    tokenizer = train_tokenizer(tokenizer_corpus(bench["train"], n_call_examples=20), vocab_size=400)
    example = build_sft_examples(bench["train"][:1])[1]
    step = replay_teacher(bench["train"][0])[1]
    tools = json.loads(example["tools"])
    prompt = tokenizer.apply_chat_template(example["prompt"], tools=tools, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(example["prompt"] + example["completion"], tools=tools, tokenize=False)
    assert full[len(prompt) :] == render_tool_calls(step.ops, "extractive") + "<|im_end|>\n"


def _tiny_cfg(**sft):
    return {
        "seed": 0,
        "memory": {"op_style": "extractive", "view_k": 5},
        "manager": {"model": "offline", "offline": dict(TINY), "max_prompt_tokens": 1024, "batch_size": 8},
        "sft": {"max_steps": 15, "batch_size": 4, "learning_rate": 5e-3, "logging_steps": 1, "num_threads": 1, **sft},
    }


def test_a_few_sft_steps_lower_the_loss_and_save_a_loadable_manager(bench, tmp_path):
    out = train_sft_manager(_tiny_cfg(), bench["train"], tmp_path / "sft")
    for name in ("config.json", "model.safetensors", "tokenizer.json", "finemem_manager.json"):
        assert (out / name).is_file(), name
    stats = sft_stats(out)
    losses = [entry["loss"] for entry in stats["loss_curve"]]
    assert len(losses) >= 10 and min(losses[-3:]) < losses[0]
    assert stats["examples"] == 18 and stats["steps"] == 15 and stats["parameters"] > 0
    assert stats["tokens_per_epoch"] > stats["completion_tokens_per_epoch"] > 0
    policy = load_manager(out)
    assert policy.style == "extractive" and policy.view_k == 5
    report = evaluate_format(policy, bench["test"][:2], n_samples=2, max_prompts=2, max_new_tokens=24)
    for key in ("parse_rate", "format_rate", "finished_rate", "t1_valid_rate", "t1_distinct"):
        assert 0.0 <= report[key] <= 1.0, key
    assert report["steps"] == sum(inst.num_chunks for inst in bench["test"][:2])


class ScriptedPolicy(ManagerPolicy):
    """Answers every prompt with a fixed completion text (to check the evaluation's counting)."""

    def __init__(self, base: ManagerPolicy, text: str) -> None:
        super().__init__(base.model, base.tokenizer, style="extractive")
        self.text = text

    def generate(self, prompt_ids, sampling=None, seed=None):
        one = torch.zeros(1, dtype=torch.long)
        return [Generation(torch.tensor(ids), one, self.text, torch.zeros(1), True) for ids in prompt_ids]


@pytest.fixture(scope="module")
def base_policy(bench):
    tokenizer = train_tokenizer(tokenizer_corpus(bench["train"], n_call_examples=20), vocab_size=400)
    sizes = {k: v for k, v in TINY.items() if k != "vocab_size"}
    return ManagerPolicy(build_offline_model(tokenizer, sizes), tokenizer, style="extractive")


def test_evaluation_counts_invalid_sentences_and_ids(bench, base_policy):
    text = (
        '<tool_call>{"name": "memory_insert", "arguments": {"sentence": 1}}</tool_call>'
        '<tool_call>{"name": "memory_insert", "arguments": {"sentence": 99}}</tool_call>'
        '<tool_call>{"name": "memory_delete", "arguments": {"memory_id": "m404"}}</tool_call>'
    )
    report = evaluate_format(ScriptedPolicy(base_policy, text), bench["test"][:1], n_samples=3, max_prompts=2)
    assert report["parse_rate"] == 1.0
    assert report["sentence_valid_rate"] == 0.5
    assert report["id_valid_rate"] == 0.0
    assert report["format_rate"] == pytest.approx(1 / 3)
    assert report["t1_valid_rate"] == 0.0 and report["t1_distinct"] == pytest.approx(1 / 3)


def test_malformed_output_scores_zero_without_crashing(bench, base_policy):
    report = evaluate_format(ScriptedPolicy(base_policy, '<tool_call>{"name": "memory_ins'), bench["test"][:1])
    assert report["parse_rate"] == 0.0 and report["format_rate"] == 0.0 and report["t1_valid_rate"] == 0.0


def test_training_needs_instances(tmp_path):
    with pytest.raises(ValueError, match="at least one"):
        train_sft_manager(_tiny_cfg(), [], tmp_path)


@pytest.mark.slow
def test_default_profile_sft_gives_parsable_operations_on_unseen_entities(tmp_path):
    cfg = load_profile("default")
    data = build_synthetic(cfg["data"], cfg["seed"])
    out = train_sft_manager(cfg, data["train"], tmp_path / "sft")
    report = evaluate_format(load_manager(out), data["test"], n_samples=4, max_prompts=24)
    assert report["parse_rate"] >= 0.95
    assert report["sentence_valid_rate"] >= 0.95
    assert report["t1_valid_rate"] >= 0.5 and report["t1_distinct"] >= 0.5
