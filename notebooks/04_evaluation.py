# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 04 · Evaluation on Memalpha and MemoryAgentBench
#
# **What you will learn here** (about 2 min on a laptop with the default profile, offline): how every
# method is scored on the same questions; what in-distribution and out-of-distribution mean and why the
# paper tests both; the two papers' table layouts with bootstrap intervals; how the seeds of a reward variant
# combine into one mean with an interval, and whether it beat OR-only and the SFT start; and how a trained
# manager's memory differs from its SFT start on single questions. Needs notebooks 01-03 (data, SFT start, runs).
#
# Every method answers the same questions with the same frozen reasoner and BM25 top-k retrieval; only
# the memory differs. Methods: the baselines (long-context window, RAG-BM25 over the raw chunks,
# store-everything, closed-book with no memory at all) and the managers: the SFT start and the final
# model of every (variant, seed) trained in notebook 03, each a row `<variant>_s<seed>`, followed by the
# variant's mean over its seeds.
#
# Beside the methods, **ceilings**: scripted reference policies (`finemem_lib.episodes.ceilings`) that
# write a memory with the generator's knowledge of what each sentence is (a fact, an update, filler, a
# lure), answered through the same memory, retrieval, reader and scorers. They say how far a manager could
# go, not what a method reached: the tables list them in a block of their own (`kind: ceiling`) and they
# take no part in comparing the methods. Only the synthetic held-out split carries the sentence roles
# they need, so they run there and are skipped (one log line) on MemoryAgentBench and on real data.
#
# **In distribution** (Memalpha): held-out instances drawn like the training data: the same sources,
# lengths and templates, new people. **Out of distribution** (MemoryAgentBench): other kinds of text,
# contexts several times longer than any training instance, and tasks the manager never trained on
# (multi-hop retrieval, long-range summary, conflicting facts). The paper tests both because a manager
# can learn what to keep for its training distribution without learning a policy that carries over;
# Fine-Mem's claim is a gain on both, larger out of distribution.
#
# Offline, the in-distribution split is the synthetic benchmark's test split, and MemoryAgentBench is an
# offline analogue in its exact schema (`finemem_lib.data.mab_synthetic`), written as parquet and read
# back through the real MemoryAgentBench loader and chunker. In the paper profile the same cells
# evaluate on Memalpha's test split and Mem-α's processed MemoryAgentBench copy.

# %% tags=["parameters"]
profile = "default"
results_dir = None
data_dir = None

# %%
import logging

import matplotlib.pyplot as plt
from IPython.display import Image, display

from finemem_lib.data.prepared import load_prepared
from finemem_lib.evaluation.inspect import benchmark_overview, describe_example, example_pair
from finemem_lib.evaluation.plots import plot_score_vs_memory
from finemem_lib.evaluation.runner import preflight, run_evaluation
from finemem_lib.evaluation.seed_means import is_mean_row, verdict_sentences
from finemem_lib.evaluation.tables import (
    AVERAGING_RULES,
    instance_scores,
    paper_differences,
    paper_tables,
    rows_of_kind,
)
from finemem_lib.infra.config import load_profile
from finemem_lib.infra.paths import profile_paths

logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
for noisy in ("bm25s", "httpx"):
    logging.getLogger(noisy).setLevel(logging.WARNING)
cfg = load_profile(profile)
paths = profile_paths(cfg, results_dir, data_dir)
plan = preflight(cfg, paths)  # data, scoring rules, model folders, reasoner endpoint: checked before any work
for bench in plan.benchmarks:
    print(f"{bench.name}: {len(bench.instances)} instances ({bench.description})")
print("methods:", ", ".join(m.name for m in plan.methods if m.role != "ceiling"))
ceiling_plan = plan.ceilings()
if ceiling_plan["requested"]:
    print("ceilings:", ", ".join(ceiling_plan["requested"]), "on", ", ".join(ceiling_plan["applied"]) or "no benchmark")
    for name, reason in ceiling_plan["skipped"].items():
        print(f"  skipped on {name}: {reason}")

# %% [markdown]
# ## What is out of distribution here
#
# Instances per source, their length in chunks and tokens, and chunks relative to a training instance.

# %%
train = load_prepared(paths.data, "train")
benchmark_overview(plan.benchmarks, train)

# %% [markdown]
# ## Evaluate every method on both benchmarks
#
# One record per question (prediction, score, retrieved items and the steps that wrote them, memory
# tokens) is appended to `results/eval/04_<benchmark>_<method>.jsonl` after each instance, under a header
# with the configuration hash, the model and the git revision. A rerun skips what is already recorded.

# %%
records = run_evaluation(cfg, paths, plan=plan)
per_instance = instance_scores(records)
tables = paper_tables(records, cfg)
for name, (long, wide) in tables.items():
    long.to_csv(paths.tables / f"04_{name}_long.csv", index=False)
    wide.to_csv(paths.tables / f"04_{name}.csv")
differences = paper_differences(records, cfg)  # each variant's mean over seeds vs OR-only's and the SFT start
for name, table in differences.items():
    table.to_csv(paths.tables / f"04_{name}_differences.csv", index=False)
print(f"{len(records)} question records, {len(per_instance)} (method, instance) pairs")

# %% [markdown]
# ## Memalpha layout (in distribution)
#
# Offline, the synthetic sources fill the Memalpha columns they imitate: `synth_factoid` → squad,
# `synth_update` → lme (knowledge updates), `synth_icl` → ttl; the other columns have no offline data (–).

# %%
if "memalpha" in tables:
    display(rows_of_kind(tables["memalpha"][1], "method"))
    print(AVERAGING_RULES["memalpha"])

# %% [markdown]
# ### Ceilings on the Memalpha split (reference policies, not methods)
#
# `oracle` stores every sentence that states a fact, UPDATEs a fact's item when its value changes and skips
# filler and lures, without ever seeing the questions; `oracle_view` is the same limited to the items the
# manager is shown; `skip_filler` stores all but filler and lures and never updates; `oracle_questions`
# knows the questions and stores only what they ask; `teacher` is the SFT start's imperfect teacher. The
# gap between a manager and `oracle` is what choosing what to store (and updating it) could still add.

# %%
if "memalpha" in tables:
    ceiling_rows = rows_of_kind(tables["memalpha"][1], "ceiling")
    if len(ceiling_rows):
        display(ceiling_rows)
    else:
        print("no ceilings on this benchmark (see above)")

# %% [markdown]
# ## MemoryAgentBench layout (out of distribution)
#
# AR (SH-Doc, MH-Doc, LME), TTL (TREC-C, NLU, TREC-F, Clinic, Banking), LRU (InfBench-Sum), and CR
# (FactConsolidation), which both papers skip. Offline, `ruler_qa1_synth` → SH-Doc, `ruler_qa2_synth` →
# MH-Doc, `icl_trec_coarse_synth` → TREC-C, `icl_banking77_synth` → Banking, `infbench_sum_synth` →
# InfBench-Sum, `factconsolidation_sh_synth` → CR.

# %%
if "mab" in tables:
    display(rows_of_kind(tables["mab"][1], "method"))
    print(AVERAGING_RULES["mab"])

# %% [markdown]
# ## Trained managers over their seeds: who won, with intervals
#
# One seed of a GRPO run is one draw: another seed (other rollouts, another order of the training
# instances) gives another manager, and a gap between two variants smaller than the spread between seeds
# says nothing. So each variant's seeds are combined into one row, `<variant> (mean of N seeds)`:
# per column the mean over seeds of each seed's mean over instances. Its 95 % interval is a **two-level
# bootstrap**: a replicate draws N seeds with replacement, then within each drawn seed its instances with
# replacement; the interval widens with the spread between seeds as well as between instances.
#
# The differences below are the variant's mean minus OR-only's mean and minus the SFT start, **paired**: on
# the same instances, and seed by seed where both variants ran the same seeds (those runs saw the same
# training instances in the same order), bootstrapped the same two-level way. The verdict reads the interval:
# `higher` or `lower` when it excludes 0, `no difference (interval spans 0)` when it does not, and
# `one seed: not a comparison` when a variant ran one seed only (its interval then covers the instances,
# not the seeds, so it says nothing about another seed). The sentences are computed from these rows.

# %%
for name, (_, wide) in tables.items():
    methods = rows_of_kind(wide, "method")
    means = methods[[is_mean_row(m) for m in methods.index]]
    if not len(means):
        print(f"{name}: no trained managers evaluated")
        continue
    print(f"{name}: mean over seeds")
    display(means)
    if name in differences:
        table = differences[name]
        display(table[table["column"] == "avg"].drop(columns="column").round(3))
        for sentence in verdict_sentences(table, name):
            print(sentence)

# %% [markdown]
# Per column (which source a variant gains or loses on): `04_<benchmark>_differences.csv` beside the tables.

# %% [markdown]
# ## Score against memory length
#
# A good manager sits high and to the left: high scores from a short memory. The memory length is the text
# the reader is given: store-everything keeps the whole context, RAG is given its top-k chunks per question,
# long-context its window, closed-book nothing. Ceilings are the hollow grey markers labelled `(ceiling)`.

# %%
figure = paths.figures / "04_score_vs_memory.png"
plt.close(plot_score_vs_memory(per_instance, figure))
display(Image(filename=str(figure)))

# %% [markdown]
# ## Where a trained manager differs from its SFT start
#
# One question where a trained manager beats the SFT start, and one where it loses, with what each
# retrieved from its memory (and the step that wrote each item).

# %%
start = next((m.name for m in plan.methods if m.role == "start"), None)
trained = [m.name for m in plan.methods if m.role == "trained"]
chosen = next((name for name in trained if name.startswith("finemem")), trained[0] if trained else None)
if start and chosen:
    win, loss = example_pair(records, chosen, start)
    print(f"{chosen} beats {start}:\n{describe_example(win, chosen, start)}\n")
    print(f"{chosen} loses to {start}:\n{describe_example(loss, chosen, start)}")

# %% [markdown]
# ## Things to try
#
# - Set `evaluation.mab_synthetic.context_sentences` to 440 in a profile copy: contexts twice as long.
#   Which methods lose most out of distribution, and does a manager's memory grow with the context?
# - Set `retrieval.top_k: 5`: RAG and store-everything retrieve more; does the SFT start's memory profit
#   as much, or does its short memory already hold what is asked?
# - Add your own MemoryAgentBench-schema parquet under `evaluation.custom_benchmarks` with a rule in
#   `evaluation.source_rules` (docs/evaluation.md, "Bring your own benchmark") and rerun this notebook.
