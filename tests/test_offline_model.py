"""The offline tokenizer (trained on the benchmark), its chat template and the small Qwen3 builder."""

from __future__ import annotations

import json

import pytest
import torch

from finemem_lib.agents import prompts
from finemem_lib.agents.offline_model import (
    MARKUP_TOKENS,
    build_offline_model,
    count_parameters,
    load_model,
    save_model,
    tokenizer_corpus,
    train_tokenizer,
)
from finemem_lib.core.memory import Memory, Operation, OpKind
from finemem_lib.core.ops import operation_to_call, parse_operations, render_tool_calls, tool_schemas
from finemem_lib.data.instance import QA, Instance
from tests.tiny import TINY_MODEL

TINY = TINY_MODEL

INSTANCES = [
    Instance(
        "toy/0",
        "synth_factoid",
        (
            "Mira Kelholt lives in the city of Oslo. On Monday, the ferry was closed for repairs.",
            "Mira Kelholt now lives in the city of Lima. The pet of Ivo Tras is a small gecko.",
        ),
        (QA("In which city does Mira Kelholt live?", ("Lima",)),),
    )
]


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(tokenizer_corpus(INSTANCES * 3, n_call_examples=30), vocab_size=500)


def _assistant(ops, style="extractive"):
    calls = [{"type": "function", "function": operation_to_call(op, style)} for op in ops]
    return {"role": "assistant", "content": "", "tool_calls": calls}


OPS = [Operation(OpKind.INSERT, sentence=1), Operation(OpKind.UPDATE, sentence=2, item_id="m3")]


def test_tokenizer_round_trips_unseen_text_and_keeps_markup(tokenizer):
    text = 'Zygmunt Qwopper owns 17 iguanas. <tool_call>\n{"name": "memory_skip", "arguments": {}}\n</tool_call>'
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == text
    for token in MARKUP_TOKENS:
        assert len(tokenizer(token, add_special_tokens=False)["input_ids"]) == 1
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token_id != tokenizer.eos_token_id
    assert tokenizer.padding_side == "left"


def test_digits_are_single_tokens(tokenizer):
    pieces = tokenizer.tokenize("sentence 12")
    assert "1" in pieces and "2" in pieces


def test_chat_template_renders_tool_calls_like_the_ops_module(tokenizer):
    messages = prompts.build_messages(INSTANCES[0].chunks[0], [], "extractive")
    tools = tool_schemas("extractive")
    prompt = tokenizer.apply_chat_template(messages, tools=tools, tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template([*messages, _assistant(OPS)], tools=tools, tokenize=False)
    assert full.startswith(prompt)
    completion = full[len(prompt) :]
    assert completion == render_tool_calls(OPS, "extractive") + "<|im_end|>\n"
    assert parse_operations(completion, "extractive").operations == OPS
    for tool in tools:
        assert tool["function"]["name"] in prompt


def test_chat_template_accepts_json_string_arguments(tokenizer):
    messages = prompts.build_messages(INSTANCES[0].chunks[0], [], "extractive")
    as_string = _assistant(OPS)
    for call in as_string["tool_calls"]:
        call["function"]["arguments"] = json.dumps(call["function"]["arguments"])
    a = tokenizer.apply_chat_template([*messages, as_string], tokenize=False)
    b = tokenizer.apply_chat_template([*messages, _assistant(OPS)], tokenize=False)
    assert a == b


def test_assistant_mask_covers_only_the_completion(tokenizer):
    messages = prompts.build_messages(INSTANCES[0].chunks[0], [], "extractive")
    out = tokenizer.apply_chat_template(
        [*messages, _assistant(OPS)],
        tools=tool_schemas("extractive"),
        return_dict=True,
        return_assistant_tokens_mask=True,
    )
    mask = out["assistant_masks"]
    ids = out["input_ids"]
    marked = [i for i, bit in zip(ids, mask, strict=True) if bit]
    assert 0 < len(marked) < len(ids)
    assert tokenizer.decode(marked).startswith("<tool_call>")
    assert mask[-2] == 1 and mask[0] == 0  # <|im_end|> is learned, the system turn is not


def test_model_is_small_and_sized_by_config(tokenizer):
    small = build_offline_model(tokenizer, TINY)
    bigger = build_offline_model(tokenizer, {**TINY, "num_hidden_layers": 2})
    assert small.config.vocab_size == len(tokenizer)
    assert 0 < count_parameters(small) < count_parameters(bigger) < 200_000
    with pytest.raises(ValueError, match="unknown model size"):
        build_offline_model(tokenizer, {"hidden_sizes": 3})


def test_save_and_load_round_trip(tokenizer, tmp_path):
    model = build_offline_model(tokenizer, TINY, seed=3)
    save_model(model, tokenizer, tmp_path / "m")
    loaded, loaded_tok = load_model(tmp_path / "m")
    ids = torch.tensor([loaded_tok("Mira lives in Oslo.")["input_ids"]])
    with torch.no_grad():
        assert torch.allclose(model(ids).logits, loaded(ids).logits, atol=1e-6)
    assert loaded_tok.chat_template == tokenizer.chat_template
    memory = Memory(id_style="short")
    memory.apply(Operation(OpKind.INSERT, content="Mira lives in Oslo."), 0)
    messages = prompts.build_messages("A. B.", memory.view(5), "extractive")
    assert loaded_tok.apply_chat_template(messages, tokenize=False) == tokenizer.apply_chat_template(
        messages, tokenize=False
    )


def test_load_model_names_the_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        load_model(tmp_path / "nothing-here")


def test_tokenizer_rejects_tiny_vocab():
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer(["hello"], vocab_size=100)
