"""Speculative decoding with n-gram drafts: several tokens per row and model call, the same tokens.

A decode step of a small model costs about the same for one query per row as for a few, so each row's
next tokens are guessed (:class:`finemem_lib.agents.drafts.NgramDrafts`: what followed the same tokens
before) and one model call scores the row's last token and its draft together (``1 + k`` queries per row,
their keys/values written at the row's own cache slots, each query seeing the row's earlier slots and
the shared prefix). Every scored position then picks its token as the one-token loop would: the argmax
(greedy) or ``F⁻¹(u)`` of its distribution with the uniform ``u`` drawn for that row and token index
(:mod:`finemem_lib.agents.sampling`). The draft is accepted while it agrees with those picks; the first
position that disagrees (or the one after a fully accepted draft) emits its own pick, so a call emits
between 1 and ``k + 1`` tokens per row.

The tokens are thus those of the one-token loop with the same uniforms, whatever the drafts (within float
rounding: a position scored with other queries in its call can differ in the last bits of its logits), and a
sampled token has exactly its position's distribution; a draft token is accepted with probability ``p(d)``,
as in speculative sampling with a one-point draft (Leviathan et al. 2023, Chen et al. 2023). The log-probs
are those of the scoring call's logits (``log_softmax(logits / temperature)`` of the emitted token).
"""

from __future__ import annotations

from typing import Any

import torch

from finemem_lib.agents.decoding_state import _COMPACT_FRACTION, Decoded, PromptState
from finemem_lib.agents.sampling import choose

# Most draft tokens scored per model call, all rows together (beyond it a call is no longer as cheap as one
# token per row): ``k = min(draft_tokens, DRAFT_BUDGET // rows - 1)``, no drafts at ``rows >= DRAFT_BUDGET / 2``.
DRAFT_BUDGET = 192


def draft_length(rows: int, most: int) -> int:
    """Draft tokens per row for a call of ``rows`` rows (at most ``most``)."""
    return max(0, min(most, DRAFT_BUDGET // max(rows, 1) - 1))


def accept(
    logits: torch.Tensor, drafts: torch.Tensor, has_draft: torch.Tensor, sampling: tuple, u: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Accepted draft tokens per row, and the picked tokens with their log-probs.

    ``logits`` ``[B, S, V]`` after the row's last token and each of its ``S - 1`` draft tokens ``drafts``
    (``has_draft`` marks the real ones, a row's real drafts first); ``u`` ``[B, S]``: the uniforms of the
    token indices they predict (None when greedy). Returns ``accepted`` ``[B]`` and ``tokens``, ``logprobs``
    ``[B, S]``: the first ``accepted + 1`` tokens are emitted (the accepted drafts are the picks themselves).
    """
    tokens, logprobs = choose(logits, *sampling, u)
    agree = (tokens[:, :-1] == drafts) & has_draft
    return agree.long().cumprod(dim=1).sum(dim=1), tokens, logprobs


def decode_with_drafts(
    decoder: Any,
    state: PromptState,
    tails: list[list[int]],
    max_new_tokens: int,
    sampling: tuple,
    u: torch.Tensor | None,
) -> list[Decoded]:
    """The decoding loop of :meth:`finemem_lib.agents.decoding.IncrementalDecoder.decode` with drafts.

    ``tails``: each prompt's last tokens (the drafts' context for the first completion tokens); ``sampling``:
    (temperature, top_k, top_p); ``u``: ``[rows, max_new_tokens]`` uniforms (None when greedy). Rows that
    finish leave the batch once an eighth of it has finished, as in the one-token loop.
    """
    device = decoder.device
    drafts_of = decoder.drafts
    stop = set(decoder.stop_ids)
    rows = state.logits.shape[0]
    token, logprob = choose(state.logits, *sampling, None if u is None else u[:, 0])
    out_tokens = [[t] for t in token.tolist()]
    out_logprobs = [[x] for x in logprob.tolist()]
    finished = [t[0] in stop for t in out_tokens]
    history = [drafts_of.row(tail) for tail in tails]
    for r in range(rows):
        drafts_of.extend(history[r], out_tokens[r])
    live = [r for r in range(rows) if not finished[r] and max_new_tokens > 1]  # original row of each batch row
    caches, valid, positions = state.caches, state.valid, state.next_position
    valid[:, state.width :] = True  # generated slots; each query sees its row's slots up to its own
    lengths = torch.full((rows,), state.width, dtype=torch.long, device=device)  # next free slot of each row
    alive = [True] * len(live)
    if len(live) < rows:
        keep = torch.tensor(live, dtype=torch.long, device=device)
        caches = [(k.index_select(0, keep), v.index_select(0, keep)) for k, v in caches]
        valid, positions, lengths = valid[keep], positions[keep], lengths[keep]
        u = None if u is None else u[keep]
    while live:
        batch = len(live)
        most = draft_length(batch, decoder.draft_tokens)
        proposals = [
            drafts_of.propose(history[r], min(most, max_new_tokens - len(out_tokens[r]) - 1)) if alive[b] else []
            for b, r in enumerate(live)
        ]
        width = 1 + max(map(len, proposals))
        inputs = [[out_tokens[r][-1], *p] + [0] * (width - 1 - len(p)) for r, p in zip(live, proposals, strict=True)]
        tokens = torch.tensor(inputs, dtype=torch.long, device=device)
        offsets = torch.arange(width, device=device)
        slots = lengths.unsqueeze(1) + offsets  # [B, S]
        end = int(lengths.max()) + width
        allowed = valid[:, None, :end] & (torch.arange(end, device=device) <= slots.unsqueeze(2))
        bias = torch.zeros(allowed.shape, dtype=caches[0][0].dtype, device=device).masked_fill_(~allowed, float("-inf"))
        where = (torch.arange(batch, device=device).unsqueeze(1).expand(-1, width), slots)
        rope_positions = (positions.unsqueeze(1) + offsets).clamp(max=decoder.max_positions - 1)  # padded queries
        hidden = decoder._forward(tokens, rope_positions, caches, state.prefix, where, bias[:, None, None])
        counts = torch.tensor([len(p) for p in proposals], device=device)
        has_draft = offsets[: width - 1] < counts.unsqueeze(1)
        # query j predicts token index (tokens emitted so far) + j; padded queries reuse the last index
        index = (lengths - state.width + 1).unsqueeze(1) + offsets
        picks = None if u is None else u.gather(1, index.clamp(max=max_new_tokens - 1))
        accepted, emitted, logprobs = accept(decoder._logits(hidden), tokens[:, 1:], has_draft, sampling, picks)
        lengths = lengths + accepted + 1
        positions = positions + accepted + 1
        for b, (r, n_ok, new, new_lp) in enumerate(
            zip(live, accepted.tolist(), emitted.tolist(), logprobs.tolist(), strict=True)
        ):
            if not alive[b]:
                continue
            new, new_lp = new[: n_ok + 1], new_lp[: n_ok + 1]
            for i, t in enumerate(new):
                if t in stop:
                    new, new_lp, finished[r] = new[: i + 1], new_lp[: i + 1], True
                    break
            room = max_new_tokens - len(out_tokens[r])
            out_tokens[r].extend(new[:room])
            out_logprobs[r].extend(new_lp[:room])
            drafts_of.extend(history[r], new[:room])
            alive[b] = not finished[r] and len(out_tokens[r]) < max_new_tokens
        if not all(alive):  # a finished row left in the batch writes (ignored) at its first slots, not past its cache
            lengths = torch.where(torch.tensor(alive, device=device), lengths, state.width)
        if (len(alive) - sum(alive)) * _COMPACT_FRACTION >= len(alive):
            keep_rows = [b for b in range(len(live)) if alive[b]]
            keep = torch.tensor(keep_rows, dtype=torch.long, device=device)
            caches = [(k.index_select(0, keep), v.index_select(0, keep)) for k, v in caches]
            valid, positions, lengths = valid[keep], positions[keep], lengths[keep]
            u = None if u is None else u[keep]
            live = [live[b] for b in keep_rows]
            alive = [True] * len(live)
    return [
        Decoded(
            torch.tensor(out_tokens[r], dtype=torch.long),
            torch.tensor(out_logprobs[r], dtype=torch.float32),
            finished[r],
        )
        for r in range(rows)
    ]
