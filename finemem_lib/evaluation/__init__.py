"""Evaluation: methods x benchmarks -> per-question records -> tables in the papers' layouts.

- :mod:`~finemem_lib.evaluation.methods`: baselines (long-context, RAG-BM25, store-everything, closed-book)
  and managers given as model folders.
- :mod:`~finemem_lib.evaluation.benchmarks`: the Memalpha test split and MemoryAgentBench (real, or the
  offline out-of-distribution analogue), plus bring-your-own parquet files.
- :mod:`~finemem_lib.evaluation.records`: resumable per-question JSONL records.
- :mod:`~finemem_lib.evaluation.tables`: bootstrap intervals and the two tables.
- :mod:`~finemem_lib.evaluation.runner`: the stage itself (``python -m finemem_lib.evaluation``).

``evaluate_manager``, ``evaluate_baselines`` and ``summary_table`` (in-memory, per raw source) stay here.
"""

from typing import Any

__all__ = ["evaluate_baselines", "evaluate_manager", "summary_table"]


def __getattr__(name: str) -> Any:  # the legacy helpers import torch (rollouts): load them on first use only
    if name in __all__:
        from finemem_lib.evaluation import legacy

        return getattr(legacy, name)
    raise AttributeError(f"module 'finemem_lib.evaluation' has no attribute {name!r}")
