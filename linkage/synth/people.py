"""Person-level attributes: countries, signup times, names, e-mails, display names, phones.

Every function works on whole arrays of people at once. Uniqueness that matters for the
ground truth is built in rather than hoped for: phone numbers come from a bijection of the
person's index, and personal e-mails are made unique after normalisation (lower case, no
``+tag``, no dots in the local part) by :func:`fix_duplicate_emails`, so that two legitimate
accounts never look like one person.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from linkage.synth.encode import assemble, digit_chars, pattern_text
from linkage.synth.vocab import (
    COUNTRIES,
    COUNTRY_WEIGHTS,
    EMAIL_DOMAIN_WEIGHTS,
    EMAIL_DOMAINS,
    FIRST_ASCII,
    FIRST_NAMES,
    LAST_ASCII,
    LAST_NAMES,
    zipf_weights,
)

__all__ = [
    "DAY",
    "OBS_END",
    "SIGNUP_DAYS",
    "START",
    "display_names",
    "draw_countries",
    "draw_names",
    "emails",
    "fix_duplicate_emails",
    "person_subscriber",
    "phones",
    "signup_times",
    "text_of",
]

DAY = 86_400
START = int(datetime(2025, 3, 3, tzinfo=UTC).timestamp())  # a Monday
SIGNUP_DAYS = 182  # about six months of signups
OBS_END = START + (SIGNUP_DAYS + 14) * DAY  # activity is observed two weeks past the last signup

# Relative signup activity by local hour: quiet nights, a lunchtime plateau, an evening peak.
_DIURNAL = np.array([
    0.30, 0.20, 0.15, 0.10, 0.10, 0.15, 0.30, 0.60, 0.90, 1.10, 1.20, 1.20,
    1.20, 1.20, 1.20, 1.20, 1.20, 1.30, 1.40, 1.50, 1.50, 1.30, 1.00, 0.60,
])
_DIURNAL = _DIURNAL / _DIURNAL.sum()
_WEEKDAY = np.array([1.0, 1.0, 1.0, 0.98, 0.92, 0.78, 0.74])  # Monday first
_OFFSETS = np.array([c.utc_offset for c in COUNTRIES]) * 3600

# Personal subscriber numbers live in [2_000_000, 6_000_000); ring-bought numbers above it.
_PERSON_SPACE = 4_000_000
_PERSON_MULT = 2_654_435_761 % _PERSON_SPACE | 1  # odd, not a multiple of 5: coprime to space


def text_of(values: tuple[str, ...]) -> pa.Array:
    """An Arrow string array of a vocabulary, for ``take``."""
    return pa.array(values, pa.string())


_FIRST, _LAST = text_of(FIRST_NAMES), text_of(LAST_NAMES)
_FIRST_A, _LAST_A = text_of(FIRST_ASCII), text_of(LAST_ASCII)
_LETTERS = text_of(tuple("abcdefghijklmnopqrstuvwxyz"))


def _join(*parts: pa.Array | str) -> pa.Array:
    return pc.binary_join_element_wise(*parts, "")


def _pick(style: np.ndarray, options: list[pa.Array]) -> pa.Array:
    # choose() evaluates every option for every row; the options are cheap joins, and this
    # keeps each style a single vectorised expression.
    return pc.choose(pa.array(style.astype(np.int8)), *options)


def draw_countries(rng: np.random.Generator, m: int) -> np.ndarray:
    """Country indices (into ``COUNTRIES``) by population share."""
    return rng.choice(len(COUNTRIES), m, p=COUNTRY_WEIGHTS).astype(np.int16)


def draw_names(rng: np.random.Generator, m: int) -> tuple[np.ndarray, np.ndarray]:
    """First- and last-name indices, mildly Zipf-distributed like real name frequencies."""
    first = rng.choice(len(FIRST_NAMES), m, p=zipf_weights(len(FIRST_NAMES), 0.6))
    last = rng.choice(len(LAST_NAMES), m, p=zipf_weights(len(LAST_NAMES), 0.6))
    return first.astype(np.int32), last.astype(np.int32)


def signup_times(
    rng: np.random.Generator, country: np.ndarray, day_lo: float = 0, day_hi: float = SIGNUP_DAYS,
    growth: float = 0.5,
) -> np.ndarray:
    """Signup instants (Unix seconds) with weekly and daily rhythm in local time.

    Days are drawn from ``[day_lo, day_hi)`` with weekday weights and a linear growth trend
    (``growth`` = extra share at the end of the window); the local hour follows a diurnal
    curve and is shifted to UTC by the country's offset.
    """
    m = len(country)
    lo, hi = int(np.floor(day_lo)), max(int(np.ceil(day_hi)), int(np.floor(day_lo)) + 1)
    days = np.arange(lo, hi)
    w = _WEEKDAY[days % 7] * (1.0 + growth * (days / SIGNUP_DAYS))
    day = rng.choice(days, m, p=w / w.sum())
    hour = rng.choice(24, m, p=_DIURNAL)
    local = day * DAY + hour * 3600 + rng.integers(0, 3600, m)
    ts = START + local - _OFFSETS[country].astype(np.int64)
    return np.clip(ts, START + int(day_lo * DAY), START + int(day_hi * DAY) - 1).astype(np.int64)


def emails(
    rng: np.random.Generator, first: np.ndarray, last: np.ndarray,
    domain: pa.Array | None = None,
) -> pa.Array:
    """Plausible personal e-mail addresses built from the person's name.

    Styles: ``first.last``, ``firstlast``, ``first_last``, ``flast``, ``last.first``,
    ``first`` + digits, ``first.m.last`` (middle initial), ``firstl`` + digits; suffixes
    none / two digits / a birth year / 3-4 digits. A few addresses are capitalised or carry a
    ``+tag`` (people do that; it normalises back to the same person). ``domain`` overrides
    the provider per row.
    """
    m = len(first)
    f, last_a = _FIRST_A.take(pa.array(first)), _LAST_A.take(pa.array(last))
    initial = pc.utf8_slice_codeunits(f, 0, 1)
    middle = _LETTERS.take(pa.array(rng.integers(0, 26, m)))
    style = rng.choice(8, m, p=[0.22, 0.15, 0.07, 0.14, 0.06, 0.12, 0.12, 0.12])
    kind = rng.choice(4, m, p=[0.3, 0.32, 0.26, 0.12])
    kind[((style == 5) | (style == 7)) & (kind == 0)] = 1  # a short local part is never free
    two = pc.utf8_lpad(pc.cast(pa.array(rng.integers(0, 100, m)), pa.string()), 2, "0")
    year = pc.cast(pa.array(rng.integers(1960, 2007, m)), pa.string())
    long_ = pc.cast(pa.array(rng.integers(100, 10_000, m)), pa.string())
    suffix = _pick(kind, [pa.array([""] * m, pa.string()), two, year, long_])
    local = _pick(style, [
        _join(f, ".", last_a), _join(f, last_a), _join(f, "_", last_a), _join(initial, last_a),
        _join(last_a, ".", f), f, _join(f, ".", middle, ".", last_a),
        _join(f, pc.utf8_slice_codeunits(last_a, 0, 1)),
    ])
    local = _join(local, suffix)
    cap = rng.random(m) < 0.03
    local = pc.if_else(pa.array(cap), pc.utf8_capitalize(local), local)
    if domain is None:
        domain = text_of(EMAIL_DOMAINS).take(
            pa.array(rng.choice(len(EMAIL_DOMAINS), m, p=EMAIL_DOMAIN_WEIGHTS)))
    tags = text_of(("+news", "+shop", "+work", "+spam", "+signup")).take(
        pa.array(rng.integers(0, 5, m)))
    tagged = pa.array(rng.random(m) < 0.02)
    local = pc.if_else(tagged, _join(local, tags), local)
    return _join(local, "@", domain)


def display_names(
    rng: np.random.Generator, first: np.ndarray, last: np.ndarray, null_share: float = 0.1,
) -> pa.Array:
    """Display names: ``First Last``, ``First``, handles, ``First L.``, lower case; some null."""
    m = len(first)
    f, la = _FIRST.take(pa.array(first)), _LAST.take(pa.array(last))
    fa, laa = _FIRST_A.take(pa.array(first)), _LAST_A.take(pa.array(last))
    digits = pc.cast(pa.array(rng.integers(1, 100, m)), pa.string())
    style = rng.choice(5, m, p=[0.6, 0.11, 0.13, 0.1, 0.06])
    text = _pick(style, [
        _join(f, " ", la), f, _join(fa, laa, digits),
        _join(f, " ", pc.utf8_slice_codeunits(la, 0, 1), "."), pc.utf8_lower(_join(f, " ", la)),
    ])
    return pc.if_else(pa.array(rng.random(m) < null_share), pa.scalar(None, pa.string()), text)


def person_subscriber(person: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Seven-digit subscriber numbers, distinct for distinct person indices below 4 million."""
    offset = int(rng.integers(0, _PERSON_SPACE))
    p = np.asarray(person, dtype=np.int64)
    return 2_000_000 + (p * _PERSON_MULT + offset) % _PERSON_SPACE


def phones(
    rng: np.random.Generator, subscriber: np.ndarray, country: np.ndarray, null_share: float,
    pattern: int | None = None,
) -> pa.Array:
    """Phone numbers in the mixed formats people type, e.g. ``+1 (415) 555-0100``.

    The national number is a country prefix (area code, mobile range) plus the seven-digit
    ``subscriber``; the written form is drawn per row from the country's patterns (the
    first is the most common), or fixed by ``pattern`` (a ring's operator types one way).
    """
    m = len(subscriber)
    keep = rng.random(m) >= null_share
    pieces = []
    for c, spec in enumerate(COUNTRIES):  # per country: prefixes and patterns differ
        sel = np.flatnonzero(keep & (country == c))
        if not len(sel):
            continue
        prefixes = np.array([list(p.encode()) for p in spec.phone_prefixes], dtype=np.uint8)
        national = np.hstack([
            prefixes[rng.integers(0, len(prefixes), len(sel))],
            digit_chars(subscriber[sel], 7),
        ])
        k = len(spec.phone_patterns)
        which = (np.full(len(sel), pattern % k) if pattern is not None
                 else rng.choice(k, len(sel), p=zipf_weights(k, 1.0)))
        for j, pat in enumerate(spec.phone_patterns):
            sub = np.flatnonzero(which == j)
            if len(sub):
                pieces.append((sel[sub], pattern_text(pat, national[sub], slot="d")))
    return assemble(m, pieces)


def _normalise(email: pa.Array) -> pa.Array:
    """Lower case, drop ``+tag``, drop dots of the local part: the usual person key."""
    parts = pc.extract_regex(pc.utf8_lower(email), r"^(?P<local>[^@+]*)(?:\+[^@]*)?@(?P<dom>.*)$")
    local = pc.replace_substring(pc.struct_field(parts, "local"), ".", "")
    return _join(local, "@", pc.struct_field(parts, "dom"))


def fix_duplicate_emails(
    rng: np.random.Generator, email: pa.Array, mutable: np.ndarray, rounds: int = 6,
) -> pa.Array:
    """Make every ``mutable`` address unique after normalisation, the way people do.

    A contested address is kept by one holder and every other holder gets the same name
    with another number (``john.smith`` -> ``john.smith4821``), longer numbers in later
    rounds. Rows that are not mutable (operators' deliberate look-alike addresses) always
    keep their text; among mutable rows a random order decides who keeps the plain form,
    so legitimate and operator personas are treated alike.
    """
    m = len(email)
    order = np.concatenate([np.flatnonzero(~mutable), rng.permutation(np.flatnonzero(mutable))])
    for r in range(rounds + 1):
        valid = pc.is_valid(email).to_numpy(zero_copy_only=False)
        codes = pc.dictionary_encode(_normalise(email)).indices.to_numpy(zero_copy_only=False)
        codes = np.where(valid, codes, -1)
        seen = np.zeros(m, dtype=bool)
        _, first = np.unique(codes[order], return_index=True)
        seen[order[first]] = True
        bad = np.flatnonzero(~seen & mutable & valid)
        if not len(bad):
            break
        parts = pc.extract_regex(email.take(pa.array(bad)),
                                 r"^(?P<stem>[^@+]*?)\d*(?P<tag>\+[^@]*)?@(?P<dom>.*)$")
        if r < rounds:
            extra = pc.cast(pa.array(rng.integers(10, 10 ** (3 + r), len(bad))), pa.string())
        else:  # practically unreachable; the row number settles it for certain
            extra = _join("_", pc.cast(pa.array(bad), pa.string()))
        tag = pc.coalesce(pc.struct_field(parts, "tag"), "")
        fixed = _join(pc.struct_field(parts, "stem"), extra, tag, "@",
                      pc.struct_field(parts, "dom"))
        email = assemble(m, [(np.arange(m), email), (bad, fixed)])
    return email
