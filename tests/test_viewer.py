"""The episode viewer: what the page holds, and the page in a real headless Chromium (no network)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from finemem_lib.agents.reasoner_factory import build_reasoner
from finemem_lib.data.synthetic import build_synthetic
from finemem_lib.episodes.rollout import RolloutSettings, group_advantages, rollout
from finemem_lib.report.viewer import CSP, episode_html, show_episode, write_episode_html
from tests.tiny import TINY_BENCH, ScriptedPolicy

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "chrome")


@pytest.fixture(scope="module")
def instance():
    update = [i for i in build_synthetic(TINY_BENCH, seed=0)["test"] if i.source == "synth_update"]
    return update[0]


@pytest.fixture(scope="module")
def group(instance):
    settings = RolloutSettings(num_generations=2, question_ratio=1.0, top_k=2)
    return rollout([instance], ScriptedPolicy(), build_reasoner({"backend": "offline"}), settings, seed=0)[0]


def _count(pattern: str, text: str) -> int:
    return len(re.findall(pattern, text))


def test_page_has_every_step_question_and_operation(instance, group):
    episode = group[0]
    page = episode_html(episode, instance, group=group)
    assert _count(r'<section class="step" id="step-\d+"', page) == episode.T == instance.num_chunks
    assert _count(r'<section class="question" id="question-\d+"', page) == len(episode.global_results) > 0
    n_ops = sum(len(s.operations) for s in episode.steps)
    assert _count(r"<tr class='op'>", page) == n_ops
    duplicates = sum(r.ok and r.reason.startswith("duplicate content") for s in episode.steps for r in s.results)
    assert _count(r'class="ok">executed', page) == sum(s.n_executed for s in episode.steps) - duplicates > 0
    assert _count(r'class="dup">duplicate', page) == duplicates
    assert _count(r'class="bad">failed', page) == sum(len(s.operations) - s.n_executed for s in episode.steps) > 0
    for result in episode.global_results:
        for item_id, step in zip(result.evidence_ids, result.evidence_steps, strict=True):
            assert f"[{item_id}]</span>" in page and f"href='#step-{step}'" in page
    # the memory after the last step is the final memory, item by item
    for item in episode.memory.items:
        assert f"[{item.id}]</span> {item.content}" in page
    assert f'content="{CSP}"' in page


def test_advantage_rows_match_the_group_advantages(instance, group):
    page = episode_html(group[1], instance, group=group, variants=("finemem",))
    expected = group_advantages(group, "finemem")[1]
    row = re.search(r'<tr data-row="A_t Fine-Mem">(.*?)</tr>', page).group(1)
    shown = [float(x) for x in re.findall(r">(-?\d+\.\d{3})</td>", row)]
    assert np.allclose(shown, expected, atol=5e-4)
    assert expected.std() > 0  # the two scripted rollouts differ, so the row is not all zeros
    assert 'data-row="A_t' not in episode_html(group[1], instance)  # no group: no A_t


def test_text_is_escaped_and_mismatched_instance_rejected(instance, group):
    from dataclasses import replace

    hostile = replace(instance, chunks=("<script>alert(1)</script> One.", *instance.chunks[1:]))
    page = episode_html(group[0], hostile)
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    with pytest.raises(ValueError, match="chunks"):
        episode_html(group[0], replace(instance, chunks=instance.chunks[:1], chunk_qas=instance.chunk_qas[:1]))


def test_show_episode_is_an_isolated_iframe(instance, group):
    shown = show_episode(group[0], instance)
    assert "<iframe srcdoc=" in shown.data and "&lt;section class=&quot;step&quot;" in shown.data


# ---------------------------------------------------------------------------- a real browser
def _browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def _chromium(browser: str, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    command = [
        browser,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp / 'profile'}",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)


def _page_requests(net_log: Path) -> list[str]:
    """URLs of the requests a page started, from Chromium's --log-net-log file.

    Chromium's own background traffic (update checks, clock sync) has no initiating origin
    (``initiator: "not an origin"``); whatever a page loads has one (``null`` for a file page).
    """
    log = json.loads(net_log.read_text())
    start_job = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return [
        str(params["url"])
        for e in log["events"]
        if e.get("type") == start_job
        and "url" in (params := e.get("params") or {})
        and params.get("initiator") != "not an origin"
    ]


def test_page_in_headless_chromium(instance, group, tmp_path):
    browser = _browser()
    if browser is None:
        pytest.skip("no Chromium binary (apt-get install -y chromium): the browser check of the viewer did not run")
    episode = group[0]
    page = write_episode_html(tmp_path / "episode.html", episode, instance, group=group)
    net_log = tmp_path / "net.json"
    dumped = _chromium(browser, tmp_path, f"--log-net-log={net_log}", "--dump-dom", page.as_uri())
    dom = dumped.stdout
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    assert _count(r'<section class="step" id="step-\d+"', dom) == episode.T
    assert _count(r'<section class="question" id="question-\d+"', dom) == len(episode.global_results)
    assert not re.search(r"""(?:src|href|action)\s*=\s*["']?(?:https?:)?//""", dom), "the page points outside"
    assert [u for u in _page_requests(net_log) if not u.startswith(("file:", "data:", "about:"))] == []

    shot = tmp_path / "episode.png"
    taken = _chromium(
        browser, tmp_path, "--hide-scrollbars", "--window-size=1280,2000", f"--screenshot={shot}", page.as_uri()
    )
    assert taken.returncode == 0 and shot.is_file() and shot.stat().st_size > 10_000, taken.stderr[-2000:]

    # the network check can fail: a page without the CSP that loads an image is seen fetching it
    leaky = tmp_path / "leaky.html"
    leaky.write_text('<html><body><img src="http://127.0.0.1:9/pixel.png"></body></html>')
    leak_log = tmp_path / "leak.json"
    _chromium(browser, tmp_path, f"--log-net-log={leak_log}", "--dump-dom", leaky.as_uri())
    assert "http://127.0.0.1:9/pixel.png" in _page_requests(leak_log)


def test_a_duplicate_operation_is_not_shown_as_an_r_fmt_success():
    from finemem_lib.core.memory import OpResult
    from finemem_lib.report.viewer import _status

    assert "executed" in _status(OpResult(True, "ok", "m1"))
    for reason in ("duplicate content: insert skipped", "duplicate content: m2 merged into m1"):
        shown = _status(OpResult(True, reason, "m1"))
        assert 'class="dup"' in shown and "executed" not in shown
    assert 'class="bad">failed' in _status(OpResult(False, "no item m9", None))
