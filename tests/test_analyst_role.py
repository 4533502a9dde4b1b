"""Every reading ``linkage`` command works for a real PostgreSQL login that holds only
``linkage_analyst``; every writing one is refused with exit 2 and a message saying why.

The login role is created by the test (``CREATE ROLE ... LOGIN``, granted ``linkage_analyst``)
and dropped afterwards; the server trusts local logins, as the test server does in CI.
PostgreSQL only: SQLite has no roles.
"""

from __future__ import annotations

import csv
import json
import uuid
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from linkage.synth import generate
from tests import helpers
from tests.conftest import PG_URL

SECRET = "analyst-role-secret-0123456789abcdef"
invoke = partial(helpers.invoke, LINKAGE_SECRET=SECRET, LINKAGE_USER="tester")

pytestmark = [
    pytest.mark.pg,
    pytest.mark.skipif(not PG_URL, reason="needs LINKAGE_TEST_PG_URL (a PostgreSQL server)"),
]


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path]]:
    """(owner URL, analyst login URL, input folder) of a store holding two runs."""
    assert PG_URL is not None
    data = tmp_path_factory.mktemp("analyst")
    generate(data, scenario="mixed", n_accounts=3_000, seed=3)
    role = f"linkage_test_analyst_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(make_url(PG_URL).set(drivername="postgresql+psycopg"),
                             isolation_level="AUTOCOMMIT")
    with helpers.pg_database(PG_URL) as owner_url:
        for _ in range(2):
            helpers.run_id_of(invoke("run", "--input", data, "--db", owner_url))
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE ROLE "{role}" LOGIN')
            conn.exec_driver_sql(f'GRANT linkage_analyst TO "{role}"')
        try:
            analyst_url = make_url(owner_url).set(username=role, password=None)
            yield owner_url, analyst_url.render_as_string(hide_password=False), data
        finally:
            with admin.connect() as conn:
                # Its sessions first: a leaked connection would block DROP ROLE.
                conn.exec_driver_sql(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    f"WHERE usename = '{role}'")
                conn.exec_driver_sql(f'DROP ROLE IF EXISTS "{role}"')
            admin.dispose()


def _flagged_cluster(owner_url: str, tmp_path: Path) -> str:
    out = tmp_path / "owner-clusters.csv"
    assert invoke("export", "clusters", "--db", owner_url, "--out", out).exit_code == 0
    with out.open(newline="") as f:
        return next(r["cluster_id"] for r in csv.DictReader(f) if r["flagged"] == "true")


def test_reading_commands_work_for_an_analyst_login(stores, tmp_path: Path) -> None:
    owner_url, url, data = stores
    cluster = _flagged_cluster(owner_url, tmp_path)

    res = invoke("runs", "--db", url, "--json")
    assert res.exit_code == 0, res.output
    assert [r["run_id"] for r in json.loads(res.stdout)] == [2, 1]

    res = invoke("show", "cluster", cluster, "--db", url, "--format", "json")
    assert res.exit_code == 0, res.output
    detail = json.loads(res.stdout)
    assert detail["cluster_id"] == cluster and detail["shared_keys"]
    member = detail["members"][0]
    for args in (("show", "account", member), ("explain", member, detail["members"][-1]),
                 ("diff", "--from", "1", "--to", "2", "--all"),
                 ("evaluate", "--truth", data / "truth.csv")):
        res = invoke(*args, "--db", url)
        assert res.exit_code == 0, (args, res.output)
    for args, out in ((("export", "memberships"), "m.csv"), (("export", "banlist"), "b.csv"),
                      (("export", "clusters"), "c.csv"), (("export", "case", cluster),
                                                          "case.html"),
                      (("report",), "report")):
        res = invoke(*args, "--db", url, "--out", tmp_path / out)
        assert res.exit_code == 0, (args, res.output)
    assert (tmp_path / "report" / "index.html").is_file()
    owner_rows = tmp_path / "owner-m.csv"
    assert invoke("export", "memberships", "--db", owner_url, "--out", owner_rows).exit_code == 0
    assert (tmp_path / "m.csv").read_bytes() == owner_rows.read_bytes()


def test_writing_commands_are_refused_with_exit_2(stores, tmp_path: Path) -> None:
    owner_url, url, _ = stores
    before = helpers.snapshot(owner_url)
    cluster = _flagged_cluster(owner_url, tmp_path)
    for args in (("label", "cluster", cluster, "--as", "watch", "--note", "odd"),
                 ("runs", "retract", "1", "--by", "ann")):
        res = invoke(*args, "--db", url)
        assert res.exit_code == 2, (args, res.output)
        assert "permission denied" in res.output and "linkage_analyst" in res.output
    assert helpers.snapshot(owner_url) == before


def test_analyst_login_never_reads_raw_values_nor_the_key_check(stores) -> None:
    _, url, _ = stores
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            # What the readers need, read-only (related clusters join on the keyed hashes).
            assert conn.execute(sa.text(
                "SELECT count(*) FROM cluster_keys")).scalar_one() > 0
            for sql in ("SELECT * FROM quarantine", "SELECT * FROM store_meta",
                        "SELECT * FROM erasures", "DELETE FROM memberships",
                        "UPDATE clusters SET flagged = false",
                        "INSERT INTO store_meta VALUES ('k', 'v')"):
                with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
                    conn.execute(sa.text(sql))
                conn.rollback()
    finally:
        engine.dispose()
