"""The ``evaluation:`` section read once into typed settings: defaults, every shipped profile, one-line errors."""

from __future__ import annotations

import pytest

from finemem_lib.evaluation.benchmarks import benchmark_names
from finemem_lib.evaluation.runner import EvaluationSetupError, preflight
from finemem_lib.evaluation.settings import (
    EvaluationSettings,
    EvaluationSettingsError,
    MabSettings,
    evaluation_settings,
)
from finemem_lib.evaluation.tables import paper_tables
from finemem_lib.infra.config import load_profile, profile_names
from finemem_lib.infra.paths import profile_paths


def test_a_profile_without_the_section_gets_the_defaults():
    settings = evaluation_settings({})
    assert settings == EvaluationSettings()
    assert settings.manager_batch == 8 and settings.max_instances is None and settings.bootstrap.samples == 1000
    assert settings.mab == MabSettings("synthetic", None, "test")
    assert benchmark_names({}) == ["memalpha", "mab"]
    assert evaluation_settings(settings) is settings


@pytest.mark.parametrize("name", profile_names())
def test_every_shipped_profile_reads_as_it_is_written(name):
    cfg = load_profile(name)
    section = cfg.get("evaluation") or {}
    settings = evaluation_settings(cfg)
    assert settings.manager_batch == int(section.get("manager_batch", 8))
    assert settings.max_instances == section.get("max_instances")
    assert settings.bootstrap.samples == int((section.get("bootstrap") or {}).get("samples", 1000))
    assert settings.mab.source == (section.get("mab") or {}).get("source", "synthetic")
    assert settings.mab_synthetic == section.get("mab_synthetic")
    assert benchmark_names(settings) == [*section.get("benchmarks", ["memalpha", "mab"]),
                                         *(section.get("custom_benchmarks") or {})]  # fmt: skip


def test_numbers_as_strings_are_read_and_an_empty_benchmark_list_stays_empty():
    settings = evaluation_settings({"evaluation": {"manager_batch": "4", "benchmarks": [], "max_instances": 0}})
    assert settings.manager_batch == 4 and settings.max_instances == 0 and benchmark_names(settings) == []


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ({"manager_batch": "many"}, "evaluation.manager_batch"),
        ({"max_instances": 2.5}, "evaluation.max_instances"),
        ({"num_threads": True}, "evaluation.num_threads"),
        ({"bootstrap": {"samples": [1]}}, "evaluation.bootstrap.samples"),
        ({"bootstrap": 5}, "evaluation.bootstrap"),
        ({"benchmarks": "mab"}, "evaluation.benchmarks"),
        ({"ceilings": "oracle"}, "evaluation.ceilings"),
        ({"source_rules": ["x"]}, "evaluation.source_rules"),
    ],
)
def test_a_wrong_kind_of_value_names_its_key(section, key):
    with pytest.raises(EvaluationSettingsError, match=key.replace(".", r"\.")):
        evaluation_settings({"evaluation": section})


def test_the_preflight_stops_on_a_bad_setting_in_one_line(tmp_path):
    cfg = {"name": "t", "evaluation": {"manager_batch": "many"}}
    paths = profile_paths(cfg, tmp_path / "results", tmp_path / "data")
    with pytest.raises(EvaluationSetupError, match=r"evaluation\.manager_batch must be a whole number"):
        preflight(cfg, paths, check_endpoint=False)


def test_the_tables_take_the_bootstrap_of_the_settings():
    import pandas as pd

    from finemem_lib.evaluation.tables import bootstrap_table, instance_scores

    records = pd.DataFrame(
        {"benchmark": "memalpha", "method": "m", "instance_id": list("aabcd"), "source": "squad",
         "column": "SQuAD", "score": [1.0, 0.0, 1.0, 0.0, 1.0], "memory_tokens": 10}
    )  # fmt: skip
    cfg = {"evaluation": {"bootstrap": {"samples": 50, "seed": 3}}}
    expected = bootstrap_table(instance_scores(records), "memalpha", 50, 3)
    pd.testing.assert_frame_equal(paper_tables(records, cfg)["memalpha"][0], expected)
    pd.testing.assert_frame_equal(paper_tables(records, evaluation_settings(cfg))["memalpha"][0], expected)
