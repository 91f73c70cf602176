"""Trained variants over their seeds: mean rows by a two-level bootstrap, paired differences and their verdicts,
and ``./reproduce.sh check`` on the tables that hold them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from finemem_lib.evaluation.columns import layout
from finemem_lib.evaluation.seed_means import (
    HIGHER,
    LOWER,
    NO_DIFFERENCE,
    ONE_SEED,
    differences_table,
    is_mean_row,
    mean_row_name,
    seed_draws,
    seed_runs,
    two_level_replicates,
    verdict,
    verdict_sentences,
)
from finemem_lib.evaluation.tables import bootstrap_table, paper_differences, paper_tables, wide_table
from finemem_lib.repro.table_compare import DIFFERENT, IDENTICAL, WITHIN, compare_grids, read_grid

COLUMNS = list(layout("memalpha"))
SOURCES = {"squad": "synth_factoid", "lme": "synth_update"}


def _records(methods: dict[str, tuple[str, list[float] | dict[str, list[float]]]]) -> pd.DataFrame:
    """One record per (method, instance): ``{method: (role, scores)}``, scores per column or squad only."""
    rows = []
    for method, (role, scores) in methods.items():
        by_column = scores if isinstance(scores, dict) else {"squad": scores}
        for column, values in by_column.items():
            for i, value in enumerate(values):
                rows.append(
                    {
                        "benchmark": "memalpha",
                        "method": method,
                        "role": role,
                        "instance_id": f"{column}/{i}",
                        "source": SOURCES[column],
                        "column": column,
                        "score": float(value),
                        "memory_tokens": 100 + 10 * int(method[-1]) if method[-1].isdigit() else 50,
                    }
                )
    return pd.DataFrame(rows)


def _per_instance(records: pd.DataFrame) -> pd.DataFrame:
    from finemem_lib.evaluation.tables import instance_scores

    return instance_scores(records)


def _seeded(base: np.ndarray, offsets: list[float]) -> dict[str, tuple[str, list[float]]]:
    return {f"finemem_s{s}": ("trained", list(np.clip(base + o, 0, 1))) for s, o in enumerate(offsets)}


BASE = np.array([0.2, 0.4, 0.5, 0.6, 0.8, 0.3, 0.7, 0.5, 0.45, 0.55, 0.35, 0.65])


# ---------------------------------------------------------------------------- the two-level bootstrap
def test_two_level_bootstrap_has_the_known_mean_and_is_deterministic_with_its_seed():
    per_seed = [np.array([0.0, 1.0, 1.0, 0.0]), np.array([1.0, 1.0, 1.0, 1.0]), np.array([0.5, 0.5, 0.5, 0.5])]
    draws = seed_draws(3, 2000, seed=0)
    assert draws.shape == (2000, 3) and set(np.unique(draws)) == {0, 1, 2}
    reps = two_level_replicates(per_seed, draws, np.random.default_rng(0))
    assert reps.mean() == pytest.approx((0.5 + 1.0 + 0.5) / 3, abs=0.02)  # unbiased for the mean of seed means
    again = two_level_replicates(per_seed, seed_draws(3, 2000, seed=0), np.random.default_rng(0))
    np.testing.assert_array_equal(reps, again)
    other = two_level_replicates(per_seed, seed_draws(3, 2000, seed=1), np.random.default_rng(1))
    assert not np.array_equal(reps, other)
    # a seed without data is left out of the replicates that draw it
    with_gap = two_level_replicates([per_seed[1], None], seed_draws(2, 500, seed=0), np.random.default_rng(0))
    assert np.all(with_gap[np.isfinite(with_gap)] == 1.0)


def test_mean_row_holds_the_mean_over_seeds_and_its_interval_widens_with_the_seed_spread():
    start = {"sft_manager": ("start", list(BASE))}
    tight = _per_instance(_records({**start, **_seeded(BASE, [0.0, 0.01, -0.01])}))
    wide = _per_instance(_records({**start, **_seeded(BASE, [-0.2, 0.0, 0.2])}))
    rows = {}
    for name, frame in (("tight", tight), ("wide", wide)):
        long = bootstrap_table(frame, "memalpha", samples=1000, seed=0)
        methods = list(dict.fromkeys(long["method"]))
        assert methods == ["sft_manager", "finemem_s0", "finemem_s1", "finemem_s2", "finemem (mean of 3 seeds)"]
        rows[name] = long[long["method"] == "finemem (mean of 3 seeds)"].set_index("column")
        seeds = long[long["method"].str.startswith("finemem_s") & (long["column"] == "squad")]["mean"]
        assert rows[name].loc["squad", "mean"] == pytest.approx(seeds.mean())
        assert rows[name].loc["avg", "mean"] == pytest.approx(seeds.mean())  # one column with data
        assert rows[name].loc["memory", "mean"] == pytest.approx(110.0)  # mean over seeds of 100, 110, 120
        assert rows[name].loc["squad", "n"] == len(BASE)
        assert rows[name].loc["squad", "lo"] < rows[name].loc["squad", "mean"] < rows[name].loc["squad", "hi"]
        assert rows[name].iloc[0].get("kind", "method") == "method"
    width = {k: r.loc["avg", "hi"] - r.loc["avg", "lo"] for k, r in rows.items()}
    assert width["wide"] > 1.5 * width["tight"], width
    again = bootstrap_table(wide, "memalpha", samples=1000, seed=0)
    assert (
        again[again["method"] == "finemem (mean of 3 seeds)"].set_index("column").loc["avg", "lo"]
        == (rows["wide"].loc["avg", "lo"])
    )


def test_one_seed_mean_row_equals_its_seed_and_mean_rows_follow_each_variant():
    frame = _per_instance(
        _records(
            {
                "rag_bm25": ("baseline", list(BASE)),
                "sft_manager": ("start", list(BASE - 0.1)),
                "or_only_s0": ("trained", list(BASE)),
                "finemem_s0": ("trained", list(BASE + 0.05)),
                "oracle": ("ceiling", [1.0] * len(BASE)),
            }
        )
    )
    wide = wide_table(bootstrap_table(frame, "memalpha", samples=300, seed=0))
    assert list(wide.index) == [
        "rag_bm25", "sft_manager", "or_only_s0", "or_only (mean of 1 seed)", "finemem_s0",
        "finemem (mean of 1 seed)", "oracle",
    ]  # fmt: skip
    assert wide.loc["finemem (mean of 1 seed)"].to_list() == wide.loc["finemem_s0"].to_list()
    assert wide.loc["or_only (mean of 1 seed)", "kind"] == "method" and wide.loc["oracle", "kind"] == "ceiling"
    assert is_mean_row("finemem (mean of 1 seed)") and is_mean_row(mean_row_name("csr", 3))
    assert not is_mean_row("finemem_s0")


def test_seed_runs_are_trained_managers_named_by_variant_and_seed():
    frame = _per_instance(
        _records(
            {
                "sft_manager": ("start", [0.5]),
                "finemem_s1": ("trained", [0.5]),
                "finemem_s0": ("trained", [0.5]),
                "mine_s3": ("baseline", [0.5]),  # not a trained manager, whatever its name
                "extra": ("trained", [0.5]),  # an extra manager without a seed
            }
        )
    )
    assert seed_runs(frame) == {"finemem": {1: "finemem_s1", 0: "finemem_s0"}}
    without_roles = seed_runs(frame.drop(columns="role"))  # by name among the methods
    assert without_roles == {"finemem": {1: "finemem_s1", 0: "finemem_s0"}, "mine": {3: "mine_s3"}}


# ---------------------------------------------------------------------------- differences and verdicts
def test_verdict_reads_the_interval_and_one_seed_is_not_a_comparison():
    assert verdict(0.01, 0.2, 3) == HIGHER
    assert verdict(-0.2, -0.01, 3) == LOWER
    assert verdict(-0.1, 0.1, 3) == NO_DIFFERENCE
    assert verdict(0.0, 0.1, 3) == NO_DIFFERENCE  # touching 0 is not above it
    assert verdict(0.05, 0.2, 1) == ONE_SEED
    assert verdict(float("nan"), float("nan"), 3) == "no data"


def _study(finemem: list[float], or_only: list[float], start_shift: float, noise: float = 0.0) -> pd.DataFrame:
    """The start and two variants' seeds: BASE shifted per seed, plus (``noise``) a fixed per-run jitter."""
    methods = {"sft_manager": ("start", {"squad": list(BASE + start_shift), "lme": list(BASE[:8] + start_shift)})}
    for v, (variant, offsets) in enumerate((("or_only", or_only), ("finemem", finemem))):
        for s, o in enumerate(offsets):
            jitter = noise * np.random.default_rng([v, s]).standard_normal(len(BASE))
            methods[f"{variant}_s{s}"] = ("trained", {"squad": list(BASE + o + jitter), "lme": list(BASE[:8] + o)})
    return _records(methods)


def test_differences_are_paired_and_say_higher_lower_or_no_difference():
    records = _study(finemem=[0.10, 0.12, 0.11], or_only=[-0.01, 0.01, 0.0], start_shift=0.0)
    table = paper_differences(records, {"evaluation": {"bootstrap": {"samples": 500, "seed": 0}}})["memalpha"]
    assert list(table.columns) == ["variant", "versus", "column", "seeds", "instances", "diff", "lo", "hi", "verdict"]
    avg = table[table["column"] == "avg"].set_index(["variant", "versus"])
    fm, oo, sft = "finemem (mean of 3 seeds)", "or_only (mean of 3 seeds)", "sft_manager"
    assert list(avg.index) == [(oo, sft), (fm, oo), (fm, sft)]
    assert avg.loc[(fm, sft), "diff"] == pytest.approx(0.11)  # every instance shifted: known difference
    assert avg.loc[(fm, oo), "diff"] == pytest.approx(0.11)
    # paired: the same instances shifted by a constant per seed leave only the seed spread in the interval
    assert avg.loc[(fm, sft), "lo"] > 0.09 and avg.loc[(fm, sft), "hi"] < 0.13
    assert avg.loc[(fm, sft), "verdict"] == HIGHER and avg.loc[(fm, oo), "verdict"] == HIGHER
    assert avg.loc[(oo, sft), "verdict"] == NO_DIFFERENCE
    assert avg.loc[(fm, sft), "instances"] == len(BASE) + 8 and avg.loc[(fm, sft), "seeds"] == 3
    lower = paper_differences(_study(finemem=[-0.1, -0.12, -0.11], or_only=[0.0, 0.0, 0.0], start_shift=0.0), {})[
        "memalpha"
    ]
    assert set(lower.loc[lower["variant"].str.startswith("finemem"), "verdict"]) == {LOWER}
    sentences = verdict_sentences(table, "memalpha")
    assert sentences[1].startswith("On memalpha (avg), finemem (mean of 3 seeds) scores higher than or_only")
    assert "no differently from sft_manager" in sentences[0] and "the interval spans 0" in sentences[0]


def test_one_seed_differences_are_written_but_not_a_comparison():
    table = paper_differences(_study(finemem=[0.3], or_only=[0.0], start_shift=0.0), {})["memalpha"]
    assert len(table) and set(table["verdict"]) == {ONE_SEED}
    finemem = table[(table["column"] == "avg") & table["variant"].str.startswith("finemem")]
    assert finemem["lo"].gt(0).all() and finemem["hi"].ge(finemem["lo"]).all()  # instance-only (here 0 wide)
    assert "(one seed: not a comparison)" in verdict_sentences(table)[0]


def test_variants_with_different_seeds_are_compared_unpaired():
    table = differences_table(
        _per_instance(_study(finemem=[0.1, 0.12, 0.11, 0.1], or_only=[0.0, 0.01], start_shift=0.0)), COLUMNS, 300, 0
    )
    row = table[(table["column"] == "avg") & (table["versus"] == "or_only (mean of 2 seeds)")].iloc[0]
    assert row["variant"] == "finemem (mean of 4 seeds)" and row["diff"] == pytest.approx(0.1075 - 0.005)
    assert row["lo"] < row["diff"] < row["hi"]


def test_no_trained_runs_no_differences():
    records = _records({"sft_manager": ("start", list(BASE)), "rag_bm25": ("baseline", list(BASE))})
    assert paper_differences(records, {}) == {}


# ---------------------------------------------------------------------------- ./reproduce.sh check on them
def _csv(frame: pd.DataFrame, index: bool) -> list[list[str]]:
    return read_grid(frame.to_csv(index=index))


def _tables(records: pd.DataFrame) -> dict[str, list[list[str]]]:
    cfg = {"evaluation": {"bootstrap": {"samples": 400, "seed": 0}}}
    long, wide = paper_tables(records, cfg)["memalpha"]
    return {
        "long": _csv(long, False),
        "wide": _csv(wide, True),
        "differences": _csv(paper_differences(records, cfg)["memalpha"], False),
    }


def test_check_reads_mean_rows_and_differences():
    records = _study(finemem=[0.10, 0.14, 0.12], or_only=[-0.02, 0.02, 0.0], start_shift=0.0, noise=0.1)
    ref = _tables(records)
    for name, grid in ref.items():
        assert compare_grids(name, grid, grid).status == IDENTICAL
    # another CPU: a few instances of two runs score a little differently, inside the intervals, same verdicts
    other = records.copy()
    other.loc[(other["method"] == "finemem_s1") & (other["instance_id"] == "squad/3"), "score"] += 0.05
    other.loc[(other["method"] == "or_only_s2") & (other["instance_id"] == "squad/5"), "score"] -= 0.05
    moved = _tables(other)
    for name in ref:
        result = compare_grids(name, moved[name], ref[name])
        assert result.status == WITHIN, (name, result.details)
    assert any("finemem (mean of 3 seeds)" in d for d in compare_grids("wide", moved["wide"], ref["wide"]).details)
    # Fine-Mem falls to OR-only: outside the mean row's interval, and the verdict changes
    fallen = _tables(_study(finemem=[0.0, 0.01, -0.01], or_only=[-0.02, 0.02, 0.0], start_shift=0.0, noise=0.1))
    result = compare_grids("differences", fallen["differences"], ref["differences"])
    assert result.status == DIFFERENT
    assert any("verdict: rerun no difference (interval spans 0) vs reference higher" in d for d in result.details)
    wide = compare_grids("wide", fallen["wide"], ref["wide"])
    assert wide.status == DIFFERENT and any("(finemem (mean of 3 seeds)), avg" in d for d in wide.details)


def test_mab_average_leaves_cr_out_of_the_differences_as_out_of_the_table():
    runs = (("sft_manager", "start", 0), ("finemem_s0", "trained", 0.2), ("finemem_s1", "trained", 0.3))
    rows = [
        {"benchmark": "mab", "method": m, "role": role, "instance_id": f"{col}/{i}", "source": col, "column": col,
         "score": float(v + shift), "memory_tokens": 10}
        for m, role, shift in runs
        for col, values in (("SH-Doc", [0.1, 0.3, 0.5]), ("CR", [0.0, 0.2]))
        for i, v in enumerate(values)
    ]  # fmt: skip
    table = differences_table(_per_instance(pd.DataFrame(rows)), list(layout("mab")), 300, 0).set_index("column")
    assert list(table.index) == ["SH-Doc", "CR", "avg"]
    assert table.loc["avg", "instances"] == 3 and table.loc["avg", "diff"] == pytest.approx(0.25)  # SH-Doc only
    assert table.loc["CR", "diff"] == pytest.approx(0.25) and table.loc["CR", "instances"] == 2


def test_a_bound_at_zero_up_to_float_rounding_reads_as_zero():
    from finemem_lib.evaluation.seed_means import NO_DIFFERENCE, verdict

    assert round(9.25185853854297e-18, 12) == 0.0
    assert verdict(-0.07, round(9.25185853854297e-18, 12), 3) == NO_DIFFERENCE
    assert verdict(-0.07, round(-9.25185853854297e-18, 12), 3) == NO_DIFFERENCE
