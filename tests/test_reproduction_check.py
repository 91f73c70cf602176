"""./reproduce.sh check's comparison: identical tables pass; a changed cell, a missing or extra table fail loudly."""

from __future__ import annotations

import pandas as pd

from finemem_lib.repro.reproduction import compare_folders, main


def _tables(folder, value=0.25, extra=False):
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"variant": ["or_only", "finemem"], "qa_final": [0.5, value]}).to_csv(folder / "03_x.csv", index=False)
    pd.DataFrame({"split": ["train"], "n": [4]}).to_csv(folder / "01_x.csv", index=False)
    if extra:
        pd.DataFrame({"a": [1]}).to_csv(folder / "09_new.csv", index=False)
    return folder


def test_identical_tables_pass(tmp_path, capsys):
    assert main([str(_tables(tmp_path / "new")), str(_tables(tmp_path / "ref")), "--profile", "smoke"]) == 0
    assert "all 2 tables identical" in capsys.readouterr().out


def test_a_changed_cell_is_printed_with_both_values(tmp_path, capsys):
    new, ref = _tables(tmp_path / "new", value=0.2500001), _tables(tmp_path / "ref")
    assert main([str(new), str(ref)]) == 1
    out = capsys.readouterr()
    assert "DIFFERS: 03_x.csv" in out.out and "row 1, qa_final: rerun 0.2500001 vs reference 0.25" in out.out
    assert "ok: 01_x.csv" in out.out and "1 of 2 tables differ" in out.err


def test_empty_cells_on_both_sides_are_not_reported(tmp_path, capsys):
    new, ref = tmp_path / "new", tmp_path / "ref"
    for folder, value in ((new, "0.40000001"), (ref, "0.4")):
        folder.mkdir()
        (folder / "03_c.csv").write_text(f"step,chunk_qa,kl\n0,,{value}\n1,nan,0.5\n")
    assert main([str(new), str(ref)]) == 1
    out = capsys.readouterr().out
    assert "row 0, kl: rerun 0.40000001 vs reference 0.4" in out
    assert "chunk_qa" not in out


def test_missing_and_extra_tables_fail(tmp_path):
    new, ref = _tables(tmp_path / "new", extra=True), _tables(tmp_path / "ref")
    (new / "01_x.csv").unlink()
    statuses = {d.name: d.status for d in compare_folders(new, ref)}
    assert statuses == {"01_x.csv": "missing", "03_x.csv": "identical", "09_new.csv": "extra"}
    assert main([str(new), str(ref)]) == 1


def test_no_reference_folder_is_an_error(tmp_path, capsys):
    assert main([str(_tables(tmp_path / "new")), str(tmp_path / "nothing")]) == 1
    assert "no reference tables" in capsys.readouterr().err
