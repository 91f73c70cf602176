"""The preflight names every missing dataset, model or endpoint with its fix, in a few lines, before notebooks run."""

from __future__ import annotations

import pytest

from finemem_lib.infra.config import load_profile
from finemem_lib.repro import preflight


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("REASONER_BASE_URL", raising=False)


def test_the_offline_profiles_need_nothing():
    for name in ("smoke", "default"):
        assert preflight.check_profile(load_profile(name)) == []


def test_the_paper_profile_without_the_hub_prints_each_fix_briefly(capsys):
    assert preflight.main(["--profile", "paper"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.splitlines()) <= 12
    assert "hf download YuWangX/Memalpha --repo-type dataset" in err
    assert "hf download ai-hyz/MemoryAgentBench --repo-type dataset" in err
    assert "hf download Qwen/Qwen3-4B" in err and "REASONER_BASE_URL" in err


def test_a_local_dataset_folder_counts(tmp_path):
    cfg = load_profile("paper")
    for split in ("train", "test"):
        (tmp_path / f"{split}.parquet").write_bytes(b"")
    cfg["data"]["memalpha"]["local_dir"] = str(tmp_path)
    problems = preflight.check_profile(cfg)
    assert not [p for p in problems if p.what.startswith("Memalpha")]
    cfg["data"]["memalpha"]["local_dir"] = str(tmp_path / "empty")
    [memalpha] = [p for p in preflight.check_profile(cfg) if p.what.startswith("Memalpha")]
    assert "train, test" in memalpha.what and "hf download" in memalpha.fix


def test_a_missing_start_model_says_which_notebook_makes_it():
    cfg = load_profile("full")
    cfg["training"]["sft_model"] = "data/nowhere/models/sft"
    [problem] = preflight.check_profile(cfg, ["03"])
    assert "./reproduce.sh --profile nowhere --only 2" in problem.fix
    assert preflight.check_profile(cfg, ["01"]) == [], "only notebook 03 needs the start model"


def test_an_unknown_profile_is_one_line(capsys):
    assert preflight.main(["--profile", "nope"]) == 2
    assert "no profile 'nope'" in capsys.readouterr().err


def test_vllm_rollouts_without_vllm_say_how_to_get_it_or_turn_them_off(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real(name, *a))
    cfg = load_profile("paper")
    assert cfg["manager"]["engine"] == "vllm"
    [problem] = [p for p in preflight.check_profile(cfg, ["03"]) if "vLLM" in p.what]
    assert "pip install -e .[gpu]" in problem.fix and "manager.engine: native" in problem.fix
    assert not [p for p in preflight.check_profile(cfg, ["01"]) if "vLLM" in p.what], "only training rolls out"
    cfg["manager"]["engine"] = "native"
    assert not [p for p in preflight.check_profile(cfg, ["03"]) if "vLLM" in p.what]
