"""Evaluation: methods x benchmarks -> per-question records -> tables in the papers' layouts.

- :mod:`~finemem_lib.evaluation.methods`: baselines (long-context, RAG-BM25, store-everything, closed-book)
  and managers given as model folders.
- :mod:`~finemem_lib.evaluation.benchmarks`: the Memalpha test split and MemoryAgentBench (real, or the
  offline out-of-distribution analogue), plus bring-your-own parquet files.
- :mod:`~finemem_lib.evaluation.settings`: the profile's ``evaluation:`` section, read once into typed settings.
- :mod:`~finemem_lib.evaluation.records`: resumable per-question JSONL records.
- :mod:`~finemem_lib.evaluation.tables`: bootstrap intervals and the two tables.
- :mod:`~finemem_lib.evaluation.runner`: the stage itself (``python -m finemem_lib.evaluation``).

- :mod:`~finemem_lib.evaluation.per_instance`: in memory, per instance and raw source (no records):
  ``evaluate_manager``, ``evaluate_baselines`` and ``summary_table``, also importable from here.
"""

from importlib import import_module
from typing import Any

__all__ = ["evaluate_baselines", "evaluate_manager", "summary_table"]


def __getattr__(name: str) -> Any:  # these import torch (rollouts): loaded on first use only
    if name in __all__:
        return getattr(import_module("finemem_lib.evaluation.per_instance"), name)
    raise AttributeError(f"module 'finemem_lib.evaluation' has no attribute {name!r}")
