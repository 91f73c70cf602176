"""The reasoner factory: a table of backends, each building a :class:`~finemem_lib.agents.reasoner.Reasoner`.

Kept apart from :mod:`finemem_lib.agents.reasoner` (the interface the backends import), so that no
module imports one that imports it back. A new backend is one entry of :data:`BACKENDS`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from finemem_lib.agents.reasoner import Reasoner
from finemem_lib.agents.reasoner_offline import OfflineReader
from finemem_lib.agents.reasoner_openai import OpenAIReasoner


def _pick(cfg: Mapping[str, Any], *keys: str) -> dict[str, Any]:
    return {k: cfg[k] for k in keys if cfg.get(k) is not None}


def _offline(cfg: Mapping[str, Any]) -> Reasoner:
    return OfflineReader(**_pick(cfg, "min_overlap", "vote_k"))


def _hf(cfg: Mapping[str, Any]) -> Reasoner:
    from finemem_lib.agents.reasoner_hf import HFReasoner  # torch and transformers: only when asked for

    if not cfg.get("model"):
        raise ValueError("reasoner backend 'hf' needs reasoner.model (a local path or a Hub id)")
    return HFReasoner.from_pretrained(
        cfg["model"], **_pick(cfg, "device", "dtype", "batch_size", "max_new_tokens", "temperature", "enable_thinking")
    )


def _openai(cfg: Mapping[str, Any]) -> Reasoner:
    return OpenAIReasoner.from_config(cfg)


# backend name -> builder from the rest of the ``reasoner:`` section
BACKENDS: dict[str, Callable[[Mapping[str, Any]], Reasoner]] = {"offline": _offline, "hf": _hf, "openai": _openai}


def build_reasoner(cfg: Mapping[str, Any] | None = None) -> Reasoner:
    """A reasoner from the ``reasoner:`` config section.

    Keys: ``backend`` (offline | hf | openai, default offline); for ``hf``: ``model`` (local path or
    Hub id), ``device``, ``dtype``, ``batch_size``; for ``openai``: ``model``, ``base_url`` (if
    empty, read from ``REASONER_BASE_URL`` / ``REASONER_MODEL`` / ``REASONER_API_KEY``),
    ``api_key_env``, ``timeout_s``, ``max_retries``, ``concurrency``; shared: ``temperature``
    (0.1), ``max_new_tokens``, ``enable_thinking`` (False); for ``offline``: ``min_overlap``, ``vote_k``.
    """
    cfg = dict(cfg or {})
    backend = str(cfg.pop("backend", "offline")).lower()
    if backend not in BACKENDS:
        raise ValueError(f"unknown reasoner backend {backend!r}; choose one of {tuple(BACKENDS)}")
    return BACKENDS[backend](cfg)
