"""Prepared data: written once per profile, read back by later notebooks."""

import json

import pytest

from finemem_lib.data.instance import QA, Instance
from finemem_lib.data.memalpha import DataNotAvailableError
from finemem_lib.data.prepared import (
    add_chunk_qas,
    chunk_table,
    instance_table,
    load_prepared,
    mab_split_name,
    prepare_profile_data,
    prepared_splits,
    save_prepared,
)
from finemem_lib.data.synthetic import build_synthetic
from finemem_lib.infra.config import load_profile
from tests.loopback_llm import LoopbackLLM


def test_smoke_profile_is_prepared_and_read_back(tmp_path):
    cfg = load_profile("smoke")
    splits, manifest = prepare_profile_data(cfg, tmp_path)
    assert splits == build_synthetic(cfg["data"], cfg["seed"])
    assert prepared_splits(tmp_path) == ["train", "test"]
    assert load_prepared(tmp_path, "test") == splits["test"]
    assert manifest["kind"] == "synthetic" and manifest["profile"] == "smoke" and manifest["build_seconds"] >= 0
    assert manifest["splits"]["train"]["sources"] == {"synth_factoid": 4, "synth_icl": 4, "synth_update": 4}
    assert json.loads((tmp_path / "manifest.json").read_text()) == manifest


def test_missing_prepared_data_says_to_run_notebook_01(tmp_path):
    with pytest.raises(DataNotAvailableError, match="run notebooks/01_data_prep"):
        load_prepared(tmp_path, "train")


def test_tables_count_chunks_tokens_questions_and_chunk_qas():
    inst = Instance("s/0", "s", ("One two three.", "Four five."), (QA("q?", ("a",)),), ((QA("c?", ("d",)),), ()))
    table = instance_table({"train": [inst]})
    row = table.iloc[0].to_dict()
    assert row == {
        "split": "train",
        "id": "s/0",
        "source": "s",
        "chunks": 2,
        "tokens": 7,
        "questions": 1,
        "chunk_qas": 1,
        "chunks_with_qa": 1,
    }
    chunks = chunk_table({"train": [inst]})
    assert chunks["tokens"].tolist() == [4, 3] and chunks["chunk_qas"].tolist() == [1, 0]


def test_save_prepared_writes_every_split(tmp_path):
    inst = Instance("ruler_qa1_197K/4", "ruler_qa1_197K", ("c.",), (QA("q?", ("a", "b")),))
    files = save_prepared({mab_split_name("Accurate_Retrieval"): [inst]}, tmp_path, {"note": "x"})
    assert list(files) == ["mab_accurate_retrieval"]
    assert load_prepared(tmp_path, "mab_accurate_retrieval") == [inst]


def test_chunk_qas_without_endpoints_say_what_to_set(monkeypatch, tmp_path):
    for name in ("BASE_URL", "MODEL"):
        monkeypatch.delenv(f"CHUNKQA_GENERATOR_{name}", raising=False)
    inst = Instance("s/0", "s", ("c.",), (QA("q?", ("a",)),))
    out, status = add_chunk_qas([inst], {"k": 5}, tmp_path / "cache.jsonl")
    assert out == [inst] and "CHUNKQA_GENERATOR_BASE_URL" in status


def test_chunk_qas_with_endpoints_from_the_environment(monkeypatch, tmp_path):
    def generator(messages):
        return json.dumps([{"question": "What is the colour of the sky?", "answer": "blue"}])

    with LoopbackLLM(generator) as gen, LoopbackLLM(lambda messages: "blue") as ver:
        for prefix, server in (("CHUNKQA_GENERATOR", gen), ("CHUNKQA_VERIFIER", ver)):
            monkeypatch.setenv(f"{prefix}_BASE_URL", server.base_url)
            monkeypatch.setenv(f"{prefix}_MODEL", "m")
        inst = Instance("s/0", "s", ("The sky is blue.",), (QA("q?", ("a",)),))
        (out,), status = add_chunk_qas([inst], {"k": 5, "timeout_s": 2}, tmp_path / "cache.jsonl")
    assert out.chunk_qas == ((QA("What is the colour of the sky?", ("blue",)),),)
    assert "1 built, 0 failed" in status
