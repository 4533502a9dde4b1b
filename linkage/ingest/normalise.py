"""Normalisation of input values, as DuckDB SQL expressions with a pure-Python twin each.

Ingest must normalise tens of millions of values, so every rule here is a *SQL expression
builder*: a function that takes the SQL text of an input expression and returns the SQL text
of the normalised value, to be embedded in a vectorised query. Each builder has a Python
function with the same rules, used as the oracle of the property tests
(``tests/test_normalise.py``) and handy in notebooks; the two must agree on every string.

The input of every builder except :func:`clean_text_sql` is *clean text*: a ``VARCHAR`` that
is trimmed and never empty (missing is ``NULL``), as :func:`clean_text_sql` makes it.

Builders bind intermediate values with :func:`let` (a one-element list and a lambda), because
DuckDB inlines an expression once per mention: a rule that mentions its input five times,
nested three deep, would otherwise evaluate it a hundred times.

Examples
--------
>>> normalise_email(clean_text("  John.Smith+promo@GMail.com "))
'johnsmith@gmail.com'
>>> canonical_ip("2001:DB8::1")
'2001:0db8:0000:0000:0000:0000:0000:0001'
>>> ip_net(canonical_ip("2001:DB8::1")), ip_net(canonical_ip("10.1.2.3"))
('2001:0db8:0000:0000:0000:0000:0000:0000/64', '10.1.2.0/24')
>>> import duckdb
>>> duckdb.sql(f"SELECT {ip_sql(sql_string('2001:DB8::1'))}").fetchall()
[('2001:0db8:0000:0000:0000:0000:0000:0001',)]
>>> is_card_number("4111 1111 1111 1111"), is_card_number("4111 1111 1111 1112")
(True, False)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from linkage.errors import CARD_REDACTED, luhn_valid, redact_card_numbers

__all__ = [
    "CARD_REDACTED",
    "TIMESTAMP_END",
    "TIMESTAMP_START",
    "WHITESPACE",
    "asn_sql",
    "canonical_ip",
    "card_number_sql",
    "clean_text",
    "clean_text_sql",
    "compact",
    "compact_sql",
    "count_sql",
    "display_name",
    "display_name_sql",
    "email_sql",
    "ip_net",
    "ip_net48",
    "ip_net48_sql",
    "ip_net_sql",
    "ip_sql",
    "is_card_number",
    "let",
    "normalise_asn",
    "normalise_email",
    "normalise_phone",
    "parse_count",
    "parse_timestamp",
    "phone_sql",
    "redact_card_numbers",
    "sql_string",
    "timestamp_in_range",
    "timestamp_in_range_sql",
    "timestamp_sql",
]

WHITESPACE = " \t\n\r\x0b\x0c\xa0"
"""Characters trimmed from both ends of every text value: ASCII whitespace and the no-break
space (spreadsheets love it). DuckDB's ``trim`` without arguments keeps tabs and newlines."""

MIN_PHONE_DIGITS = 6

# An IPv4 octet written with at most three digits and worth at most 255; leading zeros are
# read as decimal (upstream loggers zero-pad, nobody writes octal on purpose).
_OCTET = "([01]?[0-9]{1,2}|2[0-4][0-9]|25[0-5])"
_V4 = rf"{_OCTET}\.{_OCTET}\.{_OCTET}\.{_OCTET}"
_HEX = "[0-9a-f]{1,4}"
_V6_FULL = rf"{_HEX}(:{_HEX}){{7}}"
# With '::' the explicit groups are separated by single colons on both sides of one '::',
# so this pattern also rejects a second '::', ':::' and a lone leading or trailing colon.
_V6_GAP = rf"({_HEX}(:{_HEX})*)?::({_HEX}(:{_HEX})*)?"
_MAPPED = "0000:0000:0000:0000:0000:ffff:"
_V6_CANONICAL = "[0-9a-f]{4}(:[0-9a-f]{4}){7}"

# An offset is Z or at most 14 hours either way (the range real zones use), minutes < 60.
_ZONE = r"(Z|[+-]((0[0-9]|1[0-3])(:?[0-5][0-9])?|14(:?00)?))"
_ISO = (
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}"
    rf"([T ][0-9]{{2}}:[0-9]{{2}}(:[0-9]{{2}}([.][0-9]{{1,9}})?)?{_ZONE}?)?"
)
_OFFSET = rf".*[T ].*{_ZONE}"
_COUNT = r"[0-9]{1,18}([.]0*)?"


# --- SQL helpers ---------------------------------------------------------------------------


def sql_string(text: str) -> str:
    """Quote ``text`` as a SQL string literal.

    >>> sql_string("it's")
    "'it''s'"
    """
    return "'" + text.replace("'", "''") + "'"


def _sql_chars(chars: str) -> str:
    # Control characters spelled with chr() keep generated SQL printable and diffable.
    return "(" + " || ".join(f"chr({ord(c)})" for c in chars) + ")"


def _sql_in(expr: str, values: Iterable[str]) -> str:
    items = sorted({v.lower() for v in values})
    if not items:
        return "false"  # `x IN ()` is not valid SQL
    return f"{expr} IN ({', '.join(map(sql_string, items))})"


def let(value: str, name: str, body: str) -> str:
    """Evaluate ``value`` once and refer to it as ``name`` inside ``body``.

    DuckDB has no ``LET``; a lambda over a one-element list binds the value in a vectorised
    way. ``name`` should not be a column name of the query (use a ``_lk_`` prefix).

    >>> let("lower(x)", "_lk_s", "_lk_s || _lk_s")
    '(list_transform([lower(x)], lambda _lk_s: _lk_s || _lk_s))[1]'
    """
    return f"(list_transform([{value}], lambda {name}: {body}))[1]"


# --- text ------------------------------------------------------------------------------------


def clean_text(value: str | None) -> str | None:
    """Trim :data:`WHITESPACE`; an empty result is missing (``None``)."""
    if value is None:
        return None
    text = value.strip(WHITESPACE)
    return text or None


def clean_text_sql(expr: str) -> str:
    """SQL of :func:`clean_text`; ``expr`` may be of any scalar type (it is cast to text).

    ``trim`` with a set of characters costs more than a test of the two ends, and most
    values need no trimming: a value whose first and last characters are printable ASCII
    other than the space is kept as it is, and only the others are trimmed.
    """
    text = f"CAST({expr} AS VARCHAR)"
    return (
        f"CASE WHEN ascii({text}) BETWEEN 33 AND 126 AND ascii(right({text}, 1)) BETWEEN 33 "
        f"AND 126 THEN {text} ELSE NULLIF(trim({text}, {_sql_chars(WHITESPACE)}), '') END"
    )


def display_name(value: str | None) -> str | None:
    """Lower-case a display name and collapse runs of whitespace to one space."""
    if value is None:
        return None
    return re.sub(r"[ \t\n\r\x0b\x0c\xa0]+", " ", value.lower())


def display_name_sql(expr: str) -> str:
    """SQL of :func:`display_name`."""
    return f"regexp_replace(lower({expr}), '[ \\t\\n\\r\\v\\f\\x{{a0}}]+', ' ', 'g')"


def compact(value: str | None) -> str | None:
    """Lower-case and drop spaces and dashes (postal codes, BINs): ``'SW1A 1AA'`` →
    ``'sw1a1aa'``; nothing left is missing. (Lower, not upper: DuckDB and Python upper-case
    ``ß`` differently, and the two must agree.)"""
    if value is None:
        return None
    return value.lower().replace(" ", "").replace("-", "") or None


def compact_sql(expr: str) -> str:
    """SQL of :func:`compact`."""
    return f"NULLIF(replace(replace(lower({expr}), ' ', ''), '-', ''), '')"


# --- email -----------------------------------------------------------------------------------


def normalise_email(
    value: str | None,
    ignore_dots: Iterable[str] = ("gmail.com", "googlemail.com"),
    ignore_plus: Iterable[str] = ("gmail.com", "googlemail.com"),
    aliases: Mapping[str, str] | None = None,
) -> str | None:
    """Normalise an email address so that one mailbox has one form.

    Lower-case; a domain listed in ``aliases`` becomes its alias; for a domain (before or
    after aliasing) listed in ``ignore_plus`` the local part loses everything from its first
    ``+``, and for one listed in ``ignore_dots`` it loses its dots, unless that would leave
    it empty. Text without exactly one ``@`` or with an empty side is kept, lower-cased:
    emails are attacker text, a run must not fail on them.

    >>> normalise_email("A.B+x@googlemail.com", aliases={"googlemail.com": "gmail.com"})
    'ab@gmail.com'
    >>> normalise_email("not an email")
    'not an email'
    """
    if value is None:
        return None
    text = value.lower()
    if text.count("@") != 1 or text.startswith("@") or text.endswith("@"):
        return text
    local, domain = text.split("@")
    aliases = {k.lower(): v.lower() for k, v in (aliases or {}).items()}
    target = aliases.get(domain, domain)
    dots = {d.lower() for d in ignore_dots}
    plus = {d.lower() for d in ignore_plus}
    if domain in plus or target in plus:
        local = local.split("+", 1)[0] or local
    if domain in dots or target in dots:
        local = local.replace(".", "") or local
    return f"{local}@{target}"


def email_sql(
    expr: str,
    ignore_dots: Iterable[str] = ("gmail.com", "googlemail.com"),
    ignore_plus: Iterable[str] = ("gmail.com", "googlemail.com"),
    aliases: Mapping[str, str] | None = None,
) -> str:
    """SQL of :func:`normalise_email` (the domain lists are baked into the expression)."""
    aliases = {k.lower(): v.lower() for k, v in (aliases or {}).items()}
    target = "_lk_d"
    if aliases:
        whens = " ".join(
            f"WHEN {sql_string(k)} THEN {sql_string(v)}" for k, v in sorted(aliases.items())
        )
        target = f"CASE _lk_d {whens} ELSE _lk_d END"
    plus = f"({_sql_in('_lk_d', ignore_plus)} OR {_sql_in('_lk_t', ignore_plus)})"
    dots = f"({_sql_in('_lk_d', ignore_dots)} OR {_sql_in('_lk_t', ignore_dots)})"
    local_plus = (
        f"CASE WHEN {plus} THEN coalesce(NULLIF(split_part(_lk_l, '+', 1), ''), _lk_l) "
        "ELSE _lk_l END"
    )
    local_dots = (
        f"CASE WHEN {dots} THEN coalesce(NULLIF(replace(_lk_p, '.', ''), ''), _lk_p) "
        "ELSE _lk_p END"
    )
    rebuilt = let(
        "split_part(_lk_e, '@', 1)",
        "_lk_l",
        let(
            "split_part(_lk_e, '@', 2)",
            "_lk_d",
            let(target, "_lk_t", let(local_plus, "_lk_p", f"{local_dots} || '@' || _lk_t")),
        ),
    )
    body = (
        "CASE WHEN strlen(_lk_e) - strlen(replace(_lk_e, '@', '')) = 1 "
        "AND NOT starts_with(_lk_e, '@') AND NOT ends_with(_lk_e, '@') "
        f"THEN {rebuilt} ELSE _lk_e END"
    )
    return let(f"lower({expr})", "_lk_e", body)


# --- phone -----------------------------------------------------------------------------------


def normalise_phone(value: str | None) -> str | None:
    """Keep the ASCII digits; fewer than six of them is missing.

    >>> normalise_phone("+44 (20) 7946-0018"), normalise_phone("n/a 123")
    ('442079460018', None)
    """
    if value is None:
        return None
    digits = "".join(c for c in value if "0" <= c <= "9")
    return digits if len(digits) >= MIN_PHONE_DIGITS else None


def phone_sql(expr: str) -> str:
    """SQL of :func:`normalise_phone`."""
    return let(
        f"regexp_replace({expr}, '[^0-9]', '', 'g')",
        "_lk_ph",
        f"CASE WHEN strlen(_lk_ph) >= {MIN_PHONE_DIGITS} THEN _lk_ph END",
    )


# --- IP addresses ----------------------------------------------------------------------------


def canonical_ip(value: str | None) -> str | None:
    """Canonical text of an IP address, or ``None`` when ``value`` is not one.

    IPv4: four decimal octets of at most three digits, each 0-255, written back without
    leading zeros. IPv6: eight groups (``::`` compresses one or more zero groups; the last
    two may be an embedded IPv4), written fully expanded in lower case; an IPv4-mapped
    address (``::ffff:1.2.3.4``, in any spelling) is the IPv4 address. No zone (``%eth0``),
    brackets, port or prefix length.

    >>> canonical_ip("010.001.002.003"), canonical_ip("::FFFF:1.2.3.4"), canonical_ip("1.2.3")
    ('10.1.2.3', '1.2.3.4', None)
    """
    if value is None:
        return None
    s = value.lower()
    if re.fullmatch(_V4, s):
        return ".".join(str(int(o)) for o in s.split("."))
    if ":" not in s:
        return None
    if "." in s:
        m = re.fullmatch(rf"(.*:){_V4}", s)
        if m is None:
            return None
        a, b, c, d = (int(o) for o in m.groups()[1:])
        s = f"{m.group(1)}{a * 256 + b:x}:{c * 256 + d:x}"
    if re.fullmatch(_V6_FULL, s):
        groups = s.split(":")
    elif re.fullmatch(_V6_GAP, s):
        left, right = (part.split(":") if part else [] for part in s.split("::"))
        if len(left) + len(right) > 7:
            return None
        groups = left + ["0"] * (8 - len(left) - len(right)) + right
    else:
        return None
    full = ":".join(g.rjust(4, "0") for g in groups)
    if full.startswith(_MAPPED):
        return ".".join(str(int(full[i : i + 2], 16)) for i in (30, 32, 35, 37))
    return full


def ip_sql(expr: str) -> str:
    """SQL of :func:`canonical_ip`, with string and list functions only (DuckDB's ``inet``
    extension cannot be downloaded here)."""
    # A dotted quad none of whose octets starts with 0 is already canonical.
    v4 = (
        "CASE WHEN starts_with(_lk_s, '0') OR contains(_lk_s, '.0') "
        r"THEN regexp_replace(_lk_s, '(^|\.)0+([0-9])', '\1\2', 'g') ELSE _lk_s END"
    )
    # An embedded IPv4 tail becomes two hex groups, so the rest only sees hex and colons.
    tail = let(
        f"regexp_extract(_lk_s, '^(.*:){_V4}$', ['p', 'a', 'b', 'c', 'd'])",
        "_lk_m",
        "_lk_m.p || printf('%x:%x', _lk_m.a::INT * 256 + _lk_m.b::INT, "
        "_lk_m.c::INT * 256 + _lk_m.d::INT)",
    )
    hexed = (
        f"CASE WHEN NOT contains(_lk_s, '.') THEN _lk_s "
        f"WHEN regexp_full_match(_lk_s, '.*:{_V4}') THEN {tail} END"
    )
    # Explicit groups of a '::' form: one per colon, less one for each '::' at an end.
    n = (
        "(strlen(_lk_h) - strlen(replace(_lk_h, ':', '')) "
        "- starts_with(_lk_h, '::')::INT - ends_with(_lk_h, '::')::INT)"
    )
    joined = (
        f"CASE WHEN regexp_full_match(_lk_h, '{_V6_FULL}') THEN _lk_h "
        f"WHEN regexp_full_match(_lk_h, '{_V6_GAP}') AND {n} <= 7 THEN concat_ws(':', "
        f"NULLIF(split_part(_lk_h, '::', 1), ''), rtrim(repeat('0:', 8 - {n}), ':'), "
        "NULLIF(split_part(_lk_h, '::', 2), '')) END"
    )
    # One split and a pad per group rather than eight split_part calls.
    expanded = (
        "array_to_string(list_transform(string_split(_lk_j, ':'), "
        "lambda _lk_g: lpad(_lk_g, 4, '0')), ':')"
    )
    mapped = (
        "concat_ws('.', "
        + ", ".join(f"('0x' || substr(_lk_x, {p}, 2))::INT::VARCHAR" for p in (31, 33, 36, 38))
        + ")"
    )
    unmap = f"CASE WHEN starts_with(_lk_x, '{_MAPPED}') THEN {mapped} ELSE _lk_x END"
    full = f"CASE WHEN _lk_j IS NOT NULL THEN {let(expanded, '_lk_x', unmap)} END"
    v6 = let(hexed, "_lk_h", let(joined, "_lk_j", full))
    # Eight groups of four hex digits, not IPv4-mapped, is already canonical: the general
    # rewrite's splitting and padding is skipped.
    body = (
        f"CASE WHEN regexp_full_match(_lk_s, '{_V4}') THEN {v4} "
        f"WHEN regexp_full_match(_lk_s, '{_V6_CANONICAL}') "
        f"AND NOT starts_with(_lk_s, '{_MAPPED}') THEN _lk_s "
        f"WHEN contains(_lk_s, ':') THEN {v6} END"
    )
    return let(f"lower({expr})", "_lk_s", body)


def ip_net(canonical: str | None) -> str | None:
    """The network of a canonical IP: IPv4 ``/24`` or IPv6 ``/64``, expanded.

    >>> ip_net("1.2.3.4")
    '1.2.3.0/24'
    """
    if canonical is None:
        return None
    if "." in canonical:
        return canonical.rsplit(".", 1)[0] + ".0/24"
    return canonical[:19] + ":0000:0000:0000:0000/64"


def ip_net_sql(expr: str) -> str:
    """SQL of :func:`ip_net` (``expr`` is a canonical IP, as :func:`ip_sql` makes it)."""
    return (
        f"CASE WHEN contains({expr}, '.') THEN regexp_replace({expr}, '[0-9]+$', '0/24') "
        f"ELSE left({expr}, 19) || ':0000:0000:0000:0000/64' END"
    )


def ip_net48(canonical: str | None) -> str | None:
    """The IPv6 ``/48`` of a canonical IP, expanded; ``None`` for IPv4.

    >>> ip_net48("2001:0db8:0001:0002:0000:0000:0000:0001")
    '2001:0db8:0001:0000:0000:0000:0000:0000/48'
    """
    if canonical is None or "." in canonical:
        return None
    return canonical[:14] + ":0000:0000:0000:0000:0000/48"


def ip_net48_sql(expr: str) -> str:
    """SQL of :func:`ip_net48`."""
    return (
        f"CASE WHEN NOT contains({expr}, '.') "
        f"THEN left({expr}, 14) || ':0000:0000:0000:0000:0000/48' END"
    )


# --- card numbers ----------------------------------------------------------------------------


def is_card_number(value: str | None) -> bool:
    """True when ``value`` is 13-19 digits (spaces and dashes ignored) passing the Luhn check:
    a raw card number, which must never be stored.

    >>> is_card_number("4242-4242-4242-4242"), is_card_number("tok_4242424242424242")
    (True, False)
    """
    if value is None:
        return False
    digits = value.replace(" ", "").replace("-", "")
    return re.fullmatch("[0-9]{13,19}", digits) is not None and luhn_valid(digits)


def card_number_sql(expr: str) -> str:
    """SQL of :func:`is_card_number` (``false`` for ``NULL``)."""
    luhn = (
        "list_sum(list_transform(string_split(reverse(_lk_cd), ''), lambda _lk_c, _lk_i: "
        "CASE WHEN _lk_i % 2 = 0 THEN (CASE WHEN _lk_c::INT > 4 THEN _lk_c::INT * 2 - 9 "
        "ELSE _lk_c::INT * 2 END) ELSE _lk_c::INT END)) % 10 = 0"
    )
    body = (
        "CASE WHEN _lk_cd IS NOT NULL AND regexp_full_match(_lk_cd, '[0-9]{13,19}') "
        f"THEN {luhn} ELSE false END"
    )
    return let(f"replace(replace({expr}, ' ', ''), '-', '')", "_lk_cd", body)


# --- timestamps and counts -------------------------------------------------------------------


TIMESTAMP_START = datetime(1970, 1, 1)
"""The earliest timestamp the input may hold (UTC), as :func:`timestamp_in_range` says."""
TIMESTAMP_END = datetime(2101, 1, 1)
"""The first timestamp after the accepted range (UTC): 2100-12-31 is the last day in it."""


def parse_timestamp(value: str | None) -> datetime | None:
    """An ISO 8601 timestamp as naive UTC; no offset means UTC; ``None`` if unparseable.

    An offset is ``Z`` or at most 14 hours (``+25:00`` and ``+05:99`` are unparseable).
    Whether the result lies in the accepted range is :func:`timestamp_in_range`'s question;
    a text whose UTC time Python cannot represent (after year 9999) is ``None`` here, but
    out of range either way.

    >>> parse_timestamp("2024-05-01T12:00:00+02:00")
    datetime.datetime(2024, 5, 1, 10, 0)
    >>> parse_timestamp("2024-05-01T12:00:00+25:00") is None
    True
    """
    if value is None or not re.fullmatch(_ISO, value):
        return None
    try:
        ts = datetime.fromisoformat(value)
        if ts.tzinfo is not None:
            ts = ts.astimezone(UTC).replace(tzinfo=None)
    except (ValueError, OverflowError):
        return None
    return ts


def timestamp_in_range(ts: datetime | None) -> bool:
    """True when ``ts`` (naive UTC) lies from 1970-01-01 to 2100-12-31 inclusive.

    >>> timestamp_in_range(datetime(2100, 12, 31, 23, 59))
    True
    >>> timestamp_in_range(datetime(1969, 12, 31, 23, 59))
    False
    """
    return ts is not None and TIMESTAMP_START <= ts < TIMESTAMP_END


def timestamp_in_range_sql(expr: str) -> str:
    """SQL of :func:`timestamp_in_range` for a ``TIMESTAMP`` (``NULL`` for ``NULL``)."""
    return (
        f"({expr} >= TIMESTAMP '{TIMESTAMP_START:%Y-%m-%d %H:%M:%S}' "
        f"AND {expr} < TIMESTAMP '{TIMESTAMP_END:%Y-%m-%d %H:%M:%S}')"
    )


def timestamp_sql(expr: str) -> str:
    """SQL of :func:`parse_timestamp`: clean text to ``TIMESTAMP`` (UTC), ``NULL`` when it is
    not ISO 8601. The offset decides the cast, so the session time zone does not matter."""
    body = (
        f"CASE WHEN NOT regexp_full_match(_lk_ts, '{_ISO}') THEN NULL "
        f"WHEN regexp_full_match(_lk_ts, '{_OFFSET}') "
        "THEN timezone('UTC', TRY_CAST(_lk_ts AS TIMESTAMPTZ)) "
        "ELSE TRY_CAST(_lk_ts AS TIMESTAMP) END"
    )
    return let(expr, "_lk_ts", body)


def parse_count(value: str | None) -> int | None:
    """A non-negative integer written in decimal (``'12'``, ``'12.0'``); ``None`` otherwise.

    >>> parse_count("12.0"), parse_count("-1"), parse_count("1.5")
    (12, None, None)
    """
    if value is None or not re.fullmatch(_COUNT, value):
        return None
    return int(value.split(".")[0])


def count_sql(expr: str) -> str:
    """SQL of :func:`parse_count` (``BIGINT``)."""
    return let(
        expr,
        "_lk_n",
        f"CASE WHEN regexp_full_match(_lk_n, '{_COUNT}') "
        "THEN CAST(split_part(_lk_n, '.', 1) AS BIGINT) END",
    )


def normalise_asn(value: str | None) -> str | None:
    """An autonomous system number without its ``AS`` prefix: ``'as 13335'`` → ``'13335'``;
    other text is kept as it is.

    >>> normalise_asn("AS13335"), normalise_asn("13335"), normalise_asn("Cloudflare")
    ('13335', '13335', 'Cloudflare')
    """
    if value is None:
        return None
    m = re.fullmatch("[Aa][Ss] ?([0-9]+)", value)
    return m.group(1) if m else value


def asn_sql(expr: str) -> str:
    """SQL of :func:`normalise_asn`."""
    return f"regexp_replace({expr}, '^[Aa][Ss] ?([0-9]+)$', '\\1')"
