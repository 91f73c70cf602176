"""Per-token log-probs of a batch whose prompts share a prefix, with that prefix computed once.

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
counted from the prefix's end. The packed pass (:func:`packed_logps`) drops the padding instead and, on
a CPU, attends with :func:`_packed_attention` (queries in chunks, each over the keys it can see).

It applies to a plain causal LM (a ``transformers`` model with a KV cache, no logit soft-capping or
scaling); :func:`unsupported_reason` says when it does not, and the caller falls back to TRL's pass.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AttentionInterface, DynamicCache
from trl.kernels import ChunkedLogProbFunction

from finemem_lib.training.nested_rows import host_rows, row_families, row_tokens

# A prefix shorter than this is not worth a separate pass.
MIN_PREFIX = 8
# Vocabulary tile of the chunked log-prob function (TRL's fused head uses the same).
CHUNK_SIZE = 32768
# Cost of one more model call in the packed pass, in token slots (length_buckets).
BUCKET_OVERHEAD = 256
# Most logits (scored tokens x vocabulary) the LM head computes at once (64 MB in float32); beyond, TRL's tiles.
DIRECT_HEAD_MAX = 1 << 24
# Queries per attention call of the packed pass on a CPU (each call attends only the keys its queries see).
QUERY_CHUNK = 128
PACKED_ATTENTION = "finemem_packed"
PACKED_ATTENTION_ON = True  # False: the packed pass attends with the model's own attention and padding mask
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


def _packed_attention(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Attention in the packed pass's layout (a ``transformers`` attention function, used on a CPU).

    Each row's own tokens are left-aligned after the shared prefix's ``P`` keys, so query ``i`` sees the
    prefix and keys ``P..P+i``: the mask is the same for every row (``attention_mask`` is not needed; a
    padded query sees real keys only, its output is never read). Queries go in chunks of
    :data:`QUERY_CHUNK`, each over the keys it can see (not the whole row), and the key/value heads are read
    by torch's grouped-query attention (not repeated per query head): about 20 % less attention time than
    the masked attention of ``transformers``' ``sdpa`` for a default round, the same values within rounding.
    """
    heads, width = query.shape[1], query.shape[2]
    prefix = key.shape[2] - width
    grouped = heads != key.shape[1]
    outs = []
    for start in range(0, width, QUERY_CHUNK):
        end = min(start + QUERY_CHUNK, width)
        visible = prefix + torch.arange(start, end, device=query.device).unsqueeze(1)
        seen = torch.arange(prefix + end, device=query.device) <= visible
        outs.append(
            F.scaled_dot_product_attention(
                query[:, :, start:end],
                key[:, :, : prefix + end],
                value[:, :, : prefix + end],
                attn_mask=seen,
                dropout_p=dropout,
                scale=scaling,
                enable_gqa=grouped,
            )
        )
    return torch.cat(outs, dim=2).transpose(1, 2).contiguous(), None


AttentionInterface.register(PACKED_ATTENTION, _packed_attention)


def _plain_attention(model: Any) -> bool:
    """Whether every layer of ``model`` attends to all earlier tokens with no bias (what :func:`_packed_attention`
    computes): the architectures of the native decoder, without a sliding window."""
    from finemem_lib.agents.decoding import unsupported_reason as native_unsupported

    config = model.config
    window = getattr(config, "sliding_window", None) if getattr(config, "use_sliding_window", True) else None
    return native_unsupported(model) is None and window is None


@contextlib.contextmanager
def _packed_layout(model: Any, backbone: Any, device: torch.device) -> Any:
    """Within: ``model`` attends with :func:`_packed_attention` (on a CPU; elsewhere its own attention and mask)."""
    configs = list({id(m.config): m.config for m in (model, backbone)}.values())
    sdpa = all(getattr(c, "_attn_implementation", None) == "sdpa" for c in configs)
    if not PACKED_ATTENTION_ON or device.type != "cpu" or not sdpa or not _plain_attention(model):
        yield False
        return
    try:
        for config in configs:
            config._attn_implementation = PACKED_ATTENTION
        yield True
    finally:
        for config in configs:
            config._attn_implementation = "sdpa"


def length_buckets(lengths: list[int], overhead: int = BUCKET_OVERHEAD) -> list[list[int]]:
    """Rows grouped by length so that padding costs little: contiguous runs of the rows sorted by length.

    Minimises the sum over groups of ``rows x longest + overhead`` (token slots, plus a cost per extra
    model call) by dynamic programming over the sorted lengths.
    """
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    ordered = [lengths[i] for i in order]
    best = [0.0] + [float("inf")] * len(order)  # best[j]: cost of the first j sorted rows
    cut = [0] * (len(order) + 1)
    for end in range(1, len(order) + 1):
        for start in range(end):
            cost = best[start] + (end - start) * ordered[end - 1] + overhead
            if cost < best[end]:
                best[end], cut[end] = cost, start
    groups, end = [], len(order)
    while end > 0:
        groups.append(order[cut[end] : end])
        end = cut[end]
    return groups[::-1]


def packable(attention_mask: torch.Tensor, logits_to_keep: int) -> bool:
    """Whether every row's scored completion positions are one run from the completion's first token."""
    completion = attention_mask[:, -logits_to_keep:].bool()
    lengths = completion.sum(dim=1, keepdim=True)
    expected = torch.arange(logits_to_keep, device=completion.device).unsqueeze(0) < lengths
    return bool((completion == expected).all()) and bool((lengths > 0).any())


def packed_logps(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    logits_to_keep: int,
    prefix_length: int,
    temperature: float,
    compute_entropy: bool,
    store: dict | None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """:func:`prefix_shared_logps` without compute on padding: the same values, rows regrouped by length.

    Each row keeps only its own tokens after the prefix (the rest of its prompt, then its scored completion
    tokens), left-aligned; rows are cut into groups of similar length (:func:`length_buckets`), each group
    one pass over the shared prefix's keys/values. Rows without a scored token are skipped, and a row whose
    tokens start another row's is scored from that row's pass (:mod:`finemem_lib.training.nested_rows`).
    The inputs must be :func:`packable`. Equal to the padded pass within float rounding (not bit for bit: the padding
    changes how sums are blocked).
    """
    rows, columns = input_ids.shape
    prompt_columns = columns - logits_to_keep
    backbone = model.get_decoder()
    keyword = _cache_keyword(backbone)
    prompt_lengths = attention_mask[:, :prompt_columns].sum(dim=1)
    completion_lengths = attention_mask[:, prompt_columns:].sum(dim=1)
    starts = prompt_columns - prompt_lengths + prefix_length  # first own token of each row
    own_prompt = prompt_lengths - prefix_length
    own = (own_prompt + completion_lengths).tolist()
    first = int(starts[0]) - prefix_length
    cache = prefix_cache(backbone, input_ids[:1, first : first + prefix_length], store)

    live = [r for r in range(rows) if int(completion_lengths[r]) > 0]
    host = host_rows(row_tokens(input_ids[live], attention_mask[live]))
    hosts = [r for i, r in enumerate(live) if host[i] == i]
    guests: dict[int, list[int]] = {}
    for i, r in enumerate(live):
        if host[i] != i:
            guests.setdefault(live[host[i]], []).append(r)
    parts_hidden, parts_targets, parts_rows, parts_columns = [], [], [], []
    with _packed_layout(model, backbone, input_ids.device) as packed:
        for group in length_buckets([own[r] for r in hosts]):
            _packed_group(
                backbone,
                keyword,
                cache,
                input_ids,
                [hosts[i] for i in group],
                guests,
                own,
                starts,
                own_prompt,
                prefix_length,
                not packed,
                (parts_hidden, parts_targets, parts_rows, parts_columns),
            )
    logps, entropy = _scored_logps(
        model, torch.cat(parts_hidden), torch.cat(parts_targets), temperature, compute_entropy
    )
    where = (torch.cat(parts_rows), torch.cat(parts_columns))
    out = logps.new_zeros(rows, logits_to_keep).index_put(where, logps)
    if not compute_entropy:
        return out, None
    return out, entropy.detach().new_zeros(rows, logits_to_keep).index_put(where, entropy.detach())


def _packed_group(
    backbone: Any,
    keyword: str,
    cache: Any,
    input_ids: torch.Tensor,
    group: list[int],
    guests: dict[int, list[int]],
    own: list[int],
    starts: torch.Tensor,
    own_prompt: torch.Tensor,
    prefix_length: int,
    with_mask: bool,
    parts: tuple[list, list, list, list],
) -> None:
    """One length group of :func:`packed_logps`: its rows' hidden states before each scored token, appended to
    ``parts`` (hidden states, target tokens, rows, completion columns), and those of each row's ``guests``
    (rows whose tokens start the row's: their scored tokens sit at the same columns). ``with_mask``: pass the
    padding mask (not when the model attends with :func:`_packed_attention`, which needs none)."""
    device = input_ids.device
    columns = input_ids.shape[1]
    chosen = torch.tensor(group, device=device)
    n, width = len(group), max(own[r] for r in group)
    span = torch.arange(width, device=device).unsqueeze(0)
    real = span < torch.tensor([own[r] for r in group], device=device).unsqueeze(1)
    index = (starts[chosen].unsqueeze(1) + span).clamp(max=columns - 1)
    ids = input_ids[chosen].gather(1, index).masked_fill(~real, 0)
    mask = torch.cat([real.new_ones(n, prefix_length), real], dim=1).long() if with_mask else None
    positions = (prefix_length + span).expand(n, -1)
    hidden = backbone(
        input_ids=ids,
        attention_mask=mask,
        position_ids=positions,
        use_cache=True,
        **{keyword: _broadcast_cache(cache, n)},
    ).last_hidden_state
    # completion token j of a row sits at own column own_prompt + j; the hidden state before it predicts it.
    # A guest's tokens are its host's first ones: it is read from its host's slot.
    members = [(slot, r) for slot, h in enumerate(group) for r in (h, *guests.get(h, ()))]
    slots = torch.tensor([slot for slot, _ in members], device=device)
    rows = torch.tensor([r for _, r in members], device=device)
    ends = torch.tensor([own[r] for _, r in members], device=device)
    scored = (span >= own_prompt[rows].unsqueeze(1)) & (span < ends.unsqueeze(1))
    member, columns_scored = scored.nonzero(as_tuple=True)
    slot = slots[member]
    parts[0].append(hidden[slot, columns_scored - 1])
    parts[1].append(ids[slot, columns_scored])
    parts[2].append(rows[member])
    parts[3].append(columns_scored - own_prompt[rows[member]])


def chunked_logps(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    logits_to_keep: int,
    batch_size: int | None,
    temperature: float,
    compute_entropy: bool,
    full_pass: Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor | None]],
    context: Callable[[], Any] = contextlib.nullcontext,
    pack: bool = False,
    store: dict | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs (and entropies) of a batch, ``batch_size`` rows at a time, each chunk's common prefix once.

    With ``pack`` a chunk is ``batch_size`` families of rows (a row whose tokens start another row's goes with
    it and is scored from its pass: :mod:`finemem_lib.training.nested_rows`); rows come back in their order.

    A chunk whose prompts share fewer than :data:`MIN_PREFIX` tokens goes through ``full_pass(ids, mask)``
    (TRL's own); the others through :func:`packed_logps` (``pack`` and :func:`packable`) or
    :func:`prefix_shared_logps`, inside ``context()`` (the trainer's autocast).
    """
    batch_size = batch_size or input_ids.size(0)
    prompt_columns = input_ids.size(1) - logits_to_keep
    rows = input_ids.size(0)
    if pack:  # chunks of batch_size families: a row that starts another row's tokens goes with it
        groups = row_families(input_ids, attention_mask)
        chunks = [
            [row for family in groups[start : start + batch_size] for row in family]
            for start in range(0, len(groups), batch_size)
        ]
    else:
        chunks = [list(range(start, min(start + batch_size, rows))) for start in range(0, rows, batch_size)]
    logps, entropies = [], []
    for chunk in chunks:
        chosen = torch.tensor(chunk, device=input_ids.device)
        ids, mask = input_ids[chosen], attention_mask[chosen]
        length = common_prefix_length(ids, mask, prompt_columns)
        if length < MIN_PREFIX:
            part, entropy = full_pass(ids, mask)
        else:
            shared = packed_logps if pack and packable(mask, logits_to_keep) else prefix_shared_logps
            with context():
                part, entropy = shared(model, ids, mask, logits_to_keep, length, temperature, compute_entropy, store)
        logps.append(part)
        entropies.append(entropy)
    where = torch.tensor([row for chunk in chunks for row in chunk], device=input_ids.device)
    inverse = torch.empty_like(where)
    inverse[where] = torch.arange(rows, device=where.device)
    logps_out = torch.cat(logps)[inverse]
    return logps_out, (torch.cat(entropies)[inverse] if compute_entropy else None)
