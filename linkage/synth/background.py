"""The legitimate population: ordinary users and, optionally, large legitimate sharing hubs.

Ordinary users have their own cards, devices, addresses and a home IP in a residential
/24 whose popularity is heavy-tailed (a few /24s host tens of users). Hubs are the
legitimate groups a naive "shared value" rule would flag:

* a university behind one NAT IP (up to 5,000 accounts, one /24), with an orientation-week
  signup burst;
* a mobile carrier whose users share a handful of IPv6 /64 prefixes (thousands per /64);
* a 300-person organisation: one ``org_id``, one corporate card, one office range, an
  onboarding burst;
* families of 2-4 sharing a surname, a card, a home IP, a shipping address, some a tablet;
* a few influencer referral codes used by thousands.

Everything is decided per account in arrays first (home IP, extra shared card, event mix);
the attribute rows are then generated for all legitimate accounts in one vectorised pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from linkage.synth import people
from linkage.synth.encode import sub_rng
from linkage.synth.people import DAY, OBS_END
from linkage.synth.tables import Builder
from linkage.synth.vocab import (
    ASN_MOBILE,
    ASN_RESIDENTIAL,
    BIN_WEIGHTS,
    BINS,
    HOSTING_OCTETS,
    RESIDENTIAL_OCTETS,
    UA_WEIGHTS,
    USER_AGENTS,
    V6_MOBILE,
    V6_RESIDENTIAL,
)

__all__ = [
    "OFFICE_OCTET", "LegitPlan", "Planter", "World", "add_legit", "at_office", "households",
    "make_world", "random_iid", "sample_residential",
]

_U64 = np.uint64
_CAMPUS_OCTET, _CAMPUS_ASN = 128, 2152  # 128/8: old class-B space, typical of universities
OFFICE_OCTET, _OFFICE_ASN = 38, 174  # a business ISP's range for the organisation's office
# Event mix columns: home IPv4, home IPv6, carrier IPv6, office IPv4; the rest is roaming.
_HOME4, _HOME6, _MOBILE6, _OFFICE4, _ROAM = range(5)


@dataclass
class World:
    """Shared address pools, and per-account facts rings may borrow from real users."""

    seed: int
    resid24: np.ndarray  # residential /24 network addresses (uint32)
    resid_cdf: np.ndarray  # cumulative popularity, for sampling by searchsorted
    host24: np.ndarray  # hosting /24s, handed out to rings without repetition
    host_next: int
    legit: np.ndarray  # internal indices of legitimate accounts
    home_v4: np.ndarray  # per account (length n); 0 where unknown
    home_asn: np.ndarray
    first_device: np.ndarray  # -1 where none
    home_addr: np.ndarray
    ref_code: np.ndarray

    def take_hosting(self, k: int) -> np.ndarray:
        """``k`` hosting /24s no ring has used yet."""
        out = self.host24[self.host_next:self.host_next + k]
        self.host_next += k
        if len(out) < k:  # only with absurd ring counts; reuse rather than fail
            out = np.resize(self.host24, k)
        return out


def asn_of(addr: np.ndarray, table: np.ndarray) -> np.ndarray:
    """An ASN per address, constant over each /16 (one operator holds the whole block)."""
    block = (addr.astype(np.uint64) >> _U64(16)) * _U64(2654435761)
    return table[(block % _U64(len(table))).astype(np.intp)]


def _distinct24(rng: np.random.Generator, octets: np.ndarray, k: int) -> np.ndarray:
    got = np.zeros(0, dtype=np.uint32)
    while len(got) < k:  # one or two rounds: the space is far larger than k
        draw = (octets[rng.integers(0, len(octets), 2 * k + 64)] << np.uint32(24)
                | rng.integers(0, 1 << 16, 2 * k + 64).astype(np.uint32) << np.uint32(8))
        got = np.unique(np.concatenate([got, draw]))
    return rng.permutation(got)[:k]


def make_world(seed: int, n: int, n_legit: int, n_rings: int) -> World:
    """Address pools sized for ``n_legit`` users and ``n_rings`` rings."""
    rng = sub_rng(seed, "world")
    resid = _distinct24(rng, RESIDENTIAL_OCTETS, max(256, n_legit // 2))
    # Log-normal popularity: most /24s hold a user or two, a few hold tens.
    w = rng.lognormal(0.0, 0.9, len(resid))
    host = _distinct24(rng, HOSTING_OCTETS, 64 + 4 * n_rings)
    return World(
        seed=seed, resid24=resid, resid_cdf=np.cumsum(w), host24=host, host_next=0,
        legit=np.zeros(0, dtype=np.int64), home_v4=np.zeros(n, dtype=np.uint32),
        home_asn=np.zeros(n, dtype=np.int64), first_device=np.full(n, -1, dtype=np.int64),
        home_addr=np.full(n, -1, dtype=np.int64), ref_code=np.full(n, -1, dtype=np.int64))


def sample_residential(
    world: World, rng: np.random.Generator, m: int,
) -> tuple[np.ndarray, np.ndarray]:
    """``m`` residential IPv4 addresses by /24 popularity, and their ASNs."""
    pick = np.searchsorted(world.resid_cdf, rng.random(m) * world.resid_cdf[-1], side="right")
    net = world.resid24[np.minimum(pick, len(world.resid24) - 1)]
    addr = net | rng.integers(1, 255, m).astype(np.uint32)
    return addr, asn_of(addr, ASN_RESIDENTIAL)


def random_iid(rng: np.random.Generator, m: int) -> np.ndarray:
    """Random IPv6 interface ids (privacy addresses) with no zero hextet."""
    g = rng.integers(1, 1 << 16, (m, 4)).astype(np.uint64)
    return g[:, 0] << _U64(48) | g[:, 1] << _U64(32) | g[:, 2] << _U64(16) | g[:, 3]


def _counts_rows(counts: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Repeat ``idx`` by ``counts``; also return each row's ordinal within its account."""
    rows = np.repeat(idx, counts)
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    return rows, np.arange(len(rows)) - starts


def _later(rng: np.random.Generator, t: np.ndarray) -> np.ndarray:
    """Instants uniformly between ``t`` and the end of observation."""
    return t + (rng.random(len(t)) * np.maximum(OBS_END - t, 0)).astype(np.int64)


@dataclass
class LegitPlan:
    """Per-account decisions for the legitimate accounts, by position in ``idx``.

    A :data:`Planter` may change them before any row is generated (see :func:`add_legit`).
    """

    idx: np.ndarray
    country: np.ndarray
    first: np.ndarray
    last: np.ndarray
    created: np.ndarray
    home: np.ndarray  # home IPv4 (uint32) and its ASN
    home_asn: np.ndarray
    postal: np.ndarray  # billing postal code (an integer code, rendered per country)
    addr: np.ndarray  # shipping address entity
    mix: np.ndarray  # cumulative event-kind thresholds (m, 4): see _HOME4 .. _OFFICE4
    v6_hi: np.ndarray  # home IPv6 /64
    v6_mode: np.ndarray  # 0 privacy (new IID per event), 1 stable IID, 2 low host (::x)
    v6_iid: np.ndarray
    mobile_hi: np.ndarray  # carrier /64 (hub), 0 if none
    office: np.ndarray  # office IPv4 (hub), 0 if none
    org: np.ndarray
    card: np.ndarray  # a shared card (family, corporate), -1 if none
    card_bin: np.ndarray
    tablet: np.ndarray  # a shared family device, -1 if none
    domain: np.ndarray  # e-mail domain override ("" = none)
    influencer: np.ndarray  # influencer referral codes (hub)


def _decide(b: Builder, world: World, rng: np.random.Generator, idx: np.ndarray) -> LegitPlan:
    m = len(idx)
    country = people.draw_countries(rng, m)
    first, last = people.draw_names(rng, m)
    home, home_asn = sample_residential(world, rng, m)
    has_v6 = rng.random(m) < 0.4
    # Without IPv6: 75% home, 25% roaming; with it, about a third of events are IPv6.
    mix = np.tile([0.75, 0.75, 0.75, 0.75], (m, 1))
    mix[has_v6] = [0.40, 0.75, 0.75, 0.75]
    v6_mode = rng.choice(3, m, p=[0.6, 0.25, 0.15])
    return LegitPlan(
        idx=idx, country=country, first=first, last=last,
        created=people.signup_times(rng, country), home=home, home_asn=home_asn,
        postal=rng.integers(0, 20_000, m), addr=b.ids("addr", m), mix=mix,
        v6_hi=(V6_RESIDENTIAL[rng.integers(0, len(V6_RESIDENTIAL), m)] << _U64(32)
               | rng.integers(0, 1 << 32, m).astype(np.uint64)),
        v6_mode=v6_mode,
        v6_iid=np.where(v6_mode == 1, random_iid(rng, m),
                        rng.integers(1, 0xFFF, m).astype(np.uint64)),
        mobile_hi=np.zeros(m, dtype=np.uint64), office=np.zeros(m, dtype=np.uint32),
        org=np.full(m, -1, dtype=np.int64), card=np.full(m, -1, dtype=np.int64),
        card_bin=np.zeros(m, dtype=np.int16), tablet=np.full(m, -1, dtype=np.int64),
        domain=np.full(m, "", dtype="<U16"), influencer=np.zeros(0, dtype=np.int64))


def at_office(s: LegitPlan, members: np.ndarray, office: np.ndarray | int) -> None:
    """Send about 40% of the ``members``' events from their ``office`` IPv4 addresses."""
    s.office[members] = office
    s.mix[members] *= 0.6
    s.mix[members, _OFFICE4] = s.mix[members, _MOBILE6] + 0.4


def households(b: Builder, rng: np.random.Generator, s: LegitPlan, members: np.ndarray,
               sizes: np.ndarray) -> np.ndarray:
    """Make consecutive runs of ``members`` (``sizes`` long) households; return their cards.

    A household shares its first member's surname, home IPs, billing postal code, shipping
    address and country, one card, and in a quarter of households a tablet.
    """
    head = members[np.repeat(np.cumsum(sizes) - sizes, sizes)]
    for arr in (s.last, s.home, s.home_asn, s.postal, s.addr, s.country, s.v6_hi, s.mix):
        arr[members] = arr[head]
    cards = b.ids("card", len(sizes))
    s.card[members] = np.repeat(cards, sizes)
    s.card_bin[members] = np.repeat(rng.choice(len(BINS), len(sizes), p=BIN_WEIGHTS), sizes)
    s.tablet[members] = np.repeat(np.where(rng.random(len(sizes)) < 0.25,
                                           b.ids("device", len(sizes)), -1), sizes)
    return cards


def _plant_hubs(b: Builder, rng: np.random.Generator, s: LegitPlan) -> int:
    """Turn slices of the legitimate population into the large legitimate hubs; return the
    number of leading positions they took."""
    m, pos = len(s.idx), 0
    # University behind one NAT IP: an orientation-week burst and .edu addresses.
    uni = np.arange(pos, pos + min(5000, m // 4))
    pos += len(uni)
    campus = _CAMPUS_OCTET << 24 | int(rng.integers(0, 1 << 16)) << 8
    nat = campus | int(rng.integers(1, 255))
    s.country[uni] = np.where(rng.random(len(uni)) < 0.85, 0, s.country[uni])
    burst = uni[rng.random(len(uni)) < 0.45]
    s.created[burst] = people.signup_times(rng, s.country[burst], 170, 177)
    s.home[uni] = np.where(rng.random(len(uni)) < 0.8, nat,
                           campus | rng.integers(1, 255, len(uni)))
    s.home_asn[uni] = _CAMPUS_ASN
    s.mix[uni] = 0.8
    s.domain[uni[rng.random(len(uni)) < 0.6]] = "stateu.edu"
    # Mobile carrier: thousands of users per IPv6 /64, most of their events from it.
    car = np.arange(pos, pos + m // 10)
    pos += len(car)
    k64 = max(2, len(car) // 2500)
    prefixes = V6_MOBILE[0] << _U64(32) | rng.integers(0, 1 << 32, k64).astype(np.uint64)
    s.mobile_hi[car] = prefixes[rng.integers(0, k64, len(car))]
    s.mix[car] = np.minimum(s.mix[car], 0.3)
    s.mix[car, _MOBILE6:] = 0.85
    # One organisation: org id, corporate card, office range, onboarding burst.
    team = np.arange(pos, pos + min(300, m // 20))
    pos += len(team)
    s.org[team] = b.ids("org", 1)[0]
    s.card[team], s.card_bin[team] = b.ids("card", 1)[0], 5
    s.postal[team], s.country[team] = s.postal[team[0]], s.country[team[0]]
    at_office(s, team, OFFICE_OCTET << 24 | int(rng.integers(0, 1 << 16)) << 8
              | rng.integers(10, 14, len(team)))
    onboard = team[rng.random(len(team)) < 0.5]
    s.created[onboard] = people.signup_times(rng, s.country[onboard], 60, 62)
    s.domain[team[rng.random(len(team)) < 0.85]] = "acmecorp.com"
    # Families of 2-4: surname, card, home IP, shipping address; a quarter share a tablet.
    sizes = rng.integers(2, 5, max(1, (m - pos) // 40))
    sizes = sizes[np.cumsum(sizes) <= m - pos]
    households(b, rng, s, np.arange(pos, pos + sizes.sum()), sizes)
    s.influencer = b.ids("ref", 4)
    return pos + int(sizes.sum())


# A planter changes a plan before its rows are generated: ``planter(b, plan, first_free)``,
# where positions below ``first_free`` belong to the hubs.
Planter = Callable[[Builder, LegitPlan, int], None]


def add_legit(b: Builder, world: World, idx: np.ndarray, hubs: bool,
              planter: Planter | None = None) -> None:
    """Generate the legitimate accounts ``idx`` and all their rows; record what rings borrow.

    ``planter``, if given, may rewrite the plan (shared cards, offices, signup times …) of
    the positions the hubs left free before the rows are generated; it draws from its own
    generator, so the accounts it leaves alone come out as without it.
    """
    rng = sub_rng(b.seed, "legit")
    world.legit = idx
    s = _decide(b, world, rng, idx)
    first_free = 0
    if hubs and len(idx) >= 40:
        first_free = _plant_hubs(b, rng, s)
    if planter is not None:
        planter(b, s, first_free)
    email = people.emails(rng, s.first, s.last)
    hub = s.domain != ""
    if hub.any():  # hub members with a .edu or corporate address keep their local part
        local = pc.struct_field(pc.extract_regex(email, r"^(?P<local>[^@]*)@"), "local")
        email = pc.if_else(pa.array(hub), pc.binary_join_element_wise(
            local, "@", pa.array(s.domain), ""), email)
    b.created_at[idx], b.country[idx], b.org[idx] = s.created, s.country, s.org
    b.ua[idx] = rng.choice(len(USER_AGENTS), len(idx), p=UA_WEIGHTS)
    b.set_text("email", idx, email)
    b.set_text("display_name", idx, people.display_names(rng, s.first, s.last))
    subscriber = people.person_subscriber(idx, sub_rng(b.seed, "phones"))
    b.set_text("phone", idx, people.phones(rng, subscriber, s.country, 0.45))
    world.home_v4[idx], world.home_asn[idx], world.home_addr[idx] = s.home, s.home_asn, s.addr

    acct = _Accounts(idx, s.created, s.country, s.postal)
    _payments(b, rng, acct, {"card": s.card, "bin": s.card_bin})
    _ip_events(b, world, rng, acct, s.home, s.home_asn, s.mix,
               (s.v6_hi, s.v6_mode, s.v6_iid), s.mobile_hi, s.office)
    _devices(b, world, rng, acct, s.tablet)
    _observations(b, world, rng, acct, s.addr, s.influencer)


@dataclass
class _Accounts:
    idx: np.ndarray  # internal account indices
    created: np.ndarray
    country: np.ndarray
    postal: np.ndarray


def _payments(b: Builder, rng: np.random.Generator, a: _Accounts,
              shared: dict[str, np.ndarray]) -> None:
    """Own cards (0-3, distinct) plus the hub's shared card where there is one."""
    rows, k = _counts_rows(rng.choice(4, len(a.idx), p=[0.15, 0.6, 0.19, 0.06]),
                           np.arange(len(a.idx)))
    first = np.minimum(a.created[rows] + rng.exponential(2 * DAY, len(rows)).astype(np.int64),
                       OBS_END)
    b.add("payment_instruments", account=a.idx[rows], card=b.ids("card", len(rows)),
          bin=rng.choice(len(BINS), len(rows), p=BIN_WEIGHTS), postal=a.postal[rows],
          pcountry=a.country[rows], ts=np.where(k == 0, first, _later(rng, a.created[rows])))
    sh = np.flatnonzero(shared["card"] >= 0)
    b.add("payment_instruments", account=a.idx[sh], card=shared["card"][sh],
          bin=shared["bin"][sh], postal=a.postal[sh], pcountry=a.country[sh],
          ts=_later(rng, a.created[sh]))


def _asn_v6(hi: np.ndarray, table: np.ndarray) -> np.ndarray:
    return table[((hi >> _U64(32)) * _U64(2654435761) % _U64(len(table))).astype(np.intp)]


def _ip_events(
    b: Builder, world: World, rng: np.random.Generator, a: _Accounts, home: np.ndarray,
    home_asn: np.ndarray, mix: np.ndarray, v6: tuple[np.ndarray, np.ndarray, np.ndarray],
    mobile_hi: np.ndarray, office: np.ndarray,
) -> None:
    """About four events per account (heavy-tailed), the first at signup, by the event mix."""
    m = len(a.idx)
    count = 1 + rng.poisson(rng.gamma(1.5, 2.0, m))
    rows, k = _counts_rows(count, np.arange(m))
    r = len(rows)
    kind = (rng.random(r)[:, None] >= mix[rows]).sum(axis=1)
    is6 = (kind == _HOME6) | (kind == _MOBILE6)
    hi = np.zeros(r, dtype=np.uint64)
    lo = np.zeros(r, dtype=np.uint64)
    asn = np.zeros(r, dtype=np.int64)
    v6_hi, v6_mode, v6_iid = v6
    sel = kind == _HOME4
    lo[sel], asn[sel] = home[rows[sel]], home_asn[rows[sel]]
    sel = kind == _HOME6
    hi[sel] = v6_hi[rows[sel]]
    lo[sel] = np.where(v6_mode[rows[sel]] == 0, random_iid(rng, int(sel.sum())),
                       v6_iid[rows[sel]])
    asn[sel] = _asn_v6(hi[sel], ASN_RESIDENTIAL)
    sel = kind == _MOBILE6
    hi[sel], lo[sel], asn[sel] = mobile_hi[rows[sel]], random_iid(rng, int(sel.sum())), \
        ASN_MOBILE[0]
    sel = kind == _OFFICE4
    lo[sel], asn[sel] = office[rows[sel]], _OFFICE_ASN
    sel = kind == _ROAM
    lo[sel], asn[sel] = sample_residential(world, rng, int(sel.sum()))
    b.add("ip_events", account=a.idx[rows], v6=is6, hi=hi, lo=lo,
          exploded=is6 & (rng.random(r) < 0.25), asn=asn,
          ts=np.where(k == 0, a.created[rows], _later(rng, a.created[rows])), signup=k == 0)


def _devices(b: Builder, world: World, rng: np.random.Generator, a: _Accounts,
             tablet: np.ndarray) -> None:
    """One to three devices of their own (the first seen at signup), plus a family tablet."""
    rows, k = _counts_rows(rng.choice([1, 2, 3], len(a.idx), p=[0.6, 0.3, 0.1]),
                           np.arange(len(a.idx)))
    dev = b.ids("device", len(rows))
    world.first_device[a.idx[rows[k == 0]]] = dev[k == 0]
    b.add("devices", account=a.idx[rows], device=dev,
          ts=np.where(k == 0, a.created[rows], _later(rng, a.created[rows])))
    sh = np.flatnonzero(tablet >= 0)
    b.add("devices", account=a.idx[sh], device=tablet[sh], ts=_later(rng, a.created[sh]))


def _observations(b: Builder, world: World, rng: np.random.Generator, a: _Accounts,
                  addr: np.ndarray, influencer: np.ndarray) -> None:
    """Referral codes (friends', some influencers'), shipping addresses, API key prefixes."""
    m = len(a.idx)
    own = b.ids("ref", m)  # everyone has a code to give; only referees record one
    world.ref_code[a.idx] = own
    ref = np.flatnonzero(rng.random(m) < 0.25)
    # Heavy-tailed referrers: most refer nobody, a few refer tens of friends.
    w = rng.lognormal(0.0, 1.5, m)
    value = own[rng.choice(m, len(ref), p=w / w.sum())]
    if len(influencer):
        hub = rng.random(len(ref)) < 0.35
        value[hub] = influencer[rng.choice(len(influencer), int(hub.sum()),
                                           p=[0.5, 0.25, 0.15, 0.1])]
    b.add("observations", account=a.idx[ref], kind=0, value=value,
          ts=a.created[ref] + rng.integers(0, 600, len(ref)))
    ship = np.flatnonzero(rng.random(m) < 0.15)
    b.add("observations", account=a.idx[ship], kind=1, value=addr[ship],
          ts=_later(rng, a.created[ship]))
    api = np.flatnonzero(rng.random(m) < 0.10)
    b.add("observations", account=a.idx[api], kind=2, value=b.ids("api", len(api)),
          ts=_later(rng, a.created[api]))
