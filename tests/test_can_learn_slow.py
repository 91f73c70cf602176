"""Can GRPO learn at all? From a freshly trained default SFT start, 16 steps of the real trainer.

The positional control (pay odd-numbered sentences, charge even ones) must be learned: it pins the trainer's
plumbing (token masks, which tokens carry A_t, ratio, loss, optimizer). The content reward (pay facts, charge
filler) is not learned from the default SFT start, which stores by position, not content
(docs/miniature.md): that test is a strict expected failure, so it reports the day an SFT start that reads
content makes it pass.
"""

from __future__ import annotations

import pytest
import torch

from finemem_lib.agents.sft import train_sft_manager
from finemem_lib.data.synthetic import build_synthetic
from finemem_lib.infra.config import load_profile
from finemem_lib.training.can_learn import can_learn

pytestmark = pytest.mark.slow

STEPS = 16


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    torch.set_num_threads(1)
    cfg = load_profile("default")
    data = build_synthetic(cfg["data"], int(cfg.get("seed", 0)))
    sft = train_sft_manager(cfg, data["train"], tmp_path_factory.mktemp("sft") / "sft")
    heldout = data["test"][::4][:6]
    return cfg, data, sft, heldout


def test_grpo_learns_what_the_sft_start_can_express(setup):
    cfg, data, sft, heldout = setup
    result = can_learn(cfg, sft, data["train"], heldout, steps=STEPS, target="odd", learning_rate=1e-4)
    assert result.learned(), result.to_dict()["after"]


@pytest.mark.xfail(strict=True, reason="the default SFT start stores by position, not content (docs/miniature.md)")
def test_grpo_raises_facts_and_lowers_filler(setup):
    cfg, data, sft, heldout = setup
    result = can_learn(cfg, sft, data["train"], heldout, steps=STEPS, learning_rate=1e-4)
    assert result.learned(), (result.before, result.after)
