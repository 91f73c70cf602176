"""Same machine, same seed, same thread count: the same weights and the same logged settings."""

from __future__ import annotations

import pytest
import torch

from finemem_lib.infra import determinism
from finemem_lib.infra.config import load_profile


def test_configure_fixes_threads_and_kernels_and_says_so():
    previous = torch.get_num_threads()
    try:
        state = determinism.configure({"runtime": {"threads": 1, "deterministic": True}}, seed=3)
        assert state == {"torch_threads": 1, "deterministic_algorithms": True, "seed": 3}
        a = torch.rand(4)
        determinism.configure({"runtime": {"threads": 1}}, seed=3)
        assert torch.equal(a, torch.rand(4))
        assert determinism.runtime_threads({"runtime": {"threads": 2}, "sft": {"num_threads": 3}}, "sft") == 3
        assert determinism.runtime_threads({"runtime": {"threads": 2}, "sft": {"num_threads": None}}, "sft") == 2
    finally:
        torch.set_num_threads(previous)


def test_the_default_profile_fixes_its_threads():
    runtime = load_profile("default")["runtime"]
    assert runtime["threads"] and runtime["deterministic"] is True


@pytest.mark.slow
def test_smoke_sft_twice_gives_identical_weights(tmp_path):
    from finemem_lib.agents.sft import train_sft_manager
    from finemem_lib.data.synthetic import build_synthetic
    from finemem_lib.infra.identity import model_hash

    cfg = load_profile("smoke")
    train = build_synthetic(cfg["data"], cfg["seed"])["train"]
    a = train_sft_manager(cfg, train, tmp_path / "a")
    b = train_sft_manager(cfg, train, tmp_path / "b")
    assert model_hash(a) == model_hash(b)
