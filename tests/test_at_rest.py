"""Identifiers at rest, and erasure on request.

After a run over generated input, no identifying value of the input (emails, phones, display
names, IPs and their /24 prefixes, user agents, card fingerprints, device ids, observation
values) appears anywhere in the store: every table is dumped as text and searched.
``linkage forget`` removes an account from every run, keeps run totals as they were and logs
the erasure under a keyed hash.
"""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa

from linkage.pseudonymise import Pseudonymiser
from linkage.store import Store
from linkage.store.erase import ERASED_TABLES, account_key
from linkage.synth import generate
from tests import helpers

pytestmark = pytest.mark.slow

SECRET = "at-rest-test-secret-0123456789abc"

IDENTIFYING = {
    "accounts": ("email", "display_name", "phone", "signup_ip", "user_agent", "org_id"),
    "payment_instruments": ("fingerprint",),
    "ip_events": ("ip",),
    "devices": ("device_id",),
    "observations": ("value",),
}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("at_rest")
    generate(out, scenario="mixed", n_accounts=2_000, seed=4)
    return out


invoke = partial(helpers.invoke, LINKAGE_SECRET=SECRET)


def run(data: Path, db_url: str) -> int:
    return helpers.run_id_of(invoke("run", "--input", data, "--db", db_url, "--quiet"))


def dump(db_url: str) -> dict[str, str]:
    """Every table of the store as one text per table (every cell, ``str()``-ed)."""
    with Store(db_url) as store, store.engine.connect() as conn:
        names = sa.inspect(conn).get_table_names()
        return {
            name: "\n".join(
                "\t".join(str(v) for v in row)
                for row in conn.execute(sa.text(f'SELECT * FROM "{name}"'))
            )
            for name in names
        }


def raw_values(data: Path) -> dict[str, set[str]]:
    values: dict[str, set[str]] = {}
    for table, columns in IDENTIFYING.items():
        t = pq.read_table(data / f"{table}.parquet")
        for col in columns:
            if col in t.column_names:
                values[f"{table}.{col}"] = {
                    str(v) for v in t.column(col).to_pylist() if v not in (None, "")
                }
    return values


def test_no_identifying_value_is_stored(data: Path, db_url: str) -> None:
    run(data, db_url)
    run(data, db_url)  # a second run adds continuity and lineage rows
    tables = dump(db_url)
    text = "\n".join(tables.values())
    assert "memberships" in tables and len(text) > 10_000  # there is something to search
    values = raw_values(data)
    prefixes = {ip.rsplit(".", 1)[0] + "." for ip in values["ip_events.ip"] if "." in ip}
    values["ip_events.ip /24 prefix"] = prefixes
    # Values short enough to occur by chance inside other text (a 2-letter name) are not
    # identifying on their own; everything from 6 characters up is searched.
    checked = 0
    for kind, found in values.items():
        for value in found:
            if len(value) < 6:
                continue
            checked += 1
            assert value not in text, (
                f"{kind} value {value!r} is stored in "
                f"{[n for n, t in tables.items() if value in t]}"
            )
    assert checked > 10_000


def test_forget_removes_an_account_everywhere_and_logs_it(data: Path, db_url: str) -> None:
    first, second = run(data, db_url), run(data, db_url)
    with Store(db_url) as store, store.engine.connect() as conn:
        # An account at an end of evidence edges in both runs: the hardest case.
        account = conn.execute(sa.text(
            "SELECT account_a FROM evidence GROUP BY account_a "
            "HAVING count(DISTINCT run_id) = 2 ORDER BY count(*) DESC, account_a LIMIT 1"
        )).scalar()
        totals = {r["run_id"]: r for r in store.runs(None)}
        sizes = conn.execute(sa.text("SELECT run_id, cluster_id, size FROM clusters")).all()
    assert account
    with Store(db_url) as store, store.engine.connect() as conn:
        cluster = conn.execute(sa.text(
            "SELECT cluster_id FROM memberships WHERE run_id = :r AND account_id = :a"),
            {"r": second, "a": account}).scalar()
    # Analysts labelled the account and its cluster: the append-only log names it twice.
    for kind, target in (("account", account), ("cluster", cluster)):
        res = invoke("label", kind, target, "--as", "watch", "--note", "n", "--db", db_url)
        assert res.exit_code == 0, res.output
    before = dump(db_url)
    assert account in before["labels"]

    res = invoke("forget", account, "--db", db_url, "--by", "ann", "--reason", "ticket 42")
    assert res.exit_code == 0, res.output
    assert res.stderr.startswith("erasure 1: removed ")
    assert "from 2 run(s)" in res.stderr

    after = dump(db_url)
    for name, columns in ERASED_TABLES.items():
        assert account in before[name]
        assert account not in after[name], name
    assert all(account not in text for text in after.values())
    with Store(db_url) as store, store.engine.connect() as conn:
        # Totals are what each run saw; the erasure log explains the difference.
        assert {r["run_id"]: r for r in store.runs(None)} == totals
        assert conn.execute(sa.text("SELECT run_id, cluster_id, size FROM clusters")).all() \
            == sizes
        [log] = conn.execute(sa.text("SELECT * FROM erasures")).mappings().all()
        assert store.latest_run_id() == second
    assert log["erased_by"] == "ann" and log["reason"] == "ticket 42"
    assert log["account_key"] == account_key(Pseudonymiser(SECRET.encode()), account)
    assert json.loads(log["runs_json"]) == [first, second]
    removed = json.loads(log["rows_removed_json"])
    assert set(removed) == {*ERASED_TABLES, "quarantine", "labels", "runs"}
    assert removed["memberships"] == 2
    assert removed["labels"] == 2  # the rows stay, the id leaves them
    assert len(after["labels"].splitlines()) == len(before["labels"].splitlines())
    with Store(db_url) as store, pytest.raises(sa.exc.DBAPIError), store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE labels SET note = 'x'"))  # append-only again
    assert log["n_rows_removed"] == sum(removed.values())

    # Again: unknown now, and the message says it was erased (exit 2, nothing changes).
    res = invoke("forget", account, "--db", db_url)
    assert res.exit_code == 2
    assert "appears in no run" in res.stderr and "it was erased on" in res.stderr
    assert dump(db_url) == after


def test_forget_unknown_account_or_wrong_key(data: Path, db_url: str) -> None:
    run(data, db_url)
    res = invoke("forget", "no-such-account", "--db", db_url)
    assert res.exit_code == 2
    assert res.stderr == (
        f"Error: no such account: 'no-such-account' appears in no run of {db_url}\n"
    )
    res = invoke("forget", "a0000001", "--db", db_url, LINKAGE_SECRET="another-secret-0123456789")
    assert res.exit_code == 2
    assert "pseudonymisation key differs" in res.stderr
