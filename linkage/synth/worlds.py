"""Parametric worlds: many kinds of operators among a varied legitimate population.

A world is described by :class:`WorldParams` (size, operator share, group sizes, the mix of
operator *shapes*, and which legitimate features exist); :func:`draw_world` draws one from
wide ranges, and :func:`generate_world` writes it as the contract's tables plus
``truth.csv`` (``account_id,group_id``), ``groups.csv`` (``group_id,shape,usage,size``),
``roles.csv`` (``account_id,role``: what a legitimate account is, one of
:data:`~linkage.synth.population.ROLES`, for diagnosing false positives) and ``world.json``
(the parameters), which ``linkage run`` ignores.

Operator shapes (:data:`SHAPES`)
    ``plain``, ``camouflage``, ``slowdrip``: the metadata rings of :mod:`linkage.synth.rings`;
    their usage is drawn from :data:`RING_USAGE`.
    ``whole``, ``window``, ``largepool``, ``paraphrase``: accounts with clean metadata (made
    like everyone else) that only their usage ties, in that usage mode
    (:mod:`linkage.synth.activity`).
    ``cells``: clean metadata in household-shaped cells of 2-4 (a card and a home IP per
    cell, like a family), usage from :data:`CELL_USAGE`.
    ``aged``: bought aged accounts with a chain of prepaid cards, usage from
    :data:`RING_USAGE` (:mod:`linkage.synth.population`).

Everything is derived from the seed: equal parameters and seed give byte-identical files.

Examples
--------
>>> p = draw_world(3)
>>> 5_000 <= p.n_accounts <= 1_000_000 and 0.005 <= p.operator_share <= 0.10
True
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv

from linkage.synth.activity import USAGE_MODES, write_world_interactions
from linkage.synth.background import add_legit, make_world
from linkage.synth.encode import sub_rng
from linkage.synth.people import DAY
from linkage.synth.population import ROLES, OperatorPlan, Population
from linkage.synth.rings import RING_KINDS, add_ring, ring_sizes
from linkage.synth.summary import GenerateSummary
from linkage.synth.tables import Builder, account_text, finalize, write_tables

__all__ = [
    "CELL_USAGE", "RING_USAGE", "SHAPES", "WORLD_SCENARIOS", "WorldParams", "draw_world",
    "generate_world", "plan_groups", "scenario_params",
]

SHAPES = ("plain", "camouflage", "slowdrip", "whole", "window", "largepool", "paraphrase",
          "cells", "aged")
RING_USAGE = ("human", "largepool", "paraphrase")  # what metadata rings and aged accounts do
CELL_USAGE = ("whole", "largepool", "paraphrase")
_CLEAN = ("whole", "window", "largepool", "paraphrase")
_FORMATS = ("parquet", "csv")


@dataclass(frozen=True)
class WorldParams:
    """What a world holds. Shares of legitimate features are of the legitimate accounts.

    Attributes
    ----------
    n_accounts : int
        Accounts, legitimate and operator.
    operator_share : float
        Target share of operator accounts, in ``[0, 0.5]``.
    group_sizes : tuple of int
        Smallest and largest operator group (log-uniform between, as ``generate``).
    shapes : tuple of (str, float)
        Operator shapes (:data:`SHAPES`) and their weights; each group gets one shape.
    interactions_per_account : float
        Mean requests per account over the six weeks of usage.
    families, extended_families, orgs, teams : float
        Shares of households of 2-4, of pairs of households joined by a card, of
        organisation accounts (contractors included) and of team members.
    contractor_share : float
        Share of an organisation's accounts that are contractors (no ``org_id``).
    heavy_users : float
        Share of heavy legitimate users (thousands of requests at any hour).
    stock_device : float
        Share of all accounts that report one stock device fingerprint (0: none).
    hubs : bool
        The large hubs of :mod:`linkage.synth.background` (university, carrier, 300-person
        organisation, influencers).
    """

    n_accounts: int = 50_000
    operator_share: float = 0.02
    group_sizes: tuple[int, int] = (10, 400)
    shapes: tuple[tuple[str, float], ...] = (("plain", 1.0),)
    interactions_per_account: float = 28.8
    families: float = 0.08
    extended_families: float = 0.0
    orgs: float = 0.0
    contractor_share: float = 0.2
    teams: float = 0.0
    heavy_users: float = 0.0
    stock_device: float = 0.0
    hubs: bool = False

    def __post_init__(self) -> None:
        lo, hi = self.group_sizes
        problems = []
        if self.n_accounts < 100:
            problems.append(f"n_accounts must be at least 100, got {self.n_accounts}")
        if not 0.0 <= self.operator_share <= 0.5:
            problems.append(f"operator_share must be in [0, 0.5], got {self.operator_share}")
        if not 2 <= lo <= hi:
            problems.append(f"group_sizes must satisfy 2 <= lo <= hi, got {self.group_sizes}")
        unknown = [s for s, _ in self.shapes if s not in SHAPES]
        if unknown or not self.shapes or any(w < 0 for _, w in self.shapes) or not sum(
                w for _, w in self.shapes) > 0:
            problems.append(f"shapes must name {SHAPES} with non-negative weights (not all "
                            f"zero), got {self.shapes}")
        shares = {k: getattr(self, k) for k in ("families", "extended_families", "orgs",
                                                "teams", "heavy_users", "stock_device",
                                                "contractor_share")}
        problems += [f"{k} must be in [0, 1], got {v}" for k, v in shares.items()
                     if not 0.0 <= v <= 1.0]
        if sum(shares[k] for k in ("families", "extended_families", "orgs", "teams")) > 0.5:
            problems.append("families + extended_families + orgs + teams must be at most 0.5")
        if self.interactions_per_account < 0:
            problems.append("interactions_per_account must be non-negative")
        if problems:
            raise ValueError("; ".join(problems))

    def scaled(self, max_accounts: int) -> WorldParams:
        """The same world with at most ``max_accounts`` accounts (group sizes kept)."""
        return self if self.n_accounts <= max_accounts else replace(
            self, n_accounts=max_accounts)

    def describe(self) -> str:
        """A one-line summary: ``50,000 acc, 2.0% ops in 10-400, plain 60% window 40%``."""
        total = sum(w for _, w in self.shapes)
        shapes = " ".join(f"{s} {w / total:.0%}" for s, w in self.shapes)
        bg = [f"{k} {getattr(self, k):.1%}" for k in (
            "families", "extended_families", "orgs", "teams", "heavy_users", "stock_device")
            if getattr(self, k)]
        return (f"{self.n_accounts:,} acc, {self.operator_share:.1%} ops in "
                f"{self.group_sizes[0]}-{self.group_sizes[1]}; {shapes}"
                + ("; " + ", ".join(bg) if bg else "") + ("; hubs" if self.hubs else ""))


def _log_uniform_int(rng: np.random.Generator, lo: float, hi: float) -> int:
    return int(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def draw_world(seed: int) -> WorldParams:
    """Parameters drawn from wide ranges: 5,000 to 1,000,000 accounts (log-uniform), 0.5-10%
    operators, groups of 3 to 3,000, one to five operator shapes with random weights, and
    each legitimate feature present or not."""
    rng = sub_rng(seed, "draw-world")
    lo = _log_uniform_int(rng, 3, 300)
    k = int(rng.integers(1, 6))
    shapes = rng.choice(len(SHAPES), k, replace=False)
    weights = rng.dirichlet(np.ones(k))

    def maybe(p: float, lo_: float, hi_: float) -> float:
        on, value = rng.random() < p, rng.uniform(lo_, hi_)
        return round(float(value), 4) if on else 0.0

    return WorldParams(
        n_accounts=_log_uniform_int(rng, 5_000, 1_000_000),
        operator_share=round(float(rng.uniform(0.005, 0.10)), 4),
        group_sizes=(lo, max(lo, _log_uniform_int(rng, lo, 3_000))),
        shapes=tuple((SHAPES[s], round(float(w), 3) or 0.001)
                     for s, w in zip(shapes, weights, strict=True)),
        interactions_per_account=round(float(rng.uniform(10, 40)), 1),
        families=maybe(0.8, 0.02, 0.10),
        extended_families=maybe(0.5, 0.005, 0.03),
        orgs=maybe(0.6, 0.01, 0.08),
        contractor_share=round(float(rng.uniform(0.05, 0.35)), 3),
        teams=maybe(0.6, 0.01, 0.06),
        heavy_users=maybe(0.7, 0.002, 0.02),
        stock_device=maybe(0.5, 0.01, 0.03),
        hubs=bool(rng.random() < 0.4),
    )


def plan_groups(params: WorldParams, seed: int) -> pa.Table:
    """The operator groups of a world: ``group`` (1-based), ``shape``, ``usage``, ``size``."""
    rng = sub_rng(seed, "world-plan")
    lo, hi = params.group_sizes
    n_op = round(params.operator_share * params.n_accounts)
    sizes = np.array(ring_sizes(rng, n_op, lo, min(hi, max(n_op, lo))), dtype=np.int64)
    names = [s for s, _ in params.shapes]
    w = np.array([w for _, w in params.shapes], dtype=np.float64)
    shape = np.array(names)[rng.choice(len(names), len(sizes), p=w / w.sum())]
    ring_usage = np.array(RING_USAGE)[rng.integers(0, len(RING_USAGE), len(sizes))]
    cell_usage = np.array(CELL_USAGE)[rng.integers(0, len(CELL_USAGE), len(sizes))]
    usage = np.where(np.isin(shape, _CLEAN), shape,
                     np.where(shape == "cells", cell_usage, ring_usage))
    return pa.table({"group": np.arange(1, len(sizes) + 1), "shape": shape.astype(str),
                     "usage": usage.astype(str), "size": sizes})


def generate_world(out_dir: Path | str, params: WorldParams, seed: int = 0, *,
                   fmt: str = "parquet", scenario: str = "world") -> GenerateSummary:
    """Write a world's tables, ``truth.csv``, ``groups.csv``, ``roles.csv`` and ``world.json``
    to ``out_dir``.

    Group numbers in ``groups.csv`` are the ``group_id`` of ``truth.csv``.
    """
    if fmt not in _FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {_FORMATS}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    n = params.n_accounts
    groups = plan_groups(params, seed)
    shape = np.asarray(groups["shape"].to_pylist())
    size = groups["size"].to_numpy()
    ring = np.isin(shape, RING_KINDS)
    # Internal layout: ring members first (each ring contiguous), then everyone else.
    n_ring = int(size[ring].sum())
    b = Builder(n, seed)
    world = make_world(seed, n, n - n_ring, int(ring.sum()))
    meta = {"whole": "clean", "window": "clean", "largepool": "clean",
            "paraphrase": "clean", "cells": "cells", "aged": "aged"}
    pop = Population(
        n=n, operators=[OperatorPlan(int(g), int(k), meta[s]) for g, s, k in zip(
            groups["group"].to_numpy(), shape, size, strict=True) if s in meta],
        families=params.families, extended_families=params.extended_families,
        orgs=params.orgs, contractor_share=params.contractor_share, teams=params.teams)
    add_legit(b, world, np.arange(n_ring, n), hubs=params.hubs, planter=pop)
    start = 0
    for g in np.flatnonzero(ring):  # one iteration per ring
        add_ring(b, world, str(shape[g]), np.arange(start, start + size[g]), int(g) + 1)
        start += int(size[g])
    rng = sub_rng(seed, "world-extras")
    stock = _stock_devices(b, rng, params.stock_device)
    group = np.where(b.group > 0, b.group.astype(np.int64) - 1, -1)
    heavy = (group < 0) & (pop.circle < 0) & (rng.random(n) < params.heavy_users)
    role = np.where(heavy, ROLES.index("heavy"), pop.role)
    role[stock] = ROLES.index("stock")
    role[group >= 0] = 0
    created = b.created_at.copy()
    width = max(4, len(str(int(b.group.max(initial=0)))))  # as finalize writes group ids
    tables, truth = finalize(b)
    out = Path(out_dir)
    write_tables(tables, truth, out, fmt)
    rows = {name: t.num_rows for name, t in tables.items()}
    del tables
    pcsv.write_csv(groups.set_column(0, "group_id", pa.array(
        [f"op{g:0{width}d}" for g in groups["group"].to_pylist()], pa.string())),
        out / "groups.csv", write_options=pcsv.WriteOptions(quoting_style="none"))
    ids = account_text(seed, n)
    has = np.flatnonzero(role > 0)
    pcsv.write_csv(pa.table({"account_id": ids.take(pa.array(has)),
                             "role": pa.array(np.array(ROLES)[role[has]])}),
                   out / "roles.csv", write_options=pcsv.WriteOptions(quoting_style="none"))
    (out / "world.json").write_text(json.dumps({"seed": seed, **asdict(params)}, indent=1))
    usage = np.array([USAGE_MODES.index(u) for u in groups["usage"].to_pylist()],
                     dtype=np.int64)
    rows["interactions"] = write_world_interactions(
        out, seed=seed, created=created, group=group, usage=usage, heavy=heavy,
        circle=pop.circle, account_text=ids,
        per_account=params.interactions_per_account, fmt=fmt)
    return GenerateSummary(
        out_dir=out, scenario=scenario, n_accounts=n,
        n_operator_accounts=int((group >= 0).sum()), n_groups=len(size), rows=rows,
        seed=seed, fmt=fmt)


def _stock_devices(b: Builder, rng: np.random.Generator, share: float) -> np.ndarray:
    """One to three stock fingerprints (a popular phone's default), the first on ``share``
    of all accounts, the others on less; return the accounts that report one."""
    if share <= 0:
        return np.zeros(0, dtype=np.int64)
    k = int(rng.integers(1, 4))
    hit = rng.random((b.n, k)) < share / np.arange(1, k + 1) ** 1.5
    acct = np.flatnonzero(hit.any(axis=1))
    which = hit.argmax(axis=1)
    b.add("devices", account=acct, device=b.ids("device", k)[which[acct]],
          ts=b.created_at[acct] + rng.integers(0, 2 * DAY, len(acct)))
    return acct


# Fixed scenarios of ``linkage generate`` built on worlds (their default parameters);
# ``world`` draws everything with :func:`draw_world`.
_BG = WorldParams(n_accounts=100_000, families=0.06, orgs=0.03, teams=0.03, heavy_users=0.01)
WORLD_SCENARIOS: dict[str, WorldParams | None] = {
    "largepool": replace(_BG, shapes=(("largepool", 1.0),)),
    "paraphrase": replace(_BG, shapes=(("paraphrase", 1.0),)),
    "cells": replace(_BG, shapes=(("cells", 1.0),), families=0.08, extended_families=0.02),
    "aged": replace(_BG, shapes=(("aged", 1.0),)),
    "orgs": replace(_BG, shapes=(("plain", 0.5), ("camouflage", 0.5)), orgs=0.08,
                    contractor_share=0.25, teams=0.05, extended_families=0.03),
    "stockdevice": WorldParams(n_accounts=5_000, group_sizes=(5, 60), families=0.06,
                               stock_device=0.025),
    "world": None,
}


def scenario_params(scenario: str, *, seed: int = 0, n_accounts: int | None = None,
                    operator_share: float | None = None,
                    group_sizes: tuple[int, int] | None = None) -> WorldParams:
    """The parameters of one of :data:`WORLD_SCENARIOS`, with the given overrides."""
    base = WORLD_SCENARIOS[scenario] or draw_world(seed)
    return replace(
        base, n_accounts=base.n_accounts if n_accounts is None else n_accounts,
        operator_share=base.operator_share if operator_share is None else operator_share,
        group_sizes=base.group_sizes if group_sizes is None else (
            int(group_sizes[0]), int(group_sizes[1])))
