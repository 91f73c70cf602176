"""The credit-scheme run's check that its rollouts are those of the committed house step table."""

from __future__ import annotations

import pandas as pd

from finemem_lib.core.reward_spec import RewardSpec
from finemem_lib.episodes.credit import CreditVariant
from finemem_lib.training.credit_schemes_run import build_parser, compare_with_house_steps, with_scheme_rows

HOUSE = pd.DataFrame(
    {"group": ["a/0@s0"] * 2 + ["a/1@s0"] * 2, "rollout": [0, 0, 0, 0], "step": [0, 1, 0, 1],
     "value": [0.5, 0.0, 0.25, 0.0], "A_or_only": [1.0, 1.0, -1.0, -1.0]}
)  # fmt: skip


def test_the_same_rollouts_in_another_row_order_match():
    steps = HOUSE.iloc[::-1].assign(A_gigpo=0.0)
    check = compare_with_house_steps(steps, HOUSE)
    assert check["same_rollouts"] and check["max_abs_difference"] == 0.0


def test_other_rollouts_do_not_match():
    changed = HOUSE.assign(value=[0.5, 0.0, 0.0, 0.0])
    assert not compare_with_house_steps(changed, HOUSE)["same_rollouts"]
    assert not compare_with_house_steps(HOUSE.iloc[:3], HOUSE)["same_rollouts"]


def test_the_command_line_defaults_to_the_credit_study_seeds():
    args = build_parser().parse_args([])
    assert args.profile == "long" and args.seeds == [0, 1] and args.n_boot == 1000


def test_scheme_rows_join_the_house_table_source_by_source_and_replace_earlier_ones():
    house = pd.DataFrame({"variant": ["or_only", "gigpo", "or_only"], "spearman": [0.1, 9.0, 0.2],
                          "source": ["all", "all", "s1"]})  # fmt: skip
    quality = pd.DataFrame({"variant": ["or_only", "gigpo", "gigpo"], "spearman": [0.1, 0.3, 0.4],
                            "source": ["all", "all", "s1"]})  # fmt: skip
    merged = with_scheme_rows(house, quality, [CreditVariant("gigpo", RewardSpec("gigpo"))])
    assert merged[["variant", "source", "spearman"]].values.tolist() == [
        ["or_only", "all", 0.1], ["gigpo", "all", 0.3], ["or_only", "s1", 0.2], ["gigpo", "s1", 0.4]
    ]  # fmt: skip
