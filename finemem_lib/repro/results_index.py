"""``results/README.md``: every table, figure, episode page and run of a results folder, with what made it.

For each file: the command and profile that produced it and the revision of that run. Files written by a
GRPO study come from its study log (``runs/03_<profile>_study.json``: command, git revision); the rest come
from the numbered notebook of their prefix (``02_*`` -> ``notebooks/02_*.ipynb``), run by ``./reproduce.sh`` with the
profile recorded in the executed notebook (``notebooks/NN_*.ipynb`` under the results folder) at the revision
this index was written from. ``./reproduce.sh`` writes the index after the notebooks::

    python -m finemem_lib.repro.results_index results            # or results/smoke
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from finemem_lib.infra.config import profile_names, repo_root

KINDS = (
    ("tables", "Tables", "*.csv"),
    ("figures", "Figures", "*.png"),
    ("episodes", "Episode pages (open in a browser)", "*.html"),
)


def git_state() -> dict[str, Any]:
    """The project's git revision and whether tracked files have uncommitted changes (as the run logs record it;
    kept here so that writing the index does not import the training stack)."""
    try:
        run = {"cwd": repo_root(), "capture_output": True, "text": True, "check": True, "timeout": 30}
        revision = subprocess.run(["git", "rev-parse", "HEAD"], **run).stdout.strip()
        dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], **run).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        return {"revision": None, "dirty": None}
    return {"revision": revision, "dirty": dirty}


def _revision(git: dict[str, Any] | None) -> str:
    if not git or not git.get("revision"):
        return "unknown"
    return str(git["revision"])[:10] + (" (uncommitted changes)" if git.get("dirty") else "")


def _study_outputs(results: Path) -> dict[str, dict[str, str]]:
    """File name -> {command, profile, revision} for the files each GRPO study log lists."""
    out: dict[str, dict[str, str]] = {}
    for log in sorted((results / "runs").glob("*_study.json")):
        try:
            study = json.loads(log.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        made = {"command": str(study.get("command", "?")), "profile": str(study.get("profile", "?"))}
        made["revision"] = _revision(study.get("git"))
        for path in (study.get("outputs") or {}).values():
            out[Path(path).name] = made
    return out


def _notebook_profiles(results: Path) -> dict[str, str]:
    """Notebook prefix ``NN`` -> the profile its executed copy under ``results/notebooks`` ran with."""
    profiles = {}
    for executed in sorted((results / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        try:
            meta = json.loads(executed.read_text()).get("metadata", {})
        except (OSError, json.JSONDecodeError):
            continue
        profile = (meta.get("papermill", {}).get("parameters") or {}).get("profile")
        if profile:
            profiles[executed.name[:2]] = str(profile)
    return profiles


def _folder_profile(results: Path) -> str:
    """The profile a results folder belongs to: ``results`` is the default profile's, ``results/<p>`` is p's."""
    if results.name in profile_names():
        return results.name
    return "default" if results.name == "results" else "?"


def _notebook_for(prefix: str) -> str | None:
    found = sorted((repo_root() / "notebooks").glob(f"{prefix}_*.ipynb"))
    return f"notebooks/{found[0].name}" if found else None


def results_rows(results: str | Path) -> list[dict[str, str]]:
    """One row per file: section, file (relative to ``results``), command, profile, revision."""
    results = Path(results)
    studies = _study_outputs(results)
    profiles = _notebook_profiles(results)
    here = _revision(git_state())
    rows = []
    for folder, section, pattern in KINDS:
        for path in sorted((results / folder).glob(pattern)):
            made = studies.get(path.name)
            if made is None:
                prefix = path.name[:2]
                notebook = _notebook_for(prefix) if prefix.isdigit() else None
                profile = profiles.get(prefix, _folder_profile(results))
                command = f"./reproduce.sh --profile {profile} --only {prefix}  # {notebook}" if notebook else "?"
                made = {"command": command, "profile": profile, "revision": here}
            rows.append({"section": section, "file": f"{folder}/{path.name}", **made})
    for run in sorted((results / "runs").glob("*/run.json")):
        try:
            record = json.loads(run.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        rows.append(
            {
                "section": "Training runs (config, seed, versions, revision in run.json)",
                "file": f"runs/{run.parent.name}/",
                "command": str(record.get("command", "?")),
                "profile": str(record.get("profile", "?")),
                "revision": _revision(record.get("git")),
            }
        )
    return rows


def write_results_index(results: str | Path) -> Path:
    """Write ``<results>/README.md`` listing :func:`results_rows`; returns its path."""
    results = Path(results)
    lines = [
        "# Results",
        "",
        "Generated by `python -m finemem_lib.repro.results_index` (do not edit by hand): every table, figure, episode",
        "page and training run in this folder, the command and profile that produced it, and the git revision",
        "of that run. Executed notebooks are in `notebooks/`.",
        "",
        f"Index written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} at revision {_revision(git_state())}.",
    ]
    section = None
    for row in results_rows(results):
        if row["section"] != section:
            section = row["section"]
            lines += ["", f"## {section}", "", "| file | command | profile | revision |", "|---|---|---|---|"]
        link = f"[{row['file']}]({row['file']})"
        lines.append(f"| {link} | `{row['command']}` | {row['profile']} | {row['revision']} |")
    out = results / "README.md"
    out.write_text("\n".join(lines) + "\n")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m finemem_lib.repro.results_index", description=__doc__.splitlines()[0]
    )
    parser.add_argument("results", nargs="?", default=str(repo_root() / "results"), help="results folder")
    args = parser.parse_args(argv)
    if not Path(args.results).is_dir():
        print(f"no results folder at {args.results}", file=sys.stderr)
        return 2
    print(write_results_index(args.results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
