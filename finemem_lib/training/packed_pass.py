"""The packed log-prob pass: the prefix-shared pass (:mod:`finemem_lib.training.shared_prefix`) without padding.

Rows keep only their own tokens after the shared prefix, left-aligned, in groups of similar length
(:func:`packed_logps`); on a CPU they attend with :func:`_packed_attention` (queries in chunks, each over
the keys it can see). Equal to the padded pass within float rounding (``tests/test_packed_pass.py``).
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AttentionInterface

from finemem_lib.training.nested_rows import host_rows, row_tokens
from finemem_lib.training.shared_prefix import _broadcast_cache, _cache_keyword, _scored_logps, prefix_cache

# Cost of one more model call in the packed pass, in token slots (length_buckets).
BUCKET_OVERHEAD = 256
# Queries per attention call of the packed pass on a CPU (each call attends only the keys its queries see).
QUERY_CHUNK = 128
PACKED_ATTENTION = "finemem_packed"
PACKED_ATTENTION_ON = True  # False: the packed pass attends with the model's own attention and padding mask


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
    """:func:`~finemem_lib.training.shared_prefix.prefix_shared_logps` without compute on padding: the same values,
    rows regrouped by length.

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
