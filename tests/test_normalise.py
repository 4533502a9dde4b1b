"""The SQL normalisers agree with their Python twins, and the twins with the standard library.

Each SQL builder of ``linkage.ingest.normalise`` is evaluated by DuckDB on values drawn by
hypothesis and compared with the pure-Python function of the same rules; where the standard
library has an authority (``ipaddress``, ``datetime``) the Python function is checked against
it too, so a shared misunderstanding cannot hide.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import duckdb
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from linkage.config import IngestConfig
from linkage.ingest import normalise as nz
from tests.helpers import examples

# DuckDB's first queries are slow to plan; a deadline would only measure that.
FAST = settings(deadline=None, max_examples=examples(100))

CFG = IngestConfig()


@pytest.fixture(scope="module")
def con() -> duckdb.DuckDBPyConnection:
    c = duckdb.connect()
    c.execute("SET TimeZone = 'Europe/Paris'")  # the result must not depend on the session
    return c


def sql(con: duckdb.DuckDBPyConnection, builder: Callable[[str], str], value: object) -> object:
    row = con.execute(f"SELECT {builder('v')} FROM (SELECT ?::VARCHAR AS v)", [value]).fetchone()
    assert row is not None
    return row[0]


def email_sql(expr: str) -> str:
    return nz.email_sql(
        expr, CFG.email_ignore_dots, CFG.email_ignore_plus, CFG.email_domain_aliases
    )


def email_py(value: str | None) -> str | None:
    return nz.normalise_email(
        value, CFG.email_ignore_dots, CFG.email_ignore_plus, CFG.email_domain_aliases
    )


# DuckDB lower-cases 'İ' to 'i', Python to 'i̇'; no other code point below U+3000 differs.
TEXT = st.text(
    alphabet=st.characters(max_codepoint=0x2FFF, exclude_characters="İ\x00"), max_size=30
)
SPACES = st.sampled_from([" ", "\t", "\n", "\r", "\x0b", "\x0c", "\xa0", "  "])


# --- text ------------------------------------------------------------------------------------


@FAST
@given(st.tuples(st.lists(SPACES, max_size=2), TEXT, st.lists(SPACES, max_size=2)))
def test_clean_text_matches_python(con, parts):
    value = "".join(parts[0]) + parts[1] + "".join(parts[2])
    assert sql(con, nz.clean_text_sql, value) == nz.clean_text(value)


def test_clean_text_empty_is_missing(con):
    assert sql(con, nz.clean_text_sql, " \t\xa0") is None
    assert sql(con, nz.clean_text_sql, None) is None


@FAST
@given(TEXT)
def test_display_name_compact_asn_match_python(con, value):
    assert sql(con, nz.display_name_sql, value) == nz.display_name(value)
    assert sql(con, nz.compact_sql, value) == nz.compact(value)
    assert sql(con, nz.asn_sql, value) == nz.normalise_asn(value)


# --- email -----------------------------------------------------------------------------------

LOCAL = st.text(alphabet="abcXYZ019.+_-", min_size=0, max_size=12)
DOMAIN = st.sampled_from(
    ["gmail.com", "GMail.com", "googlemail.com", "outlook.com", "example.org", "", "@x"]
)


@FAST
@given(LOCAL, DOMAIN)
@example("John.Smith+promo", "GoogleMail.com")
@example("+tag", "gmail.com")
@example("...", "gmail.com")
def test_email_matches_python_on_addresses(con, local, domain):
    value = f"{local}@{domain}"
    assert sql(con, email_sql, value) == email_py(value)


@FAST
@given(TEXT)
def test_email_matches_python_on_any_text(con, value):
    assert sql(con, email_sql, value) == email_py(value)


def test_email_rules():
    assert email_py("John.Smith+promo@GoogleMail.com") == "johnsmith@gmail.com"
    assert email_py("j.smith+x@example.org") == "j.smith+x@example.org"
    assert email_py("ann+x@outlook.com") == "ann@outlook.com"  # plus tags only
    assert email_py("a.nn@outlook.com") == "a.nn@outlook.com"
    assert email_py("no-at-sign") == "no-at-sign"
    assert email_py("two@@ats.com") == "two@@ats.com"
    assert email_py("@x.com") == "@x.com"


# --- phone -----------------------------------------------------------------------------------


@FAST
@given(st.text(alphabet="0123456789 +-()x\u0661\u0662", max_size=20))
def test_phone_matches_python(con, value):
    assert sql(con, nz.phone_sql, value) == nz.normalise_phone(value)


def test_phone_rules():
    assert nz.normalise_phone("+44 (20) 7946-0018") == "442079460018"
    assert nz.normalise_phone("12345") is None
    arabic_indic = "".join(chr(0x0661 + i) for i in range(7))
    assert nz.normalise_phone(arabic_indic) is None  # only ASCII digits count


# --- IP addresses ----------------------------------------------------------------------------


def expected_ip(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> tuple[str, str, str | None]:
    """(canonical, net, net48) by the standard library."""
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    if isinstance(addr, ipaddress.IPv4Address):
        return str(addr), ipaddress.ip_network(f"{addr}/24", strict=False).exploded, None
    return (
        addr.exploded,
        ipaddress.ip_network(f"{addr}/64", strict=False).exploded,
        ipaddress.ip_network(f"{addr}/48", strict=False).exploded,
    )


def spellings(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list[str]:
    forms = [str(addr), addr.exploded, str(addr).upper()]
    if isinstance(addr, ipaddress.IPv6Address):
        packed = addr.packed
        v4 = ipaddress.IPv4Address(packed[12:])
        forms.append(f"{addr.exploded[:30]}{v4}")  # embedded IPv4 tail
    return forms


def ip_all_sql(con, value):
    row = con.execute(
        f"SELECT ip, {nz.ip_net_sql('ip')}, {nz.ip_net48_sql('ip')} "
        f"FROM (SELECT {nz.ip_sql('v')} AS ip FROM (SELECT ?::VARCHAR AS v))",
        [value],
    ).fetchone()
    return row


@FAST
@given(st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)))
@example(ipaddress.ip_address("::ffff:1.2.3.4"))
@example(ipaddress.ip_address("::"))
@example(ipaddress.ip_address("1::"))
@example(ipaddress.ip_address("2001:db8:1:2::"))
def test_ip_matches_ipaddress(con, addr):
    want = expected_ip(addr)
    for text in spellings(addr):
        canonical = nz.canonical_ip(text)
        assert (canonical, nz.ip_net(canonical), nz.ip_net48(canonical)) == want, text
        assert ip_all_sql(con, text) == want, text


def ipaddress_parse(text: str) -> str | None:
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    return expected_ip(addr)[0]


@FAST
@given(st.text(alphabet="0123456789abcdefABCDEF:.", max_size=45))
@example("1::2:3:4:5:6:7:8")
@example("1:2:3:4:5:6:7::")
@example("::1.2.3.4")
@example(":1.2.3.4")
@example("1.2.3.4.5")
@example(":::")
def test_ip_fuzz_sql_python_and_ipaddress_agree(con, text):
    mine = nz.canonical_ip(text)
    assert sql(con, nz.ip_sql, text) == mine
    theirs = ipaddress_parse(text)
    if theirs is not None:
        assert mine == theirs
    elif mine is not None:
        # The one deliberate difference: zero-padded IPv4 octets are read as decimal.
        assert re.search(r"(^|[.:])0[0-9]", text), text


@pytest.mark.parametrize(
    "text",
    [
        "256.1.1.1", "1.2.3", "1.2.3.4.", "+1.2.3.4", "1.2.3.-4", "1.2.3.4:80", "1.2.3.4/24",
        "1234.1.1.1", "1:2:3:4:5:6:7", "1:2:3:4:5:6:7:8:9", "1::2::3", "12345::", "g::1",
        "fe80::1%eth0", "[::1]", "::ffff:1.2.3.256", "::1.2.3", "1.2.3.4::", "localhost",
        "", ":", "::ffff:1.2.3.4.5", " 1.2.3.4",
    ],
)
def test_invalid_ips_are_invalid(con, text):
    assert nz.canonical_ip(text) is None
    assert sql(con, nz.ip_sql, text) is None


def test_ip_leading_zeros_are_decimal(con):
    assert sql(con, nz.ip_sql, "010.001.002.003") == "10.1.2.3"
    assert nz.canonical_ip("192.168.000.001") == "192.168.0.1"


# --- card numbers ----------------------------------------------------------------------------


def luhn_ok(digits: str) -> bool:
    """An independent Luhn: double every second digit from the right, sum the digits."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 else 1)
        total += d // 10 + d % 10
    return total % 10 == 0


def with_check_digit(body: str) -> str:
    return next(body + c for c in "0123456789" if luhn_ok(body + c))


@FAST
@given(st.text(alphabet="0123456789", min_size=12, max_size=18), st.data())
def test_valid_card_numbers_are_detected(con, body, data):
    number = with_check_digit(body)
    seps = data.draw(st.lists(st.sampled_from(["", " ", "-"]), min_size=len(number),
                              max_size=len(number)))
    spelled = "".join(d + s for d, s in zip(number, seps, strict=True)).strip(" -")
    assert nz.is_card_number(spelled)
    assert sql(con, nz.card_number_sql, spelled) is True


@FAST
@given(st.text(alphabet="0123456789 -a", max_size=24))
def test_luhn_sql_matches_python(con, value):
    digits = value.replace(" ", "").replace("-", "")
    want = bool(re.fullmatch("[0-9]{13,19}", digits)) and luhn_ok(digits)
    assert nz.is_card_number(value) == want
    assert sql(con, nz.card_number_sql, value) is want


def test_card_number_edges(con):
    for text, want in [
        ("4111111111111111", True), ("4111111111111112", False), ("411111111111", False),
        ("tok_4111111111111111", False), ("4111 1111 1111 1111", True),
        ("00000000000000000000", False),  # 20 digits
    ]:
        assert nz.is_card_number(text) is want
        assert sql(con, nz.card_number_sql, text) is want
    assert sql(con, nz.card_number_sql, None) is False


def test_redact_card_numbers_hides_every_digit_of_the_card():
    card = "4111 1111 1111 1111"
    text = nz.redact_card_numbers(f"CSV Error on Line: 3 Original Line: a,2024-01-01 {card},x")
    assert "1111" not in text and nz.CARD_REDACTED in text
    assert nz.redact_card_numbers("row 12345 of 99") == "row 12345 of 99"


# --- timestamps and counts -------------------------------------------------------------------

OFFSETS = st.integers(min_value=-14 * 60, max_value=14 * 60).map(
    lambda m: timezone(timedelta(minutes=m))
)


@FAST
@given(
    st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1)),
    st.one_of(st.none(), OFFSETS),
    st.sampled_from(["T", " "]),
    st.booleans(),
)
def test_timestamps_match_datetime(con, naive, tz, sep, zulu):
    ts = naive if tz is None else naive.replace(tzinfo=tz)
    text = ts.isoformat(sep=sep)
    if tz is None and zulu:
        text += "Z"
    want = ts if tz is None else ts.astimezone(UTC).replace(tzinfo=None)
    assert nz.parse_timestamp(text) == want
    assert sql(con, nz.timestamp_sql, text) == want


@FAST
@given(st.text(alphabet="0123456789-:TZ+. x", max_size=30))
@example("2024-05-01")
@example("2024-05-01T10:00+05")
@example("2024-05-01T10:00:00.123456789-0130")
@example("2024-02-30")
@example("infinity")
@example("2024-05-01T10")
@example("2024-05-01T10:00+14:01")
@example("2024-05-01T10:00+25:00")
@example("2024-05-01T10:00+05:99")
@example("9999-12-31T23:59-01")
def test_timestamp_sql_matches_python_on_any_text(con, text):
    mine = nz.parse_timestamp(text)
    got = sql(con, nz.timestamp_sql, text)
    # Python rejects hour 24 and year 0, which DuckDB reads; nothing else may differ.
    assume(not re.search(r"(^0000-|[T ]24:)", text))
    if isinstance(got, str):  # after year 9999 in UTC: DuckDB's text, Python's None
        assert mine is None and got.startswith("10000-")
        return
    assert got == mine


@FAST
@given(st.one_of(st.integers(min_value=-(10**19), max_value=10**19).map(str),
                 st.text(alphabet="0123456789.-+e ", max_size=12)))
@example("12.0")
@example("12.5")
@example("007")
def test_counts_match_python(con, text):
    assert sql(con, nz.count_sql, text) == nz.parse_count(text)
