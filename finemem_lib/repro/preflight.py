"""Check, before any notebook runs, that a profile's data and models can be had; say how to fix what is missing.

``python -m finemem_lib.repro.preflight --profile paper`` prints one short block per missing piece (what,
and the command that fixes it) and exits 1; with everything in place it prints one line and exits 0.
Nothing here downloads: a Hub dataset or model counts as available when it is in a local folder named
by the profile, in the local Hugging Face cache, or (online) when the Hub answers for it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from finemem_lib.infra.config import load_profile, profile_names, repo_root

MEMALPHA_SPLITS = ("train", "test")


@dataclass(frozen=True)
class Problem:
    """One missing piece and how to fix it."""

    what: str
    fix: str

    def __str__(self) -> str:
        return f"- {self.what}\n  to fix: {self.fix}"


def _offline() -> bool:
    return any(
        os.environ.get(name, "0").lower() in ("1", "true", "yes") for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )


def _in_hub(repo_id: str, repo_type: str) -> bool:
    """Whether a Hub repo is in the local cache, or (online) answers within a few seconds."""
    try:
        from huggingface_hub import HfApi, snapshot_download
    except ImportError:
        return False
    try:
        snapshot_download(repo_id, repo_type=repo_type, local_files_only=True)
        return True
    except Exception:
        if _offline():
            return False
    try:
        HfApi().repo_info(repo_id, repo_type=repo_type, timeout=5)
        return True
    except Exception:
        return False


def _local(path: str | Path) -> Path:
    path = Path(path)
    return path if path.is_absolute() else repo_root() / path


def _dataset_problems(
    label: str, repo_id: str, local_dir: str | None, splits: Sequence[str], key: str
) -> list[Problem]:
    from finemem_lib.data.memalpha import find_split_files

    suggested = f"data/hub/{repo_id.split('/')[-1]}"
    download = f"hf download {repo_id} --repo-type dataset --local-dir {suggested}"
    if local_dir:
        missing = [s for s in splits if not find_split_files(_local(local_dir), s)]
        if missing:
            return [Problem(f"{label}: no parquet for {', '.join(missing)} under {local_dir}", download)]
        return []
    if _in_hub(repo_id, "dataset"):
        return []
    return [
        Problem(
            f"{label} ({repo_id}) is not in a local folder nor reachable", f"{download}, then set {key}: {suggested}"
        )
    ]


def _model_problems(label: str, model: str | None, key: str) -> list[Problem]:
    if not model or model == "offline":
        return []
    if _local(model).is_dir():
        return (
            []
            if (_local(model) / "config.json").is_file()
            else [Problem(f"{label}: {model} has no config.json", f"hf download <model> --local-dir {model}")]
        )
    if _in_hub(model, "model"):
        return []
    suggested = f"data/hub/{model.split('/')[-1]}"
    return [
        Problem(
            f"{label} {model} is not a local folder nor reachable",
            f"hf download {model} --local-dir {suggested}, then set {key}: {suggested}",
        )
    ]


def _reasoner_problems(reasoner: Mapping[str, Any]) -> list[Problem]:
    backend = reasoner.get("backend", "offline")
    if backend == "hf":
        return _model_problems("reasoner", reasoner.get("model"), "reasoner.model")
    if backend != "openai":
        return []
    base_url = reasoner.get("base_url") or os.environ.get("REASONER_BASE_URL")
    model = reasoner.get("model") or os.environ.get("REASONER_MODEL") or "<model>"
    serve = f"vllm serve {model} --port 8000; export REASONER_BASE_URL=http://localhost:8000/v1"
    if not base_url:
        return [Problem("reasoner: no OpenAI-compatible endpoint (reasoner.base_url / REASONER_BASE_URL unset)", serve)]
    import urllib.error
    import urllib.request

    try:
        urllib.request.urlopen(base_url.rstrip("/") + "/models", timeout=5).close()
    except urllib.error.HTTPError:
        return []  # it answers (maybe needs a key): reachable
    except (OSError, ValueError) as exc:
        return [Problem(f"reasoner endpoint {base_url} does not answer ({exc})", serve)]
    return []


def _start_model_problems(cfg: Mapping[str, Any], notebooks: Sequence[str]) -> list[Problem]:
    configured = (cfg.get("training") or {}).get("sft_model")
    if not configured or not any(n.startswith("03") for n in notebooks):
        return []
    if (_local(configured) / "config.json").is_file():
        return []
    owner = Path(configured).parts[1] if len(Path(configured).parts) > 1 else "default"
    return [
        Problem(
            f"training.sft_model {configured} holds no model (notebook 03 starts from it)",
            f"./reproduce.sh --profile {owner} --only 2   (trains that SFT manager)",
        )
    ]


def _engine_problems(cfg: Mapping[str, Any], notebooks: Sequence[str]) -> list[Problem]:
    """``manager.engine: vllm`` trains with a colocated vLLM engine: it must be installed, and needs a CUDA GPU."""
    engine = str((cfg.get("manager") or {}).get("engine", "native"))
    if engine != "vllm" or not any(n.startswith(("03", "05")) for n in notebooks):
        return []
    import importlib.util

    fix = "pip install -e .[gpu]   (a CUDA machine), or set manager.engine: native in the profile"
    if importlib.util.find_spec("vllm") is None:
        return [Problem("manager.engine is vllm (GRPO rollouts), but vLLM is not installed", fix)]
    import torch

    if not torch.cuda.is_available():
        return [Problem("manager.engine is vllm (GRPO rollouts), but no CUDA GPU is visible", fix)]
    return []


def check_profile(cfg: Mapping[str, Any], notebooks: Sequence[str] = ("01", "02", "03")) -> list[Problem]:
    """Everything a profile's notebooks need that is not there, each with its fix."""
    problems: list[Problem] = []
    data = cfg.get("data") or {}
    if data.get("kind", "synthetic") == "hub":
        memalpha = data.get("memalpha") or {}
        problems += _dataset_problems(
            "Memalpha",
            memalpha.get("repo", "YuWangX/Memalpha"),
            memalpha.get("local_dir"),
            MEMALPHA_SPLITS,
            "data.memalpha.local_dir",
        )
        mab = data.get("memoryagentbench") or {}
        if mab.get("splits"):
            from finemem_lib.data.memoryagentbench import MAB_REPO

            problems += _dataset_problems(
                "MemoryAgentBench", MAB_REPO, mab.get("local_dir"), mab["splits"], "data.memoryagentbench.local_dir"
            )
    problems += _model_problems("manager", (cfg.get("manager") or {}).get("model"), "manager.model")
    problems += _reasoner_problems(cfg.get("reasoner") or {})
    problems += _start_model_problems(cfg, notebooks)
    problems += _engine_problems(cfg, notebooks)
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m finemem_lib.repro.preflight", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="default", help=f"one of: {', '.join(profile_names())}")
    parser.add_argument("--notebooks", nargs="*", default=["01", "02", "03"], help="the notebooks about to run")
    args = parser.parse_args(argv)
    try:
        cfg = load_profile(args.profile)
    except (FileNotFoundError, ValueError) as exc:
        print(f"preflight: {exc}", file=sys.stderr)
        return 2
    problems = check_profile(cfg, args.notebooks)
    if not problems:
        print(f"preflight: profile {cfg['name']}: data and models available")
        return 0
    print(f"preflight: profile {cfg['name']} cannot run; missing:", file=sys.stderr)
    for problem in problems:
        print(problem, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
