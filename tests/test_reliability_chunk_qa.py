"""The chunk-QA builder under bad replies: empty results are failures (retried next build, counted),
a pathological reply fails its chunk only, a cache torn inside a UTF-8 character is resumed."""

from __future__ import annotations

import json

import pytest

from finemem_lib.agents.llm_client import ChatClient
from finemem_lib.data.chunk_qa import NOT_ANSWERABLE, ChunkQABuilder, ChunkQACache, ChunkQASettings, parse_qa_pairs
from finemem_lib.data.instance import QA, Instance
from tests.loopback_llm import LoopbackLLM

CHUNKS = (
    "The code word of Ada Bell is ruby.",
    "The code word of Bo Cray is jade.",
    "The code word of Cy Dunn is opal.",
)
INSTANCE = Instance("t/0", "t", CHUNKS, (QA("q?", ("a",)),))


def passage(messages):
    return messages[-1]["content"].split("<<<\n", 1)[1].split("\n>>>", 1)[0]


def good_pairs(text):
    name, word = text.removeprefix("The code word of ").removesuffix(".").split(" is ")
    return json.dumps([{"question": f"What is the code word of {name}?", "answer": word}])


def verifier(messages):
    text = messages[-1]["content"]
    for chunk in CHUNKS:
        if chunk in text and chunk.split(" is ")[0].removeprefix("The code word of ") in text.split("Question:")[1]:
            return chunk.split(" is ")[1].rstrip(".")
    return NOT_ANSWERABLE


@pytest.fixture
def servers():
    with LoopbackLLM(lambda m: good_pairs(passage(m))) as gen, LoopbackLLM(verifier) as ver:
        yield gen, ver


def builder(servers, cache_path, **settings):
    gen, ver = servers
    options = {"timeout_s": 2.0, "max_retries": 1, "backoff_s": 0.01}
    return ChunkQABuilder(
        ChatClient(gen.base_url, "gen", **options),
        ChatClient(ver.base_url, "ver", **options),
        cache_path,
        ChunkQASettings(k=1, candidates=1, concurrency=2, parse_retries=0, **settings),
    )


def failed(report):
    return {t: reason for _, t, reason in report.failed}


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("[]", "no QA pairs"),  # a valid, empty list: was cached as the chunk's final answer
        ("", "empty reply"),  # an empty completion: was parsed as "no JSON list" at best
        ("<think>I should write questions", "unclosed <think>"),
    ],
)
def test_an_empty_generator_result_is_failed_not_cached_and_retried(servers, tmp_path, reply, reason):
    gen, _ = servers
    gen.responder = lambda m: reply if "Bo Cray" in passage(m) else good_pairs(passage(m))
    cache_path = tmp_path / "cache.jsonl"
    built, report = builder(servers, cache_path).build([INSTANCE])
    assert set(failed(report)) == {1} and reason in failed(report)[1] and report.built == 2
    assert report.no_qa == (1 if reply == "[]" else 0) and built[0].chunk_qas[1] == ()
    assert len(cache_path.read_text().splitlines()) == 2  # the failed chunk is not in the cache

    gen.responder = lambda m: good_pairs(passage(m))
    gen.reset()
    rebuilt, report = builder(servers, cache_path).build([INSTANCE])
    assert report.complete and report.built == 1 and report.cached == 2
    assert [passage(b["messages"]) for b in gen.requests] == [CHUNKS[1]]  # asked again, only that chunk
    assert rebuilt[0].chunk_qas[1] == (QA("What is the code word of Bo Cray?", ("jade",)),)


def test_a_verifier_that_confirms_nothing_fails_the_chunk(servers, tmp_path):
    _, ver = servers
    ver.responder = lambda m: NOT_ANSWERABLE
    _, report = builder(servers, tmp_path / "c.jsonl").build([INSTANCE])
    assert report.no_qa == 3 and all("verifier confirmed none" in r for r in failed(report).values())
    assert not (tmp_path / "c.jsonl").exists() or (tmp_path / "c.jsonl").read_text() == ""


def test_an_empty_verifier_reply_fails_the_chunk(servers, tmp_path):
    _, ver = servers
    ver.responder = lambda m: ""
    _, report = builder(servers, tmp_path / "c.jsonl").build([INSTANCE])
    assert set(failed(report)) == {0, 1, 2} and all("empty reply" in r for r in failed(report).values())


@pytest.mark.parametrize(
    "reply",
    [
        '[{"question": "What is the code word of Bo Cray?", "answer": ' + "9" * 5000 + "}]",  # was ValueError
        "[" * 5000 + "]" * 5000,  # was RecursionError
        '[{"question": "What is the code word of Bo Cray?", "answer": "j\\ud800"}]',  # a lone surrogate
    ],
)
def test_a_pathological_reply_fails_one_chunk_not_the_build(servers, tmp_path, reply):
    gen, _ = servers
    gen.responder = lambda m: reply if "Bo Cray" in passage(m) else good_pairs(passage(m))
    built, report = builder(servers, tmp_path / "c.jsonl").build([INSTANCE])  # was: the exception ended the build
    assert set(failed(report)) == {1} and report.built == 2
    assert built[0].chunk_qas[0] and built[0].chunk_qas[2] and built[0].chunk_qas[1] == ()
    for line in (tmp_path / "c.jsonl").read_bytes().splitlines():
        line.decode("utf-8")  # nothing undecodable was written


def test_a_cache_torn_inside_a_multibyte_character_is_resumed(tmp_path, caplog):
    path = tmp_path / "cache.jsonl"
    ChunkQACache(path).put("k1", [("Où est Zoë?", "à Oslo")])
    torn = json.dumps({"key": "k2", "qas": [["Qui est Zoë?", "élève"]]}, ensure_ascii=False).encode()
    cut = torn.index("é".encode()) + 1  # inside the two bytes of "é"
    with path.open("ab") as handle:
        handle.write(torn[:cut])
    cache = ChunkQACache(path)  # was: UnicodeDecodeError
    assert cache.entries == {"k1": [("Où est Zoë?", "à Oslo")]} and "unreadable entry" in caplog.text
    cache.put("k3", [("Q3?", "ä")])
    assert ChunkQACache(path).entries == {"k1": [("Où est Zoë?", "à Oslo")], "k3": [("Q3?", "ä")]}


def test_parse_qa_pairs_on_pathological_text_raises_only_its_own_error():
    from finemem_lib.data.chunk_qa import ChunkQAError

    for reply in ("[" * 100_000, '[{"question": "Q?", "answer": ' + "1" * 5000 + "}]", "```" + " " * 50_000):
        with pytest.raises(ChunkQAError):
            parse_qa_pairs(reply)
    assert parse_qa_pairs('[{"question": "Q?", "answer": NaN}, {"question": "R?", "answer": 2}]') == [("R?", "2")]
