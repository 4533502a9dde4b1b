"""Who lives in a parametric world: planted into the legitimate plan before rows exist.

:class:`Population` is a :data:`~linkage.synth.background.Planter`: it rewrites slices of
the plan :func:`~linkage.synth.background.add_legit` makes (the positions the hubs left
free), so every account it touches gets its rows from the same code as everyone else.

Operators with ordinary-looking metadata
    ``clean`` accounts are left exactly as planned (bought clean metadata). ``cells`` splits a
    group into household-shaped cells of 2-4 accounts, each made by the very function that
    makes real households (:func:`~linkage.synth.background.households`: one card, one home
    IP, one address, a surname); nothing in the metadata ties one cell to another.
    ``aged`` accounts were bought: created over about three months, at ordinary hours, long
    before they are used; the buyer then adds prepaid cards in a chain, each card held by 2-3
    consecutive accounts (in signup order), when the accounts go to work.
Legitimate sharing
    Organisations of 20-200 accounts (one ``org_id``, one corporate card, an office /24, a
    mail domain, one to three onboarding days) with contractors who carry the organisation's
    card, domain and office range but no ``org_id``; teams of 5-30 colleagues of companies
    that have no ``org_id`` (an office /24, the same hours; see
    :mod:`linkage.synth.activity`); households of 2-4; extended families (two households
    that also share one family card).

Organisation and team members form *circles*: :attr:`Population.circle` numbers them per
internal account index, for the usage generator (internal templates, office hours).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from linkage.synth import people
from linkage.synth.background import OFFICE_OCTET, LegitPlan, at_office, households
from linkage.synth.encode import sub_rng
from linkage.synth.people import DAY, OBS_END, SIGNUP_DAYS, START
from linkage.synth.rings import ring_sizes
from linkage.synth.tables import Builder
from linkage.synth.usage import USAGE_START
from linkage.synth.vocab import BIN_WEIGHTS, BINS, COUNTRIES, VIRTUAL_BINS, WORDS

__all__ = [
    "AGED_LAST_DAY", "OPERATOR_METAS", "ROLES", "OperatorPlan", "Population", "cell_sizes",
]

OPERATOR_METAS = ("clean", "cells", "aged")
AGED_LAST_DAY = (USAGE_START - START) // DAY - 60  # bought accounts are two months old at least
# What a legitimate account is, for diagnosing false positives (``roles.csv``).
ROLES = ("", "hub", "org", "contractor", "team", "family", "extended", "heavy", "stock")
_OFFSETS = np.array([c.utc_offset for c in COUNTRIES]) * 3600


@dataclass(frozen=True)
class OperatorPlan:
    """One operator group planted among the legitimate accounts."""

    gid: int  # group number (1-based, as in the builder)
    size: int
    meta: str  # one of OPERATOR_METAS


def cell_sizes(rng: np.random.Generator, total: int) -> np.ndarray:
    """Sizes of 2-4 (a 5 only when ``total`` leaves no other way) summing to ``total`` >= 2."""
    sizes = rng.integers(2, 5, total // 2 + 1)
    sizes = sizes[np.cumsum(sizes) <= total]
    left = total - int(sizes.sum())
    if left >= 2:
        sizes = np.append(sizes, left)
    elif left == 1 and len(sizes) and sizes[-1] > 2:
        sizes = np.append(sizes[:-1], [sizes[-1] - 1, 2])
    elif left == 1:
        sizes = np.append(sizes[:-1], sizes[-1] + 1) if len(sizes) else np.array([1])
    return sizes.astype(np.int64)


def _runs(rng: np.random.Generator, total: int, lo: int, hi: int) -> np.ndarray:
    """Sizes uniform on ``[lo, hi]`` whose sum is at most ``total``."""
    sizes = rng.integers(lo, hi + 1, total // lo + 1)
    return sizes[np.cumsum(sizes) <= total].astype(np.int64)


@dataclass
class Population:
    """The planter of a parametric world (shares are of the legitimate accounts planned).

    Attributes
    ----------
    operators : list of OperatorPlan
        Operator groups to plant, in order, on the first free positions.
    families, extended_families, orgs, teams : float
        Shares of the planned accounts in households, in pairs of households joined by a
        card, in organisations (contractors included) and in teams.
    contractor_share : float
        Share of an organisation's accounts that are contractors.
    circle : numpy.ndarray
        After planting: the circle (organisation or team) of each internal account index,
        ``-1`` for none.
    role : numpy.ndarray
        After planting: the index into :data:`ROLES` of each internal account index.
    """

    n: int
    operators: list[OperatorPlan]
    families: float = 0.0
    extended_families: float = 0.0
    orgs: float = 0.0
    contractor_share: float = 0.2
    teams: float = 0.0
    circle: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    role: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int8))

    def __call__(self, b: Builder, s: LegitPlan, first_free: int) -> None:
        rng = sub_rng(b.seed, "population")
        self.circle = np.full(b.n, -1, dtype=np.int64)
        self.role = np.zeros(b.n, dtype=np.int8)
        self.role[s.idx[:first_free]] = ROLES.index("hub")
        m = len(s.idx)
        pos = first_free

        def take(k: int) -> np.ndarray:
            nonlocal pos
            k = max(0, min(k, m - pos))
            pos += k
            return np.arange(pos - k, pos)

        for op in self.operators:  # one iteration per operator group
            mem = take(op.size)
            b.group[s.idx[mem]] = op.gid
            if op.meta == "cells" and len(mem) >= 2:
                households(b, rng, s, mem, cell_sizes(rng, len(mem)))
            elif op.meta == "aged":
                _aged(b, rng, s, mem)
        n_planned = m - first_free
        self._orgs(b, rng, s, take(round(self.orgs * n_planned)))
        self._teams(rng, s, take(round(self.teams * n_planned)))
        fam = take(round(self.families * n_planned))
        sizes = _runs(rng, len(fam), 2, 4)
        households(b, rng, s, fam[:int(sizes.sum())], sizes)
        self.role[s.idx[fam[:int(sizes.sum())]]] = ROLES.index("family")
        ext = _extended(b, rng, s, take(round(self.extended_families * n_planned)))
        self.role[s.idx[ext]] = ROLES.index("extended")

    def _orgs(self, b: Builder, rng: np.random.Generator, s: LegitPlan,
              mem: np.ndarray) -> None:
        sizes = np.array(ring_sizes(rng, len(mem), 20, 200), dtype=np.int64)
        if not len(sizes):
            return
        mem = mem[:int(sizes.sum())]
        k = len(sizes)
        org = np.repeat(np.arange(k), sizes)
        head = mem[np.cumsum(sizes) - sizes][org]
        contractor = rng.random(len(mem)) < self.contractor_share
        s.org[mem] = np.where(contractor, -1, b.ids("org", k)[org])
        s.card[mem], s.card_bin[mem] = b.ids("card", k)[org], rng.integers(0, 8, k)[org]
        s.postal[mem], s.country[mem] = s.postal[head], s.country[head]
        office = OFFICE_OCTET << 24 | rng.choice(1 << 16, k, replace=k > 1 << 16) << 8
        at_office(s, mem, office[org] | rng.integers(10, 60, len(mem)))
        words = np.array(WORDS)
        domain = np.char.add(np.char.add(words[rng.integers(0, len(words), k)],
                                         words[rng.integers(0, len(words), k)]),
                             np.char.add(np.arange(k).astype(str), ".com"))
        s.domain = s.domain.astype(f"<U{max(16, domain.dtype.itemsize // 4)}")
        mailed = contractor | (rng.random(len(mem)) < 0.85)
        s.domain[mem[mailed]] = domain[org[mailed]]
        # Onboarding: half of each organisation signs up on one of its 1-3 onboarding days,
        # in office hours of the organisation's country.
        days = rng.uniform(0, SIGNUP_DAYS - 1, (k, 3)).astype(np.int64)
        on = np.flatnonzero(rng.random(len(mem)) < 0.5)
        day = days[org[on], rng.integers(0, 1 + rng.integers(0, 3, k)[org[on]])]
        s.created[mem[on]] = (START + day * DAY + rng.integers(9 * 3600, 17 * 3600, len(on))
                              - _OFFSETS[s.country[mem[on]]].astype(np.int64))
        self.circle[s.idx[mem]] = org
        self.role[s.idx[mem]] = np.where(contractor, ROLES.index("contractor"),
                                         ROLES.index("org"))

    def _teams(self, rng: np.random.Generator, s: LegitPlan, mem: np.ndarray) -> None:
        sizes = _runs(rng, len(mem), 5, 30)
        mem = mem[:int(sizes.sum())]
        team = np.repeat(np.arange(len(sizes)), sizes)
        office = OFFICE_OCTET << 24 | rng.integers(0, 1 << 16, len(sizes)) << 8
        at_office(s, mem, office[team] | rng.integers(60, 250, len(mem)))
        self.circle[s.idx[mem]] = int(self.circle.max(initial=-1)) + 1 + team
        self.role[s.idx[mem]] = ROLES.index("team")


def _aged(b: Builder, rng: np.random.Generator, s: LegitPlan, mem: np.ndarray) -> None:
    """Bought accounts: old ordinary signups, then a chain of prepaid cards at first use."""
    s.created[mem] = people.signup_times(rng, s.country[mem], 0, AGED_LAST_DAY, growth=0.0)
    order = mem[np.argsort(s.created[mem], kind="stable")]
    width = rng.integers(2, 4, len(order))
    start = np.concatenate([[0], np.cumsum(width - 1)])[:len(order)]
    keep = start < max(len(order) - 1, 1)
    start, width = start[keep], width[keep]
    length = np.minimum(start + width, len(order)) - start
    seg = np.repeat(np.arange(len(start)), length)
    member = order[start[seg] + np.arange(len(seg)) - np.repeat(np.cumsum(length) - length,
                                                                length)]
    cards = b.ids("card", len(start))
    bins = np.where(rng.random(len(start)) < 0.7,
                    len(BINS) + rng.integers(0, len(VIRTUAL_BINS), len(start)),
                    rng.choice(len(BINS), len(start), p=BIN_WEIGHTS))
    b.add("payment_instruments", account=s.idx[member], card=cards[seg], bin=bins[seg],
          postal=rng.integers(0, 20_000, len(start))[seg], pcountry=s.country[member],
          ts=np.minimum(USAGE_START + rng.integers(0, 10 * DAY, len(member)), OBS_END))


def _extended(b: Builder, rng: np.random.Generator, s: LegitPlan,
              mem: np.ndarray) -> np.ndarray:
    """Pairs of households whose members all also carry one family card; return them."""
    sizes = _runs(rng, len(mem), 2, 4)
    sizes = sizes[:len(sizes) // 2 * 2]
    if not len(sizes):
        return mem[:0]
    mem = mem[:int(sizes.sum())]
    households(b, rng, s, mem, sizes)
    pair = np.repeat(np.arange(len(sizes)) // 2, sizes)
    head = mem[np.searchsorted(pair, np.arange(len(sizes) // 2))][pair]
    cards = b.ids("card", len(sizes) // 2)
    b.add("payment_instruments", account=s.idx[mem], card=cards[pair],
          bin=rng.choice(len(BINS), len(sizes) // 2, p=BIN_WEIGHTS)[pair],
          postal=s.postal[head], pcountry=s.country[head],
          ts=np.minimum(s.created[mem] + rng.integers(DAY, 30 * DAY, len(mem)), OBS_END))
    return mem
