"""Stage progress: a live Rich display on a terminal, plain log lines anywhere else.

A scheduler captures standard error into a log file; escape codes and redrawn bars would make
that log unreadable, so the live display is used only when standard error is a terminal.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from linkage.cli.terminal import PrintableFormatter

__all__ = ["StageProgress", "setup_logging"]


def setup_logging(verbosity: int, console: Console) -> None:
    """``verbosity``: -1 quiet (warnings), 0 normal (info), 1 verbose (debug)."""
    level = {-1: logging.WARNING, 0: logging.INFO}.get(verbosity, logging.DEBUG)
    root = logging.getLogger("linkage")
    root.handlers.clear()
    root.setLevel(level)
    root.propagate = False
    handler: logging.Handler
    if console.is_terminal:
        handler = RichHandler(console=console, show_path=False, markup=False)
        handler.setFormatter(PrintableFormatter("%(message)s"))
    else:
        handler = logging.StreamHandler(sys.stderr)
        # PrintableFormatter: log messages quote input values, which must not command the
        # terminal that shows the log (or `tail -f` on it).
        handler.setFormatter(PrintableFormatter(
            "%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S%z"))
    handler.setLevel(level)
    root.addHandler(handler)


class StageProgress:
    """Reporter for :func:`linkage.pipeline.run_pipeline`: one line per stage."""

    def __init__(self, console: Console, *, enabled: bool) -> None:
        self._console = console
        self._live = enabled and console.is_terminal
        self._progress: Progress | None = None

    def __enter__(self) -> StageProgress:
        if self._live:
            self._progress = Progress(
                SpinnerColumn(finished_text="[green]✓"),
                TextColumn("{task.description}"),
                TimeElapsedColumn(),
                console=self._console,
                transient=False,
            )
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        if self._progress is None:
            yield
            return
        task = self._progress.add_task(stage, total=1)
        start = time.perf_counter()
        try:
            yield
        finally:
            self._progress.update(task, completed=1,
                                  description=f"{stage} ({time.perf_counter() - start:.1f} s)")
