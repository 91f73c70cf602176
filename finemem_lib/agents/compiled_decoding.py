"""The native decoder with its decode step compiled by ``torch.compile`` (inductor): ``manager.compile``.

A decode step of a small model is dozens of tiny kernels (per layer: projections, norms, rotary
embedding, attention as small batched products, MLP); their launch overhead, not arithmetic, is
most of the time at a few rows. Inductor fuses them into a few loops, but needs fixed shapes, so
:class:`CompiledDecoder` decodes with

- rows padded to a multiple of :data:`ROW_BUCKET` (dummy rows repeat the last prompt; finished rows stay
  in the batch, decoded but ignored: the batch never shrinks);
- a row cache of a multiple of :data:`LENGTH_BUCKET` slots, unused slots masked by an additive bias;
- the new key/value written with ``index_copy_`` at a slot given as a tensor (one graph for every step).

One graph is compiled per (rows, cache length, prefix length); inductor keeps the compiled code in its
on-disk cache, so a later process with the same shapes loads it in seconds rather than the first
compile's minute or more. The prompt pass (prefill) and the sampling stay eager. The numbers are the
eager decoder's within float rounding (fused kernels sum in another order), not bit for bit.
"""

from __future__ import annotations

import logging
import math
import weakref
from collections.abc import Sequence
from typing import Any

import torch

from finemem_lib.agents.decoding import Decoded, IncrementalDecoder, _rms_norm

logger = logging.getLogger(__name__)

ROW_BUCKET = 8
LENGTH_BUCKET = 256
COMPILE_MODES = ("off", "on", "auto")
# ``auto`` compiles for runs of at least this many optimizer steps: a cold compile took ~110 s for the first
# shape and ~36 s for each further one, against ~1.2x per decode step at 8 rows (docs/throughput.md).
AUTO_COMPILE_MIN_STEPS = 200
_STEPS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # model -> its compiled step


class _StaticStep(torch.nn.Module):
    """One decode step with fixed shapes: logits ``[B, V]`` for tokens ``[B]`` written at ``slot``."""

    def __init__(self, decoder: IncrementalDecoder) -> None:
        super().__init__()
        self.model = decoder.model
        self.heads, self.kv_heads, self.dim, self.scaling = (
            decoder.heads,
            decoder.kv_heads,
            decoder.head_dim,
            decoder.scaling,
        )

    def forward(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor,
        slot: torch.Tensor,
        valid: torch.Tensor,
        caches: list[tuple[torch.Tensor, torch.Tensor]],
        prefix: list[tuple[torch.Tensor, torch.Tensor]],
    ) -> torch.Tensor:
        body = self.model.model
        rows, kv, groups, dim = tokens.shape[0], self.kv_heads, self.heads // self.kv_heads, self.dim
        hidden = body.embed_tokens(tokens.unsqueeze(1))
        cos, sin = body.rotary_emb(hidden, positions.unsqueeze(1))
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        half = dim // 2
        bias = torch.where(valid, 0.0, float("-inf")).to(hidden.dtype)[:, None, None, :]
        for layer, (keys, values), (prefix_keys, prefix_values) in zip(body.layers, caches, prefix, strict=True):
            attn = layer.self_attn
            x = _rms_norm(layer.input_layernorm, hidden)
            q = attn.q_proj(x).view(rows, 1, self.heads, dim)
            k = attn.k_proj(x).view(rows, 1, kv, dim)
            v = attn.v_proj(x).view(rows, 1, kv, dim)
            if hasattr(attn, "q_norm"):
                q, k = _rms_norm(attn.q_norm, q), _rms_norm(attn.k_norm, k)
            q, k = q.transpose(1, 2), k.transpose(1, 2)
            q = q * cos + torch.cat((-q[..., half:], q[..., :half]), dim=-1) * sin
            k = k * cos + torch.cat((-k[..., half:], k[..., :half]), dim=-1) * sin
            keys.index_copy_(2, slot, k)
            values.index_copy_(2, slot, v.transpose(1, 2))
            q = q.reshape(rows, kv, groups, dim)
            own = torch.matmul(q, keys.transpose(-1, -2)) * self.scaling + bias
            flat_q = q.transpose(0, 1).reshape(kv, rows * groups, dim)  # the prefix once for all rows
            shared = torch.matmul(flat_q, prefix_keys[0].transpose(-1, -2)) * self.scaling
            n_prefix = shared.shape[-1]
            shared = shared.view(kv, rows, groups, n_prefix).transpose(0, 1)
            weights = torch.softmax(torch.cat([shared, own], dim=-1), dim=-1, dtype=torch.float32).to(q.dtype)
            prefix_weights = weights[..., :n_prefix].transpose(0, 1).reshape(kv, rows * groups, n_prefix)
            prefix_out = torch.matmul(prefix_weights, prefix_values[0]).view(kv, rows, groups, dim).transpose(0, 1)
            out = torch.matmul(weights[..., n_prefix:], values) + prefix_out
            hidden = hidden + attn.o_proj(out.reshape(rows, 1, self.heads * dim))
            hidden = hidden + layer.mlp(_rms_norm(layer.post_attention_layernorm, hidden))
        return self.model.lm_head(_rms_norm(body.norm, hidden)[:, -1]).float()


class CompiledDecoder(IncrementalDecoder):
    """:class:`IncrementalDecoder` whose decode steps run one compiled static-shape graph (see the module)."""

    draft_tokens = 0  # one token per row and step: the static graph has one query per row

    def __init__(self, model: Any, stop_ids: Sequence[int]) -> None:
        super().__init__(model, stop_ids)
        self._failed = False

    def _static_step(self) -> Any:
        step = _STEPS.get(self.model)
        if step is None:
            step = torch.compile(_StaticStep(self), dynamic=False)
            _STEPS[self.model] = step
        return step

    def decode(self, prompts: Sequence[Sequence[int]], max_new_tokens: int, *args: Any, **kwargs: Any) -> list[Decoded]:
        """As :meth:`IncrementalDecoder.decode`, rows padded to a multiple of :data:`ROW_BUCKET`."""
        rows = len(prompts)
        padded = list(prompts) + [prompts[-1]] * (-rows % ROW_BUCKET if prompts else 0)
        return super().decode(padded, max_new_tokens, *args, **kwargs)[:rows]

    def _cache_length(self, needed: int) -> int:
        return LENGTH_BUCKET * math.ceil(needed / LENGTH_BUCKET)

    def _compact_now(self, alive: torch.Tensor) -> bool:
        return False

    def _decode_step(self, token: torch.Tensor, position: torch.Tensor, *state: Any) -> torch.Tensor:
        """The eager step's contract (``state``: caches, prefix, slot, valid), through the compiled graph."""
        caches, prefix, slot, valid = state
        if self._failed or prefix is None:
            return super()._decode_step(token, position, *state)
        where = torch.tensor([slot], device=token.device)
        try:
            return self._static_step()(token, position, where, valid, caches, prefix)
        except Exception as error:  # no C++ compiler, an unsupported op, ...: decode eagerly
            logger.warning("compiled decode step unavailable (%s); decoding eagerly", str(error).splitlines()[0])
            self._failed = True
            return super()._decode_step(token, position, *state)


def check_compile_mode(mode: str) -> str:
    """``mode`` when it is one of :data:`COMPILE_MODES`, else a clear error."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"manager.compile must be one of {COMPILE_MODES}, got {mode!r}")
    return mode


def resolve_compile(mode: str, optimizer_steps: int) -> str:
    """``on`` or ``off`` for a run of ``optimizer_steps`` steps (``auto``: on from :data:`AUTO_COMPILE_MIN_STEPS`)."""
    if check_compile_mode(mode) != "auto":
        return mode
    return "on" if optimizer_steps >= AUTO_COMPILE_MIN_STEPS else "off"
