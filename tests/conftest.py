"""Shared fixtures: a database per test, on SQLite and (when configured) PostgreSQL.

Store tests never mock the database: each test gets a database of its own. SQLite is always
tested; PostgreSQL joins when ``LINKAGE_TEST_PG_URL`` names a server where we may create
databases (e.g. ``postgresql://postgres@127.0.0.1:5432/postgres``). Without it the PostgreSQL
parameter does not exist at all, rather than showing up as hundreds of skips.

- ``db_url``: a new, *empty* database (tests of migrations, and of commands that must migrate
  an empty store themselves).
- ``store``: a :class:`Store` on a new database at the newest schema. The real migrations run
  once per test process into a template database; each test gets a copy of it (a copied file
  on SQLite, ``CREATE DATABASE ... TEMPLATE`` on PostgreSQL).
- ``module_db_url`` and ``database_copy``: a module fills one database once (say, with the
  runs of ``linkage run``) and each of its tests works on its own copy, so that no test sees
  another's writes.

The CLI configures the ``linkage`` logger (its own handler, no propagation); every test
starts and ends with that logger as it was before any CLI ran, so that ``caplog`` hears
linkage's log whichever tests ran before in the same process.

Every database name holds a token of this test process, so that parallel workers and
parallel test runs never collide; each is dropped when its test, module or session ends.

``LINKAGE_TEST_MAX_EXAMPLES`` caps the examples of every property-based test (``make
test-fast`` sets it): tests without a ``max_examples`` of their own get it through a
Hypothesis profile, the others through :func:`tests.helpers.examples`. Without it each test
draws as many as its ``@settings`` say.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from hypothesis import settings
from sqlalchemy.engine import make_url

from linkage.store import Store
from tests.helpers import examples, pg_database

PG_URL = os.environ.get("LINKAGE_TEST_PG_URL")
TOKEN = uuid.uuid4().hex[:12]

_BACKENDS = [pytest.param("sqlite", id="sqlite")]
if PG_URL:
    _BACKENDS.append(pytest.param("postgresql", id="postgresql", marks=pytest.mark.pg))

if os.environ.get("LINKAGE_TEST_MAX_EXAMPLES"):
    # the default of tests without their own max_examples; the others ask helpers.examples
    settings.register_profile("capped", max_examples=examples(100))
    settings.load_profile("capped")


# Files run longest first: under xdist (``make test``: ``--dist loadfile``) each file runs
# whole on one worker, handed out in this order, so the Spark file starts at once on one
# worker while the other takes the rest. Tests keep their order within a file.
_FILE_ORDER = ("spark", "packaging", "browser", "slow")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank: dict[Path, int] = {}
    for item in items:
        mine = next((i for i, m in enumerate(_FILE_ORDER) if item.get_closest_marker(m)),
                    len(_FILE_ORDER))
        rank[item.path] = min(rank.get(item.path, mine), mine)
    items.sort(key=lambda item: rank[item.path])


def sqlite_path(url: str) -> Path:
    return Path(url.removeprefix("sqlite:///"))


def copy_sqlite(source: str, target: Path) -> str:
    """A copy of the SQLite store at URL ``source`` in the file ``target``, taken with
    SQLite's backup API (what a writer left in the WAL is copied too)."""
    src = sqlite3.connect(sqlite_path(source))
    dst = sqlite3.connect(target)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()
    return f"sqlite:///{target}"


def pg_name(url: str) -> str:
    name = make_url(url).database
    assert name
    return name


@pytest.fixture(scope="session")
def _templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], str]]:
    """A database per backend at the newest schema, made on first use: what ``store``
    copies. Tests never write to it."""
    made: dict[str, str] = {}
    with ExitStack() as stack:

        def template(backend: str) -> str:
            if backend not in made:
                if backend == "sqlite":
                    url = f"sqlite:///{tmp_path_factory.mktemp('template') / 'linkage.db'}"
                else:
                    assert PG_URL is not None
                    url = stack.enter_context(pg_database(PG_URL, f"linkage_tmpl_{TOKEN}"))
                with Store(url) as store:
                    store.upgrade()
                made[backend] = url
            return made[backend]

        yield template


def _copy(source: str, tmp: Path, stack: ExitStack) -> str:
    if source.startswith("sqlite"):
        return copy_sqlite(source, tmp / f"copy-{uuid.uuid4().hex[:8]}.db")
    assert PG_URL is not None
    return stack.enter_context(pg_database(PG_URL, f"linkage_test_{TOKEN}",
                                           template=pg_name(source)))


@contextmanager
def _empty_database(backend: str, folder: Path, prefix: str) -> Iterator[str]:
    """The URL of a new, empty database: a file in ``folder`` on SQLite, a database named
    after ``prefix`` on PostgreSQL (dropped on exit)."""
    if backend == "sqlite":
        yield f"sqlite:///{folder / 'linkage.db'}"
        return
    assert PG_URL is not None
    with pg_database(PG_URL, f"{prefix}_{TOKEN}") as url:
        yield url


@pytest.fixture(params=_BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of a new, empty database, removed after the test."""
    with _empty_database(request.param, tmp_path, "linkage_test") as url:
        yield url


@pytest.fixture(params=_BACKENDS)
def migrated_db_url(request: pytest.FixtureRequest, tmp_path: Path,
                    _templates: Callable[[str], str]) -> Iterator[str]:
    """The URL of a new database at the newest schema (a copy of the template), removed
    after the test."""
    with ExitStack() as stack:
        if request.param == "sqlite":
            yield copy_sqlite(_templates("sqlite"), tmp_path / "linkage.db")
        else:
            yield _copy(_templates("postgresql"), tmp_path, stack)


@pytest.fixture
def store(migrated_db_url: str) -> Iterator[Store]:
    """A :class:`Store` on a fresh database migrated to head."""
    s = Store(migrated_db_url)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture(scope="module", params=_BACKENDS)
def module_db_url(request: pytest.FixtureRequest,
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A new, empty database for the tests of one module: a module fixture fills it once,
    and each test takes a :func:`database_copy` of it."""
    folder = tmp_path_factory.mktemp("module-db") if request.param == "sqlite" else Path()
    with _empty_database(request.param, folder, "linkage_module") as url:
        yield url


@pytest.fixture
def database_copy(tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """``database_copy(url)``: the URL of a new database holding what the database at ``url``
    holds (on the same backend), removed after the test. The source must not be in use."""
    with ExitStack() as stack:
        yield lambda source: _copy(source, tmp_path, stack)


_LOGGER = logging.getLogger("linkage")
_PRISTINE = (_LOGGER.handlers[:], _LOGGER.level, _LOGGER.propagate)


def _restore_logger() -> None:
    handlers, level, propagate = _PRISTINE
    _LOGGER.handlers[:] = handlers
    _LOGGER.setLevel(level)
    _LOGGER.propagate = propagate


@pytest.fixture(autouse=True)
def _linkage_logger_restored():
    """Give every test the ``linkage`` logger as it was before any CLI invocation, and undo
    what the test's own did: a module-scoped fixture that runs the CLI configures it before
    this fixture sees it, and its handler writes to a stream closed since."""
    _restore_logger()
    yield
    _restore_logger()
