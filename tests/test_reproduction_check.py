"""./reproduce.sh check's comparison: identical, within the committed 95 % intervals, or different (exit 1)."""

from __future__ import annotations

import pytest

from finemem_lib.repro.reproduction import compare_folders, main
from finemem_lib.repro.table_compare import DIFFERENT, IDENTICAL, WITHIN, compare_grids, read_grid

# the layouts of the committed tables, in miniature
LONG = (
    "method,column,mean,lo,hi,n\nsft,avg,0.58,0.54,0.62,24\nfinemem,avg,0.59,0.55,0.63,24\nrag,avg,0.83,0.79,0.87,24\n"
)
WIDE = (
    "method,squad,avg,memory\n"
    'sft,"0.509 [0.473, 0.545]","0.580 [0.538, 0.625]",302\n'
    'finemem,"0.518 [0.482, 0.554]","0.593 [0.549, 0.633]",296\n'
)
DIFFS = (
    "variant,mean,lo,hi,diff,diff_lo,diff_hi\n"
    "or_only,0.50,0.43,0.57,0.0,0.0,0.0\n"
    "finemem,0.57,0.51,0.63,0.07,0.03,0.11\n"
)
PLAIN = "variant,seed,qa_final\nor_only,0,0.5619900932400933\nfinemem,0,0.6128142690642691\n"


def status(new: str, ref: str) -> tuple[str, list[str]]:
    result = compare_grids("t.csv", read_grid(new), read_grid(ref))
    return result.status, result.details


def write(folder, **tables):
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in tables.items():
        (folder / f"{name}.csv").write_text(text)
    return folder


# ---------------------------------------------------------------------------- identical
def test_identical_tables_pass(tmp_path, capsys):
    new, ref = write(tmp_path / "new", a=LONG, b=PLAIN), write(tmp_path / "ref", a=LONG, b=PLAIN)
    assert main([str(new), str(ref), "--profile", "smoke"]) == 0
    out = capsys.readouterr().out
    assert "identical: a.csv" in out and "identical: b.csv" in out
    assert "check: profile smoke: 2 identical, 0 within intervals, 0 different" in out


def test_same_numbers_written_differently_are_identical():
    assert status(PLAIN.replace("0.6128142690642691", "6.128142690642691e-01"), PLAIN)[0] == IDENTICAL
    assert status(LONG.replace("0.58,", "0.580,"), LONG)[0] == IDENTICAL


# ---------------------------------------------------------------------------- within intervals
@pytest.mark.parametrize(
    ("new", "ref"),
    [
        (LONG.replace("finemem,avg,0.59", "finemem,avg,0.61"), LONG),  # estimate inside [0.55, 0.63]
        (LONG.replace("0.55,0.63", "0.56,0.64"), LONG),  # only the bounds moved (another bootstrap)
        (WIDE.replace('"0.593 [0.549, 0.633]"', '"0.600 [0.557, 0.641]"'), WIDE),  # the papers' layout
        (DIFFS.replace("0.07,0.03,0.11", "0.09,0.05,0.13"), DIFFS),  # diff inside [diff_lo, diff_hi]
    ],
    ids=["long", "bounds", "wide", "diff"],
)
def test_numbers_inside_the_committed_intervals_are_within_intervals(new, ref):
    found, details = status(new, ref)
    assert found == WITHIN, details
    assert details, "the moved cells are listed"


def test_within_intervals_exits_zero_and_says_so(tmp_path, capsys):
    new = write(tmp_path / "new", a=LONG.replace("finemem,avg,0.59", "finemem,avg,0.61"), b=PLAIN)
    ref = write(tmp_path / "ref", a=LONG, b=PLAIN)
    assert main([str(new), str(ref)]) == 0
    out = capsys.readouterr().out
    assert "within intervals: a.csv (1 cells moved, each inside its 95 % interval)" in out
    assert "row 2 (finemem), mean: rerun 0.61 vs reference 0.59, inside [0.55, 0.63]" in out
    assert "check: 1 identical, 1 within intervals, 0 different" in out


def test_a_tie_in_the_reference_may_come_out_in_either_order():
    ref = "method,avg,lo,hi\nx,0.5,0.4,0.6\ny,0.5,0.4,0.6\n"
    assert status(ref.replace("x,0.5,", "x,0.45,"), ref)[0] == WITHIN


def test_only_the_average_orders_methods_when_the_table_has_one():
    # squad swaps sft and finemem (both inside their intervals); avg keeps the order: within intervals
    new = WIDE.replace('"0.509 [0.473, 0.545]"', '"0.520 [0.480, 0.550]"')
    assert status(new, WIDE)[0] == WITHIN


# ---------------------------------------------------------------------------- different
def test_a_number_outside_its_interval_is_different(tmp_path, capsys):
    new = write(tmp_path / "new", a=LONG.replace("finemem,avg,0.59", "finemem,avg,0.70"))
    ref = write(tmp_path / "ref", a=LONG)
    assert main([str(new), str(ref)]) == 1
    out = capsys.readouterr()
    assert "DIFFERENT: a.csv" in out.out
    assert "row 2 (finemem), mean: rerun 0.70 outside the reference's 95 % interval [0.55, 0.63]" in out.out
    assert "0 identical, 0 within intervals, 1 different" in out.err


def test_a_changed_order_of_methods_is_different_even_inside_the_intervals():
    new = LONG.replace("sft,avg,0.58", "sft,avg,0.60").replace("finemem,avg,0.59", "finemem,avg,0.57")
    found, details = status(new, LONG)
    assert found == DIFFERENT
    assert any(d.startswith("order of methods in mean (avg): sft below finemem in the reference") for d in details)
    assert not any("outside" in d for d in details), "every number is inside its interval"


def test_wide_table_order_is_read_from_its_avg_column():
    new = WIDE.replace('"0.580 [0.538, 0.625]"', '"0.600 [0.560, 0.640]"').replace(
        '"0.593 [0.549, 0.633]"', '"0.590 [0.550, 0.630]"'
    )
    found, details = status(new, WIDE)
    assert found == DIFFERENT and any("order of methods in avg: sft below finemem" in d for d in details)


def test_a_number_without_an_interval_must_match_within_float_tolerance():
    assert status(PLAIN.replace("0.6128142690642691", "0.6128142690642692"), PLAIN)[0] == IDENTICAL  # last bit
    found, details = status(PLAIN.replace("0.6128142690642691", "0.6128142"), PLAIN)
    assert found == DIFFERENT
    assert details == [
        "row 2 (finemem), qa_final: rerun 0.6128142 vs reference 0.6128142690642691 "
        "(no interval: must match within float tolerance)"
    ]
    # the memory column of the papers' layout has no interval either
    assert status(WIDE.replace(",296\n", ",297\n"), WIDE)[0] == DIFFERENT
    # nor a row whose bounds are empty
    ref = "method,column,mean,lo,hi\nsft,memory,302.0,,\n"
    assert status(ref.replace("302.0", "301.0"), ref)[0] == DIFFERENT


def test_text_and_shape_changes_are_different():
    assert status(LONG.replace("finemem,", "fine_mem,"), LONG)[0] == DIFFERENT
    assert status(LONG + "extra,avg,0.1,0.0,0.2,24\n", LONG)[0] == DIFFERENT
    assert status(LONG.replace(",24\n", ",24,9\n", 1), LONG)[0] == DIFFERENT


def test_empty_cells_on_both_sides_are_not_reported(tmp_path, capsys):
    new = write(tmp_path / "new", c="step,chunk_qa,kl\n0,,0.40000001\n1,nan,0.5\n")
    ref = write(tmp_path / "ref", c="step,chunk_qa,kl\n0,,0.4\n1,nan,0.5\n")
    assert main([str(new), str(ref)]) == 1
    out = capsys.readouterr().out
    assert "row 1, kl: rerun 0.40000001 vs reference 0.4" in out
    assert "chunk_qa" not in out


def test_several_header_rows_name_the_columns():
    ref = (
        ",AR,TTL,,\ncolumn,SH-Doc,Banking,avg,memory\nmethod,,,,\n"
        'sft,"0.333 [0.250, 0.375]","0.500 [0.375, 0.625]","0.304 [0.271, 0.338]",1170\n'
        'finemem,"0.292 [0.250, 0.375]","0.500 [0.375, 0.625]","0.296 [0.263, 0.329]",1078\n'
    )
    assert status(ref.replace('"0.296 [0.263, 0.329]"', '"0.300 [0.270, 0.330]"'), ref)[0] == WITHIN
    found, details = status(ref.replace('"0.296 [0.263, 0.329]"', '"0.310 [0.280, 0.340]"'), ref)
    assert found == DIFFERENT and any("order of methods in avg" in d for d in details)
    assert status(ref.replace('"0.333 [0.250, 0.375]"', '"0.400 [0.300, 0.450]"'), ref)[1][0].startswith(
        "row 3 (sft), AR SH-Doc: rerun 0.4 outside"
    )


# ---------------------------------------------------------------------------- folders and exit status
def test_missing_and_extra_tables_are_different(tmp_path):
    new, ref = write(tmp_path / "new", a=LONG, extra=PLAIN), write(tmp_path / "ref", a=LONG, b=PLAIN)
    statuses = {d.name: (d.status, d.details[0] if d.details else "") for d in compare_folders(new, ref)}
    assert statuses == {
        "a.csv": (IDENTICAL, ""),
        "b.csv": (DIFFERENT, "missing: the rerun wrote no such table"),
        "extra.csv": (DIFFERENT, "extra: no committed reference for this table"),
    }
    assert main([str(new), str(ref)]) == 1


def test_no_reference_folder_or_no_tables_is_an_error(tmp_path, capsys):
    assert main([str(write(tmp_path / "new", a=LONG)), str(tmp_path / "nothing")]) == 1
    assert "no reference tables" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty"), str(tmp_path / "empty")]) == 1
    assert "no tables to compare" in capsys.readouterr().err
