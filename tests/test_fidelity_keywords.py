"""booksum / InfBench-Sum keywords and EventQA, hand-worked from the official code, through the loaders too.

Mem-alpha ``evaluate_agent_results.py``, ``AgentResultsEvaluator._compute_score``, booksum branch:
``if not isinstance(gold_answer, list): gold_answer = gold_answer.split(", ")``, then the fraction of
keywords with ``keyword.lower() in predicted_answer.lower()``. Its booksum answers are strings:
``data_preprocess/extract_booksum_keywords.py`` stores ``", ".join(keywords)`` as the summary's answer.

MemoryAgentBench ``utils/eval_other_utils.py``, ``_process_eventqa_dataset``: the README's EventQA
field ``substring_exact_match`` is ``calculate_metrics(parse_output(output), answer)``, i.e. on the
parsed output only; ``eventqa_recall`` (every gold in the raw output) is another field, the one Mem-alpha's
``evaluate_wrt_source`` returns.
"""

import json

import pytest

from finemem_lib.core.metrics import Scorer, keyword_list, score
from finemem_lib.data.memalpha import instance_from_row, read_memalpha_parquet
from finemem_lib.data.memoryagentbench import mab_instance, mab_row
from finemem_lib.data.schema_fixtures import memalpha_instances, write_memalpha


def _memalpha_golds(source: str, answer) -> tuple[str, ...]:
    row = {
        "instance_id": 3,
        "chunks": json.dumps(["A chunk."]),
        "questions_and_answers": json.dumps([{"question": "Summarize the book.", "answer": answer}]),
        "data_source": source,
    }
    return instance_from_row(row).questions[0].answers


def test_a_comma_joined_gold_in_a_one_element_tuple_is_split_as_memalpha_splits_the_string():
    # "Marie Curie, a dog".split(", ") == ["Marie Curie", "a dog"]: one hit of two
    assert score("booksum", "Marie Curie", ("Marie Curie, a dog",)) == 0.5
    assert score("booksum", "Marie Curie", "Marie Curie, a dog") == 0.5
    assert score("infbench_sum_eng_shots2", "marie curie", ["Marie Curie, a dog"]) == 0.5


def test_a_keyword_list_is_not_split():
    # a list of two or more is the keyword list itself: 1 hit of 3
    assert score("booksum", "Marie Curie", ("Marie Curie", "a dog", "Paris")) == pytest.approx(1 / 3)
    assert keyword_list(["Marie Curie", "a dog"]) == ["Marie Curie", "a dog"]
    assert keyword_list(("Pemberley",)) == ["Pemberley"]
    assert keyword_list("a,b, c") == ["a,b", "c"]  # the separator is ", " only


def test_the_loader_to_scorer_path_matches_memalpha_on_both_shapes():
    string_golds = _memalpha_golds("booksum", "Marie Curie, a dog")
    assert string_golds == ("Marie Curie, a dog",)
    assert Scorer().score("booksum", "Marie Curie", string_golds) == 0.5
    list_golds = _memalpha_golds("booksum", ["Marie Curie", "a dog", "Paris"])
    assert Scorer().score("booksum", "Marie Curie and PARIS", list_golds) == pytest.approx(2 / 3)


def test_the_paper_smoke_fixture_writes_booksum_in_the_real_shape(tmp_path):
    (booksum,) = [i for i in memalpha_instances("test") if i["data_source"] == "booksum"]
    answer = booksum["qas"][0]["answer"]
    assert isinstance(answer, str) and answer == "lighthouse, letter, brother, salt mines"
    folder = write_memalpha(tmp_path / "Memalpha")
    (inst,) = [i for i in read_memalpha_parquet(folder / "test.parquet") if i.source == "booksum"]
    prediction = "Mara finds a letter in the lighthouse."  # 2 of the 4 keywords
    assert Scorer().score("booksum", prediction, inst.questions[0].answers) == 0.5


def test_eventqa_under_memoryagentbench_reads_the_parsed_answer_only():
    mab = Scorer(protocol="memoryagentbench")
    # parse_output("Answer: Madrid\nAnn") == "Madrid"; normalize("Ann") = "ann" is not in "madrid"
    assert mab.score("eventqa_full", "Answer: Madrid\nAnn", ("Ann",)) == 0.0
    # no "Answer:": the first line is parsed; "ann leaves madrid" is in it
    assert mab.score("eventqa_full", "The event that happens next is: Ann leaves Madrid.", ["Ann leaves Madrid"]) == 1.0
    assert mab.score("eventqa_full", "\nAnn", ["Ann"]) == 0.0  # the first line is empty
    assert mab.score("eventqa_full", "Answer: the Ann", ["Bob", "Ann"]) == 1.0  # best of the acceptable answers
    assert mab.rule_name("eventqa_full") == "substring_exact_match_parsed"


def test_eventqa_under_memalpha_is_the_binary_recall_of_the_raw_output():
    # evaluate_wrt_source -> eventqa_recall: every gold lower-cased in the raw output lower-cased
    assert Scorer().score("eventqa_full", "Answer: Madrid\nAnn", ("Ann",)) == 1.0
    assert Scorer().score("eventqa_full", "Answer: Madrid", ("Ann", "Madrid")) == 0.0


def test_eventqa_through_the_memoryagentbench_loader():
    row = mab_row("Ann left. Then Bob came.", ["What happens next?"], [["Ann"]], source="eventqa_full")
    golds = mab_instance(row, "Accurate_Retrieval", 0, 64).questions[0].answers
    assert Scorer(protocol="memoryagentbench").score("eventqa_full", "Answer: Madrid\nAnn", golds) == 0.0
    assert Scorer(protocol="memoryagentbench").score("eventqa_full", "Answer: Ann", golds) == 1.0
