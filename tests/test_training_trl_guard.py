"""Guard: the TRL / transformers internals the step-credit trainer relies on are still there and still mean the same.

If one of these fails after a TRL upgrade, re-read trl/trainer/grpo_trainer.py and adapt
finemem_lib/training/grpo.py (see its TRL_INTERNALS) before changing the pin in pyproject.toml.
"""

import inspect
from collections import defaultdict

import pytest
import torch
import transformers
import trl
from trl import GRPOTrainer

from finemem_lib.training.grpo import TRL_INTERNALS

PINNED_TRL = "1.16.0"


def _source(obj) -> str:
    return inspect.getsource(obj)


def _params(func) -> list[str]:
    return list(inspect.signature(func).parameters)


def test_trl_is_the_pinned_version():
    assert trl.__version__ == PINNED_TRL, f"tested with trl {PINNED_TRL}, found {trl.__version__}"


@pytest.mark.parametrize("name", sorted(TRL_INTERNALS))
def test_every_listed_internal_exists(name):
    owner, _, attr = name.rpartition(".")
    if owner == "GRPOTrainer":
        if attr.startswith(("_metrics", "_dist", "temperature")):
            assert attr.split(".")[0] in _source(GRPOTrainer.__init__)
        else:
            assert callable(getattr(GRPOTrainer, attr))
    elif owner == "GRPOTrainer._dist":
        from trl.distributed import DistributedBackend

        assert callable(getattr(DistributedBackend, attr))
    elif owner == "Trainer":
        assert callable(getattr(transformers.Trainer, attr))
    elif owner == "trl.models":
        import trl.models

        assert callable(getattr(trl.models, attr))
    elif owner == "trl.kernels":
        import trl.kernels

        assert callable(getattr(trl.kernels, attr).apply)
    elif owner == "transformers":
        assert callable(getattr(transformers, attr).register)
    else:
        pytest.fail(f"unknown owner in TRL_INTERNALS: {name}")


def test_the_chunked_log_prob_function_takes_the_arguments_we_pass():
    from trl.kernels import ChunkedLogProbFunction

    assert _params(ChunkedLogProbFunction.forward) == [
        "ctx",
        "hidden",
        "weight",
        "bias",
        "targets",
        "temperature",
        "chunk_size",
        "final_logit_softcapping",
        "logit_scale",
        "outputs",
    ]


def test_signatures_we_call_or_override():
    assert _params(GRPOTrainer._generate_and_score_completions) == ["self", "inputs"]
    assert _params(GRPOTrainer._prepare_inputs) == ["self", "generation_batch"]
    assert _params(GRPOTrainer._compute_loss) == ["self", "model", "inputs"]
    assert _params(GRPOTrainer._get_train_sampler)[:2] == ["self", "dataset"]
    assert _params(GRPOTrainer._get_per_token_logps_and_entropies)[:6] == [
        "self",
        "model",
        "input_ids",
        "attention_mask",
        "logits_to_keep",
        "batch_size",
    ]
    assert _params(transformers.Trainer._get_dataloader)[:6] == [
        "self",
        "dataset",
        "description",
        "batch_size",
        "sampler_fn",
        "is_training",
    ]


def test_the_loss_reads_the_keys_we_produce():
    loss_src = _source(GRPOTrainer._compute_loss)
    for key in (
        "prompt_ids",
        "prompt_mask",
        "completion_ids",
        "completion_mask",
        "advantages",
        "old_per_token_logps",
        "ref_per_token_logps",
        "num_items_in_batch",
    ):
        assert f'"{key}"' in loss_src, f"_compute_loss no longer reads {key!r}"
    assert "self.current_gradient_accumulation_steps" in loss_src
    assert "self.max_completion_length" in loss_src  # dr_grpo's constant normaliser


def test_buffering_state_we_share_with_trl():
    prepare_src = _source(GRPOTrainer._prepare_inputs)
    for needle in ("self._buffered_inputs", "self._step", "self.args.steps_per_generation", "self.num_iterations"):
        assert needle in prepare_src, f"TRL's _prepare_inputs no longer uses {needle}"
    init_src = _source(GRPOTrainer.__init__)
    for needle in (
        "self._buffered_inputs = None",
        "self._step = 0",
        "self._metrics =",
        "self._dist =",
        "self.eos_token_ids",
        "self.ref_model",
        "add_fused_lm_head",
    ):
        assert needle in init_src, f"GRPOTrainer.__init__ no longer sets {needle}"
    # TRL still skips old log-probs when on-policy, with the same condition we copy
    gen_src = _source(GRPOTrainer._generate_and_score_completions)
    assert "self.args.gradient_accumulation_steps % generate_every != 0" in gen_src
    # training_step advances the counter our buffering indexes with
    assert "self._step += 1" in _source(GRPOTrainer.training_step)


def test_kl_is_the_k3_estimator():
    src = _source(GRPOTrainer._compute_loss)
    assert "torch.exp(ref_per_token_logps - per_token_logps) - (ref_per_token_logps - per_token_logps) - 1" in src


class _LossOnly(GRPOTrainer):
    """The bare loss of GRPOTrainer on a hand-built batch (no model load, no data)."""

    def __init__(self, loss_type, logps, beta=0.0):
        self.loss_type = loss_type
        self.beta = beta
        self.epsilon_low = self.epsilon_high = 0.2
        self.importance_sampling_level = "token"
        self.off_policy_mask_threshold = None
        self.top_entropy_quantile = 1.0
        self.use_vllm = False
        self.aux_loss_enabled = False
        self._entropy_bonus_enabled = False
        self.max_completion_length = 8
        self.current_gradient_accumulation_steps = 2
        self._logps = logps
        self._metrics = {"train": defaultdict(list), "eval": defaultdict(list)}

    @property
    def model(self):
        return torch.nn.Module()

    @property
    def accelerator(self):
        class _Acc:
            num_processes = 1

            def reduce(self, x, reduction="sum"):
                return x

            def gather(self, x):
                return x.reshape(-1) if x.ndim == 0 else x

        return _Acc()

    @property
    def args(self):
        class _Args:
            use_bias_correction_kl = False
            delta = None
            steps_per_generation = 2

        return _Args()

    def _get_per_token_logps_and_entropies(self, model, input_ids, attention_mask, logits_to_keep, **kwargs):
        return self._logps, torch.zeros_like(self._logps), None


@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo", "dapo"])
def test_trl_loss_matches_the_hand_formula(loss_type):
    """On-policy (ratio 1) the loss is -sum(A * mask) under each loss type's normaliser."""
    logps = torch.tensor([[-1.0, -2.0, -3.0], [-0.5, -0.5, 0.0]], requires_grad=True)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    adv = torch.tensor([0.5, -1.5])
    batch = {
        "prompt_ids": torch.ones(2, 2, dtype=torch.long),
        "prompt_mask": torch.ones(2, 2, dtype=torch.long),
        "completion_ids": torch.ones(2, 3, dtype=torch.long),
        "completion_mask": mask,
        "advantages": adv,
        "num_items_in_batch": mask.sum() * 2,  # tokens of the whole round (two micro-batches)
    }
    trainer = _LossOnly(loss_type, logps)
    loss = GRPOTrainer._compute_loss(trainer, None, batch)
    lengths = mask.sum(1).float()
    ga = 2
    expected = {
        "grpo": (-adv).mean() / ga,  # per-sequence token mean, then mean over sequences
        "dr_grpo": (-adv * lengths).sum() / (2 * 8) / ga,  # constant normaliser B * max_completion_length
        "dapo": (-adv * lengths).sum() / (mask.sum() * 2 * ga / 2),  # round's tokens, per accumulation window
    }[loss_type]
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
