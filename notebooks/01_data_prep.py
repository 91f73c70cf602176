# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 01 · Data: instances, chunks and chunk QAs
#
# **What you will learn here** (about 10 s on a laptop with the default profile, offline):
# 1. what one *instance* is: a long input cut into chunks that the memory manager reads one at a time,
#    global questions asked after the last chunk, and small *chunk QAs* about each chunk;
# 2. why the benchmark has three kinds of sources, and which one makes UPDATE matter;
# 3. how long inputs, chunks and question lists are, and where the prepared data is written for notebooks 02–05.
#
# Everything downstream consumes one type, `finemem_lib.data.Instance`: a stream of **chunks** that
# the memory manager reads one at a time, the **global questions** asked after the last chunk, and
# per chunk a few **chunk QAs** (the data behind Fine-Mem's Chunk-level Step Reward, CSR).
#
# * The `smoke` and `default` profiles build an offline **synthetic benchmark** in the exact Memalpha
#   schema: facts about made-up people among distractors (`synth_factoid`), facts that change over
#   time so the latest value is asked (`synth_update`), and labelled samples for test-time learning
#   (`synth_icl`). The test split uses people whose names never occur in train.
# * The `paper` profile loads **Memalpha** (`YuWangX/Memalpha`) and **MemoryAgentBench**
#   (`ai-hyz/MemoryAgentBench`, chunked by sentence packing: 2048 tokens, 1024 for Test_Time_Learning),
#   and builds chunk QAs with a generator LLM and a verifier LLM (set `CHUNKQA_GENERATOR_*` and
#   `CHUNKQA_VERIFIER_*`).
#
# The prepared data is written under the profile's data folder; notebooks 02 and 03 read it from there.

# %% tags=["parameters"]
profile = "default"
results_dir = None
data_dir = None

# %%
import time

import pandas as pd

from finemem_lib.core.sentences import split_sentences
from finemem_lib.data.prepared import chunk_table, instance_table, load_prepared, prepare_profile_data
from finemem_lib.infra.atomic import write_csv
from finemem_lib.infra.config import load_profile
from finemem_lib.infra.paths import profile_paths, repo_relative
from finemem_lib.report.plots import plot_data_sizes, plot_questions

cfg = load_profile(profile)
paths = profile_paths(cfg, results_dir, data_dir)
print(f"profile {cfg['name']!r}: data kind {cfg['data']['kind']!r}, prepared data -> {repo_relative(paths.data)}")

# %% [markdown]
# ## Build (or load) and write the prepared data

# %%
start = time.perf_counter()
splits, manifest = prepare_profile_data(cfg, paths.data)
elapsed = time.perf_counter() - start
for split, info in manifest["splits"].items():
    print(f"{split:>28}: {info['instances']:4d} instances  {info['sources']}")
print(f"built and written in {elapsed:.2f} s; {manifest.get('chunk_qa_status', '')}")
assert load_prepared(paths.data, "train") == splits["train"]  # what later notebooks will read

# %% [markdown]
# ## One instance, sentence by sentence
# For the synthetic sources the metadata records each sentence's role: a **fact**, an **update**
# that supersedes an earlier fact with the same key, a **distractor** nobody asks about, or a
# labelled **example**. `*` marks facts that a global question asks about.

# %%
for source in sorted({inst.source for inst in splits["train"]}):
    inst = next(i for i in splits["train"] if i.source == source)
    print(f"=== {inst.id}: {inst.num_chunks} chunks, {len(inst.questions)} questions")
    roles = inst.metadata.get("sentences")
    for t, chunk in enumerate(inst.chunks[:2]):
        print(f"-- chunk {t}")
        for i, sentence in enumerate(split_sentences(chunk)[:6]):
            role = roles[t][i] if roles else {"role": "?", "asked": False}
            print(f"   {role['role']:>10}{'*' if role['asked'] else ' '} {sentence}")
        for qa in inst.chunk_qas[t][:2]:
            print(f"   chunk QA: {qa.question!r} -> {qa.answers[0]!r}")
    for qa in inst.questions[:2]:
        print(f"   global Q: {qa.question!r} -> {qa.answers[0]!r}")

# %% [markdown]
# ## Sizes
# Tokens are counted with the offline regex counter (about one token per word or punctuation mark).

# %%
instances = instance_table(splits)
chunks = chunk_table(splits)
summary = (
    instances.groupby(["split", "source"])
    .agg(
        instances=("id", "count"),
        chunks_per_instance=("chunks", "mean"),
        tokens_per_instance=("tokens", "mean"),
        questions_per_instance=("questions", "mean"),
        chunk_qas_per_instance=("chunk_qas", "mean"),
    )
    .round(1)
)
write_csv(summary, paths.tables / "01_data_summary.csv")
summary

# %% [markdown]
# The figures below use one colour per split everywhere (train blue, test orange), so a difference between the
# splits is a difference in colour, and the sources are on the x-axis.

# %%
fig = plot_data_sizes(instances, chunks, paths.figures / "01_chunks_and_tokens.png")

# %%
fig = plot_questions(instances, chunks, paths.figures / "01_questions_and_chunk_qa_coverage.png")
coverage = chunks.assign(has_qa=chunks["chunk_qas"] > 0)
print("share of chunks with at least one chunk QA:")
print(coverage.groupby(["split", "source"])["has_qa"].mean().round(3).to_string())

# %% [markdown]
# ## What the next notebooks read
# `finemem_lib.data.prepared.load_prepared(paths.data, split)` returns the instances written above
# (parquet in the Memalpha schema plus a `chunk_qas` column, and `manifest.json` beside them).

# %%
pd.DataFrame(manifest["splits"]).T[["file", "instances"]]

# %% [markdown]
# ## Things to try
# * Set `data.synthetic.chunks_per_instance` to 12 in `configs/default.yaml` (or a copy) and run again: the inputs
#   get longer while the manager's view of memory stays 5 items, which is where forgetting starts to cost.
# * Raise `data.synthetic.update_probability` to 0.9: `synth_update` instances then restate most facts with new
#   values, and its global questions ask for the latest one: the case UPDATE (and a stale memory) is about.
# * Lower `data.chunk_qa.k` to 1: every chunk keeps one chunk QA, so the CSR reward of notebook 02 becomes 0 or 1.
