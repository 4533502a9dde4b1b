"""The in-memory builder components write into, and its conversion to the contract's tables.

Components describe accounts and attribute rows with integers only: an internal account
index, entity ids (a card, a device, an address), vocabulary indices and Unix seconds. Two
rows that name the same card id *are* the same card. :func:`finalize` turns those integers
into the contract's text (account ids, fingerprints, IP text …) in one vectorised pass per
column, and :func:`write_tables` writes Parquet or CSV.

Internal account indices are contiguous per component (operators first); the published
``account_id`` numbers are a seeded permutation of them, so nothing about position or
numbering reveals a ring.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from linkage.synth.encode import (
    ALNUM_UPPER,
    alnum_chars,
    assemble,
    bytes_text,
    digit_chars,
    hex_chars,
    ipv4_text,
    ipv6_text,
    mix64,
    ns_key,
    pattern_text,
    prefixed,
    sub_rng,
    timestamps,
    timestamps_text,
)
from linkage.synth.people import fix_duplicate_emails, text_of
from linkage.synth.vocab import BINS, COUNTRIES, OBS_KINDS, USER_AGENTS, VIRTUAL_BINS

__all__ = [
    "ALL_BINS", "ROW_COLUMNS", "TABLES", "Builder", "account_text", "csv_ready", "finalize",
    "write_table", "write_tables",
]

TABLES = ("accounts", "payment_instruments", "ip_events", "devices", "observations")
ALL_BINS = BINS + VIRTUAL_BINS  # payment rows store an index into this tuple

# Integer columns of each attribute table while it is being built (``ts`` = Unix seconds).
ROW_COLUMNS: dict[str, dict[str, type]] = {
    "payment_instruments": {"account": np.int64, "card": np.int64, "bin": np.int16,
                            "postal": np.int64, "pcountry": np.int16, "ts": np.int64},
    "ip_events": {"account": np.int64, "v6": np.bool_, "hi": np.uint64, "lo": np.uint64,
                  "exploded": np.bool_, "asn": np.int64, "ts": np.int64, "signup": np.bool_},
    "devices": {"account": np.int64, "device": np.int64, "ts": np.int64},
    "observations": {"account": np.int64, "kind": np.int8, "value": np.int64, "ts": np.int64},
}


class Builder:
    """Accumulates accounts and attribute rows for ``n`` accounts.

    Account-level integer columns are full-length arrays that components fill by index;
    text columns (``email``, ``display_name``, ``phone``) are collected as ``(index, text)``
    pieces; attribute rows are appended in chunks of equal-length arrays.
    """

    def __init__(self, n: int, seed: int) -> None:
        self.n, self.seed = n, seed
        self.created_at = np.zeros(n, dtype=np.int64)
        self.country = np.zeros(n, dtype=np.int16)
        self.ua = np.zeros(n, dtype=np.int16)
        self.org = np.full(n, -1, dtype=np.int64)
        self.group = np.full(n, -1, dtype=np.int32)
        # Deliberate look-alike e-mails (a ring's dot variants) are never de-duplicated.
        self.email_fixed = np.zeros(n, dtype=bool)
        self.text: dict[str, list[tuple[np.ndarray, pa.Array]]] = {
            "email": [], "display_name": [], "phone": []}
        self.rows: dict[str, list[dict[str, np.ndarray]]] = {t: [] for t in ROW_COLUMNS}
        self._next: dict[str, int] = {}

    def ids(self, namespace: str, k: int) -> np.ndarray:
        """``k`` fresh entity ids of one namespace (``card``, ``device``, ``addr`` …)."""
        start = self._next.get(namespace, 0)
        self._next[namespace] = start + k
        return np.arange(start, start + k, dtype=np.int64)

    def set_text(self, column: str, idx: np.ndarray, values: pa.Array) -> None:
        """Set a text column of accounts ``idx`` (null entries stay null)."""
        self.text[column].append((np.asarray(idx, dtype=np.int64), values))

    def add(self, table: str, **cols: np.ndarray | int | float | bool) -> None:
        """Append rows; scalar values are broadcast to the length of ``account``."""
        spec = ROW_COLUMNS[table]
        if set(cols) - set(spec):
            raise KeyError(f"unknown columns for {table}: {sorted(set(cols) - set(spec))}")
        m = len(np.asarray(cols["account"]))
        chunk: dict[str, np.ndarray] = {}
        for name, dtype in spec.items():
            val = cols.get(name, 0)
            arr: np.ndarray = np.asarray(val).astype(dtype)
            chunk[name] = np.full(m, arr, dtype=dtype) if arr.ndim == 0 else arr
            if len(chunk[name]) != m:
                raise ValueError(f"{table}.{name}: {len(chunk[name])} values for {m} rows")
        self.rows[table].append(chunk)

    def collect(self, table: str) -> dict[str, np.ndarray]:
        """All rows of one table as one array per column (the builder lets go of them)."""
        chunks, self.rows[table] = self.rows[table], []
        return {name: np.concatenate([c[name] for c in chunks]) if chunks
                else np.zeros(0, dtype=dtype) for name, dtype in ROW_COLUMNS[table].items()}


def account_numbers(seed: int, n: int) -> np.ndarray:
    """The public number of each internal account index (a seeded permutation)."""
    return sub_rng(seed, "account-numbers").permutation(n)


def account_text(seed: int, n: int) -> pa.Array:
    """The public ``account_id`` of each internal account index (``a0000042``)."""
    width = max(7, len(str(max(n - 1, 0))))
    return bytes_text(prefixed("a", digit_chars(account_numbers(seed, n), width)))


def _sorted(cols: dict[str, np.ndarray], number: np.ndarray) -> dict[str, np.ndarray]:
    # Event logs arrive in time order; ties broken by the public id, never by internal order.
    key = cols["ts"] * np.int64(len(number)) + number[cols["account"]]  # < 2**63 until 2**33 s
    order = np.argsort(key, kind="stable")
    return {k: v[order] for k, v in cols.items()}


def _nullable_int(values: np.ndarray) -> pa.Array:
    return pa.array(values, pa.int64(), mask=values == 0)


def _ip_text(ip: dict[str, np.ndarray]) -> pa.Array:
    v6 = ip["v6"]
    four, six = np.flatnonzero(~v6), np.flatnonzero(v6)
    return assemble(len(v6), [
        (four, ipv4_text(ip["lo"][four].astype(np.uint32))),
        (six, ipv6_text(ip["hi"][six], ip["lo"][six], ip["exploded"][six])),
    ])


def _postal_text(seed: int, postal: np.ndarray, country: np.ndarray) -> pa.Array:
    key = ns_key(seed, "postal")
    pieces = []
    for c, spec in enumerate(COUNTRIES):  # per country: each has its own format
        sel = np.flatnonzero((country == c) & (postal >= 0))
        if len(sel):
            u = mix64(postal[sel].astype(np.uint64) * np.uint64(64) + np.uint64(c), key)
            pieces.append((sel, pattern_text(spec.postal, u)))
    return assemble(len(postal), pieces)


def _obs_text(seed: int, kind: np.ndarray, value: np.ndarray) -> pa.Array:
    v = value.astype(np.uint64)
    pieces = []
    for k, name in enumerate(OBS_KINDS):  # per kind: each has its own value format
        sel = np.flatnonzero(kind == k)
        if not len(sel):
            continue
        if name == "referral_code":
            chars = alnum_chars(mix64(v[sel], ns_key(seed, name)), 8, ALNUM_UPPER)
        elif name == "shipping_address_hash":  # 256-bit hex, like a SHA-256 of an address
            chars = np.hstack([hex_chars(mix64(v[sel], ns_key(seed, name, j))) for j in range(4)])
        else:
            chars = prefixed("sk_live_", alnum_chars(mix64(v[sel], ns_key(seed, name)), 10))
        pieces.append((sel, bytes_text(chars)))
    return assemble(len(kind), pieces)


def finalize(b: Builder) -> tuple[dict[str, pa.Table], pa.Table]:
    """Turn the builder's integers into the contract's tables and the truth table.

    Returns ``(tables, truth)``: ``tables`` maps each name of :data:`TABLES` to an Arrow
    table with the contract's column names (timestamps as ``timestamp[us, tz=UTC]``), and
    ``truth`` has ``account_id, group_id`` (empty ``group_id`` for legitimate accounts).
    """
    n, seed = b.n, b.seed
    number = account_numbers(seed, n)
    acct_text = account_text(seed, n)
    by_id = np.argsort(number)  # output order of accounts: by public id

    ip = _sorted(b.collect("ip_events"), number)
    ip_text = _ip_text(ip)
    signup = np.flatnonzero(ip["signup"])
    signup_ip = assemble(n, [(ip["account"][signup], ip_text.take(pa.array(signup)))])

    email = fix_duplicate_emails(
        sub_rng(seed, "email-dedupe"), assemble(n, b.text["email"]), ~b.email_fixed)
    org = np.flatnonzero(b.org >= 0)
    org_text = assemble(n, [(org, bytes_text(prefixed(
        "org_", alnum_chars(mix64(b.org[org], ns_key(seed, "org")), 10))))])
    take = pa.array(by_id)
    accounts = pa.table({
        "account_id": acct_text.take(take),
        "created_at": timestamps(b.created_at[by_id]),
        "email": email.take(take),
        "display_name": assemble(n, b.text["display_name"]).take(take),
        "phone": assemble(n, b.text["phone"]).take(take),
        "country": text_of(tuple(c.code for c in COUNTRIES)).take(pa.array(b.country[by_id])),
        "signup_ip": signup_ip.take(take),
        "user_agent": text_of(USER_AGENTS).take(pa.array(b.ua[by_id])),
        "org_id": org_text.take(take),
    })

    pay = _sorted(b.collect("payment_instruments"), number)
    card = pay["card"].astype(np.uint64)
    payment = pa.table({
        "account_id": acct_text.take(pa.array(pay["account"])),
        "fingerprint": bytes_text(prefixed("fp_", hex_chars(mix64(card, ns_key(seed, "card"))))),
        "bin": text_of(ALL_BINS).take(pa.array(pay["bin"])),
        "last4": bytes_text(digit_chars(mix64(card, ns_key(seed, "last4")) % np.uint64(10_000),
                                        4)),
        "billing_postal": _postal_text(seed, pay["postal"], pay["pcountry"]),
        "billing_country": text_of(tuple(c.code for c in COUNTRIES)).take(
            pa.array(pay["pcountry"])),
        "added_at": timestamps(pay["ts"]),
    })

    ip_events = pa.table({
        "account_id": acct_text.take(pa.array(ip["account"])),
        "ip": ip_text,
        "seen_at": timestamps(ip["ts"]),
        "asn": _nullable_int(ip["asn"]),
    })

    dev = _sorted(b.collect("devices"), number)
    d = dev["device"].astype(np.uint64)
    devices = pa.table({
        "account_id": acct_text.take(pa.array(dev["account"])),
        "device_id": bytes_text(np.hstack([hex_chars(mix64(d, ns_key(seed, "device", j)))
                                           for j in range(2)])),
        "seen_at": timestamps(dev["ts"]),
    })

    obs = _sorted(b.collect("observations"), number)
    observations = pa.table({
        "account_id": acct_text.take(pa.array(obs["account"])),
        "kind": text_of(OBS_KINDS).take(pa.array(obs["kind"])),
        "value": _obs_text(seed, obs["kind"], obs["value"]),
        "seen_at": timestamps(obs["ts"]),
    })

    gwidth = max(4, len(str(max(int(b.group.max(initial=0)), 0))))
    ops = np.flatnonzero(b.group >= 0)
    group_text = assemble(n, [(ops, bytes_text(prefixed("op", digit_chars(b.group[ops],
                                                                          gwidth))))])
    truth = pa.table({
        "account_id": acct_text.take(take),
        "group_id": pc.fill_null(group_text, "").take(take),
    })
    tables = {"accounts": accounts, "payment_instruments": payment, "ip_events": ip_events,
              "devices": devices, "observations": observations}
    return tables, truth


def csv_ready(table: pa.Table) -> pa.Table:
    # Timestamps as ISO 8601 with "Z": unambiguous for every reader, unlike Arrow's default.
    for i, field in enumerate(table.schema):
        if pa.types.is_timestamp(field.type):
            secs = pc.divide(table.column(i).cast(pa.int64()), 1_000_000).to_numpy()
            table = table.set_column(i, field.name, timestamps_text(secs))
    return table


def write_table(table: pa.Table, stem: Path, fmt: str) -> None:
    """Write ``table`` as ``stem.parquet`` (``fmt`` "parquet") or ``stem.csv``."""
    if fmt == "parquet":
        pq.write_table(table, Path(f"{stem}.parquet"), compression="zstd")
    else:
        pcsv.write_csv(csv_ready(table), Path(f"{stem}.csv"))


def write_tables(tables: dict[str, pa.Table], truth: pa.Table, out_dir: Path, fmt: str) -> None:
    """Write each table as ``NAME.parquet`` or ``NAME.csv``, and ``truth.csv``.

    Files of the same tables in the other formats are removed first: a folder holding both
    ``accounts.csv`` and ``accounts.parquet`` would be ambiguous input.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        for ext in (".parquet", ".csv", ".csv.gz"):
            (out_dir / f"{name}{ext}").unlink(missing_ok=True)
        write_table(table, out_dir / name, fmt)
    pcsv.write_csv(truth, out_dir / "truth.csv",
                   write_options=pcsv.WriteOptions(quoting_style="none"))
