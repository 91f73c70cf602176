"""The memory manager as a policy: fresh prompt per chunk, batched sampling, token ids and logprobs.

Any Hugging Face causal LM with a chat template works (Qwen3 first; the offline Qwen3 built by
:mod:`finemem_lib.agents.offline_model` too). For every prompt, :meth:`ManagerPolicy.generate`
returns the prompt ids, the sampled completion ids (up to and including the end-of-turn token),
the completion text and the per-token log-probabilities of the sampled tokens under the sampling
distribution (logits divided by the temperature, no top-k/top-p truncation, as TRL's GRPO computes
them).

Three engines produce them (``engine``, the profile's ``manager.engine``):

- ``native`` (default): :class:`finemem_lib.agents.decoding.IncrementalDecoder`, a batched decoding loop with a
  preallocated KV cache, the shared prompt prefix computed once, finished rows dropped and log-probs taken
  from the sampling step (Llama / Mistral / Qwen2 / Qwen3 architectures; other models fall back to
  ``transformers`` with a warning);
- ``transformers``: ``model.generate``, log-probs recomputed with one forward pass (the reference);
- ``vllm``: a vLLM engine attached with :meth:`ManagerPolicy.attach_backend` (the GRPO trainer's colocated
  engine, see :mod:`finemem_lib.training.vllm_rollout`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from finemem_lib.agents import prompts
from finemem_lib.agents.decoding import IncrementalDecoder, shared_prefix, unsupported_reason
from finemem_lib.agents.view import manager_view
from finemem_lib.core.memory import Memory
from finemem_lib.core.ops import STYLES, tool_schemas
from finemem_lib.infra import atomic

logger = logging.getLogger(__name__)

MANAGER_META_FILE = "finemem_manager.json"
DEVICE_ENV = "FINEMEM_MANAGER_DEVICE"  # where a loaded manager goes when no device is given (e.g. cuda)
ENGINES = ("native", "transformers", "vllm")


@dataclass(frozen=True)
class SamplingParams:
    """How completions are drawn; ``temperature == 0`` means greedy decoding, ``top_k == 0`` no top-k cut."""

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 256

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


@dataclass
class Generation:
    """One sampled completion.

    ``completion_ids`` end with the end-of-turn token when the model stopped by itself
    (``finished``); ``logprobs[i]`` is the float32 log-probability of ``completion_ids[i]``.
    """

    prompt_ids: torch.Tensor
    completion_ids: torch.Tensor
    text: str
    logprobs: torch.Tensor
    finished: bool


@dataclass(frozen=True)
class StepPrompt:
    """The prompt of one chunk step: messages, their token ids and the chunk's sentences."""

    messages: list[dict[str, Any]]
    ids: list[int]
    sentences: list[str] = field(default_factory=list)
    view_k: int = 0


class ManagerPolicy:
    """A causal LM acting as the memory manager.

    Args:
        model: a ``transformers`` causal LM.
        tokenizer: its tokenizer, with a chat template that accepts ``tools``.
        style: op style, ``content`` (free text) or ``extractive`` (sentence numbers).
        view_k: memory items shown in the prompt (Mem-alpha: 5); halved while the prompt is too long.
        view_order: ``recency`` (last written) or ``position`` (Mem-alpha: last by list position, with
            "showing k of M" in the heading); see :meth:`finemem_lib.core.memory.Memory.view`.
        max_prompt_tokens: prompt budget that triggers the halving.
        batch_size: prompts per ``generate`` call.
        with_tools: render the tool schemas through the chat template's ``tools``.
        chat_template_kwargs: extra template variables (e.g. ``{"enable_thinking": False}`` for Qwen3).
        engine: ``native`` (the incremental decoder), ``transformers`` (``generate``) or ``vllm`` (a backend
            attached with :meth:`attach_backend`; without one it generates with the native engine).
        view_related: items related to the chunk shown beside the ``view_k`` recent ones (0: Mem-alpha's view;
            see :mod:`finemem_lib.agents.view`).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        style: str = "extractive",
        view_k: int = 5,
        max_prompt_tokens: int = 4096,
        batch_size: int = 16,
        with_tools: bool = True,
        chat_template_kwargs: dict[str, Any] | None = None,
        view_order: str = "recency",
        engine: str = "native",
        view_related: int = 0,
        numbering: str = "before",
    ) -> None:
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        if style not in STYLES:
            raise ValueError(f"style must be one of {STYLES}, got {style!r}")
        if getattr(tokenizer, "chat_template", None) is None:
            raise ValueError("the tokenizer has no chat template; the manager prompt needs one")
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.model = model
        self.tokenizer = tokenizer
        self.style = style
        self.view_k = view_k
        self.view_order = view_order
        self.view_related = view_related  # items related to the chunk added to the view (agents.view)
        self.numbering = numbering  # extractive style: sentence numbers before or after the sentences (prompts)
        self.max_prompt_tokens = max_prompt_tokens
        self.batch_size = batch_size
        self.tools = tool_schemas(style) if with_tools else None
        self.chat_template_kwargs = dict(chat_template_kwargs or {})
        self.stop_ids = self._stop_ids()
        self.engine = engine
        self.backend: Any = None
        self._decoder: IncrementalDecoder | None = None
        self._warned_no_backend = False
        if engine == "native" and (reason := unsupported_reason(model)):
            logger.warning("native decoding engine unavailable (%s); using transformers generate", reason)
            self.engine = "transformers"

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        device: str | None = None,
        model_kwargs: dict[str, Any] | None = None,
        **overrides: Any,
    ) -> ManagerPolicy:
        """Load a model folder (or Hub name); settings saved next to an SFT model are used as defaults.

        ``model_kwargs`` go to ``AutoModelForCausalLM.from_pretrained`` (e.g. ``{"dtype": "bfloat16"}``);
        ``overrides`` replace constructor settings (``style``, ``view_k``, ...). Without ``device`` the model goes
        to ``$FINEMEM_MANAGER_DEVICE`` when that is set, and stays on the CPU otherwise.
        """
        from transformers import AutoModelForCausalLM, AutoTokenizer

        settings: dict[str, Any] = {}
        meta_path = Path(path) / MANAGER_META_FILE
        if meta_path.is_file():
            settings = json.loads(meta_path.read_text()).get("policy", {})
        settings.update(overrides)
        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
            model = AutoModelForCausalLM.from_pretrained(path, **(model_kwargs or {}))
        except (OSError, ValueError) as error:
            raise FileNotFoundError(
                f"could not load a manager model from {str(path)!r}: it is not a local model folder and could not "
                "be fetched from the Hub (offline?). Train one with finemem_lib.agents.sft.train_sft_manager "
                "or pass a local model path."
            ) from error
        device = device or os.environ.get(DEVICE_ENV) or None
        if device:
            model.to(device)
        return cls(model, tokenizer, **settings)

    def settings(self) -> dict[str, Any]:
        """The constructor settings (saved with a model so :meth:`from_pretrained` restores them)."""
        return {
            "style": self.style,
            "view_k": self.view_k,
            "max_prompt_tokens": self.max_prompt_tokens,
            "batch_size": self.batch_size,
            "with_tools": self.tools is not None,
            "chat_template_kwargs": self.chat_template_kwargs,
            "view_order": self.view_order,
            "engine": self.engine,
            "view_related": self.view_related,
            "numbering": self.numbering,
        }

    def save_pretrained(self, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Save model, tokenizer and policy settings (plus ``extra`` metadata) into one folder."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        meta = {"policy": self.settings(), **(extra or {})}
        atomic.write_json(path / MANAGER_META_FILE, meta)  # written last: a folder without it is incomplete
        return path

    # ------------------------------------------------------------------ prompts
    def messages(
        self, chunk: str, memory: Memory, view_k: int | None = None, sentences: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """The chat messages of one chunk step given the current memory."""
        k = self.view_k if view_k is None else view_k
        view = manager_view(memory, k, self.view_order, sentences, self.view_related if k > 0 else 0)
        total = len(memory) if self.view_order == "position" else None
        return prompts.build_messages(chunk, view, self.style, sentences, total, self.numbering)

    def encode_messages(self, messages: list[dict[str, Any]]) -> list[int]:
        """Prompt token ids (chat template with the generation prompt), as TRL tokenizes prompts."""
        encoded = self.tokenizer.apply_chat_template(
            messages,
            tools=self.tools,
            add_generation_prompt=True,
            tokenize=True,
            return_dict=True,
            **self.chat_template_kwargs,
        )
        return list(encoded["input_ids"])

    def step_prompt(self, chunk: str, memory: Memory) -> StepPrompt:
        """The prompt of a chunk step; the memory view is halved while the prompt exceeds the budget."""
        sentences = prompts.chunk_sentences(chunk) if self.style == "extractive" else []
        k = self.view_k
        while True:
            messages = self.messages(chunk, memory, k, sentences or None)
            ids = self.encode_messages(messages)
            if len(ids) <= self.max_prompt_tokens or k == 0:
                break
            k //= 2
        if len(ids) > self.max_prompt_tokens:
            logger.warning(
                "prompt has %d tokens, over max_prompt_tokens=%d even without a memory view",
                len(ids),
                self.max_prompt_tokens,
            )
        return StepPrompt(messages, ids, sentences, k)

    # ------------------------------------------------------------------ generation
    def _stop_ids(self) -> list[int]:
        ids = {self.tokenizer.eos_token_id}
        configured = getattr(getattr(self.model, "generation_config", None), "eos_token_id", None)
        if isinstance(configured, int):
            ids.add(configured)
        elif isinstance(configured, list | tuple):
            ids.update(configured)
        return sorted(i for i in ids if i is not None)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _left_pad(self, batch: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(ids) for ids in batch)
        input_ids = torch.full((len(batch), width), self.tokenizer.pad_token_id, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        for row, ids in enumerate(batch):
            if ids:
                input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
                attention[row, width - len(ids) :] = 1
        return input_ids.to(self.device), attention.to(self.device)

    def attach_backend(self, backend: Any) -> None:
        """Generate through ``backend`` (``backend.generate(prompts, sampling, seed) -> list[Decoded]``), e.g. vLLM."""
        self.backend = backend

    @torch.no_grad()
    def generate(
        self, prompt_ids: Sequence[Sequence[int]], sampling: SamplingParams | None = None, seed: int | None = None
    ) -> list[Generation]:
        """Sample one completion per prompt (batched, prompts grouped by length); order is kept.

        Seeded runs are reproducible; with ``seed=None`` the draws follow torch's global random state.
        """
        sampling = sampling or SamplingParams()
        if not prompt_ids:
            return []
        if any(len(ids) == 0 for ids in prompt_ids):
            raise ValueError("every prompt needs at least one token")
        if self.engine == "vllm" and self.backend is not None:
            decoded = self.backend.generate([list(p) for p in prompt_ids], sampling, seed)
            return [
                self._generation(p, d.tokens, d.logprobs, d.finished) for p, d in zip(prompt_ids, decoded, strict=True)
            ]
        if self.engine == "vllm" and not self._warned_no_backend:
            logger.warning(
                "engine 'vllm' without an attached vLLM backend (the GRPO trainer attaches its colocated engine); "
                "generating with the native engine"
            )
            self._warned_no_backend = True
        if seed is not None:
            torch.manual_seed(seed)
        was_training = self.model.training
        self.model.eval()
        order = sorted(range(len(prompt_ids)), key=lambda i: len(prompt_ids[i]))
        results: dict[int, Generation] = {}
        native = self.engine != "transformers" and unsupported_reason(self.model) is None
        if native:
            decoder = self._native_decoder()
            prefix = decoder.prefix_cache(shared_prefix(prompt_ids))  # computed once for every batch of the call
            generator = torch.Generator(device=decoder.device)
            generator.manual_seed(int(torch.randint(0, 2**62, (1,)).item()))
        try:
            for start in range(0, len(order), self.batch_size):
                chosen = order[start : start + self.batch_size]
                batch = [list(prompt_ids[i]) for i in chosen]
                if native:
                    generations = self._generate_native(batch, sampling, prefix, generator)
                else:
                    generations = self._generate_batch(batch, sampling)
                for index, generation in zip(chosen, generations, strict=True):
                    results[index] = generation
        finally:
            self.model.train(was_training)
        return [results[i] for i in range(len(prompt_ids))]

    def _native_decoder(self) -> IncrementalDecoder:
        if self._decoder is None or self._decoder.model is not self.model:
            self._decoder = IncrementalDecoder(self.model, self.stop_ids)
        return self._decoder

    def _generate_native(
        self, batch: list[list[int]], sampling: SamplingParams, prefix: tuple, generator: torch.Generator
    ) -> list[Generation]:
        decoded = self._native_decoder().decode(
            batch,
            sampling.max_new_tokens,
            temperature=sampling.temperature,
            top_k=sampling.top_k,
            top_p=sampling.top_p,
            generator=generator,
            prefix=prefix,
        )
        return [self._generation(p, d.tokens, d.logprobs, d.finished) for p, d in zip(batch, decoded, strict=True)]

    def _generation(
        self, prompt: Sequence[int], completion: torch.Tensor, logprobs: torch.Tensor, finished: bool
    ) -> Generation:
        completion = torch.as_tensor(completion, dtype=torch.long)
        text_ids = completion[:-1] if finished else completion
        return Generation(
            prompt_ids=torch.tensor(list(prompt), dtype=torch.long),
            completion_ids=completion,
            text=self.tokenizer.decode(text_ids, skip_special_tokens=True),
            logprobs=torch.as_tensor(logprobs, dtype=torch.float32),
            finished=finished,
        )

    def _generate_batch(self, batch: list[list[int]], sampling: SamplingParams) -> list[Generation]:
        input_ids, attention = self._left_pad(batch)
        kwargs: dict[str, Any] = {"do_sample": not sampling.greedy, "max_new_tokens": sampling.max_new_tokens}
        if not sampling.greedy:
            kwargs.update(temperature=sampling.temperature, top_p=sampling.top_p, top_k=sampling.top_k)  # 0: off
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        sequences = self.model.generate(
            input_ids=input_ids,
            attention_mask=attention,
            eos_token_id=self.stop_ids,
            pad_token_id=self.tokenizer.pad_token_id,
            **kwargs,
        )
        new_tokens = sequences[:, input_ids.shape[1] :].cpu()
        lengths, finished = self._completion_lengths(new_tokens)
        logprobs = self._sampled_logprobs(sequences, attention, new_tokens.shape[1], sampling)
        return [
            self._generation(
                prompt, new_tokens[row, : lengths[row]].clone(), logprobs[row, : lengths[row]].clone(), finished[row]
            )
            for row, prompt in enumerate(batch)
        ]

    def _completion_lengths(self, new_tokens: torch.Tensor) -> tuple[list[int], list[bool]]:
        """Tokens up to and including the first stop token (all tokens when none was emitted)."""
        is_stop = torch.isin(new_tokens, torch.tensor(self.stop_ids, dtype=new_tokens.dtype))
        lengths, finished = [], []
        for row in is_stop:
            hits = row.nonzero()
            lengths.append(int(hits[0]) + 1 if len(hits) else int(row.numel()))
            finished.append(bool(len(hits)))
        return lengths, finished

    def _sampled_logprobs(
        self, sequences: torch.Tensor, prompt_attention: torch.Tensor, n_new: int, sampling: SamplingParams
    ) -> torch.Tensor:
        """log p(token) of each generated token under logits / temperature, by one forward pass."""
        if n_new == 0:
            return torch.zeros((sequences.shape[0], 0), dtype=torch.float32)
        attention = torch.cat([prompt_attention, torch.ones_like(sequences[:, prompt_attention.shape[1] :])], dim=1)
        position_ids = (attention.cumsum(dim=1) - 1).clamp(min=0)
        logits = self.model(
            input_ids=sequences, attention_mask=attention, position_ids=position_ids, logits_to_keep=n_new + 1
        ).logits[:, :-1, :]
        logits = logits.float() / (sampling.temperature if not sampling.greedy else 1.0)
        targets = sequences[:, -n_new:]
        picked = torch.log_softmax(logits, dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        return picked.to(torch.float32).cpu()

    # ------------------------------------------------------------------ one call per step
    def act(
        self,
        chunks: Sequence[str],
        memories: Sequence[Memory],
        sampling: SamplingParams | None = None,
        seed: int | None = None,
    ) -> tuple[list[StepPrompt], list[Generation]]:
        """Prompt and sample for a batch of chunk steps (chunk ``i`` seen with memory ``i``)."""
        if len(chunks) != len(memories):
            raise ValueError(f"got {len(chunks)} chunks for {len(memories)} memories")
        steps = [self.step_prompt(chunk, memory) for chunk, memory in zip(chunks, memories, strict=True)]
        return steps, self.generate([s.ids for s in steps], sampling, seed)


def id_style_for(style: str) -> str:
    """Memory id style that goes with an op style: ``m1, m2, ...`` for extractive, 4-hex ids for content."""
    return "short" if style == "extractive" else "hex"


def load_manager(
    path: str | Path, device: str | None = None, model_kwargs: dict[str, Any] | None = None, **overrides: Any
) -> ManagerPolicy:
    """Load a saved manager (an SFT'd offline model or any local/Hub causal LM) as a :class:`ManagerPolicy`."""
    return ManagerPolicy.from_pretrained(path, device=device, model_kwargs=model_kwargs, **overrides)


def sampling_from_config(section: dict[str, Any]) -> SamplingParams:
    """SamplingParams from a profile's ``manager.sampling`` mapping (unknown keys are an error)."""
    known = set(asdict(SamplingParams()))
    unknown = set(section) - known
    if unknown:
        raise ValueError(f"unknown sampling keys {sorted(unknown)}; known: {sorted(known)}")
    return SamplingParams(**section)
