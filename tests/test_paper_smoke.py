"""The paper path end to end, offline: every notebook under the ``paper-smoke`` profile through papermill.

``paper-smoke`` is ``paper`` with tiny sizes and local endpoints: schema-exact Memalpha / MemoryAgentBench
stand-ins and a random-weight Qwen3 written by :mod:`finemem_lib.data.schema_fixtures` into a temporary
Hub-like folder, and the reasoner and chunk-QA generator/verifier served by :mod:`finemem_lib.agents.scripted_llm`
on 127.0.0.1 (it stops by itself). Notebooks run in order and share one results/data folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import papermill as pm
import pytest

from finemem_lib.agents import AnswerRequest, build_reasoner
from finemem_lib.agents.scripted_llm import ScriptedLLMServer
from finemem_lib.core.memory import MemoryItem
from finemem_lib.data.prepared import load_prepared, prepared_splits
from finemem_lib.data.schema_fixtures import write_hub_fixture
from finemem_lib.infra.config import load_profile

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("0[0-9]_*.ipynb"))
PROFILE = "paper-smoke"


@pytest.fixture(scope="module")
def paper_smoke(tmp_path_factory):
    """The fixture folder, the scripted server and the environment that points the profile at both."""
    root = tmp_path_factory.mktemp("paper_smoke")
    fixture = write_hub_fixture(root / "hub")
    with ScriptedLLMServer(max_seconds=900) as server:
        env = {
            "FINEMEM_HUB_DIR": str(fixture.root),
            "HF_HUB_OFFLINE": "1",
            "HF_DATASETS_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "MPLBACKEND": "Agg",
            "TOKENIZERS_PARALLELISM": "false",
            **server.environment(),
        }
        saved = {key: os.environ.get(key) for key in env}
        os.environ.update(env)  # the papermill kernels inherit it
        try:
            yield {"root": root, "fixture": fixture, "server": server}
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


def test_profile_is_the_paper_path(paper_smoke):
    """Only sizes and endpoints differ from ``paper``: hub data, content ops, no SFT, openai reasoner."""
    cfg, paper = load_profile(PROFILE), load_profile("paper")
    assert cfg["data"]["kind"] == paper["data"]["kind"] == "hub"
    assert cfg["memory"]["op_style"] == "content"
    assert cfg["sft"]["enabled"] is False
    assert cfg["reasoner"]["backend"] == paper["reasoner"]["backend"] == "openai"
    assert cfg["training"]["loss_type"] == paper["training"]["loss_type"]
    assert cfg["training"]["learning_rate"] == paper["training"]["learning_rate"]
    assert cfg["data"]["memalpha"]["local_dir"] == str(paper_smoke["fixture"].memalpha)
    assert cfg["manager"]["model"] == str(paper_smoke["fixture"].model)


def test_transformers_reasoner_on_the_tiny_model(paper_smoke):
    """The profile's reasoner settings with the ``hf`` backend and the tiny local Qwen3 answer every request."""
    section = {**load_profile(PROFILE)["reasoner"], "backend": "hf", "model": str(paper_smoke["fixture"].model)}
    reasoner = build_reasoner(section)
    item = MemoryItem(id="a1b2", content="Alma Reyes works as a glassblower in Tacoma.", step=0)
    answers = reasoner.answer([AnswerRequest("Alma Reyes works as what?", "squad", (item,))] * 2)
    assert [a.evidence_ids for a in answers] == [("a1b2",), ("a1b2",)]
    assert all(isinstance(a.text, str) for a in answers)


@pytest.fixture(scope="module")
def run_dirs(paper_smoke):
    root = paper_smoke["root"]
    return {"results": root / "results", "data": root / "data", "executed": root / "executed"}


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_paper_smoke_profile(notebook, paper_smoke, run_dirs):
    run_dirs["executed"].mkdir(parents=True, exist_ok=True)
    requests_before = paper_smoke["server"].requests
    tables_before = set(run_dirs["results"].glob("tables/*.csv"))
    pm.execute_notebook(
        str(notebook),
        str(run_dirs["executed"] / notebook.name),
        parameters={"profile": PROFILE, "results_dir": str(run_dirs["results"]), "data_dir": str(run_dirs["data"])},
        cwd=str(ROOT),
        kernel_name="python3",
        progress_bar=False,
    )
    assert paper_smoke["server"].requests > requests_before, "the notebook never reached the OpenAI-compatible server"
    assert set(run_dirs["results"].glob("tables/*.csv")) - tables_before, "the notebook wrote no new table"
    data = run_dirs["data"] / PROFILE
    if notebook.stem.startswith("01_"):
        _check_prepared(data)


def _check_prepared(data: Path) -> None:
    """Notebook 01 read every split of the local Hub copies and built verified chunk QAs through the server."""
    assert {"train", "test", "mab_accurate_retrieval", "mab_test_time_learning", "mab_long_range_understanding"} <= set(
        prepared_splits(data)
    )
    sources = {inst.source for inst in load_prepared(data, "train")}
    assert {"squad", "hotpotqa", "perltqa", "lme_train", "booksum", "pubmed-rct"} <= sources
    assert "icl_trec_coarse_6600shot_balance" in sources
    mab_sources = {inst.source for inst in load_prepared(data, "mab_accurate_retrieval")}
    assert mab_sources == {"ruler_qa1_197K", "ruler_qa2_421K", "longmemeval_s*"}  # excluded and unlisted dropped
    train = load_prepared(data, "train")
    assert sum(len(qas) for inst in train for qas in inst.chunk_qas) > 0, "no chunk QA was built and verified"
    manifest = json.loads((data / "manifest.json").read_text())
    assert "0 failed" in manifest["chunk_qa_status"], manifest["chunk_qa_status"]


def test_paper_smoke_outputs(run_dirs):
    """After the notebooks: held-out scores for every Memalpha source, and GRPO runs that took 2 steps."""
    if not NOTEBOOKS or not (run_dirs["results"] / "tables").is_dir():
        pytest.skip("the notebooks did not run")
    tables = run_dirs["results"] / "tables"
    if (tables / "02_sft_vs_baselines.csv").is_file():
        scores = pd.read_csv(tables / "02_sft_vs_baselines.csv", index_col=0)
        assert {"squad", "booksum", "pubmed-rct", "icl_trec_coarse_6600shot_balance"} <= set(scores.columns)
    runs = sorted(run_dirs["results"].glob("runs/03_paper-smoke_*_s0/run.json"))
    if any(nb.stem.startswith("03_") for nb in NOTEBOOKS):
        assert len(runs) == len(load_profile(PROFILE)["training"]["variants"])
    for run in runs:
        record = json.loads(run.read_text())
        assert record["status"] == "finished" and record["steps"] == 2
        assert record["settings"]["loss_type"] == "grpo" and record["settings"]["learning_rate"] == 1e-6
