"""Next-token choice of the native decoder: greedy, or sampled by inverting the cumulative distribution.

A sampled token is ``F⁻¹(u)``: the first vocabulary entry whose cumulative probability exceeds ``u · total``
for a uniform ``u`` drawn beforehand for that row and token index (:func:`uniforms`). The token at each
index is therefore a function of the model's distribution there and of its own ``u``: the same whether
the decoder scores one token per call or several (speculative decoding verifies a draft token by checking
that it is the one this ``u`` picks), and the same distribution as ``torch.multinomial``, at a tenth of
its cost on a CPU (``multinomial`` draws an exponential variate per vocabulary entry).
"""

from __future__ import annotations

import torch


def filter_logits(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Top-k then top-p (nucleus) truncation of ``[..., V]`` logits, as transformers' logits warpers do."""
    if top_k > 0 and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=False)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        remove = cumulative <= 1 - top_p
        remove[..., -1:] = False  # keep at least the most likely token
        logits = logits.masked_fill(remove.scatter(-1, order, remove), float("-inf"))
    return logits


def uniforms(rows: int, tokens: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """``[rows, tokens]`` uniforms in [0, 1): one per row and token index of a sampled call."""
    return torch.rand((rows, tokens), generator=generator, device=device)


def draw(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """``F⁻¹(u)`` per row of ``probs`` ``[..., V]`` (rows need not sum to 1) for ``u`` ``[...]`` in [0, 1).

    Token ``i`` is drawn when ``u · total`` falls in ``[cdf[i-1], cdf[i])``: with ``u`` uniform, token ``i``
    has probability ``probs[i] / total`` (a token of probability 0 is never drawn).
    """
    cdf = probs.cumsum(dim=-1)
    target = (u.to(cdf.dtype) * cdf[..., -1]).unsqueeze(-1)
    return torch.searchsorted(cdf, target.contiguous(), right=True).clamp_(max=probs.shape[-1] - 1).squeeze(-1)


def choose(
    logits: torch.Tensor, temperature: float, top_k: int, top_p: float, u: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens for ``logits`` ``[..., V]`` and their log-probs under ``log_softmax(logits / temperature)``.

    Greedy (the argmax, log-probs of ``log_softmax(logits)``) when ``temperature == 0``; else ``F⁻¹(u)`` of
    the distribution after temperature, top-k and top-p (the log-prob is the untruncated one, as TRL's
    GRPO computes it).
    """
    if temperature == 0:
        token = logits.argmax(dim=-1)
        logprobs = torch.log_softmax(logits, dim=-1)
    else:
        scaled = logits / temperature
        logprobs = torch.log_softmax(scaled, dim=-1)
        truncated = top_k > 0 or top_p < 1.0
        probs = filter_logits(scaled, top_k, top_p).softmax(dim=-1) if truncated else logprobs.exp()
        token = draw(probs, u)
    return token, logprobs.gather(-1, token.unsqueeze(-1)).squeeze(-1)
