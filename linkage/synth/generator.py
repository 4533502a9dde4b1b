"""Synthetic input for linkage: the contract's tables with planted operator groups.

:func:`generate` writes ``accounts``, ``payment_instruments``, ``ip_events``, ``devices`` and
``observations`` (Parquet or CSV, columns exactly as in the contract) and ``truth.csv``
(``account_id,group_id``; ``group_id`` is empty for legitimate accounts, ``op0007``-style for
operator accounts). Everything is vectorised with numpy and Arrow and derived from one seed:
the same arguments give byte-identical files.

Scenarios
---------
``plain``
    Careless operator rings (see :mod:`linkage.synth.rings`): a few ring cards and device
    ids each shared by many members, IPs from 1-3 hosting /24s, signups in bursts of minutes
    to hours. Legitimate background: own cards and devices, home IPs in residential /24s of
    heavy-tailed popularity (some /24s hold tens of users), distinct people, signups over
    six months with daily and weekly rhythm, about 15% of events over IPv6.
``camouflage``
    Rings that hide in the crowd: residential-proxy IPs from the real users' pool, popular
    BINs, plausible e-mails, 1-3 attributes borrowed from random real users, and ring ties
    that form a sparse chain (each card or device shared by 2-4 consecutive members).
``hubs``
    Large legitimate sharing (see :mod:`linkage.synth.background`): a university of up to
    5,000 accounts behind one NAT IP, a mobile carrier with thousands of users per IPv6 /64,
    a 300-person organisation (one ``org_id``, corporate card, office range), families of
    2-4 sharing a card and home IP, influencer referral codes used by thousands; plus some
    ``plain`` rings.
``slowdrip``
    Patient rings: signups over six weeks in office hours, a new IP (distinct /24) per
    account, device fingerprints rotated from a small pool, distinct virtual cards sharing
    BIN and billing postal code.
``mixed`` (default)
    All of the above at once: the ``hubs`` background with ``plain``, ``camouflage`` and
    ``slowdrip`` rings (about 45/30/25% of rings).
``usageonly``
    Distillation operators who bought clean metadata: every operator account is generated
    exactly like a legitimate user (its own cards, devices, home IP, e-mail, signup time), so
    nothing in the account tables links them. Only ``interactions`` does (see
    :mod:`linkage.synth.usage`): each group's private prompt-template pool and its
    synchronised bursts, among legitimate users with personal templates, popular public
    templates and human timing. 28.8 interactions per account on average.
``seedscale``
    The reported campaign at full size: ``usageonly`` with 1,000,000 accounts (default),
    2.5% of them operator accounts in about 100 groups (sizes 100-450), and 28.8 interactions
    per account over six weeks (28,800,000 at the default size). ``n_accounts`` scales it down.

Parametric worlds (:mod:`linkage.synth.worlds`, written with ``interactions``, a
``groups.csv`` and a ``world.json``) give the further scenarios
``largepool``
    Operators with clean metadata, each group drawing from a private pool of thousands of
    templates: two accounts share few, the group as a whole thousands nobody else uses.
``paraphrase``
    Operators with clean metadata who reword every prompt (no fingerprint used twice);
    only their scripted jobs' timing and their mix of models and categories remain.
``cells``
    Operators in household-shaped cells of 2-4 accounts (a card and home IP per cell, made
    like real families'), cells of one operator tied only by usage.
``aged``
    Bought aged accounts: ordinary signups months apart, long before use, then prepaid
    cards each held by 2-3 consecutive accounts.
``orgs``
    ``plain`` and ``camouflage`` rings among organisations of 20-200 accounts with
    contractors (the organisation's card, domain and office range, no ``org_id``), teams
    keeping the same office hours, households and extended families, heavy users.
``stockdevice``
    A small deployment (5,000 accounts by default) with ``plain`` rings, where one stock
    device fingerprint is reported by 2.5% of all accounts.
``world``
    A world drawn by :func:`linkage.synth.worlds.draw_world` from the seed (5,000 to a
    million accounts, any mix of shapes and legitimate features); ``n_accounts``,
    ``operator_share`` and ``group_sizes`` override what was drawn.

Without ``interactions`` (the first five scenarios) a stale ``interactions`` table left in
``out_dir`` by an earlier generation is removed; the usage scenarios write it as a
partitioned folder ``interactions/part-NNNNN.parquet`` (or ``.csv``).

Sizes: about 1.2 payment rows, 4 IP events, 1.5 device rows and 0.5 observations per account.
Operator accounts are ``round(operator_share * n_accounts)`` split into rings whose sizes are
log-uniform on ``group_sizes`` (many small rings, a few large ones).

Examples
--------
>>> from pathlib import Path
>>> import tempfile
>>> s = generate(Path(tempfile.mkdtemp()), scenario="plain", n_accounts=2_000)
>>> s.n_operator_accounts
40
>>> sorted(p.name for p in s.out_dir.iterdir())  # doctest: +NORMALIZE_WHITESPACE
['accounts.parquet', 'devices.parquet', 'ip_events.parquet', 'observations.parquet',
 'payment_instruments.parquet', 'truth.csv']
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.compute as pc

from linkage.synth.background import add_legit, make_world
from linkage.synth.encode import sub_rng
from linkage.synth.nights import later_night
from linkage.synth.rings import RING_KINDS, add_ring, ring_sizes
from linkage.synth.summary import GenerateSummary
from linkage.synth.tables import Builder, account_text, finalize, write_tables
from linkage.synth.usage import remove_interactions, write_interactions
from linkage.synth.worlds import WORLD_SCENARIOS, generate_world, scenario_params

__all__ = ["ALL_SCENARIOS", "NIGHT_SCENARIOS", "SCENARIOS", "GenerateSummary", "generate"]

SCENARIOS = ("plain", "camouflage", "hubs", "slowdrip", "mixed", "usageonly", "seedscale")
# Scenarios made by linkage.synth.worlds (see there); SCENARIOS keeps the original seven.
ALL_SCENARIOS = SCENARIOS + tuple(WORLD_SCENARIOS)
USAGE_SCENARIOS = ("usageonly", "seedscale")
# Scenarios whose later nights linkage.synth.nights makes (their rings link by metadata).
NIGHT_SCENARIOS = ("plain", "camouflage", "hubs", "slowdrip", "mixed")
INTERACTIONS_PER_ACCOUNT = 28.8  # seedscale: 28.8 million over one million accounts
# Defaults that differ per scenario: (n_accounts, operator_share, group_sizes).
_DEFAULTS: dict[str, tuple[int, float, tuple[int, int]]] = {
    "seedscale": (1_000_000, 0.025, (100, 450)),
}
_DEFAULT = (100_000, 0.02, (10, 400))
FORMATS = ("parquet", "csv")
_MIXED_WEIGHTS = (0.45, 0.30, 0.25)  # plain, camouflage, slowdrip rings in "mixed"


def _ring_kinds(rng: np.random.Generator, scenario: str, k: int) -> list[str]:
    if scenario == "mixed":
        return [RING_KINDS[i] for i in rng.choice(len(RING_KINDS), k, p=_MIXED_WEIGHTS)]
    return [scenario if scenario in RING_KINDS else "plain"] * k


def generate(
    out_dir: Path | str,
    *,
    scenario: str = "mixed",
    n_accounts: int | None = None,
    operator_share: float | None = None,
    group_sizes: tuple[int, int] | None = None,
    seed: int = 0,
    fmt: str = "parquet",
    night: int = 1,
) -> GenerateSummary:
    """Write a synthetic input folder with planted operator groups and its truth file.

    Parameters
    ----------
    out_dir : Path or str
        Folder to write into (created if missing). Existing files of the same tables are
        replaced, in either format.
    scenario : str
        One of :data:`ALL_SCENARIOS`: :data:`SCENARIOS` (see the module documentation) or
        one of :data:`linkage.synth.worlds.WORLD_SCENARIOS`.
    n_accounts : int, optional
        Number of accounts, legitimate and operator (100,000; ``seedscale``: 1,000,000).
    operator_share : float, optional
        Target share of operator accounts, in ``[0, 1)`` (0.02; ``seedscale``: 0.025).
    group_sizes : tuple of int, optional
        Smallest and largest ring size (``2 <= lo <= hi``; default ``(10, 400)``,
        ``seedscale``: ``(100, 450)``). Only when there are fewer operator accounts than
        ``lo`` is a single smaller ring made.
    seed : int
        Non-negative seed; equal arguments give byte-identical output.
    fmt : str
        ``"parquet"`` (timestamps as ``timestamp[us, tz=UTC]``) or ``"csv"`` (ISO 8601 with
        ``Z``).
    night : int
        1 (default): the world as described. ``N`` > 1: the same world ``N - 1`` days later
        (:mod:`linkage.synth.nights`: new accounts, grown and merged rings); ``n_accounts``
        is night 1's size. Only for the scenarios without ``interactions``
        (:data:`NIGHT_SCENARIOS`).

    Returns
    -------
    GenerateSummary
    """
    if scenario not in ALL_SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; expected one of {ALL_SCENARIOS}")
    if night < 1:
        raise ValueError(f"night must be 1 or later, got {night}")
    if night > 1 and scenario not in NIGHT_SCENARIOS:
        raise ValueError(f"a later night (night {night}) is made only for the scenarios "
                         f"{', '.join(NIGHT_SCENARIOS)}, not {scenario!r}")
    if scenario in WORLD_SCENARIOS:
        params = scenario_params(scenario, seed=seed, n_accounts=n_accounts,
                                 operator_share=operator_share, group_sizes=group_sizes)
        return generate_world(out_dir, params, seed, fmt=fmt, scenario=scenario)
    d_accounts, d_share, d_sizes = _DEFAULTS.get(scenario, _DEFAULT)
    n_accounts = d_accounts if n_accounts is None else n_accounts
    operator_share = d_share if operator_share is None else operator_share
    group_sizes = d_sizes if group_sizes is None else group_sizes
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")
    lo, hi = (int(v) for v in group_sizes)
    if not 2 <= lo <= hi:
        raise ValueError(f"group_sizes must satisfy 2 <= lo <= hi, got {group_sizes!r}")
    if n_accounts < 1:
        raise ValueError(f"n_accounts must be positive, got {n_accounts}")
    if not 0.0 <= operator_share < 1.0:
        raise ValueError(f"operator_share must be in [0, 1), got {operator_share}")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")

    plan = sub_rng(seed, "plan")
    sizes = ring_sizes(plan, round(operator_share * n_accounts), lo, hi)
    kinds = _ring_kinds(plan, scenario, len(sizes))
    n_op = sum(sizes)
    b = Builder(n_accounts, seed)
    world = make_world(seed, n_accounts, n_accounts - n_op, len(sizes))
    # Legitimate users first: camouflage rings borrow their attributes.
    bounds = np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)])
    usage = scenario in USAGE_SCENARIOS
    if usage:
        # Operators with clean metadata: generated exactly like everyone else.
        add_legit(b, world, np.arange(n_accounts), hubs=False)
        b.group[:n_op] = np.repeat(np.arange(1, len(sizes) + 1, dtype=np.int32), sizes)
    else:
        add_legit(b, world, np.arange(n_op, n_accounts), hubs=scenario in ("hubs", "mixed"))
        for gid, kind in enumerate(kinds):  # one iteration per ring
            add_ring(b, world, kind, np.arange(bounds[gid], bounds[gid + 1]), gid + 1)
    created = b.created_at.copy()
    group = np.where(b.group > 0, b.group.astype(np.int64) - 1, -1)  # 0-based, -1 legitimate
    tables, truth = finalize(b)
    n_groups = len(sizes)
    if night > 1:
        tables, truth = later_night(tables, truth, seed=seed, night=night)
        operators = pc.not_equal(truth["group_id"], "")
        n_op = pc.sum(operators).as_py() or 0
        n_groups = len(truth.filter(operators)["group_id"].unique())
    out = Path(out_dir)
    write_tables(tables, truth, out, fmt)
    rows = {name: t.num_rows for name, t in tables.items()}
    del tables, truth
    if usage:
        rows["interactions"] = write_interactions(
            out, seed=seed, created=created, group=group,
            account_text=account_text(seed, n_accounts),
            per_account=INTERACTIONS_PER_ACCOUNT, fmt=fmt)
    else:
        remove_interactions(out)
    return GenerateSummary(
        out_dir=out, scenario=scenario, n_accounts=rows["accounts"], n_operator_accounts=n_op,
        n_groups=n_groups, rows=rows, seed=seed, fmt=fmt)
