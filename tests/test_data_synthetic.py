"""The synthetic benchmark: shape, metadata, determinism, held-out test people, parquet round trip."""

import re
from collections import Counter
from itertools import product

import numpy as np
import pytest

from finemem_lib.agents.reasoner_offline import STOPWORDS, OfflineReader
from finemem_lib.core.memory import MemoryItem
from finemem_lib.core.metrics import rule_for, score
from finemem_lib.core.retrieval import BM25Index, tokenize
from finemem_lib.core.sentences import split_sentences
from finemem_lib.data.memalpha import read_memalpha_parquet
from finemem_lib.data.synthetic import (
    FILLER_EVENTS,
    FILLER_OPENERS,
    FILLER_SUBJECTS,
    ICL_CLASSES,
    ICL_FRAME,
    ICL_QUESTION_SUFFIX,
    RELATIONS,
    SOURCES,
    UPDATE_QUESTION_PREFIX,
    SyntheticConfig,
    build_synthetic,
    write_synthetic,
)
from finemem_lib.episodes.baselines import store_everything
from finemem_lib.episodes.qa import answer_over_memory, mean_score
from finemem_lib.infra.config import load_profile

SMALL = {"train_instances": 3, "test_instances": 2, "chunks_per_instance": 4, "sentences_per_chunk": 6}


@pytest.fixture(scope="module")
def default_data():
    cfg = load_profile("default")
    return build_synthetic(cfg["data"], cfg["seed"])


def _all(data):
    return [inst for instances in data.values() for inst in instances]


def _people(instance):
    return {s["key"].split("|")[0] for chunk in instance.metadata["sentences"] for s in chunk if s["key"] is not None}


def test_sizes_follow_the_knobs():
    data = build_synthetic(SMALL, seed=1)
    assert len(data["train"]) == 3 * len(SOURCES) and len(data["test"]) == 2 * len(SOURCES)
    for inst in _all(data):
        assert inst.num_chunks == 4
        for chunk in inst.metadata["sentences"]:
            assert 5 <= len(chunk) <= 7  # 6 +- jitter 1
    only_icl = build_synthetic({**SMALL, "sources": ["synth_icl"], "sentence_jitter": 0}, seed=1)
    assert {i.source for i in _all(only_icl)} == {"synth_icl"}
    assert all(len(c) == 6 for i in _all(only_icl) for c in i.metadata["sentences"])


def test_every_chunk_splits_into_exactly_its_sentences(default_data):
    for inst in _all(default_data):
        for chunk, records in zip(inst.chunks, inst.metadata["sentences"], strict=True):
            sentences = split_sentences(chunk)
            assert len(sentences) == len(records), chunk
            assert " ".join(sentences) == chunk


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_sentences_split_for_several_seeds(seed):
    for inst in _all(build_synthetic({**SMALL, "sentences_per_chunk": 10}, seed=seed)):
        for chunk, records in zip(inst.chunks, inst.metadata["sentences"], strict=True):
            assert len(split_sentences(chunk)) == len(records)


def test_questions_name_subject_and_relation_but_not_the_answer(default_data):
    for inst in _all(default_data):
        if inst.source == "synth_icl":
            continue
        sentences = [split_sentences(c) for c in inst.chunks]
        for qa, meta in zip(inst.questions, inst.metadata["questions"], strict=True):
            person, _ = meta["key"].split("|")
            evidence = sentences[meta["chunk"]][meta["sentence"]]
            record = inst.metadata["sentences"][meta["chunk"]][meta["sentence"]]
            assert record["key"] == meta["key"] and record["value"] == qa.answers[0] and record["asked"]
            assert person in qa.question and person in evidence
            assert qa.answers[0] in evidence
            q_words = set(tokenize(qa.question))
            assert not set(tokenize(qa.answers[0])) & q_words, qa
            # the evidence sentence shares the subject words with the question, and adds the value
            assert set(tokenize(person)) <= q_words
            assert set(tokenize(qa.answers[0])) <= set(tokenize(evidence)) - q_words


def test_relation_values_never_collide_with_question_words():
    question_words = {w for r in RELATIONS for w in tokenize(r.question.format(s=""))}
    for relation in RELATIONS:
        assert len(set(relation.values)) == len(relation.values)
        for value in relation.values:
            assert not set(tokenize(value)) & question_words, (relation.name, value)
            assert len(value) > 2


def test_update_questions_ask_the_latest_value(default_data):
    updates = [i for i in default_data["train"] if i.source == "synth_update"]
    n_updated = 0
    for inst in updates:
        for qa, meta in zip(inst.questions, inst.metadata["questions"], strict=True):
            assert qa.question.startswith(UPDATE_QUESTION_PREFIX)
            history = meta["history"]
            values = [inst.metadata["sentences"][c][s]["value"] for c, s in history]
            roles = [inst.metadata["sentences"][c][s]["role"] for c, s in history]
            assert roles[0] == "fact" and all(r == "update" for r in roles[1:])
            assert [c for c, _ in history] == sorted({c for c, _ in history})  # one statement per chunk, in order
            assert len(set(values)) == len(values)  # every update changes the value
            assert qa.answers == (values[-1],) and [meta["chunk"], meta["sentence"]] == history[-1]
            n_updated += len(history) > 1
    assert n_updated > len(updates)  # UPDATE matters for many questions


def test_icl_answers_are_label_digits_scored_as_boxed_labels(default_data):
    asked = "\n" + load_profile("default")["data"]["synthetic"]["icl_question"]
    for inst in (i for i in _all(default_data) if i.source == "synth_icl"):
        labels = inst.metadata["labels"]
        assert len(labels) == 4 and all(label.isdigit() for label in labels)
        for qa, meta in zip(inst.questions, inst.metadata["questions"], strict=True):
            assert qa.question.endswith(asked) and labels[qa.answers[0]] == meta["class"]
        examples = [s for chunk in inst.metadata["sentences"] for s in chunk if s["role"] == "example"]
        assert {labels[s["value"]] for s in examples} <= set(labels.values())
        question_samples = {qa.question.removesuffix(ICL_QUESTION_SUFFIX) for qa in inst.questions}
        assert not question_samples & {f"Sample: {s['sample']}" for s in examples}  # questions are new samples
    assert rule_for("synth_icl").name == "boxed_label_match"
    assert score("synth_icl", "\\boxed{7}", ["7"]) == 1.0 and score("synth_icl", "\\boxed{3}", ["7"]) == 0.0


def test_chunk_qas_ask_about_facts_of_their_own_chunk(default_data):
    for inst in _all(default_data):
        assert len(inst.chunk_qas) == inst.num_chunks
        for t, (qas, picked) in enumerate(zip(inst.chunk_qas, inst.metadata["chunk_qa_sentences"], strict=True)):
            records = inst.metadata["sentences"][t]
            facts = [r for r in records if r["role"] in ("fact", "update", "example")]
            assert len(qas) == min(5, len(facts)) == len(picked)
            for qa, index in zip(qas, picked, strict=True):
                assert records[index]["role"] != "distractor" and qa.answers == (records[index]["value"],)
                assert qa.answers[0] in split_sentences(inst.chunks[t])[index]


def test_distractors_are_never_asked(default_data):
    for inst in _all(default_data):
        asked_keys = {m["key"] for m in inst.metadata["questions"]} - {None}
        records = [r for chunk in inst.metadata["sentences"] for r in chunk]
        fact_people = {r["key"].split("|")[0] for r in records if r["role"] in ("fact", "update")}
        for record in records:
            if record["role"] == "distractor":
                assert not record["asked"] and record["key"] not in asked_keys
                if record["key"] is not None:  # a fact about somebody nobody asks about
                    assert record["key"].split("|")[0] not in fact_people


def test_test_people_never_appear_in_train(default_data):
    train_people = set().union(*(_people(i) for i in default_data["train"]))
    test_people = set().union(*(_people(i) for i in default_data["test"]))
    assert test_people and train_people
    train_surnames = {p.split()[1] for p in train_people}
    assert not {p.split()[1] for p in test_people} & train_surnames
    train_text = " ".join(c for i in default_data["train"] for c in i.chunks)
    assert not any(p in train_text for p in test_people)


def test_ids_are_unique_across_splits(default_data):
    ids = [i.id for i in _all(default_data)]
    assert len(ids) == len(set(ids)) and all(re.fullmatch(r"synth_\w+/\d+", i) for i in ids)


def test_same_seed_gives_identical_parquet_and_another_seed_differs(tmp_path):
    first = write_synthetic(SMALL, 5, tmp_path / "a")
    second = write_synthetic(SMALL, 5, tmp_path / "b")
    other = write_synthetic(SMALL, 6, tmp_path / "c")
    for split in ("train", "test"):
        assert first[split].read_bytes() == second[split].read_bytes()
        assert first[split].read_bytes() != other[split].read_bytes()


def test_parquet_round_trip_gives_equal_instances(tmp_path):
    data = build_synthetic(SMALL, seed=3)
    files = write_synthetic(SMALL, 3, tmp_path)
    for split, instances in data.items():
        assert read_memalpha_parquet(files[split]) == instances


def test_profile_data_section_is_accepted_and_chunk_qa_k_comes_from_it():
    cfg = load_profile("smoke")
    knobs = SyntheticConfig.from_mapping({**cfg["data"], "chunk_qa": {"k": 2}})
    assert knobs.chunk_qa_k == 2 and knobs.chunks_per_instance == 3
    data = build_synthetic(knobs, seed=0)
    assert max(len(q) for i in _all(data) for q in i.chunk_qas) == 2


@pytest.mark.parametrize(
    "knobs",
    [
        {"sources": ["squad"]},
        {"distractor_ratio": 1.0},
        {"chunks_per_instance": 0},
        {"sentences_per_chunk": 1, "sentence_jitter": 1},
        {"icl_labels": 1},
        {"no_such_knob": 3},
    ],
)
def test_bad_knobs_raise_clear_errors(knobs):
    with pytest.raises(ValueError, match="synthetic"):
        SyntheticConfig.from_mapping(knobs)


# ---------------------------------------------------------------------------- readability by word matching
NAME = "Zorvan Kell"


def _questions_of(relation):
    plain = relation.question.format(s=NAME)
    return plain, UPDATE_QUESTION_PREFIX + plain[0].lower() + plain[1:]


def _statement(template, value):
    article = "an" if value[0].lower() in "aeiou" else "a"
    text = template.format(s=NAME, v=value, a=article)
    return text[0].upper() + text[1:]


@pytest.mark.parametrize("relation", RELATIONS, ids=lambda r: r.name)
def test_every_statement_holds_its_question_words_in_the_same_counts(relation):
    value = relation.values[0]
    for question in _questions_of(relation):
        q_tokens = Counter(tokenize(question))
        shared = []
        for template in relation.facts + relation.updates:
            tokens = Counter(tokenize(_statement(template, value)))
            missing = [w for w in q_tokens if w not in STOPWORDS and not tokens[w]]
            assert not missing, (template, question, missing)
            shared.append({w: tokens[w] for w in q_tokens})
        assert all(counts == shared[0] for counts in shared), (relation.name, question)


@pytest.mark.parametrize("relation", [r for r in RELATIONS if r.updates], ids=lambda r: r.name)
def test_bm25_ranks_an_update_above_its_stale_fact_as_often_as_below(relation):
    """Same question words in both versions: only length orders them, and the template lengths balance out."""
    fillers = [f"{o}, {s} {e}." for o, s, e in zip(FILLER_OPENERS, FILLER_SUBJECTS, FILLER_EVENTS, strict=True)]
    old, new = relation.values[:2]
    update_first = stale_first = 0
    for fact, update in product(relation.facts, relation.updates):
        docs = [_statement(fact, old), _statement(update, new), *fillers]
        for question in _questions_of(relation):
            top = BM25Index([(str(i), d) for i, d in enumerate(docs)]).search(question, 2)
            assert {hit.position for hit in top} == {0, 1}
            update_first += top[0].position == 1
            stale_first += top[0].position == 0
    assert update_first == stale_first


def test_icl_keywords_are_disjoint_and_never_filler_or_question_words():
    seen: set[str] = set()
    other_words = {
        w
        for text in (*FILLER_OPENERS, *FILLER_SUBJECTS, *FILLER_EVENTS, ICL_FRAME, ICL_QUESTION_SUFFIX, "Sample Label")
        for w in tokenize(text)
    }
    for keywords in ICL_CLASSES.values():
        tokens = [t for k in keywords for t in tokenize(k)]
        assert len(tokens) == len(keywords) == len(set(tokens))
        assert not set(tokens) & seen and not set(tokens) & other_words and not set(tokens) & STOPWORDS
        seen |= set(tokens)


def test_icl_samples_of_different_classes_share_no_keyword(default_data):
    keywords = {k for words in ICL_CLASSES.values() for k in words}
    for inst in (i for i in default_data["test"] if i.source == "synth_icl"):
        examples = [r for chunk in inst.metadata["sentences"] for r in chunk if r["role"] == "example"]
        for a, b in product(examples, repeat=2):
            shared = set(tokenize(a["sample"])) & set(tokenize(b["sample"])) & keywords
            assert (a["class"] == b["class"]) or not shared, (a, b)
        assert all(len(set(tokenize(r["sample"])) & keywords) >= 3 for r in examples)


def _oracle_items(instance):
    """Every fact at its latest value (updates replace their key's item) and every labelled example."""
    items: list[MemoryItem] = []
    position: dict[str, int] = {}
    for t, (chunk, records) in enumerate(zip(instance.chunks, instance.metadata["sentences"], strict=True)):
        for i, (sentence, record) in enumerate(zip(split_sentences(chunk), records, strict=True)):
            item = MemoryItem(f"c{t}.s{i}", sentence, t)
            if record["role"] == "update":
                items[position[record["key"]]] = item
            elif record["role"] in ("fact", "example"):
                position[record["key"] or item.id] = len(items)
                items.append(item)
    return items


@pytest.fixture(scope="module")
def reader_scores():
    """Per source: mean scores of the offline reader over an oracle memory, an empty one and store-everything."""
    test = build_synthetic({"train_instances": 0, "test_instances": 8}, seed=4)["test"]
    reader = OfflineReader()
    out = {}
    for source in SOURCES:
        instances = [i for i in test if i.source == source]
        out[source] = {
            "oracle": np.mean(
                [mean_score(answer_over_memory(_oracle_items(i), i.questions, source, reader)) for i in instances]
            ),
            "empty": np.mean([mean_score(answer_over_memory([], i.questions, source, reader)) for i in instances]),
            "everything": np.mean([mean_score(store_everything(i, reader)) for i in instances]),
        }
    return out


@pytest.mark.parametrize("source", SOURCES)
def test_a_word_matching_reader_answers_from_a_memory_with_the_facts(reader_scores, source):
    scores = reader_scores[source]
    assert scores["oracle"] >= (0.8 if source == "synth_icl" else 0.95), scores
    assert scores["empty"] == 0.0


def test_stale_facts_hurt_only_on_updates(reader_scores):
    assert reader_scores["synth_factoid"]["everything"] >= 0.95
    assert reader_scores["synth_update"]["everything"] < reader_scores["synth_update"]["oracle"] - 0.2
