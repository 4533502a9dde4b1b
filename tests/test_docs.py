"""The documentation is tested: it names every command, configuration key and store object,
its input examples are valid input, and its SQL recipes run against a real store.

- every CLI command (walked from the Typer app) appears as ``linkage <command>`` in README.md
  or docs/*.md;
- every configuration key (walked from :class:`linkage.config.RunConfig`) is documented in its
  section of docs/configuration.md;
- every table, view and column of the store is named in docs/schema.md;
- every ``sql`` block of docs/schema.md runs against a store written by two real runs: on
  SQLite always, on PostgreSQL too when ``LINKAGE_TEST_PG_URL`` is set. A block whose first
  line is ``-- SQLite`` or ``-- PostgreSQL`` runs on that backend only; the others on both;
- the CSV examples of docs/input.md are valid input, and every row-level reason is listed.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import typing
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
import sqlalchemy as sa
import typer

from linkage.cli import app
from linkage.config import IngestConfig, RunConfig, SignalConfig
from linkage.ingest import ingest
from linkage.ingest.validate import REASONS
from linkage.pipeline import run_pipeline
from linkage.pseudonymise import Pseudonymiser
from linkage.store import Store
from linkage.store.models import Base
from linkage.synth import generate
from tests.helpers import pg_database

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SECRET = b"docs-test-secret-0123456789abcdef"
PG_URL = os.environ.get("LINKAGE_TEST_PG_URL")
VIEWS = ("latest_run", "latest_clusters", "latest_memberships", "cluster_history",
         "latest_campaigns", "campaign_memberships")


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8") if path.is_file() else ""


def _all_docs() -> str:
    return "\n".join(_read(p) for p in [ROOT / "README.md", *sorted(DOCS.glob("*.md"))])


# --- (a) commands ------------------------------------------------------------------------


def _commands(cmd: typing.Any, path: tuple[str, ...] = ()) -> Iterator[str]:
    # Duck-typed: recent Typer releases vendor click, so there is no click.Group to test for.
    subcommands = getattr(cmd, "commands", None)
    if subcommands is not None:
        if path and getattr(cmd, "invoke_without_command", False):
            yield " ".join(path)  # a group that is a command too (`linkage runs`)
        for name, sub in sorted(subcommands.items()):
            if not sub.hidden:
                yield from _commands(sub, (*path, name))
    else:
        yield " ".join(path)


COMMANDS = sorted(_commands(typer.main.get_command(app)))


def test_the_command_walk_finds_the_contract_commands() -> None:
    expected = {"run", "export memberships", "evaluate", "generate", "runs", "db upgrade",
                "db check"}
    assert expected <= set(COMMANDS), COMMANDS


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_is_documented(command: str) -> None:
    words = r"\s+".join(map(re.escape, command.split()))
    pattern = re.compile(rf"\blinkage\s+{words}(?![\w-])")
    assert pattern.search(_all_docs()), (
        f"`linkage {command}` is not mentioned in README.md or docs/*.md"
    )


# --- (b) configuration keys ----------------------------------------------------------------

CONFIG_DOC = _read(DOCS / "configuration.md")


def _sections(text: str) -> dict[str, str]:
    """Body of each heading that names a TOML table (`[ingest]`); "Top level" is ``""``."""
    out: dict[str, str] = {}
    name: str | None = None
    fenced = False
    for line in text.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        heading = None if fenced else re.match(r"#+\s+(.*)", line)
        if heading:
            table = re.search(r"`\[([^\]`]+)\]`", heading.group(1))
            if table:
                name = table.group(1)
            elif heading.group(1).strip().lower() == "top level":
                name = ""
            else:
                name = None
            if name is not None:
                out.setdefault(name, "")
            continue
        if name is not None:
            out[name] += line + "\n"
    return out


def _has_row(body: str, key: str) -> bool:
    return re.search(rf"^\|\s*`{re.escape(key)}`\s*\|", body, re.M) is not None


def _config_leaves(cls: type, prefix: str = "") -> Iterator[tuple[str, typing.Any]]:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            yield from _config_leaves(tp, f"{prefix}{f.name}.")  # type: ignore[arg-type]
        else:
            yield prefix + f.name, tp


CONFIG_KEYS = dict(_config_leaves(RunConfig))
_SIGNALS = RunConfig().signals
_PLAIN_SIGNALS = [
    f.name for f in dataclasses.fields(_SIGNALS)
    if type(getattr(_SIGNALS, f.name)) is SignalConfig
]


def test_the_config_walk_finds_nested_keys() -> None:
    assert "signals.cosignup.window_minutes" in CONFIG_KEYS
    assert "signals.card.cap" in CONFIG_KEYS
    assert {"card", "device", "email"} <= set(_PLAIN_SIGNALS)


@pytest.mark.parametrize("key", sorted(CONFIG_KEYS))
def test_every_configuration_key_is_documented(key: str) -> None:
    sections = _sections(CONFIG_DOC)
    table, _, leaf = key.rpartition(".")
    if _has_row(sections.get(table, ""), leaf):
        return
    parts = key.split(".")
    if len(parts) == 3 and parts[0] == "signals" and parts[1] in _PLAIN_SIGNALS:
        # The plain signals share one section, [signals.<name>], and a table of names.
        assert f"`{parts[1]}`" in CONFIG_DOC, f"signal {parts[1]!r} is not named"
        assert _has_row(sections.get("signals.<name>", ""), leaf), (
            f"key {leaf!r} is missing from the [signals.<name>] section"
        )
        return
    pytest.fail(f"configuration key {key!r} has no row in section [{table}] of "
                "docs/configuration.md")


@pytest.mark.parametrize("key", sorted(k for k, tp in CONFIG_KEYS.items()
                                       if typing.get_origin(tp) is typing.Literal))
def test_every_choice_of_a_configuration_key_is_documented(key: str) -> None:
    for choice in typing.get_args(CONFIG_KEYS[key]):
        assert f'"{choice}"' in CONFIG_DOC, f"{key} = {choice!r} is not documented"


def test_every_default_feature_weight_is_documented() -> None:
    for name in RunConfig().scoring.weights:
        assert re.search(rf"\b{name}\b", CONFIG_DOC), f"scoring.weights.{name} not documented"


# --- (c) store names -----------------------------------------------------------------------

SCHEMA_DOC = _read(DOCS / "schema.md")


@pytest.mark.parametrize("name", sorted([*Base.metadata.tables, *VIEWS]))
def test_every_table_and_view_is_documented(name: str) -> None:
    assert f"`{name}`" in SCHEMA_DOC, f"{name} is not named in docs/schema.md"


@pytest.mark.parametrize("table", sorted(Base.metadata.tables))
def test_every_column_is_documented(table: str) -> None:
    missing = [c.name for c in Base.metadata.tables[table].columns
               if f"`{c.name}`" not in SCHEMA_DOC]
    assert not missing, f"columns of {table} not in docs/schema.md: {missing}"


def test_every_view_column_is_documented(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    with Store(url) as store:
        store.upgrade()
    engine = sa.create_engine(url)
    try:
        inspector = sa.inspect(engine)
        assert set(VIEWS) <= set(inspector.get_view_names())
        missing = [f"{v}.{c['name']}" for v in VIEWS for c in inspector.get_columns(v)
                   if f"`{c['name']}`" not in SCHEMA_DOC]
    finally:
        engine.dispose()
    assert not missing, f"view columns not in docs/schema.md: {missing}"


# --- (d) SQL recipes -----------------------------------------------------------------------


def _recipes() -> list[tuple[str, str]]:
    """``(dialect, sql)`` of every ``sql`` block; dialect ``""`` means portable."""
    out = []
    for block in re.findall(r"^```sql\n(.*?)^```", SCHEMA_DOC, re.S | re.M):
        first = block.lstrip().splitlines()[0].strip() if block.strip() else ""
        dialect = {"-- SQLite": "sqlite", "-- PostgreSQL": "postgresql"}.get(first, "")
        out.append((dialect, block.strip().rstrip(";")))
    return out


def test_recipes_come_in_both_dialects() -> None:
    recipes = _recipes()
    assert len(recipes) >= 10
    dialects = [d for d, _ in recipes]
    assert dialects.count("sqlite") == dialects.count("postgresql")
    for sql in (s for d, s in recipes if d == ""):
        assert ";" not in sql, "one statement per block"
        assert "json" not in sql.lower(), "JSON needs a -- SQLite and a -- PostgreSQL form"


@pytest.fixture(scope="module")
def docs_inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two nights of input: generated data, then the same with a partition of bad rows."""
    base = tmp_path_factory.mktemp("docs-input")
    first = base / "night1"
    generate(first, scenario="mixed", n_accounts=3000, seed=3)
    second = base / "night2"
    shutil.copytree(first, second)
    (second / "devices").mkdir()
    (second / "devices.parquet").rename(second / "devices" / "part-0.parquet")
    (second / "devices" / "part-1.csv").write_text(
        "account_id,device_id,seen_at\n"
        "nobody,dev-y,2026-11-28T23:59:00Z\n"
        "a0000002,,2026-11-28\n"
        "a0000003,dev-z,yesterday\n"
    )
    return first, second


def _two_runs(url: str, inputs: tuple[Path, Path]) -> None:
    quarantine = RunConfig.from_dict({"ingest": {"on_bad_rows": "quarantine"},
                                      "communities": {"resolution": 0.08}})
    store = Store(url)
    try:
        run_pipeline(inputs[0], store, RunConfig(), SECRET)
        run_pipeline(inputs[1], store, quarantine, SECRET)
    finally:
        store.close()


@pytest.fixture(scope="module")
def sqlite_store(tmp_path_factory: pytest.TempPathFactory,
                 docs_inputs: tuple[Path, Path]) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('docs-store') / 'linkage.db'}"
    _two_runs(url, docs_inputs)
    return url


@pytest.fixture(scope="module")
def pg_store(docs_inputs: tuple[Path, Path]) -> Iterator[str]:
    assert PG_URL is not None
    with pg_database(PG_URL, prefix="linkage_docs") as url:
        _two_runs(url, docs_inputs)
        yield url


def _run_recipes(url: str, dialect: str) -> None:
    engine = sa.create_engine(url)
    failures = []
    ran = 0
    try:
        with engine.connect() as conn:
            (latest,) = conn.execute(sa.text("SELECT run_id FROM latest_run")).one()
            assert latest == 2, "the fixture should publish two runs"
            for only, sql in _recipes():
                if only not in ("", dialect):
                    continue
                ran += 1
                try:
                    conn.execute(sa.text(sql)).fetchall()
                except sa.exc.DBAPIError as exc:
                    conn.rollback()
                    failures.append(f"{sql}\n  -> {' '.join(str(exc.orig).split())[:300]}")
    finally:
        engine.dispose()
    assert ran >= 10
    assert not failures, "\n\n".join(failures)


@pytest.mark.slow
def test_sql_recipes_run_on_sqlite(sqlite_store: str) -> None:
    _run_recipes(sqlite_store, "sqlite")


if PG_URL:  # like conftest: without a server the test does not exist, rather than skip

    @pytest.mark.slow
    @pytest.mark.pg
    def test_sql_recipes_run_on_postgresql(pg_store: str) -> None:
        _run_recipes(pg_store, "postgresql")


# --- (e) the input page --------------------------------------------------------------------

INPUT_DOC = _read(DOCS / "input.md")


def test_every_row_level_reason_is_documented() -> None:
    missing = [r for r in REASONS if f"`{r}`" not in INPUT_DOC]
    assert not missing, f"reasons not in docs/input.md: {missing}"


def test_the_csv_examples_of_the_input_page_are_valid_input(tmp_path: Path) -> None:
    examples = re.findall(r"^### `(\w+)`[^\n]*\n.*?^```csv\n(.*?)^```", INPUT_DOC, re.S | re.M)
    names = [name for name, _ in examples]
    assert names == ["accounts", "payment_instruments", "ip_events", "devices",
                     "interactions", "observations"]
    for name, body in examples:
        (tmp_path / f"{name}.csv").write_text(body)
    con = duckdb.connect()
    try:
        result = ingest(con, tmp_path, IngestConfig(), Pseudonymiser(SECRET))
    finally:
        con.close()
    assert result.rows_quarantined == {}
    assert result.rows_read == {name: body.count("\n") - 1 for name, body in examples}


def test_the_configuration_shown_in_schema_md_is_the_default() -> None:
    import json

    from linkage.config import RunConfig

    anchor = SCHEMA_DOC.index("`runs.config_json` (one line in the database")
    start = SCHEMA_DOC.index("```json\n", anchor) + len("```json\n")
    shown = json.loads(SCHEMA_DOC[start:SCHEMA_DOC.index("```", start)])
    assert shown == RunConfig().to_dict()
