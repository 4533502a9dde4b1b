"""The keys of one account, derived from a check request exactly as a night derives them.

A request describes one account with the input tables' column names (``account`` plus rows of
``payment_instruments``, ``ip_events``, ``devices`` and ``observations``). Each column is
normalised by the rule the contract table gives it in :data:`linkage.ingest.read.SPECS`
(``Column.norm``), through the pure-Python twin of ingest's SQL normaliser
(:mod:`linkage.ingest.normalise`: the property tests prove the twins equal to the SQL), then
hashed with :meth:`linkage.pseudonymise.Pseudonymiser.hash` (equal to ingest's ``lk_hash``) in
the namespace ingest uses for that column. The keys of each signal are then made from those
hashes as :func:`linkage.signals.build_links` makes them, the time-bucketed ones
(``cosignup``, ``coactivity``) included. ``tests/test_serve.py`` runs a real ingest and
signals stage over the same rows and checks that both give the very same ``(signal, key)``
pairs.

The signals that need an account's usage history (``template``, ``prompt``,
``prompt_sync``, ``activity_sync``, ``activity_group``, ``template_pool``) are not derived: a
request carries no ``interactions``.

Nothing here logs or keeps a value: the request's values live only in the call's frames.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from linkage.config import IngestConfig, SignalsConfig
from linkage.ingest import normalise as nz
from linkage.ingest.read import SPECS, Column
from linkage.pseudonymise import Pseudonymiser
from linkage.signals import COACTIVITY, COSIGNUP, signal_weights

__all__ = ["MAX_ROWS", "REQUEST_TABLES", "BadField", "KeyMaker", "is_required", "request_columns"]

REQUEST_TABLES: tuple[str, ...] = ("payment_instruments", "ip_events", "devices", "observations")
"""The row tables a request may carry beside ``account`` (the input tables minus usage)."""

_EPOCH = datetime(1970, 1, 1)

MAX_ROWS = 1000
"""Most rows a request may give for one table: one account's cards, addresses and devices
are a handful; a thousand already bound the work one request can cost."""


class BadField(ValueError):
    """A request value that breaks the contract; ``field`` names it (``devices.0.device_id``).

    The message never quotes the value.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def request_columns(table: str) -> list[Column]:
    """The columns a request may give for ``table`` (``accounts`` for ``account``): the
    contract table's, less ``account_id`` in the row tables (rows belong to the account) and
    the columns no key is made from (``last4``, usage counts)."""
    return [c for c in SPECS[table].columns
            if c.norm != "unused" and not (table != "accounts" and c.name == "account_id")]


def is_required(table: str, column: Column) -> bool:
    """Whether a request must give ``column``: the contract table's required columns that
    carry a value (``fingerprint``, ``ip``, ``device_id``, ``kind``, ``value``,
    ``account_id``); timestamps may be left out of a check."""
    return column.required and column.norm != "timestamp"


@dataclass(frozen=True)
class _Value:
    """A normalised value, or why it is refused."""

    text: str | None = None
    moment: datetime | None = None


_MISSING = _Value()


class KeyMaker:
    """Turns one request's tables into ``(signal, key)`` pairs, as stored in
    ``cluster_keys`` (``signal``, ``key_hash``).

    ``ingest`` and ``signals`` are the configuration of the run being served (its
    ``config_json``), so that the email rules, the enabled signals and the co-signup window
    are the ones that run used; ``kinds`` are the observation kinds it links by.
    """

    def __init__(self, pseudo: Pseudonymiser, ingest: IngestConfig, signals: SignalsConfig,
                 kinds: list[str]) -> None:
        self._pseudo = pseudo
        self._ingest = ingest
        self._signals = signals
        self.weights = signal_weights(signals, kinds)
        self._columns = {t: [(c, is_required(t, c)) for c in request_columns(t)]
                         for t in ("accounts", *REQUEST_TABLES)}
        email = (ingest.email_ignore_dots, ingest.email_ignore_plus, ingest.email_domain_aliases)
        self._norms: dict[str, Callable[[str], str | None]] = {
            "text": lambda v: v,
            "lower": str.lower,
            "upper": str.upper,
            "email": lambda v: nz.normalise_email(v, *email),
            "phone": nz.normalise_phone,
            "display_name": nz.display_name,
            "compact": nz.compact,
            "asn": nz.normalise_asn,
            "ip": nz.canonical_ip,
            "card": lambda v: v,
        }

    # -- values ---------------------------------------------------------------------------

    def _value(self, field: str, column: Column, raw: Any) -> _Value:
        """Ingest's rule for one value: clean text, then the column's normaliser."""
        if raw is None:
            return _Value()
        if not isinstance(raw, str):
            raise BadField(field, "expected a string or null")
        text = nz.clean_text(raw)
        if text is None:
            return _Value()
        if len(text) > self._ingest.max_field_chars:
            raise BadField(field, f"longer than {self._ingest.max_field_chars} characters")
        if column.norm == "timestamp":
            moment = nz.parse_timestamp(text)
            if not nz.timestamp_in_range(moment):
                raise BadField(field, "not an ISO 8601 timestamp between 1970-01-01 and "
                               "2100-12-31 UTC")
            return _Value(moment=moment)
        if column.norm == "card" and nz.is_card_number(text):
            raise BadField(field, "a raw card number; send the processor's card token")
        normalised = self._norms[column.norm](text)
        if column.norm == "ip" and normalised is None:
            raise BadField(field, "not an IPv4 or IPv6 address")
        return _Value(text=normalised)

    def _row(self, table: str, where: str, row: Mapping[str, Any]) -> dict[str, _Value]:
        if not isinstance(row, Mapping):
            raise BadField(where, "expected an object")
        out: dict[str, _Value] = {}
        for column, required in self._columns[table]:
            raw = row.get(column.name)
            if raw is None and not required:
                out[column.name] = _MISSING
                continue
            value = self._value(f"{where}.{column.name}", column, raw)
            if required and value.text is None:
                raise BadField(f"{where}.{column.name}", "required")
            out[column.name] = value
        return out

    # -- keys -----------------------------------------------------------------------------

    def keys(self, request: Mapping[str, Any]) -> set[tuple[str, str]]:
        """The distinct ``(signal, key)`` pairs of the account ``request`` describes.

        Raises :class:`BadField` naming the first value that breaks the contract.
        """
        h = self._pseudo.hash
        weights = self.weights
        out: set[tuple[str, str]] = set()

        def add(signal: str, key: str | None) -> None:
            if key is not None and signal in weights:
                out.add((signal, key))

        account = self._row("accounts", "account", request.get("account") or {})
        created = account["created_at"].moment
        add("email", h("email", account["email"].text))
        add("phone", h("phone", account["phone"].text))
        weak: dict[str, list[str]] = {"signup_net": [], "user_agent": [], "bin": []}
        ua = h("user_agent", account["user_agent"].text)
        if ua is not None:
            weak["user_agent"].append(ua)
        ips = [account["signup_ip"].text]

        rows: dict[str, list[dict[str, _Value]]] = {}
        for table in REQUEST_TABLES:
            given = request.get(table) or []
            if not isinstance(given, list):
                raise BadField(table, "expected a list")
            if len(given) > MAX_ROWS:
                raise BadField(table, f"more than {MAX_ROWS} rows")
            rows[table] = [self._row(table, f"{table}.{i}", r) for i, r in enumerate(given)]
        for p in rows["payment_instruments"]:
            add("card", h("card", p["fingerprint"].text))
            bin_, postal = p["bin"].text, p["billing_postal"].text
            if bin_ is not None and postal is not None:
                add("bin_postal", h("bin_postal", f"{bin_} {postal}"))
            if bin_ is not None:
                weak["bin"].append(h("bin", bin_) or "")
        for d in rows["devices"]:
            add("device", h("device", d["device_id"].text))
        ips += [e["ip"].text for e in rows["ip_events"]]
        for i, ip in enumerate(ips):
            if ip is None:
                continue
            add("ip", h("ip", ip))
            net = h("net", nz.ip_net(ip))
            add("ip_net", net)
            add("ip_net48", h("net48", nz.ip_net48(ip)))
            if i == 0 and net is not None:  # the signup address's range
                weak["signup_net"].append(net)
        for o in rows["observations"]:
            kind, value_key = o["kind"].text, h(f"obs:{o['kind'].text}", o["value"].text)
            add(f"obs:{kind}", value_key)
            if o["seen_at"].moment is not None and value_key is not None:
                for key in _buckets(f"{kind}:{value_key}", o["seen_at"].moment,
                                    self._signals.coactivity.window_minutes):
                    add(COACTIVITY, key)
        if created is not None:
            for name in self._signals.cosignup.weak_keys:
                for wk in weak.get(name, []):
                    for key in _buckets(f"{name}:{wk}", created,
                                        self._signals.cosignup.window_minutes):
                        add(COSIGNUP, key)
        return out


def _buckets(prefix: str, moment: datetime, minutes: int) -> list[str]:
    """The keys of :func:`linkage.signals._time_buckets` for one event: ``prefix:OFFSET:BUCKET``
    on the two grids offset by half a window."""
    window = int(minutes) * 60
    seconds = (moment - _EPOCH).total_seconds()
    return [f"{prefix}:{offset}:{math.floor((seconds + offset) / window)}"
            for offset in (0, window // 2)]
