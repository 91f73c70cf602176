"""Step-credit GRPO on TRL: train the memory manager with the reward variants of the variant table.

- :mod:`~finemem_lib.training.config`        training settings of a profile -> ``StepGRPOConfig`` (a ``trl.GRPOConfig``)
- :mod:`~finemem_lib.training.samples`       episodes -> one sample per chunk step with its A_t -> micro-batches
- :mod:`~finemem_lib.training.grpo`          ``StepCreditGRPOTrainer`` (a ``trl.GRPOTrainer``) and the held-out callback
- :mod:`~finemem_lib.training.start`         the data and start model (SFT manager) every run of a profile shares
- :mod:`~finemem_lib.training.run`           one run: trained or reused by identity, its run log
- :mod:`~finemem_lib.training.checkpoints`   checkpoints verified before resuming
- :mod:`~finemem_lib.training.plan`          study plans (variants x seeds x overrides)
- :mod:`~finemem_lib.training.loop`          planned runs trained in order from one start (notebook 03 and the study)
- :mod:`~finemem_lib.training.study_run`     a study plan run: training, held-out scoring, tables
- :mod:`~finemem_lib.training.heldout`       held-out evaluation of trained managers
- :mod:`~finemem_lib.training.study_stats`   bootstrap intervals, mean curves, plateau, efficiency
- :mod:`~finemem_lib.training.study_tables`  tables of finished runs (notebooks 03 and 05)
- :mod:`~finemem_lib.training.credit_study`  credit quality of every variant on SFT-start rollouts
- front doors: :mod:`~finemem_lib.training.runner` (notebook 03), :mod:`~finemem_lib.training.study`
  (notebook 05, ``python -m finemem_lib.training.study``), :mod:`~finemem_lib.training.cli`
  (``python -m finemem_lib.training.cli``; accelerate can launch it)

Nothing is imported until used (TRL and torch load on first access).
"""

from importlib import import_module
from typing import Any

# name -> module that defines it
_EXPORTS = {
    "StepGRPOConfig": "config",
    "TrainingSettings": "config",
    "grpo_config": "config",
    "training_settings": "config",
    "InstanceRoundSampler": "grpo",
    "StepCreditGRPOTrainer": "grpo",
    "StepSample": "samples",
    "collate_step_samples": "samples",
    "split_micro_batches": "samples",
    "step_samples": "samples",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(f"finemem_lib.training.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'finemem_lib.training' has no attribute {name!r}")
