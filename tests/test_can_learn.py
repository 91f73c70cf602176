"""The can-it-learn experiment: its reward, and (slow) GRPO raising the fact store rate from an SFT start."""

from __future__ import annotations

import numpy as np
import pytest

from finemem_lib.agents.reasoner_offline import OfflineReader
from finemem_lib.core import rewards
from finemem_lib.data.roles import sentence_kinds
from finemem_lib.data.synthetic import build_synthetic
from finemem_lib.episodes.advantages import episode_group_advantages
from finemem_lib.episodes.rollout import RolloutSettings, rollout
from finemem_lib.training.can_learn import SPEC, FactRewardEpisode, fact_store_rewards
from tests.tiny import ScriptedPolicy


def test_fact_store_reward_pays_facts_and_charges_filler():
    instances = build_synthetic({"train_instances": 1, "test_instances": 0, "chunks_per_instance": 3}, 0)["train"]
    instance = instances[0]
    (group,) = rollout([instance], ScriptedPolicy(), OfflineReader(), RolloutSettings(num_generations=2), seed=0)
    kinds = sentence_kinds(instance)
    for g, episode in enumerate(group):
        reward = fact_store_rewards(instance, episode)
        stored = [0, 1] if g % 2 == 0 else [0]  # ScriptedPolicy: sentence 1 (and 2 on even rollouts), and from
        # step 1 on an UPDATE of m1 with sentence 3
        for t in range(episode.T):
            facts = [i for i, k in enumerate(kinds[t]) if k in ("fact", "update", "example", "other_fact")]
            filler = [i for i, k in enumerate(kinds[t]) if k in ("filler", "lure")]
            written = [i for i in stored + ([2] if t >= 1 else []) if i < len(kinds[t])]
            expected = sum(i in facts for i in written) / len(facts) - (
                sum(i in filler for i in written) / len(filler) if filler else 0.0
            )
            assert reward[t] == pytest.approx(expected)
        episode.__class__ = FactRewardEpisode
        episode.fact_rewards = reward
        np.testing.assert_array_equal(episode.step_rewards("finemem", 0.5, 0.5, 0.05), reward)
        # the trainer's own path: the spec's terms over the episode's components give the fact reward
        np.testing.assert_allclose(
            episode_group_advantages([episode, episode], SPEC), np.zeros((2, episode.T)), atol=1e-12
        )
        components = (episode.r_global, episode.N, episode.r_chunk, episode.r_fmt, episode.r_comp)
        np.testing.assert_allclose(rewards.step_rewards(SPEC, *components), reward, atol=1e-12)


def test_the_experiment_trains_on_the_target_it_reports(monkeypatch):
    """The trainer must reward what the store rates are measured for (a wiring slip trained 'odd' on facts)."""
    from finemem_lib.training import can_learn as module
    from tests.tiny import tiny_policy

    bench = build_synthetic({"train_instances": 1, "test_instances": 1, "chunks_per_instance": 2}, 0)
    policy = tiny_policy(bench["train"])
    seen = {}
    monkeypatch.setattr(module, "load_manager", lambda *args, **kwargs: policy)
    monkeypatch.setattr(module, "store_rates", lambda *args, **kwargs: {"fact_rate": 0.0, "filler_rate": 0.0})
    monkeypatch.setattr(module.FactRewardTrainer, "train", lambda self: seen.setdefault("target", self.target))
    cfg = {
        "training": {"kl_beta": 0.0, "instances_per_step": 1, "micro_batch_size": 4, "num_threads": 1},
        "rollout": {"num_generations": 2},
        "manager": {"sampling": {"max_new_tokens": 4}},
    }
    result = module.can_learn(cfg, "unused", bench["train"], bench["test"], steps=1, target="odd")
    assert seen["target"] == "odd" and result.settings["target"] == "odd"
