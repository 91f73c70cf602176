"""Per-token log-probs of a batch whose prompts share a prefix, with that prefix computed once (the padded pass).

Every step sample of a GRPO round starts with the same tokens: the manager's system prompt and
tool schemas (about half of each sample). TRL's log-prob pass runs each row in full, so that prefix
goes through every layer once per row, in the loss's forward and backward and in the reference
model's pass. Here it runs once (batch 1); its keys and values are broadcast to the rows, whose own
tokens (the rest of the prompt, then the completion) attend to them as to their own past. Gradients
flow into the prefix through the broadcast, so the loss and its gradient are those of the full
forward (equal within float rounding: ``tests/test_shared_prefix.py``).

Two other costs go with it: only the completion positions go through the LM head (TRL's fused head
scores every position on a CPU), as one matrix product and log-softmax while the ``[N, V]`` logits are
small, else with TRL's own chunked log-prob function (tiles of the vocabulary, the logits never held);
and rows are laid out as ``[pad][own prompt][completion]`` after the prefix, with rotary positions
counted from the prefix's end. The packed pass (:mod:`finemem_lib.training.packed_pass`) drops the
padding instead; :mod:`finemem_lib.training.batch_logps` chooses between the two for each chunk of rows.

It applies to a plain causal LM (a ``transformers`` model with a KV cache, no logit soft-capping or
scaling); :func:`unsupported_reason` says when it does not, and the caller falls back to TRL's pass.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from transformers import DynamicCache
from trl.kernels import ChunkedLogProbFunction

# A prefix shorter than this is not worth a separate pass.
MIN_PREFIX = 8
# Vocabulary tile of the chunked log-prob function (TRL's fused head uses the same).
CHUNK_SIZE = 32768
# Most logits (scored tokens x vocabulary) the LM head computes at once (64 MB in float32); beyond, TRL's tiles.
DIRECT_HEAD_MAX = 1 << 24
_SCALING_ATTRIBUTES = (
    "final_logit_softcapping",
    "logit_scale",
    "output_multiplier",
    "lm_head_multiplier",
    "logits_scaling",
)


def unsupported_reason(model: Any) -> str | None:
    """Why :func:`prefix_shared_logps` cannot run ``model`` (None when it can)."""
    config = getattr(model, "config", None)
    if config is None or not hasattr(model, "get_decoder") or not hasattr(model, "get_output_embeddings"):
        return "not a transformers causal LM"
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    if text is not config:
        return "a multimodal model"
    for name in _SCALING_ATTRIBUTES:
        if getattr(text, name, None) not in (None, 1.0):
            return f"the model scales its logits ({name})"
    checkpointing = getattr(model, "is_activation_checkpointing", None)  # transformers >= 5.x
    if checkpointing is None:
        checkpointing = getattr(model, "is_gradient_checkpointing", False)
    if checkpointing:
        return "gradient checkpointing is on (it disables the KV cache)"
    return None


def common_prefix_length(input_ids: torch.Tensor, attention_mask: torch.Tensor, prompt_columns: int) -> int:
    """Tokens common to the start of every row's prompt (prompts left-padded in the first ``prompt_columns``).

    At most one token shorter than the shortest prompt, so each row keeps a token of its own before
    its completion (the first completion token is predicted from there).
    """
    prompt_mask = attention_mask[:, :prompt_columns].bool()
    lengths = prompt_mask.sum(dim=1)
    if prompt_mask.size(0) == 0 or int(lengths.min()) < 2:
        return 0
    # Left padding: a row's prompt starts at prompt_columns - length; take the longest prompt span.
    starts = prompt_columns - lengths
    limit = int(lengths.min()) - 1
    columns = starts.unsqueeze(1) + torch.arange(limit, device=input_ids.device)
    heads = input_ids.gather(1, columns)
    same = (heads == heads[:1]).all(dim=0)
    differ = (~same).nonzero()
    return int(differ[0]) if differ.numel() else limit


def _cache_keyword(backbone: Any) -> str:
    parameters = inspect.signature(backbone.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def _broadcast_cache(cache: Any, rows: int) -> DynamicCache:
    """A cache holding ``cache``'s keys/values (batch 1) for ``rows`` rows (views, not copies)."""
    out = DynamicCache()
    for index, layer in enumerate(cache.layers):
        out.update(layer.keys.expand(rows, -1, -1, -1), layer.values.expand(rows, -1, -1, -1), index)
    return out


def prefix_cache(backbone: Any, prefix_ids: torch.Tensor, store: dict | None = None) -> Any:
    """Keys/values of ``prefix_ids`` ``[1, P]`` (batch 1); with ``store``, kept there for a frozen model's later calls.

    ``store`` may only be given for a model whose weights do not change between calls (the reference model)
    and without gradients: its entries are keyed by the prefix's tokens.
    """
    key = tuple(prefix_ids[0].tolist()) if store is not None else None
    if key is not None and key in store:
        return store[key]
    keyword = _cache_keyword(backbone)
    output = backbone(input_ids=prefix_ids, use_cache=True)
    cache = output.get(keyword)
    if cache is None:
        cache = output.get("past_key_values")
    if key is not None:
        store.clear()  # one prefix per run in practice (system prompt and tools); keep memory bounded
        store[key] = cache
    return cache


def _scored_logps(
    model: Any, hidden: torch.Tensor, targets: torch.Tensor, temperature: float, compute_entropy: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs (and entropies) of ``targets`` ``[N]`` given ``hidden`` ``[N, H]``.

    Up to :data:`DIRECT_HEAD_MAX` logits, one matrix product and a log-softmax (twice as fast as the tiled
    head on a CPU, where its loops run as separate operations); above, TRL's chunked head (tiles of the
    vocabulary, never the ``[N, V]`` logits). The same values within float rounding; the entropy carries no
    gradient in the direct form (the callers detach it).
    """
    head = model.get_output_embeddings()
    if hidden.shape[0] * head.weight.shape[0] <= DIRECT_HEAD_MAX:
        logits = torch.nn.functional.linear(hidden, head.weight, head.bias).float()
        logprobs = torch.log_softmax(logits / temperature if temperature != 1.0 else logits, dim=-1)
        entropy = None
        if compute_entropy:
            with torch.no_grad():
                entropy = -(logprobs.exp() * logprobs).sum(dim=-1)
        return logprobs.gather(-1, targets.unsqueeze(-1)).squeeze(-1), entropy
    logps, entropy, *_ = ChunkedLogProbFunction.apply(
        hidden,
        head.weight,
        head.bias,
        targets,
        temperature,
        CHUNK_SIZE,
        None,
        1.0,
        ("entropy",) if compute_entropy else (),
    )
    return logps, entropy


def prefix_shared_logps(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    logits_to_keep: int,
    prefix_length: int,
    temperature: float = 1.0,
    compute_entropy: bool = False,
    store: dict | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs (and entropies) of the last ``logits_to_keep`` tokens of each row, as TRL's pass computes them.

    ``input_ids``/``attention_mask``: ``[B, L]`` rows of a left-padded prompt followed by a right-padded
    completion of ``logits_to_keep`` columns; the first ``prefix_length`` real tokens of every prompt are
    the same (:func:`common_prefix_length`). Padded completion positions hold 0, as in TRL.
    ``store``: see :func:`prefix_cache` (a frozen model's prefix computed once).
    """
    rows, columns = input_ids.shape
    prompt_columns = columns - logits_to_keep
    backbone = model.get_decoder()
    keyword = _cache_keyword(backbone)
    lengths = attention_mask[:, :prompt_columns].sum(dim=1)
    starts = prompt_columns - lengths
    prefix_ids = input_ids[:1, int(starts[0]) : int(starts[0]) + prefix_length]
    cache = prefix_cache(backbone, prefix_ids, store)

    # Drop each row's prefix columns: [pad][prefix][rest] -> [pad][rest] (width L - P for every row).
    width = columns - prefix_length
    index = torch.arange(width, device=input_ids.device).unsqueeze(0).expand(rows, -1)
    index = index + prefix_length * (index >= starts.unsqueeze(1)).long()
    own_ids = input_ids.gather(1, index)
    own_mask = attention_mask.gather(1, index)
    positions = (prefix_length + own_mask.cumsum(dim=1) - 1).clamp(min=prefix_length)
    full_mask = torch.cat([own_mask.new_ones(rows, prefix_length), own_mask], dim=1)
    hidden = backbone(
        input_ids=own_ids,
        attention_mask=full_mask,
        position_ids=positions,
        use_cache=True,
        **{keyword: _broadcast_cache(cache, rows)},
    ).last_hidden_state
    # Hidden state before each completion token predicts it.
    hidden = hidden[:, -logits_to_keep - 1 : -1]
    # TRL's chunked head (the one its fused forward uses): tiles of the vocabulary, never the [N, V] logits.
    scored = attention_mask[:, -logits_to_keep:].bool()
    targets = input_ids[:, -logits_to_keep:][scored]
    logps, entropy = _scored_logps(model, hidden[scored], targets, temperature, compute_entropy)
    # masked_scatter keeps the output connected to the model even when no position is scored (as TRL).
    logps = logps.new_zeros(scored.shape).masked_scatter(scored, logps)
    if not compute_entropy:
        return logps, None
    # The entropy is logged and masks tokens (TRL's top-entropy quantile); it carries no gradient there.
    return logps, entropy.detach().new_zeros(scored.shape).masked_scatter(scored, entropy.detach())
