"""The ``finemem`` command end to end, on text files the tests write, with the offline models."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
import types
from pathlib import Path

import pytest

from finemem_lib import cli
from finemem_lib.agents.sft import train_sft_manager
from finemem_lib.data.synthetic import build_synthetic
from finemem_lib.infra.progress import progress_enabled
from tests.tiny import TINY_BENCH, TINY_MODEL

ROOT = Path(__file__).resolve().parents[1]
TEXT_A = (
    "Ada Brook lives in Lisbon. The favourite colour of Ada Brook is teal. On Monday, the river rose. "
    "Ada Brook works at Northwind. The pet of Ada Brook is a gecko. It rained all day. "
    "Ben Cole lives in Oslo."
)
TEXT_B = "Ben Cole works at Copperleaf. The car of Ben Cole is a Subaru. Ben Cole moved to Porto."


@pytest.fixture(scope="module")
def manager_dir(tmp_path_factory):
    """A tiny SFT manager (15 steps on the teacher's traces): a real manager folder, trained in seconds."""
    cfg = {
        "seed": 0,
        "memory": {"op_style": "extractive", "view_k": 5},
        "manager": {"model": "offline", "offline": dict(TINY_MODEL), "max_prompt_tokens": 1024, "batch_size": 8},
        "sft": {"max_steps": 15, "batch_size": 4, "learning_rate": 5e-3, "num_threads": 1},
    }
    train = build_synthetic(TINY_BENCH, seed=0)["train"]
    return train_sft_manager(cfg, train, tmp_path_factory.mktemp("manager") / "sft")


@pytest.fixture()
def inputs(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text(TEXT_A)
    b.write_text(TEXT_B)
    return a, b


def test_memorize_writes_the_memory_with_writer_steps_and_history(manager_dir, inputs, tmp_path, capsys):
    out, page = tmp_path / "memory.json", tmp_path / "episode.html"
    argv = ["memorize", "--manager", str(manager_dir), "--input", *map(str, inputs), "--out", str(out)]
    assert cli.main([*argv, "--html", str(page), "--profile", "smoke"]) == 0
    record = json.loads(out.read_text())
    # smoke profile: 5 sentences per chunk -> a.txt (7 sentences) gives 2 chunks, b.txt (3) gives 1
    assert [s["input"] for s in record["steps"]] == [str(inputs[0])] * 2 + [str(inputs[1])]
    assert record["steps"][2]["chunk"] == TEXT_B
    for step in record["steps"]:
        for op in step["operations"]:
            assert set(op) >= {"kind", "detail", "executed", "reason"}
    for item in record["items"]:
        assert 0 <= item["step"] < 3 and item["history"] and item["history"][-1]["step"] == item["step"]
        assert item["content"] in TEXT_A + " " + TEXT_B
    executed = sum(
        op["executed"] and op["kind"] in ("insert", "update") for s in record["steps"] for op in s["operations"]
    )
    assert len(record["items"]) <= executed
    assert record["steps"][-1]["memory_items"] == len(record["items"])
    assert page.is_file() and page.read_text().count('<section class="step"') == 3
    assert "memory written to" in capsys.readouterr().out


def test_ask_prints_the_answer_and_the_items_it_used(tmp_path, capsys):
    memory = tmp_path / "memory.json"
    items = [
        {"id": "m1", "content": "Ada Brook lives in Lisbon.", "step": 0, "history": []},
        {"id": "m2", "content": "Ben Cole works at Copperleaf.", "step": 2, "history": []},
    ]
    memory.write_text(json.dumps({"items": items}))
    assert (
        cli.main(["ask", "--memory", str(memory), "--profile", "smoke", "--top-k", "1", "Where does Ada Brook live?"])
        == 0
    )
    out = capsys.readouterr().out
    assert "Lisbon" in out.splitlines()[0]
    assert "[m1] written at step 0" in out and "[m2]" not in out


def test_ask_on_what_memorize_wrote(manager_dir, inputs, tmp_path, capsys):
    out = tmp_path / "memory.json"
    cli.main(
        ["memorize", "--manager", str(manager_dir), "--input", str(inputs[0]), "--out", str(out), "--profile", "smoke"]
    )
    capsys.readouterr()
    assert cli.main(["ask", "--memory", str(out), "--profile", "smoke", "Where does Ada Brook live?"]) == 0
    assert capsys.readouterr().out.startswith("answer: ")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["memorize", "--manager", "/nonexistent/manager", "--input", "x.txt"], "no such folder"),
        (["ask", "--memory", "/nonexistent/memory.json", "q?"], "finemem memorize --out"),
    ],
)
def test_bad_paths_say_what_to_pass(argv, message, capsys):
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


def test_missing_input_and_broken_memory_file(manager_dir, tmp_path, capsys):
    assert cli.main(["memorize", "--manager", str(manager_dir), "--input", str(tmp_path / "none.txt")]) == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "empty.txt").write_text("  \n")
    assert cli.main(["memorize", "--manager", str(manager_dir), "--input", str(tmp_path / "empty.txt")]) == 2
    assert "empty" in capsys.readouterr().err
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    assert cli.main(["ask", "--memory", str(broken), "q?"]) == 2
    assert "not a JSON memory file" in capsys.readouterr().err
    broken.write_text(json.dumps({"items": [{"id": "m1"}]}))
    assert cli.main(["ask", "--memory", str(broken), "q?"]) == 2
    assert "item 0 needs" in capsys.readouterr().err


@pytest.mark.parametrize("command", [None, "memorize", "ask", "train", "study", "evaluate", "data"])
def test_help_of_every_subcommand(command, capsys):
    argv = [command, "--help"] if command else ["--help"]
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert exit_info.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_forwarded_subcommands_pass_argv_to_their_module(monkeypatch):
    seen = {}
    fake = types.ModuleType("fake_cli")
    fake.main = lambda argv: seen.setdefault("argv", argv) and 0
    monkeypatch.setitem(sys.modules, "fake_cli", fake)
    monkeypatch.setitem(cli.SUBCOMMANDS, "evaluate", cli.Subcommand("evaluation", "fake_cli"))
    assert cli.main(["evaluate", "--profile", "smoke", "--x"]) == 0
    assert seen["argv"] == ["--profile", "smoke", "--x"]
    with pytest.raises(ValueError, match="defined here"):
        cli.forward("ask", [])


def test_every_forwarded_module_has_a_main():
    for name, command in cli.SUBCOMMANDS.items():
        if command.module is not None:
            assert callable(getattr(importlib.import_module(command.module), "main", None)), name


def test_data_alias_prepares_the_profile(tmp_path, capsys):
    assert cli.main(["data", "--profile", "smoke", "--data-dir", str(tmp_path)]) == 0
    manifest = json.loads((tmp_path / "smoke" / "manifest.json").read_text())
    assert manifest["splits"]["train"]["instances"] > 0
    assert "train.parquet" in capsys.readouterr().out


def test_console_script_is_declared_and_runs():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '[project.scripts]\nfinemem = "finemem_lib.cli:main"' in pyproject
    done = subprocess.run([sys.executable, "-m", "finemem_lib.cli", "--help"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0 and "memorize" in done.stdout and "evaluate" in done.stdout


def test_progress_is_off_under_tests_and_follows_the_env(monkeypatch):
    assert not progress_enabled()  # PYTEST_CURRENT_TEST is set
    monkeypatch.setenv("FINEMEM_PROGRESS", "1")
    assert progress_enabled()
    monkeypatch.setenv("FINEMEM_PROGRESS", "0")
    monkeypatch.delenv("PYTEST_CURRENT_TEST", raising=False)
    assert not progress_enabled()
