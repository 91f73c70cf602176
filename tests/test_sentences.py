"""The offline sentence splitter."""

from finemem_lib.core.sentences import split_sentences


def test_plain_sentences():
    assert split_sentences("One is here. Two is there! Is three? Yes.") == [
        "One is here.",
        "Two is there!",
        "Is three?",
        "Yes.",
    ]


def test_empty_and_blank_text():
    assert split_sentences("") == [] and split_sentences(" \n\t ") == []


def test_abbreviations_and_initials_do_not_end_a_sentence():
    text = "Dr. Smith met Mr. J. R. Tolkien at 5 p.m. on Main St. Nobody noticed. It was e.g. odd."
    assert split_sentences(text) == [
        "Dr. Smith met Mr. J. R. Tolkien at 5 p.m. on Main St. Nobody noticed.",
        "It was e.g. odd.",
    ]


def test_lower_case_after_a_stop_continues_the_sentence():
    assert split_sentences("Version 2.5 is out. see notes. Then go.") == ["Version 2.5 is out. see notes.", "Then go."]


def test_quotes_and_brackets_close_a_sentence():
    assert split_sentences('He said "stop." Then (quietly.) "Go!" she said.') == [
        'He said "stop."',
        "Then (quietly.)",
        '"Go!" she said.',
    ]


def test_blank_lines_and_list_items_are_boundaries():
    text = "Title without stop\n\nFirst paragraph here\n- item one\n- item two"
    assert split_sentences(text) == ["Title without stop", "First paragraph here", "- item one", "- item two"]


def test_whitespace_is_folded_and_numbers_start_sentences():
    assert split_sentences("It ends.   2024 was   busy.\nA line\nbreak   folds.") == [
        "It ends.",
        "2024 was busy.",
        "A line break folds.",
    ]


def test_labelled_samples_stay_one_sentence_each():
    text = "Sample: the coach talked about the league; Label: 3. Sample: my cousin read about the tax; Label: 12."
    assert split_sentences(text) == [
        "Sample: the coach talked about the league; Label: 3.",
        "Sample: my cousin read about the tax; Label: 12.",
    ]
