"""One error hierarchy for linkage.

Every error a user can cause is a :class:`LinkageError` subclass whose ``exit_code`` the CLI
returns: 2 for bad input, configuration or usage (the user can fix it), 1 for an internal
failure, 3 when another run holds the store. Messages are built from the offending value and
what was expected, so they can be acted on without reading code.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "ConfigError",
    "InputError",
    "InputProblem",
    "LinkageError",
    "NotFoundError",
    "RunLockedError",
    "StoreError",
    "shorten",
]


def shorten(value: object, limit: int = 60) -> str:
    """Render a value for an error message: ``repr``-quoted and cut to ``limit`` characters.

    Examples
    --------
    >>> shorten("x" * 100, limit=10)
    "'xxxxxxxx…"
    >>> shorten(None)
    'NULL'
    """
    if value is None:
        return "NULL"
    text = repr(str(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"


class LinkageError(Exception):
    """Base of every error linkage raises on purpose."""

    exit_code = 1


class ConfigError(LinkageError):
    """The configuration (TOML file, option or environment) is invalid."""

    exit_code = 2


class NotFoundError(LinkageError):
    """A run, cluster or account named by the user does not exist."""

    exit_code = 2


class StoreError(LinkageError):
    """The database could not be read or written."""

    exit_code = 1


class RunLockedError(LinkageError):
    """Another run (or an erasure) holds the store: this one refused to start.

    Its own exit status, so that a scheduler can tell "try again later" from a failure.
    """

    exit_code = 3


@dataclass(frozen=True)
class InputProblem:
    """One violation of the input contract, located precisely.

    ``row`` is the 1-based data row within ``file`` (the CSV header is not counted, so the
    line number of a CSV row without embedded newlines is ``row + 1``). ``value`` is the
    offending value as :func:`shorten` shows it (quoted, cut), or ``None``: for a problem
    with one cell (``row`` and ``column`` given, see :meth:`of_cell`) that the cell is empty,
    which is rendered ``NULL``; otherwise that no value is concerned (a missing file or
    column).
    """

    table: str
    file: str
    column: str | None
    row: int | None
    value: str | None
    reason: str

    @classmethod
    def of_cell(cls, table: str, file: str, column: str, row: int, value: object,
                reason: str) -> InputProblem:
        """The problem of one cell whose raw value is ``value`` (``None``: empty)."""
        return cls(table, file, column, row, None if value is None else shorten(value), reason)

    def __str__(self) -> str:
        where = [self.file]
        if self.column is not None:
            where.append(f"column {self.column!r}")
        if self.row is not None:
            where.append(f"row {self.row}")
        text = ", ".join(where) + f": {self.reason}"
        if self.value is not None or (self.row is not None and self.column is not None):
            text += f" (value {shorten(None) if self.value is None else self.value})"
        return text


class InputError(LinkageError):
    """The input folder breaks the contract; carries every problem found (up to a limit)."""

    exit_code = 2

    def __init__(self, problems: list[InputProblem] | str, *, total: int | None = None) -> None:
        if isinstance(problems, str):
            self.problems: list[InputProblem] = []
            super().__init__(problems)
            return
        self.problems = problems
        total = len(problems) if total is None else total
        head = f"input breaks the contract ({total} problem{'s' if total != 1 else ''})"
        lines = [head, *(f"  {p}" for p in problems)]
        if total > len(problems):
            lines.append(f"  … and {total - len(problems)} more")
        super().__init__("\n".join(lines))
