"""Held-out evaluation of a study's managers: a greedy episode per held-out instance, scores per instance.

Per run, after training, the final manager is evaluated greedily on every held-out instance
(``<results>/runs/05_<run>/heldout_instances.csv``), and on the out-of-distribution benchmark for the
groups that ask for it; the SFT start likewise, once per retrieval setting. A score file older than the
weights or the run log it scores is stale and is written again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from finemem_lib.agents.policy import load_manager
from finemem_lib.agents.reasoner_factory import build_reasoner
from finemem_lib.agents.sft import policy_settings
from finemem_lib.evaluation.benchmarks import load_benchmark
from finemem_lib.evaluation.per_instance import evaluate_manager
from finemem_lib.infra.atomic import write_csv
from finemem_lib.infra.paths import ProfilePaths

LOG_PREFIX = "05"  # the study's run logs and tables belong to notebook 05
HELDOUT_FILE = "heldout_instances.csv"
OOD_FILE = "ood_instances.csv"


def heldout_path(paths: ProfilePaths, run: str) -> Path:
    """Per-instance held-out scores of a run's final manager (or of the SFT start)."""
    return paths.runs / f"{LOG_PREFIX}_{run}" / HELDOUT_FILE


def ood_path(paths: ProfilePaths, run: str) -> Path:
    """Per-instance scores of a run's final manager on the out-of-distribution benchmark."""
    return paths.runs / f"{LOG_PREFIX}_{run}" / OOD_FILE


def ood_instances(profile: Mapping[str, Any], paths: ProfilePaths) -> tuple:
    """The out-of-distribution benchmark of notebook 04 (``mab``: the offline MemoryAgentBench analogue by default)."""
    return load_benchmark("mab", profile, paths).instances


def evaluate_heldout(
    cfg: Mapping[str, Any], model_dir: str | Path, instances: Sequence, out: Path, name: str, reasoner=None
) -> pd.DataFrame:
    """Greedy episode per held-out instance with the manager in ``model_dir``; written to ``out`` (CSV)."""
    policy = load_manager(model_dir, **policy_settings(cfg))
    frame = evaluate_manager(name, policy, instances, reasoner or build_reasoner(cfg.get("reasoner")), cfg)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_csv(frame, out, index=False)
    return frame


def sft_run_name(cfg: Mapping[str, Any], profile_name: str) -> str:
    """The SFT start's evaluation is shared by every run with the same retrieval setting."""
    return f"{profile_name}_sft_topk{int((cfg.get('retrieval') or {}).get('top_k', 2))}"


def older_than_model(heldout: Path, model_dir: str | Path) -> bool:
    """The held-out file predates the weights it should score (the SFT start was trained again)."""
    return any(heldout.stat().st_mtime < f.stat().st_mtime for f in Path(model_dir).glob("*.safetensors"))


def stale(heldout: Path, run_dir: Path) -> bool:
    """The held-out file predates the run's log (the run was trained again)."""
    log = run_dir / "run.json"
    return log.is_file() and heldout.stat().st_mtime < log.stat().st_mtime
