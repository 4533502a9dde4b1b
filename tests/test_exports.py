"""CSV exports neutralise spreadsheet formulas in attacker-controlled text."""

from __future__ import annotations

import csv

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from linkage.reports import safe_text_column, write_memberships
from tests.helpers import examples

RISKY = ("=", "+", "-", "@", "\t", "\r")


@settings(max_examples=examples(300), deadline=None)
@given(st.lists(st.text(max_size=30), min_size=1, max_size=20))
def test_no_cell_starts_a_formula_and_safe_text_is_unchanged(values):
    got = safe_text_column(pa.array(values)).to_pylist()
    for before, after in zip(values, got, strict=True):
        if before[:1] in RISKY and before:
            assert after == "'" + before
        else:
            assert after == before


def test_memberships_csv_round_trips(tmp_path):
    table = pa.table({
        "account_id": ["a1", '=HYPERLINK("http://x")', "a3"],
        "cluster_id": ["c1", "c1", "c2"],
        "cluster_score": [0.91, 0.91, 0.2],
        "flagged": [True, True, False],
    })
    out = tmp_path / "m.csv"
    assert write_memberships(table, out) == 3
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["account_id"] for r in rows] == ["a1", "'=HYPERLINK(\"http://x\")", "a3"]
    assert [r["flagged"] for r in rows] == ["true", "true", "false"]
    assert float(rows[0]["cluster_score"]) == 0.91
    assert not (tmp_path / "m.csv.partial").exists()
