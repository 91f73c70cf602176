"""Atomic result files: a failed write leaves the previous file whole; a torn JSON file names itself and its fix."""

from __future__ import annotations

import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import pytest

from finemem_lib.data.prepared import MANIFEST, prepared_splits, save_prepared
from finemem_lib.data.synthetic import build_synthetic
from finemem_lib.infra import atomic
from finemem_lib.infra.config import load_profile


class BreaksHalfway:
    """A table whose writer dies after writing part of the file (a kill, a full disk)."""

    def to_csv(self, path, **kwargs):
        with open(path, "w") as handle:
            handle.write("a,b\n1,")
        raise OSError("disk full")


def test_a_failed_table_write_keeps_the_old_table_and_no_temporary(tmp_path):
    path = tmp_path / "t.csv"
    atomic.write_csv(pd.DataFrame({"a": [1], "b": [2]}), path, index=False)
    with pytest.raises(OSError, match="disk full"):
        atomic.write_csv(BreaksHalfway(), path)
    assert path.read_text() == "a,b\n1,2\n"
    assert [p.name for p in tmp_path.iterdir()] == ["t.csv"]


def test_figures_and_json_are_written_whole(tmp_path):
    fig, ax = plt.subplots()
    ax.plot([0, 1])
    png = atomic.save_figure(fig, tmp_path / "f.png")
    plt.close(fig)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    atomic.write_json(tmp_path / "r.json", {"x": 1})
    assert atomic.read_json(tmp_path / "r.json") == {"x": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.png", "r.json"]


def test_a_torn_json_file_names_itself_and_the_rebuild_command(tmp_path):
    path = tmp_path / "run.json"
    path.write_text('{"status": "runn')
    with pytest.raises(atomic.CorruptFileError) as error:
        atomic.read_json(path, rebuild="make it")
    assert str(path) in str(error.value) and "make it" in str(error.value)


def test_a_half_written_manifest_says_how_to_rebuild_it(tmp_path):
    splits = build_synthetic(load_profile("smoke")["data"], 0)
    save_prepared(splits, tmp_path)
    assert set(prepared_splits(tmp_path)) == {"train", "test"}
    manifest = tmp_path / MANIFEST
    manifest.write_text(manifest.read_text()[:40])
    with pytest.raises(atomic.CorruptFileError) as error:
        prepared_splits(tmp_path)
    message = str(error.value)
    assert str(manifest) in message and "01_data_prep" in message and "./reproduce.sh" in message
    manifest.write_text(json.dumps({"no": "splits"}))
    with pytest.raises(atomic.CorruptFileError, match="splits"):
        prepared_splits(tmp_path)


def test_the_same_figure_gives_the_same_bytes_on_one_machine(tmp_path):
    from finemem_lib.report.plots import save

    def draw(path):
        fig, ax = plt.subplots()
        ax.plot([0, 1, 2], [0.5, 0.25, 0.75], marker="o")
        ax.set_title("held-out QA")
        save(fig, path)
        plt.close(fig)
        return path.read_bytes()

    assert draw(tmp_path / "a.png") == draw(tmp_path / "b.png")
