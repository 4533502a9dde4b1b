"""bench/replay.py: slicing a campaign into nights and the per-group time to detection.

Hand-made cases whose answers are worked out by hand: what each night's input holds, and when
each group starts, is flagged and how much it sent before.
"""

from __future__ import annotations

import importlib.util
import sys
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

_PATH = Path(__file__).parent.parent / "bench" / "replay.py"
_spec = importlib.util.spec_from_file_location("replay", _PATH)
assert _spec is not None and _spec.loader is not None
replay = importlib.util.module_from_spec(_spec)
sys.modules["replay"] = replay
_spec.loader.exec_module(replay)

START = int(datetime(2025, 8, 4, tzinfo=UTC).timestamp())
H = 3600


def _ts(*seconds: int) -> pa.Array:
    return pa.array([s * 1_000_000 for s in seconds], pa.timestamp("us", tz="UTC"))


@pytest.fixture
def campaign(tmp_path: Path) -> Path:
    """Three accounts: ``old`` (created before the usage window), ``new1`` (created on day 1)
    and ``late`` (created on day 3, after the last replayed night)."""
    data = tmp_path / "data"
    (data / "interactions").mkdir(parents=True)
    day = replay.DAY
    pq.write_table(pa.table({
        "account_id": ["old", "new1", "late"],
        "created_at": _ts(START - 30 * day, START + day + 5 * H, START + 3 * day),
    }), data / "accounts.parquet")
    pq.write_table(pa.table({
        "account_id": ["old", "old", "new1", "late"],
        "ip": ["192.0.2.1", "192.0.2.2", "192.0.2.3", "192.0.2.4"],
        # old's first IP was seen long ago, its second on day 2; new1's has no timestamp
        "seen_at": pa.array([(START - 20 * day) * 10**6, (START + 2 * day + H) * 10**6, None,
                             (START + 3 * day) * 10**6], pa.timestamp("us", tz="UTC")),
    }), data / "ip_events.parquet")
    # Interactions in two part files, as the generator writes them.
    pq.write_table(pa.table({
        "account_id": ["old", "old", "new1"],
        "ts": _ts(START + H, START + day - 1, START + day + 6 * H),
    }), data / "interactions" / "part-00000.parquet")
    pq.write_table(pa.table({
        "account_id": ["old", "new1", "late"],
        "ts": _ts(START + day, START + 2 * day + 2 * H, START + 3 * day + H),
    }), data / "interactions" / "part-00001.parquet")
    (data / "truth.csv").write_text("account_id,group_id\nold,op1\nnew1,op1\nlate,\n")
    return data


def _read(folder: Path, table: str) -> list[tuple]:
    con = duckdb.connect()
    files = str(folder / table / "*" / "*.parquet")
    cols = "account_id, epoch(ts)::BIGINT - ?" if table == "interactions" else "account_id"
    return con.execute(f"SELECT {cols} FROM read_parquet(?) ORDER BY ALL",
                       [START, files] if table == "interactions" else [files]).fetchall()


def test_slicing_puts_each_row_on_the_night_it_becomes_known(campaign: Path,
                                                             tmp_path: Path) -> None:
    out = tmp_path / "sliced"
    rows = replay.slice_nights(campaign, out, start=START, n_nights=3)
    # late (created on day 3) and its rows are after the last replayed night (2)
    assert rows == {"accounts": 2, "ip_events": 3, "interactions": 5}
    parts = out / "parts"
    for k in range(3):
        replay.link_night(parts, tmp_path / "nights" / str(k), range(k + 1))
        replay.link_night(parts, tmp_path / "delta" / str(k), range(k, k + 1))
    night = [tmp_path / "nights" / str(k) for k in range(3)]
    assert _read(night[0], "accounts") == [("old",)]
    assert _read(night[1], "accounts") == [("new1",), ("old",)]
    # the IP seen before the window is known on night 0; new1's (no timestamp) from its signup
    assert _read(night[0], "ip_events") == [("old",)]
    assert _read(night[1], "ip_events") == [("new1",), ("old",)]
    assert _read(night[2], "ip_events") == [("new1",), ("old",), ("old",)]
    day = replay.DAY
    # a request one second before the end of day 0 is night 0's; one at midnight night 1's
    assert _read(night[0], "interactions") == [("old", H), ("old", day - 1)]
    assert _read(night[1], "interactions") == [
        ("new1", day + 6 * H), ("old", H), ("old", day - 1), ("old", day)]
    assert _read(night[2], "interactions")[-1] == ("old", day)
    assert len(_read(night[2], "interactions")) == 5
    # a delta holds that night's rows only; a night without new accounts has an empty
    # accounts folder (an incremental night may be empty)
    assert _read(tmp_path / "delta" / "1", "accounts") == [("new1",)]
    assert list((tmp_path / "delta" / "2" / "accounts").iterdir()) == []
    assert _read(tmp_path / "delta" / "2", "interactions") == [("new1", 2 * day + 2 * H)]
    # the inputs are links to the partitions, never copies
    assert all(p.is_symlink() for p in (night[2] / "interactions").iterdir())

    facts = duckdb.connect()
    accounts = facts.execute("SELECT * FROM read_parquet(?) ORDER BY account_id",
                             [str(out / "facts" / "accounts.parquet")]).fetchall()
    assert accounts == [("new1", "op1", 1, 1), ("old", "op1", 0, 0)]
    requests = facts.execute("SELECT * FROM read_parquet(?) ORDER BY ALL",
                             [str(out / "facts" / "requests.parquet")]).fetchall()
    assert requests == [("op1", 0, 2), ("op1", 1, 2), ("op1", 2, 1)]


def _group_nights(rows: list[tuple[str, int, int, int, int]]) -> pa.Table:
    names = ["group_id", "night", "size", "active", "flagged_active"]
    return pa.table({n: [r[i] for r in rows] for i, n in enumerate(names)})


def test_detection_per_group_by_hand() -> None:
    nights = _group_nights([
        # g1: 20 active on night 1, half of them flagged on night 2, relapses on night 3
        ("g1", 0, 50, 10, 4), ("g1", 1, 50, 20, 9), ("g1", 2, 50, 30, 15),
        ("g1", 3, 50, 40, 19), ("g1", 4, 50, 40, 40),
        # g2: a group of 5 starts once all 5 are active; never flagged
        ("g2", 0, 5, 4, 0), ("g2", 1, 5, 5, 1), ("g2", 2, 5, 5, 2), ("g2", 3, 5, 5, 0),
        ("g2", 4, 5, 5, 0),
        # g3: no active account yet on nights 0-1 (0 of 0 is not flagged); flagged on night
        # 2 before 20 are active (delay -1), 20 active on night 3
        ("g3", 0, 30, 0, 0), ("g3", 1, 30, 0, 0), ("g3", 2, 30, 8, 8), ("g3", 3, 30, 20, 20),
        ("g3", 4, 30, 25, 25),
    ])
    requests = pa.table({
        "group_id": ["g1", "g1", "g1", "g1", "g1", "g2", "g2", None, "g3", "g3"],
        "night": [0, 1, 2, 3, 41, 0, 40, 0, 2, 3],
        "requests": [10, 20, 30, 40, 100, 7, 3, 1000, 5, 15],
    })
    got = {r["group_id"]: r for r in replay.detection(nights, requests).to_pylist()}
    assert got["g1"] == {"group_id": "g1", "size": 50, "night_active": 1, "first_flagged": 2,
                         "delay": 1, "unflagged_after": 1, "requests": 200, "served": 60,
                         "served_share": pytest.approx(0.3)}
    assert got["g2"] == {"group_id": "g2", "size": 5, "night_active": 1,
                         "first_flagged": None, "delay": None, "unflagged_after": 0,
                         "requests": 10, "served": 10, "served_share": pytest.approx(1.0)}
    assert got["g3"]["night_active"] == 3
    assert got["g3"]["first_flagged"] == 2
    assert got["g3"]["delay"] == -1
    assert got["g3"]["served"] == 5

    t = replay.targets(replay.detection(nights, requests), last_night=4)
    # g2 started on night 1 and is not flagged by night 4: the delay target is missed
    assert (t["delay"]["met"], t["delay"]["status"]) == (False, "missed")
    assert (t["delay"]["late"], t["delay"]["never_flagged"], t["delay"]["pending"]) == (0, 1, 0)
    assert t["delay"]["worst_delay"] == 1
    # requests of the groups only, not of legitimate accounts
    assert t["served"]["served"] == 60 + 10 + 5
    assert t["served"]["share"] == pytest.approx(75 / 230)
    assert t["served"]["met"] is False
    # with the replay stopped on night 2, g2 (started on night 1) is still pending and g3
    # (20 active only from night 3) has not started
    short = nights.filter(pc.less_equal(nights.column("night"), 2))
    t = replay.targets(replay.detection(short, requests), last_night=2)
    assert t["delay"] == {"target": 2, "met": False, "status": "undecided", "groups": 3,
                          "late": 0, "never_flagged": 0, "pending": 1, "never_started": 1,
                          "worst_delay": 1}
    # without g2 every group that started was flagged in time
    done = replay.detection(short.filter(pc.not_equal(short.column("group_id"), "g2")),
                            requests)
    assert replay.targets(done.filter(pc.equal(done.column("group_id"), "g1")),
                          last_night=2)["delay"]["status"] == "met"


def test_measure_night_counts_active_and_flagged_accounts() -> None:
    con = duckdb.connect()
    con.execute("""CREATE TABLE accounts AS SELECT * FROM (VALUES
        ('a', 'g1', 0, 0), ('b', 'g1', 0, 1), ('c', 'g1', 1, NULL), ('d', NULL, 0, 0),
        ('e', NULL, 0, NULL)) t(account_id, group_id, created_night, first_night)""")
    con.execute("""CREATE TABLE requests AS SELECT * FROM (VALUES
        ('g1', 0, 5), ('g1', 1, 7), (NULL, 0, 3), (NULL, 1, 4))
        t(group_id, night, requests)""")
    members = pa.table({"account_id": ["a", "b", "d", "e"], "cluster_id": ["x", "x", "y", "y"],
                        "flagged": [True, True, True, True]})
    totals, groups = replay.measure_night(con, 0, members)
    # b is flagged but not active until night 1: it counts among flagged, not flagged_active
    assert groups.to_pylist() == [{"group_id": "g1", "night": 0, "size": 3, "active": 1,
                                   "flagged_active": 1}]
    assert totals == {"accounts": 4, "active": 2, "operator_accounts": 2, "operator_active": 1,
                      "flagged": 4, "flagged_operators": 2, "flagged_legitimate": 2,
                      "requests": 8, "operator_requests": 5}
    totals, groups = replay.measure_night(con, 1, members)
    assert groups.column("active").to_pylist() == [2]
    assert groups.column("flagged_active").to_pylist() == [2]
    assert totals["accounts"] == 5
    assert totals["requests"] == 19
