"""``linkage diff`` for analysts: one count definition with the run summary, size, score and
flag columns, flags raised and cleared, labels recorded between the runs, --flagged."""

from __future__ import annotations

import csv
import io
import json
import re
from functools import partial
from pathlib import Path

import pyarrow as pa
import pytest

from linkage.cli.diff import COLUMNS
from linkage.continuity import compare_runs, describe_counts, lineage_counts
from linkage.synth import generate
from tests import helpers

pytestmark = pytest.mark.slow

SECRET = "diff-test-secret-0123456789abcdef"
invoke = partial(helpers.invoke, LINKAGE_SECRET=SECRET, LINKAGE_USER="tester")


def _memberships(groups: dict[str, str]) -> pa.Table:
    """``{account: cluster}`` as stored memberships."""
    return pa.table({"account_id": list(groups), "cluster_id": list(groups.values())})


def test_counts_are_clusters_not_rows() -> None:
    before = _memberships({"a": "cA", "b": "cA", "c": "cB", "d": "cB", "e": "cC", "f": "cC",
                           "g": "cG", "h": "cG"})
    after = _memberships({"a": "cM", "b": "cM", "c": "cM", "d": "cM", "e": "cM", "f": "cM",
                          "x": "cN", "y": "cN"})
    changes = compare_runs(before, after, min_jaccard=0.5)
    kinds = changes["kind"].to_pylist()
    assert kinds.count("merged") == 3  # a row per parent ...
    counts = lineage_counts(changes)
    assert counts == {"new": 1, "merged": 1, "merged_into": 3, "dissolved": 1}  # ... one cluster
    assert describe_counts(counts) == "new 1, merged 1, merged_into 3, dissolved 1"
    assert describe_counts({}) == "no clusters"


@pytest.fixture(scope="module")
def nights(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("nights")
    for night in (1, 2):
        generate(root / f"n{night}", scenario="plain", n_accounts=6_000, seed=4,
                 group_sizes=(10, 40), night=night)
    return root / "n1", root / "n2"


def _summary_lineage(stdout: str) -> str:
    """The lineage line of ``linkage run``'s summary table."""
    match = re.search(r"│ lineage\s+│ (.+?)\s+│", stdout)
    assert match, stdout
    return match.group(1)


def _flagged(db_url: str, out: Path) -> list[str]:
    res = invoke("export", "clusters", "--db", db_url, "--out", out)
    assert res.exit_code == 0, res.output
    with out.open(newline="") as f:
        return [r["cluster_id"] for r in csv.DictReader(f) if r["flagged"] == "true"]


def _diff(*args: object) -> str:
    res = invoke("diff", *args)
    assert res.exit_code == 0, res.output
    return res.stdout


def test_diff_agrees_with_the_run_and_shows_what_analysts_need(nights, db_url, tmp_path):
    night1, night2 = nights
    first = helpers.run_id_of(invoke("run", "--input", night1, "--db", db_url, "--top", "0"))
    res = invoke("run", "--input", night2, "--db", db_url, "--top", "0")
    second = helpers.run_id_of(res)
    printed = _summary_lineage(res.stdout)

    doc = json.loads(_diff("--from", first, "--db", db_url, "--format", "json"))
    assert (doc["from_run"], doc["to_run"]) == (first, second)
    assert describe_counts(doc["counts"]) == printed  # one definition of the counts
    # Night 2's recruits joined their rings; two rings turned out to be one operator's (the
    # larger kept its id and grew, the smaller went into it).
    assert doc["counts"].get("grown", 0) >= 1 and doc["counts"].get("merged_into", 0) >= 1
    rows = doc["changes"]
    assert all(list(r) == list(COLUMNS) for r in rows)
    # Flagged (in either run) first, then by score.
    hot = [bool(r["flagged"] or r["flagged_before"]) for r in rows]
    assert hot == sorted(hot, reverse=True)
    scores = [r["score"] for r in rows if not (r["flagged"] or r["flagged_before"])]
    assert scores == sorted(scores, reverse=True)
    for r in rows:
        assert r["size"] is not None and r["score"] is not None
        if r["kind"] in ("grown", "shrunk"):
            assert r["size_before"] is not None
        if r["kind"] in ("new", "merged", "split", "merged_into", "split_into", "dissolved"):
            assert r["size_before"] is None

    every = json.loads(_diff("--from", first, "--db", db_url, "--format", "json",
                             "--all"))["changes"]
    assert len(every) >= sum(doc["counts"].values())  # a row or more per counted cluster
    only = json.loads(_diff("--from", first, "--db", db_url, "--format", "json", "--all",
                            "--flagged"))["changes"]
    assert only and all(r["flagged"] or r["flagged_before"] for r in only)
    assert len(only) < len(every)
    table = list(csv.DictReader(io.StringIO(_diff("--from", first, "--db", db_url, "--format",
                                                  "csv"))))
    assert list(table[0]) == list(COLUMNS) and len(table) == len(rows)
    assert printed in _diff("--from", first, "--db", db_url)


def test_diff_shows_flags_cleared_and_labels(nights, db_url, tmp_path):
    _, night2 = nights
    first = helpers.run_id_of(invoke("run", "--input", night2, "--db", db_url, "--top", "0"))
    target = _flagged(db_url, tmp_path / "c.csv")[0]
    res = invoke("label", "cluster", target, "--as", "false_positive", "--note", "a school",
                 "--by", "bob", "--db", db_url)
    assert res.exit_code == 0, res.output
    helpers.run_id_of(invoke("run", "--input", night2, "--db", db_url, "--top", "0"))
    # Same input: every cluster continued, so only the one with news is listed.
    doc = json.loads(_diff("--from", first, "--db", db_url, "--format", "json"))
    [row] = doc["changes"]
    assert (row["cluster_id"], row["kind"]) == (target, "continued")
    assert row["flag_change"] == "cleared"
    assert (row["flagged_before"], row["flagged"]) == (True, False)
    assert row["labels"] == "false_positive by bob"
    assert doc["flags"] == {"raised": 0, "cleared": 1} and doc["n_labels"] == 1
    text = _diff("--from", first, "--db", db_url)
    assert "cleared" in text and "false_positive by bob" in text
    assert "flags raised 0, cleared 1" in text
