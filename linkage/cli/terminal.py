"""Terminal-safe text: what the CLI prints of stored or input text.

Account ids, notes, labellers' names, file names and error messages can hold anything the
input or a user put there, including escape sequences that a terminal would obey (ESC ``]``
can set the window title or plant a hyperlink, ESC ``[`` move the cursor and overwrite what
was printed, a carriage return hide the start of a line). Every command prints such text
through :func:`printable` (or :func:`cell` for a Rich table), which shows each control
character as a visible escape instead. Tabs and newlines stay: they lay text out but cannot
command the terminal. ``--format json`` output is safe already (``json.dumps`` escapes
control characters).

Tables print whole values: a cell too wide for its column folds onto more lines rather than
ending in ``…``, and standard output that is not a terminal (a pipe, a file) gets tables as
wide as their values (:func:`output_console`), so ``linkage runs | grep`` sees every status
and timestamp in full. ``COLUMNS`` set in the environment still fixes the width.

Examples
--------
>>> printable("a1\\x1b]0;owned\\x07")
'a1\\\\x1b]0;owned\\\\x07'
>>> printable("two\\nlines\\tand a tab")
'two\\nlines\\tand a tab'
>>> printable("\\u202eevil")
'\\\\u202eevil'
>>> printable(None)
''
"""

from __future__ import annotations

import logging
import re
from typing import Any

from rich.console import Console, ConsoleDimensions
from rich.text import Text

__all__ = ["UNBOUNDED_WIDTH", "PrintableFormatter", "cell", "output_console", "printable"]

UNBOUNDED_WIDTH = 100_000
"""The width of a console that does not write to a terminal: wider than any table."""

# C0 controls but tab and newline, DEL, the C1 controls (U+0080-U+009F, which some terminals
# read as ESC sequences), and the Unicode format characters that reorder or hide text
# (bidirectional overrides and isolates, line and paragraph separators).
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(value: object) -> str:
    """``value`` as text whose control characters are shown, not obeyed (``None``: ``''``)."""
    text = "" if value is None else str(value)
    return _CONTROL.sub(_escape, text)


def cell(value: object) -> Text:
    """A Rich table cell of ``value``: :func:`printable`, and never read as Rich markup."""
    return Text(printable(value), overflow="fold")


class _Console(Console):
    """A Rich console as wide as its tables when it does not write to a terminal."""

    @property
    def size(self) -> ConsoleDimensions:
        dims = super().size
        if self._width is None and not self.is_terminal and "COLUMNS" not in self._environ:
            return ConsoleDimensions(UNBOUNDED_WIDTH, dims.height)
        return dims

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]


def output_console(**kwargs: Any) -> Console:
    """A Rich console (``Console(**kwargs)``) that cuts no table when its output is not a
    terminal: it is then as wide as the widest table, unless ``COLUMNS`` says otherwise."""
    return _Console(**kwargs)


class PrintableFormatter(logging.Formatter):
    """A log formatter whose lines pass through :func:`printable` (log messages quote input
    values too)."""

    def format(self, record: logging.LogRecord) -> str:
        return printable(super().format(record))
