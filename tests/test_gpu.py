"""The GPU path: the CPU tests of decoding, prefix sharing and GRPO training, repeated on a CUDA device.

Marked ``gpu``: deselected by default, run by ``pytest -m gpu`` (``benchmarks/gpu_check.sh`` does). Without CUDA
they skip, unless ``FINEMEM_GPU_TESTS_ON_CPU=1`` (the GPU check's dry run) runs the same bodies on the CPU.
Token identity is checked in float32 (bf16 rounding differs between batched and unbatched kernels, so a near
tie may flip); bf16 is checked against a full forward pass within its precision, and in a real GRPO step.
"""

from __future__ import annotations

import math
import os
from contextlib import nullcontext

import pytest
import torch

from finemem_lib.agents.decoding import IncrementalDecoder
from finemem_lib.agents.policy import ManagerPolicy, SamplingParams, load_manager
from finemem_lib.agents.reasoner_offline import OfflineReader
from finemem_lib.core.memory import Memory
from finemem_lib.core.reward_spec import RewardSpec
from finemem_lib.data.synthetic import build_synthetic
from finemem_lib.episodes.rollout import RolloutSettings
from finemem_lib.training import shared_prefix
from finemem_lib.training.config import TrainingSettings, grpo_config
from finemem_lib.training.grpo import StepCreditGRPOTrainer
from tests.test_decoding import VOCAB, _prompts, _reference_greedy
from tests.test_policy import CHUNKS, INSTANCE
from tests.test_shared_prefix import full_logps, padded_batch, tiny_model
from tests.tiny import TINY_BENCH, tiny_policy

pytestmark = pytest.mark.gpu
ON_CPU_ENV = "FINEMEM_GPU_TESTS_ON_CPU"


@pytest.fixture(scope="module")
def device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if os.environ.get(ON_CPU_ENV) == "1":
        return torch.device("cpu")
    pytest.skip(f"needs a CUDA device ({ON_CPU_ENV}=1 runs these on the CPU)")


# ---------------------------------------------------------------------------- native engine = generate
@pytest.mark.parametrize("kind", ["qwen3", "llama"])
def test_native_engine_tokens_equal_transformers_generate(device, kind):
    model = tiny_model(kind).to(device).eval()
    prompts = _prompts()
    unconstrained = _reference_greedy(model, prompts, 20, stop_ids=[VOCAB + 5])  # never emitted
    stop = [unconstrained[0][4]]  # row 0 stops at step 4: rows finish at different steps
    expected = _reference_greedy(model, prompts, 20, stop)
    assert len({len(e) for e in expected}) > 1
    decoded = IncrementalDecoder(model, stop).decode(prompts, 20, temperature=0.0)
    assert [d.tokens.tolist() for d in decoded] == expected
    assert [d.finished for d in decoded] == [e[-1] in stop for e in expected]


def test_policy_engines_agree_on_the_device(device):
    """The manager's two engines (native and transformers generate) through ManagerPolicy, model on the device."""
    policy = tiny_policy([INSTANCE] * 3, vocab_size=500)
    policy.model.to(device)
    memory = Memory(id_style="short")
    prompt_ids = [policy.step_prompt(CHUNKS[i % 2], memory).ids[: 40 + 7 * i] for i in range(3)]
    greedy = SamplingParams(temperature=0.0, max_new_tokens=16)
    native = ManagerPolicy(policy.model, policy.tokenizer, style="extractive", engine="native")
    reference = ManagerPolicy(policy.model, policy.tokenizer, style="extractive", engine="transformers")
    assert native.engine == "native" and native.device.type == device.type
    for mine, theirs in zip(native.generate(prompt_ids, greedy), reference.generate(prompt_ids, greedy), strict=True):
        assert mine.completion_ids.tolist() == theirs.completion_ids.tolist()
        assert torch.allclose(mine.logprobs, theirs.logprobs, atol=1e-4)


def test_native_engine_in_bf16_samples_with_the_models_log_probs(device):
    """bf16 weights: sampled tokens' log-probs equal a full forward pass of the same bf16 model, to its precision."""
    model = tiny_model("qwen3").to(device=device, dtype=torch.bfloat16).eval()
    prompts = _prompts(seed=1)
    generator = torch.Generator(device=device).manual_seed(0)
    decoded = IncrementalDecoder(model, [VOCAB + 5]).decode(prompts, 12, temperature=1.0, generator=generator)
    for prompt, d in zip(prompts, decoded, strict=True):
        assert len(d.tokens) == 12 and torch.isfinite(d.logprobs).all()
        ids = torch.tensor([prompt + d.tokens.tolist()], device=device)
        with torch.no_grad():
            logits = model(ids).logits[0, len(prompt) - 1 : -1].float()
        expected = torch.log_softmax(logits, -1).gather(-1, d.tokens.to(device).unsqueeze(-1)).squeeze(-1)
        assert torch.allclose(d.logprobs, expected.cpu(), atol=3e-2)


# ---------------------------------------------------------------------------- prefix-shared log-prob pass
@pytest.mark.parametrize("dtype, atol", [(torch.float32, 1e-4), (torch.bfloat16, 3e-2)])
def test_prefix_shared_log_probs_equal_the_full_forward(device, dtype, atol):
    model = tiny_model("qwen3").to(device=device, dtype=dtype).eval()
    ids, mask, keep = padded_batch(20, [5, 1, 9, 3], [6, 2, 4, 1])
    ids, mask = ids.to(device), mask.to(device)
    prefix = shared_prefix.common_prefix_length(ids, mask, ids.size(1) - keep)
    assert prefix == 20
    with torch.no_grad():
        want_logp, want_entropy = full_logps(model, ids, mask, keep, 1.0)
        logp, entropy = shared_prefix.prefix_shared_logps(model, ids, mask, keep, prefix, 1.0, True)
    assert logp.device.type == device.type
    assert torch.allclose(logp.float(), want_logp.float(), atol=atol)
    assert torch.allclose(entropy.float(), want_entropy.float(), atol=atol)


def _trainer(tmp_path_factory, max_steps: int, learning_rate: float) -> StepCreditGRPOTrainer:
    """The step-credit GRPO trainer on a tiny manager (TRL puts it on the accelerator: CUDA when there is one)."""
    bench = build_synthetic(TINY_BENCH, seed=0)
    policy_dir = tiny_policy(bench["train"], batch_size=8).save_pretrained(tmp_path_factory.mktemp("manager"))
    rollout = RolloutSettings(num_generations=2, sampling=SamplingParams(temperature=1.0, max_new_tokens=8))
    settings = TrainingSettings(
        reward=RewardSpec("finemem"),
        instances_per_step=1,
        micro_batch_size=64,
        learning_rate=learning_rate,
        max_steps=max_steps,
        save_steps=max_steps,
        logging_steps=1,
    )
    args = grpo_config(settings, rollout, str(tmp_path_factory.mktemp("run")), 0, [3], processes=1)
    return StepCreditGRPOTrainer(load_manager(policy_dir), args, bench["train"][:1], OfflineReader(), rollout)


@pytest.fixture(scope="module")
def round_trainer(device, tmp_path_factory):
    """A trainer and one real round of step samples, generated on the device."""
    trainer = _trainer(tmp_path_factory, max_steps=1, learning_rate=1e-6)
    assert next(trainer.model.parameters()).device.type == device.type
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    batch = trainer._generate_and_score_completions([{"instance_index": 0}])
    # random rollouts of a random model may all score alike (zero advantages, no gradient): the log-prob passes
    # are compared under fixed non-zero advantages instead
    rows = batch["advantages"].numel()
    batch["advantages"] = torch.linspace(-1.0, 1.0, rows, device=batch["advantages"].device)
    return trainer, batch


@pytest.mark.parametrize("mixed", [False, True], ids=["fp32", "autocast"])
def test_shared_pass_loss_and_gradient_equal_trls_in_the_trainer(round_trainer, mixed):
    """The trainer's loss and gradient with the prefix-shared pass equal those of TRL's own log-prob pass.

    ``autocast`` runs both under the trainer's mixed precision (bf16 on CUDA), as its training step does: the
    gradients then agree to bf16 precision (direction and norm), not bit for bit.
    """
    trainer, batch = round_trainer

    def loss_and_grads(shared: bool):
        trainer.args.shared_prefix = shared
        trainer.model.zero_grad()
        with trainer.accelerator.autocast() if mixed else nullcontext():
            loss = trainer._compute_loss(trainer.model, dict(batch))
        loss.backward()
        return loss.detach(), [p.grad.detach().float().clone() for p in trainer.model.parameters()]

    try:
        loss_shared, grads_shared = loss_and_grads(True)
        loss_full, grads_full = loss_and_grads(False)
    finally:
        trainer.args.shared_prefix = True
    assert torch.allclose(loss_shared, loss_full, atol=1e-5)
    assert sum(g.norm() for g in grads_full) > 1e-4
    if not mixed:
        for g_shared, g_full in zip(grads_shared, grads_full, strict=True):
            assert torch.allclose(g_shared, g_full, rtol=1e-3, atol=1e-6)
    shared, full = torch.cat([g.flatten() for g in grads_shared]), torch.cat([g.flatten() for g in grads_full])
    assert torch.nn.functional.cosine_similarity(shared, full, dim=0) > 0.99
    assert abs(shared.norm() / full.norm() - 1) < 0.05


# ---------------------------------------------------------------------------- one GRPO step
def test_one_grpo_step_of_the_step_credit_trainer(device, tmp_path_factory):
    """Rollouts, step credit, TRL's loss and one optimizer step, in bf16 mixed precision on CUDA."""
    trainer = _trainer(tmp_path_factory, max_steps=1, learning_rate=1e-3)
    assert trainer.args.bf16 == (device.type == "cuda")  # the paper profile trains with bf16: true
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train()
    assert trainer.state.global_step == 1
    params = list(trainer.model.parameters())
    assert params[0].device.type == device.type
    assert all(torch.isfinite(p).all() for p in params)
    logged = next(row for row in trainer.state.log_history if "loss" in row)
    assert math.isfinite(logged["loss"]) and "rewards/global" in logged
    moved = any(not torch.equal(b.to(p.device), p.detach()) for b, p in zip(before, params, strict=True))
    assert moved == (logged["grad_norm"] > 0)  # all-equal rewards in both rollouts would give no gradient
