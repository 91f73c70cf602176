"""Scoring rules pinned to MemoryAgentBench and Mem-alpha."""

import pytest

from finemem_lib.core.metrics import (
    boxed_label_match,
    containment,
    exact_match,
    extract_boxed,
    keyword_hit_fraction,
    mab_metrics,
    normalize_answer,
    parse_answer,
    partial_containment,
    recall_at_k,
    rouge_l_f1,
    rule_for,
    score,
    substring_exact_match,
    token_f1,
)


def test_normalisation_drops_case_punctuation_articles_and_spaces():
    assert normalize_answer("  The  Eiffel-Tower, in PARIS!  ") == "eiffeltower in paris"
    assert normalize_answer("An apple a day") == "apple day"


def test_label_prefix_is_not_an_exact_match_but_is_a_substring_match():
    assert exact_match("label: 43", "43") == 0.0
    assert substring_exact_match("label: 43", "43") == 1.0
    assert boxed_label_match("label: 43", "43") == 0.0
    assert boxed_label_match("The answer is \\boxed{43}.", "43") == 1.0
    # Mem-alpha reads the FIRST box, digits only, compared as strings, against the first gold
    assert boxed_label_match("\\boxed{7} then \\boxed{43}", "43") == 0.0
    assert boxed_label_match("\\boxed{043}", "43") == 0.0
    assert boxed_label_match("43", ["12", "43"]) == 0.0


def test_articles_and_punctuation_are_ignored_in_em():
    assert exact_match("The Beatles.", "beatles") == 1.0
    assert exact_match("Beatles!", "the Rolling Stones") == 0.0


def test_token_f1_and_yes_no_rule():
    assert token_f1("the red car", "a red bus") == pytest.approx(0.5)
    assert token_f1("yes", "yes it is") == 0.0
    assert token_f1("no", "No.") == 1.0
    assert token_f1("noanswer", "the answer") == 0.0
    assert token_f1("", "x") == 0.0


def test_rouge_l():
    """MemoryAgentBench utils/eval_other_utils.py, calculate_metrics: rouge_score's RougeScorer(use_stemmer=True)."""
    assert rouge_l_f1("w x y z", "w y z") == pytest.approx(2 * (3 / 4) * 1 / (3 / 4 + 1))
    assert rouge_l_f1("The cat!", "the CAT") == 1.0
    assert rouge_l_f1("x y", "z") == 0.0
    # Porter stemming, as MemoryAgentBench's RougeScorer(use_stemmer=True): cats/cat, running/runs
    assert rouge_l_f1("cat runs", "the cats are running") == pytest.approx(2 / 3)


def test_answer_parsing_and_max_over_raw_and_parsed_and_golds():
    assert parse_answer("Reasoning...\nAnswer: Rome\nmore") == "Rome"
    assert parse_answer("first line\nsecond") == "first line"
    raw_only = mab_metrics("I believe it is Rome, not Paris.", ["Milan", "Rome"])
    assert raw_only["substring_exact_match"] == 1.0 and raw_only["exact_match"] == 0.0
    parsed = mab_metrics("Long story.\nAnswer: Rome", ["Milan", "Rome"])
    assert parsed["exact_match"] == 1.0 and parsed["f1"] == 1.0


def test_memalpha_rules():
    """Mem-alpha evaluate_agent_results.py, _compute_score (squad/hotpotqa: ``gold_answer[0]``; perltqa;
    booksum keywords) and memalpha/llm_agent/metrics.py helpers."""
    assert containment("It is TEAL today", "teal") == 1.0
    assert containment("It is blue", ["teal", "navy"]) == 0.0
    assert containment("It is navy", ["teal", "navy"]) == 0.0  # Mem-alpha reads the first gold only
    assert partial_containment("Alice likes tea and jazz", "tea; jazz; golf; chess") == pytest.approx(0.5)
    assert partial_containment("nothing", "a;b") == 0.0
    assert keyword_hit_fraction("The knight slays the Dragon", "dragon, knight, castle, queen") == 0.5
    assert keyword_hit_fraction("dragon", ["dragon", "queen"]) == 0.5
    assert extract_boxed("no box") is None
    assert recall_at_k("1. Heat\n2. Alien\n3. Up", ["alien", "jaws"], k=5) == 0.5


@pytest.mark.parametrize(
    ("source", "rule"),
    [
        ("squad", "containment"),
        ("hotpotqa", "containment"),
        ("perltqa", "partial_containment"),
        ("lme_train", "llm_judge_yes_no"),
        ("booksum", "keyword_hit_fraction"),
        ("pubmed-rct", "boxed_label_match"),
        ("ttl_train", "boxed_label_match"),
        ("icl_trec_coarse_6600shot_balance", "boxed_label_match"),
        ("icl_banking77_5900shot_balance", "boxed_label_match"),
        ("ruler_qa1_197K", "substring_exact_match"),
        ("ruler_qa2_421K", "substring_exact_match"),
        ("longmemeval_s_star", "llm_judge_yes_no"),
        ("eventqa_full", "eventqa_recall"),
        ("recsys_redial_full", "recsys_recall_at_5"),
        ("infbench_sum_eng_shots2", "keyword_hit_fraction"),
        ("detective_qa", "substring_exact_match"),
        ("factconsolidation_mh_262k", "substring_exact_match"),
        ("synth_factoid", "containment"),
        ("synth_update", "containment"),
        ("synth_icl", "boxed_label_match"),
    ],
)
def test_every_paper_source_routes_to_its_rule(source, rule):
    assert rule_for(source).name == rule


def test_unknown_source_lists_known_ones():
    with pytest.raises(ValueError, match="known sources: squad"):
        score("mystery_set", "x", "y")


def test_score_uses_judge_only_for_judged_sources():
    calls = []

    def judge(question, prediction, golds):
        calls.append(question)
        return 1.0

    assert score("longmemeval_s", "unrelated", ["gold"], judge=judge, question="q1") == 1.0
    assert score("longmemeval_s", "unrelated", ["gold"]) == 0.0
    assert score("squad", "unrelated", ["gold"], judge=judge, question="q2") == 0.0
    assert calls == ["q1"]


def test_score_rejects_non_string_prediction_and_empty_golds():
    with pytest.raises(ValueError):
        score("squad", None, ["x"])  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        score("squad", "x", [])


def test_a_profile_judge_is_built_by_its_registered_backend(monkeypatch):
    """The scorer is handed its judge: ``scoring.judge.backend`` names a backend registered from above."""
    from finemem_lib.core import metrics

    assert "openai" in metrics.JUDGE_BACKENDS  # registered when the package is imported
    built = []

    def backend(section):
        def factory():
            built.append(section["model"])
            return lambda question, prediction, golds: 1.0

        factory.is_factory = True
        return factory

    monkeypatch.setitem(metrics.JUDGE_BACKENDS, "fake", backend)
    scorer = metrics.build_scorer({"scoring": {"judge": {"backend": "FAKE", "model": "m"}}})
    assert scorer.score("longmemeval_s", "unrelated", ["gold"], question="q") == 1.0
    assert scorer.score("squad", "unrelated", ["gold"]) == 0.0 and built == ["m"]
    with pytest.raises(ValueError, match="unknown judge backend 'nope'; choose lexical or openai"):
        metrics.build_scorer({"scoring": {"judge": {"backend": "nope"}}})


def test_the_scoring_section_is_read_once_into_settings():
    from finemem_lib.core import metrics
    from finemem_lib.infra.config import load_profile

    cfg = load_profile("paper")
    settings = metrics.ScoringSettings.from_config(cfg)
    assert settings.protocol == cfg["scoring"]["protocol"] and settings.require_judge is True
    assert settings.judge["backend"] == "openai" and metrics.ScoringSettings.from_config(settings) is settings
    assert metrics.build_scorer(settings).rule_name("lme_train") == metrics.build_scorer(cfg).rule_name("lme_train")
    assert metrics.rule_for("icl_x", metrics.ScoringSettings("memoryagentbench")).name == "exact_match_parsed"
    assert metrics.ScoringSettings.from_config({}) == metrics.ScoringSettings()
    with pytest.raises(ValueError, match=r"scoring\.protocol must be one of"):
        metrics.ScoringSettings.from_config({"scoring": {"protocol": "mine"}})
    with pytest.raises(ValueError, match="must be mappings"):
        metrics.ScoringSettings.from_config({"scoring": {"judge": "openai"}})
