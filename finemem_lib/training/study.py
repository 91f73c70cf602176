"""The whole variant and ablation study of a profile in one resumable command (notebook 05 reads its results).

Example::

    python -m finemem_lib.training.study --profile long --plan configs/study_long.yaml
    python -m finemem_lib.training.study --profile long --plan configs/study_long.yaml --stop-at 23:45 --dry-run

A *plan* (YAML) lists groups of runs in the order they are trained. Each group names its reward
variants, its seeds and profile overrides (deep-merged into the profile; a list value under
``sweep`` makes one setting per value). Runs go seed-major within a group (variant A s0, B s0, A s1,
...), so a study cut short still holds matched seeds. Every run starts from the profile's SFT
manager; a finished run whose config matches is reused, a killed one resumes from its last
checkpoint, so the same command continues a study run by run.

Per run, after training, the final manager is evaluated greedily on every held-out instance
(``<results>/runs/05_<run>/heldout_instances.csv``); the SFT start likewise once per retrieval
setting. The analysis (bootstrap intervals over instances and seeds, paired differences to OR-only,
learning efficiency, the plateau rule) is in the functions below; the study writes
``<results>/tables/05_study_*.csv`` after every run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import itertools
import logging
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from finemem_lib.core.reward_spec import VARIANTS
from finemem_lib.infra.atomic import write_csv
from finemem_lib.infra.config import _deep_merge, load_profile
from finemem_lib.infra.paths import ProfilePaths, profile_paths, repo_relative
from finemem_lib.training.runs import config_hash, provenance, read_json, write_json

logger = logging.getLogger(__name__)

LOG_PREFIX = "05"
HELDOUT_FILE = "heldout_instances.csv"
OOD_FILE = "ood_instances.csv"
SHORT = {"rewards.beta": "beta", "rewards.w1": "w1", "rewards.group_mode": "norm", "retrieval.top_k": "topk"}


# ---------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class PlannedRun:
    """One run of the study: a group, a tag naming its overrides, a variant, a seed and its merged profile."""

    group: str
    tag: str
    variant: str
    seed: int
    overrides: dict[str, Any] = field(default_factory=dict)
    ood: bool = False  # also score the final manager on the profile's out-of-distribution benchmark (notebook 04)

    def config(self, profile: Mapping[str, Any]) -> dict[str, Any]:
        cfg = _deep_merge(dict(profile), self.overrides)
        cfg["name"] = f"{profile.get('name', 'profile')}{'_' + self.tag if self.tag else ''}"
        return cfg

    @property
    def label(self) -> str:
        return f"{self.group}:{self.tag or 'base'}:{self.variant}:s{self.seed}"


def _flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in flat.items():
        node = out
        *parents, leaf = name.split(".")
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return out


def run_tag(overrides: Mapping[str, Any]) -> str:
    """A short file-safe name of a set of overrides (``""`` for none): ``steps12_beta0.25``."""
    parts = []
    for name, value in sorted(_flatten(overrides).items()):
        short = SHORT.get(name) or name.split(".")[-1].replace("max_steps", "steps")
        parts.append(f"{short}{value}")
    return "_".join(parts).replace("/", "-").replace(" ", "")


def load_plan(path: str | Path, profile: Mapping[str, Any] | None = None) -> list[PlannedRun]:
    """The runs of a plan file, in training order (see the module docstring); bad entries name themselves."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no study plan at {path}")
    raw = yaml.safe_load(path.read_text()) or {}
    groups = raw.get("groups") if isinstance(raw, Mapping) else None
    if not isinstance(groups, list) or not groups:
        raise ValueError(f"study plan {path}: needs a non-empty 'groups' list")
    return plan_runs(groups, profile)


def plan_runs(groups: Sequence[Mapping[str, Any]], profile: Mapping[str, Any] | None = None) -> list[PlannedRun]:
    """Expand plan groups into runs, in order.

    Overrides equal to the ``profile``'s own value are dropped, so a sweep point that is the base
    setting (e.g. beta 0.5) is the same run (same name) in every group that holds it: it is listed
    in each of them and trained once (:func:`run_plan` reuses a finished run).
    """
    base = _flatten(profile or {})

    runs: list[PlannedRun] = []
    seen: set[tuple[str, str, str, int]] = set()
    for i, group in enumerate(groups):
        name = str(group.get("name") or f"group{i}")
        unknown = sorted(set(group) - {"name", "variants", "seeds", "set", "sweep", "ood"})
        if unknown:
            raise ValueError(f"study plan group {name!r}: unknown key(s) {unknown}")
        variants = list(group.get("variants") or [])
        seeds = [int(s) for s in group.get("seeds") or []]
        if not variants or not seeds:
            raise ValueError(f"study plan group {name!r}: needs 'variants' and 'seeds'")
        for v in variants:
            if v not in VARIANTS:
                raise ValueError(f"study plan group {name!r}: variant {v!r} is not one of {VARIANTS}")
        fixed = _flatten(group.get("set") or {})
        sweep = _flatten(group.get("sweep") or {})
        for key, values in sweep.items():
            if not isinstance(values, list) or not values:
                raise ValueError(f"study plan group {name!r}: sweep {key!r} needs a non-empty list")
        settings = [dict(zip(sweep, combo, strict=True)) for combo in itertools.product(*sweep.values())] or [{}]
        points = []
        for setting in settings:
            overrides = _nest({k: v for k, v in {**fixed, **setting}.items() if k not in base or base[k] != v})
            points.append((run_tag(overrides), overrides))
        # seed-major over every setting and variant: a study cut short holds whole seeds of a sweep
        for seed, (tag, overrides), variant in itertools.product(seeds, points, variants):
            if (name, tag, variant, seed) in seen:
                continue
            seen.add((name, tag, variant, seed))
            runs.append(PlannedRun(name, tag, variant, seed, overrides, bool(group.get("ood", False))))
    return runs


# ---------------------------------------------------------------------------- held-out evaluation
def heldout_path(paths: ProfilePaths, run: str) -> Path:
    return paths.runs / f"{LOG_PREFIX}_{run}" / HELDOUT_FILE


def ood_path(paths: ProfilePaths, run: str) -> Path:
    """Per-instance scores of a run's final manager on the out-of-distribution benchmark."""
    return paths.runs / f"{LOG_PREFIX}_{run}" / OOD_FILE


def ood_instances(profile: Mapping[str, Any], paths: ProfilePaths) -> tuple:
    """The out-of-distribution benchmark of notebook 04 (``mab``: the offline MemoryAgentBench analogue by default)."""
    from finemem_lib.evaluation.benchmarks import load_benchmark

    return load_benchmark("mab", profile, paths).instances


def evaluate_heldout(
    cfg: Mapping[str, Any], model_dir: str | Path, instances: Sequence, out: Path, name: str, reasoner=None
) -> pd.DataFrame:
    """Greedy episode per held-out instance with the manager in ``model_dir``; written to ``out`` (CSV)."""
    from finemem_lib.agents.policy import load_manager
    from finemem_lib.agents.reasoner import build_reasoner
    from finemem_lib.agents.sft import policy_settings
    from finemem_lib.evaluation import evaluate_manager

    policy = load_manager(model_dir, **policy_settings(cfg))
    frame = evaluate_manager(name, policy, instances, reasoner or build_reasoner(cfg.get("reasoner")), cfg)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_csv(frame, out, index=False)
    return frame


def sft_run_name(cfg: Mapping[str, Any], profile_name: str) -> str:
    """The SFT start's evaluation is shared by every run with the same retrieval setting."""
    return f"{profile_name}_sft_topk{int((cfg.get('retrieval') or {}).get('top_k', 2))}"


# ---------------------------------------------------------------------------- running it
def run_plan(
    profile: Mapping[str, Any],
    runs: Sequence[PlannedRun],
    paths: ProfilePaths,
    stop_at: dt.datetime | None = None,
    command: str = "",
) -> list[dict[str, Any]]:
    """Train and evaluate the planned runs in order, reusing finished ones; stop launching at ``stop_at`` (UTC)."""
    from finemem_lib.agents.reasoner import build_reasoner
    from finemem_lib.infra.identity import data_hash, model_hash
    from finemem_lib.training.config import training_settings
    from finemem_lib.training.runner import (
        identity_config,
        load_training_data,
        reusable_run,
        run_identity,
        start_model,
        train_manager,
    )

    threads = (profile.get("training") or {}).get("num_threads")
    if threads:
        import torch

        torch.set_num_threads(int(threads))  # the held-out evaluations too, not only training
    data = load_training_data(profile, paths)
    sft_model = start_model(profile, paths)
    start_hash, data_digest = model_hash(sft_model), data_hash(data)
    reasoner = build_reasoner(profile.get("reasoner"))
    ood = None
    done = []
    unwritten = False  # a run was trained or scored since the tables were last written

    def score(cfg: Mapping[str, Any], model: Any, instances: Any, out: Path, variant: str) -> None:
        nonlocal unwritten
        evaluate_heldout(cfg, model, instances, out, variant, reasoner)
        unwritten = True

    def write_outputs() -> None:
        nonlocal unwritten
        tables = collect(profile, runs, paths)  # read once for both
        write_study_tables(profile, runs, paths, command, tables)
        write_study_figures(profile, runs, paths, tables=tables)
        unwritten = False

    for planned in runs:
        cfg = planned.config(profile)
        name = f"{cfg['name']}_{planned.variant}_s{planned.seed}"
        sft_name = sft_run_name(cfg, str(profile.get("name")))
        sft_out = heldout_path(paths, sft_name)
        if not sft_out.is_file() or _older_than_model(sft_out, sft_model):
            logger.info("evaluating the SFT start (%s) on %d held-out instances", sft_name, len(data["test"]))
            score(cfg, sft_model, data["test"], sft_out, "sft")
        settings = training_settings(cfg, variant=planned.variant)
        identity = run_identity(
            identity_config(cfg, settings, planned.variant), planned.seed, sft_model, data, start_hash, data_digest
        )
        with claim(paths.runs / f".claim-{LOG_PREFIX}_{name}") as mine:
            if not mine:
                logger.info("skipping %s: another study process is training it", planned.label)
                continue
            result, why = reusable_run(paths, cfg, planned.variant, planned.seed, identity, log_prefix=LOG_PREFIX)
            logger.info(why)
            if result is None:
                if stop_at is not None and dt.datetime.now(dt.timezone.utc) >= stop_at:
                    logger.info("stop time reached: not launching %s (the same command resumes it)", planned.label)
                    break
                logger.info("training %s (%s)", name, planned.label)
                unwritten = True
                result = train_manager(
                    cfg,
                    paths,
                    planned.variant,
                    planned.seed,
                    data,
                    sft_model,
                    reasoner,
                    identity=identity,
                    log_prefix=LOG_PREFIX,
                )
            out = heldout_path(paths, name)
            if not out.is_file() or _stale(out, result.run_dir):
                score(cfg, result.model_dir, data["test"], out, planned.variant)
            if planned.ood:
                if ood is None:
                    ood = ood_instances(profile, paths)
                sft_ood = ood_path(paths, sft_name)
                if not sft_ood.is_file() or _older_than_model(sft_ood, sft_model):
                    score(cfg, sft_model, ood, sft_ood, "sft")
                out = ood_path(paths, name)
                if not out.is_file() or _stale(out, result.run_dir):
                    logger.info("scoring %s on the out-of-distribution benchmark (%d instances)", name, len(ood))
                    score(cfg, result.model_dir, ood, out, planned.variant)
        done.append({"planned": planned, "run": name, "sft": sft_name, "wall_s": result.wall_s})
        if unwritten:  # a reused run changes no table: rewriting them (and the figures) took seconds per run
            write_outputs()
    if unwritten or (done and not (paths.tables / f"{LOG_PREFIX}_study_runs.csv").is_file()):
        write_outputs()  # scored before a stop, or every run reused and the tables never written
    return done


@contextlib.contextmanager
def claim(marker: Path) -> Iterator[bool]:
    """Hold ``marker`` while a run is trained, so two study processes given the same plan share it run by run.

    Yields False when a live process holds it (the caller skips the run); a marker left by a dead process
    is taken over. The marker is removed on exit.
    """
    marker.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                holder = int(marker.read_text().strip() or 0)
            except (OSError, ValueError):
                holder = 0
            if holder and _alive(holder):
                yield False
                return
            marker.unlink(missing_ok=True)  # left by a process that died
            continue
        with os.fdopen(fd, "w") as handle:
            handle.write(str(os.getpid()))
        try:
            yield True
        finally:
            marker.unlink(missing_ok=True)
        return
    yield False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _older_than_model(heldout: Path, model_dir: str | Path) -> bool:
    """The held-out file predates the weights it should score (the SFT start was trained again)."""
    return any(heldout.stat().st_mtime < f.stat().st_mtime for f in Path(model_dir).glob("*.safetensors"))


def _stale(heldout: Path, run_dir: Path) -> bool:
    """The held-out file predates the run's log (the run was trained again)."""
    log = run_dir / "run.json"
    return log.is_file() and heldout.stat().st_mtime < log.stat().st_mtime


# ---------------------------------------------------------------------------- tables
def collect(profile: Mapping[str, Any], runs: Sequence[PlannedRun], paths: ProfilePaths) -> dict[str, pd.DataFrame]:
    """Finished runs of the plan: ``runs`` (one row each), ``heldout`` and ``ood`` (per instance), ``curves``."""
    run_rows, heldout, ood, curves = [], [], [], []
    for planned in runs:
        cfg = planned.config(profile)
        name = f"{cfg['name']}_{planned.variant}_s{planned.seed}"
        run_dir = paths.runs / f"{LOG_PREFIX}_{name}"
        try:
            record = read_json(run_dir / "run.json")
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
        history = pd.read_csv(run_dir / "history.csv")
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


# ---------------------------------------------------------------------------- statistics
def score_matrix(heldout: pd.DataFrame, column: str = "score") -> tuple[np.ndarray, list[int], list[str]]:
    """``[seeds, instances]`` of one variant's per-instance held-out values (rows: seeds, columns: instances)."""
    pivot = heldout.pivot_table(index="seed", columns="instance_id", values=column, aggfunc="mean")
    return pivot.to_numpy(dtype=np.float64), list(pivot.index), list(pivot.columns)


def bootstrap_means(
    matrices: Mapping[str, np.ndarray],
    reference: str | None = None,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> pd.DataFrame:
    """Mean over seeds and instances per variant with a bootstrap interval; and the paired difference to ``reference``.

    Every matrix is ``[seeds, instances]`` over the SAME instance columns. Each bootstrap draw
    resamples the instances once (shared by all variants: the difference is paired by instance)
    and each variant's seeds independently (runs of different variants are not paired).
    """
    if not matrices:
        return pd.DataFrame()
    widths = {m.shape[1] for m in matrices.values()}
    if len(widths) != 1:
        raise ValueError(f"every variant must be scored on the same instances, got widths {sorted(widths)}")
    n_inst = widths.pop()
    rng = np.random.default_rng(seed)
    draws = {k: np.empty(n_boot) for k in matrices}
    for b in range(n_boot):
        cols = rng.integers(0, n_inst, n_inst)
        for key, m in matrices.items():
            rows = rng.integers(0, m.shape[0], m.shape[0])
            draws[key][b] = m[np.ix_(rows, cols)].mean()
    alpha = (1 - level) / 2
    out = []
    for key, m in matrices.items():
        row = {"variant": key, "seeds": m.shape[0], "instances": n_inst, "mean": float(m.mean())}
        row["lo"], row["hi"] = (float(q) for q in np.quantile(draws[key], [alpha, 1 - alpha]))
        if reference is not None and reference in matrices:
            diff = draws[key] - draws[reference]
            row["diff"] = float(m.mean() - matrices[reference].mean())
            row["diff_lo"], row["diff_hi"] = (float(q) for q in np.quantile(diff, [alpha, 1 - alpha]))
        out.append(row)
    return pd.DataFrame(out)


def mean_curve(curves: pd.DataFrame, column: str = "heldout/qa") -> pd.DataFrame:
    """Per variant and step: mean and standard error over seeds of a logged metric."""
    frame = curves.dropna(subset=[column])
    grouped = frame.groupby(["variant", "step"])[column]
    out = grouped.agg(["mean", "std", "count"]).reset_index()
    out["se"] = out["std"].fillna(0.0) / np.sqrt(out["count"])
    return out


def plateau(curve: pd.DataFrame, tolerance: float = 0.01, window: int = 2) -> dict[str, Any]:
    """Has a mean curve stopped rising? Yes when its last ``window`` evaluations gain less than ``tolerance``
    over the best value before them (a rise smaller than that is within the held-out noise of the miniature)."""
    values = curve.sort_values("step")["mean"].to_numpy()
    if len(values) <= window:
        return {"stopped_rising": False, "gain_last": float("nan"), "reason": "too few evaluations"}
    before = float(values[:-window].max())
    gain = float(values[-window:].max() - before)
    return {"stopped_rising": gain < tolerance, "gain_last": gain, "reason": f"gain over last {window} evals"}


def learning_efficiency(curves: pd.DataFrame, reference: str = "or_only", column: str = "heldout/qa") -> pd.DataFrame:
    """Per variant, the first step at which its mean held-out curve reaches the reference's final mean (NaN: never)."""
    mean = mean_curve(curves, column)
    ref = mean[mean["variant"] == reference].sort_values("step")
    if ref.empty:
        return pd.DataFrame(columns=["variant", "target", "first_step"])
    target = float(ref["mean"].iloc[-1])
    rows = []
    for variant, frame in mean.groupby("variant", sort=False):
        hit = frame.sort_values("step").query("mean >= @target")
        rows.append(
            {"variant": variant, "target": target, "first_step": float(hit["step"].iloc[0]) if len(hit) else np.nan}
        )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------- figures and tables of notebook 05
def _matrices(heldout: pd.DataFrame, key: str, column: str) -> dict[str, np.ndarray]:
    return {str(name): score_matrix(frame, column)[0] for name, frame in heldout.groupby(key, sort=False)}


def write_study_figures(
    profile: Mapping[str, Any],
    runs: Sequence[PlannedRun],
    paths: ProfilePaths,
    n_boot: int = 2000,
    tables: Mapping[str, pd.DataFrame] | None = None,
) -> dict[str, Path]:
    """Learning curves with bands, held-out intervals, paired differences, efficiency and one figure per ablation.

    Main comparison: the runs without overrides (tag ``""``), with OR-only as the reference; an
    ablation group is compared with its own base point (the run of the group whose tag carries only
    the group's fixed settings). Returns the files written (none when no run has finished).
    """
    import matplotlib.pyplot as plt

    from finemem_lib.report.ablation_plots import plot_curves_with_bands, plot_efficiency, plot_intervals

    tables = collect(profile, runs, paths) if tables is None else tables
    heldout, curves = tables["heldout"], tables["curves"]
    files: dict[str, Path] = {}
    if heldout.empty:
        return files
    t, f = paths.tables, paths.figures
    base = heldout[heldout["tag"] == ""].drop_duplicates(["run", "instance_id"])
    sft_file = heldout_path(paths, sft_run_name(profile, str(profile.get("name"))))
    if not base.empty:
        frames = [base]
        if sft_file.is_file():
            frames.insert(0, pd.read_csv(sft_file).assign(variant="sft_start", seed=0))
        both = pd.concat(frames, ignore_index=True)
        rows = []
        for column in ("score", "memory_tokens"):
            table = bootstrap_means(_matrices(both, "variant", column), reference="or_only", n_boot=n_boot)
            rows.append(table.assign(metric="qa" if column == "score" else "memory_tokens"))
        summary = pd.concat(rows, ignore_index=True)
        files["heldout"] = t / f"{LOG_PREFIX}_heldout.csv"
        write_csv(summary, files["heldout"], index=False)
        files["heldout_figure"] = f / f"{LOG_PREFIX}_heldout.png"
        plt.close(plot_intervals(summary[summary.metric == "qa"], "variant", "held-out QA (95% over instances, seeds)",
                                 files["heldout_figure"]))  # fmt: skip
        # a base run is listed in every group that holds it (main and each ablation): count it once
        first_group = curves.groupby("run")["group"].transform("first")
        main_curves = curves[(curves["tag"] == "") & (curves["group"] == first_group)]
        curve_tables = []
        for column, label in (("heldout/qa", "held-out QA"), ("heldout/memory_tokens", "held-out memory tokens")):
            if column in main_curves.columns and main_curves[column].notna().any():
                mean = mean_curve(main_curves, column)
                curve_tables.append(mean.assign(metric=column))
                key = "curves_figure" if column == "heldout/qa" else "memory_curves_figure"
                name = "learning_curves" if column == "heldout/qa" else "memory_curves"
                files[key] = f / f"{LOG_PREFIX}_{name}.png"
                plt.close(plot_curves_with_bands(mean, label, files[key]))
        if curve_tables:
            mean_qa = curve_tables[0]
            files["curves"] = t / f"{LOG_PREFIX}_curves.csv"
            write_csv(pd.concat(curve_tables, ignore_index=True), files["curves"], index=False)
            ref = mean_qa[mean_qa.variant == "or_only"]
            judged = (
                plateau(ref) if len(ref) else {"stopped_rising": False, "gain_last": np.nan, "reason": "no OR-only"}
            )
            files["plateau"] = t / f"{LOG_PREFIX}_plateau.csv"
            write_csv(pd.DataFrame([{"variant": "or_only", **judged}]), files["plateau"], index=False)
            eff = learning_efficiency(main_curves)
            files["efficiency"] = t / f"{LOG_PREFIX}_efficiency.csv"
            write_csv(eff, files["efficiency"], index=False)
            if len(eff):
                files["efficiency_figure"] = f / f"{LOG_PREFIX}_efficiency.png"
                plt.close(plot_efficiency(eff, files["efficiency_figure"]))
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
            key = f"ablation_{group}{suffix}"
            files[key] = t / f"{LOG_PREFIX}_{key}.csv"
            write_csv(table, files[key], index=False)
            files[f"{key}_figure"] = f / f"{LOG_PREFIX}_{key}.png"
            plt.close(plot_intervals(table, "variant", f"{group}: {what} (ref. {reference})",
                                     files[f"{key}_figure"]))  # fmt: skip
    return files


ABLATION_GROUPS = ("beta", "w1", "group_mode", "top_k")
BASE_LABEL = "base"  # an ablation table's row for the profile's own setting (Fine-Mem at beta 0.5, w1 0.5, ...)
MAIN_VARIANTS = VARIANTS  # the rows of the variant table


# ---------------------------------------------------------------------------- credit quality
EXTRA_CREDIT_VARIANTS = (
    ("eara_beta1", "eara", {"beta": 1.0}),
    ("finemem_beta0", "finemem", {"beta": 0.0}),
    ("finemem_beta0.25", "finemem", {"beta": 0.25}),
    ("finemem_beta0.75", "finemem", {"beta": 0.75}),
    ("finemem_beta1", "finemem", {"beta": 1.0}),
    ("finemem_w10", "finemem", {"w1": 0.0}),
    ("finemem_w10.25", "finemem", {"w1": 0.25}),
    ("finemem_w11", "finemem", {"w1": 1.0}),
    ("finemem_episode", "finemem", {"group_mode": "episode"}),
    ("or_only_episode", "or_only", {"group_mode": "episode"}),
)


def credit_variants(profile: Mapping[str, Any]):
    """The four variants at the profile's knobs, then Fine-Mem's ablation points (beta, w1, per-episode groups)."""
    from dataclasses import replace

    from finemem_lib.episodes.credit import CreditVariant, profile_variants

    variants = profile_variants(profile)
    by_name = {v.name: v for v in variants}
    for name, base, changes in EXTRA_CREDIT_VARIANTS:
        variants.append(CreditVariant(name, replace(by_name[base].spec, **changes)))
    return variants


def advantage_matrices_from_steps(steps: pd.DataFrame, group: str | None = None) -> tuple[dict, np.ndarray, str]:
    """``({variant: [G, T] A_t}, [G, T] v_t, group id)`` of one group of a credit-steps table (the first by default)."""
    group = group if group is not None else str(steps["group"].iloc[0])
    frame = steps[steps["group"].astype(str) == group]
    names = [c.removeprefix("A_") for c in steps.columns if c.startswith("A_")]
    pivot = {n: frame.pivot(index="rollout", columns="step", values=f"A_{n}").to_numpy() for n in names}
    values = frame.pivot(index="rollout", columns="step", values="value").to_numpy()
    return pivot, values, group


def measure_credit_quality(
    profile: Mapping[str, Any],
    paths: ProfilePaths,
    split: str = "train",
    max_instances: int | None = None,
    seeds: Sequence[int] = (0, 1),
    n_boot: int = 1000,
    command: str = "",
    write: bool = True,
) -> dict[str, Any]:
    """Credit quality of every variant on rollouts of the SFT start; writes ``05_credit_*`` tables, figures, log.

    The rollouts are training rollouts (G samples at the training temperature, the training share of
    global questions for A_t); the marginal values use all of an instance's questions.
    """
    import matplotlib.pyplot as plt
    import torch

    from finemem_lib.agents.policy import load_manager
    from finemem_lib.agents.reasoner import build_reasoner
    from finemem_lib.agents.sft import free_cpu_threads, policy_settings
    from finemem_lib.episodes.credit import credit_quality, measure_credit, paired_credit_differences
    from finemem_lib.episodes.rollout import settings_from_config
    from finemem_lib.report.ablation_plots import plot_advantage_matrices, plot_credit_quality
    from finemem_lib.training.runner import heldout_subset, load_training_data, start_model

    threads = (
        (profile.get("training") or {}).get("num_threads")
        or (profile.get("runtime") or {}).get("threads")  # a fixed count: the same numbers on every rerun
        or free_cpu_threads()
    )
    torch.set_num_threads(int(threads))  # more threads than free cores makes generation far slower on a shared CPU
    data = load_training_data(profile, paths)
    instances = heldout_subset(data[split], max_instances)
    sft_model = start_model(profile, paths)
    policy = load_manager(sft_model, **policy_settings(profile))
    reasoner = build_reasoner(profile.get("reasoner"))
    settings = settings_from_config(dict(profile), training=True)
    variants = credit_variants(profile)
    started = time.perf_counter()
    steps = measure_credit(instances, policy, reasoner, settings, variants, seeds=seeds)
    wall = time.perf_counter() - started
    quality = credit_quality(steps, variants, n_boot=n_boot).assign(source="all")
    by_source = [
        credit_quality(steps[steps["source"] == s], variants, n_boot=n_boot).assign(source=s)
        for s in sorted(steps["source"].unique())
    ]
    quality = pd.concat([quality, *by_source], ignore_index=True)
    differences = paired_credit_differences(steps, [v for v in variants if v.name != "or_only"], n_boot=n_boot)
    out: dict[str, Any] = {"steps": steps, "quality": quality, "differences": differences, "wall_s": wall}
    if not write:
        return out
    files = {
        "steps": paths.tables / f"{LOG_PREFIX}_credit_steps.csv",
        "quality": paths.tables / f"{LOG_PREFIX}_credit_quality.csv",
        "differences": paths.tables / f"{LOG_PREFIX}_credit_differences.csv",
        "figure": paths.figures / f"{LOG_PREFIX}_credit_quality.png",
        "ablations": paths.figures / f"{LOG_PREFIX}_credit_ablations.png",
        "matrices": paths.figures / f"{LOG_PREFIX}_advantage_matrices.png",
    }
    write_csv(steps, files["steps"], index=False)
    write_csv(quality, files["quality"], index=False)
    write_csv(differences, files["differences"], index=False)
    pooled = quality[quality["source"] == "all"]
    plt.close(plot_credit_quality(pooled[pooled["variant"].isin(MAIN_VARIANTS)], path=files["figure"]))
    knobs = pooled[pooled["variant"].str.startswith("finemem")]
    plt.close(plot_credit_quality(knobs, path=files["ablations"], title="Fine-Mem's knobs"))
    matrices, values, _ = advantage_matrices_from_steps(steps)
    shown = {k: matrices[k] for k in MAIN_VARIANTS if k in matrices}
    plt.close(plot_advantage_matrices(shown, values, path=files["matrices"]))
    write_json(
        paths.runs / f"{LOG_PREFIX}_credit.json",
        provenance(
            profile,
            int(seeds[0]) if seeds else 0,
            command=command,
            split=split,
            instances=len(instances),
            rollout_seeds=list(seeds),
            num_generations=settings.num_generations,
            question_ratio=settings.question_ratio,
            sft_model=repo_relative(sft_model),
            variants=[v.to_dict() for v in variants],
            wall_s=round(wall, 1),
            outputs={k: repo_relative(v) for k, v in files.items()},
        ),
    )
    out["files"] = files
    return out


# ---------------------------------------------------------------------------- command line
def _stop_time(text: str | None) -> dt.datetime | None:
    """``HH:MM`` (today, UTC) or an ISO time; None for none."""
    if not text:
        return None
    now = dt.datetime.now(dt.timezone.utc)
    try:
        hour, minute = (int(x) for x in text.split(":"))
        return now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    except ValueError:
        stamp = dt.datetime.fromisoformat(text)
        return stamp if stamp.tzinfo else stamp.replace(tzinfo=dt.timezone.utc)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m finemem_lib.training.study", description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="long", help="profile name (configs/<name>.yaml) or a YAML path")
    parser.add_argument("--plan", default=None, help="study plan YAML (e.g. configs/study_long.yaml)")
    parser.add_argument("--credit", action="store_true", help="measure credit quality on SFT-start rollouts first")
    parser.add_argument(
        "--credit-seeds", nargs="+", type=int, default=[0, 1], help="rollout seeds of the credit measure"
    )
    parser.add_argument("--credit-instances", type=int, default=None, help="training instances used (default: all)")
    parser.add_argument("--results-dir", default=None)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--stop-at", default=None, help="UTC HH:MM or ISO time after which no new run is launched")
    parser.add_argument("--only", nargs="+", default=None, help="only these plan groups")
    parser.add_argument("--dry-run", action="store_true", help="list the runs and which are finished; train nothing")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("bm25s").setLevel(logging.WARNING)
    profile = load_profile(args.profile)
    given = list(argv) if argv is not None else sys.argv[1:]
    command = " ".join(["python", "-m", "finemem_lib.training.study", *(repo_relative(a) or a for a in given)])
    paths = profile_paths(profile, args.results_dir, args.data_dir)
    if args.credit:
        credit = measure_credit_quality(
            profile, paths, max_instances=args.credit_instances, seeds=args.credit_seeds, command=command
        )
        print(credit["quality"].round(3).to_string(index=False))
        print(f"credit measure: {credit['wall_s']:.0f} s")
    if not args.plan:
        return 0
    runs = load_plan(args.plan, profile)
    if args.only:
        runs = [r for r in runs if r.group in set(args.only)]
    if args.dry_run:
        finished = set(collect(profile, runs, paths)["runs"].get("run", pd.Series(dtype=str)))
        for r in runs:
            name = f"{r.config(profile)['name']}_{r.variant}_s{r.seed}"
            print(f"{'done' if name in finished else 'todo'}  {r.label:45s} {name}")
        return 0
    started = time.perf_counter()
    done = run_plan(profile, runs, paths, _stop_time(args.stop_at), command)
    print(f"{len(done)} of {len(runs)} runs finished in this call ({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
