"""Tables of finished runs: notebook 03's (one row per run, training curves) and the study's (notebook 05).

Tables hold only what a rerun reproduces exactly (wall times stay in the run logs). The study's summary
(:func:`study_summary`): held-out means with bootstrap intervals and paired differences to OR-only over
the main comparison's runs (tag ``""``), mean learning curves, the plateau rule and learning efficiency,
and one table per ablation group against its own base point.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from finemem_lib.infra.atomic import read_json, write_csv, write_json
from finemem_lib.infra.identity import config_hash
from finemem_lib.infra.paths import ProfilePaths, repo_relative
from finemem_lib.infra.provenance import provenance
from finemem_lib.training.heldout import LOG_PREFIX, heldout_path, ood_path, sft_run_name
from finemem_lib.training.plan import PlannedRun
from finemem_lib.training.run import HISTORY, RUN_LOG, RunResult
from finemem_lib.training.study_stats import bootstrap_means, learning_efficiency, mean_curve, plateau, score_matrix

ABLATION_GROUPS = ("beta", "w1", "group_mode", "top_k")
BASE_LABEL = "base"  # an ablation table's row for the profile's own setting (Fine-Mem at beta 0.5, w1 0.5, ...)
# logged curves summarised over the main comparison: column -> (figure file stem, axis label)
SUMMARY_CURVES = {
    "heldout/qa": ("learning_curves", "held-out QA"),
    "heldout/memory_tokens": ("memory_curves", "held-out memory tokens"),
}


# ---------------------------------------------------------------------------- notebook 03: runs of one profile
TIMING_COLUMNS = ("wall_s", "step_time", "train_runtime", "train_samples_per_second", "train_steps_per_second")


def heldout_table(results: Sequence[RunResult]) -> pd.DataFrame:
    """One row per run: held-out global QA, memory length and format rate before and after training.

    Wall times are in the run logs, not here: tables hold only what a rerun reproduces exactly.
    """
    rows = []
    for r in results:
        row = {"variant": r.variant, "seed": r.seed}
        for when, scores in (("initial", r.heldout_initial), ("final", r.heldout_final)):
            for key in ("qa", "memory_tokens", "format_rate", "chunk_qa"):
                row[f"{key}_{when}"] = scores.get(key)
        rows.append(row)
    return pd.DataFrame(rows)


def curves_table(results: Sequence[RunResult]) -> pd.DataFrame:
    """Long table of the per-step training log of every run (one row per logged step; timings left out)."""
    frames = []
    for r in results:
        frame = r.history.drop(columns=[c for c in TIMING_COLUMNS if c in r.history.columns])
        frame.insert(0, "seed", r.seed)
        frame.insert(0, "variant", r.variant)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


# ---------------------------------------------------------------------------- notebook 05: the study
def collect(profile: Mapping[str, Any], runs: Sequence[PlannedRun], paths: ProfilePaths) -> dict[str, pd.DataFrame]:
    """Finished runs of the plan: ``runs`` (one row each), ``heldout`` and ``ood`` (per instance), ``curves``."""
    run_rows, heldout, ood, curves = [], [], [], []
    for planned in runs:
        cfg = planned.config(profile)
        name = f"{cfg['name']}_{planned.variant}_s{planned.seed}"
        run_dir = paths.runs / f"{LOG_PREFIX}_{name}"
        try:
            record = read_json(run_dir / RUN_LOG)
        except FileNotFoundError:
            continue
        if record.get("status") != "finished" or record.get("config_hash") != config_hash(cfg):
            continue
        out = heldout_path(paths, name)
        if not out.is_file():
            continue
        keys = {"group": planned.group, "tag": planned.tag, "variant": planned.variant, "seed": planned.seed}
        frame = pd.read_csv(out).assign(**keys, run=name)
        heldout.append(frame)
        if planned.ood and ood_path(paths, name).is_file():  # a shared base run may hold one for another group
            ood.append(pd.read_csv(ood_path(paths, name)).assign(**keys, run=name))
        history = pd.read_csv(run_dir / HISTORY)
        curves.append(history.assign(**keys, run=name))
        run_rows.append(
            {
                **keys,
                "run": name,
                "steps": record.get("steps"),
                "wall_s": record.get("wall_s"),
                "qa": frame["score"].mean(),
                "memory_tokens": frame["memory_tokens"].mean(),
                "sft": sft_run_name(cfg, str(profile.get("name"))),
                "revision": (record.get("git") or {}).get("revision"),
            }
        )
    return {
        "runs": pd.DataFrame(run_rows),
        "heldout": pd.concat(heldout, ignore_index=True) if heldout else pd.DataFrame(),
        "ood": pd.concat(ood, ignore_index=True) if ood else pd.DataFrame(),
        "curves": pd.concat(curves, ignore_index=True) if curves else pd.DataFrame(),
    }


def write_study_tables(
    profile: Mapping[str, Any],
    runs: Sequence[PlannedRun],
    paths: ProfilePaths,
    command: str = "",
    tables: Mapping[str, pd.DataFrame] | None = None,
) -> dict[str, Path]:
    """``05_study_runs.csv``, ``05_study_heldout.csv``, ``05_study_curves.csv`` and the study log.

    ``tables``: :func:`collect`'s result when the caller has it (else it is read from the runs).
    """
    tables = collect(profile, runs, paths) if tables is None else tables
    files = {}
    for key, frame in tables.items():
        files[key] = paths.tables / f"{LOG_PREFIX}_study_{key}.csv"
        write_csv(frame, files[key], index=False)
    planned = [{"label": r.label, "overrides": r.overrides} for r in runs]
    finished = tables["runs"]["run"].tolist() if len(tables["runs"]) else []
    study = provenance(
        profile,
        int(profile.get("seed", 0)),
        command=command,
        planned=planned,
        finished=finished,
        outputs={k: repo_relative(v) for k, v in files.items()},
    )
    write_json(paths.runs / f"{LOG_PREFIX}_study.json", study)
    return files


def _matrices(heldout: pd.DataFrame, key: str, column: str) -> dict[str, np.ndarray]:
    return {str(name): score_matrix(frame, column)[0] for name, frame in heldout.groupby(key, sort=False)}


@dataclass
class StudySummary:
    """The study's summary tables (each None or empty when nothing to summarise has finished yet)."""

    heldout: pd.DataFrame | None = None  # mean QA and memory tokens per variant (+ SFT start), paired to OR-only
    curve_means: dict[str, pd.DataFrame] = field(default_factory=dict)  # logged column -> mean curve per variant
    plateau: pd.DataFrame | None = None
    efficiency: pd.DataFrame | None = None
    ablations: dict[str, tuple[pd.DataFrame, str]] = field(default_factory=dict)  # key -> (table, figure title)

    @property
    def curves(self) -> pd.DataFrame | None:
        """Every mean curve in one long table (a ``metric`` column names the logged column)."""
        if not self.curve_means:
            return None
        return pd.concat([m.assign(metric=c) for c, m in self.curve_means.items()], ignore_index=True)


def study_summary(
    profile: Mapping[str, Any],
    runs: Sequence[PlannedRun],
    paths: ProfilePaths,
    n_boot: int = 2000,
    tables: Mapping[str, pd.DataFrame] | None = None,
) -> StudySummary:
    """Held-out intervals, paired differences, mean curves, plateau, efficiency and one table per ablation.

    Main comparison: the runs without overrides (tag ``""``), with OR-only as the reference (and a second
    paired difference to Fine-Mem, ``diff_finemem*``, for the credit schemes trained beside it); an
    ablation group is compared with its own base point (the run of the group whose tag carries only
    the group's fixed settings).
    """
    tables = collect(profile, runs, paths) if tables is None else tables
    heldout, curves = tables["heldout"], tables["curves"]
    out = StudySummary()
    if heldout.empty:
        return out
    base = heldout[heldout["tag"] == ""].drop_duplicates(["run", "instance_id"])
    sft_file = heldout_path(paths, sft_run_name(profile, str(profile.get("name"))))
    if not base.empty:
        frames = [base]
        if sft_file.is_file():
            frames.insert(0, pd.read_csv(sft_file).assign(variant="sft_start", seed=0))
        both = pd.concat(frames, ignore_index=True)
        rows = []
        for column in ("score", "memory_tokens"):
            matrices = _matrices(both, "variant", column)
            table = bootstrap_means(matrices, reference="or_only", n_boot=n_boot)
            if "finemem" in matrices:  # the same draws (same seed), paired to Fine-Mem: where a scheme stands
                versus = bootstrap_means(matrices, reference="finemem", n_boot=n_boot)
                for name in ("diff", "diff_lo", "diff_hi"):
                    table[name.replace("diff", "diff_finemem")] = versus[name].to_numpy()
            rows.append(table.assign(metric="qa" if column == "score" else "memory_tokens"))
        out.heldout = pd.concat(rows, ignore_index=True)
        # a base run is listed in every group that holds it (main and each ablation): count it once
        first_group = curves.groupby("run")["group"].transform("first")
        main_curves = curves[(curves["tag"] == "") & (curves["group"] == first_group)]
        for column in SUMMARY_CURVES:
            if column in main_curves.columns and main_curves[column].notna().any():
                out.curve_means[column] = mean_curve(main_curves, column)
        if out.curve_means:
            mean_qa = next(iter(out.curve_means.values()))
            out.plateau = pd.DataFrame(
                [{"variant": v, **plateau(frame)} for v, frame in mean_qa.groupby("variant", sort=False)]
            )
            out.efficiency = learning_efficiency(main_curves, n_boot=n_boot)
    for suffix, scores, what in (("", heldout, "held-out QA"), ("_ood", tables["ood"], "out-of-distribution QA")):
        if scores.empty:
            continue
        for group, frame in scores[scores["group"].isin(ABLATION_GROUPS)].groupby("group"):
            tags = list(dict.fromkeys(frame["tag"]))
            if len(tags) < 2:  # only the base point has finished: nothing to compare yet
                continue
            reference = min(tags, key=len)  # the group's base point carries only the fixed settings
            frame = frame.assign(tag=frame["tag"].replace({"": BASE_LABEL}))  # the profile's own setting
            reference = reference or BASE_LABEL
            table = bootstrap_means(_matrices(frame, "tag", "score"), reference=reference, n_boot=n_boot)
            out.ablations[f"ablation_{group}{suffix}"] = (table, f"{group}: {what} (ref. {reference})")
    return out
