"""Does a manager read the chunk? The probability of its first stored sentence, by what that sentence is.

A manager decides what to keep when it writes a sentence number. This probe teacher-forces the start of a
first ``memory_insert`` call on held-out chunk steps (the prompt the manager would see, its view of the
teacher's memory) and reads the probability of each sentence number as the next token:

- ``by_role``: mean P(first = i) over steps where sentence i is a fact (stated about a person the questions
  ask about, an update or a labelled example), a fact about someone nobody asks about, or filler;
- ``swap``: the same step with sentence i replaced by a sentence of the other kind (a filler sentence for a
  fact, a fact from another chunk for a filler one), same position, same numbering: the mean change of
  P(first = i). A manager that reads content raises P(i) when a fact takes a filler's place and lowers it in
  the opposite swap; one that chooses by position changes neither.

In the ``review`` op style (one line per sentence: ``N. sentence => keep``) the decision about sentence i is
the token after its restated text: the probe teacher-forces the teacher's review of lines 1..i-1 and line i up
to ``=>`` and reads P(keep) + P(update) there, the probability that sentence i is stored.

``--decisions`` (review style) reads all three decision words after each line's arrow, by the sentence's role
in the generator (``fact``: a first statement, ``update``: a changed fact, ``distractor``), beside the teacher's
own decisions on the same lines: whether the start has learned *when* to update, not only how often.

Only sentence numbers that are one token are probed (the miniature's chunks have at most 9 sentences). ::

    python -m finemem_lib.evaluation.content_probe --profile default --manager data/default/models/sft
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from finemem_lib.agents import prompts
from finemem_lib.agents.teacher import TeacherConfig, replay_teacher
from finemem_lib.core.memory import Operation, OpKind
from finemem_lib.core.ops import operation_to_call
from finemem_lib.data.instance import Instance
from finemem_lib.data.roles import sentence_kinds

FACT_ROLES = ("fact", "update", "example")
KINDS = ("fact", "other_fact", "filler")


def kind_of(kind: str) -> str | None:
    """A sentence kind of :mod:`finemem_lib.data.roles` as probed: ``fact`` (asked-about facts, updates,
    labelled examples), ``other_fact`` or ``filler``; None for lures."""
    if kind in FACT_ROLES:
        return "fact"
    return kind if kind in ("other_fact", "filler") else None


def insert_prefix(policy: Any) -> str:
    """The text a first ``memory_insert`` call has before its sentence number, from the chat template."""
    call = operation_to_call(Operation(OpKind.INSERT, sentence=7), policy.style)
    arguments = json.dumps(call["arguments"], ensure_ascii=False)
    message = {
        "role": "assistant",
        "content": "",
        "tool_calls": [{"type": "function", "function": {"name": call["name"], "arguments": arguments}}],
    }
    text = policy.tokenizer.apply_chat_template(
        [{"role": "user", "content": "x"}, message], tools=policy.tools, tokenize=False, **policy.chat_template_kwargs
    )
    prompt = policy.tokenizer.apply_chat_template(
        [{"role": "user", "content": "x"}],
        tools=policy.tools,
        tokenize=False,
        add_generation_prompt=True,
        **policy.chat_template_kwargs,
    )
    completion = text[len(prompt) :]
    return completion[: completion.index("7")]


def number_tokens(tokenizer: Any, n: int) -> dict[int, int]:
    """Sentence numbers 1..n that are a single token, mapped to that token's id."""
    out = {}
    for number in range(1, n + 1):
        ids = tokenizer(str(number), add_special_tokens=False).input_ids
        if len(ids) == 1:
            out[number] = ids[0]
    return out


@torch.no_grad()
def first_choice(policy: Any, messages: list[dict[str, Any]], prefix: str, numbers: Mapping[int, int]) -> np.ndarray:
    """P(first inserted sentence = i) for i in ``numbers`` (index i - 1), given the prompt ``messages``."""
    logits = policy.model(_encode(policy, messages, prefix)).logits[0, -1].float()
    probs = torch.softmax(logits, dim=-1).cpu()
    out = np.zeros(max(numbers, default=0))
    for number, token in numbers.items():
        out[number - 1] = float(probs[token])
    return out


STORE_WORDS = (" keep", " update")


@torch.no_grad()
def review_choice(policy: Any, messages: list[dict[str, Any]], step: Any, sentences: Sequence[str]) -> np.ndarray:
    """Review style: P(sentence i is stored) for every sentence, each line's decision read after its text
    (the lines before it as the teacher's review, :func:`finemem_lib.core.review.render_review`)."""
    from finemem_lib.core.review import render_review, restated_line

    hints = getattr(step, "hints", None)
    lines = render_review(step.ops, sentences, hints).splitlines()
    store_ids = [policy.tokenizer(word, add_special_tokens=False).input_ids[0] for word in STORE_WORDS]
    out = np.zeros(len(sentences))
    for index, sentence in enumerate(sentences):
        head = restated_line(index + 1, sentence, hints[index] if hints else None)
        logits = policy.model(_encode(policy, messages, "\n".join([*lines[:index], head]))).logits[0, -1].float()
        out[index] = float(torch.softmax(logits, dim=-1)[store_ids].sum())
    return out


DECISION_WORDS = ("keep", "skip", "update")


@torch.no_grad()
def review_decisions(policy: Any, instances: Sequence[Instance], teacher: TeacherConfig) -> dict[str, Any]:
    """Review style: mean P(keep), P(skip), P(update) after each line's arrow (the teacher's review before it)
    by the sentence's generator role, and the share of each decision in the teacher's review of those lines."""
    from finemem_lib.agents.teacher import sentence_metadata
    from finemem_lib.core.review import render_review, restated_line

    if policy.style != "review":
        raise ValueError("review_decisions probes the review op style")
    word_ids = {w: policy.tokenizer(" " + w, add_special_tokens=False).input_ids[0] for w in DECISION_WORDS}
    model: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    taught: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for instance in instances:
        roles = sentence_metadata(instance)
        for step, _ in _teacher_steps(policy, instance, teacher):
            hints = getattr(step, "hints", None)
            lines = render_review(step.ops, step.sentences, hints).splitlines()
            messages = _messages(policy, step, step.sentences)
            for index, sentence in enumerate(step.sentences):
                role = str(roles[step.step][index].get("role"))
                head = restated_line(index + 1, sentence, hints[index] if hints else None)
                ids = _encode(policy, messages, "\n".join([*lines[:index], head]))
                probs = torch.softmax(policy.model(ids).logits[0, -1].float(), dim=-1)
                for word, token in word_ids.items():
                    model[role][word].append(float(probs[token]))
                taught[role][lines[index].rpartition("=>")[2].split()[0]] += 1
    return {
        role: {
            "lines": len(model[role]["keep"]),
            "model": {w: round(float(np.mean(model[role][w])), 4) for w in DECISION_WORDS},
            "teacher": {w: round(taught[role][w] / len(model[role]["keep"]), 4) for w in DECISION_WORDS},
        }
        for role in sorted(model)
    }


@torch.no_grad()
def restatement(policy: Any, instances: Sequence[Instance], teacher: TeacherConfig, max_steps: int = 48) -> dict:
    """Review style, generating: greedy reviews of held-out steps; the share of lines that restate their
    sentence exactly, and the share of each kind of sentence the review keeps (the decision then follows the
    text the manager wrote, not necessarily the sentence)."""
    from finemem_lib.core.ops import parse_operations
    from finemem_lib.core.review import parse_review_line, review_lines, split_review_line

    lines = exact = 0
    kept: dict[str, list[float]] = defaultdict(list)
    steps = [item for instance in instances for item in _teacher_steps(policy, instance, teacher)][:max_steps]
    for step, kinds in steps:
        ids = _encode(policy, _messages(policy, step, step.sentences), "")
        out = policy.model.generate(
            ids, max_new_tokens=24 * len(step.sentences), do_sample=False,
            eos_token_id=policy.tokenizer.eos_token_id, pad_token_id=policy.tokenizer.pad_token_id,
        )  # fmt: skip
        text = policy.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
        stored = {op.sentence for op in parse_operations(text, "review").operations if op.sentence is not None}
        for line in review_lines(text):
            parts = split_review_line(line) if parse_review_line(line)[0] is not None else None
            if parts is None or not 1 <= parts[0] <= len(step.sentences):
                continue
            lines += 1
            exact += parts[1] == step.sentences[parts[0] - 1].strip()
        for number, kind in enumerate(kinds, start=1):
            if kind is not None:
                kept[kind].append(float(number in stored))
    return {
        "steps": len(steps),
        "lines": lines,
        "restated_exactly": round(exact / lines, 4) if lines else None,
        "kept": {kind: round(float(np.mean(v)), 4) for kind, v in sorted(kept.items())},
    }


def store_choice(
    policy: Any, step: Any, sentences: Sequence[str], prefix: str, numbers: Mapping[int, int]
) -> np.ndarray:
    """P(store sentence i), index i - 1: the first insert's number (tool-call styles) or the review line's decision."""
    messages = _messages(policy, step, sentences)
    if policy.style == "review":
        return review_choice(policy, messages, step, sentences)[: max(numbers, default=0)]
    return first_choice(policy, messages, prefix, numbers)


def _replacement(kind: str, pool: Mapping[str, list[str]], index: int) -> str | None:
    other = pool["filler"] if kind in ("fact", "other_fact") else pool["fact"]
    return other[index % len(other)] if other else None


def probe(policy: Any, instances: Sequence[Instance], teacher: TeacherConfig | None = None) -> dict[str, Any]:
    """The first-choice probabilities by kind of sentence and position, and the swap changes (see module doc)."""
    teacher = teacher or TeacherConfig()
    prefix = insert_prefix(policy) if policy.style != "review" else ""
    by_role: dict[tuple[int, str], list[float]] = defaultdict(list)
    swaps: dict[str, list[float]] = defaultdict(list)
    pool: dict[str, list[str]] = {"fact": [], "filler": []}
    steps = []
    for instance in instances:
        for step, kinds in _teacher_steps(policy, instance, teacher):
            steps.append((step, kinds))
            for sentence, kind in zip(step.sentences, kinds, strict=True):
                if kind in ("fact", "filler"):
                    pool[kind].append(sentence)
    for index, (step, kinds) in enumerate(steps):
        numbers = number_tokens(policy.tokenizer, len(step.sentences))
        base = store_choice(policy, step, step.sentences, prefix, numbers)
        for number in numbers:
            kind = kinds[number - 1]
            if kind is None:
                continue
            by_role[(number, kind)].append(float(base[number - 1]))
            other = _replacement(kind, pool, index + number)
            if other is None or kind == "other_fact":
                continue
            swapped = list(step.sentences)
            swapped[number - 1] = other
            after = store_choice(policy, step, swapped, prefix, numbers)
            swaps[f"{kind}->{'filler' if kind == 'fact' else 'fact'}"].append(
                float(after[number - 1] - base[number - 1])
            )
    return _report(by_role, swaps, len(steps))


def pair_fit(policy: Any, instances: Sequence[Instance], steps: int = 20, lr: float = 1e-3) -> list[dict[str, float]]:
    """Can the architecture read at all? Two prompts that differ only in sentence 1 (filler in one, a fact in the
    other; the first held-out step whose sentence 1 is filler) are fitted with a loss on the first sentence
    number alone (2 for the filler prompt, 1 for the fact prompt), Adam at ``lr``, on a copy of the weights.
    Returns P(first = 1) of both prompts every 5 steps: a model that can use the chunk separates them."""
    import copy

    model = copy.deepcopy(policy.model).train()
    prefix = insert_prefix(policy)
    numbers = number_tokens(policy.tokenizer, 2)
    teacher_step, fact = _filler_first_step(policy, instances)
    filler_first = _messages(policy, teacher_step, teacher_step.sentences)
    fact_first = _messages(policy, teacher_step, [fact, *teacher_step.sentences[1:]])
    encoded = [_encode(policy, filler_first, prefix), _encode(policy, fact_first, prefix)]
    targets = [numbers[2], numbers[1]]
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    trace = []
    for index in range(steps + 1):
        if index % 5 == 0:
            with torch.no_grad():
                p = [float(torch.softmax(model(ids).logits[0, -1].float(), -1)[numbers[1]]) for ids in encoded]
            trace.append({"step": index, "filler_first": round(p[0], 4), "fact_first": round(p[1], 4)})
        if index == steps:
            break
        loss = _next_token_loss(model, list(zip(encoded, targets, strict=True)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return trace


def decision_fit(
    policy: Any,
    train: Sequence[Instance],
    teacher: TeacherConfig,
    steps: int = 300,
    lr: float = 1e-3,
    batch: int = 8,
    seed: int = 0,
) -> Any:
    """A copy of the manager trained on nothing but the first decision: for every teacher step of ``train`` whose
    first operation is an insert, the cross-entropy of that sentence number (Adam at ``lr``, ``batch`` steps drawn
    at random). Whether that alone makes it read is the question; returns the copy (probe it with :func:`probe`)."""
    import copy
    import random

    from finemem_lib.agents.sft import build_sft_examples

    fitted = copy.copy(policy)
    fitted.model = copy.deepcopy(policy.model).train()
    prefix = insert_prefix(policy)
    numbers = number_tokens(policy.tokenizer, 9)
    examples = build_sft_examples(
        train, teacher, policy.style, policy.view_k, view_order=policy.view_order,
        view_related=policy.view_related, numbering=policy.numbering,
    )  # fmt: skip
    items = []
    for example in examples:
        calls = example["completion"][0]["tool_calls"]
        first = json.loads(calls[0]["function"]["arguments"]).get("sentence") if calls else None
        if calls and calls[0]["function"]["name"] == "memory_insert" and first in numbers:
            items.append((_encode(policy, example["prompt"], prefix), numbers[first]))
    if not items:
        raise ValueError("no teacher step starts with an insert of a one-token sentence number")
    rng = random.Random(seed)
    optimizer = torch.optim.Adam(fitted.model.parameters(), lr=lr)
    for _ in range(steps):
        chosen = rng.sample(items, min(batch, len(items)))
        loss = _next_token_loss(fitted.model, chosen) / len(chosen)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    fitted.model.eval()
    return fitted


def _teacher_steps(policy: Any, instance: Instance, teacher: TeacherConfig) -> list[tuple[Any, list[str | None]]]:
    """The teacher's steps of one instance (the view the manager would have) with each sentence's probed kind."""
    kinds = sentence_kinds(instance)
    replay = replay_teacher(
        instance, teacher, policy.view_k, style=policy.style, view_order=policy.view_order,
        related_k=policy.view_related, hints=getattr(policy, "review_hints", False) and policy.style == "review",
    )  # fmt: skip
    return [
        (step, [kind_of(k) for k in kinds[step.step]])
        for step in replay
        if len(kinds[step.step]) == len(step.sentences)
    ]


def _filler_first_step(policy: Any, instances: Sequence[Instance]) -> tuple[Any, str]:
    """The first teacher step whose sentence 1 is filler, and its instance's last fact sentence."""
    for instance in instances:
        steps = _teacher_steps(policy, instance, TeacherConfig())
        facts = [s for step, kinds in steps for s, k in zip(step.sentences, kinds, strict=True) if k == "fact"]
        first = next((step for step, kinds in steps if kinds[0] == "filler"), None)
        if facts and first is not None:
            return first, facts[-1]
    raise ValueError("no held-out step starts with a filler sentence")


def _next_token_loss(model: Any, items: Sequence[tuple[torch.Tensor, int]]) -> torch.Tensor:
    """Summed cross-entropy of each prompt's next token (its last position) against its target id."""
    return sum(
        torch.nn.functional.cross_entropy(model(ids).logits[0, -1:].float(), torch.tensor([target]))
        for ids, target in items
    )


def _encode(policy: Any, messages: list[dict[str, Any]], prefix: str) -> torch.Tensor:
    text = policy.tokenizer.apply_chat_template(
        messages, tools=policy.tools, tokenize=False, add_generation_prompt=True, **policy.chat_template_kwargs
    )
    return policy.tokenizer(text + prefix, add_special_tokens=False, return_tensors="pt").input_ids.to(policy.device)


def _messages(policy: Any, step: Any, sentences: Sequence[str]) -> list[dict[str, Any]]:
    chunk = " ".join(sentences)
    return prompts.build_messages(chunk, step.view, policy.style, sentences=list(sentences), numbering=policy.numbering)


def _report(by_role: Mapping[tuple[int, str], list[float]], swaps: Mapping[str, list[float]], n_steps: int) -> dict:
    positions = sorted({number for number, _ in by_role})
    table = {
        str(number): {
            kind: round(float(np.mean(by_role[(number, kind)])), 4) for kind in KINDS if by_role.get((number, kind))
        }
        for number in positions
    }
    paired = [n for n in positions if by_role.get((n, "fact")) and by_role.get((n, "filler"))]
    fact = np.array([np.mean(by_role[(n, "fact")]) for n in paired])
    filler = np.array([np.mean(by_role[(n, "filler")]) for n in paired])
    return {
        "steps": n_steps,
        "by_position": table,
        "fact_minus_filler": round(float(np.mean(fact - filler)), 4) if paired else None,
        # geometric mean over positions of P(fact) / P(filler): 1 for a manager that chooses by position
        "fact_over_filler": round(float(np.exp(np.mean(np.log(fact / filler)))), 4) if paired else None,
        "swap": {name: {"mean_change": round(float(np.mean(v)), 4), "n": len(v)} for name, v in sorted(swaps.items())},
    }


def main(argv: Sequence[str] | None = None) -> int:
    from finemem_lib.agents.policy import load_manager
    from finemem_lib.agents.sft import policy_settings
    from finemem_lib.data.synthetic import build_synthetic
    from finemem_lib.evaluation.miniature import with_overrides
    from finemem_lib.infra.config import load_profile

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="default")
    parser.add_argument("--manager", required=True, help="model folder")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="dotted KEY=VALUE")
    parser.add_argument("--instances", type=int, default=24, help="held-out instances probed")
    parser.add_argument("--pair-fit", type=int, default=0, help="also fit a fact/filler prompt pair this many steps")
    parser.add_argument(
        "--decision-fit",
        type=int,
        default=0,
        help="also probe a copy trained this many steps on the first decision only",
    )
    parser.add_argument(
        "--perfect-teacher", action="store_true", help="--decision-fit on a teacher that keeps every fact, no filler"
    )
    parser.add_argument(
        "--decisions", action="store_true", help="review style: P(keep/skip/update) by role, beside the teacher"
    )
    parser.add_argument("--source", default=None, help="probe only this source's instances (e.g. synth_update)")
    parser.add_argument("--split", default="test", help="split the instances come from")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    cfg = with_overrides(load_profile(args.profile), args.overrides)
    torch.set_num_threads(1)
    policy = load_manager(args.manager, **policy_settings(cfg))
    if policy.style == "review" and (args.pair_fit or args.decision_fit):
        parser.error("--pair-fit and --decision-fit fit a first sentence number: tool-call op styles only")
    instances = build_synthetic(cfg.get("data"), int(cfg.get("seed", 0)))[args.split]
    instances = [i for i in instances if args.source in (None, i.source)][: args.instances]
    teacher = TeacherConfig.from_mapping((cfg.get("sft") or {}).get("teacher"))
    report = {"manager": args.manager, "profile": args.profile, "overrides": args.overrides}
    if args.decisions:
        report["decisions"] = review_decisions(policy, instances, teacher)
    else:
        report.update(probe(policy, instances, teacher))
    if policy.style == "review" and not args.decisions:
        report["restatement"] = restatement(policy, instances, teacher)
    if args.pair_fit > 0:
        report["pair_fit"] = pair_fit(policy, instances, steps=args.pair_fit)
    if args.decision_fit > 0:
        fit_teacher = (
            TeacherConfig(p_store_fact=1.0, p_store_distractor=0.0, p_update=1.0) if args.perfect_teacher else teacher
        )
        train = build_synthetic(cfg.get("data"), int(cfg.get("seed", 0)))["train"]
        fitted = decision_fit(policy, train, fit_teacher, steps=args.decision_fit)
        report["decision_fit"] = {
            "steps": args.decision_fit,
            "teacher": vars(fit_teacher),
            **probe(fitted, instances, teacher),
        }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
