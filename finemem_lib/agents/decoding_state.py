"""What the native decoding engine and its draft-verifying loop share: the prompt pass's state and a decoded row."""

from __future__ import annotations

from dataclasses import dataclass

import torch

# A finished row stays in the cache (decoded but ignored) until this share of the batch has finished.
_COMPACT_FRACTION = 8


@dataclass
class PromptState:
    """After the prompt pass: the row caches (suffixes right-aligned in slots ``0:width``), the shared prefix's
    keys/values, which row slots hold real tokens, the next token's logits and rotary position of every row."""

    caches: list[tuple]
    prefix: list[tuple] | None
    valid: torch.Tensor
    logits: torch.Tensor
    next_position: torch.Tensor
    width: int


@dataclass
class Decoded:
    """One completion: ``tokens`` end with the stop token when ``finished``; ``logprobs`` are float32."""

    tokens: torch.Tensor
    logprobs: torch.Tensor
    finished: bool
