"""Per-token log-probs of a whole batch, chunk by chunk, each chunk through the pass that fits it.

A chunk of rows whose prompts share at least :data:`~finemem_lib.training.shared_prefix.MIN_PREFIX` tokens
goes through the packed pass (:mod:`finemem_lib.training.packed_pass`) or the padded prefix-shared pass
(:mod:`finemem_lib.training.shared_prefix`); any other chunk through the caller's full pass (TRL's own).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch

from finemem_lib.training.nested_rows import row_families
from finemem_lib.training.packed_pass import packable, packed_logps
from finemem_lib.training.shared_prefix import MIN_PREFIX, common_prefix_length, prefix_shared_logps


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
