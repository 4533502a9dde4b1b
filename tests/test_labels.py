"""Analyst labels: append-only log, CLI, and carry-forward into scoring (both backends)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import pytest
from sqlalchemy.exc import DBAPIError

from linkage.config import load_config
from linkage.errors import NotFoundError
from linkage.labels import add_label, label_facts, list_labels
from linkage.pipeline import run_pipeline
from linkage.store import Store
from linkage.synth import generate
from tests import helpers

pytestmark = pytest.mark.slow

SECRET = b"labels-test-secret-0123456789abcdef"


invoke = partial(helpers.invoke, LINKAGE_USER="tester")


@pytest.fixture(scope="module")
def night(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("night")
    generate(out, scenario="plain", n_accounts=5_000, seed=8)
    return out


def test_labels_are_append_only_in_the_database(store: Store):
    add_label(store, "account", "a1", "watch", note="odd hours", by="ann")
    for sql in ("UPDATE labels SET note = 'rewritten'", "DELETE FROM labels"):
        with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as conn:
            conn.exec_driver_sql(sql)
    assert [r["note"] for r in list_labels(store)] == ["odd hours"]


def test_a_later_label_supersedes_and_both_stay(store: Store):
    t1, t2 = datetime(2026, 11, 20, tzinfo=UTC), datetime(2026, 11, 21, tzinfo=UTC)
    add_label(store, "account", "a1", "confirmed", note="chargebacks", by="ann", now=t1)
    add_label(store, "account", "a2", "confirmed", note="chargebacks", by="ann", now=t1)
    add_label(store, "account", "a2", "false_positive", note="a real shop", by="bob", now=t2)
    facts = label_facts(store)
    assert facts.confirmed.to_pylist() == [
        {"account_id": "a1", "by": "ann", "created_at": "2026-11-20"}]
    assert len(list_labels(store)) == 3
    assert [r["label"] for r in list_labels(store, target_kind="account", target_id="a2")] == [
        "confirmed", "false_positive"]


def test_unknown_cluster_is_not_found(store: Store):
    with pytest.raises(NotFoundError, match="no such cluster"):
        add_label(store, "cluster", "cNOPE", "confirmed", note="x", by="ann")


def test_label_cli_errors(tmp_path):
    db = f"sqlite:///{tmp_path / 'l.db'}"
    res = invoke("label", "cluster", "cNOPE", "--as", "confirmed", "--note", "x", "--db", db)
    assert res.exit_code == 2 and "no store at" in res.stderr  # nothing created
    assert not (tmp_path / "l.db").exists()
    invoke("db", "upgrade", "--db", db)
    res = invoke("label", "cluster", "cNOPE", "--as", "confirmed", "--note", "x", "--db", db)
    assert res.exit_code == 2 and "no such cluster" in res.stderr
    res = invoke("label", "account", "a1", "--as", "great", "--note", "x", "--db", db)
    assert res.exit_code == 2
    res = invoke("label", "account", "a1", "--as", "watch", "--note", "  ", "--db", db)
    assert res.exit_code == 2 and "needs a note" in res.stderr
    res = invoke("labels", "--cluster", "c1", "--account", "a1", "--db", db)
    assert res.exit_code == 2 and "not both" in res.stderr


def test_labels_carry_forward_into_scoring(night, db_url):
    cfg = load_config(None)
    with Store(db_url) as store:
        first = run_pipeline(night, store, cfg, SECRET)
        clusters = store.clusters(first.run_id).to_pylist()
        members = store.memberships(first.run_id).to_pylist()
    by_cluster: dict[str, list[str]] = {}
    for m in members:
        by_cluster.setdefault(m["cluster_id"], []).append(m["account_id"])
    flagged = next(c for c in clusters if c["flagged"])
    quiet = next(c for c in clusters if not c["flagged"] and c["size"] >= 4)
    # Through the CLI, as analysts would: the flagged one is cleared, three accounts of the
    # quiet one are confirmed operators.
    res = invoke("label", "cluster", flagged["cluster_id"], "--as", "false_positive",
                 "--note", "a university lab", "--by", "bob", "--db", db_url)
    assert res.exit_code == 0, res.output
    for account in sorted(by_cluster[quiet["cluster_id"]])[:3]:
        res = invoke("label", "account", account, "--as", "confirmed", "--note", "chargebacks",
                     "--by", "ann", "--db", db_url)
        assert res.exit_code == 0, res.output
    res = invoke("labels", "--cluster", flagged["cluster_id"], "--db", db_url, "--json")
    assert [r["label"] for r in json.loads(res.stdout)] == ["false_positive"]

    with Store(db_url) as store:
        second = run_pipeline(night, store, cfg, SECRET)
        after = {c["cluster_id"]: c for c in store.clusters(second.run_id).to_pylist()}
    cleared = after[flagged["cluster_id"]]
    assert not cleared["flagged"] and cleared["score"] == pytest.approx(flagged["score"])
    # The verdict leads the reasons, before any evidence.
    lead = json.loads(cleared["reasons_json"])[0]
    assert "marked false positive by bob" in lead and "not flagged" in lead
    raised = after[quiet["cluster_id"]]
    assert raised["score"] > quiet["score"]
    assert json.loads(raised["features_json"])["known_bad"] == pytest.approx(
        3 / raised["size"], abs=1e-3)
    today = datetime.now(UTC).date().isoformat()
    assert json.loads(raised["reasons_json"])[0] == (
        f"3 of {raised['size']} accounts were confirmed operators by ann on {today}")


def test_a_cleared_cluster_that_changed_materially_is_judged_afresh(night, db_url):
    cfg = load_config(None)
    with Store(db_url) as store:
        first = run_pipeline(night, store, cfg, SECRET)
        flagged = next(c for c in store.clusters(first.run_id).to_pylist() if c["flagged"])
        ids = sorted(m["account_id"] for m in store.memberships(first.run_id).to_pylist()
                     if m["cluster_id"] == flagged["cluster_id"])
        # The analyst cleared a group that shares only half of tonight's members (as if the
        # cluster had since doubled): written as add_label would, with that membership.
        with store.engine.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO labels (target_kind, target_id, label, note, \"by\", created_at, "
                "run_id, members_json) VALUES ('cluster', ?, 'false_positive', 'ok', 'bob', "
                "?, ?, ?)" if store.dialect == "sqlite" else
                "INSERT INTO labels (target_kind, target_id, label, note, \"by\", created_at, "
                "run_id, members_json) VALUES ('cluster', %s, 'false_positive', 'ok', 'bob', "
                "%s, %s, %s)",
                (flagged["cluster_id"], datetime.now(UTC), first.run_id,
                 json.dumps(ids[: len(ids) // 2])))
        second = run_pipeline(night, store, cfg, SECRET)
        after = {c["cluster_id"]: c for c in store.clusters(second.run_id).to_pylist()}
    again = after[flagged["cluster_id"]]
    assert again["flagged"]
    assert "changed materially" in json.loads(again["reasons_json"])[0]
