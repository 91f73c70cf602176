"""Measure the offline miniature on its held-out split: baselines, ceilings and managers, side by side.

Per method: held-out QA per source and their mean, memory length (tokens), and for managers the store
rates of facts and filler (:mod:`finemem_lib.episodes.behaviour`), greedy and optionally sampled. Also
how often the manager's view shows the item an update should replace (the fair oracle's memory). It is
the before/after instrument of the miniature's fixes (docs/miniature.md)::

    python -m finemem_lib.evaluation.miniature --profile default --manager sft=data/default/models/sft \\
        --out results/diagnostics/miniature_default.json
    python -m finemem_lib.evaluation.miniature --profile default --set memory.view_related=3
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from finemem_lib.agents.reasoner_factory import build_reasoner
from finemem_lib.core.tokens import regex_token_count
from finemem_lib.data.instance import Instance
from finemem_lib.episodes import baselines, behaviour, ceilings
from finemem_lib.episodes.qa import qa_options_from_config
from finemem_lib.infra.config import load_profile


def _merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        out[key] = (
            _merge(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) else value
        )
    return out


def with_overrides(cfg: Mapping[str, Any], items: Sequence[str]) -> dict[str, Any]:
    """``["memory.view_related=3"]`` applied to a profile (dotted keys, values parsed as YAML)."""
    out = dict(cfg)
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r} is not KEY=VALUE")
        nested: Any = yaml.safe_load(value)
        for part in reversed(key.strip().split(".")):
            nested = {part: nested}
        out = _merge(out, nested)
    return out


def _row(name: str, per_instance: list[tuple[str, float, int]], extra: Mapping[str, Any] | None = None) -> dict:
    by_source: dict[str, list[float]] = {}
    for source, score, _ in per_instance:
        by_source.setdefault(source, []).append(score)
    per_source = {s: round(float(np.mean(v)), 4) for s, v in sorted(by_source.items())}
    return {
        "method": name,
        "per_source": per_source,
        "avg": round(float(np.mean(list(per_source.values()))), 4),
        "memory_tokens": round(float(np.mean([m for _, _, m in per_instance])), 1),
        **(extra or {}),
    }


def view_coverage(instances: Sequence[Instance], cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Over the view-limited oracle's episodes: updates whose old item the manager's view shows, of all updates."""
    view = ceilings.ViewSettings.from_config(cfg)
    stats: Counter[str] = Counter()
    for instance in instances:
        ceilings.scripted_memory(instance, ceilings.RULES["oracle"][0], view, stats=stats)
    total, shown = stats["updates"], stats["updates_in_view"]
    return {"updates": total, "old_item_in_view": shown, "share_in_view": round(shown / total, 4) if total else None}


def manager_rows(
    name: str, model: str, instances: Sequence[Instance], cfg: Mapping[str, Any], samples: int = 0, seed: int = 0
) -> list[dict[str, Any]]:
    """A manager's greedy held-out row (QA, memory, store rates), plus one of ``samples`` rollouts at the
    training temperature when ``samples > 0``."""
    from finemem_lib.agents.policy import load_manager
    from finemem_lib.agents.sft import policy_settings
    from finemem_lib.episodes.rollout import rollout, settings_from_config

    policy = load_manager(model, **policy_settings(cfg))
    reasoner = build_reasoner(cfg.get("reasoner"))
    rows = []
    runs = [("greedy", replace(settings_from_config(dict(cfg), training=False), chunk_qas=False))]
    if samples > 0:
        sampled = settings_from_config(dict(cfg), training=True)
        runs.append(
            (f"sampled{samples}", replace(sampled, num_generations=samples, question_ratio=1.0, chunk_qas=False))
        )
    for mode, settings in runs:
        groups = rollout(list(instances), policy, reasoner, settings, seed=seed)
        per_instance, counts, fmt = [], Counter(), []
        for instance, group in zip(instances, groups, strict=True):
            for episode in group:
                per_instance.append((instance.source, episode.r_global, episode.memory_tokens))
                counts += behaviour.episode_counts(instance, episode.steps)
                fmt.append(float(np.mean(episode.r_fmt)))
        extra = {k: round(v, 4) for k, v in behaviour.rates(counts).items() if v == v}
        extra["format_rate"] = round(float(np.mean(fmt)), 4)
        extra["updates_per_episode"] = round(counts["updates"] / len(per_instance), 3)
        rows.append(_row(f"{name} ({mode})", per_instance, extra))
    return rows


def measure(
    cfg: Mapping[str, Any],
    split: str = "test",
    managers: Mapping[str, str] | None = None,
    samples: int = 0,
    data: Mapping[str, Sequence[Instance]] | None = None,
) -> dict[str, Any]:
    """Baselines (store-everything, RAG-BM25), every ceiling and the given managers on ``split``."""
    from finemem_lib.data.synthetic import build_synthetic

    data = data or build_synthetic(cfg.get("data"), int(cfg.get("seed", 0)))
    instances = list(data[split])
    reasoner = build_reasoner(cfg.get("reasoner"))
    options = qa_options_from_config(cfg)
    rows = []
    for name in ("store_everything", "rag_bm25"):
        per_instance = []
        for instance in instances:
            results = baselines.BASELINES[name](instance, reasoner, options.top_k, options=options)
            tokens = (
                baselines.store_everything_memory(instance).num_tokens()
                if name == "store_everything"
                else sum(regex_token_count(c) for c in instance.chunks)
            )
            per_instance.append((instance.source, float(np.mean([r.score for r in results])), tokens))
        rows.append(_row(name, per_instance))
    for name in ceilings.CEILINGS:
        per_instance = []
        for instance in instances:
            results, memory = ceilings.run_ceiling(name, instance, reasoner, cfg)
            per_instance.append((instance.source, float(np.mean([r.score for r in results])), memory.num_tokens()))
        rows.append(_row(f"ceiling:{name}", per_instance))
    for name, model in (managers or {}).items():
        rows += manager_rows(name, model, instances, cfg, samples, int(cfg.get("seed", 0)))
    update = [inst for inst in instances if inst.source == "synth_update"]
    return {"split": split, "instances": len(instances), "rows": rows, "view": view_coverage(update, cfg)}


def format_rows(report: Mapping[str, Any]) -> str:
    """The report as aligned text lines."""
    lines = []
    for row in report["rows"]:
        sources = " ".join(f"{s.removeprefix('synth_')}={v:.3f}" for s, v in row["per_source"].items())
        rest = " ".join(f"{k}={v}" for k, v in row.items() if k not in ("method", "per_source", "avg"))
        lines.append(f"{row['method']:<28} avg={row['avg']:.3f} {sources} {rest}")
    lines.append(f"view: {report['view']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m finemem_lib.evaluation.miniature", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--profile", default="default")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], help="dotted KEY=VALUE profile override"
    )
    parser.add_argument("--manager", action="append", default=[], help="NAME=MODEL_FOLDER (repeatable)")
    parser.add_argument(
        "--samples", type=int, default=0, help="also G sampled rollouts per instance (training temperature)"
    )
    parser.add_argument("--split", default="test")
    parser.add_argument("--out", default=None, help="write the report as JSON here")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    cfg = with_overrides(load_profile(args.profile), args.overrides)
    managers = dict(item.split("=", 1) for item in args.manager)
    started = time.perf_counter()
    report = measure(cfg, args.split, managers, args.samples)
    report.update(
        command="python -m finemem_lib.evaluation.miniature " + " ".join(argv if argv is not None else sys.argv[1:]),
        profile=args.profile,
        overrides=args.overrides,
        seed=int(cfg.get("seed", 0)),
        wall_s=round(time.perf_counter() - started, 1),
    )
    print(format_rows(report))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
