"""Review decoding on one KV cache per step: each line's restated sentence is appended, not the prompt re-run.

With the harness restating (:mod:`finemem_lib.agents.review_decoding`), line ``k`` of a step is decided after
the step's prompt and the ``k - 1`` lines before it. Decoding each line as a fresh prompt runs that whole text
through the model again, line after line. :class:`CachedReview` keeps every step's keys and values between
lines instead (the native engine's :class:`finemem_lib.agents.decoding.IncrementalDecoder` layers and cache
layout): a line costs a pass over the tokens that are new since the last one (the end of the decision and the
next restated line) and the decision's own decode steps, and a decision stops at its line break.

What the model sees is unchanged: a line's prompt is still the text tokenized afresh; where those tokens differ
from the cached ones (a decision whose tokens tokenize otherwise), the cache is cut back to the common part
(those slots are masked out) and the rest is run again. Sampled tokens use the same uniforms, row for row, as
decoding each line through :meth:`finemem_lib.agents.policy.ManagerPolicy.generate` would
(:func:`line_uniforms`), so the decisions are the same up to float rounding of the logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from finemem_lib.agents.decoding import IncrementalDecoder, shared_prefix
from finemem_lib.agents.decoding_state import _COMPACT_FRACTION
from finemem_lib.agents.engines.base import length_batches
from finemem_lib.agents.sampling import choose, uniforms

_SPARE_SLOTS = 256  # extra cache slots allocated whenever the cache grows


@dataclass(frozen=True)
class LineDecision:
    """One row's decision: its tokens (through the line break or the end of the turn), their log-probs, and
    whether the turn ended (a stop token)."""

    tokens: torch.Tensor
    logprobs: torch.Tensor
    ended: bool


def line_uniforms(
    prompts: Sequence[Sequence[int]], tokens: int, rows_per_call: int, device: torch.device, sampled: bool
) -> torch.Tensor | None:
    """``[len(prompts), tokens]`` uniforms, each row's the one the native engine would give that prompt in a
    ``generate`` call drawing from torch's global random state (prompts sorted by length, cut into calls of
    ``rows_per_call``, one generator for the call seeded from the global state). None when not ``sampled``
    (greedy), after taking the generator's seed from the global state as that call does."""
    generator = torch.Generator(device=device)
    generator.manual_seed(int(torch.randint(0, 2**62, (1,)).item()))
    if not sampled:
        return None
    out = torch.empty(len(prompts), tokens, device=device)
    for chosen in length_batches(prompts, rows_per_call):  # the native engine's batches (engines.base)
        out[torch.tensor(chosen, device=device)] = uniforms(len(chosen), tokens, generator, device)
    return out


def _common_length(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class CachedReview:
    """The KV caches of a batch of review steps, kept from line to line.

    Args:
        decoder: the native engine's decoder (its model in eval mode).
        prompts: each step's prompt ids; their common prefix is computed once and shared.
    """

    def __init__(self, decoder: IncrementalDecoder, prompts: Sequence[Sequence[int]]) -> None:
        self.decoder = decoder
        self.prefix, self.n_prefix = decoder.prefix_cache(shared_prefix(prompts))
        self.members = list(range(len(prompts)))  # the step of each cache row
        self.caches = decoder._new_caches(len(prompts), _SPARE_SLOTS)
        self.valid = torch.zeros(len(prompts), _SPARE_SLOTS, dtype=torch.bool, device=decoder.device)
        self.end = 0  # next free slot (the same for every row)
        self.cached: list[list[int]] = [[] for _ in prompts]  # each step's tokens after the prefix, in its cache
        self.slots: list[list[int]] = [[] for _ in prompts]  # the slot of each of them

    # ------------------------------------------------------------------ the cache
    def _grow(self, needed: int) -> None:
        length = self.valid.shape[1]
        if needed <= length:
            return
        more = needed - length + _SPARE_SLOTS
        self.caches = [
            (
                torch.cat([k, k.new_zeros(*k.shape[:2], more, k.shape[3])], dim=2),
                torch.cat([v, v.new_zeros(*v.shape[:2], more, v.shape[3])], dim=2),
            )
            for k, v in self.caches
        ]
        self.valid = torch.cat([self.valid, self.valid.new_zeros(self.valid.shape[0], more)], dim=1)

    def _compact(self, steps: Sequence[int]) -> None:
        """Drop the rows of steps no longer reviewed, once enough of them have ended."""
        keep_steps = set(steps)
        keep = [row for row, step in enumerate(self.members) if step in keep_steps]
        if (len(self.members) - len(keep)) * _COMPACT_FRACTION < len(self.members):
            return
        where = torch.tensor(keep, device=self.valid.device)
        self.caches = [(k.index_select(0, where), v.index_select(0, where)) for k, v in self.caches]
        self.valid = self.valid[where]
        self.members = [self.members[row] for row in keep]

    def _suffixes(self, steps: Sequence[int], prompts: Sequence[Sequence[int]]) -> dict[int, list[int]]:
        """What each step's prompt adds to its cache; a cached tail the prompt does not continue is cut back."""
        out = {}
        for step, prompt in zip(steps, prompts, strict=True):
            own = list(prompt[self.n_prefix :])
            common = min(_common_length(self.cached[step], own), len(own) - 1)  # a token to predict from
            for slot in self.slots[step][common:]:
                self.valid[self.members.index(step), slot] = False
            del self.cached[step][common:], self.slots[step][common:]
            out[step] = own[common:]
        return out

    # ------------------------------------------------------------------ one line
    @torch.no_grad()
    def decide(
        self,
        steps: Sequence[int],
        prompts: Sequence[Sequence[int]],
        max_new_tokens: int,
        sampling: tuple[float, int, float],
        u: torch.Tensor | None,
        ends_turn: torch.Tensor,
        ends_line: torch.Tensor,
    ) -> list[LineDecision]:
        """Decisions of ``steps`` (indices of the constructor's prompts) after ``prompts`` (each step's full
        prompt for this line, which must start with the constructor's prompt).

        ``sampling``: ``(temperature, top_k, top_p)``; ``u``: ``[len(steps), max_new_tokens]`` uniforms of a
        sampled call (:func:`line_uniforms`); ``ends_turn`` / ``ends_line``: token ids that end the turn / the
        line (a decision stops after either)."""
        decoder = self.decoder
        device = self.valid.device
        self._compact(steps)
        suffixes = self._suffixes(steps, prompts)
        rows = len(self.members)
        row_of = {step: row for row, step in enumerate(self.members)}
        live = torch.zeros(rows, dtype=torch.bool, device=device)
        live[[row_of[s] for s in steps]] = True
        width = max(len(s) for s in suffixes.values())
        start = self.end
        self._grow(start + width + max_new_tokens)

        tokens = torch.zeros(rows, width, dtype=torch.long, device=device)
        real = torch.zeros(rows, width, dtype=torch.bool, device=device)
        positions = torch.full((rows, width), self.n_prefix, dtype=torch.long, device=device)
        for step, suffix in suffixes.items():
            row, n = row_of[step], len(suffix)
            tokens[row, width - n :] = torch.tensor(suffix, dtype=torch.long)
            real[row, width - n :] = True
            first = self.n_prefix + len(self.cached[step])
            positions[row, width - n :] = torch.arange(first, first + n, device=device)
        column = torch.arange(width, device=device)
        own = (real[:, None, :] & (column.view(1, 1, -1) <= column.view(1, -1, 1))) | (
            column.view(1, 1, -1) == column.view(1, -1, 1)
        )
        history = self.valid[:, None, :start].expand(-1, width, -1)
        mask = torch.cat([history, own], dim=-1).unsqueeze(1)
        hidden = decoder._forward(tokens, positions, self.caches, self.prefix, start, mask)
        self.valid[:, start : start + width] = real
        for step, suffix in suffixes.items():
            row = row_of[step]
            self.cached[step].extend(suffix)
            self.slots[step].extend(range(start + width - len(suffix), start + width))
        logits = decoder._logits(hidden[:, -1])
        next_position = positions[:, -1] + 1

        u_rows = None
        if u is not None:
            u_rows = torch.zeros(rows, max_new_tokens, device=device)
            u_rows[[row_of[s] for s in steps]] = u.to(device)
        out_tokens: list[list[int]] = [[] for _ in range(rows)]
        out_logprobs: list[list[float]] = [[] for _ in range(rows)]
        ended = torch.zeros(rows, dtype=torch.bool)
        alive = live.clone()
        slot = start + width
        for index in range(max_new_tokens):
            token, logprob = choose(logits, *sampling, None if u_rows is None else u_rows[:, index])
            for row in alive.nonzero().squeeze(1).tolist():
                out_tokens[row].append(int(token[row]))
                out_logprobs[row].append(float(logprob[row]))
            turn = torch.isin(token, ends_turn)
            ended |= (turn & alive).cpu()
            sampled_by = alive.clone()  # the rows this token belongs to
            alive &= ~(turn | torch.isin(token, ends_line))
            if index == max_new_tokens - 1 or not alive.any():
                break
            self.valid[:, slot] = sampled_by
            for row in sampled_by.nonzero().squeeze(1).tolist():
                self.cached[self.members[row]].append(int(token[row]))
                self.slots[self.members[row]].append(slot)
            logits = decoder._decode_step(token, next_position, self.caches, self.prefix, slot, self.valid)
            next_position = next_position + sampled_by.long()
            slot += 1
        self.end = slot
        return [
            LineDecision(
                torch.tensor(out_tokens[row_of[s]], dtype=torch.long),
                torch.tensor(out_logprobs[row_of[s]], dtype=torch.float32),
                bool(ended[row_of[s]]),
            )
            for s in steps
        ]
