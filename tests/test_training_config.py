"""Training settings from the profiles, the batch plan, the instance sampler, checkpoints and run logs."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from finemem_lib.core.reward_spec import RewardSpec
from finemem_lib.data.instance import QA, Instance
from finemem_lib.episodes.rollout import RolloutSettings
from finemem_lib.infra.config import load_profile
from finemem_lib.infra.identity import config_hash
from finemem_lib.infra.provenance import provenance
from finemem_lib.report.run_report import write_study_report
from finemem_lib.training.checkpoints import last_complete_checkpoint
from finemem_lib.training.cli import parse_overrides
from finemem_lib.training.config import TrainingSettings, grpo_config, micro_batch_plan, training_settings
from finemem_lib.training.grpo import InstanceRoundSampler
from finemem_lib.training.run import RunResult
from finemem_lib.training.start import heldout_subset
from finemem_lib.training.study_tables import curves_table, heldout_table


@pytest.mark.parametrize("profile", ["smoke", "default", "paper", "full"])
def test_every_profile_has_valid_training_settings(profile):
    cfg = load_profile(profile)
    settings = training_settings(cfg)
    assert settings.variant in settings.variants or settings.variant == "finemem"
    assert cfg["rollout"]["num_generations"] >= 2


def test_paper_profile_defaults_are_mem_alpha_hyperparameters():
    cfg = load_profile("paper")
    s = training_settings(cfg)
    assert (s.learning_rate, s.warmup, s.kl_beta, s.epsilon) == (1e-6, 0.05, 0.001, 0.2)
    assert (s.instances_per_step, s.epochs, s.max_steps) == (32, 5.0, -1)
    assert (s.variant, s.beta, s.w1, s.w2, s.group_mode) == ("finemem", 0.5, 0.5, 0.05, "step")
    assert cfg["rollout"]["num_generations"] == 8
    assert (cfg["rollout"]["question_ratio_train"], cfg["rollout"]["question_ratio_eval"]) == (0.2, 1.0)
    assert set(s.variants) == {"or_only", "csr", "eara", "finemem"}


def test_full_profile_studies_four_variants_on_three_seeds():
    s = training_settings(load_profile("full"))
    assert set(s.variants) == {"or_only", "csr", "eara", "finemem"} and len(s.seeds) == 3


def test_reward_knobs_come_from_the_rewards_section_and_can_be_overridden():
    cfg = {"rewards": {"beta": 0.3, "w1": 0.2, "w2": 0.0, "group_mode": "episode"}, "training": {"variant": "eara"}}
    s = training_settings(cfg)
    assert (s.beta, s.w1, s.w2, s.group_mode, s.variant) == (0.3, 0.2, 0.0, "episode", "eara")
    assert training_settings(cfg, beta=0.9).beta == 0.9
    assert s.with_variant("csr").reward == RewardSpec("csr", beta=0.3, w1=0.2, w2=0.0, group_mode="episode")
    assert training_settings(cfg, variant="or_only", w1=0.4).reward == RewardSpec("or_only", 0.3, 0.4, 0.0, "episode")


@pytest.mark.parametrize(
    ("training", "match"),
    [
        ({"learnig_rate": 1e-5}, "learnig_rate"),
        ({"variant": "fine-mem"}, "fine-mem"),
        ({"loss_type": "ppo"}, "loss_type"),
        ({"num_iterations": 2, "save_steps": 3}, "multiple of num_iterations"),
        ({"heldout": {"every": 0}}, "heldout.every"),
    ],
)
def test_bad_training_settings_name_the_problem(training, match):
    with pytest.raises(ValueError, match=match):
        training_settings({"training": training})


def test_micro_batch_plan_cuts_rounds_into_bounded_micro_batches():
    s = TrainingSettings(instances_per_step=4, micro_batch_size=10)
    per_device, parts, size = micro_batch_plan(s, G=4, chunk_counts=[6, 6, 5], processes=2)
    assert per_device == 2  # 2 instances x 4 rollouts x <= 6 steps = 48 samples per process
    assert parts == 5 and size >= 48 / 5 and size % 4 == 0
    with pytest.raises(ValueError, match="divisible"):
        micro_batch_plan(s, G=4, chunk_counts=[6], processes=3)
    with pytest.raises(ValueError, match="exceeds"):
        micro_batch_plan(TrainingSettings(instances_per_step=1, micro_batches=9), G=2, chunk_counts=[4], processes=1)
    # never more micro-batches than the smallest round has samples
    assert micro_batch_plan(TrainingSettings(instances_per_step=1, micro_batch_size=1), 2, [1, 9], 1)[1] == 2


def test_grpo_config_maps_the_settings_onto_trl():
    s = TrainingSettings(
        reward=RewardSpec("csr"),
        instances_per_step=2,
        micro_batch_size=8,
        kl_beta=0.01,
        loss_type="dapo",
        learning_rate=3e-5,
        max_steps=5,
        save_steps=5,
    )
    rollout = RolloutSettings(num_generations=4)
    args = grpo_config(s, rollout, "/tmp/unused", seed=7, chunk_counts=[3], processes=1)
    assert (args.num_generations, args.beta, args.loss_type, args.learning_rate) == (4, 0.01, "dapo", 3e-5)
    assert args.steps_per_generation == args.gradient_accumulation_steps == 3  # 2 x 4 x 3 = 24 samples / 8
    assert (args.reward, args.instances_per_device, args.seed) == (RewardSpec("csr"), 2, 7)
    assert args.to_dict()["reward"] == RewardSpec("csr").to_dict()  # JSON-able for TRL's loggers
    assert args.temperature == rollout.sampling.temperature
    assert args.max_completion_length == rollout.sampling.max_new_tokens
    with pytest.raises(ValueError, match="num_generations"):
        grpo_config(s, RolloutSettings(num_generations=1), "/tmp/unused", 0, [3], processes=1)


def test_instance_round_sampler_repeats_each_round_and_depends_only_on_seed_and_epoch():
    sampler = InstanceRoundSampler(10, instances_per_round=3, repeat_count=2, seed=5)
    order = list(sampler)
    assert len(order) == len(sampler) == 3 * 3 * 2
    rounds = [order[i : i + 6] for i in range(0, len(order), 6)]
    for r in rounds:
        assert r[:3] == r[3:] and len(set(r[:3])) == 3
    assert len({i for r in rounds for i in r}) == 9  # distinct instances across the epoch's rounds
    again = InstanceRoundSampler(10, 3, 2, seed=5)
    assert list(again) == order
    again.set_epoch(1)
    epoch1 = list(again)
    assert epoch1 != order
    fresh = InstanceRoundSampler(10, 3, 2, seed=5)
    fresh.set_epoch(1)
    assert list(fresh) == epoch1  # a resumed run reproduces epoch 1 without replaying epoch 0
    with pytest.raises(ValueError, match="cannot fill one round"):
        InstanceRoundSampler(2, instances_per_round=3)


def _write_checkpoint(root, step, state):
    folder = root / f"checkpoint-{step}"
    folder.mkdir(parents=True)
    if state is not None:
        (folder / "trainer_state.json").write_text(state)
    return folder


def test_last_complete_checkpoint_skips_half_written_ones(tmp_path):
    import torch
    from safetensors.torch import save_file

    assert last_complete_checkpoint(tmp_path / "missing") is None
    good = _write_checkpoint(tmp_path, 2, json.dumps({"global_step": 2}))
    save_file({"w": torch.zeros(4)}, str(good / "model.safetensors"))
    torch.save({}, good / "optimizer.pt")
    torch.save({}, good / "scheduler.pt")
    _write_checkpoint(tmp_path, 10, None)  # killed before the state was written
    _write_checkpoint(tmp_path, 6, '{"global_step": ')  # killed while writing it
    assert last_complete_checkpoint(tmp_path) == good


def _instance(i, source):
    return Instance(f"{source}-{i}", source, ("a chunk.",), (QA("q?", ("a",)),))


def test_heldout_subset_takes_sources_round_robin():
    instances = [_instance(i, s) for s in ("a", "b", "c") for i in range(3)]
    chosen = heldout_subset(instances, 4)
    assert [i.source for i in chosen] == ["a", "b", "c", "a"]
    assert heldout_subset(instances, None) == instances


def test_provenance_records_versions_revision_and_config():
    cfg = {"name": "x", "training": {"max_steps": 1}}
    record = provenance(cfg, seed=3, run="x_or_only_s3")
    assert record["seed"] == 3 and record["config"] == cfg and record["run"] == "x_or_only_s3"
    assert {"torch", "transformers", "trl", "accelerate", "python"} <= set(record["versions"])
    assert record["versions"]["trl"] == "1.16.0"
    assert "revision" in record["git"] and "dirty" in record["git"]
    assert record["config_hash"] == config_hash(dict(cfg)) != config_hash({**cfg, "seed": 1})


def test_cli_overrides_are_parsed_as_yaml():
    assert parse_overrides(["max_steps=3", "kl_beta=0", "variants=[csr, eara]", "heldout={every: 2}"]) == {
        "max_steps": 3,
        "kl_beta": 0,
        "variants": ["csr", "eara"],
        "heldout": {"every": 2},
    }
    with pytest.raises(SystemExit, match="KEY=VALUE"):
        parse_overrides(["max_steps"])


def _result(variant, seed, qa):
    history = pd.DataFrame(
        [
            {"step": 0, "heldout/qa": 0.2, "heldout/memory_tokens": 100.0},
            {"step": 1, "reward": 1.0 + qa, "rewards/global": qa, "format_rate": 0.9, "memory/tokens": 90.0},
            {
                "step": 2,
                "reward": 1.1 + qa,
                "rewards/global": qa,
                "format_rate": 0.95,
                "memory/tokens": 80.0,
                "heldout/qa": qa,
                "heldout/memory_tokens": 80.0,
            },
        ]
    )
    return RunResult(
        f"p_{variant}_s{seed}",
        variant,
        seed,
        None,
        None,
        12.0,
        history,
        {"qa": 0.2, "memory_tokens": 100.0},
        {"qa": qa, "memory_tokens": 80.0},
    )


def test_study_tables_and_figures(tmp_path):
    from finemem_lib.infra.paths import profile_paths

    results = [_result(v, s, qa) for v, qa in (("or_only", 0.3), ("finemem", 0.4)) for s in (0, 1)]
    table = heldout_table(results)
    assert list(table["qa_final"]) == [0.3, 0.3, 0.4, 0.4] and set(table["qa_initial"]) == {0.2}
    curves = curves_table(results)
    assert len(curves) == 12 and set(curves["variant"]) == {"or_only", "finemem"}
    paths = profile_paths({"name": "p"}, tmp_path / "res", tmp_path / "data")
    files = write_study_report({"name": "p"}, paths, results, command="python -m finemem_lib.training.cli -x")
    for path in files.values():
        assert (tmp_path / "res").as_posix() in path
    study = json.loads(Path(files["study_log"]).read_text())
    assert study["command"] == "python -m finemem_lib.training.cli -x" and len(study["runs"]) == 4
    assert study["git"]["revision"] and study["versions"]["trl"] == "1.16.0"
    assert pd.read_csv(files["heldout_table"]).shape == (4, table.shape[1])
    assert np.isclose(pd.read_csv(files["curves_table"])["reward"].max(), 1.5)


def test_a_run_log_names_the_revision_the_process_loaded_not_a_later_one(monkeypatch):
    from finemem_lib.infra import provenance as runs

    runs._git_state_at_first_use.cache_clear()
    monkeypatch.setattr(runs, "git_state", lambda root=None: {"revision": "a" * 40, "dirty": False})
    try:
        assert runs.provenance({"name": "x"}, 0)["git"]["revision"] == "a" * 40
        # a commit lands while the process (a study) is still training
        monkeypatch.setattr(runs, "git_state", lambda root=None: {"revision": "b" * 40, "dirty": True})
        assert runs.provenance({"name": "x"}, 1)["git"] == {"revision": "a" * 40, "dirty": False}
    finally:
        runs._git_state_at_first_use.cache_clear()
