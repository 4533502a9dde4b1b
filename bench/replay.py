"""Time to detection: a campaign replayed night by night through linkage's nightly job.

Usage::

    python bench/replay.py                               # seedscale: 1,000,000 accounts, 42 nights
    python bench/replay.py --accounts 100000             # the same campaign at a tenth
    python bench/replay.py --accounts 100000 --nights 14 --incremental
    python bench/replay.py --accounts 100000 --incremental --compare-full   # after a full one
    python bench/replay.py --accounts 100000 --nights 6 --config cold.toml --no-doc
    python bench/replay.py --render bench/replay.json     # the section from raw figures

The ``seedscale`` campaign (``linkage generate --scenario seedscale``: 2.5% of the accounts
are operators in groups of 100-450 with clean metadata, tied only by their usage; 28.8
requests per account over six weeks) is generated once per ``--accounts`` and ``--seed`` and
cached in ``bench/.cache/replay/``. Night ``k`` (0-41) is day ``k`` of the six weeks of usage;
its run happens at the end of that day and sees everything known by then:

- the accounts created before the end of the day (those created in the six months before the
  usage window are all there on night 0);
- their rows of the other tables whose own timestamp (``added_at``, ``seen_at``; ``ts`` of
  ``interactions``) is before the end of the day (a row without one counts from its account's
  creation).

:func:`slice_nights` tags every row with the night it becomes known in one DuckDB pass per
table and writes it as Parquet partitioned by night (``parts/<table>/night=K/``); night ``k``'s
input is a folder of symbolic links to the partitions ``0..k`` (``nights/KK/``), its
incremental delta one link to partition ``k`` (``delta/KK/``). Nothing is copied per night.

Each night runs :func:`linkage.pipeline.run_pipeline` with the default configuration against
one SQLite store, in a fresh process (so that peak memory is that night's), in order, so that
warm start and cluster continuity work as they do in production (``--config`` gives every night
a configuration file instead of the defaults). ``--incremental`` runs night 0 in full with
``--state`` and every later night on its delta alone (``linkage run --incremental``), which
publishes the clusters a full run would; ``--compare-full`` checks that, night by night,
against the store of the last full replay of the same campaign and configuration.

Definitions (:func:`detection`), per operator group:

- an account is *active* on night ``k`` once it has sent a request before the end of day ``k``;
- ``night_active``: the first night on which at least ``min(20, group size)`` of the group's
  accounts are active;
- ``first_flagged``: the first night on which at least one of its accounts is active and at
  least half of its active accounts are members of flagged clusters;
- ``delay = first_flagged - night_active`` in nights (negative: flagged before 20 were active);
- ``served``: the share of the group's six weeks of requests sent on or before the day of
  ``first_flagged`` (the night's run comes after the day's requests, so they cannot be
  stopped by it); a group never flagged within the replayed nights counts all of its requests
  as served. The campaign's share sums requests over groups.

Targets: every group has ``delay <= 2``; under 5% of the campaign's requests served before
its accounts are flagged. Raw figures go to ``bench/replay.json``; the section between the
replay markers of ``docs/quality.md`` is rewritten (the rest of the page is kept).
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import shutil
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).parent))
from marked import write_marked

CACHE = Path(__file__).parent / ".cache" / "replay"
JSON_OUT = Path(__file__).parent / "replay.json"
DOC = Path(__file__).parent.parent / "docs" / "quality.md"
HEADING = "## Time to detection"
BEGIN, END = "<!-- replay:begin -->", "<!-- replay:end -->"
SECRET = b"bench-replay-secret-0123456789ab"
DAY = 86_400
ACTIVE_MIN = 20  # a group "starts" once this many of its accounts are active
FLAGGED_SHARE = 0.5  # a group is flagged once this share of its active accounts is
TARGET_DELAY = 2  # nights from ACTIVE_MIN active accounts to flagged, at most
TARGET_SERVED = 0.05  # share of the campaign's requests served before it is flagged, below
# The timestamp of each input table that says when its row became known.
KNOWN_AT = {
    "accounts": "created_at",
    "payment_instruments": "added_at",
    "ip_events": "seen_at",
    "devices": "seen_at",
    "observations": "seen_at",
    "interactions": "ts",
}


def _q(path: Path) -> str:
    """``path`` as an SQL string literal (COPY targets cannot be bound parameters)."""
    return "'" + str(path).replace("'", "''") + "'"


def _table_files(data: Path, table: str) -> str | None:
    """A glob of the table's Parquet files in ``data`` (a file or a partitioned folder)."""
    if (data / f"{table}.parquet").is_file():
        return str(data / f"{table}.parquet")
    if (data / table).is_dir():
        return str(data / table / "**" / "*.parquet")
    return None


def night_of(known_at: str, start: int) -> str:
    """SQL for the night a row becomes known: day index from ``start`` (Unix seconds), with
    everything known before the usage window on night 0."""
    return f"greatest(0, floor((epoch({known_at}) - {int(start)}) / {DAY}))::INTEGER"


def slice_nights(data: Path, out: Path, *, start: int, n_nights: int,
                 memory_limit: str = "2GB") -> dict[str, int]:
    """Write ``out/parts/<table>/night=K/*.parquet`` (rows known first on night ``K``) and
    ``out/facts/`` (per account: group, creation and first-request night; requests per
    group and night); return the rows written per table.

    One columnar pass per table: every row is tagged with ``night_of(greatest(created_at,
    coalesce(row timestamp, created_at)))`` by a join with ``accounts``; rows known only after
    night ``n_nights - 1`` are left out.
    """
    parts, facts = out / "parts", out / "facts"
    shutil.rmtree(out, ignore_errors=True)
    parts.mkdir(parents=True)
    facts.mkdir()
    con = duckdb.connect(config={"memory_limit": memory_limit,
                                 "temp_directory": str(out / ".spill"),
                                 "preserve_insertion_order": False})
    con.execute("SET enable_progress_bar = false")
    try:
        accounts = _table_files(data, "accounts")
        if accounts is None:
            raise SystemExit(f"no accounts table in {data}")
        con.execute("CREATE TEMP TABLE acc AS SELECT account_id, created_at, "
                    f"{night_of('created_at', start)} AS night FROM read_parquet(?)",
                    [accounts])
        rows: dict[str, int] = {}
        for table, col in KNOWN_AT.items():
            files = _table_files(data, table)
            if files is None:
                continue
            source = f"read_parquet({_q(Path(files))})"
            if table == "accounts":
                select = f"SELECT acc.night, t.* FROM {source} t JOIN acc USING (account_id)"
            else:
                known = f"greatest(a.created_at, coalesce(t.{col}, a.created_at))"
                select = (f"SELECT {night_of(known, start)} AS night, t.* "
                          f"FROM {source} t JOIN acc a USING (account_id)")
            ((rows[table],),) = con.execute(
                f"COPY (SELECT * FROM ({select}) WHERE night < {int(n_nights)}) "
                f"TO {_q(parts / table)} (FORMAT parquet, PARTITION_BY (night))").fetchall()
        used = f"read_parquet({_q(parts / 'interactions' / '*' / '*.parquet')}, " \
            "hive_partitioning = true)"
        truth = data / "truth.csv"
        con.execute(
            "CREATE TEMP TABLE truth AS SELECT account_id, nullif(group_id, '') AS group_id "
            "FROM read_csv(?, header = true, all_varchar = true)", [str(truth)])
        con.execute(
            "COPY (SELECT acc.account_id, t.group_id, acc.night AS created_night, "
            "f.first_night FROM acc LEFT JOIN truth t USING (account_id) "
            f"LEFT JOIN (SELECT account_id, min(night) AS first_night FROM {used} "
            "GROUP BY ALL) f USING (account_id) "
            f"WHERE acc.night < {int(n_nights)}) TO {_q(facts / 'accounts.parquet')} "
            "(FORMAT parquet)")
        con.execute(
            f"COPY (SELECT t.group_id, i.night, count(*) AS requests FROM {used} i "
            "LEFT JOIN truth t USING (account_id) GROUP BY ALL) "
            f"TO {_q(facts / 'requests.parquet')} (FORMAT parquet)")
    finally:
        con.close()
        shutil.rmtree(out / ".spill", ignore_errors=True)
    return rows


def link_night(parts: Path, target: Path, nights: range) -> None:
    """Make ``target`` an input folder of the partitions ``nights`` of every table: one
    folder per table holding a symbolic link ``night-KK`` per partition that exists
    (``accounts`` always exists, empty on a night without new accounts)."""
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for table_dir in sorted(p for p in parts.iterdir() if p.is_dir()):
        found = [(k, table_dir / f"night={k}") for k in nights
                 if (table_dir / f"night={k}").is_dir()]
        if not found and table_dir.name != "accounts":
            continue
        (target / table_dir.name).mkdir()
        for k, src in found:
            (target / table_dir.name / f"night-{k:02d}").symlink_to(src.resolve())


def ensure_nights(accounts: int, seed: int) -> Path:
    """Generate the campaign and slice it into nights unless cached; return its folder."""
    from linkage.synth import generate
    from linkage.synth.usage import USAGE_DAYS, USAGE_START

    root = CACHE / f"seedscale-{accounts}-s{seed}"
    if (root / "ready").exists():
        return root
    data = root / "data"
    if not (data / "truth.csv").exists():
        t0 = time.perf_counter()
        generate(data, scenario="seedscale", n_accounts=accounts, seed=seed)
        print(f"generated in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    t0 = time.perf_counter()
    rows = slice_nights(data, root / "sliced", start=USAGE_START, n_nights=USAGE_DAYS)
    parts = root / "sliced" / "parts"
    for k in range(USAGE_DAYS):
        link_night(parts, root / "nights" / f"{k:02d}", range(k + 1))
        link_night(parts, root / "delta" / f"{k:02d}", range(k, k + 1))
    (root / "ready").write_text(json.dumps({"rows": rows, "start": USAGE_START}))
    print(f"sliced into {USAGE_DAYS} nights in {time.perf_counter() - t0:.0f} s",
          file=sys.stderr)
    return root


def run_night(input_dir: str, db_url: str, state_dir: str | None,
              incremental: bool, config: str | None = None) -> dict[str, Any]:
    """One nightly run (called in a fresh process); its run id, seconds and peak memory."""
    from linkage.config import load_config
    from linkage.pipeline import run_pipeline
    from linkage.store import Store

    logging.basicConfig(level=logging.WARNING)
    t0 = time.perf_counter()
    with Store(db_url) as store:
        s = run_pipeline(Path(input_dir), store, load_config(config), SECRET,
                         state_dir=Path(state_dir) if state_dir else None,
                         incremental=incremental)
    return {"run_id": s.run_id, "seconds": round(time.perf_counter() - t0, 2),
            "stages": s.timings, "peak_rss_mb": round(max(s.peak_rss_mb.values()), 1),
            "n_edges": s.n_edges, "n_clusters": s.n_clusters,
            "n_flagged_clusters": s.n_flagged, "largest_component": s.largest_component}


def measure_night(con: duckdb.DuckDBPyConnection, night: int,
                  memberships: pa.Table) -> tuple[dict[str, Any], pa.Table]:
    """Night ``night``'s totals and its per-group rows ``group_id, night, size, active,
    flagged_active`` from the run's memberships (``account_id, flagged``) and the facts
    tables ``accounts`` and ``requests`` in ``con``."""
    con.register("m", memberships.select(["account_id", "flagged"]))
    try:
        groups = con.sql(
            "SELECT f.group_id, ?::INTEGER AS night, count(*) AS size, "
            "count(*) FILTER (WHERE f.first_night <= ?) AS active, "
            "count(*) FILTER (WHERE f.first_night <= ? AND m.flagged) AS flagged_active "
            "FROM accounts f LEFT JOIN m USING (account_id) WHERE f.group_id IS NOT NULL "
            "GROUP BY f.group_id ORDER BY f.group_id", params=[night] * 3).to_arrow_table()
        (row,) = con.execute(
            "SELECT count(*) FILTER (WHERE f.created_night <= $k), "
            "count(*) FILTER (WHERE f.first_night <= $k), "
            "count(*) FILTER (WHERE f.group_id IS NOT NULL AND f.created_night <= $k), "
            "count(*) FILTER (WHERE f.group_id IS NOT NULL AND f.first_night <= $k), "
            "count(*) FILTER (WHERE m.flagged), "
            "count(*) FILTER (WHERE m.flagged AND f.group_id IS NOT NULL), "
            "count(*) FILTER (WHERE m.flagged AND f.group_id IS NULL), "
            "(SELECT sum(requests) FROM requests WHERE night <= $k), "
            "(SELECT sum(requests) FROM requests WHERE night <= $k AND group_id IS NOT NULL) "
            "FROM accounts f LEFT JOIN m USING (account_id)", {"k": night}).fetchall()
    finally:
        con.unregister("m")
    keys = ("accounts", "active", "operator_accounts", "operator_active", "flagged",
            "flagged_operators", "flagged_legitimate", "requests", "operator_requests")
    totals = {k: int(v or 0) for k, v in zip(keys, row, strict=True)}
    return totals, groups


def detection(group_nights: pa.Table, requests: pa.Table, *, active_min: int = ACTIVE_MIN,
              flagged_share: float = FLAGGED_SHARE) -> pa.Table:
    """Per operator group: when it started, when it was first flagged, and what it sent
    before.

    Parameters
    ----------
    group_nights : pa.Table
        ``group_id, night, size, active, flagged_active``: one row per group and replayed
        night (``size``: the group's accounts over the whole campaign).
    requests : pa.Table
        ``group_id, night, requests``: requests sent on each day (``group_id`` null for
        legitimate accounts, ignored here); all days of the campaign, replayed or not.

    Returns
    -------
    pa.Table
        ``group_id, size, night_active, first_flagged, delay, unflagged_after, requests,
        served, served_share`` by ``group_id``: ``night_active`` the first night with at least
        ``min(active_min, size)`` active accounts; ``first_flagged`` the first night with an
        active account and at least ``flagged_share`` of the active ones flagged (null:
        never); ``unflagged_after`` replayed nights after ``first_flagged`` that miss the
        condition again; ``served`` the requests sent up to and including the day of
        ``first_flagged`` (all of them if never flagged).
    """
    con = duckdb.connect()
    try:
        con.register("gn", group_nights)
        con.register("rq", requests)
        return con.sql("""
            WITH g AS (
                SELECT *, active > 0 AND flagged_active >= ? * active AS hit FROM gn
            ), first AS (
                SELECT group_id, max(size) AS size,
                       min(night) FILTER (WHERE active >= least(?, size)) AS night_active,
                       min(night) FILTER (WHERE hit) AS first_flagged
                FROM g GROUP BY group_id
            ), after AS (
                SELECT f.group_id, count(*) FILTER (WHERE g.night > f.first_flagged
                                                    AND NOT g.hit) AS unflagged_after
                FROM first f JOIN g USING (group_id) GROUP BY f.group_id
            ), req AS (
                SELECT f.group_id, coalesce(sum(r.requests), 0) AS requests,
                       coalesce(sum(r.requests) FILTER (
                           WHERE f.first_flagged IS NULL OR r.night <= f.first_flagged), 0)
                           AS served
                FROM first f LEFT JOIN rq r USING (group_id) GROUP BY f.group_id
            )
            SELECT f.group_id, f.size::BIGINT AS size, f.night_active, f.first_flagged,
                   f.first_flagged - f.night_active AS delay, a.unflagged_after,
                   q.requests::BIGINT AS requests, q.served::BIGINT AS served,
                   q.served / nullif(q.requests, 0) AS served_share
            FROM first f JOIN after a USING (group_id) JOIN req q USING (group_id)
            ORDER BY f.group_id
        """, params=[flagged_share, active_min]).to_arrow_table()
    finally:
        con.close()


def targets(groups: pa.Table, last_night: int) -> dict[str, Any]:
    """The two targets, met or missed, and by how much.

    A group is *late* when it was flagged more than :data:`TARGET_DELAY` nights after it
    started, or not at all although the replay went on at least that long after it started
    (one that started later is *pending*: not yet decided). The target is ``missed`` if a
    group is late, else ``undecided`` while a group is pending or has not started, else
    ``met``.
    """
    rows = groups.to_pylist()
    started = [r for r in rows if r["night_active"] is not None]
    pending = [r for r in started if r["first_flagged"] is None
               and r["night_active"] + TARGET_DELAY > last_night]
    never = [r for r in started if r["first_flagged"] is None and r not in pending]
    late = [r for r in started if r["delay"] is not None and r["delay"] > TARGET_DELAY]
    delays = [r["delay"] for r in rows if r["delay"] is not None]
    total = sum(r["requests"] for r in rows)
    served = sum(r["served"] for r in rows)
    share = served / total if total else 0.0
    return {
        "delay": {"target": TARGET_DELAY,
                  "met": not late and not never and not pending and len(started) == len(rows),
                  "status": ("missed" if late or never else "undecided"
                             if pending or len(started) < len(rows) else "met"),
                  "groups": len(rows), "late": len(late), "never_flagged": len(never),
                  "pending": len(pending), "never_started": len(rows) - len(started),
                  "worst_delay": max(delays) if delays else None},
        "served": {"target": TARGET_SERVED, "met": share < TARGET_SERVED, "share": share,
                   "requests": total, "served": served},
    }


def work_dir(root: Path, *, incremental: bool, config: Path | None) -> Path:
    """The folder of a replay's store (and state): one per mode and configuration file."""
    name = "work" + ("-incremental" if incremental else "")
    return root / (name + (f"-{config.stem}" if config else ""))


def replay(root: Path, *, nights: int, incremental: bool,
           config: Path | None = None) -> dict[str, Any]:
    """Run the nights in order against a fresh store; return every figure."""
    from linkage.store import Store

    work = work_dir(root, incremental=incremental, config=config)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    db_url = f"sqlite:///{work / 'store.db'}"
    facts = root / "sliced" / "facts"
    con = duckdb.connect()
    con.execute("CREATE TABLE accounts AS SELECT * FROM read_parquet(?)",
                [str(facts / "accounts.parquet")])
    con.execute("CREATE TABLE requests AS SELECT * FROM read_parquet(?)",
                [str(facts / "requests.parquet")])
    start = json.loads((root / "ready").read_text())["start"]
    per_night: list[dict[str, Any]] = []
    group_nights: list[pa.Table] = []
    spawn = multiprocessing.get_context("spawn")
    for k in range(nights):
        inc = incremental and k > 0
        folder = root / ("delta" if inc else "nights") / f"{k:02d}"
        state = str(work / "state") if incremental else None
        # A fresh process per night: its peak memory is the night's, as in production.
        with ProcessPoolExecutor(1, mp_context=spawn) as pool:
            run = pool.submit(run_night, str(folder), db_url, state, inc,
                              str(config) if config else None).result()
        with Store(db_url) as store:
            members = store.memberships(run["run_id"])
        totals, groups = measure_night(con, k, members)
        group_nights.append(groups)
        active, flagged = groups.column("active"), groups.column("flagged_active")
        hit = pc.sum(pc.and_(pc.greater(active, 0), pc.greater_equal(
            pc.multiply(flagged, 1.0), pc.multiply(active, FLAGGED_SHARE)))).as_py() or 0
        day = datetime.fromtimestamp(start + k * DAY, UTC).date().isoformat()
        row = {"night": k, "date": day, **totals, "groups_flagged": hit, **run}
        per_night.append(row)
        print(f"night {k:2d} {day}: {totals['accounts']:,} accounts, {totals['active']:,} "
              f"active, {totals['requests']:,} requests; flagged {totals['flagged']:,} "
              f"({totals['flagged_operators']:,} operators, {totals['flagged_legitimate']:,} "
              f"legitimate), groups flagged {hit}/{groups.num_rows}; {run['seconds']:.0f} s, "
              f"{run['peak_rss_mb']:,.0f} MB", file=sys.stderr, flush=True)
    con.close()
    requests = pq.read_table(facts / "requests.parquet")
    groups = detection(pa.concat_tables(group_nights), requests)
    return {"nights": per_night, "groups": groups.to_pylist(),
            "targets": targets(groups, nights - 1)}


def same_clusters(db_a: str, db_b: str) -> list[bool]:
    """For each run both stores hold (run ids from 1, one per night of a fresh replay):
    whether they published the same memberships and the same clusters (ids, scores,
    flags)."""
    from linkage.store import Store

    with Store(db_a) as a, Store(db_b) as b:
        last = min(a.latest_run_id() or 0, b.latest_run_id() or 0)
        cols = ["cluster_id", "size", "score", "flagged"]
        return [a.memberships(r).equals(b.memberships(r))
                and a.clusters(r).select(cols).equals(b.clusters(r).select(cols))
                for r in range(1, last + 1)]


def _pct(x: float) -> str:
    return f"{100 * x:.2f}%"


def section(result: dict[str, Any], argv: str) -> str:
    """The markdown of the section (between the markers)."""
    nights, groups, tg = result["nights"], result["groups"], result["targets"]
    d, s = tg["delay"], tg["served"]
    mode = ("incremental (night 0 in full with `--state`, then each night's new rows only)"
            if result["incremental"] else "a full run over everything known so far")
    config = result.get("config")
    setting = ("the default configuration" if not config else
               "the configuration `" + " ".join(config.split()) + "`")
    lines = [
        f"Generated by `python bench/replay.py{(' ' + argv) if argv else ''}` at commit "
        f"{result['commit']}: the `seedscale` campaign at {result['accounts']:,} accounts "
        f"(seed {result['seed']}; {len(groups)} operator groups, "
        f"{sum(g['size'] for g in groups):,} operator accounts) replayed night by night, "
        f"{len(nights)} of {result['campaign_nights']} nights. Each night is {mode} with "
        f"{setting}, against one store, in a fresh process; its input is every "
        "account created by the end of that day and every row of theirs timestamped before "
        "it (accounts created before the six weeks of usage are all there on night 0). See "
        "the script's docstring for the slicing.",
        "",
        f"A group *starts* on the first night at least {ACTIVE_MIN} of its accounts (all, if "
        "fewer) have sent a request, and is *flagged* on the first night at least "
        f"{FLAGGED_SHARE:.0%} of its active accounts are in flagged clusters; the delay is "
        "the nights between the two. Requests *served* before flagging are those sent up to "
        "and including the day of the night that flagged it (that night's run comes after "
        "them); a group never flagged counts all of its six weeks.",
        "",
        "| target | result | met |",
        "|---|---|---|",
    ]
    worst = d["worst_delay"]
    if d["met"]:
        how = f"all {d['groups']} groups, worst delay {worst} night(s)"
    if d["pending"] or d["never_started"]:
        how += (f" ({d['pending']} started too late in the replay to tell, "
                f"{d['never_started']} never started)")
    else:
        how = (f"{d['late']} of {d['groups']} groups flagged later than {TARGET_DELAY} "
               f"nights, {d['never_flagged']} never flagged; worst delay of those flagged "
               f"{worst if worst is not None else 'n/a'} night(s)")
        if worst is not None and worst > TARGET_DELAY:
            how += f", {worst - TARGET_DELAY} over"
    lines.append(f"| every group flagged within {TARGET_DELAY} nights of its first "
                 f"{ACTIVE_MIN} active accounts | {how} | {d['status']} |")
    margin = s["share"] - TARGET_SERVED
    lines.append(
        f"| under {TARGET_SERVED:.0%} of the campaign's requests served before its accounts "
        f"are flagged | {_pct(s['share'])} ({s['served']:,} of {s['requests']:,}); "
        f"{_pct(abs(margin))} {'under' if margin < 0 else 'over'} | "
        f"{'met' if s['met'] else 'missed'} |")
    if "same_as_full" in result:
        cmp = result["same_as_full"]
        lines += ["", f"The incremental nights published the same clusters (members, ids, "
                  f"scores, flags) as a full replay on {cmp['same']} of {cmp['nights']} "
                  "nights."]
    if "incremental_check" in result:
        ic = result["incremental_check"]
        lines += ["", f"An incremental replay of the same nights (`--incremental "
                  f"--compare-full`) published the same clusters (members, ids, scores, flags) "
                  f"on {ic['same']} of {ic['nights']} nights, in {ic['seconds'] / 60:.1f} "
                  f"minutes against {ic['full_seconds'] / 60:.1f} (same machine, other load)."]
    if len(nights) < result["campaign_nights"]:
        lines += ["", f"Only {len(nights)} nights were replayed: a group not flagged by then "
                  "counts all of its requests as served."]
    # Per group: all of them when few, else the distribution and the worst.
    lines += ["", "### Per group", ""]
    dist: dict[str, int] = {}
    for g in groups:
        key = "never" if g["delay"] is None else str(g["delay"])
        dist[key] = dist.get(key, 0) + 1
    order = sorted((k for k in dist if k != "never"), key=int) + (
        ["never"] if "never" in dist else [])
    lines += ["| delay (nights) | " + " | ".join(order) + " |",
              "|---|" + "---:|" * len(order),
              "| groups | " + " | ".join(str(dist[k]) for k in order) + " |", ""]
    shown = sorted(groups, key=lambda g: (-(g["delay"] if g["delay"] is not None else 99),
                                          -(g["served_share"] or 0), g["group_id"]))
    if len(groups) > 20:
        shown = shown[:10]
        lines.append("The ten worst groups (by delay, then share served):")
        lines.append("")
    lines += ["| group | accounts | starts (night) | flagged (night) | delay | "
              "nights unflagged after | requests | served before flagged |",
              "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for g in shown:
        na = "-" if g["night_active"] is None else g["night_active"]
        ff = "never" if g["first_flagged"] is None else g["first_flagged"]
        dl = "-" if g["delay"] is None else g["delay"]
        lines.append(f"| {g['group_id']} | {g['size']} | {na} | {ff} | {dl} | "
                     f"{g['unflagged_after']} | {g['requests']:,} | "
                     f"{_pct(g['served_share'] or 0)} |")
    lines += [
        "", "### Per night", "",
        "Accounts and requests known by the end of the day; active = sent a request; flagged "
        "accounts with the operators and legitimate accounts among them; groups flagged by the "
        "definition above on that night; seconds of the whole run (in-process, store "
        "included) and the run process's peak RSS.",
        "",
        "| night | day | accounts | active | requests so far | operator accounts active | "
        "flagged | of them operators | legitimate | groups flagged | seconds | peak MB |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n in nights:
        lines.append(
            f"| {n['night']} | {n['date']} | {n['accounts']:,} | {n['active']:,} | "
            f"{n['requests']:,} | {n['operator_active']:,} | {n['flagged']:,} | "
            f"{n['flagged_operators']:,} | {n['flagged_legitimate']:,} | "
            f"{n['groups_flagged']}/{len(groups)} | {n['seconds']:.1f} | "
            f"{n['peak_rss_mb']:,.0f} |")
    total = sum(n["seconds"] for n in nights)
    lines += ["", f"{total / 60:.1f} minutes for {len(nights)} nights on the shared two-core "
              f"machine; peak {max(n['peak_rss_mb'] for n in nights):,.0f} MB."]
    return "\n".join(lines)


def main() -> None:
    from linkage.synth.usage import USAGE_DAYS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=1_000_000,
                        help="Accounts of the campaign (default 1,000,000: seedscale).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--nights", type=int, default=USAGE_DAYS,
                        help=f"Stop after this many nights (default {USAGE_DAYS}: all).")
    parser.add_argument("--incremental", action="store_true",
                        help="Night 0 in full with --state, later nights on their delta.")
    parser.add_argument("--config", type=Path, metavar="TOML",
                        help="A configuration file for every night (default: the defaults).")
    parser.add_argument("--compare-full", action="store_true",
                        help="With --incremental: check each night's clusters against those "
                        "of the last full replay of the same campaign (run without "
                        "--incremental first).")
    parser.add_argument("--render", type=Path, metavar="JSON",
                        help="Rewrite the section from the raw figures of an earlier replay.")
    parser.add_argument("--out", type=Path, default=DOC)
    parser.add_argument("--json", type=Path, default=JSON_OUT)
    parser.add_argument("--no-doc", action="store_true", help="Only print and write JSON.")
    args = parser.parse_args()
    if not 1 <= args.nights <= USAGE_DAYS:
        parser.error(f"--nights must be in 1..{USAGE_DAYS}, got {args.nights}")
    if args.render:
        result = json.loads(args.render.read_text())
        result["targets"] = targets(pa.Table.from_pylist(result["groups"]),
                                    len(result["nights"]) - 1)
        argv = result.get("argv", "")
    else:
        # The code that runs the nights: taken before them, since the tree may move meanwhile.
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=False,
                                cwd=Path(__file__).parent).stdout.strip()
        root = ensure_nights(args.accounts, args.seed)
        result = replay(root, nights=args.nights, incremental=args.incremental,
                        config=args.config)
        if args.incremental and args.compare_full:
            full = work_dir(root, incremental=False, config=args.config)
            inc = work_dir(root, incremental=True, config=args.config)
            same = same_clusters(f"sqlite:///{full / 'store.db'}",
                                 f"sqlite:///{inc / 'store.db'}")
            result["same_as_full"] = {"nights": len(same), "same": sum(same)}
        argv = " ".join(sys.argv[1:])
        result = {"accounts": args.accounts, "seed": args.seed,
                  "config": args.config.read_text() if args.config else None,
                  "incremental": args.incremental, "campaign_nights": USAGE_DAYS,
                  "commit": commit or "unknown", "argv": argv, "active_min": ACTIVE_MIN,
                  "flagged_share": FLAGGED_SHARE, **result}
        args.json.write_text(json.dumps(result, indent=1, default=str) + "\n")
    text = section(result, argv)
    print(text)
    if not args.no_doc:
        write_marked(args.out, HEADING, BEGIN, END, text)
        print(f"updated {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
