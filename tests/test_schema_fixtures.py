"""Schema-exact dataset stand-ins, the scripted chat server and ``${ENV}`` in profiles."""

from __future__ import annotations

import json

import openai
import pyarrow.parquet as pq
import pytest

from finemem_lib.agents.llm_client import ChatClient
from finemem_lib.agents.reasoner import AnswerRequest
from finemem_lib.agents.reasoner_openai import OpenAIReasoner
from finemem_lib.agents.scripted_llm import MODEL, ScriptedLLMServer
from finemem_lib.core.memory import MemoryItem
from finemem_lib.core.metrics import score
from finemem_lib.data.chunk_qa import ChunkQABuilder, ChunkQASettings
from finemem_lib.data.memalpha import load_memalpha, load_memalpha_mab
from finemem_lib.data.memoryagentbench import load_memoryagentbench
from finemem_lib.data.schema_fixtures import write_mab, write_memalpha, write_memalpha_mab
from finemem_lib.infra.config import expand_env, load_profile

MEMALPHA_COLUMNS = [
    "instance_id",
    "prompt",
    "chunks",
    "questions_and_answers",
    "data_source",
    "metadata",
    "num_chunks",
    "num_questions",
]
MEMALPHA_SOURCES = {"squad", "hotpotqa", "perltqa", "lme_train", "booksum", "pubmed-rct"}


def test_memalpha_columns_are_the_published_ones(tmp_path):
    folder = write_memalpha(tmp_path / "Memalpha")
    for split in ("train", "test"):
        table = pq.read_table(folder / f"{split}.parquet")
        assert table.column_names == MEMALPHA_COLUMNS
        row = table.slice(0, 1).to_pylist()[0]
        assert isinstance(row["chunks"], str) and isinstance(json.loads(row["chunks"]), list)
        assert isinstance(json.loads(row["questions_and_answers"])[0]["question"], str)
        assert isinstance(json.loads(row["metadata"]), dict)
        instances = load_memalpha(split, data_dir=folder)
        assert MEMALPHA_SOURCES | {"icl_trec_coarse_6600shot_balance"} == {i.source for i in instances}
    booksum = next(i for i in load_memalpha("train", data_dir=folder) if i.source == "booksum")
    assert booksum.questions[0].answers == ("lighthouse, letter, brother, salt mines",)  # Memalpha's string shape
    lme = next(i for i in load_memalpha("train", data_dir=folder) if i.source == "lme_train")
    assert "prompt" not in lme.metadata  # lme_train has an empty prompt in Memalpha


def test_processed_memoryagentbench_copy(tmp_path):
    folder = write_memalpha_mab(tmp_path / "Memalpha-Memoryagentbench")
    assert pq.read_table(folder / "train.parquet").num_rows == 0
    assert pq.read_table(folder / "test.parquet").column_names == MEMALPHA_COLUMNS
    assert load_memalpha_mab("train", folder) == []
    sources = {i.source for i in load_memalpha_mab("test", folder)}
    assert {
        "ruler_qa1_197K",
        "longmemeval_s*",
        "icl_trec_coarse_6600shot_balance",
        "infbench_sum_eng_shots2",
    } <= sources


def test_raw_memoryagentbench_splits(tmp_path):
    folder = write_mab(tmp_path / "MemoryAgentBench")
    table = pq.read_table(folder / "data" / "Accurate_Retrieval-00000-of-00001.parquet")
    assert table.column_names == ["context", "questions", "answers", "metadata"]
    assert "source" in table.schema.field("metadata").type.names  # a struct, as on the Hub
    paper = load_profile("paper")["data"]["memoryagentbench"]
    kept = load_memoryagentbench(
        "Accurate_Retrieval",
        sources=paper["sources"]["Accurate_Retrieval"],
        exclude=paper["exclude_sources"],
        data_dir=folder,
        chunk_size=32,
    )
    assert {i.source for i in kept} == {"ruler_qa1_197K", "ruler_qa2_421K", "longmemeval_s*"}
    assert max(i.num_chunks for i in kept) > 1


@pytest.fixture
def server():
    with ScriptedLLMServer(max_seconds=60) as running:
        yield running


def test_chunk_qa_builder_against_the_scripted_server(server, tmp_path):
    instances = load_memalpha("train", data_dir=write_memalpha(tmp_path / "Memalpha"))[:2]
    client = ChatClient(server.base_url, MODEL, max_retries=0)
    builder = ChunkQABuilder(client, client, tmp_path / "cache.jsonl", ChunkQASettings(k=2, candidates=4))
    built, report = builder.build(instances)
    assert report.complete and report.built == sum(i.num_chunks for i in instances)
    assert all(len(qas) == 2 for inst in built for qas in inst.chunk_qas)
    qa = built[0].chunk_qas[0][0]
    assert qa.answers[0] in built[0].chunks[0] and qa.answers[0] not in qa.question


def test_reasoner_replies_are_scoreable(server):
    reasoner = OpenAIReasoner(ChatClient(server.base_url, MODEL, max_retries=0))
    fact = MemoryItem(id="a1b2", content="Bruno Keller plays the bassoon.", step=0)
    label = MemoryItem(id="c3d4", content="Sentence: Who wrote Middlemarch ?\nLabel: 3", step=1)
    answers = reasoner.answer(
        [
            AnswerRequest("Bruno Keller plays what?", "squad", (fact,)),
            AnswerRequest("Who wrote Emma ?", "icl_trec_coarse_6600shot_balance", (label,)),
            AnswerRequest("Anything?", "squad", ()),
        ]
    )
    assert score("squad", answers[0].text, ["the bassoon"]) == 1.0
    assert score("icl_trec_coarse_6600shot_balance", answers[1].text, ["3"]) == 1.0
    assert answers[2].text  # never an empty reply
    assert server.requests == 3


def test_server_stops_by_itself():
    server = ScriptedLLMServer(max_seconds=0.3).start()
    client = openai.OpenAI(base_url=server.base_url, api_key="EMPTY", max_retries=0, timeout=2)
    assert server.stopped.wait(5), "the server did not stop after max_seconds"
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])


def test_expand_env(monkeypatch):
    monkeypatch.setenv("FINEMEM_TEST_DIR", "/data/x")
    monkeypatch.delenv("FINEMEM_TEST_UNSET", raising=False)
    cfg = {"a": "${FINEMEM_TEST_DIR}/M", "b": ["${FINEMEM_TEST_UNSET:-rel/dir}"], "c": 3, "d": "$plain"}
    assert expand_env(cfg) == {"a": "/data/x/M", "b": ["rel/dir"], "c": 3, "d": "$plain"}
    with pytest.raises(ValueError, match=r"profile\.x uses \$\{FINEMEM_TEST_UNSET\}"):
        expand_env({"x": "${FINEMEM_TEST_UNSET}"})


def test_paper_smoke_profile_falls_back_to_the_data_folder(monkeypatch):
    monkeypatch.delenv("FINEMEM_HUB_DIR", raising=False)
    cfg = load_profile("paper-smoke")
    assert cfg["name"] == "paper-smoke"
    assert cfg["data"]["memalpha"]["local_dir"] == "data/paper-smoke/hub/Memalpha"
    from finemem_lib.infra.config import repo_root
    from finemem_lib.infra.paths import profile_paths

    assert profile_paths(cfg, create=False).results == repo_root() / "results" / "paper-smoke"
