"""Offline manager models: a tokenizer trained on the benchmark's text and a small Qwen3 built from a config.

Nothing is downloaded. The tokenizer is a byte-level BPE (any text encodes, digits are split one
by one so sentence numbers and memory ids generalise) trained with ``tokenizers`` on the
benchmark's chunks and questions plus the manager's prompt and tool-call text. Its chat template
renders system/user/assistant turns, ``tools`` and tool calls the way Qwen3's does
(``<tool_call>\\n{"name": ..., "arguments": ...}\\n</tool_call>``), with the tool list in a compact
one-line-per-function form to keep prompts short. The model is a ``Qwen3ForCausalLM`` of a few
million parameters whose sizes come from the profile.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
    Qwen3Config,
    Qwen3ForCausalLM,
)

from finemem_lib.agents import prompts
from finemem_lib.core.memory import Operation, OpKind
from finemem_lib.core.ops import NUMBERED_STYLES, STYLES, render_tool_calls, tool_schemas
from finemem_lib.data.instance import Instance

PAD_TOKEN = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = [PAD_TOKEN, IM_START, IM_END]
# Markup kept as single tokens but not "special", so decoding keeps them in the text.
MARKUP_TOKENS = ["<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<new_chunk>", "</new_chunk>"]

CHAT_TEMPLATE = """
{%- if tools %}
{{- '<|im_start|>system\\n' }}
{%- if messages[0].role == 'system' %}{{- messages[0].content + '\\n\\n' }}{%- endif %}
{{- '# Tools\\nCall functions as <tool_call>{"name": <function-name>, "arguments": <args-json-object>}</tool_call>.' }}
{%- for tool in tools %}
{%- set fn = tool.function if tool.function is defined else tool %}
{{- '\\n- ' + fn.name + '(' }}
{%- if fn.parameters is defined and fn.parameters.properties is defined %}
{%- for name, spec in fn.parameters.properties.items() %}
{{- name + ': ' + (spec.type if spec.type is defined else 'any') }}{%- if not loop.last %}{{- ', ' }}{%- endif %}
{%- endfor %}
{%- endif %}
{{- '): ' + (fn.description if fn.description is defined else '') }}
{%- endfor %}
{{- '<|im_end|>\\n' }}
{%- elif messages[0].role == 'system' %}
{{- '<|im_start|>system\\n' + messages[0].content + '<|im_end|>\\n' }}
{%- endif %}
{%- for message in messages %}
{%- if message.role == 'system' and loop.first %}
{%- elif message.role == 'assistant' %}
{{- '<|im_start|>assistant\\n' }}
{%- generation %}
{%- if message.content %}{{- message.content }}{%- endif %}
{%- if message.tool_calls %}
{%- for tc in message.tool_calls %}
{%- set call = tc.function if tc.function is defined else tc %}
{%- if (loop.first and message.content) or not loop.first %}{{- '\\n' }}{%- endif %}
{{- '<tool_call>\\n{"name": "' + call.name + '", "arguments": ' }}
{%- if call.arguments is string %}{{- call.arguments }}{%- else %}{{- call.arguments | tojson }}{%- endif %}
{{- '}\\n</tool_call>' }}
{%- endfor %}
{%- endif %}
{{- '<|im_end|>' }}
{%- endgeneration %}
{{- '\\n' }}
{%- elif message.role == 'tool' %}
{{- '<|im_start|>user\\n<tool_response>\\n' + message.content + '\\n</tool_response><|im_end|>\\n' }}
{%- else %}
{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}
{%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}
""".strip()

DEFAULT_MODEL_SIZES: dict[str, Any] = {
    "hidden_size": 256,
    "intermediate_size": 768,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 64,
    "max_position_embeddings": 2048,
    "rope_theta": 10000.0,
}


# ---------------------------------------------------------------------------- tokenizer
def _example_calls(style: str, rng: random.Random) -> str:
    """Tool-call text with varied sentence numbers and ids, so the tokenizer sees the call syntax."""
    ops: list[Operation] = []
    for _ in range(rng.randint(1, 4)):
        kind = rng.choice([OpKind.INSERT, OpKind.INSERT, OpKind.UPDATE, OpKind.DELETE, OpKind.SKIP])
        item_id = f"m{rng.randint(1, 60)}" if kind in (OpKind.UPDATE, OpKind.DELETE) else None
        if style in NUMBERED_STYLES:
            ops.append(Operation(kind, sentence=rng.randint(1, 30), item_id=item_id))
        else:
            ops.append(Operation(kind, content="the fact to keep", item_id=item_id))
    if style == "review":  # a review names every sentence once, in order
        numbers = sorted({op.sentence for op in ops if op.sentence is not None})
        ops = [op for op in ops if op.kind is not OpKind.SKIP]
        sentences = [f"Example sentence {number}." for number in range(1, max(numbers, default=0) + 2)]
        return render_tool_calls(ops, style, sentences)
    return render_tool_calls(ops, style)


def tokenizer_corpus(
    instances: Iterable[Instance], styles: Sequence[str] = STYLES, n_call_examples: int = 200, seed: int = 0
) -> Iterator[str]:
    """Texts to train the tokenizer on: the benchmark's chunks, questions and answers, plus the
    manager's instructions, rendered tool schemas and example tool calls."""
    for instance in instances:
        yield from instance.chunks
        for qa in (*instance.questions, *(qa for qas in instance.chunk_qas for qa in qas)):
            yield qa.question
            yield " ".join(qa.answers)
    tokenizer_for_render = _bare_template_renderer()
    rng = random.Random(seed)
    for style in styles:
        # The prompt text occurs in every training example: repeat it so BPE learns its words whole.
        messages = prompts.build_messages("Example sentence one. Example sentence two.", [], style)
        for _ in range(n_call_examples):
            yield tokenizer_for_render(messages, tool_schemas(style))
            yield prompts.EMPTY_MEMORY
            yield _example_calls(style, rng)


def _bare_template_renderer():
    """Render the chat template without a tokenizer (for building the tokenizer's own corpus)."""
    from transformers.utils.chat_template_utils import render_jinja_template

    def render(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> str:
        rendered, _ = render_jinja_template(
            conversations=[messages], tools=tools, chat_template=CHAT_TEMPLATE, add_generation_prompt=True
        )
        return rendered[0]

    return render


def train_tokenizer(texts: Iterable[str], vocab_size: int = 4096, min_frequency: int = 2) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer with the chat template and the chat/tool special tokens.

    ``<|im_end|>`` is the end-of-sequence token, ``<|endoftext|>`` the padding token; padding is on the
    left, as batched generation needs.
    """
    if vocab_size < 300:
        raise ValueError(f"vocab_size must be at least 300 (256 bytes + special tokens), got {vocab_size}")
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(texts, trainer=trainer)
    backend.add_tokens([AddedToken(token, special=False, normalized=False) for token in MARKUP_TOKENS])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=IM_END,
        pad_token=PAD_TOKEN,
        padding_side="left",
        model_max_length=DEFAULT_MODEL_SIZES["max_position_embeddings"],
    )
    tokenizer.add_special_tokens({"additional_special_tokens": [IM_START]})
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer


# ---------------------------------------------------------------------------- model
def build_offline_model(tokenizer: PreTrainedTokenizerBase, sizes: dict[str, Any] | None = None, seed: int = 0):
    """A randomly initialised ``Qwen3ForCausalLM`` sized by ``sizes`` (defaults: DEFAULT_MODEL_SIZES)."""
    import torch

    unknown = set(sizes or {}) - set(DEFAULT_MODEL_SIZES) - {"tie_word_embeddings", "attention_dropout"}
    if unknown:
        raise ValueError(f"unknown model size keys {sorted(unknown)}; known: {sorted(DEFAULT_MODEL_SIZES)}")
    params = {**DEFAULT_MODEL_SIZES, "tie_word_embeddings": True, **(sizes or {})}
    config = Qwen3Config(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.convert_tokens_to_ids(IM_START),
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        use_cache=True,
        **params,
    )
    torch.manual_seed(seed)
    model = Qwen3ForCausalLM(config)
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, tokenizer.pad_token_id]
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def count_parameters(model: Any) -> int:
    """Number of distinct parameters (tied embeddings counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def save_model(model: Any, tokenizer: PreTrainedTokenizerBase, path: str | Path) -> Path:
    """``save_pretrained`` both model and tokenizer into one folder."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def load_model(path: str | Path, **model_kwargs: Any) -> tuple[Any, PreTrainedTokenizerBase]:
    """Load a causal LM and its tokenizer saved with :func:`save_model` (or any local HF model folder)."""
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"no model at {path} (config.json missing); train one with finemem_lib.agents.sft.train_sft_manager"
        )
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, **model_kwargs)
    return model, tokenizer
