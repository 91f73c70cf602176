"""A batched incremental decoder for Llama-style causal LMs (Llama, Mistral, Qwen2, Qwen3): the manager's CPU engine.

``transformers``' ``generate`` pays, at every new token, for a growing ``DynamicCache`` (a ``cat``
per layer), mask construction and logits processors; on a small model that overhead is most of
the time. :class:`IncrementalDecoder` runs the model's own modules (embeddings, norms, projections,
rotary embedding, MLP, head) in a plain loop instead:

- **Preallocated KV cache**: one ``[rows, kv_heads, length, head_dim]`` buffer per layer and per
  key/value, sized for the longest prompt suffix plus ``max_new_tokens``; a new token writes one column.
- **Shared prefix once**: the longest token prefix common to all prompts of a call (system prompt
  and tool schemas) is run once with batch 1 and its keys/values are stored once for all rows;
  attention splits into the prefix part (one matmul per KV head for every row) and the rows' own part,
  under one softmax (exact, not an approximation).
- **Left-padded suffixes**: the rest of each prompt sits right-aligned in the row cache; pad slots
  are masked out and rotary positions count real tokens only, so every row computes what an
  unpadded forward pass computes. The prompt pass uses torch's fused attention
  (``scaled_dot_product_attention``), decoding steps use plain matmuls (faster for one query).
- **Finished rows dropped**: rows that emitted a stop token leave the batch (their cache rows are
  removed once an eighth of the batch has finished), so the batch shrinks as episodes end.
- **Log-probs from the sampling step**: ``log_softmax(logits / temperature)`` of the sampled token,
  from the very logits it was sampled from (no truncation by top-k/top-p, as TRL's GRPO computes
  them); greedy decoding reports ``log_softmax(logits)``.
- **Sampling by inverse CDF** (:mod:`finemem_lib.agents.sampling`): one uniform per row and token index,
  drawn before decoding, picks each token, so the tokens do not depend on how many are scored per call.
- **Several tokens per call** (:attr:`IncrementalDecoder.draft_tokens`, :mod:`finemem_lib.agents.speculative`):
  each row's next tokens are guessed from what followed the same tokens before and scored in one call; the
  guesses that agree with the model's own picks are kept (the same tokens as one token per call).

Length bucketing (prompts sorted by length, cut into batches) is done by the caller,
:meth:`finemem_lib.agents.policy.ManagerPolicy.generate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from finemem_lib.agents.decoding_state import _COMPACT_FRACTION, Decoded, PromptState
from finemem_lib.agents.drafts import NgramDrafts
from finemem_lib.agents.sampling import choose, filter_logits, uniforms
from finemem_lib.agents.speculative import decode_with_drafts

__all__ = ["Decoded", "IncrementalDecoder", "filter_logits", "shared_prefix", "unsupported_reason"]

SUPPORTED_MODEL_TYPES = ("llama", "mistral", "qwen2", "qwen3")
_ATTENTION_PARTS = ("q_proj", "k_proj", "v_proj", "o_proj")
_LAYER_PARTS = ("self_attn", "mlp", "input_layernorm", "post_attention_layernorm")
# Largest tensor (elements) normalised by torch's fused RMSNorm kernel: 6x slower than the module's formula
# at prompt-pass sizes on a CPU (2000 x 128: 640 vs 110 us), faster at decode sizes (8 x 128: 11 vs 13 us).
_FUSED_NORM_MAX = 16384


def unsupported_reason(model: Any) -> str | None:
    """Why :class:`IncrementalDecoder` cannot run ``model`` (None when it can)."""
    config = getattr(model, "config", None)
    model_type = getattr(config, "model_type", None)
    if model_type not in SUPPORTED_MODEL_TYPES:
        return f"model type {model_type!r} is not one of {SUPPORTED_MODEL_TYPES}"
    body = getattr(model, "model", None)
    for part in ("embed_tokens", "layers", "norm", "rotary_emb"):
        if not hasattr(body, part):
            return f"the model has no model.{part}"
    if not hasattr(model, "lm_head"):
        return "the model has no lm_head"
    for layer in body.layers:
        missing = [p for p in _LAYER_PARTS if not hasattr(layer, p)]
        missing += [f"self_attn.{p}" for p in _ATTENTION_PARTS if not hasattr(getattr(layer, "self_attn", None), p)]
        if missing:
            return f"a decoder layer lacks {missing}"
    if any(t != "full_attention" for t in getattr(config, "layer_types", None) or ["full_attention"]):
        return "sliding-window attention layers are not supported"
    return None


def _rms_norm(module: Any, x: torch.Tensor) -> torch.Tensor:
    """``module(x)`` for a Llama-style RMSNorm, through torch's fused kernel when ``x`` is a small float32 tensor
    (same formula; on a CPU the fused kernel is the faster one at decode sizes, the slower one above them)."""
    eps = getattr(module, "variance_epsilon", None)
    small = x.numel() <= _FUSED_NORM_MAX
    if x.dtype != torch.float32 or eps is None or not small or not type(module).__name__.endswith("RMSNorm"):
        return module(x)
    return F.rms_norm(x, (x.shape[-1],), module.weight, eps)


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding of ``x`` ``[B, H, S, D]`` with ``cos``/``sin`` ``[B, S, D]``."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return x * cos + _rotate_half(x) * sin


class IncrementalDecoder:
    """Batched sampling with a preallocated KV cache for a Llama-style ``transformers`` causal LM.

    Args:
        model: a ``LlamaForCausalLM``-shaped model (see :data:`SUPPORTED_MODEL_TYPES`).
        stop_ids: token ids that end a completion (kept as its last token).

    Raises:
        ValueError: the model's architecture is not one this decoder runs (use the transformers engine).
    """

    # Most draft tokens a row scores per model call (0: one token per call; see agents.speculative).
    draft_tokens = 12

    def __init__(self, model: Any, stop_ids: Sequence[int]) -> None:
        reason = unsupported_reason(model)
        if reason:
            raise ValueError(f"the native decoding engine cannot run this model: {reason}; use engine 'transformers'")
        if not stop_ids:
            raise ValueError("stop_ids must name at least one token")
        self.model = model
        self.body = model.model
        self.layers = list(self.body.layers)
        attention = self.layers[0].self_attn
        config = model.config
        self.head_dim = int(getattr(attention, "head_dim", None) or config.hidden_size // config.num_attention_heads)
        self.kv_heads = int(config.num_key_value_heads)
        self.heads = int(config.num_attention_heads)
        self.scaling = float(getattr(attention, "scaling", self.head_dim**-0.5))
        self.stop_ids = sorted(set(int(i) for i in stop_ids))
        self.max_positions = int(getattr(config, "max_position_embeddings", 1 << 30))
        self.sliding_window = (
            getattr(config, "sliding_window", None) if getattr(config, "use_sliding_window", True) else None
        )
        self.drafts = NgramDrafts()  # what followed the same tokens before, in any completion of this decoder

    # ------------------------------------------------------------------ the model, step by step
    def _attention(
        self, layer: Any, hidden: torch.Tensor, rope: tuple, cache: tuple, shared: tuple | None, write, mask
    ) -> torch.Tensor:
        """Self-attention of ``hidden`` ``[B, S, H]`` over the shared prefix and the rows' own cache.

        ``write``: where the new keys/values go, an int ``start`` (row-cache slots ``start:start+S`` of every
        row) or ``(rows, slots)`` index tensors ``[B, S]`` (row r's token j at slot ``slots[r, j]``). Every
        query sees the whole prefix (``shared``: ``[1, kv, P, D]`` keys and values, stored once for all rows).
        ``mask``: for the prompt pass an additive ``[B, 1, S, P + start + S]`` (0 where a query may attend, else
        -inf); for decoding an additive ``[B, 1, 1, S, L]`` bias over the row slots ``0:L``.
        """
        attn = layer.self_attn
        batch, length, _ = hidden.shape
        q = attn.q_proj(hidden).view(batch, length, self.heads, self.head_dim)
        k = attn.k_proj(hidden).view(batch, length, self.kv_heads, self.head_dim)
        v = attn.v_proj(hidden).view(batch, length, self.kv_heads, self.head_dim)
        if hasattr(attn, "q_norm"):  # Qwen3: RMSNorm over the head dimension
            q, k = _rms_norm(attn.q_norm, q), _rms_norm(attn.k_norm, k)
        cos, sin = rope
        q = _rope(q.transpose(1, 2), cos, sin)
        k = _rope(k.transpose(1, 2), cos, sin)
        keys, values = cache
        if isinstance(write, int):
            keys[:, :, write : write + length] = k
            values[:, :, write : write + length] = v.transpose(1, 2)
        else:
            keys[write[0], :, write[1]] = k.transpose(1, 2)
            values[write[0], :, write[1]] = v
        groups, kv, dim = self.heads // self.kv_heads, self.kv_heads, self.head_dim
        if mask.dim() == 4:  # prompt pass: fused attention over [prefix | rows]
            end = write + length
            all_keys, all_values = keys[:, :, :end], values[:, :, :end]
            if shared is not None:
                prefix_keys, prefix_values = shared
                all_keys = torch.cat([prefix_keys.expand(batch, -1, -1, -1), all_keys], dim=2)
                all_values = torch.cat([prefix_values.expand(batch, -1, -1, -1), all_values], dim=2)
            out = F.scaled_dot_product_attention(
                q, all_keys, all_values, attn_mask=mask, scale=self.scaling, enable_gqa=groups > 1
            )
        else:  # decode: grouped-query attention as matmuls, the prefix part once for all rows
            end = mask.shape[-1]
            out = self._decode_attention(
                q.reshape(batch, kv, groups * length, dim), keys[:, :, :end], values[:, :, :end], shared, mask
            )
        out = out.reshape(batch, self.heads, length, dim)
        return attn.o_proj(out.transpose(1, 2).reshape(batch, length, self.heads * dim))

    def _decode_attention(
        self, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, shared: tuple | None, bias: torch.Tensor
    ) -> torch.Tensor:
        """A few queries per row: ``q`` ``[B, kv, groups * S, D]`` (each KV head's query heads, S queries each)
        over the row slots (``bias`` ``[B, 1, 1, S, L]``) and the shared prefix; every KV group read once."""
        batch, kv, queries, dim = q.shape
        scores = torch.matmul(q, keys.transpose(-1, -2)) * self.scaling
        scores = (scores.view(batch, kv, -1, bias.shape[-2], bias.shape[-1]) + bias).view(batch, kv, queries, -1)
        if shared is None:
            return torch.matmul(torch.softmax(scores, dim=-1, dtype=torch.float32).to(q.dtype), values)
        prefix_keys, prefix_values = shared  # [kv, B*queries, D] x [kv, D, P]: one matmul per kv head
        n_prefix = prefix_keys.shape[2]
        flat_q = q.transpose(0, 1).reshape(kv, batch * queries, dim)
        prefix_scores = torch.matmul(flat_q, prefix_keys[0].transpose(-1, -2)) * self.scaling
        prefix_scores = prefix_scores.view(kv, batch, queries, n_prefix).transpose(0, 1)
        weights = torch.softmax(torch.cat([prefix_scores, scores], dim=-1), dim=-1, dtype=torch.float32).to(q.dtype)
        prefix_weights = weights[..., :n_prefix].transpose(0, 1).reshape(kv, batch * queries, n_prefix)
        prefix_out = torch.matmul(prefix_weights, prefix_values[0]).view(kv, batch, queries, dim).transpose(0, 1)
        return torch.matmul(weights[..., n_prefix:], values) + prefix_out

    def _forward(
        self,
        tokens: torch.Tensor,
        positions: torch.Tensor,
        caches: list[tuple],
        shared: list[tuple] | None,
        write,
        mask: torch.Tensor,
    ) -> torch.Tensor:
        """Hidden states after the final norm for ``tokens`` ``[B, S]`` written at ``write`` (see :meth:`_attention`).

        ``mask``: for the prompt pass a bool ``[B, 1, S, start + S]``, True where a query may attend a row slot;
        for decoding the additive ``[B, 1, 1, S, L]`` bias of :meth:`_attention`."""
        hidden = self.body.embed_tokens(tokens)
        if mask.dim() == 4:  # prompt pass: every query also sees the whole prefix
            if shared:
                n_prefix = shared[0][0].shape[2]
                seen = torch.ones((*mask.shape[:3], n_prefix), dtype=torch.bool, device=mask.device)
                mask = torch.cat([seen, mask], dim=-1)
            # the additive form fused attention turns a bool mask into (0 / -inf), built once for every layer
            mask = torch.where(mask, 0.0, float("-inf")).to(hidden.dtype)
        rope = self.body.rotary_emb(hidden, positions)
        for i, (layer, cache) in enumerate(zip(self.layers, caches, strict=True)):
            layer_shared = shared[i] if shared else None
            hidden = hidden + self._attention(
                layer, _rms_norm(layer.input_layernorm, hidden), rope, cache, layer_shared, write, mask
            )
            hidden = hidden + layer.mlp(_rms_norm(layer.post_attention_layernorm, hidden))
        return _rms_norm(self.body.norm, hidden)

    def _logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.model.lm_head(hidden).float()

    def _new_caches(self, rows: int, length: int) -> list[tuple]:
        weight = self.body.embed_tokens.weight
        shape = (rows, self.kv_heads, length, self.head_dim)
        return [
            (
                torch.zeros(shape, dtype=weight.dtype, device=weight.device),
                torch.zeros(shape, dtype=weight.dtype, device=weight.device),
            )
            for _ in self.layers
        ]

    # ------------------------------------------------------------------ public
    @property
    def device(self) -> torch.device:
        return self.body.embed_tokens.weight.device

    @torch.no_grad()
    def prefix_cache(self, prefix: Sequence[int]) -> tuple[list[tuple] | None, int]:
        """Keys/values of a prompt prefix (batch 1), shared by the rows of :meth:`decode` calls."""
        if not prefix:
            return None, 0
        tokens = torch.tensor([list(prefix)], dtype=torch.long, device=self.device)
        positions = torch.arange(len(prefix), device=self.device).unsqueeze(0)
        caches = self._new_caches(1, len(prefix))
        causal = torch.ones(len(prefix), len(prefix), dtype=torch.bool, device=self.device).tril()
        self._forward(tokens, positions, caches, None, 0, causal[None, None])
        return caches, len(prefix)

    @torch.no_grad()
    def decode(
        self,
        prompts: Sequence[Sequence[int]],
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        generator: torch.Generator | None = None,
        prefix: tuple[list[tuple], int] | None = None,
    ) -> list[Decoded]:
        """One completion per prompt; ``temperature == 0`` is greedy. ``prefix`` from :meth:`prefix_cache`
        must be a common prefix of every prompt, shorter than each of them (computed here when None).

        With :attr:`draft_tokens` > 0 the rows decode several tokens per model call from n-gram drafts
        (:mod:`finemem_lib.agents.speculative`: the same distribution), else one token per call."""
        if not prompts or any(len(p) == 0 for p in prompts):
            raise ValueError("every prompt needs at least one token")
        if max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        spare = self.draft_tokens
        state = self._prefill(prompts, max_new_tokens, spare, prefix)
        sampling = (temperature, top_k, top_p)
        u = uniforms(len(prompts), max_new_tokens, generator, self.device) if temperature > 0 else None
        if spare > 0:
            tail = [list(p[-self.drafts.n :]) for p in prompts]
            return decode_with_drafts(self, state, tail, max_new_tokens, sampling, u)
        return self._decode_one_by_one(state, max_new_tokens, sampling, u)

    def _prefill(
        self, prompts: Sequence[Sequence[int]], max_new_tokens: int, spare: int, prefix: tuple | None
    ) -> PromptState:
        """The prompt pass: each prompt's suffix after ``prefix`` right-aligned in the row cache (``spare`` more
        slots for drafts), and the logits of each prompt's next token. Identical prompts (the G rollouts of an
        instance start from the same one) are run once and their rows copied."""
        device = self.device
        if prefix is None:
            prefix = self.prefix_cache(shared_prefix(prompts))
        prefix_caches, n_prefix = prefix
        suffixes = [list(p[n_prefix:]) for p in prompts]
        if any(not s for s in suffixes):
            raise ValueError("the shared prefix must be shorter than every prompt")
        rows, width = len(prompts), max(len(s) for s in suffixes)
        longest = n_prefix + max(len(s) for s in suffixes) + max_new_tokens
        if longest > self.max_positions:
            raise ValueError(f"prompt + max_new_tokens ({longest}) exceeds the model's {self.max_positions} positions")
        if self.sliding_window is not None and longest > int(self.sliding_window):
            raise ValueError(f"sequences longer than the sliding window ({self.sliding_window}) are not supported")

        distinct: dict[tuple[int, ...], int] = {}
        copy_of = [distinct.setdefault(tuple(s), len(distinct)) for s in suffixes]
        if len(distinct) < rows:
            first = {index: row for row, index in reversed(list(enumerate(copy_of)))}
            state = self._prefill([prompts[first[i]] for i in range(len(distinct))], max_new_tokens, spare, prefix)
            where = torch.tensor(copy_of, device=device)
            return PromptState(
                [(k.index_select(0, where), v.index_select(0, where)) for k, v in state.caches],
                prefix_caches,
                state.valid[where],
                state.logits[where],
                state.next_position[where],
                state.width,
            )
        caches = self._new_caches(rows, self._cache_length(width + max_new_tokens + spare))
        valid = torch.zeros(rows, caches[0][0].shape[2], dtype=torch.bool, device=device)
        tokens = torch.full((rows, width), 0, dtype=torch.long, device=device)
        lengths = torch.tensor([len(s) for s in suffixes], device=device)
        for row, suffix in enumerate(suffixes):
            tokens[row, width - len(suffix) :] = torch.tensor(suffix, dtype=torch.long)
        column = torch.arange(width, device=device)
        real = column.unsqueeze(0) >= (width - lengths).unsqueeze(1)  # [rows, width]
        valid[:, :width] = real
        positions = (n_prefix + real.long().cumsum(dim=1) - 1).clamp(min=0)
        # query i (slot i) sees the real slots up to itself; a pad query sees itself (never an empty row)
        key_slot, query_slot = column.view(1, 1, -1), column.view(1, -1, 1)
        mask = (real[:, None, :] & (key_slot <= query_slot)) | (key_slot == query_slot)
        hidden = self._forward(tokens, positions, caches, prefix_caches, 0, mask.unsqueeze(1))
        return PromptState(caches, prefix_caches, valid, self._logits(hidden[:, -1]), positions[:, -1] + 1, width)

    def _decode_one_by_one(
        self, state: PromptState, max_new_tokens: int, sampling: tuple, u: torch.Tensor | None
    ) -> list[Decoded]:
        """The decoding loop of one token per row and model call (all rows write at the same slot);
        ``u``: the uniforms of a sampled call (:func:`finemem_lib.agents.sampling.uniforms`)."""
        device = self.device
        caches, prefix_caches, valid, logits, next_position = (
            state.caches,
            state.prefix,
            state.valid,
            state.logits,
            state.next_position,
        )
        rows = logits.shape[0]
        stop = torch.tensor(self.stop_ids, device=device)
        out_tokens = torch.zeros(rows, max_new_tokens, dtype=torch.long)
        out_logprobs = torch.zeros(rows, max_new_tokens, dtype=torch.float32)
        out_lengths = torch.full((rows,), max_new_tokens, dtype=torch.long)
        out_finished = torch.zeros(rows, dtype=torch.bool)
        row_ids = torch.arange(rows)  # original row of each batch row
        alive = torch.ones(rows, dtype=torch.bool)  # batch rows still decoding
        slot = state.width
        for step in range(max_new_tokens):
            token, logprob = choose(logits, *sampling, None if u is None else u[:, step])
            token_cpu, logprob_cpu = token.cpu(), logprob.cpu()
            live_rows = row_ids[alive]
            out_tokens[live_rows, step] = token_cpu[alive]
            out_logprobs[live_rows, step] = logprob_cpu[alive]
            stopped = torch.isin(token, stop).cpu() & alive
            if stopped.any():
                out_lengths[row_ids[stopped]] = step + 1
                out_finished[row_ids[stopped]] = True
                alive &= ~stopped
            if step == max_new_tokens - 1 or not alive.any():
                break
            if self._compact_now(alive):
                keep = alive.nonzero().squeeze(1)
                keep_dev = keep.to(device)
                caches = [(k.index_select(0, keep_dev), v.index_select(0, keep_dev)) for k, v in caches]
                valid, next_position, token = valid[keep_dev], next_position[keep_dev], token[keep_dev]
                u = None if u is None else u[keep_dev]
                row_ids, alive = row_ids[keep], alive[keep]
            valid[:, slot] = True
            logits = self._decode_step(token, next_position, caches, prefix_caches, slot, valid)
            next_position = next_position + 1
            slot += 1
        return [
            Decoded(
                out_tokens[r, : out_lengths[r]].clone(),
                out_logprobs[r, : out_lengths[r]].clone(),
                bool(out_finished[r]),
            )
            for r in range(rows)
        ]

    # ------------------------------------------------------------------ hooks of the decoding loop
    def _cache_length(self, needed: int) -> int:
        """Slots of the row cache for ``needed`` (longest suffix + new tokens)."""
        return needed

    def _compact_now(self, alive: torch.Tensor) -> bool:
        """Whether to drop the finished rows from the cache now (once an eighth of the batch has finished)."""
        return bool((~alive).sum() * _COMPACT_FRACTION >= alive.numel())

    def _decode_step(
        self,
        token: torch.Tensor,
        position: torch.Tensor,
        caches: list[tuple],
        prefix: list[tuple] | None,
        slot: int,
        valid: torch.Tensor,
    ) -> torch.Tensor:
        """Logits ``[B, V]`` after ``token`` ``[B]`` at ``position``, written at row-cache slot ``slot``."""
        allowed = valid[:, None, None, None, : slot + 1]
        bias = torch.zeros(allowed.shape, dtype=caches[0][0].dtype, device=valid.device).masked_fill_(
            ~allowed, float("-inf")
        )
        hidden = self._forward(token.unsqueeze(1), position.unsqueeze(1), caches, prefix, slot, bias)
        return self._logits(hidden[:, -1])


def shared_prefix(prompts: Sequence[Sequence[int]]) -> list[int]:
    """The longest token prefix common to all prompts, one token shorter than the shortest prompt at most."""
    first = list(prompts[0])
    limit = min(len(p) for p in prompts) - 1
    n = 0
    while n < limit and all(p[n] == first[n] for p in prompts):
        n += 1
    return first[:n]
