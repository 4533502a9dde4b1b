"""Explanations, exports, the HTML report and the case packet, end to end through the CLI on
generated data with a ring of hostile account ids (SQLite and PostgreSQL)."""

from __future__ import annotations

import csv
import json
import re
from functools import partial
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from linkage.reports.html import page_name
from linkage.reports.queries import explain_path
from linkage.store import Store
from tests import helpers
from tests.helpers import examples
from tests.report_data import HOSTILE, SECRET, two_nights

pytestmark = pytest.mark.slow

RISKY = ("=", "+", "-", "@", "\t", "\r")


invoke = partial(helpers.invoke, LINKAGE_SECRET=SECRET)


@pytest.fixture(scope="module")
def nights(tmp_path_factory) -> tuple[Path, Path]:
    return two_nights(tmp_path_factory.mktemp("nights"))


@pytest.fixture(scope="module")
def two_runs(nights, module_db_url) -> str:
    """A store with two runs; run 2 has the hostile ring as a new, flagged cluster."""
    for night in nights:
        res = invoke("run", "--input", night, "--db", module_db_url, "--quiet")
        assert res.exit_code == 0, res.output
    return module_db_url


@pytest.fixture
def db(two_runs, database_copy) -> str:
    """A copy of the store with two runs, for this test alone."""
    return database_copy(two_runs)


def ring_cluster(db: str) -> str:
    res = invoke("show", "account", HOSTILE[0], "--db", db, "--format", "json")
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)["cluster_id"]


def test_show_and_explain(db):
    ring = ring_cluster(db)
    res = invoke("show", "cluster", ring, "--db", db, "--format", "json")
    assert res.exit_code == 0, res.output
    detail = json.loads(res.stdout)
    assert detail["flagged"] and detail["origin"] == "new" and detail["run_id"] == 2
    assert sorted(detail["members"]) == sorted(HOSTILE)
    assert {"card", "device"} <= {k["signal"] for k in detail["shared_keys"]}
    assert max(k["max_members"] for k in detail["shared_keys"]) == len(HOSTILE)
    assert detail["reasons"] and max(detail["contributions"].values()) > 0
    assert [h["run_id"] for h in detail["history"]] == [2]

    text = invoke("show", "cluster", ring, "--db", db)
    assert text.exit_code == 0 and "score breakdown" in text.stdout
    assert "[red]rich[/red]" in text.stdout  # printed as written, not read as Rich markup

    res = invoke("show", "account", HOSTILE[1], "--db", db, "--format", "json")
    account = json.loads(res.stdout)
    assert account["cluster_id"] == ring and account["links"]
    assert account["links"][0]["weight"] >= account["links"][-1]["weight"]

    res = invoke("explain", HOSTILE[0], HOSTILE[3], "--db", db, "--format", "json")
    assert res.exit_code == 0, res.output
    path = json.loads(res.stdout)
    assert path["found"] and path["path"][0] == HOSTILE[0] and path["path"][-1] == HOSTILE[3]
    assert path["hops"][0]["signals"][0]["signal"] in {"card", "device"}
    assert invoke("explain", HOSTILE[0], HOSTILE[3], "--db", db).exit_code == 0

    # Accounts of two clusters: no path, said plainly; unknown ids: exit 2.
    other = invoke("show", "cluster", ring, "--db", db, "--run", "1")
    assert other.exit_code == 2 and "no such cluster" in other.stderr
    for args in (["show", "cluster", "cnope"], ["show", "account", "nobody"],
                 ["explain", HOSTILE[0], "nobody"], ["show", "cluster", ring, "--run", "9"]):
        res = invoke(*args, "--db", db)
        assert res.exit_code == 2, (args, res.output)
        assert res.stderr.startswith("Error: ")


def test_strongest_path_is_the_best_product(db):
    """Against brute force: no chain of stored edges beats the one explain_path returns."""
    with Store(db) as store:
        run_id = store.resolve_run("latest")
        ring = [c for c in store.clusters(run_id).to_pylist() if c["flagged"]]
        from linkage.reports.queries import evidence_edges, members

        biggest = max(ring, key=lambda c: c["size"])["cluster_id"]
        accounts = members(store, run_id, biggest)
        edges = evidence_edges(store, run_id, [biggest])
        result = explain_path(store, run_id, accounts[0], accounts[-1])
    weight = {frozenset((e["account_a"], e["account_b"])): e["weight"] for e in edges}
    # Best product by Bellman-Ford style relaxation (max-product) as the oracle.
    best = dict.fromkeys(accounts, 0.0)
    best[accounts[0]] = 1.0
    for _ in accounts:
        for pair, w in weight.items():
            a, b = tuple(pair)
            best[b] = max(best[b], best[a] * w)
            best[a] = max(best[a], best[b] * w)
    assert result["found"]
    assert result["strength"] == pytest.approx(best[accounts[-1]], rel=1e-9)
    product = 1.0
    for hop in result["hops"]:
        product *= weight[frozenset((hop["from"], hop["to"]))]
    assert product == pytest.approx(result["strength"])


def test_exports(db, tmp_path):
    ban = tmp_path / "ban.csv"
    res = invoke("export", "banlist", "--db", db, "--out", ban)
    assert res.exit_code == 0, res.output
    with ban.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["account_id", "cluster_id", "score", "top_reason"]
    assert all(r["account_id"][:1] not in RISKY for r in rows)
    assert "'=HYPERLINK(\"http://evil.example\")" in {r["account_id"] for r in rows}
    assert "<script>alert(1)</script>" in {r["account_id"] for r in rows}
    scores = [float(r["score"]) for r in rows]
    assert scores == sorted(scores, reverse=True) and min(scores) >= 0.5
    strict = tmp_path / "strict.csv"
    assert invoke("export", "banlist", "--db", db, "--min-score", "0.99", "--out",
                  strict).exit_code == 0
    assert strict.read_text().strip().count("\n") < len(rows)

    for fmt in ("csv", "json", "parquet"):
        out = tmp_path / f"clusters.{fmt}"
        res = invoke("export", "clusters", "--db", db, "--format", fmt, "--out", out)
        assert res.exit_code == 0, res.output
    with (tmp_path / "clusters.csv").open(newline="") as f:
        csv_rows = list(csv.DictReader(f))
    as_json = json.loads((tmp_path / "clusters.json").read_text())
    as_parquet = pq.read_table(tmp_path / "clusters.parquet").to_pylist()
    assert len(csv_rows) == len(as_json) == len(as_parquet) > 0
    assert [r["cluster_id"] for r in as_json] == [r["cluster_id"] for r in as_parquet]
    assert {"cluster_id", "size", "score", "flagged", "origin", "top_reason"} <= set(as_json[0])

    # memberships: the contract's CSV by default, the same columns as JSON and Parquet.
    plain = tmp_path / "m.csv"
    assert invoke("export", "memberships", "--db", db, "--out", plain).exit_code == 0
    # The contract's four columns first, then campaign_id (which the contract allows).
    assert plain.read_text().splitlines()[0] == (
        '"account_id","cluster_id","cluster_score","flagged","campaign_id"')
    for fmt in ("json", "parquet"):
        out = tmp_path / f"m.{fmt}"
        res = invoke("export", "memberships", "--db", db, "--format", fmt, "--out", out)
        assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "m.json").read_text()) == \
        pq.read_table(tmp_path / "m.parquet").to_pylist()
    assert "campaign_id" in json.loads((tmp_path / "m.json").read_text())[0]
    bad = invoke("export", "memberships", "--db", db, "--format", "xlsx", "--out", plain)
    assert bad.exit_code == 2 and "xlsx" in bad.stderr


def _assert_escaped(html: str) -> None:
    """No hostile id reaches the page as markup; each appears escaped."""
    for needle in ("<script>alert", "<img src=x", '"onmouseover=', "' onmouseover='"):
        assert needle not in html, needle
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&#34;onmouseover=&#34;alert(1)" in html
    assert "h10&amp;amp;" in html
    assert "<script" not in html.lower()  # the report has no scripts at all
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html)  # nothing from a network


def test_report_and_case_packet(db, tmp_path):
    ring = ring_cluster(db)
    out = tmp_path / "report"
    res = invoke("report", "--db", db, "--out", out)
    assert res.exit_code == 0, res.output
    index = (out / "index.html").read_text()
    assert f'href="clusters/{page_name(ring)}"' in index
    assert "New and grown since run 1" in index and ring in index
    assert index.count("<svg") == 1
    page = (out / "clusters" / page_name(ring)).read_text()
    _assert_escaped(page)
    assert page.count("<svg") == 3  # graph, score breakdown and signup timeline
    assert "Signup timeline" in page and "signup timeline" in page
    usage = page[page.index("<h2>Usage</h2>"):page.index("<h2>Signup timeline</h2>")]
    assert ">200<" in usage and "20,000 / 200,000" in usage and "100%" in usage
    assert page.count("<circle") == len(HOSTILE)
    assert "card" in page and "Shared keys by kind" in page and "Lineage" in page

    res = invoke("report", "--db", db, "--out", tmp_path / "all", "--min-score", "0")
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "all" / "clusters").glob("*.html"))) > 2

    case = tmp_path / "case.html"
    res = invoke("export", "case", ring, "--db", db, "--out", case)
    assert res.exit_code == 0, res.output
    packet = case.read_text()
    _assert_escaped(packet)
    assert "Case packet" in packet and "Evidence edges (45)" in packet  # 10 accounts, all pairs
    res = invoke("export", "case", "cnope", "--db", db, "--out", case)
    assert res.exit_code == 2 and "no such cluster" in res.stderr


def test_help_has_examples():
    for command in (["show", "cluster"], ["show", "account"], ["explain"], ["report"],
                    ["export", "banlist"], ["export", "clusters"], ["export", "case"]):
        res = invoke(*command, "--help")
        assert res.exit_code == 0
        assert "Example: linkage " in res.stdout, command


@settings(max_examples=examples(300), deadline=None)
@given(st.text(min_size=1, max_size=200))
def test_a_crafted_cluster_id_never_names_a_file_outside_the_report(cluster_id):
    name = page_name(cluster_id)
    assert name.endswith(".html") and "/" not in name and "\\" not in name
    assert name not in (".", "..") and "\x00" not in name
    root = Path("/report/clusters")
    assert (root / name).resolve().parent == root


def test_show_account_lists_labels_on_it_and_its_clusters(db):
    ring = ring_cluster(db)
    account = HOSTILE[2]
    for kind, target, verdict in (("cluster", ring, "watch"), ("account", account, "confirmed")):
        res = invoke("label", kind, target, "--as", verdict, "--note", "<b>n</b>", "--by",
                     "ann", "--db", db)
        assert res.exit_code == 0, res.output
    res = invoke("show", "account", account, "--db", db, "--format", "json")
    labels = json.loads(res.stdout)["labels"]
    assert [(x["target_kind"], x["label"]) for x in labels] == [
        ("cluster", "watch"), ("account", "confirmed")]
    text = invoke("show", "account", account, "--db", db)
    assert text.exit_code == 0 and "labels on this account" in text.stdout
    assert "<b>n</b>" in text.stdout  # printed as written
