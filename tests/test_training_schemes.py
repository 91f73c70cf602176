"""Credit schemes train like the paper's variants: A_t from each scheme's kernel reaches step t's completion tokens."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from finemem_lib.agents.policy import SamplingParams, load_manager
from finemem_lib.agents.reasoner_offline import OfflineReader
from finemem_lib.core import credit_schemes as cs
from finemem_lib.core import rewards
from finemem_lib.core.reward_spec import SCHEMES, TRAINABLE, VARIANTS, RewardSpec
from finemem_lib.data.synthetic import build_synthetic
from finemem_lib.episodes.advantages import round_credit
from finemem_lib.episodes.credit import CreditVariant
from finemem_lib.episodes.credit_schemes_study import add_scheme_advantages, ingredient_rows
from finemem_lib.episodes.qa import QAResult
from finemem_lib.episodes.rollout import Episode, RolloutSettings, StepRecord, rollout
from finemem_lib.training.config import TrainingSettings, grpo_config, training_settings
from finemem_lib.training.diagnostics import as_history_rows, round_stats
from finemem_lib.training.grpo import StepCreditGRPOTrainer
from finemem_lib.training.plan import one_group_plan, plan_runs
from finemem_lib.training.samples import collate_step_samples, step_samples
from tests.tiny import TINY_BENCH, ScriptedPolicy, tiny_policy

G, T = 3, 3
W1, W2 = 0.7, 0.1


# ---------------------------------------------------------------------------- a hand-built group
def episode(rollout_id, scores, evidence, chunk_correct, fmt, memory_tokens, vocab=60):
    """An Episode with given reward components and distinct token ids per step (no model involved)."""
    gen = torch.Generator().manual_seed(rollout_id)
    steps = [
        StepRecord(
            step=t,
            prompt_ids=torch.randint(3, vocab, (4 + t,), generator=gen),
            completion_ids=torch.randint(3, vocab, (2 + t + rollout_id,), generator=gen),
            old_logprobs=torch.zeros(2 + t + rollout_id),
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
    return Episode("inst", "synth_factoid", rollout_id, [40, 40, 40], steps, None, results)


def hand_group() -> list[Episode]:
    return [
        episode(0, [1.0, 0.0], [[0, 2], [1]], [[1, 0], [0], [1, 1]], [1.0, 0.5, 1.0], 30),
        episode(1, [1.0, 1.0], [[2], [0, 1]], [[0, 0], [1], [1, 0]], [1.0, 1.0, 0.0], 50),
        episode(2, [0.0, 1.0], [[1], [2, 2]], [[1, 1], [1], [0, 0]], [0.5, 1.0, 1.0], 10),
    ]


# The same group worked out by hand.
R_GLOBAL = np.array([0.5, 1.0, 0.5])
R_COMP = 1 - np.array([30, 50, 10]) / 120
R_FMT = np.array([[1.0, 0.5, 1.0], [1.0, 1.0, 0.0], [0.5, 1.0, 1.0]])
R_CHUNK = np.array([[0.5, 0.0, 1.0], [0.0, 1.0, 0.5], [1.0, 1.0, 0.0]])
RETRIEVED = np.array([[1.0, 1.0, 1.0], [1.0, 1.0, 1.0], [0.0, 1.0, 2.0]])  # retrieved items each step wrote
# each query's score / n to every step that wrote one of its items (rollout 2's query 1: step 2 once)
HINDSIGHT = np.array([[0.5, 0.0, 0.5], [0.5, 0.5, 0.5], [0.0, 0.0, 0.5]])
GATED = np.array([[0.5, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 1.0, 0.0]])  # chunk QA where every op was valid


def expected_advantages(name: str, mode: str) -> np.ndarray:
    """A_t from the scheme's leaf kernel, on the hand-worked ingredients."""
    traj = R_GLOBAL + W2 * R_COMP
    if name == "gigpo":
        return cs.gigpo_advantages(R_FMT, traj)
    if name == "gigpo_csr":
        return cs.gigpo_advantages(R_FMT + W1 * R_CHUNK, traj)
    if name == "adrpo":
        return cs.adrpo_advantages(GATED, RETRIEVED, alpha=4.0, rule="any")
    if name == "adrpo_dominant":
        return cs.adrpo_advantages(GATED, RETRIEVED, alpha=4.0, rule="dominant")
    if name == "hindsight":
        return rewards.group_advantages(HINDSIGHT + R_FMT + W2 * R_COMP[:, None], mode)
    if name == "broadcast_traj":
        return cs.trajectory_advantages(R_GLOBAL + R_FMT.mean(axis=1) + W2 * R_COMP, T)
    raise AssertionError(name)


def test_the_hand_worked_ingredients_are_the_episodes():
    x = cs.SchemeInputs(R_GLOBAL, R_COMP, R_FMT, R_CHUNK, RETRIEVED, HINDSIGHT)
    from finemem_lib.episodes.scheme_credit import group_scheme_inputs

    got = group_scheme_inputs(hand_group())
    for field in ("r_global", "r_comp", "r_fmt", "r_chunk", "retrieved", "hindsight"):
        np.testing.assert_allclose(getattr(got, field), getattr(x, field), err_msg=field)


@pytest.mark.parametrize("mode", ["step", "episode"])
@pytest.mark.parametrize("name", SCHEMES)
def test_each_scheme_trains_on_its_kernels_advantages(name, mode):
    spec = RewardSpec(name, w1=W1, w2=W2, group_mode=mode)
    samples, credit = step_samples([hand_group()], spec)
    expected = expected_advantages(name, mode)
    assert np.abs(expected).max() > 0.1, "degenerate example: no advantage signal"
    np.testing.assert_allclose(credit.advantages[0], expected, rtol=1e-12, atol=1e-12)
    assert credit.spec == spec and credit.rewards[0].shape == (G, T) and np.isfinite(credit.rewards[0]).all()
    assert len(samples) == G * T
    for s in samples:
        assert s.advantage == pytest.approx(expected[s.rollout, s.step], rel=1e-12, abs=1e-12)
    batch = collate_step_samples(samples, pad_token_id=0)
    np.testing.assert_allclose(batch["advantages"].numpy(), [expected[s.rollout, s.step] for s in samples], rtol=1e-6)


def test_the_trainer_and_the_credit_measure_give_the_same_a_t():
    """The measure recomputes A_t from its saved step table; the trainer from the episodes: the same numbers."""
    groups = [hand_group(), hand_group()[::-1]]
    steps = ingredient_rows(groups, ["a", "b"])
    steps["r_global"] = [e.r_global for g in groups for e in g for _ in range(e.T)]
    steps["r_chunk"] = [e.r_chunk[t] for g in groups for e in g for t in range(e.T)]
    schemes = [CreditVariant(n, RewardSpec(n, w1=W1, w2=W2)) for n in SCHEMES]
    measured = add_scheme_advantages(steps, schemes)
    for scheme in schemes:
        trained = step_samples(groups, scheme.spec)[1].advantages
        table = measured.pivot_table(index=["group", "rollout"], columns="step", values=f"A_{scheme.name}")
        np.testing.assert_array_equal(np.concatenate(trained), table.to_numpy(), err_msg=scheme.name)


@pytest.mark.parametrize("name", VARIANTS)
def test_paper_variants_keep_their_exact_advantages(name):
    group = hand_group()
    spec = RewardSpec(name, beta=0.3, w1=W1, w2=W2)
    adv = step_samples([group], spec)[1].advantages[0]
    direct = rewards.group_advantages(
        rewards.step_rewards(spec, R_GLOBAL, np.stack([e.N for e in group]), R_CHUNK, R_FMT, R_COMP), spec
    )
    np.testing.assert_array_equal(adv, direct)
    np.testing.assert_array_equal(adv, round_credit([group], spec).advantages[0])


# ---------------------------------------------------------------------------- through the trainer and TRL's loss
@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    bench = build_synthetic(TINY_BENCH, seed=0)
    return tiny_policy(bench["train"], batch_size=8).save_pretrained(tmp_path_factory.mktemp("tiny_manager")), bench


def scheme_trainer(model_dir, tmp_path, name):
    path, bench = model_dir
    rollout_settings = RolloutSettings(num_generations=G, sampling=SamplingParams(temperature=1.0, max_new_tokens=6))
    settings = TrainingSettings(reward=RewardSpec(name, w1=W1, w2=W2), instances_per_step=1, micro_batch_size=64,
                                learning_rate=1e-3, max_steps=1, save_steps=1)  # fmt: skip
    args = grpo_config(settings, rollout_settings, str(tmp_path), 0, [T], processes=1)
    trainer = StepCreditGRPOTrainer(load_manager(path), args, bench["train"][:1], OfflineReader(), rollout_settings)
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1
    return trainer


@pytest.mark.parametrize("name", SCHEMES)
def test_the_trainer_puts_a_schemes_a_t_on_step_t_completion_tokens(model_dir, tmp_path, name, monkeypatch):
    trainer = scheme_trainer(model_dir, tmp_path, name)
    monkeypatch.setattr(trainer, "_rollout", lambda instances, settings, seed: [hand_group()])
    batch = trainer._generate_and_score_completions([{"instance_index": 0}])
    expected = expected_advantages(name, "step")
    rows = [(g, t) for g in range(G) for t in range(T)]  # step_samples' order
    np.testing.assert_allclose(batch["advantages"].numpy(), [expected[g, t] for g, t in rows], rtol=1e-6)
    logged = {k: v[-1] for k, v in trainer._metrics["train"].items()}
    assert logged["advantages/abs_mean"] == pytest.approx(np.abs(expected).mean(), rel=1e-6)
    assert np.isfinite(logged["diag/spread/total"]) and np.isfinite(logged["diag/spread/format"])

    # the gradient of TRL's loss w.r.t. each next-token log-prob: -A_t / (B * length) on step t's completion
    # tokens (on-policy ratio 1, the KL term's gradient 0 at the reference), nothing on prompts or padding
    model, forward, captured = trainer.model, trainer.model.forward, {}

    def capturing_forward(*args, **kwargs):
        out = forward(*args, **kwargs)
        out.log_probs.retain_grad()
        captured["log_probs"] = out.log_probs
        return out

    monkeypatch.setattr(model, "forward", capturing_forward)
    model.zero_grad()
    trainer._compute_loss(model, batch).backward()
    grad = captured["log_probs"].grad
    P = batch["prompt_ids"].shape[1]
    assert torch.all(grad[:, : P - 1] == 0), "a prompt token's log-prob reached the loss"
    for row, (g, t) in enumerate(rows):
        mask = batch["completion_mask"][row].bool()
        length = int(mask.sum())
        assert length == 2 + t + g  # the step's own completion
        tokens = grad[row, P - 1 :]
        assert torch.all(tokens[~mask] == 0), "padding got gradient"
        want = torch.full((length,), -expected[g, t] / (len(rows) * length), dtype=tokens.dtype)
        torch.testing.assert_close(tokens[mask], want, rtol=1e-4, atol=1e-8)


# ---------------------------------------------------------------------------- configuration
def test_every_scheme_is_accepted_where_a_variant_is():
    assert (*VARIANTS, *SCHEMES) == TRAINABLE
    for name in SCHEMES:
        settings = training_settings({"training": {"variant": name, "variants": [name, "finemem"]}})
        assert settings.variant == name and settings.variants == (name, "finemem")
        assert settings.reward.row.credit != "grpo"
    runs = plan_runs([{"name": "schemes", "variants": list(SCHEMES), "seeds": [0, 1, 2]}])
    assert [(r.variant, r.seed) for r in runs[: len(SCHEMES)]] == [(n, 0) for n in SCHEMES]
    assert len(runs) == 3 * len(SCHEMES)
    assert [r.variant for r in one_group_plan(["gigpo", "or_only"], [0])] == ["gigpo", "or_only"]


@pytest.mark.parametrize(
    "make",
    [
        lambda: training_settings({"training": {"variant": "grpo_magic"}}),
        lambda: training_settings({"training": {"variants": ["finemem", "grpo_magic"]}}),
        lambda: training_settings({}, variant="grpo_magic"),
        lambda: plan_runs([{"name": "g", "variants": ["grpo_magic"], "seeds": [0]}]),
        lambda: one_group_plan(["grpo_magic"], [0]),
    ],
)
def test_an_unknown_name_is_a_one_line_error_listing_variants_and_schemes(make):
    with pytest.raises(ValueError) as info:
        make()
    message = str(info.value)
    assert "\n" not in message and "grpo_magic" in message
    assert all(name in message for name in TRAINABLE)


def test_a_single_name_for_variants_is_an_error_not_a_list_of_letters():
    with pytest.raises(ValueError, match="must be a list"):
        training_settings({"training": {"variants": "gigpo"}})


# ---------------------------------------------------------------------------- diagnostics
@pytest.fixture(scope="module")
def scripted_groups():
    instances = build_synthetic({"train_instances": 2, "test_instances": 0, "chunks_per_instance": 3}, 0)["train"]
    chosen = [instances[0], instances[2]]
    settings = RolloutSettings(num_generations=4, question_ratio=1.0)
    return rollout(chosen, ScriptedPolicy(), OfflineReader(), settings, seed=0), chosen


@pytest.mark.parametrize("name", SCHEMES)
def test_diagnostics_report_the_terms_a_scheme_reads(scripted_groups, name):
    groups, instances = scripted_groups
    spec = RewardSpec(name)
    means = as_history_rows(round_stats(groups, instances, spec))
    assert np.isfinite(means["diag/spread/total"]) and 0.0 <= means["diag/zero_var_groups"] <= 1.0
    assert means["diag/spread/format"] > 0  # every scheme reads r_fmt
    if spec.row.credit.startswith("adrpo"):
        # every scripted step emits a failing op: ADRPO's format gate zeroes every reward, no group has signal
        assert means["diag/spread/total"] == 0.0 and means["diag/zero_var_groups"] == 1.0
        assert np.isnan(means["diag/corr/format"])
    else:
        assert -1.0 <= means["diag/corr/format"] <= 1.0 and means["diag/zero_var_groups"] < 1.0
    if not spec.row.uses("comp"):  # ADRPO reads no compression term: no spread, no correlation (NaN)
        assert means["diag/spread/compression"] == 0.0 and np.isnan(means["diag/corr/compression"])
    if not spec.row.uses("chunk"):
        assert means["diag/spread/chunk"] == 0.0 and np.isnan(means["diag/corr/chunk"])


def test_diagnostics_of_identical_rollouts_see_no_signal(scripted_groups):
    groups, instances = scripted_groups
    clones = [[group[0]] * 4 for group in groups]
    for name in SCHEMES:
        means = as_history_rows(round_stats(clones, instances, RewardSpec(name)))
        assert means["diag/zero_var_groups"] == 1.0 and means["diag/spread/total"] == 0.0, name


def test_training_curves_draw_a_scheme_beside_a_variant(tmp_path):
    from finemem_lib.report.training_plots import plot_learning_curves

    rows = [{"variant": v, "seed": s, "step": k, "heldout/qa": 0.1 * k + s, "reward": 0.2}
            for v in ("or_only", "gigpo") for s in (0, 1) for k in (0, 2, 4)]  # fmt: skip
    fig = plot_learning_curves(pd.DataFrame(rows), path=tmp_path / "curves.png")
    labels = {t.get_text() for legend in fig.legends for t in legend.get_texts()}
    assert (tmp_path / "curves.png").is_file() and {"OR-only", "GiGPO"} <= labels


# ---------------------------------------------------------------------------- the long profile's study
def test_the_long_study_trains_every_scheme_with_three_seeds_beside_the_four_variants():
    from finemem_lib.infra.config import load_profile, repo_root
    from finemem_lib.training.plan import load_plan

    profile = load_profile("long")
    runs = load_plan(repo_root() / "configs" / "study_long.yaml", profile)
    base = [r for r in runs if r.tag == ""]  # the main comparison: no overrides, one run per (variant, seed)
    seeds = {name: {r.seed for r in base if r.variant == name} for name in TRAINABLE}
    shared = set.intersection(*seeds.values())
    assert len(shared) >= 3, seeds  # every variant and every scheme on the same >= 3 seeds
    schemes = [r for r in runs if r.group == "schemes"]
    assert {r.variant for r in schemes} == set(SCHEMES) and all(r.overrides == {} for r in schemes)
    assert all(r.config(profile)["name"] == "long" for r in schemes)  # the profile's own runs (long_<scheme>_s<k>)


def test_the_study_tables_put_schemes_beside_the_variants(tmp_path):
    from finemem_lib.infra.paths import ProfilePaths
    from finemem_lib.training import study
    from tests.test_study import PROFILE, _fake_finished_run

    paths = ProfilePaths(tmp_path / "data", tmp_path / "results").ensure()
    groups = [{"name": "main", "variants": ["or_only", "finemem"], "seeds": [0, 1]},
              {"name": "schemes", "variants": ["gigpo", "adrpo"], "seeds": [0, 1]}]  # fmt: skip
    runs = plan_runs(groups, PROFILE)
    rng = np.random.default_rng(2)
    base = rng.uniform(0.3, 0.7, 24)
    gains = {"or_only": 0.0, "finemem": 0.05, "gigpo": -0.05, "adrpo": 0.02}
    for r in runs:
        curve = [0.5, 0.5 + gains[r.variant], 0.52 + gains[r.variant]]
        _fake_finished_run(paths, PROFILE, r, base + gains[r.variant] + 0.01 * rng.normal(size=24), curve)
    files = study.write_study_figures(PROFILE, runs, paths, n_boot=200)
    heldout = pd.read_csv(files["heldout"]).query("metric == 'qa'").set_index("variant")
    assert {"or_only", "finemem", "gigpo", "adrpo"} <= set(heldout.index)
    assert heldout.loc["gigpo", "diff_hi"] < 0 < heldout.loc["finemem", "diff_lo"]  # paired to OR-only
    assert heldout.loc["gigpo", "diff_finemem_hi"] < 0 and heldout.loc["adrpo", "diff_finemem_hi"] < 0  # to Fine-Mem
    assert heldout.loc["finemem", "diff_finemem"] == 0
    assert heldout.loc["adrpo", "diff_finemem"] == pytest.approx(-0.03, abs=0.01)
    assert {"gigpo", "adrpo"} <= set(pd.read_csv(files["efficiency"])["variant"])
    assert {"gigpo", "adrpo"} <= set(pd.read_csv(files["curves"])["variant"])
