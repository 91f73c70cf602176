"""The chunk-QA builder against real OpenAI-compatible servers on loopback (generator and verifier)."""

import json
import re

import pytest

from finemem_lib.agents.llm_client import ChatClient
from finemem_lib.data.chunk_qa import (
    NOT_ANSWERABLE,
    ChunkQABuilder,
    ChunkQACache,
    ChunkQAError,
    ChunkQASettings,
    distinct_questions,
    parse_qa_pairs,
    usable_pairs,
    verifier_agrees,
)
from finemem_lib.data.instance import QA, Instance
from tests.loopback_llm import LoopbackLLM

NAMES = ["Ada Bell", "Bo Cray", "Cy Dunn", "Di Egan", "Ed Fox", "Flo Gale", "Gus Hale", "Hal Ives", "Ike Jones"]
FACT = re.compile(r"The code word of (\w+ \w+) is (\w+)\.")


def chunk(names, salt=""):
    return " ".join(f"The code word of {n} is {n.split()[0].lower()}{salt}x." for n in names)


INSTANCES = [
    Instance("t/0", "t", (chunk(NAMES[0:4]), chunk(NAMES[4:8]), "Filler only, nothing to ask."), (QA("q?", ("a",)),)),
    Instance("t/1", "t", (chunk(NAMES[1:5], "y"), chunk(NAMES[0:4])), (QA("q?", ("a",)),)),  # a repeated chunk
    Instance("t/2", "t", (chunk(NAMES[5:9], "z"),), (QA("q?", ("a",)),)),
]
DISTINCT_CHUNKS = len({c for inst in INSTANCES for c in inst.chunks})
FILLER = ("t/0", 2)  # a chunk without facts: no pair survives, so it is reported failed and never cached


def passage(messages):
    return messages[-1]["content"].split("<<<\n", 1)[1].split("\n>>>", 1)[0]


def generator(messages):
    """Writes one good pair per fact, after pairs the builder must drop."""
    facts = FACT.findall(passage(messages))
    junk = [
        {"question": "What is the code word of Nobody Here?", "answer": "zebra"},  # not in the passage
        {"question": "Which word is xx for the code?", "answer": "xx"},  # answer given away by the question
        {"question": "Say a lot?", "answer": "one two three four five six"},  # too long
    ]
    if facts:
        name = facts[0][0]
        junk.append({"question": f"What is the code word of {name}?", "answer": "wrong"})  # verifier disagrees
    good = [{"question": f"What is the code word of {n}?", "answer": w} for n, w in facts]
    duplicate = [dict(good[0], question=good[0]["question"].upper())] if good else []
    return "Here you go:\n```json\n" + json.dumps(junk + good[:1] + duplicate + good[1:]) + "\n```"


def verifier(messages):
    text = messages[-1]["content"]
    asked = re.search(r"Question: What is the code word of (\w+ \w+)\?", text, re.IGNORECASE)
    facts = dict(FACT.findall(passage(messages)))
    if asked:
        for name, word in facts.items():
            if name.lower() == asked.group(1).lower():
                return f"<think>look it up</think>The code word is {word}."
    return NOT_ANSWERABLE


def expected(instance, k):
    out = []
    for text in instance.chunks:
        facts = FACT.findall(text)
        out.append(tuple(QA(f"What is the code word of {n}?", (w,)) for n, w in facts[:k]))
    return tuple(out)


@pytest.fixture
def servers():
    with LoopbackLLM(generator) as gen, LoopbackLLM(verifier) as ver:
        yield gen, ver


def make_builder(servers, cache_path, k=3, concurrency=3, **settings):
    gen, ver = servers
    options = {"timeout_s": 0.4, "max_retries": 3, "backoff_s": 0.01}
    return ChunkQABuilder(
        ChatClient(gen.base_url, "gen-model", **options),
        ChatClient(ver.base_url, "ver-model", **options),
        cache_path,
        ChunkQASettings(k=k, candidates=8, concurrency=concurrency, **settings),
    )


def generator_calls(server):
    return [passage(body["messages"]) for body in server.requests]


def failed_chunks(report):
    return {(i, t) for i, t, _ in report.failed}


def test_builds_k_verified_deduplicated_pairs_per_chunk(servers, tmp_path):
    built, report = make_builder(servers, tmp_path / "cache.jsonl").build(INSTANCES)
    assert report.built == DISTINCT_CHUNKS - 1 and report.cached == 0  # a repeated chunk: built once
    assert failed_chunks(report) == {FILLER} and report.no_qa == 1 and not report.complete
    assert "verifier confirmed none" in report.failed[0][2]
    for inst, new in zip(INSTANCES, built, strict=True):
        assert new.chunk_qas == expected(inst, 3)
        assert (new.id, new.chunks, new.questions) == (inst.id, inst.chunks, inst.questions)
    assert built[0].chunk_qas[2] == ()  # a chunk without facts gets no pairs (and is not cached)
    assert sorted(generator_calls(servers[0])) == sorted({c for i in INSTANCES for c in i.chunks})


def test_a_second_build_is_answered_from_the_cache(servers, tmp_path):
    first, _ = make_builder(servers, tmp_path / "cache.jsonl").build(INSTANCES)
    servers[0].reset()
    servers[1].reset()
    again, report = make_builder(servers, tmp_path / "cache.jsonl").build(INSTANCES)
    assert again == first and report.built == 0 and report.cached == sum(i.num_chunks for i in INSTANCES) - 1
    assert generator_calls(servers[0]) == [INSTANCES[0].chunks[2]]  # only the chunk with no verified pair
    assert failed_chunks(report) == {FILLER}


def test_http_faults_timeouts_and_malformed_bodies_are_survived(servers, tmp_path):
    gen, ver = servers
    gen.fail_next(2, status=502)
    gen.malformed_next(1, "no_choices")
    gen.slow_next(1, seconds=2.0)
    ver.fail_next(1, status=500)
    ver.malformed_next(1, "not_json")
    ver.slow_next(1, seconds=2.0)
    built, report = make_builder(servers, tmp_path / "cache.jsonl").build(INSTANCES)
    assert failed_chunks(report) == {FILLER}
    assert [b.chunk_qas for b in built] == [expected(i, 3) for i in INSTANCES]


def test_an_unparseable_generator_reply_is_asked_again(servers, tmp_path):
    seen = set()

    def chatty_then_json(messages):
        key = passage(messages)
        if key not in seen:
            seen.add(key)
            return "Sure! Here are some great questions about the passage."
        return generator(messages)

    servers[0].responder = chatty_then_json
    built, report = make_builder(servers, tmp_path / "cache.jsonl").build(INSTANCES)
    assert failed_chunks(report) == {FILLER} and [b.chunk_qas for b in built] == [expected(i, 3) for i in INSTANCES]
    assert servers[0].request_count == 2 * DISTINCT_CHUNKS


def test_failed_chunks_are_reported_then_resumed_without_repeating_work(servers, tmp_path):
    gen, _ = servers

    def broken_for_bo(messages):
        if "Bo Cray" in passage(messages):
            raise RuntimeError("model crashed")
        return generator(messages)

    gen.responder = broken_for_bo
    cache_path = tmp_path / "cache.jsonl"
    built, report = make_builder(servers, cache_path).build(INSTANCES)
    failed = sorted(report.failed)
    assert failed_chunks(report) == {("t/0", 0), ("t/1", 0), FILLER} and "HTTP 500" in failed[0][2]
    assert built[0].chunk_qas[0] == () and built[0].chunk_qas[1] == expected(INSTANCES[0], 3)[1]

    gen.responder = generator
    gen.reset()
    resumed, report = make_builder(servers, cache_path).build(INSTANCES)
    assert failed_chunks(report) == {FILLER} and report.built == 2
    retried = {INSTANCES[0].chunks[0], INSTANCES[1].chunks[0], INSTANCES[0].chunks[2]}
    assert sorted(generator_calls(gen)) == sorted(retried)
    assert [b.chunk_qas for b in resumed] == [expected(i, 3) for i in INSTANCES]
    keys = [json.loads(line)["key"] for line in cache_path.read_text().splitlines()]
    assert len(keys) == len(set(keys)) == DISTINCT_CHUNKS - 1


def test_an_interrupted_build_resumes_with_nothing_lost_or_duplicated(servers, tmp_path):
    cache_path = tmp_path / "cache.jsonl"

    class Interrupted(Exception):
        pass

    def stop_after_first(done, total):
        raise Interrupted

    with pytest.raises(Interrupted):  # one worker: chunks not yet started when it stops are never asked
        make_builder(servers, cache_path, concurrency=1).build(INSTANCES, on_chunk_done=stop_after_first)
    stored = len(cache_path.read_text().splitlines())
    assert 1 <= stored < DISTINCT_CHUNKS - 1

    resumed, report = make_builder(servers, cache_path).build(INSTANCES)
    assert failed_chunks(report) == {FILLER} and report.built == DISTINCT_CHUNKS - 1 - stored
    assert [b.chunk_qas for b in resumed] == [expected(i, 3) for i in INSTANCES]
    assert sorted(generator_calls(servers[0])) == sorted({c for i in INSTANCES for c in i.chunks})  # each once
    keys = [json.loads(line)["key"] for line in cache_path.read_text().splitlines()]
    assert len(keys) == len(set(keys)) == DISTINCT_CHUNKS - 1


def test_a_torn_cache_line_is_ignored_and_writing_continues_cleanly(tmp_path, caplog):
    path = tmp_path / "cache.jsonl"
    cache = ChunkQACache(path)
    cache.put("k1", [("Q1?", "a1")])
    with path.open("a") as handle:
        handle.write('{"key": "k2", "qas": [["Q2')  # a write cut off by a crash
    reloaded = ChunkQACache(path)
    assert reloaded.entries == {"k1": [("Q1?", "a1")]} and "unreadable entry" in caplog.text
    reloaded.put("k3", [("Q3?", "a3")])
    reloaded.put("k1", [("other?", "x")])  # a key is stored once
    assert ChunkQACache(path).entries == {"k1": [("Q1?", "a1")], "k3": [("Q3?", "a3")]}


def test_the_cache_key_depends_on_models_and_settings(servers, tmp_path):
    a = make_builder(servers, tmp_path / "a.jsonl", k=3)
    b = make_builder(servers, tmp_path / "b.jsonl", k=4)
    assert a.chunk_key("text") != b.chunk_key("text") and a.chunk_key("text") != a.chunk_key("text2")


def test_parsing_and_filtering_rules():
    assert parse_qa_pairs('[{"question": "Q?", "answer": 1999}]') == [("Q?", "1999")]
    assert parse_qa_pairs('{"qas": [{"question": "Q?", "answer": "A"}]}') == [("Q?", "A")]
    assert parse_qa_pairs("<think>[hmm]</think>[]") == []
    for reply in ("no list here", "[{'question': 'Q?'}", '[{"q": 1}]'):
        with pytest.raises(ChunkQAError):
            parse_qa_pairs(reply)
    pairs = [("Who is Ada?", "Ada"), ("What colour?", "teal"), ("what colour", "Teal."), ("Long?", "a b c d e f")]
    assert usable_pairs(pairs, max_answer_words=5) == [("What colour?", "teal")]
    assert distinct_questions([("What colour?", "teal"), ("what colour", "red"), ("Who?", "Bo")]) == [
        ("What colour?", "teal"),
        ("Who?", "Bo"),
    ]
    assert verifier_agrees("It is Teal.", "teal") and not verifier_agrees(NOT_ANSWERABLE, "teal")
    assert not verifier_agrees("crimson", "teal") and not verifier_agrees("", "teal")


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="k <= candidates"):
        ChunkQASettings(k=6, candidates=5)
