"""Step-credit GRPO on TRL: rollouts are whole memory-construction episodes, samples are chunk steps.

How one optimizer step runs (``trl.GRPOTrainer`` 1.16, with four overrides):

1. **Rows are instances.** The train dataset has one row per instance (``instance_index``).
   :class:`InstanceRoundSampler` yields, per round, ``instances_per_device x processes``
   distinct instances and repeats that block ``steps_per_generation x num_iterations`` times,
   exactly like TRL's ``RepeatSampler`` with ``mini_repeat_count=1``: the G rollouts of an
   instance are NOT spread over processes, each process rolls out its own instances' G
   episodes, so group advantages need no cross-process gather. Its permutation depends only on
   (seed, epoch), so a resumed run sees the same order (``set_epoch``).
2. **Rollout and credit** (:meth:`StepCreditGRPOTrainer._generate_and_score_completions`): the
   process's instances are rolled out with :func:`finemem_lib.episodes.rollout.rollout` (G episodes each,
   seeded by (seed, global step, process)); every step of every episode becomes a sample whose
   prompt is that step's own context, whose completion is the step's operations and whose
   advantage is A_t from :func:`finemem_lib.episodes.advantages.round_credit` for the configured variant
   (or_only / csr / eara / finemem) and group mode. The samples are padded into the dict TRL's
   loss reads (``prompt_ids``, ``prompt_mask``, ``completion_ids``, ``completion_mask``,
   ``advantages``, ``num_items_in_batch``, optional ``old_per_token_logps`` and
   ``ref_per_token_logps``, computed with TRL's own ``_get_per_token_logps_and_entropies``).
3. **Micro-batches** (:meth:`StepCreditGRPOTrainer._prepare_inputs`): a round has
   instances x G x T samples, not TRL's prompts x G, and T varies between instances. The
   samples are shuffled and cut into ``gradient_accumulation_steps`` near-equal micro-batches
   (``steps_per_generation == gradient_accumulation_steps``), each with its padding trimmed;
   the count is fixed per run (:func:`finemem_lib.training.config.micro_batch_plan`), so every
   process runs the same number of forward/backward passes and one optimizer step consumes one
   round (times ``num_iterations`` when rollouts are reused, as in TRL).
4. **Loss**: TRL's ``_compute_loss`` unchanged: ``loss_type`` grpo / dr_grpo / dapo / bnpo,
   clipping (``epsilon``), KL to the reference (``beta``, TRL's k3 estimator = verl's
   low_var_kl), gradient accumulation, logging and checkpointing are TRL's / transformers'.
   With ``grpo`` a micro-batch's loss is the mean over its samples of the per-sample token mean
   (DeepSeekMath's length normalisation), divided by the accumulation steps.

Rollout engines (``manager.engine``): ``native`` (default, :mod:`finemem_lib.agents.decoding`) and
``transformers`` generate with the training model itself; ``vllm`` uses TRL's colocated vLLM engine
(``use_vllm=True, vllm_mode="colocate"``, see :mod:`finemem_lib.training.vllm_rollout`): the policy's
weights are loaded into it before the first rollout of each optimizer step, and the old log-probs and
TRL's importance-sampling ratio are computed as TRL does for vLLM rollouts.

The TRL internals relied on are listed in :data:`TRL_INTERNALS` (and, for vLLM,
:data:`finemem_lib.training.vllm_rollout.TRL_VLLM_INTERNALS`), checked by ``tests/test_training_trl_guard.py``
and ``tests/test_vllm_rollout.py``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from torch.utils.data import Sampler
from transformers import TrainerCallback
from trl import GRPOTrainer
from trl.models import unwrap_model_for_generation
from trl.models.utils import disable_gradient_checkpointing

from finemem_lib.agents.compiled_decoding import resolve_compile
from finemem_lib.agents.policy import ManagerPolicy
from finemem_lib.agents.reasoner import Reasoner
from finemem_lib.core.tokens import TokenCounter, regex_token_count
from finemem_lib.data.instance import Instance
from finemem_lib.episodes.advantages import RoundCredit
from finemem_lib.episodes.rollout import Episode, RolloutSettings, rollout
from finemem_lib.training import batch_logps, shared_prefix
from finemem_lib.training.config import StepGRPOConfig
from finemem_lib.training.diagnostics import round_stats
from finemem_lib.training.round_sampler import InstanceRoundSampler
from finemem_lib.training.samples import (
    collate_step_samples,
    episode_metrics,
    split_micro_batches,
    step_samples,
    truncated_rows,
)
from finemem_lib.training.vllm_rollout import VLLMBackend, importance_sampling_ratio, require_vllm

logger = logging.getLogger(__name__)

# TRL / transformers internals this module relies on (name -> what for); guarded by a test.
TRL_INTERNALS = {
    "GRPOTrainer._generate_and_score_completions": "overridden: returns the dict _compute_loss reads",
    "GRPOTrainer._prepare_inputs": "overridden: buffering with self._step / self._buffered_inputs",
    "GRPOTrainer._compute_loss": "used as is: reads the keys of the dict above",
    "GRPOTrainer._get_per_token_logps_and_entropies": "overridden (prefix-shared pass), TRL's own as the fallback",
    "GRPOTrainer.temperature": "temperature the log-probs divide the logits by",
    "GRPOTrainer._get_train_sampler": "overridden: instance rounds",
    "GRPOTrainer.get_train_dataloader": "overridden: batch = instances per device",
    "GRPOTrainer._metrics": "metrics logged at the next log step",
    "GRPOTrainer._dist.summon_full_params": "FSDP: full parameters during rollouts",
    "Trainer._get_dataloader": "builds the (accelerate-prepared) dataloader",
    "trl.models.unwrap_model_for_generation": "unwrapped model (DDP / DeepSpeed) for rollouts",
    "trl.kernels.ChunkedLogProbFunction": "the LM head of the prefix-shared log-prob pass (training.shared_prefix)",
    "transformers.AttentionInterface": "the packed pass's attention, chosen by config._attn_implementation",
}


def _episode_rewards_placeholder(*args: Any, **kwargs: Any) -> list[float]:
    """GRPOTrainer requires a reward function; rewards here come from whole episodes, never from this."""
    raise RuntimeError("step-credit GRPO computes rewards from episodes; this reward function is never called")


class StepCreditGRPOTrainer(GRPOTrainer):
    """``trl.GRPOTrainer`` whose rollouts are memory-construction episodes and whose samples are chunk steps.

    Args:
        policy: the starting manager (model, tokenizer and prompt settings), e.g. the SFT checkpoint
            loaded with :func:`finemem_lib.agents.policy.load_manager`. Its model is trained in place.
            With a KL term (``args.beta > 0``) the model must have been loaded from a folder (the
            reference model is loaded from ``model.config._name_or_path``, as TRL does).
        args: a :class:`~finemem_lib.training.config.StepGRPOConfig` (see ``grpo_config``).
        train_instances: the instances rolled out for training.
        reasoner: the frozen reasoner answering chunk and global questions.
        rollout_settings: G, question ratio, top-k and sampling (must agree with ``args``).
        heldout_instances / heldout_settings / heldout_every: held-out global QA measured with
            greedy rollouts before training and every ``heldout_every`` optimizer steps (logged as
            ``heldout/*``).
    """

    def __init__(
        self,
        policy: ManagerPolicy,
        args: StepGRPOConfig,
        train_instances: Sequence[Instance],
        reasoner: Reasoner,
        rollout_settings: RolloutSettings,
        heldout_instances: Sequence[Instance] = (),
        heldout_settings: RolloutSettings | None = None,
        heldout_every: int = 1,
        token_counter: TokenCounter = regex_token_count,
        callbacks: list[TrainerCallback] | None = None,
    ) -> None:
        if rollout_settings.num_generations != args.num_generations:
            raise ValueError(
                f"rollout G ({rollout_settings.num_generations}) differs from args.num_generations "
                f"({args.num_generations})"
            )
        if not np.isclose(rollout_settings.sampling.temperature, args.temperature):
            raise ValueError("args.temperature must equal the rollout sampling temperature (log-probs use it)")
        if args.steps_per_generation != args.gradient_accumulation_steps:
            raise ValueError("steps_per_generation must equal gradient_accumulation_steps (one round per step)")
        if not train_instances:
            raise ValueError("no training instances")
        if policy.engine == "vllm" and not args.use_vllm:
            raise ValueError(
                "manager.engine is 'vllm' but the GRPO config does not use vLLM: build it with "
                "grpo_config(..., **vllm_grpo_args(cfg)) (finemem_lib.training.vllm_rollout)"
            )
        if args.use_vllm:
            require_vllm()
            if args.vllm_mode != "colocate":
                raise ValueError("only vllm_mode='colocate' is supported for step-credit rollouts")
        self.manager_engine = "vllm" if args.use_vllm else policy.engine
        self.train_instances = list(train_instances)
        self.reasoner = reasoner
        self.rollout_settings = rollout_settings
        steps = args.max_steps if args.max_steps > 0 else 0  # epochs-based runs: auto stays eager
        self.policy_settings = {**policy.settings(), "compile": resolve_compile(policy.compile, steps)}
        self.token_counter = token_counter
        dataset = Dataset.from_dict({"instance_index": list(range(len(self.train_instances)))})
        super().__init__(
            model=policy.model,
            reward_funcs=[_episode_rewards_placeholder],
            args=args,
            train_dataset=dataset,
            processing_class=policy.tokenizer,
            callbacks=callbacks,
        )
        if self.beta != 0.0 and self.ref_model is None:
            raise NotImplementedError("a KL term with a PEFT model is not supported here; set training.kl_beta: 0")
        if heldout_instances:
            self.add_callback(
                HeldOutCallback(self, list(heldout_instances), heldout_settings or rollout_settings, heldout_every)
            )

    # ------------------------------------------------------------------ data
    def _get_train_sampler(self, dataset: Dataset | None = None) -> Sampler:
        dataset = self.train_dataset if dataset is None else dataset
        return InstanceRoundSampler(
            len(dataset),
            instances_per_round=self.args.instances_per_device * self.accelerator.num_processes,
            repeat_count=self.args.steps_per_generation * self.num_iterations,
            shuffle=self.shuffle_dataset,
            seed=self.args.seed,
        )

    def get_train_dataloader(self):
        return self._get_dataloader(
            dataset=self.train_dataset,
            description="Training",
            batch_size=self.args.instances_per_device,
            sampler_fn=self._get_train_sampler,
            is_training=True,
        )

    # ------------------------------------------------------------------ rollouts -> samples
    def rollout_seed(self) -> int:
        """Seed of this round's rollouts on this process (a function of seed, global step and process)."""
        return (self.args.seed * 1_000_003 + self.state.global_step) * 64 + self.accelerator.process_index

    def _rollout(self, instances: Sequence[Instance], settings: RolloutSettings, seed: int) -> list[list[Episode]]:
        if self.use_vllm:
            return self._rollout_vllm(instances, settings, seed)
        with (
            unwrap_model_for_generation(
                self.model_wrapped,
                self.accelerator,
                gather_deepspeed3_params=self.args.ds3_gather_for_generation,
                gradient_checkpointing_kwargs=self.args.gradient_checkpointing_kwargs,
            ) as unwrapped,
            torch.no_grad(),
            self._dist.summon_full_params(self.model_wrapped, recurse=False),
        ):
            policy = ManagerPolicy(unwrapped, self._tokenizer, **self.policy_settings)
            return rollout(instances, policy, self.reasoner, settings, seed=seed, token_counter=self.token_counter)

    def _rollout_vllm(self, instances: Sequence[Instance], settings: RolloutSettings, seed: int) -> list[list[Episode]]:
        """Episodes generated by the colocated vLLM engine, holding the weights of the current optimizer step."""
        if self.state.global_step != self._last_loaded_step:
            self.vllm_generation.sync_weights()
            self._last_loaded_step = self.state.global_step
        model = self.accelerator.unwrap_model(self.model)
        policy = ManagerPolicy(model, self._tokenizer, **{**self.policy_settings, "engine": "vllm"})
        policy.attach_backend(VLLMBackend(self.vllm_generation, policy.stop_ids))
        return rollout(instances, policy, self.reasoner, settings, seed=seed, token_counter=self.token_counter)

    def _generate_and_score_completions(self, inputs: list[dict[str, Any]]) -> dict[str, torch.Tensor | Any]:
        device = self.accelerator.device
        mode = "train" if self.model.training else "eval"
        instances = [self.train_instances[int(row["instance_index"])] for row in inputs]
        groups = self._rollout(instances, self.rollout_settings, self.rollout_seed())
        args = self.args
        samples, credit = step_samples(groups, args.reward)
        batch = collate_step_samples(samples, self._tokenizer.pad_token_id, device)
        truncated = truncated_rows(batch["completion_ids"], batch["completion_mask"], self.eos_token_ids)
        lengths = batch["completion_mask"].sum(dim=1).float()
        if self.mask_truncated_completions:
            batch["completion_mask"] = batch["completion_mask"] * (~truncated).unsqueeze(1).long()
        batch["num_items_in_batch"] = self.accelerator.gather(batch["completion_mask"].sum()).sum()

        input_ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
        attention_mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
        logits_to_keep = batch["completion_ids"].size(1)
        chunk = args.per_device_train_batch_size
        correct_vllm = self.use_vllm and self.vllm_importance_sampling_correction
        with torch.no_grad(), disable_gradient_checkpointing(self.model, args.gradient_checkpointing_kwargs):
            # As TRL: old log-probs are needed when a round is reused across optimizer steps, and always with
            # vLLM rollouts (the importance-sampling correction compares them with vLLM's sampling log-probs).
            if (
                args.gradient_accumulation_steps % (args.steps_per_generation * self.num_iterations) != 0
                or correct_vllm
            ):
                batch["old_per_token_logps"], _, _ = self._get_per_token_logps_and_entropies(
                    self.model, input_ids, attention_mask, logits_to_keep, batch_size=chunk
                )
            if correct_vllm:
                batch["importance_sampling_ratio"] = importance_sampling_ratio(
                    batch["old_per_token_logps"],
                    batch["sampling_per_token_logps"],
                    batch["completion_mask"],
                    self.vllm_importance_sampling_mode,
                    self.vllm_importance_sampling_clip_min,
                    self.vllm_importance_sampling_clip_max,
                )
            if self.beta != 0.0:
                batch["ref_per_token_logps"], _, _ = self._get_per_token_logps_and_entropies(
                    self.ref_model, input_ids, attention_mask, logits_to_keep, batch_size=chunk
                )
        self._log_round(groups, credit, lengths, truncated, mode)
        return batch

    def _get_per_token_logps_and_entropies(
        self,
        model: Any,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        logits_to_keep: int,
        batch_size: int | None = None,
        compute_entropy: bool = False,
        compute_aux_loss: bool = False,
        **model_inputs: Any,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """TRL's per-token log-probs, with the prompts' common prefix computed once per chunk of rows
        (:func:`finemem_lib.training.batch_logps.chunked_logps`; ``pack``: no compute on padding).

        Falls back to TRL's pass when ``shared_prefix`` is off, for models or inputs the shared pass does
        not cover (:func:`finemem_lib.training.shared_prefix.unsupported_reason`, MoE auxiliary losses,
        image inputs) and for chunks whose prompts share fewer than ``MIN_PREFIX`` tokens.
        """
        fallback = (
            not self.args.shared_prefix
            or compute_aux_loss
            or any(value is not None for value in model_inputs.values())
            or shared_prefix.unsupported_reason(model) is not None
        )
        trl_pass = super()._get_per_token_logps_and_entropies
        if fallback:
            return trl_pass(
                model,
                input_ids,
                attention_mask,
                logits_to_keep,
                batch_size,
                compute_entropy,
                compute_aux_loss,
                **model_inputs,
            )
        frozen = model is self.ref_model and not torch.is_grad_enabled()  # the reference's prefix computed once
        # the frozen reference in inference mode (no autograd bookkeeping at all: ~5 % faster than no_grad)
        with torch.inference_mode() if frozen else contextlib.nullcontext():
            logps, entropies = batch_logps.chunked_logps(
                model,
                input_ids,
                attention_mask,
                logits_to_keep,
                batch_size,
                self.temperature,
                compute_entropy,
                lambda ids, mask: trl_pass(model, ids, mask, logits_to_keep, compute_entropy=compute_entropy)[:2],
                self.accelerator.autocast,
                self.args.pack,
                self.__dict__.setdefault("_ref_prefix", {}) if frozen else None,
            )
        if frozen:  # ordinary tensors again: the loss reads them beside tensors that require grad
            logps, entropies = logps.clone(), None if entropies is None else entropies.clone()
        return logps, entropies, None

    def _prepare_inputs(self, generation_batch: list[dict[str, Any]]) -> dict[str, torch.Tensor | Any]:
        """TRL's buffering, with rounds of step samples cut into near-equal micro-batches (not equal slices)."""
        if not self.model.training:
            raise NotImplementedError("step-credit GRPO evaluates with held-out rollouts (HeldOutCallback), not eval")
        generate_every = self.args.steps_per_generation * self.num_iterations
        if self._step % generate_every == 0 or self._buffered_inputs is None:
            batch = self._generate_and_score_completions(generation_batch)
            self._buffered_inputs = split_micro_batches(batch, self.args.steps_per_generation)
        return self._buffered_inputs[self._step % self.args.steps_per_generation]

    # ------------------------------------------------------------------ metrics
    def _reduced_means(self, sums_counts: dict[str, tuple[float, float]]) -> dict[str, float]:
        """Means over all processes of ``{name: (sum, count)}``."""
        names = sorted(sums_counts)
        local = torch.tensor([sums_counts[n] for n in names], dtype=torch.float64, device=self.accelerator.device)
        total = self.accelerator.reduce(local, reduction="sum")
        return {n: float(s / c) if c else float("nan") for n, (s, c) in zip(names, total.tolist(), strict=True)}

    def _log_round(
        self,
        groups: list[list[Episode]],
        credit: RoundCredit,
        lengths: torch.Tensor,
        truncated: torch.Tensor,
        mode: str,
    ) -> None:
        stats = episode_metrics(groups, credit)
        stats.update(round_stats(groups, self.train_instances, credit.spec))  # what drives the step (diagnostics)
        adv = np.concatenate([a.ravel() for a in credit.advantages])
        stats.update(
            {
                "advantages/abs_mean": (float(np.abs(adv).sum()), adv.size),
                "advantages/zero_frac": (float((adv == 0).sum()), adv.size),
                "completions/mean_length": (float(lengths.sum()), lengths.numel()),
                "completions/truncated_frac": (float(truncated.sum()), truncated.numel()),
                "samples/per_process": (float(len(adv)), 1),
            }
        )
        means = self._reduced_means(stats)
        means["rewards/step_total_std"] = float(
            np.sqrt(max(means.pop("rewards/step_total_sq") - means["rewards/step_total"] ** 2, 0.0))
        )
        means["reward"] = means["rewards/step_total"]
        means["format_rate"] = means["rewards/format"]
        for name, value in means.items():
            self._metrics[mode][name].append(value)

    # ------------------------------------------------------------------ held-out
    def evaluate_heldout(self, instances: Sequence[Instance], settings: RolloutSettings) -> dict[str, float]:
        """Greedy held-out rollouts (instances split over processes): global QA, memory length, format, chunk QA."""
        rank, world = self.accelerator.process_index, self.accelerator.num_processes
        mine = list(instances)[rank::world]
        stats: dict[str, tuple[float, float]] = {}
        with torch.random.fork_rng(devices=[]):
            groups = self._rollout(mine, settings, seed=self.args.seed) if mine else []
        episodes = [group[0] for group in groups]
        stats["heldout/qa"] = (sum(e.r_global for e in episodes), len(episodes))
        stats["heldout/memory_tokens"] = (float(sum(e.memory_tokens for e in episodes)), len(episodes))
        stats["heldout/format_rate"] = (float(sum(e.r_fmt.sum() for e in episodes)), sum(e.T for e in episodes))
        stats["heldout/chunk_qa"] = (float(sum(e.r_chunk.sum() for e in episodes)), sum(e.T for e in episodes))
        for source in sorted({inst.source for inst in instances}):
            chosen = [e for e in episodes if e.source == source]
            stats[f"heldout/qa/{source}"] = (sum(e.r_global for e in chosen), len(chosen))
        return self._reduced_means(stats)


class HeldOutCallback(TrainerCallback):
    """Measures held-out global QA before training and every ``every`` optimizer steps (and at the last one)."""

    def __init__(
        self, trainer: StepCreditGRPOTrainer, instances: list[Instance], settings: RolloutSettings, every: int
    ) -> None:
        self.trainer = trainer
        self.instances = instances
        self.settings = settings
        self.every = every

    def on_train_begin(self, args, state, control, **kwargs):
        if state.global_step == 0:
            self.trainer.log(self.trainer.evaluate_heldout(self.instances, self.settings))
        return control

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step % self.every == 0 or state.global_step >= state.max_steps:
            for name, value in self.trainer.evaluate_heldout(self.instances, self.settings).items():
                self.trainer._metrics["train"][name].append(value)
            control.should_log = True
        return control
