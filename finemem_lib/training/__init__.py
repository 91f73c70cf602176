"""Step-credit GRPO on TRL: train the memory manager with the OR-only, +CSR, +EARA and Fine-Mem rewards.

- :mod:`finemem_lib.training.config`   training settings of a profile -> ``StepGRPOConfig`` (a ``trl.GRPOConfig``)
- :mod:`finemem_lib.training.samples`  episodes -> one sample per chunk step with its A_t -> micro-batches
- :mod:`finemem_lib.training.grpo`     ``StepCreditGRPOTrainer`` (a ``trl.GRPOTrainer``) and the held-out callback
- :mod:`finemem_lib.training.runner`   one run / a variants x seeds study from a profile, run logs, reports
- :mod:`finemem_lib.training.runs`     provenance: config, seed, package versions, git revision
- :mod:`finemem_lib.training.cli`      ``python -m finemem_lib.training.cli`` (accelerate can launch it)
"""

from finemem_lib.training.config import StepGRPOConfig, TrainingSettings, grpo_config, training_settings
from finemem_lib.training.grpo import InstanceRoundSampler, StepCreditGRPOTrainer
from finemem_lib.training.samples import StepSample, collate_step_samples, split_micro_batches, step_samples

__all__ = [
    "InstanceRoundSampler",
    "StepCreditGRPOTrainer",
    "StepGRPOConfig",
    "StepSample",
    "TrainingSettings",
    "collate_step_samples",
    "grpo_config",
    "split_micro_batches",
    "step_samples",
    "training_settings",
]
