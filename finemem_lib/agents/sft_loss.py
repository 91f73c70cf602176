"""The SFT loss with the manager's decisions weighted: which operation, which sentence or item, stop or go on.

A manager's completion is mostly fixed tool-call syntax the model learns within an epoch; what it must learn
from the teacher is carried by a few tokens: the operation's name (``insert`` / ``update`` / ``delete`` /
``skip``), the digits of the sentence number or item id, and the token after each ``</tool_call>`` (another
call, or the end of the turn). With the plain token mean those are a few percent of the loss, and a small
model fits the sentence numbers by position. :func:`decision_weighted_loss` multiplies their cross-entropy by
``weight`` (``sft.decision_weight``; 1 = TRL's plain loss), normalised by the number of completion tokens.

In the ``review`` style a decision is what follows a line's arrow (``N. sentence => keep``, up to and with the
line break): :func:`review_decision_mask`. With the harness restating, those are the only tokens the manager
writes at inference, and about 6 % of a review's tokens.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

OPERATION_WORDS = ("insert", "update", "delete", "skip")
CALL_END = "</tool_call>"


def decision_vocabulary(tokenizer: Any) -> tuple[torch.Tensor, int | None]:
    """Ids of the tokens that spell a decision (digits, operation names), and the id of ``</tool_call>``."""
    ids = []
    for token_id in range(len(tokenizer)):
        text = tokenizer.decode([token_id]).strip()
        if text and (text.isdigit() or text in OPERATION_WORDS):
            ids.append(token_id)
    end = tokenizer.convert_tokens_to_ids(CALL_END)
    return torch.tensor(sorted(ids), dtype=torch.long), (end if isinstance(end, int) and end >= 0 else None)


def decision_mask(labels: torch.Tensor, decision_ids: torch.Tensor, call_end: int | None) -> torch.Tensor:
    """``[B, L]`` bool: label positions that are a decision token or follow ``</tool_call>``."""
    mask = torch.isin(labels, decision_ids.to(labels.device))
    if call_end is not None:
        after = torch.zeros_like(mask)
        after[:, 1:] = labels[:, :-1] == call_end
        mask |= after & (labels != -100)
    return mask


def arrow_and_newline_ids(tokenizer: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """Ids of the tokens that hold a review line's arrow (``=>``) and of those that hold a line break."""
    arrows, newlines = [], []
    for token_id in range(len(tokenizer)):
        text = tokenizer.decode([token_id])
        if "=>" in text:
            arrows.append(token_id)
        if "\n" in text:
            newlines.append(token_id)
    return torch.tensor(arrows, dtype=torch.long), torch.tensor(newlines, dtype=torch.long)


def review_decision_mask(labels: torch.Tensor, arrow_ids: torch.Tensor, newline_ids: torch.Tensor) -> torch.Tensor:
    """``[B, L]`` bool: label positions after an arrow in their line, the line break that ends it included."""
    arrow = torch.isin(labels, arrow_ids.to(labels.device)).long()
    newline = torch.isin(labels, newline_ids.to(labels.device))
    before = arrow.cumsum(dim=1) - arrow  # arrows strictly before each position
    line_start = torch.ones_like(newline)
    line_start[:, 1:] = newline[:, :-1]
    at_start = torch.where(line_start, before, torch.zeros_like(before)).cummax(dim=1).values
    return (before > at_start) & (labels != -100)


def decision_weighted_loss(tokenizer: Any, weight: float, style: str = "extractive") -> Callable[..., torch.Tensor]:
    """A ``compute_loss_func`` for TRL's ``SFTTrainer``: token cross-entropy, decisions weighted by ``weight``
    (a review's decisions for ``style`` ``review``, tool-call decisions otherwise)."""
    if weight <= 0:
        raise ValueError(f"sft.decision_weight must be > 0, got {weight}")
    if style == "review":
        arrow_ids, newline_ids = arrow_and_newline_ids(tokenizer)

        def is_decision(targets: torch.Tensor) -> torch.Tensor:
            return review_decision_mask(targets, arrow_ids, newline_ids)
    else:
        decision_ids, call_end = decision_vocabulary(tokenizer)

        def is_decision(targets: torch.Tensor) -> torch.Tensor:
            return decision_mask(targets, decision_ids, call_end)

    def loss_func(outputs: Any, labels: torch.Tensor, num_items_in_batch: Any = None) -> torch.Tensor:
        logits = outputs.logits[:, :-1, :].float()
        targets = labels[:, 1:]
        valid = targets != -100
        ce = F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.clamp(min=0).reshape(-1), reduction="none")
        weights = torch.where(is_decision(targets), weight, 1.0)
        total = (ce.view_as(targets) * weights * valid).sum()
        count = num_items_in_batch if num_items_in_batch is not None else valid.sum()
        return total / torch.as_tensor(count, device=total.device).clamp(min=1)

    return loss_func
