"""``finemem evaluate`` on a user's own MemoryAgentBench-schema parquet, run from a folder outside the project.

A LoCoMo-style conversation in MemoryAgentBench's published schema (``context``, ``questions``,
``answers`` as lists of acceptable answers, ``metadata`` as a struct with ``source`` and the other
published keys) is evaluated through the command line: with no YAML at all, and with a profile given by
path that extends ``default``. The records' profile name and where the outputs land are checked.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from finemem_lib.agents import instructions
from finemem_lib.cli import main as finemem
from finemem_lib.core import metrics
from finemem_lib.evaluation.own_data import OwnDataError, own_data_profile
from finemem_lib.infra.config import load_profile, repo_root
from finemem_lib.infra.paths import profile_paths

ROOT = repo_root()
SESSIONS = (
    "[Session 1, 8 May 2023] Caroline: I went to the LGBTQ support group yesterday. Melanie: That sounds "
    "powerful. Caroline: I am thinking of studying counseling. Melanie: You would be great at it. "
    "[Session 2, 25 May 2023] Melanie: I ran a charity race for mental health last Saturday. Caroline: "
    "Congratulations! Melanie: My kids painted a sunrise over the lake with me. Caroline: Lovely. "
)


def _metadata(n: int) -> dict:
    return {
        "source": "locomo_conv",
        "keypoints": None,
        "question_dates": None,
        "question_types": ["single-hop"] * n,
        "qa_pair_ids": [f"locomo-{j}" for j in range(n)],
        "previous_events": None,
    }


@pytest.fixture(autouse=True)
def _rule_tables(monkeypatch):
    """A source a test registers (``--rule``) is forgotten after it."""
    monkeypatch.setattr(metrics, "RULE_TABLES", dict(metrics.RULE_TABLES))
    monkeypatch.setattr(instructions, "QUERY_INSTRUCTIONS", instructions.QUERY_INSTRUCTIONS)


@pytest.fixture
def own_parquet(tmp_path):
    """``<tmp>/in/locomo.parquet``: two conversations, three questions; a work folder ``<tmp>/work``."""
    rows = [
        {
            "context": SESSIONS * 2,
            "questions": ["What did Caroline research?", "What did Melanie paint?"],
            "answers": [["counseling", "counselling"], ["a sunrise"]],
            "metadata": _metadata(2),
        },
        {
            "context": SESSIONS,
            "questions": ["What race did Melanie run?"],
            "answers": [["charity race"]],
            "metadata": _metadata(1),
        },
    ]
    (tmp_path / "in").mkdir()
    (tmp_path / "work").mkdir()
    path = tmp_path / "in" / "locomo.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path)
    assert not str(path.resolve()).startswith(str(ROOT.resolve()))
    return path


def _header(path: Path) -> dict:
    return json.loads(path.read_text().splitlines()[0])


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()[1:]]


def test_one_command_on_an_own_parquet_with_no_yaml(own_parquet, tmp_path):
    """The command line itself (a new process), from a folder outside the project."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "finemem_lib.cli", "evaluate", "--parquet", "../in/locomo.parquet"]
    command += ["--split", "Accurate_Retrieval", "--rule", "locomo_conv=substring_exact_match"]
    command += ["--methods", "rag_bm25", "store_everything", "--results-dir", "out", "--data-dir", "data"]
    done = subprocess.run(
        [*command, "--no-progress"], cwd=tmp_path / "work", env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "work" / "out"  # relative folders are taken from the current folder
    for method in ("rag_bm25", "store_everything"):
        records_file = out / "eval" / f"04_locomo_{method}.jsonl"
        header, records = _header(records_file), _records(records_file)
        assert header["profile"] == "locomo" and header["benchmark"] == "locomo"
        assert len(records) == 3 and {r["source"] for r in records} == {"locomo_conv"}
        assert all(r["memory_tokens"] > 0 and r["scored_by"] == "substring_exact_match" for r in records)
    summary = pd.read_csv(out / "tables" / "04_locomo_long.csv")
    memory = summary[summary["column"] == "memory"].set_index("method")["mean"]
    assert memory.notna().all() and set(memory.index) == {"rag_bm25", "store_everything"}
    assert not (ROOT / "results" / "locomo").exists() and not (ROOT / "data" / "locomo").exists()


def test_a_profile_by_path_extends_default_and_needs_no_manager(own_parquet, tmp_path, monkeypatch, capsys):
    """The four stumbles: ``extends: default`` from outside configs/, its own name and results folder,
    ``trained_managers: false`` without any manager, a mistyped method."""
    profile = tmp_path / "work" / "myeval.yaml"
    profile.write_text(
        "extends: default\n"
        f"paths: {{results_dir: {tmp_path / 'results'}, data_dir: {tmp_path / 'data'}}}\n"
        "evaluation:\n"
        "  benchmarks: []\n"
        "  trained_managers: false\n"
        "  source_rules: {locomo_conv: substring_exact_match}\n"
        f"  custom_benchmarks: {{conv: {{path: {own_parquet}}}}}\n"
    )
    monkeypatch.chdir(tmp_path / "work")
    assert finemem(["evaluate", "--profile", "myeval.yaml", "--no-progress"]) == 0
    folder = tmp_path / "results" / "myeval"  # results/<name>/, the name being the file's stem
    methods = {p.stem.removeprefix("04_conv_") for p in (folder / "eval").glob("04_conv_*.jsonl")}
    assert methods == {"long_context", "rag_bm25", "store_everything", "closed_book"}  # no SFT start needed
    assert {_header(p)["profile"] for p in (folder / "eval").glob("*.jsonl")} == {"myeval"}
    assert (folder / "tables" / "04_conv.csv").is_file()
    capsys.readouterr()
    assert finemem(["evaluate", "--profile", "myeval.yaml", "--methods", "rag"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert err == [
        "error: unknown method(s) ['rag']; this profile has: long_context, rag_bm25, store_everything, closed_book, "
        "oracle, oracle_view, skip_filler, oracle_questions, teacher"  # the default's ceilings (skipped on own data)
    ]


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--rule", "locomo_conv=nope"], "unknown rule 'nope'; known rules: boxed_label_match, containment"),
        (["--rule", "locomo_conv"], "write SOURCE=RULE"),
        ([], "data source(s) ['locomo_conv'] of"),
        (["--rule", "other=substring_exact_match"], "--rule named ['other']"),
        (["--rule", "locomo_conv=f1", "--benchmarks", "mab"], "--benchmarks does not go with --parquet"),
    ],
)
def test_wrong_rules_and_sources_are_one_line_and_exit_2(own_parquet, tmp_path, monkeypatch, capsys, flags, message):
    monkeypatch.chdir(tmp_path / "work")
    argv = ["evaluate", "--parquet", str(own_parquet), "--methods", "rag_bm25", "--results-dir", "out", *flags]
    assert finemem(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "work" / "out" / "eval").exists() or not any((tmp_path / "work" / "out" / "eval").iterdir())


def test_the_implied_profile_names_its_outputs_after_the_file(own_parquet, tmp_path):
    cfg = own_data_profile(load_profile("default"), own_parquet, rules=["locomo_conv=f1"])
    assert cfg["name"] == "locomo"
    assert profile_paths(cfg, create=False).results == ROOT / "results" / "locomo"
    section = cfg["evaluation"]
    assert section["benchmarks"] == [] and section["trained_managers"] is False
    assert section["custom_benchmarks"]["locomo"]["path"] == str(own_parquet.resolve())
    assert section["source_rules"]["locomo_conv"] == "f1"
    named = own_data_profile(load_profile("smoke"), own_parquet, keep_name=True)
    assert named["name"] == "smoke"
    with pytest.raises(OwnDataError, match="no model folder"):
        own_data_profile(load_profile("default"), own_parquet, managers=[tmp_path])


def test_skipped_rows_are_counted_in_the_records(tmp_path, monkeypatch):
    rows = [
        {"context": SESSIONS, "questions": ["Who ran?"], "answers": [["Melanie"]], "metadata": _metadata(1)},
        {"context": SESSIONS, "questions": ["Who?"], "answers": [["Melanie", None]], "metadata": _metadata(1)},
    ]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "two.parquet")
    monkeypatch.chdir(tmp_path)
    argv = ["evaluate", "--parquet", "two.parquet", "--rule", "locomo_conv=substring_exact_match"]
    assert finemem([*argv, "--methods", "closed_book", "--results-dir", "out"]) == 2  # a broken row stops the run
    assert finemem([*argv, "--methods", "closed_book", "--results-dir", "out", "--on-error", "skip"]) == 0
    header = _header(tmp_path / "out" / "eval" / "04_two_closed_book.jsonl")
    assert header["skipped_rows"] == 1 and header["skipped_by_column"] == {"answers": 1}
    assert "item 0 entry 1: null" in header["skipped"][0]["reason"]
