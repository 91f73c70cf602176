"""Scoring rules pinned to the official code of Mem-alpha and MemoryAgentBench.

Expected values are what the official functions return on the same inputs (worked by hand from
their code, cited per test).
"""

import json

import pytest

from finemem_lib.core import metrics
from finemem_lib.core.metrics import (
    Scorer,
    UnsupportedScoring,
    boxed_label_match,
    clean_prediction,
    eventqa_recall,
    keyword_hit_fraction,
    parse_answer,
    partial_containment,
    rule_for,
)


def test_perltqa_parts_are_tested_against_the_prediction_as_written():
    """Mem-alpha evaluate_agent_results.py, AgentResultsEvaluator._compute_score (perltqa branch):
    ``answer.lower().strip() in predicted_answer`` (prediction not lower-cased), ``/ len(split(";"))``."""
    assert partial_containment("Alice likes Tea and jazz", "Tea; jazz") == 0.5  # "tea" not in "Tea"
    assert partial_containment("tea and jazz", "tea; jazz;") == 1.0  # the empty part after ";" is a hit
    assert partial_containment("tea", "tea; golf;") == pytest.approx(2 / 3)
    assert partial_containment("It was in ROME", "rome") == 1.0  # no ";": case-insensitive containment


def test_classification_reads_the_first_box_digits_only_as_strings():
    """Mem-alpha evaluate_agent_results.py, _compute_score (pubmed-rct / icl branch) with
    memalpha/llm_agent/metrics.py, _extract_answer_from_response: first ``\\boxed{([^}]*)}``, quotes
    stripped, ``^\\d+$`` required, string equality with the first gold."""
    assert boxed_label_match("\\boxed{7} then \\boxed{43}", "7") == 1.0
    assert boxed_label_match("\\boxed{7} then \\boxed{43}", "43") == 0.0
    assert boxed_label_match("\\boxed{043}", "43") == 0.0
    assert boxed_label_match("\\boxed{ '3' }", "3") == 1.0
    assert boxed_label_match(" 43\n", "43") == 1.0  # no box: the whole stripped answer
    assert boxed_label_match("label: 43", "43") == 0.0
    assert boxed_label_match("\\boxed{-3}", "-3") == 0.0  # not digits only
    assert boxed_label_match("\\boxed{4}", ['"4"']) == 1.0


def test_infbench_sum_is_the_keyword_hit_fraction_not_a_judge():
    """Mem-alpha evaluate_agent_results.py, _compute_score: ``infbench_sum_eng_shots2`` shares booksum's
    branch: ``gold.split(", ")``, hits of ``keyword.lower() in prediction.lower()``."""
    rule = rule_for("infbench_sum_eng_shots2")
    assert rule.name == "keyword_hit_fraction" and not rule.judged
    assert keyword_hit_fraction("The knight slays the Dragon", "dragon, knight, castle, queen") == 0.5
    assert keyword_hit_fraction("a,b", "a,b, c") == 0.5  # split on ", " only: "a,b" is one keyword


def test_mab_answer_parsing_matches_parse_output():
    """MemoryAgentBench utils/eval_other_utils.py, parse_output: ``(?:Answer:)(.*)(?:\\n|$)`` else
    ``(?:^)(.*)(?:\\n|$)``, stripped, then one leading ``Answer:`` removed."""
    assert parse_answer("Answer: Answer: Rome") == "Rome"
    assert parse_answer("Answer : Rome") == "Answer : Rome"  # space before ':' is not the prefix
    assert parse_answer("\nRome") == ""  # first line is empty
    assert parse_answer("Reasoning\nanswer:  Rome \nmore") == "Rome"


def test_mab_metrics_take_the_max_over_raw_and_parsed_output():
    """MemoryAgentBench utils/eval_other_utils.py, default_post_process + calculate_metrics."""
    assert metrics.mab_best(metrics.exact_match, "Long story.\nAnswer: Rome", ["Milan", "Rome"]) == 1.0
    assert metrics.mab_best(metrics.exact_match, "\nRome", "Rome") == 1.0  # the raw output normalises to it


def test_detective_qa_and_icl_under_memoryagentbench_protocol():
    """MemoryAgentBench README metric table (detectiveQA: exact_match; ICL: exact_match) and
    utils/eval_other_utils.py, _process_icl_dataset (parsed output only, no ``\\boxed`` parsing)."""
    mab = Scorer(protocol="memoryagentbench")
    assert mab.score("detective_qa", "It was the butler, clearly", ["the butler"]) == 0.0
    assert mab.score("detective_qa", "The Butler.", ["butler"]) == 1.0
    assert mab.score("icl_banking77_5900shot_balance", "\\boxed{3}", ["3"]) == 0.0
    assert mab.score("icl_banking77_5900shot_balance", "Answer: 3", ["3"]) == 1.0
    assert mab.score("icl_banking77_5900shot_balance", "label: 3", ["3"]) == 0.0
    # Mem-alpha routes "detective_qa" to evaluate_wrt_source's default (its branch tests "detectiveqa")
    assert Scorer().score("detective_qa", "It was the butler, clearly", ["the butler"]) == 1.0
    with pytest.raises(UnsupportedScoring, match="HELMET"):
        mab.check("infbench_sum_eng_shots2")


def test_eventqa_recall_needs_every_gold_element():
    """memalpha/llm_agent/metrics.py, evaluate_wrt_source -> _process_eventqa_dataset: eventqa_recall."""
    assert eventqa_recall("They met in Paris in 1999", ["paris", "1999"]) == 1.0
    assert eventqa_recall("They met in Paris", ["paris", "1999"]) == 0.0
    assert rule_for("eventqa_full").name == "eventqa_recall"


def test_recsys_is_unsupported_without_the_entity_map_and_recall_at_5_with_it(tmp_path):
    """MemoryAgentBench utils/eval_other_utils.py, _process_recsys_dataset: list after the first ``1.``,
    items cleaned and mapped to the nearest movie by edit distance, recall@5 of the gold entity ids."""
    with pytest.raises(UnsupportedScoring, match="entity"):
        Scorer().check("recsys_redial_full")
    path = tmp_path / "entity2id.json"
    entities = {"<http://x/Heat_(1995)>": 1, "<http://x/Alien_(1979)>": 2, "<http://x/Jaws_(1975)>": 3}
    path.write_text(json.dumps(entities))
    scorer = Scorer(entities=metrics.EntityMap.load(path))
    assert scorer.score("recsys_redial_full", "You may like: 1. Heat (1995)\n2. Alen\n3. Up", ["2", "3"]) == 0.5


def test_reasoner_output_is_cut_at_the_first_think_close():
    """Mem-alpha evaluate_agent_results.py, _compute_score: ``split("</think>")[1]``, then "Empty" if
    a ``<think>`` is left."""
    assert clean_prediction("<think>a</think> x </think> y") == "x"
    assert clean_prediction("<think>a</think><think>b") == "Empty"
    assert clean_prediction("<think>never closed") == "Empty"
    assert clean_prediction("plain") == "plain"


def test_judged_source_without_judge_is_an_error_when_required_and_named_fallback_otherwise():
    """Mem-alpha scores lme_train / longmemeval_s* only with its LLM judge (evaluate_agent_results.py)."""
    with pytest.raises(ValueError, match="requires one"):
        Scorer(require_judge=True).check(["squad", "lme_train"])
    Scorer(require_judge=True).check(["squad", "booksum"])  # nothing judged: fine
    assert Scorer().rule_name("lme_train") == metrics.LEXICAL_FALLBACK
    assert metrics.scorer_name("squad", {"scoring": {"protocol": "memalpha"}}) == "containment"
    assert rule_for("detective_qa", "memoryagentbench").name == "exact_match"
    with pytest.raises(ValueError, match="protocol"):
        rule_for("squad", "helmet")
