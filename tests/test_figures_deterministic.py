"""Figures with jittered points are the same image on every run (the jitter is seeded, numpy's state is kept)."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

from finemem_lib.report.plots import plot_data_sizes, seeded_numpy


def _frames() -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = [{"source": s, "split": sp, "chunks": 3 + i % 4, "tokens": 100 + 7 * i}
            for i, (s, sp) in enumerate([(s, sp) for s in ("a", "b") for sp in ("train", "test")] * 6)]  # fmt: skip
    instances = pd.DataFrame(rows)
    chunks = instances.assign(tokens=instances["tokens"] // 3)
    return instances, chunks


def _png_digest(tmp_path, name: str) -> str:
    path = tmp_path / name
    plot_data_sizes(*_frames(), path=path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_data_sizes_figure_is_byte_identical_whatever_numpy_s_global_state(tmp_path):
    np.random.seed(1)
    first = _png_digest(tmp_path, "a.png")
    np.random.seed(2)
    assert _png_digest(tmp_path, "b.png") == first


def test_seeding_a_block_restores_the_global_generator():
    np.random.seed(5)
    expected = np.random.random(3)
    np.random.seed(5)
    with seeded_numpy(0):
        inside = np.random.random(3)
    assert np.array_equal(np.random.random(3), expected) and not np.array_equal(inside, expected)
