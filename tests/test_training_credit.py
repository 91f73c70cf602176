"""Credit reaches the loss: A_t of step t lands on step t's completion tokens only, through TRL's GRPO loss."""

import math

import numpy as np
import pytest
import torch

from finemem_lib.agents.policy import SamplingParams, load_manager
from finemem_lib.agents.reasoner_offline import OfflineReader
from finemem_lib.core import rewards
from finemem_lib.core.reward_spec import RewardSpec
from finemem_lib.data.synthetic import build_synthetic
from finemem_lib.episodes.qa import QAResult
from finemem_lib.episodes.rollout import Episode, RolloutSettings, StepRecord
from finemem_lib.training.config import TrainingSettings, grpo_config
from finemem_lib.training.grpo import StepCreditGRPOTrainer
from finemem_lib.training.samples import StepSample, collate_step_samples, split_micro_batches, step_samples
from tests.tiny import TINY_BENCH, tiny_policy

G, T = 2, 3


# ---------------------------------------------------------------------------- fake episodes
def fake_episode(rollout, scores, evidence, chunk_correct, fmt, memory_tokens, chunk_tokens=(40, 40, 40)):
    """An Episode with given reward components (no model involved)."""
    steps = [
        StepRecord(
            step=t,
            prompt_ids=torch.tensor([1, 2, 3]),
            completion_ids=torch.tensor([4, 5]),
            old_logprobs=torch.tensor([-1.0, -1.0]),
            text="",
            operations=[],
            results=[],
            n_emitted=0,
            format_score=fmt[t],
            memory_items=1,
            memory_tokens=memory_tokens,
            chunk_correct=np.array(chunk_correct[t]),
        )
        for t in range(len(fmt))
    ]
    results = [
        QAResult("q", ("a",), "a", s, tuple(f"m{k}" for k in range(len(ev))), tuple(ev), "synth_factoid")
        for s, ev in zip(scores, evidence, strict=True)
    ]
    return Episode("inst", "synth_factoid", rollout, list(chunk_tokens), steps, None, results)


def varied_group():
    """Three rollouts whose every reward component differs."""
    return [
        fake_episode(0, [1.0, 0.0], [[0, 2], [1]], [[1, 0], [0], [1, 1]], [1.0, 0.5, 1.0], 30),
        fake_episode(1, [1.0, 1.0], [[2], [0, 1]], [[0, 0], [1], [1, 0]], [1.0, 1.0, 0.0], 50),
        fake_episode(2, [0.0, 1.0], [[1], [2, 2]], [[1, 1], [1], [0, 0]], [0.5, 1.0, 1.0], 10),
    ]


@pytest.mark.parametrize("mode", ["step", "episode"])
@pytest.mark.parametrize("variant", rewards.VARIANTS)
def test_each_variant_gives_the_advantages_the_kernels_predict(variant, mode):
    group = varied_group()
    r_global = np.array([0.5, 1.0, 0.5])
    N = np.stack([rewards.evidence_contribution(e.scores, e.evidence_steps, 3) for e in group])
    r_chunk = np.stack(
        [
            rewards.chunk_step_reward([[1, 0], [0], [1, 1]]),
            rewards.chunk_step_reward([[0, 0], [1], [1, 0]]),
            rewards.chunk_step_reward([[1, 1], [1], [0, 0]]),
        ]
    )
    r_fmt = np.array([[1.0, 0.5, 1.0], [1.0, 1.0, 0.0], [0.5, 1.0, 1.0]])
    r_comp = 1 - np.array([30, 50, 10]) / 120
    expected = rewards.group_advantages(
        rewards.step_rewards(variant, r_global, N, r_chunk, r_fmt, r_comp, beta=0.3, w1=0.7, w2=0.1), mode
    )
    spec = RewardSpec(variant, beta=0.3, w1=0.7, w2=0.1, group_mode=mode)
    samples, credit = step_samples([group], spec)
    assert np.allclose(credit.advantages[0], expected)
    assert credit.spec == spec and credit.rewards[0].shape == (3, 3)
    assert len(samples) == 3 * 3
    for s in samples:
        assert s.advantage == pytest.approx(expected[s.rollout, s.step])


def test_variants_differ_where_the_paper_says():
    """Hand-predicted: two rollouts equal except for step 1's chunk QA -> only CSR variants credit step 1."""
    a = fake_episode(0, [1.0], [[0]], [[1], [1], [1]], [1.0, 1.0, 1.0], 20)
    b = fake_episode(1, [1.0], [[0]], [[1], [0], [1]], [1.0, 1.0, 1.0], 20)
    half = 1 / math.sqrt(2)  # G = 2: (r - mean) / std = +-1/sqrt(2) wherever the two differ
    for variant in ("csr", "finemem"):
        adv = step_samples([[a, b]], RewardSpec(variant))[1].advantages[0]
        assert np.allclose(adv, [[0, half, 0], [0, -half, 0]], atol=1e-5)
    for variant in ("or_only", "eara"):
        adv = step_samples([[a, b]], RewardSpec(variant))[1].advantages[0]
        assert np.allclose(adv, 0.0)
    # Same global score, evidence written at different steps: EARA moves credit, OR-only does not.
    c = fake_episode(0, [1.0], [[0]], [[1], [1], [1]], [1.0, 1.0, 1.0], 20)
    d = fake_episode(1, [1.0], [[2]], [[1], [1], [1]], [1.0, 1.0, 1.0], 20)
    adv = step_samples([[c, d]], RewardSpec("eara"))[1].advantages[0]
    assert np.allclose(adv, [[half, 0, -half], [-half, 0, half]], atol=1e-5)
    adv = step_samples([[c, d]], RewardSpec("or_only"))[1].advantages[0]
    assert np.allclose(adv, 0.0)


# ---------------------------------------------------------------------------- batches
def test_collate_pads_prompts_left_and_completions_right():
    samples = [
        StepSample(0, 0, 0, torch.tensor([5, 6, 7]), torch.tensor([8]), torch.tensor([-0.5]), 1.0),
        StepSample(0, 1, 0, torch.tensor([9]), torch.tensor([10, 11, 12]), torch.tensor([-1.0, -2.0, -3.0]), -1.0),
    ]
    batch = collate_step_samples(samples, pad_token_id=0)
    assert batch["prompt_ids"].tolist() == [[5, 6, 7], [0, 0, 9]]
    assert batch["prompt_mask"].tolist() == [[1, 1, 1], [0, 0, 1]]
    assert batch["completion_ids"].tolist() == [[8, 0, 0], [10, 11, 12]]
    assert batch["completion_mask"].tolist() == [[1, 0, 0], [1, 1, 1]]
    assert batch["advantages"].tolist() == [1.0, -1.0]
    assert batch["sampling_per_token_logps"][1].tolist() == [-1.0, -2.0, -3.0]


def test_micro_batches_cover_every_sample_once_with_padding_trimmed():
    rng = torch.Generator().manual_seed(0)
    samples = [
        StepSample(0, i % 2, i, torch.arange(1, 2 + i), torch.arange(1, 1 + (7 - i)), torch.zeros(7 - i), float(i))
        for i in range(7)
    ]
    batch = collate_step_samples(samples, pad_token_id=0)
    batch["num_items_in_batch"] = batch["completion_mask"].sum()
    parts = split_micro_batches(batch, 3, generator=rng)
    assert sorted(len(p["advantages"]) for p in parts) == [2, 2, 3]
    assert sorted(a for p in parts for a in p["advantages"].tolist()) == list(range(7))
    for part in parts:
        assert part["num_items_in_batch"] == 28  # the round's token count, for dapo's normaliser
        assert part["prompt_mask"][:, 0].any() and part["completion_mask"][:, -1].any()  # no all-padding column
        for row, a in enumerate(part["advantages"].tolist()):
            i = int(a)
            assert part["prompt_ids"][row][part["prompt_mask"][row].bool()].tolist() == list(range(1, 2 + i))
            assert part["completion_ids"][row][part["completion_mask"][row].bool()].tolist() == list(range(1, 8 - i))
    with pytest.raises(ValueError, match="micro-batches"):
        split_micro_batches(batch, 8)


# ---------------------------------------------------------------------------- through TRL's loss
@pytest.fixture(scope="module")
def bench():
    return build_synthetic(TINY_BENCH, seed=0)


@pytest.fixture(scope="module")
def model_dir(bench, tmp_path_factory):
    policy = tiny_policy(bench["train"], batch_size=8)
    return policy.save_pretrained(tmp_path_factory.mktemp("tiny_manager"))


def make_trainer(model_dir, bench, tmp_path, loss_type="grpo", kl_beta=0.001):
    policy = load_manager(model_dir)
    rollout_settings = RolloutSettings(num_generations=G, sampling=SamplingParams(temperature=1.0, max_new_tokens=6))
    settings = TrainingSettings(
        reward=RewardSpec("csr"),
        instances_per_step=1,
        micro_batch_size=64,
        learning_rate=1e-3,
        loss_type=loss_type,
        kl_beta=kl_beta,
        max_steps=1,
        save_steps=1,
    )
    args = grpo_config(settings, rollout_settings, str(tmp_path), 0, [3], processes=1)
    trainer = StepCreditGRPOTrainer(policy, args, bench["train"][:1], OfflineReader(), rollout_settings)
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    return trainer


def credit_batch(trainer, advantages):
    """A round of G x T step samples with random prompts/completions and the given [G, T] advantages."""
    gen = torch.Generator().manual_seed(1)
    vocab = trainer.model.config.vocab_size
    samples = [
        StepSample(
            0,
            g,
            t,
            torch.randint(3, vocab, (4 + t + g,), generator=gen),
            torch.randint(3, vocab, (2 + 2 * t + g,), generator=gen),
            torch.zeros(2 + 2 * t + g),
            float(advantages[g][t]),
        )
        for g in range(G)
        for t in range(T)
    ]
    batch = collate_step_samples(samples, trainer._tokenizer.pad_token_id)
    batch["num_items_in_batch"] = batch["completion_mask"].sum()
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    with torch.no_grad():
        batch["ref_per_token_logps"] = trainer._get_per_token_logps_and_entropies(
            trainer.ref_model, ids, mask, batch["completion_ids"].size(1)
        )[0]
    return samples, batch


def token_grads(trainer, batch):
    """Gradient of TRL's loss w.r.t. every next-token log-prob of the sequences (prompt and completion)."""
    model = trainer.model
    fused_forward = model.forward
    captured = {}

    def capturing_forward(*args, **kwargs):
        out = fused_forward(*args, **kwargs)
        out.log_probs.retain_grad()
        captured["log_probs"] = out.log_probs
        return out

    model.forward = capturing_forward
    try:
        model.zero_grad()
        loss = trainer._compute_loss(model, batch)
        loss.backward()
    finally:
        model.forward = fused_forward
    return captured["log_probs"].grad, loss


@pytest.mark.parametrize("loss_type", ["grpo", "dr_grpo", "dapo"])
def test_only_step_t_completion_tokens_get_gradient(model_dir, bench, tmp_path, loss_type):
    trainer = make_trainer(model_dir, bench, tmp_path, loss_type=loss_type)
    t_credit = 1
    adv = [[0.0, 0.8, 0.0], [0.0, -0.8, 0.0]]
    samples, batch = credit_batch(trainer, adv)
    grad, _ = token_grads(trainer, batch)
    P, C = batch["prompt_ids"].shape[1], batch["completion_ids"].shape[1]
    assert grad.shape == (len(samples), P + C - 1)
    assert torch.all(grad[:, : P - 1] == 0), "a prompt token's log-prob reached the loss"
    completion_grad = grad[:, P - 1 :]
    B, max_len, n_tokens = len(samples), trainer.max_completion_length, batch["completion_mask"].sum()
    for row, sample in enumerate(samples):
        mask = batch["completion_mask"][row].bool()
        assert torch.all(completion_grad[row][~mask] == 0), "padding got gradient"
        if sample.step != t_credit:
            assert torch.all(completion_grad[row] == 0), f"step {sample.step} got gradient"
            continue
        length = int(mask.sum())
        # on-policy ratio 1, KL gradient 0 at the reference: d loss / d log p = -A_t / normaliser
        normaliser = {"grpo": B * length, "dr_grpo": B * max_len, "dapo": n_tokens}[loss_type]
        expected = torch.full((length,), -sample.advantage / float(normaliser))
        assert torch.allclose(completion_grad[row][mask], expected, rtol=1e-5, atol=1e-9)


def test_parameter_gradient_comes_from_step_t_alone(model_dir, bench, tmp_path):
    trainer = make_trainer(model_dir, bench, tmp_path)
    adv = [[0.0, 0.0, 1.2], [0.0, 0.0, -1.2]]
    samples, batch = credit_batch(trainer, adv)
    token_grads(trainer, batch)
    full = [p.grad.clone() for p in trainer.model.parameters()]
    assert any(g.abs().sum() > 0 for g in full)
    rows = torch.tensor([i for i, s in enumerate(samples) if s.step == 2])
    only_t = {k: (v[rows] if isinstance(v, torch.Tensor) and v.ndim > 0 else v) for k, v in batch.items()}
    token_grads(trainer, only_t)
    for g_full, p in zip(full, trainer.model.parameters(), strict=True):
        # grpo averages over rows: B * grad(all rows) == B_t * grad(step-t rows), zero-advantage rows add nothing
        assert torch.allclose(g_full * len(samples), p.grad * len(rows), rtol=1e-4, atol=1e-7)

    _, zero_batch = credit_batch(trainer, [[0.0] * T] * G)
    token_grads(trainer, zero_batch)
    assert all(torch.all(p.grad == 0) for p in trainer.model.parameters())


def test_a_real_round_becomes_g_x_t_samples(model_dir, bench, tmp_path):
    trainer = make_trainer(model_dir, bench, tmp_path)
    batch = trainer._generate_and_score_completions([{"instance_index": 0}])
    n = G * bench["train"][0].num_chunks
    assert batch["advantages"].shape == (n,)
    assert batch["prompt_ids"].shape[0] == batch["completion_ids"].shape[0] == n
    assert batch["ref_per_token_logps"].shape == batch["completion_ids"].shape
    assert int(batch["num_items_in_batch"]) == int(batch["completion_mask"].sum())
    assert "old_per_token_logps" not in batch  # on-policy: TRL uses the detached current log-probs
    # one group: at every step the G advantages are centred
    assert torch.allclose(batch["advantages"].view(G, -1).sum(0), torch.zeros(n // G), atol=1e-5)
    logged = trainer._metrics["train"]
    assert {"rewards/global", "rewards/chunk", "format_rate", "memory/tokens", "reward"} <= set(logged)
