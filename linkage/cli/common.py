"""What every ``linkage`` command shares: the consoles, the common options, the error
handling with its exit statuses, opening the store, and printing rows.

Exit statuses (docs/operations.md): 0 done; 2 bad input, configuration or usage, or no
such run; 1 internal failure; 3 another run holds the store (try again later).
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from linkage.cli.terminal import cell, output_console, printable
from linkage.errors import LinkageError

if TYPE_CHECKING:
    from linkage.store import Store

__all__ = [
    "MAX_COUNT", "DbOpt", "InputOpt", "QuietOpt", "RunOpt", "SecretFileOpt", "VerboseOpt",
    "err", "handle_errors", "json_default", "open_store", "out", "print_rows",
    "require_input", "setup_output", "usage_error",
]

# Whole values when not a terminal: `linkage runs > runs.txt` keeps every column in full.
out = output_console(soft_wrap=True)
err = output_console(stderr=True, soft_wrap=True)
log = logging.getLogger("linkage.cli")

DbOpt = Annotated[str | None, typer.Option(
    "--db", help="SQLAlchemy URL of the store (default: $LINKAGE_DB_URL, else "
    "sqlite:///linkage.db).", show_default=False)]
RunOpt = Annotated[str, typer.Option(
    "--run", help="Run id, or 'latest' (the newest finished run).")]
# Counts and limits: bounded so that no number reaches the database that it cannot hold.
MAX_COUNT = 2**31 - 1
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Only warnings and errors.")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")]
InputOpt = Annotated[Path, typer.Option(
    "--input", "-i", help="Folder of input tables (docs/input.md).", file_okay=False)]
SecretFileOpt = Annotated[Path | None, typer.Option(
    "--secret-file", help="File holding the pseudonymisation key (default: "
    "$LINKAGE_SECRET, else $LINKAGE_SECRET_FILE).")]


@contextlib.contextmanager
def handle_errors(verbose: bool = False) -> Iterator[None]:
    """Turn errors into ``Error: ...`` and the documented exit status."""
    try:
        yield
    except LinkageError as exc:
        err.print(f"Error: {printable(exc)}", markup=False, highlight=False)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        err.print("Error: interrupted", markup=False)
        raise typer.Exit(130) from None
    except Exception as exc:
        if verbose:
            err.print_exception()
        err.print(f"Error: internal failure: {type(exc).__name__}: {printable(exc)}",
                  markup=False, highlight=False)
        raise typer.Exit(1) from None


def setup_output(quiet: bool, verbose: bool) -> None:
    from linkage.cli.progress import setup_logging

    setup_logging(-1 if quiet else (1 if verbose else 0), err)


@contextlib.contextmanager
def open_store(db: str | None, *, create: bool = False) -> Iterator[Store]:
    """The store ``--db`` names, closed afterwards.

    Only ``create=True`` (``run``, ``db upgrade``) may make a new one: every other command
    refuses, exit 2, a URL that names no existing store ("no store at ..."), before SQLite
    could create a file for a mistyped path.
    """
    from linkage.store import Store

    with Store(db) as store:
        if create:
            store.check_sqlite_file(must_exist=False)
        else:
            store.require()
        yield store


def usage_error(message: str) -> LinkageError:
    from linkage.errors import ConfigError

    return ConfigError(message)


def require_input(folder: Path) -> None:
    """Refuse (exit 2) an --input that is not an existing folder."""
    if not folder.is_dir():
        raise usage_error(f"input folder {str(folder)!r} does not exist or is not a folder")


def print_rows(rows: list[dict], *, title: str, columns: tuple[str, ...],
               as_json: bool) -> None:
    """Rows as JSON (every column) or as a table of ``columns`` on standard output.

    In JSON a column the store keeps as JSON text (``config_json``, ``members_json``, ...)
    is the JSON value itself, under its name without ``_json`` (``config``, ``members``),
    and timestamps are ISO 8601.
    """
    if as_json:
        print(json.dumps([_json_row(r) for r in rows], default=json_default))
        return
    table = Table(*columns, title=title)
    for r in rows:
        # cell(): ids, notes and errors are data, never Rich markup nor terminal commands.
        table.add_row(*(cell(r.get(c)) for c in columns))
    out.print(table)


def _json_row(row: dict) -> dict:
    """``row`` with each ``NAME_json`` text column decoded and named ``NAME``."""
    decoded = {}
    for key, value in row.items():
        if key.endswith("_json") and isinstance(value, str):
            decoded[key.removesuffix("_json")] = json.loads(value)
        elif key.endswith("_json") and value is None:
            decoded[key.removesuffix("_json")] = None
        else:
            decoded[key] = value
    return decoded


def json_default(value: object) -> str:
    """JSON for what ``json`` cannot write: timestamps as ISO 8601, anything else as text."""
    isoformat = getattr(value, "isoformat", None)
    return isoformat() if callable(isoformat) else str(value)
