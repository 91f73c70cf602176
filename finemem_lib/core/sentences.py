"""Offline sentence splitting (no NLTK data needed).

A regex splitter: a sentence ends at ``.``, ``!`` or ``?`` (optionally followed by closing quotes
or brackets) when whitespace and an upper-case letter, digit or opening quote follow, except
after common abbreviations and single initials. Newlines that separate blocks also end a sentence.
"""

from __future__ import annotations

import re

_ABBREVIATIONS = {
    "mr",
    "mrs",
    "ms",
    "dr",
    "prof",
    "sr",
    "jr",
    "st",
    "vs",
    "etc",
    "e.g",
    "i.e",
    "inc",
    "ltd",
    "co",
    "corp",
    "fig",
    "no",
    "vol",
    "jan",
    "feb",
    "mar",
    "apr",
    "jun",
    "jul",
    "aug",
    "sep",
    "sept",
    "oct",
    "nov",
    "dec",
    "mt",
    "gen",
    "col",
    "lt",
    "sgt",
    "u.s",
    "u.k",
}
_BOUNDARY = re.compile(r"([.!?][\"')\]]*)\s+(?=[\"'(\[]?[A-Z0-9])")
_BLOCK = re.compile(r"\n\s*\n|\n(?=\s*(?:[-*•]|\d+[.)])\s)")


def split_sentences(text: str) -> list[str]:
    """Split text into sentences; empty or blank text gives an empty list."""
    sentences: list[str] = []
    for block in _BLOCK.split(text):
        start = 0
        for match in _BOUNDARY.finditer(block):
            head = block[start : match.start() + 1]
            last_word = head.rsplit(None, 1)[-1].rstrip(".!?").lower() if head.strip() else ""
            if last_word in _ABBREVIATIONS or (len(last_word) == 1 and last_word.isalpha()):
                continue
            sentences.append(block[start : match.end(1)].strip())
            start = match.end()
        sentences.append(block[start:].strip())
    return [" ".join(s.split()) for s in sentences if s.strip()]
