"""Which decisions does a variant's step advantage reward? Each chunk sentence's decision beside its step's A_t.

A step's advantage A_t is shared by every operation of the step, so the policy gradient moves a decision in the
direction of the mean A_t of the steps that made it. Tabulating that mean per (sentence kind, decision) over
rollouts of the SFT start shows what a variant teaches before it is trained: whether storing a fact is paid
more than skipping it, skipping filler more than storing it, and a correct UPDATE more than writing the new
value beside the old one.

Decisions are read from the executed operations (any op style): ``keep`` (an INSERT of the sentence),
``skip`` (no operation wrote it), ``update_same_key`` (an UPDATE that wrote it over an item stating the same
key: the update the data asks for), ``update_other`` (over an item about another key, or an item that is not
a chunk sentence: a fact is lost), ``failed`` (an operation on it that did not execute). Sentence kinds and
keys come from the synthetic generator (:mod:`finemem_lib.data.roles`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from finemem_lib.agents.prompts import chunk_sentences
from finemem_lib.core.memory import MemoryItem, Operation, OpKind, OpResult
from finemem_lib.data.instance import Instance
from finemem_lib.data.roles import sentence_kinds
from finemem_lib.episodes.rollout import Episode

DECISIONS = ("keep", "skip", "update_same_key", "update_other", "failed")


def sentence_keys(instance: Instance) -> dict[str, str | None]:
    """Each chunk sentence's text -> the key it states (None for filler and examples)."""
    meta = instance.metadata.get("sentences") or []
    keys: dict[str, str | None] = {}
    for chunk, records in zip(instance.chunks, meta, strict=False):
        for text, record in zip(chunk_sentences(chunk), records, strict=False):
            keys[text] = record.get("key") or None
    return keys


def step_decisions(
    n_sentences: int,
    operations: Sequence[Operation],
    results: Sequence[OpResult],
    memory_before: Mapping[str, MemoryItem],
    sentence_texts: Sequence[str],
    keys: Mapping[str, str | None],
) -> list[str]:
    """The decision on each of a step's ``n_sentences`` sentences (see the module doc); the last operation on
    a sentence wins."""
    out = ["skip"] * n_sentences
    for op, result in zip(operations, results, strict=True):
        if op.sentence is None or not 1 <= op.sentence <= n_sentences:
            continue
        i = op.sentence - 1
        if not result.ok:
            out[i] = "failed"
        elif op.kind is OpKind.INSERT:
            out[i] = "keep"
        elif op.kind is OpKind.UPDATE:
            old = memory_before.get(op.item_id or "")
            new_key = keys.get(sentence_texts[i]) if i < len(sentence_texts) else None
            same = old is not None and new_key is not None and keys.get(old.content) == new_key
            out[i] = "update_same_key" if same else "update_other"
    return out


def decision_table(
    instances: Sequence[Instance], groups: Sequence[Sequence[Episode]], advantages: Sequence[np.ndarray]
) -> pd.DataFrame:
    """Per (sentence kind, decision): how many, and the mean and standard error of their steps' A_t.

    ``advantages[i]``: ``[G, T]`` of instance ``i``'s group (:class:`finemem_lib.episodes.advantages.RoundCredit`).
    """
    values: dict[tuple[str, str], list[float]] = defaultdict(list)
    for instance, group, adv in zip(instances, groups, advantages, strict=True):
        kinds, keys = sentence_kinds(instance), sentence_keys(instance)
        steps = max((len(e.steps) for e in group), default=0)
        if np.shape(adv)[0] != len(group) or np.shape(adv)[1] < steps:
            raise ValueError(
                f"advantages of {instance.id!r} are {np.shape(adv)}, for {len(group)} rollouts of {steps} steps"
            )
        for g, episode in enumerate(group):
            memory: dict[str, MemoryItem] = {}
            for t, step in enumerate(episode.steps):
                texts = chunk_sentences(instance.chunks[t])
                decided = step_decisions(len(kinds[t]), step.operations, step.results, memory, texts, keys)
                for kind, decision in zip(kinds[t], decided, strict=True):
                    values[(kind, decision)].append(float(adv[g, t]))
                memory = {item.id: item for item in step.memory_after}
    rows = [
        {
            "kind": kind,
            "decision": decision,
            "n": len(v),
            "mean_advantage": float(np.mean(v)),
            "se": float(np.std(v, ddof=1) / np.sqrt(len(v))) if len(v) > 1 else float("nan"),
        }
        for (kind, decision), v in sorted(values.items())
    ]
    return pd.DataFrame(rows, columns=["kind", "decision", "n", "mean_advantage", "se"])


def measure(
    cfg: Mapping,
    model: str,
    instances: Sequence[Instance],
    variant: str,
    seeds: Sequence[int],
    per_call: int = 4,
) -> pd.DataFrame:
    """:func:`decision_table` of ``model``'s training-style rollouts (the profile's G, temperature, questions)
    of ``instances``, ``per_call`` instances a rollout call, once per seed, advantages of ``variant``."""
    from finemem_lib.agents.policy import load_manager
    from finemem_lib.agents.reasoner_factory import build_reasoner
    from finemem_lib.agents.sft import policy_settings
    from finemem_lib.core.reward_spec import RewardSpec
    from finemem_lib.episodes.rollout import rollout, settings_from_config
    from finemem_lib.episodes.scheme_credit import credit_of

    policy = load_manager(model, **policy_settings(dict(cfg)))
    reasoner = build_reasoner(cfg.get("reasoner"))
    settings = settings_from_config(dict(cfg), training=True)
    spec = RewardSpec.from_config(cfg, variant=variant)
    all_instances, all_groups, all_adv = [], [], []
    for seed in seeds:
        for start in range(0, len(instances), per_call):
            batch = list(instances[start : start + per_call])
            groups = rollout(batch, policy, reasoner, settings, seed=1000 * seed + start)
            credit = credit_of(groups, spec)
            all_instances += batch
            all_groups += groups
            all_adv += list(credit.advantages)
    return decision_table(all_instances, all_groups, all_adv)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m finemem_lib.episodes.decision_credit --profile default --variant finemem --source synth_update``"""
    import argparse
    import json
    import sys
    from pathlib import Path

    from finemem_lib.data.synthetic import build_synthetic
    from finemem_lib.infra.config import load_profile
    from finemem_lib.infra.paths import profile_paths, sft_manager_dir

    parser = argparse.ArgumentParser(
        prog="python -m finemem_lib.episodes.decision_credit", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--profile", default="default")
    parser.add_argument("--model", default=None, help="manager folder (default: the profile's SFT start)")
    parser.add_argument("--variant", nargs="+", default=["finemem", "or_only"])
    parser.add_argument("--source", nargs="+", default=None, help="only these synthetic sources")
    parser.add_argument("--instances", type=int, default=16, help="training instances (after the source filter)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--out", default=None, help="JSON file")
    args = parser.parse_args(argv)
    cfg = load_profile(args.profile)
    train = build_synthetic(cfg.get("data"), int(cfg.get("seed", 0)))["train"]
    chosen = [i for i in train if not args.source or i.source in args.source][: args.instances]
    model = args.model or str(sft_manager_dir(profile_paths(cfg)))
    report = {
        "command": "python -m finemem_lib.episodes.decision_credit " + " ".join(argv or sys.argv[1:]),
        "model": model,
        "instances": len(chosen),
        "seeds": args.seeds,
        "tables": {},
    }
    for variant in args.variant:
        table = measure(cfg, model, chosen, variant, args.seeds)
        report["tables"][variant] = table.to_dict(orient="records")
        print(f"{variant}:\n{table.round(3).to_string(index=False)}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
