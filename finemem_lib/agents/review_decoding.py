"""Review-style decoding with the restatement written by the harness: the manager writes only decisions.

In the ``review`` op style a completion restates each sentence and then decides (``N. sentence => keep``).
A small manager trained from scratch decides from the text right before the decision, but it does not learn
to copy a sentence verbatim: left to restate by itself, it writes a sentence of its own and decides about
that (docs/miniature.md). With ``restate: harness`` the restated line ``N. sentence =>`` is written into the
completion by the harness and the manager samples only the decision that follows (up to the end of the line).

Each decision is then one *segment*: a prompt (the step's prompt, the lines before and the restated line)
and the decision's tokens with their sampling log-probabilities. The GRPO trainer treats every segment of a
step as a sample carrying the step's A_t (:func:`finemem_lib.training.samples.step_samples`); the restated
tokens are never scored, since the manager did not choose them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import torch

from finemem_lib.agents.decoding import IncrementalDecoder
from finemem_lib.agents.engines.native import CPU_ROWS
from finemem_lib.agents.review_cache import CachedReview, line_uniforms
from finemem_lib.core.review import restated_line

if TYPE_CHECKING:
    from finemem_lib.agents.engines.base import SamplingParams
    from finemem_lib.agents.policy import ManagerPolicy, StepPrompt
    from finemem_lib.core.memory import MemoryItem

DECISION_TOKENS = 8
"""Tokens a decision may take (``update m16`` and its newline are about 5)."""
RESTATERS = ("model", "harness")
CACHED_LINES = True
"""False: every line through ``ManagerPolicy.generate`` as a fresh prompt, whatever the engine."""


@dataclass(frozen=True)
class Segment:
    """One decision: the ids it was sampled after, its own tokens and their sampling log-probabilities."""

    prompt_ids: torch.Tensor
    completion_ids: torch.Tensor
    logprobs: torch.Tensor


@dataclass(frozen=True)
class ReviewDecoded:
    """A step's review: its text (restated lines and decisions), the decisions' tokens and log-probabilities
    end to end, whether the manager ended the turn, and the decisions one by one."""

    text: str
    completion_ids: torch.Tensor
    logprobs: torch.Tensor
    finished: bool
    segments: list[Segment]


def _decision_end(policy: ManagerPolicy, tokens: torch.Tensor) -> tuple[int, bool]:
    """How many tokens of a sampled continuation belong to the decision (through the first line break or the
    end of the turn), and whether the turn ended there."""
    stops = set(policy.stop_ids)
    for index, token in enumerate(tokens.tolist()):
        if token in stops:
            return index + 1, True
        if _breaks_line(policy.tokenizer.decode([token])):
            return index + 1, False
    return len(tokens), False


def _breaks_line(text: str) -> bool:
    """Whether ``text`` holds a line boundary (``\\n``, ``\\r`` or any other that ``str.splitlines`` splits at)."""
    return "".join(text.splitlines()) != text


def act_review(
    policy: ManagerPolicy,
    steps: Sequence[StepPrompt],
    sampling: SamplingParams,
    seed: int | None,
    batch_size: int | None,
) -> list[ReviewDecoded]:
    """Reviews of review-style steps whose restated lines the harness writes (see the module doc).

    Line ``k`` of every step still reviewing is decided in one batched call; a step whose manager ends the
    turn stops there (its remaining sentences are not reviewed: nothing is stored from them).
    """
    tokenizer = policy.tokenizer
    decision_sampling = replace(sampling, max_new_tokens=min(DECISION_TOKENS, sampling.max_new_tokens))
    texts = ["" for _ in steps]
    segments: list[list[Segment]] = [[] for _ in steps]
    ended = [False for _ in steps]
    decide = _cached_lines(policy, steps, decision_sampling, batch_size) or _line_by_line(policy, batch_size)
    for k in range(max((len(s.sentences) for s in steps), default=0)):
        live = [i for i, s in enumerate(steps) if k < len(s.sentences) and not ended[i]]
        if not live:
            break
        heads = [texts[i] + restated_line(k + 1, steps[i].sentences[k], _hint(steps[i], k)) for i in live]
        prompt_ids = [
            steps[i].ids + tokenizer(h, add_special_tokens=False).input_ids for i, h in zip(live, heads, strict=True)
        ]
        line_seed = None if seed is None else seed * 31 + k
        decided = decide(live, prompt_ids, decision_sampling, line_seed)
        for i, head, ids, (completion, logprobs) in zip(live, heads, prompt_ids, decided, strict=True):
            keep, turn_ended = _decision_end(policy, completion)
            tokens = completion[:keep]
            segments[i].append(Segment(torch.tensor(ids, dtype=torch.long), tokens, logprobs[:keep]))
            decision = (tokenizer.decode(tokens, skip_special_tokens=True).splitlines() or [""])[0]  # ends the line
            texts[i] = head + decision + "\n"
            ended[i] = turn_ended
    out = []
    for text, parts, turn_ended in zip(texts, segments, ended, strict=True):
        completion = torch.cat([s.completion_ids for s in parts]) if parts else torch.zeros(0, dtype=torch.long)
        logprobs = torch.cat([s.logprobs for s in parts]) if parts else torch.zeros(0)
        out.append(ReviewDecoded(text.rstrip("\n"), completion, logprobs, turn_ended or bool(parts), parts))
    return out


def _hint(step: StepPrompt, index: int) -> MemoryItem | None:
    """The hinted item of a step's sentence ``index`` (None without hints)."""
    return step.hints[index] if step.hints else None


Decide = Callable[[list[int], list[list[int]], "SamplingParams", "int | None"], list[tuple[torch.Tensor, torch.Tensor]]]
"""``(steps, prompts, sampling, seed) -> [(decision tokens, their log-probs)]`` for one line of a review."""


def _line_by_line(policy: ManagerPolicy, batch_size: int | None) -> Decide:
    """Each line as fresh prompts through :meth:`ManagerPolicy.generate` (any engine)."""
    rows = {"batch_size": batch_size} if batch_size else {}

    def decide(live, prompts, sampling, seed):
        return [(g.completion_ids, g.logprobs) for g in policy.generate(prompts, sampling, seed, **rows)]

    return decide


def _cached_lines(
    policy: ManagerPolicy, steps: Sequence[StepPrompt], sampling: SamplingParams, batch_size: int | None
) -> Decide | None:
    """Lines decided on KV caches kept from line to line (:mod:`finemem_lib.agents.review_cache`), in groups
    of at most the rows of one native ``generate`` call; None unless the manager runs on the plain native
    engine. The same uniforms row for row as :func:`_line_by_line`, so the same decisions up to float
    rounding."""
    engine = policy.rollout_engine()
    decoder = getattr(engine, "decoder", None)
    if not CACHED_LINES or type(decoder) is not IncrementalDecoder:
        return None
    device = decoder.device
    rows_per_call = batch_size or policy.batch_size
    if device.type == "cpu":
        rows_per_call = min(rows_per_call, CPU_ROWS)
    groups = [
        list(range(start, min(start + rows_per_call, len(steps)))) for start in range(0, len(steps), rows_per_call)
    ]
    with torch.inference_mode():
        reviews = [CachedReview(decoder, [steps[i].ids for i in group]) for group in groups]
    ends_turn = torch.tensor(policy.stop_ids, device=device)
    ends_line = torch.tensor(_line_break_ids(policy), dtype=torch.long, device=device)
    where = {i: (g, j) for g, group in enumerate(groups) for j, i in enumerate(group)}

    def decide(live, prompts, line_sampling, seed):
        if seed is not None:
            torch.manual_seed(seed)
        u = line_uniforms(prompts, line_sampling.max_new_tokens, rows_per_call, device, not line_sampling.greedy)
        knobs = (line_sampling.temperature, line_sampling.top_k, line_sampling.top_p)
        out: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        was_training = policy.model.training
        policy.model.eval()
        try:
            with torch.inference_mode():
                for g, review in enumerate(reviews):
                    chosen = [n for n, i in enumerate(live) if where[i][0] == g]
                    if not chosen:
                        continue
                    decided = review.decide(
                        [where[live[n]][1] for n in chosen],
                        [prompts[n] for n in chosen],
                        line_sampling.max_new_tokens,
                        knobs,
                        None if u is None else u[chosen],
                        ends_turn,
                        ends_line,
                    )
                    for n, d in zip(chosen, decided, strict=True):
                        out[n] = (d.tokens.clone(), d.logprobs.clone())
        finally:
            policy.model.train(was_training)
        return [out[n] for n in range(len(live))]

    return decide


def _line_break_ids(policy: ManagerPolicy) -> list[int]:
    """The manager's token ids whose text holds a line break (computed once per policy)."""
    known = policy.__dict__.get("_line_break_ids")
    if known is None or known[0] is not policy.tokenizer:
        tokenizer = policy.tokenizer
        known = (tokenizer, [i for i in range(len(tokenizer)) if _breaks_line(tokenizer.decode([i]))])
        policy.__dict__["_line_break_ids"] = known
    return known[1]
