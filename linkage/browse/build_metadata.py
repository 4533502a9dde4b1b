"""Build linkage/browse/metadata.json from docs/schema.md: the table, view and column
descriptions, and every SQLite (or portable) SQL recipe as a canned query, its example ids
turned into named parameters (:cluster_id, :account_id). Run from the repository root after
editing docs/schema.md:

    python -m linkage.browse.build_metadata

tests/test_datasette.py checks that the shipped file is what this builds, that what it
describes exists and that every query runs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

OUT = Path(__file__).with_name("metadata.json")

FALLBACK = {"store_meta": "Facts about the store itself: the pseudonymisation key's check value."}


def unlink(x: Any) -> Any:
    """Markdown links reduced to their text."""
    if isinstance(x, dict):
        return {k: unlink(v) for k, v in x.items()}
    return re.sub(r"\[([^\]]+)\]\([^)]+\)", r"\1", x) if isinstance(x, str) else x


def build(doc: str) -> dict[str, Any]:
    """The Datasette metadata described by the text of docs/schema.md."""
    tables: dict[str, Any] = {}
    for m in re.finditer(r"^### `(\w+)`\n(.*?)(?=^#{2,3} )", doc, re.S | re.M):
        name, body = m.group(1), m.group(2)
        paras = [p.strip() for p in body.split("\n\n")
                 if p.strip() and not p.strip().startswith("|")]
        desc = " ".join(paras[0].split()) if paras else ""
        cols: dict[str, str] = {}
        for row in re.finditer(r"^\| `(\w+)`(?:, `(\w+)`)? \| ([^|]*) \| (.*) \|$", body, re.M):
            for c in (row.group(1), row.group(2)):
                if c:
                    meaning = row.group(4).strip()
                    cols[c] = (row.group(3).strip()
                               + (": " + meaning if meaning else "")).replace("`", "")
        # A section with only a column table (store_meta) gets its one-line summary.
        desc = desc or FALLBACK.get(name, f"See docs/schema.md, table {name}.")
        tables[name] = {"description": desc.replace("`", ""), "columns": cols}
    found = re.search(r"^## Views\n(.*?)^## ", doc, re.S | re.M)
    views = found.group(1) if found else ""
    for row in re.finditer(r"^\| `(\w+)` \| (.*?) \| (.*) \|$", views, re.M):
        tables[row.group(1)] = {"description": (
            row.group(3) + " (view; columns: " + row.group(2) + ")").replace("`", "")}
    queries: dict[str, dict[str, str]] = {}
    recipes = doc.split("## SQL recipes", 1)[1]
    for m in re.finditer(r"^### (.+?)\n(.*?)(?=^### |\Z)", recipes, re.S | re.M):
        title, body = m.group(1).strip(), m.group(2)
        for block in re.findall(r"^```sql\n(.*?)^```", body, re.S | re.M):
            first = block.strip().splitlines()[0].strip()
            if first == "-- PostgreSQL":
                continue
            sql = block.strip()
            if first == "-- SQLite":
                sql = sql.split("\n", 1)[1].strip()
            ids = re.findall(r"'(c[0-9a-f]{12})'", sql)
            if len(ids) == 1:
                sql = sql.replace(f"'{ids[0]}'", ":cluster_id")
            elif len(ids) == 2:
                sql = sql.replace(f"'{ids[0]}'", ":first_cluster_id").replace(
                    f"'{ids[1]}'", ":second_cluster_id"
                )
            sql = re.sub(r"'a\d{7}'", ":account_id", sql)
            key = re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_")
            base, n = key, 1
            while key in queries:
                n += 1
                key = f"{base}_{n}"
            queries[key] = {"title": title, "sql": sql}
    tables = unlink(tables)
    meta = {
        "title": "linkage store",
        "description": "Runs, clusters, memberships and evidence of linkage, the graph-based "
        "account linkage engine. Identifying values are keyed hashes. Tables, views and recipes: "
        "docs/schema.md.",
        "databases": {"linkage": {"tables": tables, "queries": queries}},
    }
    return meta


def text(meta: dict[str, Any]) -> str:
    """The file's text: indented JSON, non-ASCII kept."""
    return json.dumps(meta, indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    meta = build(Path("docs/schema.md").read_text(encoding="utf-8"))
    OUT.write_text(text(meta), encoding="utf-8")
    queries = meta["databases"]["linkage"]["queries"]
    print(len(meta["databases"]["linkage"]["tables"]), len(queries), list(queries))
