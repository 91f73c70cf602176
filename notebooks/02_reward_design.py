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
# # 02 · Reward design: from memory operations to step rewards
#
# Fine-Mem gives every chunk step `t` of a memory-construction episode its own reward:
#
# * **CSR**, the chunk-level step reward: `r_chunk(t)` = accuracy on small QA tasks about chunk `t`,
#   answered on the memory right after step `t`;
# * **EARA**, evidence-anchored reward attribution: the global score is routed back to the steps
#   that *wrote* the memory items the reasoner retrieved as evidence,
#   `r_EARA(t) = (1 − β) · r_global / T + β · N_t`.
#
# This notebook walks through the kernels of `finemem_lib.rewards` on a small hand-made episode:
# we write the manager's output by hand, apply it to the memory, retrieve evidence with BM25, score
# the answers, and compute every reward component.

# %% tags=["parameters"]
profile = "default"
results_dir = None
data_dir = None
beta = 0.5

# %%
import numpy as np

from finemem_lib import rewards
from finemem_lib.config import load_profile
from finemem_lib.memory import Memory
from finemem_lib.metrics import score
from finemem_lib.ops import format_score, parse_operations
from finemem_lib.paths import profile_paths
from finemem_lib.plots import plot_evidence_heatmap, plot_step_series
from finemem_lib.retrieval import BM25Index
from finemem_lib.tokens import regex_token_count

cfg = load_profile(profile)
paths = profile_paths(cfg, results_dir, data_dir)
top_k = cfg["retrieval"]["top_k"]
w1, w2 = cfg["rewards"]["w1"], cfg["rewards"]["w2"]

# %% [markdown]
# ## A hand-made episode
# Four chunks. The manager's completions are written in the Qwen `<tool_call>` format the parser
# reads; step 2 contains a malformed call and step 3 updates a fact that changed.

# %%
chunks = [
    "Mira Okafor works as a glassblower. The harbour was busy that morning.",
    "Tomas Reyes keeps three goats. It rained for most of the week.",
    "Mira Okafor lives in Lisbon. The market sold figs.",
    "Mira Okafor now lives in Porto. A ferry left at noon.",
]
completions = [
    '<tool_call>{"name": "memory_insert", "arguments": {"content": "Mira Okafor works as a glassblower."}}</tool_call>',
    '<tool_call>{"name": "memory_insert", "arguments": {"content": "Tomas Reyes keeps three goats."}}</tool_call>\n'
    '<tool_call>{"name": "memory_insert", "arguments": {"content": "It rained for most of the week."}}</tool_call>',
    '<tool_call>{"name": "memory_insert", "arguments": {"content": "Mira Okafor lives in Lisbon."}}</tool_call>\n'
    "<tool_call>{oops</tool_call>",
    None,  # filled below: it updates the item written at step 2
]
chunk_qas = [
    [("What is Mira Okafor's job?", "glassblower")],
    [("How many goats does Tomas Reyes keep?", "three")],
    [("Where does Mira Okafor live?", "Lisbon")],
    [("Where does Mira Okafor live now?", "Porto")],
]
global_qas = [
    ("What does Mira Okafor work as?", "glassblower"),
    ("How many goats does Tomas Reyes keep?", "three"),
    ("Where does Mira Okafor live now?", "Porto"),
    ("What did the market sell?", "figs"),
]
T = len(chunks)

# %% [markdown]
# ## Running the episode: format score and r_chunk per step
# The reader here is the simplest possible one: it "answers" with the text of the retrieved items,
# and the answer is scored with the `squad` rule (gold contained in the prediction). The real
# reasoners live in `finemem_lib.agents`.

# %%
memory = Memory(id_style="hex", seed=cfg["seed"])
r_fmt, r_chunk_rows, writes = [], [], {}
for t in range(T):
    if completions[t] is None:
        lisbon = next(item.id for item in memory.items if "Lisbon" in item.content)
        completions[t] = (
            '<tool_call>{"name": "memory_update", "arguments": '
            f'{{"memory_id": "{lisbon}", "new_content": "Mira Okafor now lives in Porto."}}}}</tool_call>'
        )
    parsed = parse_operations(completions[t], style="content")
    results = memory.apply_all(parsed.operations, step=t)
    r_fmt.append(format_score(parsed, results))
    index = BM25Index(memory.items)
    r_chunk_rows.append(
        [score("squad", " ".join(memory.get(h.id).content for h in index.search(q, top_k)), a) for q, a in chunk_qas[t]]
    )
    print(f"step {t}: emitted {parsed.n_emitted}, valid {parsed.n_valid}, r_fmt={r_fmt[-1]:.2f}, memory={len(memory)}")
r_chunk = rewards.chunk_step_reward(r_chunk_rows)
print("final memory:\n" + memory.render(None))

# %% [markdown]
# ## Global questions on the final memory, and the evidence they used

# %%
index = BM25Index(memory.items)
scores, evidence_steps = [], []
for question, gold in global_qas:
    hits = index.search(question, top_k)
    prediction = " ".join(memory.get(h.id).content for h in hits)
    scores.append(score("squad", prediction, gold))
    evidence_steps.append([memory.writer_step(h.id) for h in hits])
    print(f"{question!r:45} -> steps {evidence_steps[-1]}, score {scores[-1]:.0f}")
r_global = float(np.mean(scores))
N = rewards.evidence_contribution(scores, evidence_steps, T)
fig = plot_evidence_heatmap(evidence_steps, T, scores, path=paths.figures / "02_evidence_heatmap.png")

# %% [markdown]
# ## EARA at β = 0, 0.5, 1 and the conservation check
# β = 0 spreads the global reward uniformly (every step gets `r_global / T`); β = 1 gives each step
# exactly its evidence contribution `N_t`. Because every query retrieved at least one item,
# Σ_t r_EARA(t) = r_global for every β.

# %%
eara_by_beta = {f"β={b}": rewards.eara(r_global, N, b) for b in (0.0, 0.5, 1.0)}
for name, values in eara_by_beta.items():
    print(f"{name}: {np.round(values, 3)}  sum={values.sum():.4f}  (r_global={r_global:.4f})")
    assert np.isclose(values.sum(), r_global)
fig = plot_step_series(eara_by_beta, "r_EARA per step", path=paths.figures / "02_eara_beta.png")

# %% [markdown]
# ## The four reward variants side by side
# OR-only gives every step the full global reward, so a step that wrote nothing useful is credited as
# much as the step that wrote the evidence; Fine-Mem separates them.

# %%
chunk_tokens = [regex_token_count(c) for c in chunks]
r_comp = rewards.compression_reward(memory.num_tokens(), chunk_tokens)
variants = {
    v: rewards.step_rewards(v, r_global, N, r_chunk, r_fmt, r_comp, beta=beta, w1=w1, w2=w2)
    for v in rewards.VARIANTS
}
for v, values in variants.items():
    print(f"{v:8} {np.round(values, 3)}")
fig = plot_step_series(variants, "Step reward by variant", path=paths.figures / "02_reward_variants.png")
