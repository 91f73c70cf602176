"""results/README.md lists every table, figure, episode page and run with the command that made it."""

import json

from finemem_lib.repro.results_index import results_rows, write_results_index


def test_index_lists_every_file_with_its_command(tmp_path):
    for folder, name in (("tables", "02_sft_vs_baselines.csv"), ("figures", "03_x_heldout.png"),
                         ("figures", "01_chunks_and_tokens.png"), ("episodes", "02_episode.html")):  # fmt: skip
        (tmp_path / folder).mkdir(exist_ok=True)
        (tmp_path / folder / name).write_text("x")
    (tmp_path / "runs" / "03_x_or_only_s0").mkdir(parents=True)
    run = {"command": "python -m finemem_lib.training.cli", "profile": "x", "git": {"revision": "a" * 40}}
    (tmp_path / "runs" / "03_x_or_only_s0" / "run.json").write_text(json.dumps(run))
    study = {
        "command": "python -m finemem_lib.training.cli --report",
        "profile": "x",
        "git": {"revision": "b" * 40, "dirty": True},
        "outputs": {"f": "/elsewhere/figures/03_x_heldout.png"},
    }
    (tmp_path / "runs" / "03_x_study.json").write_text(json.dumps(study))
    (tmp_path / "notebooks").mkdir()
    executed = {"metadata": {"papermill": {"parameters": {"profile": "smoke"}}}, "cells": []}
    (tmp_path / "notebooks" / "02_reward_design.ipynb").write_text(json.dumps(executed))
    rows = {row["file"]: row for row in results_rows(tmp_path)}
    assert set(rows) == {
        "tables/02_sft_vs_baselines.csv", "figures/03_x_heldout.png", "figures/01_chunks_and_tokens.png",
        "episodes/02_episode.html", "runs/03_x_or_only_s0/",
    }  # fmt: skip
    assert rows["figures/03_x_heldout.png"]["command"] == study["command"]
    assert rows["figures/03_x_heldout.png"]["revision"] == "bbbbbbbbbb (uncommitted changes)"
    assert rows["tables/02_sft_vs_baselines.csv"]["profile"] == "smoke"
    assert "--only 02" in rows["tables/02_sft_vs_baselines.csv"]["command"]
    assert rows["runs/03_x_or_only_s0/"]["revision"] == "aaaaaaaaaa"
    text = write_results_index(tmp_path).read_text()
    assert all(f"[{name}]({name})" in text for name in rows)
