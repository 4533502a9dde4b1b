"""The run's spill folder: where DuckDB (and a local Spark) may write to disk, and nothing else.

A run whose tables outgrow ``engine.memory_limit`` spills them to files, and before ingest
has replaced them by keyed hashes those tables hold raw identifying values (emails, IPs,
card tokens). So:

* every run spills into a folder of its own, ``linkage-spill-XXXXXXXX`` under
  ``engine.temp_directory`` (default: the system's temporary folder), made with mode 0700;
* while the run lasts the process's umask is 077, so every file DuckDB creates in it is 0600
  (DuckDB itself creates them 0644);
* the folder holds a marker file, ``linkage-spill.lock``, on which the run holds an
  exclusive ``flock`` for its whole life. The kernel drops that lock when the process dies,
  however it dies;
* the folder is removed when the run ends, and a run that was killed (SIGKILL, OOM killer,
  power loss) leaves it behind: the next run that starts removes every such leftover under the
  same parent folder, which is one named ``linkage-spill-*``, owned by the same user, not a
  symbolic link, holding the marker, and whose marker nobody holds locked (a run still going
  on, for this store or another, holds its own). Anything else is left alone.

Examples
--------
>>> import tempfile
>>> root = tempfile.mkdtemp()
>>> with spill_folder(root) as folder:
...     oct(folder.stat().st_mode & 0o777), folder.name.startswith(PREFIX)
('0o700', True)
>>> list(Path(root).iterdir())
[]
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["MARKER", "PREFIX", "remove_leftovers", "spill_folder"]

log = logging.getLogger(__name__)

PREFIX = "linkage-spill-"
"""The name prefix of every spill folder linkage makes."""

MARKER = "linkage-spill.lock"
"""The marker file in a spill folder, locked by the run that owns the folder."""


@contextlib.contextmanager
def spill_folder(parent: str | Path | None = None) -> Iterator[Path]:
    """A private spill folder under ``parent`` (empty or ``None``: the system's temporary
    folder) for the duration of the ``with`` block; leftovers of dead runs are removed
    first, and the umask is 077 inside the block."""
    root = Path(parent or tempfile.gettempdir())
    remove_leftovers(root)
    folder = Path(tempfile.mkdtemp(prefix=PREFIX, dir=root))  # mode 0700
    # The marker is locked under another name and then renamed into place: another run's
    # remove_leftovers must never find it unlocked (it would take the folder for a dead
    # run's), and a folder without a marker is left alone.
    setting_up = folder / (MARKER + ".new")
    fd = os.open(setting_up, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    umask = os.umask(0o077)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, f"linkage pid={os.getpid()}\n".encode())
        os.rename(setting_up, folder / MARKER)
        yield folder
    finally:
        os.umask(umask)
        shutil.rmtree(folder, ignore_errors=True)
        os.close(fd)


def remove_leftovers(root: Path) -> list[Path]:
    """Remove the spill folders under ``root`` left by runs that died; return them.

    Only folders that are certainly linkage's and certainly dead go (see the module notes).
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(root))
    except OSError:
        return removed  # a missing or unreadable parent: mkdtemp will say so
    uid = os.getuid()
    for entry in entries:
        if not entry.name.startswith(PREFIX) or not entry.is_dir(follow_symlinks=False):
            continue
        if entry.stat(follow_symlinks=False).st_uid != uid:
            continue
        try:
            fd = os.open(Path(entry.path) / MARKER, os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            continue  # no marker: not ours, or a run still setting its folder up
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a live run holds it
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(Path(entry.path))
        finally:
            os.close(fd)
    if removed:
        log.warning("removed %d spill folder(s) left by runs that died: %s", len(removed),
                    ", ".join(str(p) for p in removed))
    return removed
