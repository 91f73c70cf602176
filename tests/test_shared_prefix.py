"""The prefix-shared log-prob pass computes what the full forward computes (values, entropies, gradients)."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, Qwen3Config, Qwen3ForCausalLM

from finemem_lib.agents.policy import load_manager
from finemem_lib.agents.reasoner_offline import OfflineReader
from finemem_lib.data.synthetic import build_synthetic
from finemem_lib.episodes.rollout import RolloutSettings, SamplingParams
from finemem_lib.training import batch_logps, shared_prefix
from finemem_lib.training.config import TrainingSettings, grpo_config
from finemem_lib.training.grpo import StepCreditGRPOTrainer
from tests.tiny import TINY_BENCH, tiny_policy

SIZES = {
    "hidden_size": 32,
    "intermediate_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 8,
    "vocab_size": 97,
}


def tiny_model(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "qwen3":
        model = Qwen3ForCausalLM(Qwen3Config(**SIZES))
    else:
        model = LlamaForCausalLM(LlamaConfig(**SIZES))
    return model.float()


def padded_batch(prefix: int, own: list[int], completions: list[int], seed: int = 0):
    """Rows ``[pad][prefix][own prompt][completion][pad]`` as TRL's log-prob pass receives them."""
    gen = torch.Generator().manual_seed(seed)
    head = torch.randint(3, 97, (prefix,), generator=gen)
    prompts = [torch.cat([head, torch.randint(3, 97, (n,), generator=gen)]) for n in own]
    outs = [torch.randint(3, 97, (n,), generator=gen) for n in completions]
    width_p, width_c = max(map(len, prompts)), max(completions)
    ids = torch.zeros(len(own), width_p + width_c, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for row, (p, c) in enumerate(zip(prompts, outs, strict=True)):
        ids[row, width_p - len(p) : width_p] = p
        mask[row, width_p - len(p) : width_p] = 1
        ids[row, width_p : width_p + len(c)] = c
        mask[row, width_p : width_p + len(c)] = 1
    return ids, mask, width_c


def full_logps(model, ids, mask, keep, temperature):
    """Reference: one unshared forward with positions from the mask, log-softmax at every completion position."""
    positions = (mask.cumsum(dim=1) - 1).clamp(min=0)
    logits = model(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, -keep - 1 : -1]
    logp = (logits.float() / temperature).log_softmax(-1)
    chosen = logp.gather(-1, ids[:, -keep:].unsqueeze(-1)).squeeze(-1)
    entropy = -(logp.exp() * logp).sum(-1)
    scored = mask[:, -keep:].bool()
    return chosen.masked_fill(~scored, 0.0), entropy.masked_fill(~scored, 0.0)


def assert_same_gradients(model, ids, mask, keep, logps_of) -> None:
    """The gradients of a weighted sum of ``logps_of()``'s log-probs equal the full forward's."""
    weights = torch.linspace(-1.0, 1.0, keep).unsqueeze(0) * mask[:, -keep:]

    def grads(logps):
        model.zero_grad()
        (logps * weights).sum().backward()
        return [p.grad.clone() for p in model.parameters()]

    want = grads(full_logps(model, ids, mask, keep, 1.0)[0])
    got = grads(logps_of())
    for g_want, g_got in zip(want, got, strict=True):
        assert torch.allclose(g_got, g_want, rtol=1e-4, atol=1e-6)


def test_common_prefix_length_follows_left_padding():
    ids, mask, keep = padded_batch(12, [3, 7, 1], [2, 4, 3])
    assert shared_prefix.common_prefix_length(ids, mask, ids.size(1) - keep) == 12
    ids[1, ids.size(1) - keep - 7 - 12 + 5] = 0  # row 1's 6th prefix token differs
    assert shared_prefix.common_prefix_length(ids, mask, ids.size(1) - keep) == 5


def test_common_prefix_leaves_every_row_a_token_of_its_own():
    ids, mask, keep = padded_batch(9, [0, 4], [2, 2])  # row 0's prompt is the prefix alone
    assert shared_prefix.common_prefix_length(ids, mask, ids.size(1) - keep) == 8


@pytest.mark.parametrize("kind", ["qwen3", "llama"])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_log_probs_and_entropies_equal_the_full_forward(kind, temperature):
    model = tiny_model(kind).eval()
    ids, mask, keep = padded_batch(20, [5, 1, 9, 3], [6, 2, 4, 1])
    prefix = shared_prefix.common_prefix_length(ids, mask, ids.size(1) - keep)
    assert prefix == 20
    with torch.no_grad():
        want_logp, want_entropy = full_logps(model, ids, mask, keep, temperature)
        logp, entropy = shared_prefix.prefix_shared_logps(model, ids, mask, keep, prefix, temperature, True)
    assert logp.shape == want_logp.shape == (4, keep)
    assert torch.allclose(logp, want_logp, atol=1e-5)
    assert torch.allclose(entropy, want_entropy, atol=1e-5)
    assert shared_prefix.prefix_shared_logps(model, ids, mask, keep, prefix, temperature)[1] is None


def test_gradients_equal_the_full_forward():
    model = tiny_model("qwen3").train()
    ids, mask, keep = padded_batch(16, [4, 2, 6], [5, 3, 1], seed=3)
    assert_same_gradients(
        model, ids, mask, keep, lambda: shared_prefix.prefix_shared_logps(model, ids, mask, keep, 16)[0]
    )


def test_models_it_does_not_cover_are_named():
    model = tiny_model("qwen3")
    assert shared_prefix.unsupported_reason(model) is None
    model.config.final_logit_softcapping = 30.0
    assert "scales its logits" in shared_prefix.unsupported_reason(model)
    assert shared_prefix.unsupported_reason(torch.nn.Linear(2, 2)) == "not a transformers causal LM"


# ---------------------------------------------------------------------------- inside the trainer
@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    bench = build_synthetic(TINY_BENCH, seed=0)
    policy_dir = tiny_policy(bench["train"], batch_size=8).save_pretrained(tmp_path_factory.mktemp("manager"))
    rollout_settings = RolloutSettings(num_generations=2, sampling=SamplingParams(temperature=1.0, max_new_tokens=8))
    settings = TrainingSettings(instances_per_step=1, micro_batch_size=64, max_steps=1, save_steps=1)
    args = grpo_config(settings, rollout_settings, str(tmp_path_factory.mktemp("run")), 0, [3], processes=1)
    trainer = StepCreditGRPOTrainer(
        load_manager(policy_dir), args, bench["train"][:1], OfflineReader(), rollout_settings
    )
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    return trainer


def test_packing_is_on_by_default(trainer):
    assert TrainingSettings().pack and trainer.args.pack


def test_a_real_round_gives_the_same_loss_and_gradient_either_way(trainer, monkeypatch):
    """Real step prompts share the system prompt and tool schemas: the trainer takes the shared pass."""
    calls = []
    original = batch_logps.prefix_shared_logps
    monkeypatch.setattr(batch_logps, "prefix_shared_logps", lambda *a, **k: calls.append(a[4]) or original(*a, **k))
    monkeypatch.setattr(trainer.args, "pack", False)  # the padded shared pass (packing is tested below)
    batch = trainer._generate_and_score_completions([{"instance_index": 0}])
    assert calls and min(calls) >= 50, "the reference pass did not share the prompts' prefix"

    def loss_and_grads(shared: bool):
        trainer.args.shared_prefix = shared
        trainer.model.zero_grad()
        loss = trainer._compute_loss(trainer.model, dict(batch))
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in trainer.model.parameters()]

    try:
        calls.clear()
        loss_shared, grads_shared = loss_and_grads(True)
        assert calls, "the loss's forward did not take the shared pass"
        calls.clear()
        loss_full, grads_full = loss_and_grads(False)
        assert not calls
    finally:
        trainer.args.shared_prefix = True
    assert torch.allclose(loss_shared, loss_full, atol=1e-6)
    assert any(g.abs().sum() > 0 for g in grads_full)
    for g_shared, g_full in zip(grads_shared, grads_full, strict=True):
        assert torch.allclose(g_shared, g_full, rtol=1e-4, atol=1e-7)


def test_a_packed_round_gives_the_same_loss_and_gradient_and_reuses_the_reference_prefix(trainer, monkeypatch):
    calls = []
    original = batch_logps.packed_logps
    monkeypatch.setattr(batch_logps, "packed_logps", lambda *a, **k: calls.append(a[4]) or original(*a, **k))
    assert trainer.args.pack  # the default
    try:
        batch = trainer._generate_and_score_completions([{"instance_index": 0}])
        if trainer.beta != 0.0:
            assert len(trainer._ref_prefix) == 1  # the reference model's prefix, kept for the next rounds

        def loss_and_grads(pack: bool):
            trainer.args.pack = pack
            trainer.model.zero_grad()
            loss = trainer._compute_loss(trainer.model, dict(batch))
            loss.backward()
            return loss.detach(), [p.grad.clone() for p in trainer.model.parameters()]

        calls.clear()
        loss_packed, grads_packed = loss_and_grads(True)
        assert calls, "the loss's forward did not take the packed pass"
        loss_padded, grads_padded = loss_and_grads(False)
    finally:
        trainer.args.pack = True
    assert torch.allclose(loss_packed, loss_padded, atol=1e-6)
    for g_packed, g_padded in zip(grads_packed, grads_padded, strict=True):
        assert torch.allclose(g_packed, g_padded, rtol=1e-4, atol=1e-7)


def test_without_a_kl_term_no_reference_or_old_log_probs_are_computed(tmp_path, monkeypatch):
    bench = build_synthetic(TINY_BENCH, seed=0)
    policy_dir = tiny_policy(bench["train"], batch_size=8).save_pretrained(tmp_path / "manager")
    rollout_settings = RolloutSettings(num_generations=2, sampling=SamplingParams(temperature=1.0, max_new_tokens=8))
    settings = TrainingSettings(instances_per_step=1, micro_batch_size=64, max_steps=1, save_steps=1, kl_beta=0.0)
    args = grpo_config(settings, rollout_settings, str(tmp_path / "run"), 0, [3], processes=1)
    no_kl = StepCreditGRPOTrainer(load_manager(policy_dir), args, bench["train"][:1], OfflineReader(), rollout_settings)
    assert no_kl.ref_model is None
    passes = []
    monkeypatch.setattr(batch_logps, "chunked_logps", lambda *a, **k: passes.append(a[0]))
    batch = no_kl._generate_and_score_completions([{"instance_index": 0}])
    assert passes == [] and "ref_per_token_logps" not in batch and "old_per_token_logps" not in batch


# ---------------------------------------------------------------------------- the LM head
def test_the_direct_lm_head_equals_trls_tiled_one(monkeypatch):
    model = tiny_model("qwen3").train()
    ids, mask, keep = padded_batch(16, [4, 2, 6, 11], [5, 3, 1, 7], seed=3)

    def run(direct: bool, temperature: float):
        monkeypatch.setattr(shared_prefix, "DIRECT_HEAD_MAX", 1 << 24 if direct else 0)
        model.zero_grad()
        logp, entropy = shared_prefix.prefix_shared_logps(model, ids, mask, keep, 16, temperature, True)
        logp.sum().backward()
        return logp.detach(), entropy, [p.grad.clone() for p in model.parameters()]

    for temperature in (1.0, 0.7):
        direct, tiled = run(True, temperature), run(False, temperature)
        assert torch.allclose(direct[0], tiled[0], atol=1e-5) and torch.allclose(direct[1], tiled[1], atol=1e-5)
        for g_direct, g_tiled in zip(direct[2], tiled[2], strict=True):
            assert torch.allclose(g_direct, g_tiled, rtol=1e-4, atol=1e-6)
