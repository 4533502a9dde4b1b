"""Later nights of one generated world: :func:`later_night`.

Night 1 is what :func:`linkage.synth.generate` writes. Night ``N`` is the same world ``N - 1``
days later: every row of night ``N - 1`` unchanged, plus, for each day that passed,

* a day's new legitimate users (the accounts of night 1 over the six months of signups, per
  day), made by the very code that makes legitimate users, with their own cards, devices
  and addresses (an address another account already holds gets a number, as people's do);
* grown rings: about half of the operator groups recruit new accounts (a tenth of their
  size, at least one), each a copy of one member's cards, devices, IP events and
  observations, signed up together within an hour;
* merged rings: two groups turn out to be one operator's. A few bridge accounts carry the
  cards and devices of one and the IP events and observations of the other, and
  ``truth.csv`` gives the second group the first one's ``group_id``.

New accounts are numbered after the last one (``a0003000`` follows ``a0002999``); all new
rows fall on that day, after everything before it. Everything is derived from the seed and
the night, so the same arguments give the same files, and night ``N``'s input holds night
``N - 1``'s: a full run over each night, or ``--incremental`` over the difference, sees the
world grow.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from linkage.synth.background import add_legit, make_world
from linkage.synth.encode import bytes_text, digit_chars, prefixed, sub_rng, timestamps
from linkage.synth.people import DAY, OBS_END, SIGNUP_DAYS, START, fix_duplicate_emails
from linkage.synth.tables import Builder, finalize

__all__ = ["TIME_COLUMNS", "later_night"]

TIME_COLUMNS = {"accounts": "created_at", "payment_instruments": "added_at",
                "ip_events": "seen_at", "devices": "seen_at", "observations": "seen_at"}
"""The timestamp column of each table: the time of a row of a later night."""

GROWING_SHARE = 0.5  # of the groups, each night
GROWTH = 0.1  # of a growing group's size (at least one account)
BRIDGE_SHARE = 0.15  # bridge accounts per merge, of the smaller group (at least two)

Tables = dict[str, pa.Table]


def later_night(tables: Tables, truth: pa.Table, *, seed: int, night: int,
                ) -> tuple[Tables, pa.Table]:
    """``tables`` and ``truth`` of night 1 grown into those of ``night`` (1: unchanged)."""
    if night < 1:
        raise ValueError(f"night must be 1 or later, got {night}")
    for day in range(2, night + 1):
        tables, truth = _next_day(tables, truth, seed=seed, day=day)
    return tables, truth


def _next_day(tables: Tables, truth: pa.Table, *, seed: int, day: int,
              ) -> tuple[Tables, pa.Table]:
    rng = sub_rng(seed, "night", day)
    start = OBS_END + (day - 2) * DAY
    n = tables["accounts"].num_rows
    parts: list[Tables] = []
    n_new = 0

    legit = _new_legit(tables, rng, start=start, first=n,
                       count=max(1, round(n / SIGNUP_DAYS)))
    parts.append(legit)
    n_new += legit["accounts"].num_rows

    members = _members(truth)
    names = sorted(members)
    growing = [g for g in names if rng.random() < GROWING_SHARE]
    new_truth: list[tuple[pa.Array, str]] = []
    for group in growing:  # one iteration per growing group: a few per night
        count = max(1, round(GROWTH * len(members[group])))
        donors = rng.choice(members[group], count)
        ids = _ids(n + n_new, count)
        times = _burst(rng, start, count)
        parts.append(_copies(tables, ids, times, {t: donors for t in TIME_COLUMNS}))
        new_truth.append((ids, group))
        n_new += count

    merged: tuple[str, str] | None = None
    if len(names) >= 2:
        a, b = (names[i] for i in rng.choice(len(names), 2, replace=False))
        count = max(2, round(BRIDGE_SHARE * min(len(members[a]), len(members[b]))))
        from_a, from_b = rng.choice(members[a], count), rng.choice(members[b], count)
        ids = _ids(n + n_new, count)
        times = _burst(rng, start, count)
        parts.append(_copies(tables, ids, times, {
            "accounts": from_a, "payment_instruments": from_a, "devices": from_a,
            "ip_events": from_b, "observations": from_b}))
        new_truth.append((ids, a))
        merged = (a, b)
        n_new += count

    grown = {name: pa.concat_tables([tables[name], *(p[name] for p in parts)])
             for name in tables}
    truth = pa.concat_tables([
        truth,
        pa.table({"account_id": legit["accounts"]["account_id"],
                  "group_id": pa.array([""] * legit["accounts"].num_rows, pa.string())},
                 schema=truth.schema),
        *(pa.table({"account_id": ids, "group_id": pa.array([g] * len(ids), pa.string())},
                   schema=truth.schema) for ids, g in new_truth),
    ])
    if merged is not None:  # the second group is the first one's operator, recruits included
        group_id = pc.if_else(pc.equal(truth["group_id"], merged[1]), merged[0],
                              truth["group_id"])
        truth = truth.set_column(1, "group_id", group_id)
    return grown, truth


def _members(truth: pa.Table) -> dict[str, np.ndarray]:
    """The account ids of each operator group."""
    ops = truth.filter(pc.not_equal(truth["group_id"], ""))
    grouped = ops.group_by("group_id").aggregate([("account_id", "list")])
    return {g: np.array(sorted(ids), dtype=object) for g, ids in zip(
        grouped["group_id"].to_pylist(), grouped["account_id_list"].to_pylist(), strict=True)}


def _ids(first: int, count: int) -> pa.Array:
    """Account ids numbered from ``first`` (``a0003000``, ...)."""
    numbers = np.arange(first, first + count, dtype=np.int64)
    width = max(7, len(str(first + count - 1)))
    return bytes_text(prefixed("a", digit_chars(numbers, width)))


def _burst(rng: np.random.Generator, start: int, count: int) -> np.ndarray:
    """Signup seconds of ``count`` accounts made together: within one hour of the day."""
    hour = start + int(rng.integers(0, 22)) * 3600
    return np.sort(hour + rng.integers(0, 3600, count))


def _copies(tables: Tables, ids: pa.Array, times: np.ndarray,
            donors: dict[str, np.ndarray]) -> Tables:
    """Rows of new accounts ``ids`` (signed up at ``times``): per table, copies of the rows
    of ``donors[table]`` (one donor per new account), at the new account's signup time plus
    up to an hour; copied accounts rows lose e-mail and phone (a recruit's are its own)."""
    out: Tables = {}
    later = timestamps(times + np.arange(len(times)) % 3600)
    for name, column in TIME_COLUMNS.items():
        table = tables[name]
        mapping = pa.table({"_donor": pa.array(donors[name], pa.string()), "_new": ids,
                            "_time": later if name != "accounts" else timestamps(times)})
        joined = table.join(mapping, "account_id", right_keys="_donor", join_type="inner",
                            use_threads=False)
        copy = joined.set_column(joined.schema.get_field_index("account_id"), "account_id",
                                 joined["_new"])
        copy = copy.set_column(copy.schema.get_field_index(column), column, copy["_time"])
        if name == "accounts":
            for blank in ("email", "phone"):
                copy = copy.set_column(copy.schema.get_field_index(blank), blank,
                                       pa.nulls(copy.num_rows, pa.string()))
        copy = copy.select(table.column_names).cast(table.schema)
        out[name] = copy.sort_by([(column, "ascending"), ("account_id", "ascending")]
                                 + [(c, "ascending") for c in table.column_names
                                    if c not in (column, "account_id")])
    return out


def _new_legit(tables: Tables, rng: np.random.Generator, *, start: int, first: int,
               count: int) -> Tables:
    """``count`` new legitimate users signing up on the day from ``start``, numbered from
    ``first``: a world of their own, moved onto that day, their ids renumbered."""
    seed = int(rng.integers(0, 2**62))
    b = Builder(count, seed)
    add_legit(b, make_world(seed, count, count, 0), np.arange(count), hubs=False)
    new, _ = finalize(b)
    width = max(7, len(str(first + count - 1)))
    out: Tables = {}
    for name, column in TIME_COLUMNS.items():
        table = new[name]
        seconds = pc.divide(pc.cast(table[column], pa.int64()), 1_000_000).to_numpy()
        table = table.set_column(table.schema.get_field_index(column), column,
                                 timestamps(start + (seconds - START) % DAY))
        numbers = pc.add(pc.cast(pc.utf8_slice_codeunits(table["account_id"], 1), pa.int64()),
                         first).to_numpy()
        table = table.set_column(table.schema.get_field_index("account_id"), "account_id",
                                 bytes_text(prefixed("a", digit_chars(numbers, width))))
        order = [("account_id", "ascending")] if name == "accounts" else [
            (column, "ascending"), ("account_id", "ascending")]
        out[name] = table.sort_by(order)
    # An address someone already holds gets a number, as within night 1.
    old_email = tables["accounts"]["email"].combine_chunks()
    email = fix_duplicate_emails(
        rng, pa.concat_arrays([old_email, out["accounts"]["email"].combine_chunks()]),
        np.arange(len(old_email) + count) >= len(old_email))
    accounts = out["accounts"]
    out["accounts"] = accounts.set_column(accounts.schema.get_field_index("email"), "email",
                                          email.slice(len(old_email)))
    return out
