"""Shared fixtures: a database per test, on SQLite and (when configured) PostgreSQL.

Store tests never mock the database: each test gets a fresh, empty database built by running
the real migrations. SQLite is always tested; PostgreSQL joins when ``LINKAGE_TEST_PG_URL``
names a server where we may create databases (e.g.
``postgresql://postgres@127.0.0.1:5432/postgres``). Without it the PostgreSQL parameter does
not exist at all, rather than showing up as hundreds of skips.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from linkage.store import Store
from tests.helpers import pg_database

PG_URL = os.environ.get("LINKAGE_TEST_PG_URL")

_BACKENDS = [pytest.param("sqlite", id="sqlite")]
if PG_URL:
    _BACKENDS.append(pytest.param("postgresql", id="postgresql", marks=pytest.mark.pg))


@pytest.fixture(params=_BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a new, empty database, removed after the test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'linkage.db'}"
        return
    assert PG_URL is not None
    with pg_database(PG_URL) as url:
        yield url


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    """A :class:`Store` on a fresh database migrated to head."""
    s = Store(db_url)
    s.upgrade()
    try:
        yield s
    finally:
        s.close()
