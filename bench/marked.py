"""One marked section of a generated page: the text between two HTML-comment markers."""

from __future__ import annotations

from pathlib import Path


def write_marked(path: Path, heading: str, begin: str, end: str, text: str) -> None:
    """Replace the text between ``begin`` and ``end`` in ``path``; without the markers,
    append ``heading`` and the marked block.

    The markers sit under the section's heading, so scripts that rewrite other sections
    (which split the page at ``## `` headings) carry them along.
    """
    old = path.read_text() if path.exists() else ""
    block = f"{begin}\n{text}\n{end}"
    if begin in old and end in old:
        new = old[:old.index(begin)] + block + old[old.index(end) + len(end):]
    else:
        new = old.rstrip("\n") + f"\n\n{heading}\n\n" + block + "\n"
    path.write_text(new)
