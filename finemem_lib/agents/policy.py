"""The memory manager as a policy: fresh prompt per chunk, batched sampling, token ids and logprobs.

Any Hugging Face causal LM with a chat template works (Qwen3 first; the offline Qwen3 built by
:mod:`finemem_lib.agents.offline_model` too). For every prompt, :meth:`ManagerPolicy.generate`
returns the prompt ids, the sampled completion ids (up to and including the end-of-turn token),
the completion text and the per-token log-probabilities of the sampled tokens under the sampling
distribution (logits divided by the temperature, no top-k/top-p truncation, as TRL's GRPO computes
them).

Three engines produce them (``engine``, the profile's ``manager.engine``; one file each in
:mod:`finemem_lib.agents.engines`, behind the :class:`~finemem_lib.agents.engines.Engine` protocol):

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
from finemem_lib.agents.compiled_decoding import check_compile_mode
from finemem_lib.agents.decoding import unsupported_reason
from finemem_lib.agents.engines import ENGINES, Engine, SamplingParams, build_engine
from finemem_lib.agents.review_decoding import RESTATERS, Segment, act_review
from finemem_lib.agents.view import line_hints, manager_view
from finemem_lib.core.memory import Memory, MemoryItem
from finemem_lib.core.ops import NUMBERED_STYLES, STYLES, tool_schemas
from finemem_lib.infra import atomic

logger = logging.getLogger(__name__)

MANAGER_META_FILE = "finemem_manager.json"
DEVICE_ENV = "FINEMEM_MANAGER_DEVICE"  # where a loaded manager goes when no device is given (e.g. cuda)
__all__ = ["ENGINES", "Generation", "ManagerPolicy", "SamplingParams", "StepPrompt", "load_manager"]


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
    segments: list[Segment] | None = None  # review style, restated by the harness: one per decision


@dataclass(frozen=True)
class StepPrompt:
    """The prompt of one chunk step: messages, their token ids and the chunk's sentences."""

    messages: list[dict[str, Any]]
    ids: list[int]
    sentences: list[str] = field(default_factory=list)
    view_k: int = 0
    hints: list[MemoryItem | None] | None = None  # review style with review_hints: each line's hinted item


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
        compile: the native engine's decode step compiled (``on``), eager (``off``), or ``auto`` (left to the
            caller that knows how long the run is, e.g. the GRPO trainer; eager otherwise).
        view_related: items related to the chunk shown beside the ``view_k`` recent ones (0: Mem-alpha's view;
            see :mod:`finemem_lib.agents.view`).
        restate: ``review`` style: who writes each line's restated sentence, the ``model`` or the ``harness``
            (the manager then writes only the decisions; :mod:`finemem_lib.agents.review_decoding`).
        review_hints: ``review`` style restated by the harness: each line also shows the memory item most like
            its sentence (:func:`finemem_lib.agents.view.line_hints`), an UPDATE's likely target.
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
        compile: str = "off",
        view_related: int = 0,
        numbering: str = "before",
        restate: str = "harness",
        review_hints: bool = False,
    ) -> None:
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        if style not in STYLES:
            raise ValueError(f"style must be one of {STYLES}, got {style!r}")
        if restate not in RESTATERS:
            raise ValueError(f"restate must be one of {RESTATERS}, got {restate!r}")
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
        self.restate = restate
        self.review_hints = bool(review_hints)
        self.numbering = numbering  # extractive style: sentence numbers before or after the sentences (prompts)
        self.max_prompt_tokens = max_prompt_tokens
        self.batch_size = batch_size
        self.tools = tool_schemas(style) if with_tools else None
        self.chat_template_kwargs = dict(chat_template_kwargs or {})
        self.stop_ids = self._stop_ids()
        self.engine = engine
        self.compile = check_compile_mode(compile)
        self.backend: Any = None
        self._engine: tuple[tuple, Engine] | None = None
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
            "compile": self.compile,
            "view_related": self.view_related,
            "numbering": self.numbering,
            "restate": self.restate,
            "review_hints": self.review_hints,
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
        return prompts.build_messages(
            chunk, view, self.style, sentences=sentences, total=total, numbering=self.numbering
        )

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
        sentences = prompts.chunk_sentences(chunk) if self.style in NUMBERED_STYLES else []
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
        hints = None
        if self.style == "review" and self.review_hints:
            hints = line_hints(memory, sentences)
        return StepPrompt(messages, ids, sentences, k, hints)

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

    def attach_backend(self, backend: Any) -> None:
        """Generate through ``backend`` (``backend.generate(prompts, sampling, seed) -> list[Decoded]``), e.g. vLLM."""
        self.backend = backend

    def rollout_engine(self) -> Engine:
        """The engine :meth:`generate` uses now (see :mod:`finemem_lib.agents.engines`)."""
        name = self.engine
        if name == "vllm" and self.backend is not None:
            key: tuple = ("vllm", id(self.backend))
        else:
            if name == "vllm" and not self._warned_no_backend:
                logger.warning(
                    "engine 'vllm' without an attached vLLM backend (the GRPO trainer attaches its colocated "
                    "engine); generating with the native engine"
                )
                self._warned_no_backend = True
            if name != "transformers" and unsupported_reason(self.model) is None:
                name = "native"
            else:
                name = "transformers"
            key = (name, id(self.model), self.compile == "on")
        if self._engine is None or self._engine[0] != key:
            built = build_engine(
                name, self.model, self.tokenizer.pad_token_id, self.stop_ids, self.backend, self.compile == "on"
            )
            self._engine = (key, built)
        return self._engine[1]

    @torch.no_grad()
    def generate(
        self,
        prompt_ids: Sequence[Sequence[int]],
        sampling: SamplingParams | None = None,
        seed: int | None = None,
        batch_size: int | None = None,
    ) -> list[Generation]:
        """Sample one completion per prompt (batched, prompts grouped by length); order is kept.

        ``batch_size`` caps the rows of one model call (default: the policy's ``batch_size``).
        Seeded runs are reproducible; with ``seed=None`` the draws follow torch's global random state.
        """
        sampling = sampling or SamplingParams()
        if not prompt_ids:
            return []
        if any(len(ids) == 0 for ids in prompt_ids):
            raise ValueError("every prompt needs at least one token")
        engine = self.rollout_engine()
        rows = batch_size or self.batch_size
        if engine.name == "vllm":
            decoded = engine.generate(prompt_ids, sampling, rows, seed)
        else:
            if seed is not None:
                torch.manual_seed(seed)
            was_training = self.model.training
            self.model.eval()
            try:
                decoded = engine.generate(prompt_ids, sampling, rows, seed)
            finally:
                self.model.train(was_training)
        return [self._generation(p, d.tokens, d.logprobs, d.finished) for p, d in zip(prompt_ids, decoded, strict=True)]

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

    # ------------------------------------------------------------------ one call per step
    def act(
        self,
        chunks: Sequence[str],
        memories: Sequence[Memory],
        sampling: SamplingParams | None = None,
        seed: int | None = None,
        batch_size: int | None = None,
    ) -> tuple[list[StepPrompt], list[Generation]]:
        """Prompt and sample for a batch of chunk steps (chunk ``i`` seen with memory ``i``); ``batch_size``
        caps the rows of one model call (default: the policy's)."""
        if len(chunks) != len(memories):
            raise ValueError(f"got {len(chunks)} chunks for {len(memories)} memories")
        steps = [self.step_prompt(chunk, memory) for chunk, memory in zip(chunks, memories, strict=True)]
        if self.style == "review" and self.restate == "harness":
            reviews = act_review(self, steps, sampling or SamplingParams(), seed, batch_size)
            return steps, [
                Generation(
                    torch.tensor(s.ids, dtype=torch.long), r.completion_ids, r.text, r.logprobs, r.finished, r.segments
                )
                for s, r in zip(steps, reviews, strict=True)
            ]
        rows = {"batch_size": batch_size} if batch_size else {}  # subclasses that generate otherwise need not take it
        return steps, self.generate([s.ids for s in steps], sampling, seed, **rows)


def id_style_for(style: str) -> str:
    """Memory id style that goes with an op style: ``m1, m2, ...`` for extractive, 4-hex ids for content."""
    return "short" if style in NUMBERED_STYLES else "hex"


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
