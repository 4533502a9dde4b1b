"""Operator rings: groups of fake accounts run by one operator, in three styles.

``plain``
    Careless farming. Few ring cards and ring devices, each shared by many members; IPs
    from 1-3 hosting /24s (sometimes an IPv6 /64) plus the operator's own home IP now and
    then; signups in a burst (minutes to hours) with a tail over ten days; look-alike
    e-mails (gmail dot/plus variants, disposable or ring-owned domains, sequential names);
    sequential VoIP phone numbers; a shared referral code, API key and drop address.
``camouflage``
    Careful farming that hides in the crowd: residential-proxy IPs from the same pool and
    popularity real users have, popular BINs and user agents, plausible personal e-mails.
    Ring ties are sparse and chain-like: each card or device is shared by only 2-4
    consecutive members (in signup order), so the ring is a chain of overlaps. Each fake
    also borrows 1-3 ordinary attributes of random real users (their home IP, device,
    shipping address, referral code).
``slowdrip``
    Patient farming: signups spread over six weeks in the operator's office hours; a new
    residential IP (a distinct /24) per account; device fingerprints rotated from a small
    ring pool; virtual cards all distinct but sharing BIN and billing postal code.

All draws for a ring come from a generator derived from the seed and the ring's number, so
a ring does not change when other rings are added or removed.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from linkage.synth import people
from linkage.synth.background import World, asn_of, sample_residential
from linkage.synth.encode import alnum_chars, assemble, bytes_text, sub_rng
from linkage.synth.people import DAY, OBS_END, SIGNUP_DAYS, START
from linkage.synth.tables import Builder
from linkage.synth.vocab import (
    ASN_HOSTING,
    ASN_RESIDENTIAL,
    BIN_WEIGHTS,
    BINS,
    DISPOSABLE_DOMAINS,
    FIRST_ASCII,
    LAST_ASCII,
    NASTY_NAMES,
    UA_WEIGHTS,
    USER_AGENTS,
    V6_HOSTING,
    VIRTUAL_BINS,
    WORDS,
)

__all__ = ["RING_KINDS", "add_ring", "ring_sizes"]

RING_KINDS = ("plain", "camouflage", "slowdrip")
_U64 = np.uint64


def ring_sizes(rng: np.random.Generator, total: int, lo: int, hi: int) -> list[int]:
    """Ring sizes summing to at most ``total``, log-uniform on ``[lo, hi]`` (many small rings).

    The last ring takes the remainder; a remainder below ``lo`` is spread over earlier rings
    that have room, else dropped (those accounts stay legitimate). If ``total < lo`` there
    is one ring of ``total`` accounts (at least two), smaller than ``lo`` because ``n`` is.
    """
    sizes: list[int] = []
    left = total
    while left >= lo:  # one iteration per ring
        size = int(np.exp(rng.uniform(np.log(lo), np.log(hi + 1))))
        size = min(max(size, lo), hi, left)
        if 0 < left - size < lo:  # would strand a remainder too small to be a ring
            if left <= hi:
                size = left
            elif left - lo >= lo:
                size = left - lo
        sizes.append(size)
        left -= size
    for i in range(len(sizes)):
        room = min(hi - sizes[i], left)
        sizes[i] += room
        left -= room
    if not sizes and total >= 2:
        sizes = [total]
    return sizes


def add_ring(b: Builder, world: World, kind: str, idx: np.ndarray, gid: int) -> None:
    """Generate ring number ``gid`` of style ``kind`` on the accounts ``idx``."""
    rng = sub_rng(b.seed, "ring", gid)
    b.group[idx] = gid
    {"plain": _plain, "camouflage": _camouflage, "slowdrip": _slowdrip}[kind](b, world, rng, idx)


# --- persona: the account-level fields --------------------------------------------------------

def _persona(
    b: Builder, rng: np.random.Generator, idx: np.ndarray, created: np.ndarray,
    country: np.ndarray, email: pa.Array | None, ua: np.ndarray, phone: pa.Array, nasty: float,
) -> None:
    """Account-level fields. ``email=None`` means a plausible personal address that matches
    the display name (careful rings); a look-alike address is kept verbatim."""
    m = len(idx)
    first, last = people.draw_names(rng, m)
    names = people.display_names(rng, first, last, null_share=0.15)
    bad = np.flatnonzero(rng.random(m) < nasty)
    nasty_text = people.text_of(NASTY_NAMES).take(pa.array(rng.integers(0, len(NASTY_NAMES),
                                                                        len(bad))))
    names = assemble(m, [(np.arange(m), names), (bad, nasty_text)])
    b.created_at[idx], b.country[idx], b.ua[idx] = created, country, ua
    # Plausible personas are de-duplicated like real people; look-alikes never are.
    b.email_fixed[idx] = email is not None
    b.set_text("email", idx, people.emails(rng, first, last) if email is None else email)
    b.set_text("display_name", idx, names)
    b.set_text("phone", idx, phone)


def _ring_country(rng: np.random.Generator, m: int) -> tuple[int, np.ndarray]:
    """The country a ring claims, with a few members claiming another."""
    home = int(people.draw_countries(rng, 1)[0])
    return home, np.where(rng.random(m) < 0.85, home, people.draw_countries(rng, m))


def _lookalike_email(rng: np.random.Generator, m: int) -> pa.Array:
    """One of four careless styles, chosen per ring."""
    style = rng.choice(4, p=[0.3, 0.3, 0.2, 0.2])
    join = pc.binary_join_element_wise
    if style == 0:  # gmail dot/plus variants of 1-3 base addresses
        f, la = people.draw_names(rng, 3)
        bases = [FIRST_ASCII[f[j]] + LAST_ASCII[la[j]] + str(rng.integers(10, 100))
                 for j in range(int(rng.integers(1, 4)))]
        # Every spelling of each base with at most one dot: a few dozen strings per ring.
        spellings = [[b] + [b[:i] + "." + b[i:] for i in range(1, len(b))] for b in bases]
        offset = np.cumsum([0] + [len(sp) for sp in spellings])[:-1]
        which = rng.integers(0, len(bases), m)
        cut = rng.integers(1, np.array([len(b) for b in bases])[which])
        pick = offset[which] + np.where(rng.random(m) < 0.7, cut, 0)
        text = pa.array([x for sp in spellings for x in sp], pa.string()).take(pa.array(pick))
        tag = join("+", pc.cast(pa.array(np.arange(m)), pa.string()), "")
        text = pc.if_else(pa.array(rng.random(m) < 0.4), join(text, tag, ""), text)
        # The site refuses an address it has seen: repeats get a +tag.
        codes = pc.dictionary_encode(text).indices.to_numpy()
        first = np.zeros(m, dtype=bool)
        first[np.unique(codes, return_index=True)[1]] = True
        text = pc.if_else(pa.array(first), text, join(text, tag, ""))
        return join(text, "@gmail.com", "")
    if style == 1:  # random locals at throw-away providers
        local = bytes_text(alnum_chars(rng.integers(0, 2**63, m).astype(_U64),
                                       int(rng.integers(8, 13))))
        dom = pa.array(rng.choice(DISPOSABLE_DOMAINS, 2).astype(object)).take(
            pa.array(rng.integers(0, 2, m)))
        return join(local, "@", dom, "")
    words = rng.choice(WORDS, 2)
    if style == 2:  # first names + digits at a ring-owned catch-all domain
        f, _ = people.draw_names(rng, m)
        tld = rng.choice(["xyz", "top", "site", "online", "shop"])
        domain = f"{words[0]}{words[1]}{rng.integers(1, 100)}.{tld}"
        digits = pc.cast(pa.array(rng.integers(100, 10_000, m)), pa.string())
        return join(people.text_of(FIRST_ASCII).take(pa.array(f)), digits, "@" + domain, "")
    width = 2 if m < 100 else 3  # style 3: one stem, sequential numbers, a big provider
    seq = pc.utf8_lpad(pc.cast(pa.array(np.arange(1, m + 1)), pa.string()), width, "0")
    provider = rng.choice(["outlook.com", "yahoo.com", "hotmail.com", "gmail.com"])
    return join(f"{words[0]}.{words[1]}{rng.integers(10, 100)}_", seq, f"@{provider}", "")


def _subscribers(b: Builder, idx: np.ndarray) -> np.ndarray:
    return people.person_subscriber(idx, sub_rng(b.seed, "phones"))


def _soon(rng: np.random.Generator, t: np.ndarray, scale: float) -> np.ndarray:
    """Instants shortly after ``t`` (exponential delay), never past the end of observation."""
    return np.minimum(t + rng.exponential(scale, len(t)).astype(np.int64), OBS_END)


def _counts_rows(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rows = np.repeat(np.arange(len(counts)), counts)
    return rows, np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)


def _card_bins(rng: np.random.Generator, k: int, virtual_share: float) -> np.ndarray:
    popular = rng.choice(len(BINS), k, p=BIN_WEIGHTS)
    virtual = len(BINS) + rng.integers(0, len(VIRTUAL_BINS), k)
    return np.where(rng.random(k) < virtual_share, virtual, popular)


# --- the three styles -------------------------------------------------------------------------

def _plain(b: Builder, world: World, rng: np.random.Generator, idx: np.ndarray) -> None:
    m = len(idx)
    t0 = START + rng.uniform(2, SIGNUP_DAYS - 8) * DAY
    scale = np.exp(rng.uniform(np.log(300), np.log(4 * 3600)))  # burst: 5 min to 4 h
    offset = np.where(rng.random(m) < 0.85, rng.exponential(scale, m), rng.uniform(0, 10 * DAY, m))
    created = np.clip(t0 + offset, START, START + SIGNUP_DAYS * DAY - 1).astype(np.int64)
    home, country = _ring_country(rng, m)
    uas = rng.choice(len(USER_AGENTS), 2)
    ua = np.where(rng.random(m) < 0.8, uas[0], uas[1])
    if rng.random() < 0.5:
        phone = pa.nulls(m, pa.string())
    else:  # a block of consecutive VoIP numbers, written one way
        base = 6_000_000 + int(rng.integers(0, 3_900_000))
        phone = people.phones(rng, base + np.arange(m), np.full(m, home), 0.3,
                              pattern=int(rng.integers(0, 3)))
    _persona(b, rng, idx, created, country, _lookalike_email(rng, m), ua, phone, nasty=0.06)

    # Devices: every member on one of a few ring devices; some also on one of their own.
    ring_dev = b.ids("device", max(1, m // int(rng.integers(8, 25))))
    b.add("devices", account=idx, device=ring_dev[rng.permutation(m) % len(ring_dev)],
          ts=created)
    own = np.flatnonzero(rng.random(m) < 0.35)
    b.add("devices", account=idx[own], device=b.ids("device", len(own)),
          ts=_soon(rng, created[own], 2 * DAY))
    # Cards: most members on a few ring cards, some on a card of their own.
    k = max(1, m // int(rng.integers(8, 25)))
    ring_card, card_bin = b.ids("card", k), _card_bins(rng, k, 0.5)
    card_postal = rng.integers(0, 20_000, k)
    which = rng.permutation(m) % k
    on_ring = rng.random(m) < 0.85
    second = np.flatnonzero(rng.random(m) < 0.25)
    rows = np.concatenate([np.arange(m), second])
    pick = np.concatenate([which, rng.integers(0, k, len(second))])
    ring_row = np.concatenate([on_ring, np.ones(len(second), dtype=bool)])
    fresh = b.ids("card", len(rows))
    b.add("payment_instruments", account=idx[rows],
          card=np.where(ring_row, ring_card[pick], fresh),
          bin=np.where(ring_row, card_bin[pick], _card_bins(rng, len(rows), 0.0)),
          postal=np.where(ring_row, card_postal[pick], rng.integers(0, 20_000, len(rows))),
          pcountry=home, ts=_soon(rng, created[rows], 6 * 3600))
    # IPs: 1-3 hosting ranges (sometimes an IPv6 /64); the operator's own IP now and then.
    nets = world.take_hosting(int(rng.integers(1, 4))).astype(np.uint64)
    net_asn = ASN_HOSTING[rng.integers(0, len(ASN_HOSTING), len(nets))]
    v6_net = rng.random() < 0.2
    prefix = V6_HOSTING[rng.integers(0, len(V6_HOSTING))] << _U64(32) | _U64(
        rng.integers(0, 1 << 32))
    rows, nth = _counts_rows(1 + rng.poisson(2.5, m))
    r = len(rows)
    net = rng.integers(0, len(nets), r)
    is6 = v6_net & (net == 0)
    lo = np.where(is6, rng.integers(2, 256, r).astype(np.uint64),
                  nets[net] | rng.integers(2, 255, r).astype(np.uint64))
    asn = net_asn[net]
    slip = (nth > 0) & (rng.random(r) < 0.05)
    op_ip, op_asn = sample_residential(world, rng, 1)
    lo[slip], asn[slip], is6[slip] = op_ip[0], op_asn[0], False
    b.add("ip_events", account=idx[rows], v6=is6, hi=np.where(is6, prefix, _U64(0)), lo=lo,
          exploded=is6 & (rng.random(r) < 0.2), asn=asn,
          ts=np.where(nth == 0, created[rows], _soon(rng, created[rows], 3 * DAY)),
          signup=nth == 0)
    # Observations: a ring referral code, a shared API key, one or two drop addresses.
    ref = np.flatnonzero(rng.random(m) < 0.7)
    b.add("observations", account=idx[ref], kind=0, value=b.ids("ref", 1)[0],
          ts=created[ref] + rng.integers(0, 120, len(ref)))
    api = np.flatnonzero(rng.random(m) < 0.25)
    b.add("observations", account=idx[api], kind=2, value=b.ids("api", 1)[0],
          ts=_soon(rng, created[api], DAY))
    drop = np.flatnonzero(rng.random(m) < 0.3)
    drops = b.ids("addr", int(rng.integers(1, 3)))
    b.add("observations", account=idx[drop], kind=1,
          value=drops[rng.integers(0, len(drops), len(drop))], ts=_soon(rng, created[drop], DAY))


def _chronological(idx: np.ndarray, created: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(created, kind="stable")
    return idx[order], created[order]


def _camouflage(b: Builder, world: World, rng: np.random.Generator, idx: np.ndarray) -> None:
    m = len(idx)
    country = people.draw_countries(rng, m)
    day0 = rng.uniform(0, SIGNUP_DAYS - 22)
    created = people.signup_times(rng, country, day0, day0 + rng.uniform(7, 21), growth=0.0)
    idx, created = _chronological(idx, created)
    phone = people.phones(rng, _subscribers(b, idx), country, 0.5)
    ua = rng.choice(len(USER_AGENTS), m, p=UA_WEIGHTS)
    _persona(b, rng, idx, created, country, None, ua, phone, nasty=0.02)

    # The chain: segments of 2-4 consecutive members, each overlapping the next by one.
    width = rng.integers(2, 5, m)
    start = np.concatenate([[0], np.cumsum(width - 1)])[:m]
    keep = start < max(m - 1, 1)
    start, width = start[keep], width[keep]
    length = np.minimum(start + width, m) - start
    seg, nth = _counts_rows(length)
    member = start[seg] + nth
    is_card = rng.random(len(start)) < 0.5
    seg_card, seg_dev = b.ids("card", len(start)), b.ids("device", len(start))
    card_rows = is_card[seg]
    seg_bin = _card_bins(rng, len(start), 0.0)
    seg_postal = rng.integers(0, 20_000, len(start))
    b.add("payment_instruments", account=idx[member[card_rows]], card=seg_card[seg[card_rows]],
          bin=seg_bin[seg[card_rows]], postal=seg_postal[seg[card_rows]],
          pcountry=country[member[card_rows]], ts=_soon(rng, created[member[card_rows]], DAY))
    b.add("devices", account=idx[member[~card_rows]], device=seg_dev[seg[~card_rows]],
          ts=_soon(rng, created[member[~card_rows]], DAY))
    # Ordinary attributes of their own: a device, and a card for those without a chain card.
    own = np.flatnonzero(rng.random(m) < 0.8)
    b.add("devices", account=idx[own], device=b.ids("device", len(own)), ts=created[own])
    has_card = np.zeros(m, dtype=bool)
    has_card[member[card_rows]] = True
    own = np.flatnonzero(~has_card & (rng.random(m) < 0.5))
    b.add("payment_instruments", account=idx[own], card=b.ids("card", len(own)),
          bin=_card_bins(rng, len(own), 0.0), postal=rng.integers(0, 20_000, len(own)),
          pcountry=country[own], ts=_soon(rng, created[own], DAY))
    # Residential proxies: exits drawn like real users' addresses.
    rows, nth = _counts_rows(1 + rng.poisson(3.0, m))
    addr, asn = sample_residential(world, rng, len(rows))
    b.add("ip_events", account=idx[rows], lo=addr, asn=asn, signup=nth == 0,
          ts=np.where(nth == 0, created[rows], _soon(rng, created[rows], 5 * DAY)))
    _borrow(b, world, rng, idx, created)


def _borrow(b: Builder, world: World, rng: np.random.Generator, idx: np.ndarray,
            created: np.ndarray) -> None:
    """Give each fake 1-3 attributes of random real users: IP, device, address, referral."""
    if not len(world.legit):
        return
    rows, _ = _counts_rows(rng.integers(1, 4, len(idx)))
    real = world.legit[rng.integers(0, len(world.legit), len(rows))]
    what = rng.choice(4, len(rows), p=[0.4, 0.2, 0.2, 0.2])
    ts = _soon(rng, created[rows], 7 * DAY)
    s = what == 0
    b.add("ip_events", account=idx[rows[s]], lo=world.home_v4[real[s]],
          asn=world.home_asn[real[s]], ts=ts[s], signup=False)
    s = (what == 1) & (world.first_device[real] >= 0)
    b.add("devices", account=idx[rows[s]], device=world.first_device[real[s]], ts=ts[s])
    s = what == 2
    b.add("observations", account=idx[rows[s]], kind=1, value=world.home_addr[real[s]], ts=ts[s])
    s = what == 3
    b.add("observations", account=idx[rows[s]], kind=0, value=world.ref_code[real[s]],
          ts=created[rows[s]] + 60)


def _slowdrip(b: Builder, world: World, rng: np.random.Generator, idx: np.ndarray) -> None:
    m = len(idx)
    # Office hours of the operator's time zone, weekdays only, over six weeks.
    week0 = int(rng.integers(0, (SIGNUP_DAYS - 42) // 7))
    workday = rng.integers(0, 30, m)
    tz = rng.choice([2.0, 3.0, 5.5, 7.0, 8.0]) * 3600
    created = (START + (7 * week0 + workday + 2 * (workday // 5)) * DAY
               + rng.integers(9, 18, m) * 3600 + rng.integers(0, 3600, m) - int(tz))
    created = np.maximum(created, START).astype(np.int64)
    idx, created = _chronological(idx, created)
    country = people.draw_countries(rng, m)
    phone = people.phones(rng, _subscribers(b, idx), country, 0.7)
    ua = rng.choice(len(USER_AGENTS), m, p=UA_WEIGHTS)
    _persona(b, rng, idx, created, country, None, ua, phone, nasty=0.02)

    # A new residential IP per account, each from a different /24.
    pool = len(world.resid24)
    nets = world.resid24[rng.choice(pool, m, replace=m > pool)]
    ip = nets | rng.integers(1, 255, m).astype(np.uint32)
    rows, nth = _counts_rows(1 + rng.poisson(2.0, m))
    b.add("ip_events", account=idx[rows], lo=ip[rows], asn=asn_of(ip, ASN_RESIDENTIAL)[rows],
          signup=nth == 0, ts=np.where(nth == 0, created[rows], _soon(rng, created[rows],
                                                                      4 * DAY)))
    # Device fingerprints rotated through a small pool, in signup order.
    pool_dev = b.ids("device", int(rng.integers(3, 7)))
    turn = np.arange(m) % len(pool_dev)
    b.add("devices", account=idx, device=pool_dev[turn], ts=created)
    extra = np.flatnonzero(rng.random(m) < 0.3)
    b.add("devices", account=idx[extra], device=pool_dev[(turn[extra] + 1) % len(pool_dev)],
          ts=_soon(rng, created[extra], 2 * DAY))
    # Virtual cards: all distinct, one BIN and one billing postal code for the ring.
    ring_country = int(people.draw_countries(rng, 1)[0])
    b.add("payment_instruments", account=idx, card=b.ids("card", m),
          bin=len(BINS) + int(rng.integers(0, len(VIRTUAL_BINS))),
          postal=int(rng.integers(0, 20_000)), pcountry=ring_country,
          ts=_soon(rng, created, 3600))
    api = np.flatnonzero(rng.random(m) < 0.2)
    b.add("observations", account=idx[api], kind=2, value=b.ids("api", len(api)),
          ts=_soon(rng, created[api], DAY))
