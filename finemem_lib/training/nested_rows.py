"""Rows of a batch whose tokens start another row's: scored from that row's pass, not their own.

In the review style restated by the harness, every decision of a step is a training sample whose prompt is the
step's prompt and the lines before it (:mod:`finemem_lib.agents.review_decoding`). So decision ``k + 1``'s
prompt starts with decision ``k``'s prompt and completion, and the ``n`` decisions of a step hold the step's
prompt ``n`` times. A causal LM's hidden state at a position depends only on the tokens up to it, so every
decision's log-probs can be read from one pass over the step's last decision, its *host*: the same values
(within float rounding, as any change of batch shape), with the gradient flowing through the host's pass.

:func:`host_rows` finds each row's host (the longest row it starts, itself when none);
:func:`row_families` groups rows by host, so that a cut into micro-batches or chunks can keep a host's
rows together.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

ON = True
"""False: every row is its own host (each sample scored from its own pass, as before this module)."""


def row_tokens(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[tuple[int, ...]]:
    """The real tokens of each row (where ``attention_mask`` is set), in order."""
    return [tuple(ids[mask.bool()].tolist()) for ids, mask in zip(input_ids, attention_mask, strict=True)]


def host_rows(sequences: Sequence[Sequence[int]]) -> list[int]:
    """For each sequence, the index of the longest sequence that starts with it (its host; itself when no other
    does). Equal sequences share one host. Hosts are their own hosts, so the hosts are the rows to compute.

    In lexicographic order a sequence is a prefix of some other exactly when it is a prefix of the next one,
    so one pass backwards over the sorted sequences finds every host.
    """
    seqs = [tuple(s) for s in sequences]
    if not ON:
        return list(range(len(seqs)))
    order = sorted(range(len(seqs)), key=lambda i: (seqs[i], i))
    host = list(range(len(seqs)))
    for position in range(len(order) - 2, -1, -1):
        row, after = order[position], order[position + 1]
        if seqs[after][: len(seqs[row])] == seqs[row]:
            host[row] = host[after]
    return host


def families(host: Sequence[int]) -> list[list[int]]:
    """Rows grouped by host, in the order of their hosts' first appearance; each family's rows in row order."""
    grouped: dict[int, list[int]] = {}
    for row, h in enumerate(host):
        grouped.setdefault(h, []).append(row)
    return list(grouped.values())


def row_families(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> list[list[int]]:
    """The rows grouped by host (:func:`host_rows` of their real tokens)."""
    return families(host_rows(row_tokens(input_ids, attention_mask)))
