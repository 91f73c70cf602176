"""Notebook 03's update by hand: ratio x A_t, clipped, plus the KL term, equals the trainer's loss and gradient."""

import numpy as np
import pytest
import torch

from finemem_lib.agents.policy import SamplingParams, load_manager
from finemem_lib.agents.reasoner_offline import OfflineReader
from finemem_lib.core.reward_spec import RewardSpec
from finemem_lib.data.synthetic import build_synthetic
from finemem_lib.episodes.rollout import RolloutSettings
from finemem_lib.infra.config import load_profile
from finemem_lib.infra.paths import profile_paths
from finemem_lib.training.config import TrainingSettings, grpo_config
from finemem_lib.training.grpo import HeldOutCallback, StepCreditGRPOTrainer
from finemem_lib.training.samples import StepSample
from finemem_lib.training.update_by_hand import (
    completion_logps,
    gradient_gap,
    hand_trainer,
    micro_batch,
    move_policy,
    rollout_group,
)
from tests.test_training_credit import fake_episode, varied_group
from tests.tiny import TINY_BENCH, tiny_policy

G, T = 2, 3


@pytest.fixture(scope="module")
def bench():
    return build_synthetic(TINY_BENCH, seed=0)


@pytest.fixture(scope="module")
def model_dir(bench, tmp_path_factory):
    return tiny_policy(bench["train"], batch_size=8).save_pretrained(tmp_path_factory.mktemp("tiny_manager"))


def make_trainer(model_dir, bench, tmp_path, kl_beta=0.01, micro_batch_size=4):
    policy = load_manager(model_dir)
    rollout_settings = RolloutSettings(num_generations=G, sampling=SamplingParams(temperature=0.7, max_new_tokens=6))
    settings = TrainingSettings(
        reward=RewardSpec("finemem"),
        instances_per_step=1,
        micro_batch_size=micro_batch_size,
        kl_beta=kl_beta,
        max_steps=1,
    )
    args = grpo_config(settings, rollout_settings, str(tmp_path), 0, [T], processes=1)
    trainer = StepCreditGRPOTrainer(policy, args, bench["train"][:1], OfflineReader(), rollout_settings)
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = trainer.args.gradient_accumulation_steps
    return trainer


def random_samples(vocab, advantages=(0.9, -0.4, 1.3, -1.1, 0.2, -0.9)):
    gen = torch.Generator().manual_seed(3)
    return [
        StepSample(
            0,
            i % G,
            i // G,
            torch.randint(3, vocab, (5 + i,), generator=gen),
            torch.randint(3, vocab, (3 + 2 * i,), generator=gen),
            torch.zeros(3 + 2 * i),
            a,
        )
        for i, a in enumerate(advantages)
    ]


def loss_by_hand(trainer, batch, old, clip=True):
    """The notebook's formula: -min(rho A, clip(rho) A) + beta rho k3, token mean, sample mean, / accumulation."""
    logp = completion_logps(trainer.model, batch, trainer.temperature)
    ratio, A_t = torch.exp(logp - old), batch["advantages"][:, None]
    clipped = ratio.clamp(1 - trainer.epsilon_low, 1 + trainer.epsilon_high) if clip else ratio
    d = batch.get("ref_per_token_logps", logp) - logp
    kl = (torch.exp(d) - d - 1) * (ratio if trainer.args.use_bias_correction_kl else 1.0)
    per_token = -torch.min(ratio * A_t, clipped * A_t) + trainer.beta * kl
    mask = batch["completion_mask"]
    return ((per_token * mask).sum(1) / mask.sum(1).clamp(min=1)).mean() / trainer.current_gradient_accumulation_steps


@pytest.mark.parametrize("kl_beta", [0.0, 0.01])
def test_the_update_by_hand_equals_the_trainers_loss(model_dir, bench, tmp_path, kl_beta):
    trainer = make_trainer(model_dir, bench, tmp_path, kl_beta=kl_beta)
    batch = micro_batch(trainer, random_samples(trainer.model.config.vocab_size))
    assert batch["advantages"].shape == (trainer.args.per_device_train_batch_size,)
    assert ("ref_per_token_logps" in batch) == (kl_beta != 0)
    old = completion_logps(trainer.model, batch, trainer.temperature).detach()
    ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
    attention = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
    trl_logps = trainer._get_per_token_logps_and_entropies(trainer.model, ids, attention, old.size(1))[0]
    mask = batch["completion_mask"].bool()
    assert torch.allclose(old[mask], trl_logps[mask].detach(), atol=1e-5)

    step, share = move_policy(trainer, batch, old, clipped_share=0.1)
    assert step > 0 and share >= 0.1, "the policy never moved far enough for the clip to act"
    loss = loss_by_hand(trainer, batch, old)
    trl_loss = trainer._compute_loss(trainer.model, {**batch, "old_per_token_logps": old})
    torch.testing.assert_close(loss, trl_loss, rtol=1e-4, atol=1e-7)
    assert gradient_gap(loss, trl_loss, trainer.model) < 1e-3
    # without the clip the same formula is another loss: the check above can fail
    assert not torch.allclose(loss_by_hand(trainer, batch, old, clip=False), trl_loss, rtol=1e-3)


def test_a_group_with_zero_advantages_shows_a_still_policy_and_still_agrees(model_dir, bench, tmp_path):
    trainer = make_trainer(model_dir, bench, tmp_path, kl_beta=0.01)
    batch = micro_batch(trainer, random_samples(trainer.model.config.vocab_size, advantages=(0.0,) * 6))
    old = completion_logps(trainer.model, batch, trainer.temperature).detach()
    step, share = move_policy(trainer, batch, old)
    assert step == share == 0.0, "a zero-advantage batch at the reference has no gradient to move along"
    loss = loss_by_hand(trainer, batch, old)
    trl_loss = trainer._compute_loss(trainer.model, {**batch, "old_per_token_logps": old})
    torch.testing.assert_close(loss, trl_loss, rtol=1e-3, atol=1e-6)
    assert gradient_gap(loss, trl_loss, trainer.model) < 1e-2


def test_on_policy_the_ratio_is_one_and_the_loss_is_minus_the_mean_advantage(model_dir, bench, tmp_path):
    trainer = make_trainer(model_dir, bench, tmp_path, kl_beta=0.0)
    batch = micro_batch(trainer, random_samples(trainer.model.config.vocab_size))
    trl_loss = trainer._compute_loss(trainer.model, batch)  # no old log-probs: TRL uses the detached current ones
    expected = -batch["advantages"].mean() / trainer.current_gradient_accumulation_steps
    torch.testing.assert_close(trl_loss, expected)


def test_rollout_group_skips_groups_whose_rollouts_all_score_alike(model_dir, bench, tmp_path, monkeypatch):
    trainer = make_trainer(model_dir, bench, tmp_path)
    alike = [fake_episode(g, [1.0, 0.0], [[0], [1]], [[1], [0], [1]], [1.0, 1.0, 1.0], 30) for g in range(G)]
    varied = varied_group()
    groups = {"a": alike, "b": varied, "c": alike}
    asked = []

    def fake_rollout(instances, settings, seed):
        asked.append(instances[0])
        return [groups[instances[0]]]

    monkeypatch.setattr(trainer, "_rollout", fake_rollout)
    assert rollout_group(trainer, ["a", "b", "c"]) is varied
    assert asked == ["a", "b"], "instances are rolled out one at a time, up to the first that differs"
    assert rollout_group(trainer, ["a", "c"]) is alike
    with pytest.raises(ValueError, match="no instance"):
        rollout_group(trainer, [])


def test_hand_trainer_builds_the_runs_trainer_ready_for_its_loss(model_dir, bench, tmp_path):
    cfg = load_profile("smoke")
    paths = profile_paths(cfg, tmp_path / "results", tmp_path / "data")
    trainer = hand_trainer(cfg, paths, {"train": bench["train"], "test": bench["test"]}, model_dir, "csr", seed=1)
    assert trainer.model.training
    assert trainer.args.reward == RewardSpec.from_config(cfg, "csr") and trainer.args.seed == 1
    assert trainer.current_gradient_accumulation_steps == trainer.args.gradient_accumulation_steps
    assert not any(isinstance(c, HeldOutCallback) for c in trainer.callback_handler.callbacks)
    assert np.isclose(trainer.temperature, cfg["manager"]["sampling"]["temperature"])
