"""How often each changed scoring rule gives a different score than the previous rule, on generated cases.

The previous rules are read from a copy of the previous ``finemem_lib/core/metrics.py`` (``--before``);
the cases are generated (seeded) in the shapes the real sources have: perltqa's ``;``-joined name
golds answered in sentences, classification answers from an instruction-following LLM, MemoryAgentBench
outputs with and without an ``Answer:`` line, summaries with inflected words, LLM reasoning traces.
The mixture of shapes is this script's assumption, printed with the figures.

Usage: python benchmarks/measure_rule_changes.py --before PATH/metrics.py [--n 2000] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import sys
from pathlib import Path

from finemem_lib.core import metrics as after

NAMES = ["Alice", "Bob", "Carol", "David", "Emma", "Frank", "Grace", "Henry", "Beijing", "Shanghai", "Tom Lee"]


def load_before(path: Path):
    spec = importlib.util.spec_from_file_location("metrics_before", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["metrics_before"] = module
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def perltqa_cases(rng: random.Random, n: int):
    for _ in range(n):
        parts = rng.sample(NAMES, rng.randint(1, 3))
        gold = "; ".join(parts) + (";" if rng.random() < 0.2 else "")
        said = [p for p in parts if rng.random() < 0.8]
        style = rng.random()
        text = ", ".join(said) if said else "I don't know"
        if style < 0.6:
            pred = f"Her friends are {text}."  # names capitalised as written
        elif style < 0.8:
            pred = text.lower()
        else:
            pred = f"Based on memory, {text} were mentioned."
        yield pred, gold


def label_cases(rng: random.Random, n: int):
    for _ in range(n):
        gold = str(rng.randint(0, 76))
        other = str(rng.randint(0, 76))
        label = gold if rng.random() < 0.6 else other
        shape = rng.random()
        if shape < 0.45:
            pred = f"\\boxed{{{label}}}"
        elif shape < 0.6:
            pred = f"The article is classified as \\boxed{{{label}}}."
        elif shape < 0.7:
            pred = f"Class {other} is close, but it fits \\boxed{{{other}}}... final answer \\boxed{{{label}}}"
        elif shape < 0.78:
            pred = f"\\boxed{{0{label}}}"
        elif shape < 0.86:
            pred = label
        elif shape < 0.93:
            pred = f"label: {label}"
        else:
            pred = f"\\boxed{{{label}: {rng.choice(['sports', 'billing', 'location'])}}}"
        yield pred, gold


def mab_answer_cases(rng: random.Random, n: int):
    for _ in range(n):
        gold = rng.choice(NAMES)
        answer = gold if rng.random() < 0.6 else rng.choice(NAMES)
        shape = rng.random()
        if shape < 0.3:
            pred = f"Answer: {answer}"
        elif shape < 0.45:
            pred = f"Answer : {answer}"
        elif shape < 0.6:
            pred = f"Answer: Answer: {answer}"
        elif shape < 0.75:
            pred = f"\n{answer}"
        elif shape < 0.9:
            pred = f"The person is {answer}.\nAnswer: {answer}"
        else:
            pred = f"{answer}"
        yield pred, [gold]


WORDS = ["run", "running", "runs", "cat", "cats", "house", "houses", "walked", "walk", "king", "kings", "war", "wars"]


def summary_cases(rng: random.Random, n: int):
    for _ in range(n):
        gold = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 15)))
        pred = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 15)))
        yield pred, gold


def think_cases(rng: random.Random, n: int):
    for _ in range(n):
        shape = rng.random()
        if shape < 0.6:
            yield "<think>\n\n</think>\n\nParis"
        elif shape < 0.8:
            yield "<think>reasoning</think> Paris </think> trailing"
        elif shape < 0.9:
            yield "<think>a</think><think>b"
        else:
            yield "<think>never closed"


def squad_cases(rng: random.Random, n: int):
    for _ in range(n):
        golds = rng.sample(NAMES, rng.randint(1, 3))
        pred = f"It was {rng.choice(golds if rng.random() < 0.7 else NAMES)}."
        yield pred, golds


def rate(pairs) -> dict[str, float]:
    pairs = list(pairs)
    differ = sum(abs(a - b) > 1e-9 for a, b in pairs)
    return {
        "cases": len(pairs),
        "differ": differ,
        "differ_rate": differ / len(pairs),
        "mean_before": sum(a for a, _ in pairs) / len(pairs),
        "mean_after": sum(b for _, b in pairs) / len(pairs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "rule_changes.json")
    args = parser.parse_args()
    before = load_before(args.before)
    rng = random.Random(args.seed)
    n = args.n
    mab = after.Scorer(protocol="memoryagentbench")
    out = {
        "perltqa_partial_credit": rate(
            (before.partial_containment(p, g), after.partial_containment(p, g)) for p, g in perltqa_cases(rng, n)
        ),
        "classification_boxed_label": rate(
            (before.boxed_label_match(p, g), after.boxed_label_match(p, g)) for p, g in label_cases(rng, n)
        ),
        "mab_answer_parsing_substring_em": rate(
            (before.mab_best(before.substring_exact_match, p, g), after.mab_best(after.substring_exact_match, p, g))
            for p, g in mab_answer_cases(rng, n)
        ),
        "mab_answer_parsing_exact_match": rate(
            (before.mab_best(before.exact_match, p, g), after.mab_best(after.exact_match, p, g))
            for p, g in mab_answer_cases(rng, n)
        ),
        "rouge_l_stemming": rate((before.rouge_l_f1(p, g), after.rouge_l_f1(p, g)) for p, g in summary_cases(rng, n)),
        "detective_qa_exact_match_mab_protocol": rate(
            (before.score("detective_qa", p, g), mab.score("detective_qa", p, g)) for p, g in mab_answer_cases(rng, n)
        ),
        "icl_label_mab_protocol": rate(
            (before.score("icl_banking77_5900shot_balance", p, g), mab.score("icl_banking77_5900shot_balance", p, g))
            for p, g in label_cases(rng, n)
        ),
        "squad_first_gold": rate((before.containment(p, g), after.containment(p, g)) for p, g in squad_cases(rng, n)),
    }
    from finemem_lib.agents.reasoner import clean_output

    def old_clean(text: str) -> str:  # the previous reasoner rule: rsplit at the last </think>
        if "</think>" in text:
            text = text.rsplit("</think>", 1)[1]
        elif "<think>" in text:
            return "Empty"
        return text.strip()

    outputs = list(think_cases(rng, n))
    differ = sum(old_clean(t) != clean_output(t) for t in outputs)
    out["think_split"] = {"cases": n, "differ": differ, "differ_rate": differ / n}
    out["assumptions"] = __doc__.split("\n\n")[1].replace("\n", " ")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
