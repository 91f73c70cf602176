"""The episode viewer: one self-contained HTML page per episode (inline CSS and JS, nothing fetched).

Per chunk step: the chunk (numbered sentences, as the extractive manager sees it), the manager's
operations and whether each executed, the chunk's own QAs on M_t, the memory after the step, and
colour-coded r_chunk, N_t, r_fmt, r_t under each reward variant and (when the episode's G-rollout
group is given) the GRPO advantage A_t. Per global question: the retrieved items, the step that
wrote each, the prediction and the score.

    write_episode_html("results/episodes/02_episode.html", episode, instance)   # a file to open in a browser
    show_episode(episode, instance)                                              # inline in a notebook

The page carries a ``Content-Security-Policy: default-src 'none'`` so a browser fetches nothing for it.
"""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from finemem_lib.core.memory import MemoryItem
from finemem_lib.core.ops import DUPLICATE_PREFIX
from finemem_lib.core.reward_spec import VARIANT_TABLE, VARIANTS, RewardSpec
from finemem_lib.core.sentences import split_sentences
from finemem_lib.data.instance import Instance
from finemem_lib.episodes.advantages import episode_group_advantages, group_step_rewards
from finemem_lib.episodes.rollout import Episode
from finemem_lib.report.memory_file import describe_operation

CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"
VARIANT_NAMES = {v.name: v.label for v in VARIANT_TABLE}

_STYLE = """
:root { --ink:#1f2933; --muted:#616e7c; --line:#d9e2ec; --bg:#f5f7fa; --ok:#1b7f3b; --bad:#b42318; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
       margin: 0; background: var(--bg); }
header { background: #243b53; color: #fff; padding: 14px 22px; }
header h1 { font-size: 19px; margin: 0 0 4px; }
header .facts span { margin-right: 18px; white-space: nowrap; }
main { padding: 14px 22px 40px; max-width: 1400px; }
nav { position: sticky; top: 0; background: var(--bg); padding: 8px 0; z-index: 2;
      border-bottom: 1px solid var(--line); }
.numbers { display: flex; gap: 14px; align-items: flex-start; flex-wrap: wrap; }
nav a, nav button { margin-right: 6px; font-size: 13px; }
nav a { color: #2458a6; text-decoration: none; padding: 2px 6px; border: 1px solid var(--line); border-radius: 4px;
        background: #fff; }
h2 { font-size: 16px; margin: 22px 0 8px; }
table { border-collapse: collapse; background: #fff; }
th, td { border: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #eef2f7; font-weight: 600; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.legend { color: var(--muted); font-size: 12.5px; margin: 4px 0 10px; }
.swatch { display: inline-block; width: 34px; height: 12px; vertical-align: middle; border: 1px solid var(--line); }
section.step, section.question { background: #fff; border: 1px solid var(--line); border-radius: 6px;
       margin: 12px 0; padding: 10px 14px; }
section.step > h3, section.question > h3 { margin: 0 0 8px; font-size: 15px; }
.cols { display: grid; grid-template-columns: minmax(0, 1.15fr) minmax(0, 1fr); gap: 14px; }
@media (max-width: 900px) { .cols { grid-template-columns: 1fr; } }
ol.sentences { margin: 0; padding-left: 26px; }
ol.sentences li { margin: 1px 0; }
.label { font-size: 12px; text-transform: uppercase; letter-spacing: .04em; color: var(--muted); margin: 8px 0 3px; }
.ok { color: var(--ok); font-weight: 600; } .bad { color: var(--bad); font-weight: 600; }
.dup { color: #9a6700; font-weight: 600; }
ul.memory { margin: 0; padding-left: 0; list-style: none; }
ul.memory li { padding: 2px 6px; border-left: 3px solid var(--line); margin: 2px 0; }
ul.memory li.new { border-left-color: #2f80ed; background: #eef5ff; }
.id { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 12px; color: #334e68; }
.tag { font-size: 11px; color: var(--muted); }
details pre { white-space: pre-wrap; font-size: 12px; background: var(--bg); padding: 6px; margin: 4px 0; }
.rewards td, .rewards th { padding: 3px 7px; }
.empty { color: var(--muted); font-style: italic; }
.badge { font-size: 11px; padding: 0 5px; border-radius: 8px; white-space: nowrap; }
.badge.ins { background: #dbeafe; color: #1e4e8c; } .badge.upd { background: #fde7c8; color: #8a4b00; }
.badge.del { background: #fde2e1; color: #8f1d15; }
ul.memory li.gone { border-left-color: #e67c73; color: var(--muted); }
a.steplink { color: #2458a6; }
"""

_SCRIPT = """
document.getElementById('expand').onclick = function () {
  document.querySelectorAll('details').forEach(function (d) { d.open = true; }); };
document.getElementById('collapse').onclick = function () {
  document.querySelectorAll('details').forEach(function (d) { d.open = false; }); };
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _mix(low: tuple[int, int, int], high: tuple[int, int, int], share: float) -> str:
    share = float(min(1.0, max(0.0, share)))
    r, g, b = (round(lo + (hi - lo) * share) for lo, hi in zip(low, high, strict=True))
    return f"rgb({r},{g},{b})"


def cell_colour(value: float, low: float, high: float, diverging: bool = False) -> str:
    """Background colour of a value: white -> green over [low, high]; diverging: red < 0 < blue."""
    if not np.isfinite(value):
        return "#ffffff"
    if diverging:
        bound = max(abs(low), abs(high), 1e-12)
        if value < 0:
            return _mix((255, 255, 255), (230, 124, 115), -value / bound)
        return _mix((255, 255, 255), (104, 157, 226), value / bound)
    span = high - low
    return _mix((255, 255, 255), (94, 178, 120), 0.0 if span <= 1e-12 else (value - low) / span)


def _spec(
    beta: float | None = None, w1: float | None = None, w2: float | None = None, mode: str | None = None
) -> RewardSpec:
    return RewardSpec.of(RewardSpec(), beta=beta, w1=w1, w2=w2, group_mode=mode)  # None: the spec's defaults


def reward_rows(
    episode: Episode,
    group: Sequence[Episode] | None = None,
    variants: Sequence[str] = VARIANTS,
    beta: float | None = None,
    w1: float | None = None,
    w2: float | None = None,
    mode: str | None = None,
) -> dict[str, np.ndarray]:
    """Per-step quantities shown in the viewer: r_chunk, N_t, r_fmt, r_t per variant and A_t per variant.

    Knobs left None take :class:`RewardSpec`'s values."""
    spec = _spec(beta, w1, w2, mode)
    rows: dict[str, np.ndarray] = {"r_chunk": episode.r_chunk, "N_t": episode.N, "r_fmt": episode.r_fmt}
    for v in variants:
        rows[f"r_t {VARIANT_NAMES.get(v, v)}"] = group_step_rewards([episode], spec.with_variant(v))[0]
    if group is not None and len(group) >= 2:
        index = next(i for i, e in enumerate(group) if e is episode)
        for v in variants:
            rows[f"A_t {VARIANT_NAMES.get(v, v)}"] = episode_group_advantages(group, spec.with_variant(v))[index]
    return rows


def _colours(rows: dict[str, np.ndarray]) -> dict[str, list[str]]:
    """Cell colours: green from 0 to max(1, largest value) per component and for all variants' r_t together;
    one diverging scale (red below 0, blue above) for all A_t."""
    groups = {name: name.split(" ", 1)[0] if name.startswith(("r_t", "A_t")) else name for name in rows}
    out = {}
    for name, values in rows.items():
        values = np.asarray(values, dtype=float)
        scale = np.concatenate([np.asarray(rows[k], float) for k, g in groups.items() if g == groups[name]])
        finite = scale[np.isfinite(scale)]
        diverging = groups[name] == "A_t"
        if diverging:
            low, high = (float(finite.min()), float(finite.max())) if finite.size else (-1.0, 1.0)
        else:  # from 0 to at least 1 (the range of r_chunk, N_t and r_fmt), so a small reward stays pale
            low, high = 0.0, max(1.0, float(finite.max()) if finite.size else 1.0)
        out[name] = [cell_colour(x, low, high, diverging) for x in values]
    return out


def _reward_table(rows: dict[str, np.ndarray], colours: dict[str, list[str]], T: int) -> str:
    head = "".join(f'<th><a href="#step-{t}">step {t}</a></th>' for t in range(T))
    body = []
    for name, values in rows.items():
        cells = "".join(
            f'<td class="num" style="background:{colour}">{float(x):.3f}</td>'
            for x, colour in zip(values, colours[name], strict=True)
        )
        body.append(f'<tr data-row="{_e(name)}"><th>{_e(name)}</th>{cells}</tr>')
    return f'<table class="rewards"><tr><th></th>{head}</tr>{"".join(body)}</table>'


def _step_numbers(rows: dict[str, np.ndarray], colours: dict[str, list[str]], t: int) -> str:
    """The step's column of the reward table: components in one row, then r_t and A_t per variant."""

    def cell(name: str) -> str:
        if name not in rows:
            return '<td class="num empty">–</td>'
        return f'<td class="num" style="background:{colours[name][t]}">{float(rows[name][t]):.3f}</td>'

    parts = [name for name in rows if not name.startswith(("r_t", "A_t"))]
    variants = [name.split(" ", 1)[1] for name in rows if name.startswith("r_t ")]
    components = "".join(f"<th>{_e(n)}</th>{cell(n)}" for n in parts)
    per_variant = "".join(f"<tr><th>{_e(v)}</th>{cell('r_t ' + v)}{cell('A_t ' + v)}</tr>" for v in variants)
    return (
        f'<table class="rewards"><tr>{components}</tr></table>'
        f'<table class="rewards"><tr><th>variant</th><th>r_t</th><th>A_t</th></tr>{per_variant}</table>'
    )


def _memory_items(before: Sequence[MemoryItem], after: Sequence[MemoryItem], t: int) -> str:
    """M_t as list items: a badge says what step t did to each item (inserted, updated: was ..., deleted)."""
    previous = {item.id: item.content for item in before}
    current = {item.id for item in after}
    rows = []
    for item in after:
        if item.id not in previous:
            badge, css = f"<span class='badge ins'>inserted at step {t}</span>", "new"
        elif previous[item.id] != item.content:
            badge = (
                f"<span class='badge upd'>updated at step {t}</span> <s class='tag'>was: {_e(previous[item.id])}</s>"
            )
            css = "new"
        else:
            badge, css = f"<span class='tag'>from step {item.step}</span>", ""
        rows.append(f"<li class='{css}'><span class='id'>[{_e(item.id)}]</span> {_e(item.content)} {badge}</li>")
    for item_id, content in previous.items():
        if item_id not in current:
            rows.append(
                f"<li class='gone'><span class='id'>[{_e(item_id)}]</span> <s>{_e(content)}</s> "
                f"<span class='badge del'>deleted at step {t}</span></li>"
            )
    return "".join(rows)


def _status(result) -> str:
    """Executed (r_fmt success), executed as a duplicate (no r_fmt credit, as Mem-alpha's fc_success) or failed."""
    if not result.ok:
        return '<span class="bad">failed</span>'
    if result.reason.startswith(DUPLICATE_PREFIX):
        return '<span class="dup">duplicate (no r_fmt credit)</span>'
    return '<span class="ok">executed</span>'


def _step_section(
    episode: Episode, instance: Instance, t: int, rows: dict[str, np.ndarray], colours: dict[str, list[str]]
) -> str:
    record = episode.steps[t]
    chunk = instance.chunks[t]
    sentences = "".join(f"<li>{_e(s)}</li>" for s in split_sentences(chunk)) or '<li class="empty">(empty)</li>'
    ops = []
    for op, result in zip(record.operations, record.results, strict=True):
        status = _status(result)
        reason = f" <span class='tag'>{_e(result.reason)}</span>" if result.reason and result.reason != "ok" else ""
        ops.append(f"<tr class='op'><td>{_e(describe_operation(op))}</td><td>{status}{reason}</td></tr>")
    unparsed = record.n_emitted - len(record.operations)
    if unparsed > 0:
        ops.append(
            f"<tr class='op'><td>{unparsed} call(s) not parsed</td><td><span class='bad'>failed</span></td></tr>"
        )
    ops_html = (
        f"<table><tr><th>operation</th><th>result</th></tr>{''.join(ops)}</table>"
        if ops
        else '<div class="empty">no operation emitted</div>'
    )
    memory_html_items = _memory_items(episode.steps[t - 1].memory_after if t > 0 else (), record.memory_after, t)
    memory_html = (
        f"<ul class='memory'>{memory_html_items}</ul>"
        if memory_html_items
        else '<div class="empty">(memory is empty)</div>'
    )
    qas = instance.chunk_qas[t] if t < len(instance.chunk_qas) else ()
    marks = list(record.chunk_correct)
    qa_items = "".join(
        f"<li>{_e(qa.question)} → {_e(qa.answers[0])} "
        f"{'<span class=ok>✓</span>' if marks and marks[k] else '<span class=bad>✗</span>' if marks else ''}</li>"
        for k, qa in enumerate(qas)
    )
    qa_html = f"<ul>{qa_items}</ul>" if qas else '<div class="empty">no chunk QA</div>'
    trouble = unparsed > 0 or not record.operations  # failed operations already say why in the table
    return f"""
<section class="step" id="step-{t}" data-step="{t}">
  <h3>Step {t} <span class="tag">{record.n_executed}/{len(record.operations)} operations executed ·
      {record.memory_items} items, {record.memory_tokens} tokens after the step</span></h3>
  <div class="cols">
    <div>
      <div class="label">chunk {t} (numbered sentences)</div><ol class="sentences">{sentences}</ol>
      <div class="label">chunk QAs answered on M_{t} (CSR)</div>{qa_html}
    </div>
    <div>
      <div class="label">manager's operations</div>{ops_html}
      <details{" open" if trouble else ""}><summary>raw completion</summary><pre>{_e(record.text)}</pre></details>
      <div class="label">memory after step {t}</div>{memory_html}
    </div>
  </div>
  <div class="label">step {t}'s rewards (same colours as the table above)</div>
  <div class="numbers">{_step_numbers(rows, colours, t)}</div>
</section>"""


def _question_section(episode: Episode, j: int) -> str:
    result = episode.global_results[j]
    memory = episode.memory
    rows = []
    for item_id, step in zip(result.evidence_ids, result.evidence_steps, strict=True):
        item = memory.get(item_id) if memory is not None else None
        content = item.content if item is not None else "?"
        rows.append(
            f"<tr class='evidence'><td><span class='id'>[{_e(item_id)}]</span> {_e(content)}</td>"
            f"<td><a class='steplink' href='#step-{step}'>step {step}</a></td></tr>"
        )
    evidence = (
        f"<table><tr><th>retrieved item</th><th>written at</th></tr>{''.join(rows)}</table>"
        if rows
        else '<div class="empty">nothing retrieved</div>'
    )
    mark = "ok" if result.score >= 1 else "bad" if result.score <= 0 else ""
    return f"""
<section class="question" id="question-{j}" data-question="{j}">
  <h3>Q{j}: {_e(result.question)}</h3>
  <div>gold: <b>{_e(" | ".join(result.golds))}</b> · prediction: <b>{_e(result.prediction)}</b> ·
     score <span class="{mark}">{result.score:.2f}</span></div>
  <div class="label">evidence</div>{evidence}
</section>"""


def episode_html(
    episode: Episode,
    instance: Instance,
    group: Sequence[Episode] | None = None,
    variants: Sequence[str] = VARIANTS,
    title: str | None = None,
    **knobs: Any,
) -> str:
    """The whole page as a string. ``group`` (the G rollouts ``episode`` belongs to) adds A_t rows.

    ``knobs``: the reward knobs ``beta``, ``w1``, ``w2`` and ``mode`` (left out: :class:`RewardSpec`'s)."""
    if instance.num_chunks != episode.T:
        raise ValueError(f"episode has {episode.T} steps but instance {instance.id!r} has {instance.num_chunks} chunks")
    spec = _spec(**knobs)
    beta, w1, w2, mode = spec.beta, spec.w1, spec.w2, spec.group_mode
    rows = reward_rows(episode, group, variants, beta, w1, w2, mode)
    T = episode.T
    title = title or f"Episode {instance.id} (rollout {episode.rollout})"
    adv_note = (
        f"A_t: GRPO advantage against the other {len(group) - 1} rollout(s) of the group (mode {mode!r})."
        if group is not None and len(group) >= 2
        else "A_t needs the G rollouts of the instance: pass group= to show it."
    )
    facts = {
        "source": instance.source,
        "steps": T,
        "global questions": len(episode.global_results),
        "r_global": f"{episode.r_global:.3f}",
        "memory": f"{len(episode.memory) if episode.memory is not None else 0} items, {episode.memory_tokens} tokens",
        "r_comp": f"{episode.r_comp:.3f}",
        "β, w1, w2": f"{beta}, {w1}, {w2}",
    }
    nav = "".join(f'<a href="#step-{t}">step {t}</a>' for t in range(T))
    nav += "".join(f'<a href="#question-{j}">Q{j}</a>' for j in range(len(episode.global_results)))
    colours = _colours(rows)
    steps = "".join(_step_section(episode, instance, t, rows, colours) for t in range(T))
    questions = "".join(_question_section(episode, j) for j in range(len(episode.global_results)))
    facts_html = "".join(f"<span>{_e(k)}: <b>{_e(v)}</b></span>" for k, v in facts.items())
    data = json.dumps({"steps": T, "questions": len(episode.global_results), "instance": instance.id})
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_e(title)}</title><style>{_STYLE}</style></head>
<body data-episode='{_e(data)}'>
<header><h1>{_e(title)}</h1><div class="facts">{facts_html}</div></header>
<main>
<nav>{nav} <button id="expand" type="button">expand all</button>
<button id="collapse" type="button">collapse all</button></nav>
<h2>Rewards per step</h2>
<div class="legend">r_chunk: the chunk's own QA accuracy on M_t (CSR) · N_t: share of the global score whose evidence
this step wrote (EARA) · r_fmt: valid executed operations / emitted · r_t: the step reward of each variant (one colour
scale for all variants; darker green = larger) · {_e(adv_note)}
<span class="swatch" style="background:{cell_colour(-1, -1, 1, True)}"></span> below the group mean
<span class="swatch" style="background:{cell_colour(1, -1, 1, True)}"></span> above.</div>
{_reward_table(rows, colours, T)}
<h2>Chunk steps</h2>{steps}
<h2>Global questions (BM25 top-k on the final memory)</h2>
{questions or '<div class="empty">no global question was asked</div>'}
</main><script>{_SCRIPT}</script></body></html>
"""


def write_episode_html(path: str | Path, episode: Episode, instance: Instance, **kwargs: Any) -> Path:
    """Write :func:`episode_html` to ``path`` (folders created); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(episode_html(episode, instance, **kwargs), encoding="utf-8")
    return path


def show_episode(episode: Episode, instance: Instance, height: int = 640, **kwargs: Any):
    """The page inline in a notebook (an ``IPython.display.HTML`` iframe; its CSS and CSP stay inside it)."""
    from IPython.display import HTML

    page = html.escape(episode_html(episode, instance, **kwargs), quote=True)
    return HTML(
        f'<div class="finemem-episode"><iframe srcdoc="{page}" '
        f'style="width:100%;height:{int(height)}px;border:1px solid #d9e2ec" sandbox="allow-scripts"></iframe></div>'
    )
