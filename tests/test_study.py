"""The study command: plan expansion, run names, bootstrap intervals, plateau rule, learning efficiency, resuming."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from finemem_lib.infra.config import load_profile
from finemem_lib.training import study
from finemem_lib.training.heldout import older_than_model
from finemem_lib.training.study import (
    PlannedRun,
    bootstrap_means,
    learning_efficiency,
    load_plan,
    plan_runs,
    plateau,
    run_tag,
    score_matrix,
)

PROFILE = {"name": "long", "rewards": {"beta": 0.5, "w1": 0.5}, "training": {"max_steps": 24}}


def test_groups_expand_seed_major_in_plan_order():
    runs = plan_runs([{"name": "main", "variants": ["or_only", "finemem"], "seeds": [0, 1]}], PROFILE)
    assert [(r.variant, r.seed) for r in runs] == [("or_only", 0), ("finemem", 0), ("or_only", 1), ("finemem", 1)]
    assert all(r.tag == "" and r.group == "main" for r in runs)


def test_a_sweep_point_equal_to_the_profile_is_the_base_run_shared_by_groups():
    groups = [
        {"name": "beta", "variants": ["finemem"], "seeds": [0], "set": {"training": {"max_steps": 12}},
         "sweep": {"rewards": {"beta": [0.0, 0.5]}}},
        {"name": "w1", "variants": ["finemem"], "seeds": [0], "set": {"training": {"max_steps": 12}},
         "sweep": {"rewards": {"w1": [0.5, 1.0]}}},
    ]  # fmt: skip
    runs = plan_runs(groups, PROFILE)
    tags = [(r.group, r.tag) for r in runs]
    assert tags == [("beta", "beta0.0_steps12"), ("beta", "steps12"), ("w1", "steps12"), ("w1", "w11.0_steps12")]
    names = {r.config(PROFILE)["name"] for r in runs if r.tag == "steps12"}
    assert names == {"long_steps12"}  # one run, listed in both groups


def test_a_sweep_goes_seed_major_so_a_cut_short_study_holds_whole_seeds():
    group = {"name": "beta", "variants": ["finemem"], "seeds": [0, 1], "sweep": {"rewards": {"beta": [0.0, 0.5, 1.0]}}}
    order = [(r.seed, r.tag) for r in plan_runs([group], PROFILE)]
    assert order == [(0, "beta0.0"), (0, ""), (0, "beta1.0"), (1, "beta0.0"), (1, ""), (1, "beta1.0")]


def test_a_planned_run_merges_its_overrides_into_the_profile():
    run = PlannedRun("beta", "beta1.0", "finemem", 2, {"rewards": {"beta": 1.0}})
    cfg = run.config(PROFILE)
    assert cfg["rewards"] == {"beta": 1.0, "w1": 0.5} and cfg["name"] == "long_beta1.0"
    assert PROFILE["rewards"]["beta"] == 0.5  # the profile is not changed


def test_run_tags_are_short_and_sorted():
    assert run_tag({}) == ""
    assert run_tag({"retrieval": {"top_k": 5}, "training": {"max_steps": 12}}) == "topk5_steps12"
    assert run_tag({"rewards": {"group_mode": "episode"}}) == "normepisode"


@pytest.mark.parametrize(
    ("group", "match"),
    [
        ({"name": "g", "variants": ["finemem"]}, "needs 'variants' and 'seeds'"),
        ({"name": "g", "variants": ["bogus"], "seeds": [0]}, "not one of"),
        ({"name": "g", "variants": ["finemem"], "seeds": [0], "grid": {}}, "unknown key"),
        ({"name": "g", "variants": ["finemem"], "seeds": [0], "sweep": {"rewards": {"beta": 0.5}}}, "non-empty list"),
    ],
)
def test_bad_plans_name_the_problem(group, match):
    with pytest.raises(ValueError, match=match):
        plan_runs([group])


def test_the_committed_plan_loads_and_puts_the_main_comparison_first(tmp_path):
    from finemem_lib.infra.config import repo_root

    runs = load_plan(repo_root() / "configs" / "study_long.yaml", load_profile("long"))
    main = [r for r in runs if r.group == "main"]
    assert runs[: len(main)] == main and {r.variant for r in main} == {"or_only", "finemem"}
    assert len({r.seed for r in main}) >= 5
    beta = [r for r in runs if r.group == "beta"]
    assert beta and all(r.ood for r in beta) and not any(r.ood for r in main)
    assert {r.config(load_profile("long"))["rewards"]["beta"] for r in beta} == {0.0, 0.25, 0.5, 0.75, 1.0}
    assert {r.group for r in runs} >= set(study.ABLATION_GROUPS)
    with pytest.raises(FileNotFoundError, match="no study plan"):
        load_plan(tmp_path / "missing.yaml")
    (tmp_path / "empty.yaml").write_text("groups: []\n")
    with pytest.raises(ValueError, match="non-empty 'groups'"):
        load_plan(tmp_path / "empty.yaml")


def _heldout(variant_shift: float, seeds: int, base: np.ndarray, rng) -> pd.DataFrame:
    instances = len(base)  # base: instance difficulty, shared by the variants
    rows = [
        {"seed": s, "instance_id": f"i{j}", "score": base[j] + variant_shift + 0.02 * rng.normal()}
        for s in range(seeds)
        for j in range(instances)
    ]
    return pd.DataFrame(rows)


def test_paired_difference_detects_a_small_consistent_gain_and_not_a_null_one():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.2, 0.8, 96)
    matrices = {
        "or_only": score_matrix(_heldout(0.0, 5, base, rng))[0],
        "finemem": score_matrix(_heldout(0.03, 5, base, rng))[0],
        "same": score_matrix(_heldout(0.0, 5, base, rng))[0],
    }
    table = bootstrap_means(matrices, reference="or_only", n_boot=500).set_index("variant")
    assert table.loc["finemem", "diff_lo"] > 0 and table.loc["finemem", "diff"] == pytest.approx(0.03, abs=0.01)
    assert table.loc["same", "diff_lo"] < 0 < table.loc["same", "diff_hi"]
    for v in matrices:
        assert table.loc[v, "lo"] <= table.loc[v, "mean"] <= table.loc[v, "hi"]
    # unpaired by instance, the instance spread (0.2..0.8) would swamp a 0.03 gain
    assert (
        table.loc["finemem", "hi"] - table.loc["finemem", "lo"]
        > table.loc["finemem", "diff_hi"] - table.loc["finemem", "diff_lo"]
    )


def test_bootstrap_needs_the_same_instances_for_every_variant():
    with pytest.raises(ValueError, match="same instances"):
        bootstrap_means({"a": np.zeros((2, 3)), "b": np.zeros((2, 4))})


def _curve(values):
    return pd.DataFrame({"step": np.arange(len(values)) * 4, "mean": values})


def test_plateau_rule():
    assert plateau(_curve([0.50, 0.55, 0.60, 0.65, 0.70]))["stopped_rising"] is False
    flat = plateau(_curve([0.50, 0.60, 0.62, 0.615, 0.625]))
    assert flat["stopped_rising"] is True and flat["gain_last"] == pytest.approx(0.005)
    assert plateau(_curve([0.5, 0.6]))["reason"] == "too few evaluations"


def test_learning_efficiency_is_the_first_step_reaching_or_only_final():
    rows = []
    for seed in (0, 1):
        for step, a, b in ((0, 0.5, 0.5), (4, 0.55, 0.60), (8, 0.58, 0.64), (12, 0.60, 0.66)):
            rows.append({"variant": "or_only", "seed": seed, "step": step, "heldout/qa": a})
            rows.append({"variant": "finemem", "seed": seed, "step": step, "heldout/qa": b})
            rows.append({"variant": "eara", "seed": seed, "step": step, "heldout/qa": 0.5})
    eff = learning_efficiency(pd.DataFrame(rows), n_boot=200).set_index("variant")
    assert eff.loc["or_only", "first_step"] == 12 and eff.loc["finemem", "first_step"] == 4
    assert np.isnan(eff.loc["eara", "first_step"]) and eff.loc["finemem", "target"] == pytest.approx(0.60)
    # seeds that agree: every draw gives the same step; eara never gets there
    assert (eff.loc["finemem", "lo"], eff.loc["finemem", "hi"], eff.loc["finemem", "reached"]) == (4, 4, 1.0)
    assert eff.loc["eara", "reached"] == 0.0 and np.isnan(eff.loc["eara", "lo"])


def test_learning_efficiency_interval_follows_the_seeds():
    rows = []
    for seed, late in ((0, False), (1, True), (2, False), (3, True)):
        for step in (0, 4, 8, 12):
            rows.append({"variant": "or_only", "seed": seed, "step": step, "heldout/qa": 0.5 + 0.01 * step})
            fast = 0.5 + (0.2 if step >= (12 if late else 4) else 0.0)
            rows.append({"variant": "finemem", "seed": seed, "step": step, "heldout/qa": fast})
    eff = learning_efficiency(pd.DataFrame(rows), n_boot=400).set_index("variant")
    # the four seeds' mean (0.6 at steps 4 and 8) reaches OR-only's 0.62 at step 12; a draw of three or four
    # early seeds reaches it at step 4
    assert eff.loc["finemem", "first_step"] == 12
    assert eff.loc["finemem", "lo"] == 4 and eff.loc["finemem", "hi"] == 12 and eff.loc["finemem", "reached"] == 1.0


@pytest.mark.slow
def test_the_study_trains_evaluates_and_resumes_without_training_again(tmp_path, monkeypatch):
    """End to end on the smoke profile: 2 runs, held-out files, tables; a second call reuses them."""
    from finemem_lib.data.prepared import prepare_profile_data
    from finemem_lib.infra.paths import profile_paths

    profile = load_profile("smoke")
    profile["training"]["max_steps"] = 1
    profile["training"]["save_steps"] = 1
    paths = profile_paths(profile, tmp_path / "results", tmp_path / "data")
    prepare_profile_data(profile, paths.data)
    runs = plan_runs([{"name": "main", "variants": ["or_only", "finemem"], "seeds": [0]}], profile)
    done = study.run_plan(profile, runs, paths)
    assert len(done) == 2
    tables = study.collect(profile, runs, paths)
    assert len(tables["runs"]) == 2 and len(tables["heldout"]) == 2 * len(
        pd.read_csv(study.heldout_path(paths, "smoke_sft_topk2"))
    )
    assert (paths.tables / "05_study_runs.csv").is_file() and (paths.runs / "05_study.json").is_file()

    import finemem_lib.training.loop as loop

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(loop, "train_manager", no_training)
    rewrites = []
    monkeypatch.setattr(study, "write_study_figures", lambda *args, **kwargs: rewrites.append(1) or {})
    assert len(study.run_plan(profile, runs, paths)) == 2
    assert rewrites == []  # every run reused: tables and figures are left as they are
    (paths.tables / "05_study_runs.csv").unlink()
    study.run_plan(profile, runs, paths)
    assert rewrites == [1] and (paths.tables / "05_study_runs.csv").is_file()  # written once, not per run
    (paths.tables / "05_study_runs.csv").unlink()
    study.run_plan(profile, runs[:1], paths, reported=runs)  # one group trained (--only), the whole plan reported
    assert sorted(pd.read_csv(paths.tables / "05_study_runs.csv")["variant"]) == ["finemem", "or_only"]


def _fake_finished_run(paths, profile, planned, scores, curve):
    """A run log, history and held-out file as the study writes them (no training)."""
    from finemem_lib.infra.atomic import write_json
    from finemem_lib.infra.identity import config_hash

    cfg = planned.config(profile)
    name = f"{cfg['name']}_{planned.variant}_s{planned.seed}"
    run_dir = paths.runs / f"05_{name}"
    write_json(run_dir / "run.json", {"status": "finished", "config_hash": config_hash(cfg), "steps": 8, "wall_s": 1.0})
    pd.DataFrame({"step": [0, 4, 8], "heldout/qa": curve, "heldout/memory_tokens": [100, 90, 80]}).to_csv(
        run_dir / "history.csv", index=False
    )
    pd.DataFrame({"instance_id": [f"i{j}" for j in range(len(scores))], "score": scores, "memory_tokens": 50.0}).to_csv(
        run_dir / "heldout_instances.csv", index=False
    )


def test_study_figures_and_tables_from_finished_runs(tmp_path):
    from finemem_lib.infra.paths import ProfilePaths

    paths = ProfilePaths(tmp_path / "data", tmp_path / "results").ensure()
    groups = [
        {"name": "main", "variants": ["or_only", "finemem"], "seeds": [0, 1]},
        {"name": "beta", "variants": ["finemem"], "seeds": [0], "sweep": {"rewards": {"beta": [0.5, 1.0]}}},
    ]
    runs = plan_runs(groups, PROFILE)
    rng = np.random.default_rng(1)
    base = rng.uniform(0.3, 0.7, 24)
    for r in runs:
        gain = {"or_only": 0.0, "finemem": 0.05}[r.variant] - (0.1 if r.tag == "beta1.0" else 0.0)
        curve = [0.5, 0.55, 0.56] if r.variant == "or_only" else [0.5, 0.58, 0.6]
        _fake_finished_run(paths, PROFILE, r, base + gain + 0.01 * rng.normal(size=24), curve)
    assert study.write_study_figures(PROFILE, runs[:0], paths) == {}
    files = study.write_study_figures(PROFILE, runs, paths, n_boot=300)
    for key in ("heldout", "heldout_figure", "curves_figure", "efficiency", "plateau", "ablation_beta_figure"):
        assert Path(files[key]).is_file(), key
    heldout = pd.read_csv(files["heldout"]).query("metric == 'qa'").set_index("variant")
    assert heldout.loc["finemem", "diff_lo"] > 0 and heldout.loc["finemem", "seeds"] == 2
    eff = pd.read_csv(files["efficiency"]).set_index("variant")
    assert eff.loc["finemem", "first_step"] == 4 and eff.loc["or_only", "first_step"] == 8
    ablation = pd.read_csv(files["ablation_beta"]).set_index("variant")
    assert ablation.loc["beta1.0", "diff_hi"] < 0  # against the group's base point (beta 0.5 = the main run)


def test_a_group_marked_ood_is_scored_out_of_distribution_and_gets_its_own_ablation_table(tmp_path):
    from finemem_lib.infra.paths import ProfilePaths

    groups = [{"name": "beta", "variants": ["finemem"], "seeds": [0, 1], "ood": True,
               "sweep": {"rewards": {"beta": [0.5, 1.0]}}},
              {"name": "w1", "variants": ["finemem"], "seeds": [0],
               "sweep": {"rewards": {"w1": [0.5, 1.0]}}},
              {"name": "group_mode", "variants": ["finemem"], "seeds": [0],
               "sweep": {"rewards": {"group_mode": ["step", "episode"]}}}]  # fmt: skip
    runs = plan_runs(groups, PROFILE)
    assert {r.group: r.ood for r in runs} == {"beta": True, "w1": False, "group_mode": False}
    paths = ProfilePaths(tmp_path / "data", tmp_path / "results").ensure()
    rng = np.random.default_rng(2)
    base = rng.uniform(0.3, 0.7, 12)
    for r in runs:
        if r.tag == "normepisode":  # not finished yet: group_mode holds only the shared base point
            continue
        _fake_finished_run(paths, PROFILE, r, base + 0.01 * rng.normal(size=12), [0.5, 0.5, 0.5])
        if r.ood:  # beta 1.0 is much worse out of distribution only
            name = f"{r.config(PROFILE)['name']}_{r.variant}_s{r.seed}"
            drop = 0.2 if r.tag == "beta1.0" else 0.0
            pd.DataFrame({"instance_id": [f"o{j}" for j in range(6)], "score": 0.6 - drop + 0.01 * rng.normal(size=6),
                          "memory_tokens": 40.0}).to_csv(study.ood_path(paths, name), index=False)  # fmt: skip
    tables = study.collect(PROFILE, runs, paths)
    assert set(tables["ood"]["group"]) == {"beta"} and len(tables["ood"]) == 4 * 6
    files = study.write_study_figures(PROFILE, runs, paths, n_boot=300)
    assert "ablation_w1_ood" not in files and Path(files["ablation_beta_ood_figure"]).is_file()
    assert "ablation_w1" in files and "ablation_group_mode" not in files  # a base point alone is no ablation
    curves = pd.read_csv(files["curves"]).query("metric == 'heldout/qa'")
    assert set(curves["count"]) == {2}, "the base runs (2 seeds) are counted once, not once per group holding them"
    ood = pd.read_csv(files["ablation_beta_ood"]).set_index("variant")
    assert ood.loc["beta1.0", "diff_hi"] < 0 and ood.loc["beta1.0", "instances"] == 6
    assert list(ood.index) == ["base", "beta1.0"] and ood.loc["base", "diff"] == 0  # the base point is named


def test_an_sft_evaluation_older_than_the_sft_weights_is_stale(tmp_path):
    import os

    model = tmp_path / "sft"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"x")
    scores = tmp_path / "heldout_instances.csv"
    scores.write_text("instance_id,score\n")
    os.utime(model / "model.safetensors", (1_000, 1_000))
    assert not older_than_model(scores, model)
    os.utime(scores, (500, 500))
    assert older_than_model(scores, model)


def test_the_credit_measure_covers_every_ablation_point_of_fine_mem():
    variants = {v.name: v.spec for v in study.credit_variants(load_profile("long"))}
    assert {v.beta for v in variants.values() if v.variant == "finemem" and v.group_mode == "step"} >= {
        0.0,
        0.25,
        0.5,
        0.75,
        1.0,
    }
    assert {v.w1 for v in variants.values() if v.variant == "finemem"} >= {0.0, 0.25, 0.5, 1.0}
    assert variants["finemem_episode"].group_mode == "episode" and set(study.MAIN_VARIANTS) <= set(variants)


def test_two_study_processes_share_a_plan_run_by_run(tmp_path):
    marker = tmp_path / "runs" / ".claim-05_long_finemem_s0"
    with study.claim(marker) as first:
        assert first and marker.read_text() == str(__import__("os").getpid())
        with study.claim(marker) as second:  # held by a live process: the run is skipped
            assert not second
    assert not marker.exists()
    marker.write_text("999999999")  # left by a process that died
    with study.claim(marker) as taken:
        assert taken
    assert not marker.exists()


def test_a_study_plan_is_not_a_profile():
    from finemem_lib.infra.config import profile_names

    assert "study_long" not in profile_names() and "long" in profile_names()
    with pytest.raises(ValueError, match="is a study plan"):
        load_profile("study_long")
