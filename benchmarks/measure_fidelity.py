"""Agreement of this package's scoring with the official scorers of Mem-alpha and MemoryAgentBench.

Cases are generated (seeded) in the shapes the real data has, and each goes the whole way a real one
goes here: a dataset row in the published schema -> the loader -> :class:`~finemem_lib.core.metrics.Scorer`.
The same raw answer and the same model output go to the official function:

- Mem-alpha: ``evaluate_agent_results.py``, ``AgentResultsEvaluator._compute_score`` (which hands the
  MemoryAgentBench sources to ``memalpha/llm_agent/metrics.py``, ``evaluate_wrt_source``);
  compared with ``scoring.protocol: memalpha``.
- MemoryAgentBench: ``utils/eval_other_utils.py``, ``post_process``, the field its README names per
  dataset (``substring_exact_match`` for EventQA, RULER-QA and FactConsolidation, ``exact_match`` for
  ICL and DetectiveQA); compared with ``scoring.protocol: memoryagentbench``.

The official code is read from clones the caller passes (a work tree or a bare git folder; nothing of
it is kept here); imports their scorers do not use (``dotenv``, ``tiktoken``, ``editdistance``) are
stubbed when missing. The mixture of case shapes is this script's assumption; it prints every figure.

Usage: python benchmarks/measure_fidelity.py --memalpha PATH/Mem-alpha --mab PATH/MemoryAgentBench
       [--n 1000] [--seed 0] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from finemem_lib.core.metrics import Scorer
from finemem_lib.data.memalpha import instance_from_row
from finemem_lib.data.memoryagentbench import mab_instance, mab_row

WORDS = [
    "Marie Curie", "a dog", "lighthouse", "Salt Mines", "brother", "letter", "Pemberley", "storm", "whalers",
    "Mr. Darcy", "proposal", "rejection", "Hertfordshire", "ball", "pride", "the orchard", "river", "wall",
    "Lina", "Tomas", "quarry", "pears", "autumn", "flood", "map", "cartographer", "frozen bay", "Ann", "Madrid",
    "the king's court", "betrayal", "inheritance", "Paris", "1999", "a red kayak", "glassblower",
]  # fmt: skip
EVENTS = [
    "Ann leaves Madrid", "the king dies", "Tomas builds a wall", "Lina finds the map", "the storm hits the bay",
    "Mara reads the letter", "the brothers meet in Paris", "the ship sinks", "Ann", "Madrid",
]  # fmt: skip


# ---------------------------------------------------------------------------- the official code
def _source(clone: Path, rel: str) -> str:
    """A file of a clone: from its work tree, else from its git HEAD (a bare snapshot)."""
    if (clone / rel).is_file():
        return (clone / rel).read_text()
    return subprocess.run(
        ["git", f"--git-dir={clone}", "show", f"HEAD:{rel}"], check=True, capture_output=True, text=True
    ).stdout


def _stub(name: str, **attrs: Any) -> None:
    try:
        __import__(name)
    except ImportError:
        sys.modules[name] = types.SimpleNamespace(**attrs)  # type: ignore[assignment]


def _module(name: str, code: str) -> types.ModuleType:
    module = types.ModuleType(name)
    exec(compile(code, name, "exec"), module.__dict__)  # the caller's own clone
    sys.modules[name] = module
    return module


def load_official(memalpha: Path, mab: Path) -> tuple[Callable, Callable, Callable]:
    """(Mem-alpha ``_compute_score``, Mem-alpha ``evaluate_wrt_source``, MemoryAgentBench ``post_process``)."""
    _stub("dotenv", load_dotenv=lambda *a, **k: None)
    _stub("tiktoken")
    _stub("editdistance", eval=lambda a, b: 0)
    for package in ("memalpha", "memalpha.llm_agent"):
        sys.modules.setdefault(package, types.ModuleType(package))
    ma_metrics = _module("memalpha.llm_agent.metrics", _source(memalpha, "memalpha/llm_agent/metrics.py"))
    evaluator = _module("official_memalpha_eval", _source(memalpha, "evaluate_agent_results.py"))
    instance = object.__new__(evaluator.AgentResultsEvaluator)  # no LLM client: no judged source is compared
    mab_utils = _module("official_mab_eval", _source(mab, "utils/eval_other_utils.py"))
    return instance._compute_score, ma_metrics.evaluate_wrt_source, mab_utils.post_process


# ---------------------------------------------------------------------------- cases
def _mention(rng: random.Random, items: list[str]) -> str:
    said = [w if rng.random() < 0.6 else (w.lower() if rng.random() < 0.5 else w.upper()) for w in items]
    filler = ["The story follows", "In the end", "Meanwhile", "It is about", "Briefly:"]
    return f"{rng.choice(filler)} {', '.join(said)}." if said else "I do not remember the book."


def booksum_cases(rng: random.Random, n: int, shape: str) -> Iterator[tuple[Any, str]]:
    """Keyword golds as Mem-alpha's extraction makes them (no comma inside a keyword), as a ``", "``-joined
    string (Memalpha's booksum) or a list (the list shape); summaries naming a random part of them."""
    for _ in range(n):
        keywords = rng.sample(WORDS, rng.randint(1, 10))
        said = [k for k in keywords if rng.random() < 0.5] + rng.sample(WORDS, rng.randint(0, 2))
        gold: Any = ", ".join(keywords) if shape == "string" else keywords
        yield gold, _mention(rng, said)


def output_cases(rng: random.Random, n: int, golds: list[str]) -> Iterator[tuple[list[str], str]]:
    """MemoryAgentBench-style outputs: bare, ``Answer:`` lines, reasoning before the answer, a second line
    naming something else, leading newlines; golds of one or two acceptable answers."""
    for _ in range(n):
        answers = rng.sample(golds, 1 if rng.random() < 0.8 else 2)
        said = answers[0] if rng.random() < 0.5 else rng.choice(golds)
        other = rng.choice(golds)
        shape = rng.random()
        if shape < 0.2:
            out = said
        elif shape < 0.4:
            out = f"Answer: {said}"
        elif shape < 0.55:
            out = f"Answer: {other}\n{said}"
        elif shape < 0.7:
            out = f"The event that happens next is: {said}."
        elif shape < 0.8:
            out = f"Let me think.\nanswer: {said}\nBecause the text says so."
        elif shape < 0.9:
            out = f"\n{said}"
        else:
            out = f"{said.lower()}!"
        yield answers, out


def label_cases(rng: random.Random, n: int) -> Iterator[tuple[list[str], str]]:
    for _ in range(n):
        gold = str(rng.randint(0, 20))
        said = gold if rng.random() < 0.6 else str(rng.randint(0, 20))
        out = rng.choice([said, f"Answer: {said}", f"label: {said}", f"\\boxed{{{said}}}", f"{said}\nmore"])
        yield [gold], out


# ---------------------------------------------------------------------------- the path here
def memalpha_golds(source: str, answer: Any) -> tuple[str, ...]:
    """The golds a Memalpha-schema row with this answer gives after the loader."""
    row = {
        "instance_id": 0,
        "chunks": json.dumps(["Some text."]),
        "questions_and_answers": json.dumps([{"question": "Q?", "answer": answer}]),
        "data_source": source,
    }
    return instance_from_row(row).questions[0].answers


def mab_golds(source: str, answers: list[str]) -> tuple[str, ...]:
    """The golds a raw MemoryAgentBench row with this answer list gives after the loader."""
    row = mab_row("Some text. More text.", ["Q?"], [answers], source=source)
    return mab_instance(row, "Accurate_Retrieval", 0, 64).questions[0].answers


def agreement(pairs: list[tuple[float, float]]) -> dict[str, Any]:
    differ = [(a, b) for a, b in pairs if abs(a - b) > 1e-12]
    return {
        "cases": len(pairs),
        "agree": 1 - len(differ) / len(pairs),
        "ours_lower": sum(a < b for a, b in differ),
        "ours_higher": sum(a > b for a, b in differ),
    }


def measure(n: int, seed: int, official: tuple[Callable, Callable, Callable]) -> dict[str, Any]:
    compute_score, evaluate_wrt_source, post_process = official
    rng = random.Random(seed)
    memalpha, mab = Scorer(protocol="memalpha"), Scorer(protocol="memoryagentbench")
    rows: dict[str, Any] = {}
    for shape in ("string", "list"):
        for source in ("booksum", "infbench_sum_eng_shots2"):
            pairs = []
            for gold, out in booksum_cases(rng, n, shape):
                ours = memalpha.score(source, out, memalpha_golds(source, gold))
                pairs.append((ours, float(compute_score(source, out, gold))))
            rows[f"memalpha/{source} ({shape} gold)"] = agreement(pairs)
    mab_fields = {
        "eventqa_full": ("substring_exact_match", EVENTS),
        "ruler_qa1_197K": ("substring_exact_match", WORDS),
        "factconsolidation_sh_6k": ("substring_exact_match", WORDS),
        "detective_qa": ("exact_match", WORDS),
    }
    for source, (field, pool) in mab_fields.items():
        ours_mab, ours_ma = [], []
        for answers, out in output_cases(rng, n, pool):
            golds = mab_golds(source, answers)
            official_mab = float(post_process({"output": out}, answers, {"sub_dataset": source})[0][field])
            ours_mab.append((mab.score(source, out, golds), official_mab))
            official_ma = float(compute_score(source, out, answers))
            ours_ma.append((memalpha.score(source, out, golds), official_ma))
        rows[f"memoryagentbench/{source} ({field})"] = agreement(ours_mab)
        rows[f"memalpha/{source}"] = agreement(ours_ma)
    recall = []  # MemoryAgentBench's other EventQA field, which its README does not report
    for answers, out in output_cases(rng, n, EVENTS):
        official = float(post_process({"output": out}, answers, {"sub_dataset": "eventqa_full"})[0]["eventqa_recall"])
        recall.append((mab.score("eventqa_full", out, mab_golds("eventqa_full", answers)), official))
    rows["memoryagentbench/eventqa_full vs its eventqa_recall field"] = agreement(recall)
    for source in ("squad", "hotpotqa", "perltqa", "pubmed-rct", "icl_trec_coarse_6600shot_balance"):
        pairs = []
        cases = label_cases(rng, n) if source in ("pubmed-rct", "icl_trec_coarse_6600shot_balance") else None
        for answers, out in cases or output_cases(rng, n, WORDS):
            gold: Any = answers[0] if source != "perltqa" else "; ".join(answers)
            ours = memalpha.score(source, out, memalpha_golds(source, gold))
            pairs.append((ours, float(compute_score(source, out, gold))))
        rows[f"memalpha/{source}"] = agreement(pairs)
    icl = "icl_banking77_5900shot_balance"
    pairs_mab, pairs_ma = [], []
    for answers, out in label_cases(rng, n):
        golds = mab_golds(icl, answers)
        official = float(post_process({"output": out}, answers, {"sub_dataset": icl})[0]["exact_match"])
        pairs_mab.append((mab.score(icl, out, golds), official))
        pairs_ma.append((memalpha.score(icl, out, golds), float(compute_score(icl, out, answers))))
    rows[f"memoryagentbench/{icl} (exact_match)"] = agreement(pairs_mab)
    rows[f"memalpha/{icl}"] = agreement(pairs_ma)
    del evaluate_wrt_source  # reached through _compute_score for every MemoryAgentBench source above
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--memalpha", type=Path, required=True, help="a clone of wangyu-ustc/Mem-alpha")
    parser.add_argument("--mab", type=Path, required=True, help="a clone of HUST-AI-HYZ/MemoryAgentBench")
    parser.add_argument("--n", type=int, default=1000, help="cases per source and shape")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    rows = measure(args.n, args.seed, load_official(args.memalpha, args.mab))
    for name, row in rows.items():
        print(f"{name:<62} agree {row['agree']:7.2%} of {row['cases']} (lower {row['ours_lower']}, higher "
              f"{row['ours_higher']})")  # fmt: skip
    if args.out:
        args.out.write_text(json.dumps({"n": args.n, "seed": args.seed, "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
