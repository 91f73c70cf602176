"""Profiles given by path: ``extends`` resolved next to the file then in ``configs/``, and a name of their own."""

import pytest

from finemem_lib.infra.config import load_profile, profile_argument, repo_root
from finemem_lib.infra.paths import profile_paths


def test_a_profile_outside_configs_extends_default_and_keeps_its_own_name(tmp_path):
    path = tmp_path / "my-eval.yaml"
    path.write_text("extends: default\nevaluation:\n  trained_managers: false\n")
    cfg = load_profile(path)
    assert cfg["name"] == "my-eval"  # was: "default", inherited
    assert cfg["evaluation"]["trained_managers"] is False
    assert cfg["retrieval"] == load_profile("default")["retrieval"]  # the rest comes from configs/default.yaml
    assert profile_paths(cfg, create=False).results == repo_root() / "results" / "my-eval"
    assert profile_argument(cfg) == str(path.resolve())  # hints name the file, not a profile that does not exist


def test_extends_looks_next_to_the_file_first(tmp_path):
    (tmp_path / "base.yaml").write_text("name: base\nseed: 7\nretrieval: {top_k: 5}\n")
    (tmp_path / "child.yaml").write_text("extends: base\nseed: 8\n")
    cfg = load_profile(tmp_path / "child.yaml")
    assert (cfg["name"], cfg["seed"], cfg["retrieval"]["top_k"]) == ("child", 8, 5)
    (tmp_path / "named.yaml").write_text("extends: child\nname: study-a\n")
    assert load_profile(tmp_path / "named.yaml")["name"] == "study-a"  # what the file says wins over its stem


def test_a_missing_or_circular_parent_is_one_clear_error(tmp_path):
    (tmp_path / "orphan.yaml").write_text("extends: nowhere\n")
    with pytest.raises(FileNotFoundError, match=r"extends 'nowhere'.*looked for .*nowhere\.yaml and .*configs"):
        load_profile(tmp_path / "orphan.yaml")
    (tmp_path / "a.yaml").write_text("extends: b\n")
    (tmp_path / "b.yaml").write_text("extends: a\n")
    with pytest.raises(ValueError, match="extends itself"):
        load_profile(tmp_path / "a.yaml")


def test_the_shipped_profiles_keep_their_names():
    for name in ("default", "smoke", "paper", "paper-smoke", "long", "full"):
        cfg = load_profile(name)
        assert cfg["name"] == name and profile_argument(cfg) == name
