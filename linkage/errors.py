"""One error hierarchy for linkage.

Every error a user can cause is a :class:`LinkageError` subclass whose ``exit_code`` the CLI
returns: 2 for bad input, configuration or usage (the user can fix it), 1 for an internal
failure, 3 when another run holds the store. Messages are built from the offending value and
what was expected, so they can be acted on without reading code.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

__all__ = [
    "CARD_REDACTED",
    "CardNumberFilter",
    "ConfigError",
    "InputError",
    "InputProblem",
    "LinkageError",
    "NotFoundError",
    "RunLockedError",
    "StoreError",
    "luhn_valid",
    "redact_card_numbers",
    "shorten",
]

CARD_REDACTED = "<redacted card number>"
"""Shown instead of a raw card number, wherever one would otherwise appear."""

_DIGIT_RUN = re.compile(r"[0-9](?:[ -]*[0-9])*")


def luhn_valid(digits: str) -> bool:
    """True when the ASCII digits ``digits`` pass the Luhn check (card numbers do)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def redact_card_numbers(text: str) -> str:
    """Hide card numbers in free text (a value, a column or file name, a reader's error).

    Every run of digits (spaces and dashes allowed between them) holding a stretch of 13-19
    digits that passes the Luhn check is replaced by :data:`CARD_REDACTED`. This errs on the
    side of hiding: a long number may be hidden by chance, a card number is never shown.

    >>> redact_card_numbers("line 3: acc1,4111 1111 1111 1111,2024")
    'line 3: acc1,<redacted card number>,2024'
    """

    def hide(m: re.Match[str]) -> str:
        digits = re.sub("[ -]", "", m.group(0))
        for size in range(13, 20):
            for start in range(len(digits) - size + 1):
                if luhn_valid(digits[start : start + size]):
                    return CARD_REDACTED
        return m.group(0)

    return _DIGIT_RUN.sub(hide, text)


class CardNumberFilter(logging.Filter):
    """A logging filter that redacts card numbers in a record's message (its arguments
    merged in), so that no log line quotes one from the input (say a headerless file's first
    row, logged as its column names)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact_card_numbers(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def shorten(value: object, limit: int = 60) -> str:
    """Render a value for an error message: card numbers redacted, ``repr``-quoted and cut
    to ``limit`` characters.

    Examples
    --------
    >>> shorten("x" * 100, limit=10)
    "'xxxxxxxx…"
    >>> shorten(None)
    'NULL'
    >>> shorten("4111111111111111")
    "'<redacted card number>'"
    """
    if value is None:
        return "NULL"
    text = repr(redact_card_numbers(str(value)))
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
    column). Card numbers in any field are redacted when the problem is made, so that neither
    a message nor the stored quarantine sample can show one (a file or column name, or an
    ``account_id`` that is a card number, included).
    """

    table: str
    file: str
    column: str | None
    row: int | None
    value: str | None
    reason: str

    def __post_init__(self) -> None:
        for name in ("table", "file", "column", "value", "reason"):
            text = getattr(self, name)
            if text is not None:
                object.__setattr__(self, name, redact_card_numbers(text))

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
            super().__init__(redact_card_numbers(problems))
            return
        self.problems = problems
        total = len(problems) if total is None else total
        head = f"input breaks the contract ({total} problem{'s' if total != 1 else ''})"
        lines = [head, *(f"  {p}" for p in problems)]
        if total > len(problems):
            lines.append(f"  … and {total - len(problems)} more")
        super().__init__("\n".join(lines))
