"""Output that is not a terminal gets whole values (no ``…``), and ``--json`` real JSON."""

from __future__ import annotations

import io
import json
from datetime import datetime

from rich.console import Console
from rich.table import Table

from linkage.cli.terminal import UNBOUNDED_WIDTH, cell, output_console
from linkage.labels import add_label
from linkage.store import RunRecord, Store
from tests import helpers


def _two_runs(store: Store) -> None:
    for _ in range(2):
        run_id = store.begin_run(config_json='{"continuity": {"min_jaccard": 0.5}}',
                                 config_hash="0", seed=1, code_version="test",
                                 input_path="/a/very/long/input/folder/" + "x" * 120)
        store.publish_run(run_id, RunRecord.empty(input_fingerprint="sha256:0"))


def test_tables_are_not_cut_when_piped(store: Store) -> None:
    _two_runs(store)
    res = helpers.invoke("runs", "--db", store.url, COLUMNS=None)
    assert res.exit_code == 0, res.output
    assert "…" not in res.stdout
    assert res.stdout.count("succeeded") == 2
    started = store.runs()[0]["started_at"]
    assert str(started) in res.stdout  # the whole timestamp, on one line


def test_columns_still_sets_the_width() -> None:
    sink = io.StringIO()
    assert output_console(file=sink, force_terminal=False).width == UNBOUNDED_WIDTH
    narrow = output_console(file=sink, force_terminal=False, _environ={"COLUMNS": "60"})
    assert narrow.width == 60
    assert output_console(file=sink, force_terminal=True, width=70).width == 70


def test_long_cells_fold_on_a_terminal() -> None:
    console = Console(width=30, record=True, file=io.StringIO())
    table = Table("id")
    table.add_row(cell("c" + "0123456789" * 5))
    console.print(table)
    text = console.export_text()
    assert "…" not in text
    assert "".join(line.strip("│ ") for line in text.splitlines()[3:-1]) == \
        "c" + "0123456789" * 5


def test_runs_and_labels_json_hold_json(store: Store) -> None:
    _two_runs(store)
    add_label(store, "account", "a1", "watch", note="odd", by="ann")
    runs = json.loads(helpers.invoke("runs", "--db", store.url, "--json").stdout)
    assert runs[0]["config"] == {"continuity": {"min_jaccard": 0.5}}
    assert runs[0]["rows_read"] == {} and "config_json" not in runs[0]
    assert datetime.fromisoformat(runs[0]["started_at"]).tzinfo is not None
    assert "T" in runs[0]["started_at"]
    labels = json.loads(helpers.invoke("labels", "--db", store.url, "--json").stdout)
    assert labels[0]["members"] is None and "members_json" not in labels[0]
