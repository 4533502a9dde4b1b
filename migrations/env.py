"""Alembic environment of the linkage store.

Normally run through :mod:`linkage.store.migrate` (``Store.upgrade()``, ``linkage db
upgrade``), which passes an open connection in ``config.attributes["connection"]`` so the
migration runs in the caller's transaction. Without one (a developer running ``alembic``
against a config that sets ``sqlalchemy.url``, or offline ``--sql`` mode) it connects itself
to ``sqlalchemy.url``, else to ``LINKAGE_DB_URL`` / the default ``sqlite:///linkage.db``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import make_url

from linkage.store.migrate import context_options
from linkage.store.store import create_store_engine, resolve_db_url

config = context.config


def _url() -> str:
    return resolve_db_url(config.get_main_option("sqlalchemy.url") or None)


def run_migrations_offline() -> None:
    """Emit the SQL of the migrations instead of running it (``alembic upgrade --sql``)."""
    url = _url()
    context.configure(
        url=url,
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **context_options(make_url(url).get_backend_name()),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run the migrations on the caller's connection, or on one of our own."""
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, **context_options(connection.dialect.name))
        with context.begin_transaction():
            context.run_migrations()
        return
    engine = create_store_engine(_url())
    try:
        with engine.connect() as conn:
            context.configure(connection=conn, **context_options(conn.dialect.name))
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
