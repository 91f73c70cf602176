"""Episode rollouts: batched across rollouts and instances, deterministic under a seed, rewards with no glue."""

import numpy as np
import pytest
import torch

from finemem_lib.agents.policy import ManagerPolicy, SamplingParams
from finemem_lib.agents.reasoner_offline import OfflineReader
from finemem_lib.core import rewards
from finemem_lib.core.memory import Operation, OpKind
from finemem_lib.core.ops import render_tool_calls
from finemem_lib.data.synthetic import build_synthetic
from finemem_lib.episodes.rollout import RolloutSettings, group_advantages, group_step_rewards, rollout
from tests.tiny import TINY_BENCH, tiny_policy


@pytest.fixture(scope="module")
def bench():
    return build_synthetic(TINY_BENCH, seed=0)


@pytest.fixture(scope="module")
def policy(bench):
    return tiny_policy(bench["train"])


def settings(G=2, **kw):
    return RolloutSettings(num_generations=G, sampling=SamplingParams(temperature=1.0, max_new_tokens=12), **kw)


def test_rollout_records_every_step_of_every_rollout(bench, policy):
    instances = bench["train"][:2]
    episodes = rollout(instances, policy, OfflineReader(), settings(G=2), seed=3)
    assert [len(group) for group in episodes] == [2, 2]
    for inst, group in zip(instances, episodes, strict=True):
        for g, ep in enumerate(group):
            assert ep.instance_id == inst.id and ep.rollout == g and inst.num_chunks == ep.T
            assert len(ep.global_results) == len(inst.questions)
            for t, step in enumerate(ep.steps):
                assert step.step == t
                assert step.completion_ids.shape == step.old_logprobs.shape
                assert torch.all(step.old_logprobs <= 0)
                assert len(step.chunk_correct) == len(inst.chunk_qas[t])
                assert 0.0 <= step.format_score <= 1.0
            r = ep.step_rewards("finemem")
            assert r.shape == (ep.T,) and np.all(np.isfinite(r))
            assert np.isclose(ep.N.sum(), ep.r_global)  # every query retrieved evidence, or the memory is empty
    adv = group_advantages(episodes[0], "finemem")
    assert adv.shape == (2, instances[0].num_chunks) and np.allclose(adv.mean(axis=0), 0.0)


def test_rollout_is_deterministic_under_a_seed(bench, policy):
    inst = bench["train"][:1]
    a = rollout(inst, policy, OfflineReader(), settings(G=2), seed=7)[0]
    b = rollout(inst, policy, OfflineReader(), settings(G=2), seed=7)[0]
    for ea, eb in zip(a, b, strict=True):
        assert [s.text for s in ea.steps] == [s.text for s in eb.steps]
        assert np.array_equal(ea.step_rewards("finemem"), eb.step_rewards("finemem"))


class ScriptedPolicy(ManagerPolicy):
    """The tiny model's prompts, but completions replaced by given texts (malformed ones included)."""

    def __init__(self, base: ManagerPolicy, texts: list[str]):
        self.__dict__.update(base.__dict__)
        self.texts = texts

    def generate(self, prompt_ids, sampling=None, seed=None, batch_size=None):
        gens = super().generate(prompt_ids, SamplingParams(temperature=0.0, max_new_tokens=1), seed, batch_size)
        for gen, text in zip(gens, self.texts * len(gens), strict=False):
            gen.text = text
        return gens


def test_malformed_output_scores_zero_format_and_does_not_crash(bench, policy):
    inst = bench["train"][:1]
    bad = ScriptedPolicy(policy, ['<tool_call>{"name": "memory_insert", "arguments": {"sentence": "x"}</tool_call>'])
    ep = rollout(inst, bad, OfflineReader(), settings(G=1), seed=0)[0][0]
    assert all(s.format_score == 0.0 and s.memory_items == 0 for s in ep.steps)
    assert ep.r_global == 0.0 and np.all(ep.N == 0)
    good = ScriptedPolicy(policy, [render_tool_calls([Operation(OpKind.INSERT, sentence=1)], "extractive")])
    ep = rollout(inst, good, OfflineReader(), settings(G=1), seed=0)[0][0]
    assert all(s.format_score == 1.0 for s in ep.steps) and ep.steps[-1].memory_items == ep.T


def test_group_rewards_match_the_kernels(bench, policy):
    group = rollout(bench["train"][:1], policy, OfflineReader(), settings(G=3), seed=1)[0]
    for variant in rewards.VARIANTS:
        expected = np.stack(
            [rewards.step_rewards(variant, e.r_global, e.N, e.r_chunk, e.r_fmt, e.r_comp) for e in group]
        )
        assert np.allclose(group_step_rewards(group, variant), expected)
        assert np.allclose(
            group_advantages(group, variant, mode="episode"), rewards.group_advantages(expected, "episode")
        )
