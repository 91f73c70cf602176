"""Parse time of ``parse_operations`` on 64 KB of adversarial model output (goal: under 50 ms each).

Each class is text that once made the parser raise or take quadratic time (runs of brackets, deep
nesting, an integer past Python's 4,300-digit limit, many broken JSON starts, unclosed tags and
fences, lone surrogates), plus a realistic worst case (64 KB of valid tool calls). The time of each
is the best of ``--repeats`` runs, in CPU time (``time.process_time``), so that other processes on a
shared machine count less; a plain 1M-iteration Python loop is timed the same way for scale.

Usage: python benchmarks/bench_parser.py [--size 65536] [--repeats 5] [--out benchmarks/results/parser_cpu.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

from finemem_lib.core.ops import parse_operations

GOAL_MS = 50.0
CALL = '{"name": "memory_insert", "arguments": {"content": "Ada Bell is 30 years old."}}'


def repeat_to(unit: str, size: int) -> str:
    return (unit * (size // len(unit) + 1))[:size]


def random_mix(size: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    pieces = ["[", "]", "{", "}", '"', ",", ":", "\\", "1", "x", " ", "\ud800", '{"a": ', "```"]
    return "".join(rng.choice(pieces) for _ in range(size))[:size]


def adversarial_texts(size: int) -> dict[str, str]:
    """The classes, each ``size`` characters long (about ``size`` bytes)."""
    half = size // 2
    return {
        "open_brackets": "[" * size,
        "open_braces": "{" * size,
        "balanced_deep": "[" * half + "]" * half,
        "nested_objects": repeat_to('{"a": [', size),
        "nested_lists": repeat_to("[1,", size),
        "alternating_openers": repeat_to("[{", size),
        "short_broken_values": repeat_to("[1x", size),
        "unterminated_strings": repeat_to('["', size),
        "huge_integer": '{"name": "memory_insert", "arguments": {"sentence": ' + "9" * (size - 60) + "}}",
        "flat_number_list": "[" + repeat_to("1,", size - 3) + "1]",
        "tool_call_tags": repeat_to("<tool_call>[", size),
        "fence_then_spaces": "```" + " " * (size - 3),
        "lone_surrogates": repeat_to('{"name": "memory_insert", "arguments": {"content": "x\ud800"}} ', size),
        "random_mix": random_mix(size),
        "valid_calls": repeat_to(CALL + "\n", size),
        "valid_tool_call_blocks": repeat_to(f"<tool_call>\n{CALL}\n</tool_call>\n", size),
    }


def best_cpu_ms(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return 1000 * min(times)


def reference_loop() -> None:
    total = 0
    for i in range(1_000_000):
        total += i


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=65_536)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results/parser_cpu.json")
    args = parser.parse_args(argv)
    classes = {}
    for name, text in adversarial_texts(args.size).items():
        for style in ("content", "extractive"):
            parse_operations(text, style)  # warm up, and it must not raise
        ms = max(best_cpu_ms(lambda t=text, s=style: parse_operations(t, s), args.repeats) for style in ("content",))
        parsed = parse_operations(text)
        classes[name] = {"chars": len(text), "cpu_ms": round(ms, 2), "calls": parsed.n_emitted, "valid": parsed.n_valid}
        print(f"{name:24s} {ms:8.2f} ms  ({parsed.n_emitted} calls, {parsed.n_valid} valid)")
    worst = max(classes, key=lambda k: classes[k]["cpu_ms"])
    result = {
        "args": vars(args),
        "machine": platform.platform(),
        "python": sys.version.split()[0],
        "goal_ms": GOAL_MS,
        "reference_1m_loop_cpu_ms": round(best_cpu_ms(reference_loop, args.repeats), 2),
        "classes": classes,
        "worst": {"class": worst, "cpu_ms": classes[worst]["cpu_ms"]},
        "all_under_goal": all(c["cpu_ms"] < GOAL_MS for c in classes.values()),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"worst: {worst} {classes[worst]['cpu_ms']} ms (goal {GOAL_MS} ms); reference 1M loop "
        f"{result['reference_1m_loop_cpu_ms']} ms; wrote {out}"
    )
    return result


if __name__ == "__main__":
    main()
