"""``interactions`` of a parametric world: operator usage styles and legitimate circles.

Like :mod:`linkage.synth.usage` (six weeks of requests, heavy-tailed volumes, personal and
public templates, human hours, written in parts of ``interactions/``), with each operator
group in one of :data:`USAGE_MODES` and a richer legitimate population:

``human``
    The group's accounts use the API like people (personal and public templates at human
    hours), only more: nothing in the usage ties them.
``whole``
    A private pool of 20-300 templates that every account of the group draws from.
``window``
    A private pool in which each account works a window of 40 consecutive templates (as in
    ``usageonly``).
``largepool``
    A private pool of 2,000-30,000 templates (a data set of prompts) drawn uniformly: two
    accounts share few templates, the group as a whole thousands nobody else uses.
``paraphrase``
    Every request is reworded: each request's fingerprint is unique.

Every mode but ``human`` runs on the group's schedule: scripted jobs of 5-45 minutes every
1-8 hours (jittered), each account in one of 1-3 shifts; 90% of requests on private
templates (none for ``paraphrase``), one model for 95%, mostly ``coding``/``agentic``.

Legitimate heavy users send hundreds to thousands of requests, mostly public templates,
at almost any hour. Circles (organisations and teams, see :mod:`linkage.synth.population`)
share a pool of 10-80 internal templates (30% of their requests) and office hours.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pyarrow as pa

from linkage.synth.encode import (
    bytes_text,
    hex_chars,
    mix64,
    ns_key,
    prefixed,
    sub_rng,
    timestamps,
)
from linkage.synth.people import DAY, OBS_END
from linkage.synth.tables import write_table
from linkage.synth.usage import (
    CATEGORIES,
    LEGIT_CATEGORY_P,
    MODEL_P,
    MODELS,
    OP_CATEGORY_P,
    USAGE_DAYS,
    USAGE_START,
    public_cdf,
    remove_interactions,
)

__all__ = ["USAGE_MODES", "write_world_interactions"]

USAGE_MODES = ("human", "whole", "window", "largepool", "paraphrase")
_HUMAN, _WHOLE, _WINDOW, _LARGE, _PARA = range(5)
_WINDOW_SIZE, _PER_TEMPLATE = 40, 25
_CHUNK_ROWS = 2_000_000
_U64 = np.uint64
# Template id spaces (disjoint): public below 2**40, then personal, private, circle, reworded.
_PERSONAL, _PRIVATE, _CIRCLE, _REWORDED = (_U64(k << 40) for k in (1, 2, 3, 4))


def _log_uniform(rng: np.random.Generator, lo: float, hi: float, k: int) -> np.ndarray:
    return np.exp(rng.uniform(np.log(lo), np.log(hi), k))


class _Plan:
    """Per-account and per-group facts every chunk reads."""

    def __init__(self, seed: int, created: np.ndarray, group: np.ndarray, usage: np.ndarray,
                 heavy: np.ndarray, circle: np.ndarray) -> None:
        n, k = len(created), max(len(usage), 1)
        rng = sub_rng(seed, "world-usage-plan")
        self.created, self.group, self.heavy, self.circle = created, group, heavy, circle
        self.is_op = group >= 0
        self.g = np.where(self.is_op, group, 0)
        self.mode = np.asarray(usage, dtype=np.int64) if len(usage) else np.zeros(1, np.int64)
        size = np.bincount(group[self.is_op], minlength=k)
        # Group position of each operator account (for windows).
        self.pos = np.zeros(n, dtype=np.int64)
        ops = np.flatnonzero(self.is_op)
        order = ops[np.argsort(group[ops], kind="stable")]
        self.pos[order] = np.arange(len(order)) - np.repeat(np.cumsum(size) - size, size)
        self.size = size
        pool = np.where(self.mode == _WHOLE, _log_uniform(rng, 20, 300, k),
                        _log_uniform(rng, 2_000, 30_000, k)).astype(np.int64)
        window = np.maximum(_WINDOW_SIZE, np.ceil(size * _WINDOW_SIZE / _PER_TEMPLATE))
        self.pool = np.where(self.mode == _WINDOW, window, pool).astype(np.int64)
        # Volumes: most people a handful, heavy users thousands, operators tens of times more
        # than a typical person (by group).
        weight = rng.lognormal(0.0, 1.5, n)
        weight[heavy] = rng.uniform(300, 1_200, int(heavy.sum()))
        weight[self.is_op] = (_log_uniform(rng, 30, 150, k)[self.g[self.is_op]]
                              * rng.lognormal(0.0, 0.4, int(self.is_op.sum())))
        self.weight = weight
        # Schedules: a job of `length` seconds every `period`, jittered, in `shifts` shifts.
        self.period = rng.choice([1, 2, 3, 4, 6, 8], k) * 3600
        self.length = rng.integers(5, 46, k) * 60
        self.shifts = rng.integers(1, 4, k)
        self.phase = rng.integers(0, self.period)
        self.jitter = np.minimum(self.period // 4, 3600)
        self.n_jobs = (USAGE_DAYS * DAY - self.phase - self.jitter - self.length) // self.period
        self.model = rng.choice(len(MODELS), k, p=MODEL_P)
        self.shift = rng.integers(0, 3, n) % self.shifts[self.g]
        # People: a peak hour (circles: office hours; heavy users: nearly any hour).
        n_circles = int(circle.max(initial=-1)) + 1
        c_peak = rng.uniform(9.0, 17.0, max(n_circles, 1)) + rng.choice([-5, 0, 1, 8], max(
            n_circles, 1))
        self.c_pool = rng.integers(10, 81, max(n_circles, 1))
        self.peak = np.where(circle >= 0, c_peak[np.maximum(circle, 0)],
                             rng.normal(15.0, 4.0, n))
        self.spread = np.where(heavy, 8.0, np.where(circle >= 0, 1.5, 3.5))
        self.n_personal = 1 + rng.poisson(2.0, n)
        self.fav_model = rng.choice(len(MODELS), n, p=MODEL_P)


def _job_start(seed: int, p: _Plan, g: np.ndarray, job: np.ndarray) -> np.ndarray:
    jit = mix64(g.astype(_U64) << _U64(20) | job.astype(_U64), ns_key(seed, "job")) % (
        p.jitter[g].astype(_U64) + _U64(1))
    return USAGE_START + p.phase[g] + job * p.period[g] + jit.astype(np.int64)


def _chunk(seed: int, p: _Plan, part: int, acct: np.ndarray, row0: int) -> pa.Table:
    rng = sub_rng(seed, "world-usage", part)
    m = len(acct)
    op, g = p.is_op[acct], p.g[acct]
    mode = np.where(op, p.mode[g], -1)
    scripted = op & (mode != _HUMAN)
    created = p.created[acct]
    u = rng.random(m)
    public = np.searchsorted(public_cdf(), rng.random(m), side="right").astype(_U64)
    personal = (_PERSONAL + acct.astype(_U64) * _U64(64)
                + (rng.random(m) * p.n_personal[acct]).astype(_U64))
    circle = p.circle[acct]
    in_circle = np.maximum(circle, 0)
    internal = (_CIRCLE + in_circle.astype(_U64) * _U64(128)
                + (rng.random(m) * p.c_pool[in_circle]).astype(_U64))
    pool = p.pool[g]
    window = (p.pos[acct] * pool // np.maximum(p.size[g], 1)
              + rng.integers(0, _WINDOW_SIZE, m)) % pool
    pick = np.where(mode == _WINDOW, window, (rng.random(m) * pool).astype(np.int64))
    private = _PRIVATE + g.astype(_U64) * _U64(1 << 24) + pick.astype(_U64)
    personal_share = np.where(p.heavy[acct], 0.1, 0.45)
    person = np.where(u < personal_share, personal, public)
    person = np.where((circle >= 0) & (u >= personal_share) & (u < personal_share + 0.3),
                      internal, person)
    template = np.where(scripted, np.where(u < 0.9, private, public), person)
    template = np.where(mode == _PARA, _REWORDED + _U64(row0) + np.arange(m, dtype=_U64),
                        template)
    # Time: people at their hours, scripted operators inside their group's jobs.
    day = np.maximum(created, USAGE_START)
    human = (day + rng.random(m) * (OBS_END - day)) // DAY * DAY + (
        (p.peak[acct] + rng.normal(0.0, 1.0, m) * p.spread[acct]) % 24 * 3600).astype(np.int64)
    human = np.where(human >= OBS_END, human - DAY, human)
    human = np.where(human < created, created + rng.integers(60, DAY, m), human)
    shifts, n_jobs = p.shifts[g], np.maximum(p.n_jobs[g], 1)
    first = np.clip((created - USAGE_START - p.phase[g] + p.period[g] - 1) // p.period[g], 0,
                    np.maximum(n_jobs - shifts, 0))
    job = first + (rng.random(m) * (n_jobs - first)).astype(np.int64)
    job = job - job % shifts + p.shift[acct]
    job = np.where(job >= n_jobs, job - shifts, job)
    at_job = _job_start(seed, p, g, np.maximum(job, 0)) + (
        rng.random(m) * p.length[g]).astype(np.int64)
    ts = np.where(scripted, np.minimum(np.maximum(at_job, created + 60), OBS_END - 1), human)
    model = np.where(scripted, np.where(rng.random(m) < 0.95, p.model[g],
                                        rng.choice(len(MODELS), m, p=MODEL_P)),
                     np.where(rng.random(m) < 0.7, p.fav_model[acct],
                              rng.choice(len(MODELS), m, p=MODEL_P)))
    cat = np.where(scripted, rng.choice(len(CATEGORIES), m, p=OP_CATEGORY_P),
                   rng.choice(len(CATEGORIES), m, p=LEGIT_CATEGORY_P))
    tin = np.where(scripted, rng.lognormal(7.4, 0.5, m), rng.lognormal(6.0, 1.0, m))
    tout = np.where(scripted, rng.lognormal(7.0, 0.4, m), rng.lognormal(5.6, 1.0, m))
    order = np.argsort(ts, kind="stable")
    return pa.table({
        "acct": pa.array(acct[order]),
        "ts": timestamps(ts[order]),
        "model": pa.array(np.array(MODELS)[model[order]]),
        "prompt_fingerprint": bytes_text(prefixed("pf_", hex_chars(mix64(
            template[order], ns_key(seed, "prompt"))))),
        "category": pa.array(np.array(CATEGORIES)[cat[order]]),
        "input_tokens": pa.array(tin[order].astype(np.int64)),
        "output_tokens": pa.array(tout[order].astype(np.int64)),
    })


def write_world_interactions(
    out_dir: Path, *, seed: int, created: np.ndarray, group: np.ndarray, usage: np.ndarray,
    heavy: np.ndarray, circle: np.ndarray, account_text: pa.Array, per_account: float,
    fmt: str,
) -> int:
    """Write ``out_dir/interactions/part-NNNNN.{parquet,csv}``; return the number of rows.

    By internal account index: ``created`` signup times (Unix seconds), ``group`` the
    operator group (0-based, ``-1`` legitimate), ``heavy`` heavy legitimate users,
    ``circle`` the organisation or team (``-1`` none), ``account_text`` the public ids;
    ``usage`` the index into :data:`USAGE_MODES` of each group. No request precedes its
    account's signup.
    """
    n = len(created)
    p = _Plan(seed, created, group, usage, heavy, circle)
    total = round(per_account * n)
    count = (sub_rng(seed, "world-usage-count").multinomial(total, p.weight / p.weight.sum())
             if n else np.zeros(0, np.int64))
    remove_interactions(out_dir)
    folder = out_dir / "interactions"
    folder.mkdir(parents=True)
    cum = np.cumsum(count)
    bounds = np.searchsorted(cum, np.arange(_CHUNK_ROWS, total, _CHUNK_ROWS), side="right")
    edges = np.concatenate([[0], bounds, [n]]).astype(np.int64)
    part = 0
    for lo, hi in itertools.pairwise(edges):  # one iteration per chunk of rows
        if hi <= lo:
            continue
        row0 = int(cum[lo - 1]) if lo else 0
        table = _chunk(seed, p, part, np.repeat(np.arange(lo, hi), count[lo:hi]), row0)
        table = table.set_column(0, "account_id", account_text.take(table.column("acct")))
        write_table(table, folder / f"part-{part:05d}", fmt)
        part += 1
    return int(total)
