"""Reasoner backend: a transformers causal LM (local path or Hub id), batched, chat template.

Prompts go through the tokenizer's chat template with ``enable_thinking=False`` (Qwen3's
non-thinking mode; templates without that switch ignore it). Generation is batched with left
padding; requests are sorted by prompt length so each batch pads little. Temperature 0.1 with
sampling by default (the paper's reasoner setting); ``temperature=0`` decodes greedily.
"""

from __future__ import annotations

from typing import Any

import torch

from finemem_lib.agents.reasoner import AnswerRequest, Reasoner


class HFReasoner(Reasoner):
    """A causal LM answering from the retrieved items.

    Args:
        model: a loaded ``AutoModelForCausalLM``.
        tokenizer: its tokenizer (needs a chat template; a pad token is taken from EOS if missing).
        batch_size: prompts per ``generate`` call.
        max_new_tokens: answer length limit.
        temperature: > 0 samples at that temperature; 0 decodes greedily.
        enable_thinking: passed to the chat template (Qwen3: False = non-thinking mode).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        batch_size: int = 8,
        max_new_tokens: int = 256,
        temperature: float = 0.1,
        enable_thinking: bool = False,
    ) -> None:
        if batch_size < 1 or max_new_tokens < 1 or temperature < 0:
            raise ValueError("batch_size and max_new_tokens must be >= 1 and temperature >= 0")
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("the reasoner's tokenizer has no chat template")
        if tokenizer.pad_token_id is None:
            if tokenizer.eos_token is None:
                raise ValueError("the reasoner's tokenizer has neither a pad token nor an EOS token")
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "left"
        self.model, self.tokenizer = model.eval(), tokenizer
        self.batch_size, self.max_new_tokens = int(batch_size), int(max_new_tokens)
        self.temperature, self.enable_thinking = float(temperature), bool(enable_thinking)

    @classmethod
    def from_pretrained(
        cls, name_or_path: str, device: str | None = None, dtype: str = "auto", **kwargs: Any
    ) -> HFReasoner:
        """Load model and tokenizer from a local folder or a Hub id."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            tokenizer = AutoTokenizer.from_pretrained(name_or_path)
            model = AutoModelForCausalLM.from_pretrained(name_or_path, dtype=dtype)
        except (OSError, ValueError) as exc:
            raise OSError(
                f"cannot load the reasoner model {name_or_path!r} ({exc}). Pass a local model folder as "
                "reasoner.model, or allow Hub downloads (HF_HUB_OFFLINE unset)."
            ) from None
        return cls(model.to(device), tokenizer, **kwargs)

    def prompt(self, request: AnswerRequest) -> str:
        """The chat-templated prompt text for one request."""
        return self.tokenizer.apply_chat_template(
            request.messages(), tokenize=False, add_generation_prompt=True, enable_thinking=self.enable_thinking
        )

    def _answer_texts(self, requests: list[AnswerRequest]) -> list[str]:
        prompts = [self.prompt(r) for r in requests]
        lengths = [len(self.tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
        self._check_context(max(lengths))
        order = sorted(range(len(prompts)), key=lambda i: lengths[i])
        texts: list[str] = [""] * len(prompts)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            for i, text in zip(batch, self._generate([prompts[i] for i in batch]), strict=True):
                texts[i] = text
        return texts

    def _check_context(self, longest_prompt: int) -> None:
        limit = getattr(self.model.config, "max_position_embeddings", None)
        if limit is not None and longest_prompt + self.max_new_tokens > limit:
            raise ValueError(
                f"a reasoner prompt has {longest_prompt} tokens; with max_new_tokens={self.max_new_tokens} it "
                f"exceeds the model's context of {limit} tokens (retrieve fewer items or shorten the window)"
            )

    @torch.inference_mode()
    def _generate(self, prompts: list[str]) -> list[str]:
        encoded = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
        encoded = encoded.to(self.model.device)
        sampling: dict[str, Any] = (
            {"do_sample": True, "temperature": self.temperature}
            if self.temperature > 0
            else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
        )
        output = self.model.generate(
            **encoded, max_new_tokens=self.max_new_tokens, pad_token_id=self.tokenizer.pad_token_id, **sampling
        )
        new_tokens = output[:, encoded["input_ids"].shape[1] :]
        return self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
