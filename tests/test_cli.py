"""End to end through the CLI on generated data: the contract's commands and exit codes."""

from __future__ import annotations

import csv
import json
from functools import partial
from pathlib import Path

import pytest

from linkage.synth import generate
from tests import helpers

SECRET = "cli-test-secret-0123456789abcdef"
pytestmark = pytest.mark.slow

invoke = partial(helpers.invoke, LINKAGE_SECRET=SECRET)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hubs")
    generate(out, scenario="hubs", n_accounts=20_000, seed=11)
    return out


def run_ok(data: Path, db: str, *extra: str) -> int:
    return helpers.run_id_of(invoke("run", "--input", data, "--db", db, *extra))


def memberships(db: str, out: Path, run: str = "latest") -> list[dict[str, str]]:
    res = invoke("export", "memberships", "--db", db, "--run", run, "--out", out)
    assert res.exit_code == 0, res.output
    with out.open(newline="") as f:
        return list(csv.DictReader(f))


def test_run_export_evaluate(data, db_url, tmp_path):
    run_id = run_ok(data, db_url)
    rows = memberships(db_url, tmp_path / "m.csv")
    assert rows and list(rows[0])[:4] == ["account_id", "cluster_id", "cluster_score", "flagged"]
    assert {r["flagged"] for r in rows} <= {"true", "false"}
    assert all(0.0 <= float(r["cluster_score"]) <= 1.0 for r in rows)
    sizes: dict[str, int] = {}
    for r in rows:
        sizes[r["cluster_id"]] = sizes.get(r["cluster_id"], 0) + 1
    assert min(sizes.values()) >= 2  # singletons are not clusters
    res = invoke("evaluate", "--truth", data / "truth.csv", "--db", db_url, "--json")
    assert res.exit_code == 0, res.output
    quality = json.loads(res.stdout)
    assert quality["run_id"] == run_id
    assert quality["precision"] >= 0.9, quality
    assert quality["recall"] >= 0.9, quality


@pytest.mark.parametrize("scenario", ["plain", "camouflage", "slowdrip"])
def test_detection_quality(scenario, tmp_path):
    data = tmp_path / scenario
    generate(data, scenario=scenario, n_accounts=20_000, seed=5, fmt="csv")
    db = f"sqlite:///{tmp_path / 'q.db'}"
    run_ok(data, db, "--quiet")
    res = invoke("evaluate", "--truth", data / "truth.csv", "--db", db, "--json")
    quality = json.loads(res.stdout)
    assert quality["precision"] >= 0.9, quality
    assert quality["recall"] >= 0.9, quality
    assert quality["false_positive_rate"] <= 0.001, quality


def test_same_input_same_clusters_and_ids_carry_over(data, tmp_path):
    db1, db2 = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    run_ok(data, db1, "--quiet")
    run_ok(data, db2, "--quiet")
    first = memberships(db1, tmp_path / "a.csv")
    assert first == memberships(db2, tmp_path / "b.csv")
    second_run = run_ok(data, db1, "--quiet")
    run_ok(data, db2, "--quiet")
    again = memberships(db1, tmp_path / "a2.csv", run=str(second_run))
    # Same input, configuration and previous run: the same clusters under the same ids.
    assert again == memberships(db2, tmp_path / "b2.csv")
    # Warm start may still settle a few accounts Leiden left undecided, but ids carry over.
    before = {r["account_id"]: r["cluster_id"] for r in first}
    kept = sum(before.get(r["account_id"]) == r["cluster_id"] for r in again)
    assert kept >= 0.98 * len(first)
    res = invoke("runs", "--db", db1, "--json")
    runs = json.loads(res.stdout)
    assert [r["status"] for r in runs] == ["succeeded", "succeeded"]
    # Without warm start every run starts from scratch: the same input, the same clusters.
    cold = tmp_path / "cold.toml"
    cold.write_text("[communities]\nwarm_start = false\n")
    third_run = run_ok(data, db1, "--quiet", "--config", str(cold))
    assert memberships(db1, tmp_path / "a3.csv", run=str(third_run)) == first


def test_wrong_key_is_refused(data, tmp_path):
    db = f"sqlite:///{tmp_path / 'k.db'}"
    run_ok(data, db, "--quiet")
    res = invoke("run", "--input", data, "--db", db, LINKAGE_SECRET="another-key-" * 3)
    assert res.exit_code == 2
    assert "key differs" in res.stderr


def test_no_run_and_bad_truth_exit_2(tmp_path):
    db = f"sqlite:///{tmp_path / 'empty.db'}"
    res = invoke("export", "memberships", "--db", db, "--out", tmp_path / "x.csv")
    assert res.exit_code == 2 and "Error:" in res.stderr
    bad = tmp_path / "truth.csv"
    bad.write_text("account_id\na\n")
    res = invoke("evaluate", "--truth", bad, "--db", db)
    assert res.exit_code == 2 and "group_id" in res.stderr


def test_missing_secret_and_input_are_usage_errors(tmp_path, data):
    res = invoke("run", "--input", tmp_path / "nope", "--db", f"sqlite:///{tmp_path}/x.db")
    assert res.exit_code == 2
    res = invoke("run", "--input", data, "--db", f"sqlite:///{tmp_path}/x.db",
                 LINKAGE_SECRET=None, LINKAGE_SECRET_FILE=None)
    assert res.exit_code == 2 and "pseudonymisation key" in res.stderr


@pytest.mark.parametrize("command", [
    ["run"], ["export", "memberships"], ["evaluate"], ["generate"], ["runs"],
    ["db", "upgrade"], ["db", "check"],
])
def test_every_command_has_help_with_an_example(command):
    res = invoke(*command, "--help")
    assert res.exit_code == 0
    assert "Example: linkage " in res.stdout


def test_generate_takes_the_group_size_range(tmp_path):
    res = invoke("generate", "--out", tmp_path / "g", "--accounts", 3000, "--scenario", "plain",
                 "--group-sizes", 12, 15, "--operator-share", 0.05)
    assert res.exit_code == 0, res.output
    import duckdb

    sizes = duckdb.sql(
        f"SELECT count(*) FROM read_csv('{tmp_path / 'g' / 'truth.csv'}') "
        "WHERE group_id IS NOT NULL GROUP BY group_id").fetchall()
    assert sizes and all(12 <= n <= 15 for (n,) in sizes)
    bad = invoke("generate", "--out", tmp_path / "h", "--group-sizes", 9, 3)
    assert bad.exit_code == 2 and "Error:" in bad.stderr
