"""The ``interactions`` table: what legitimate users and distillation operators do.

Six weeks of API requests ending at the last observed day (:data:`USAGE_START` to
``OBS_END``), generated per chunk of accounts with numpy and written as Parquet (or CSV)
parts of a folder ``interactions/`` so that tens of millions of rows never sit in memory at
once. The total is exact: ``round(per_account * n_accounts)`` rows, spread over accounts by a
multinomial draw (heavy-tailed weights; an operator account sends about 90 times what a
typical person does).

Legitimate users
    A few personal templates each (their own prompts: unique to the account), popular public
    templates (Zipf over :data:`N_PUBLIC`: the most popular are used by a large share of all
    accounts, the tail by a few), a favourite model, mostly chat and writing, requests at
    human times (days at random, hours around a personal peak hour, sd 3.5 h).
Operator groups
    A private pool of prompt templates per group; each account works a sliding window of
    :data:`OP_WINDOW` consecutive pool templates (so each template is used by about
    :data:`OP_SHARE_PER_TEMPLATE` accounts and the group is one chain of overlaps, whatever
    its size); 10% of requests use public templates. The group drives its accounts on one
    schedule: bursts of 15 minutes every four hours (jittered), each account in one of three
    shifts; one model for 95% of requests, 88% ``coding``/``agentic``, long outputs.
"""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa

from linkage.synth.encode import bytes_text, hex_chars, mix64, ns_key, prefixed, sub_rng, timestamps
from linkage.synth.people import DAY, OBS_END
from linkage.synth.tables import write_table

__all__ = [
    "CATEGORIES",
    "LEGIT_CATEGORY_P",
    "MODELS",
    "MODEL_P",
    "N_PUBLIC",
    "OP_CATEGORY_P",
    "USAGE_DAYS",
    "USAGE_START",
    "public_cdf",
    "remove_interactions",
    "write_interactions",
]

USAGE_DAYS = 42
USAGE_START = OBS_END - USAGE_DAYS * DAY
N_PUBLIC = 2_000  # public templates (system prompts of popular tools, shared snippets)
OP_WINDOW = 40  # pool templates one operator account works
OP_SHARE_PER_TEMPLATE = 25  # about this many accounts of a group use each pool template
MODELS = ("model-large", "model-medium", "model-small", "model-reasoning")
MODEL_P = np.array([0.35, 0.4, 0.15, 0.1])
CATEGORIES = ("chat", "writing", "analysis", "coding", "agentic")
LEGIT_CATEGORY_P = np.array([0.45, 0.2, 0.12, 0.18, 0.05])
OP_CATEGORY_P = np.array([0.04, 0.04, 0.04, 0.55, 0.33])
_BURST_EVERY = 4 * 3600
_BURST_SECONDS = 15 * 60
_SHIFTS = 3
_CHUNK_ROWS = 2_000_000
_PERSONAL_BASE = np.uint64(1 << 40)
_PRIVATE_BASE = np.uint64(1 << 41)
_U64 = np.uint64


def remove_interactions(out_dir: Path) -> None:
    """Remove an ``interactions`` table (file or folder) left by an earlier generation."""
    shutil.rmtree(out_dir / "interactions", ignore_errors=True)
    for ext in (".parquet", ".csv", ".csv.gz"):
        (out_dir / f"interactions{ext}").unlink(missing_ok=True)


def public_cdf() -> np.ndarray:
    """Cumulative popularity of the public templates (Zipf), for ``searchsorted``."""
    w = 1.0 / np.arange(1, N_PUBLIC + 1)
    return np.cumsum(w) / w.sum()


def write_interactions(
    out_dir: Path, *, seed: int, created: np.ndarray, group: np.ndarray,
    account_text: pa.Array, per_account: float, fmt: str,
) -> int:
    """Write ``out_dir/interactions/part-NNNNN.{parquet,csv}``; return the number of rows.

    ``created`` are signup times (Unix seconds) and ``group`` the operator group (``-1`` for
    legitimate accounts) by internal account index; ``account_text`` the public account ids
    by internal index. No request precedes its account's signup.
    """
    n = len(created)
    rng = sub_rng(seed, "usage-plan")
    is_op = group >= 0
    # Heavy-tailed volume: most people send a handful of requests, some hundreds.
    weight = rng.lognormal(0.0, 1.5, n)
    weight[is_op] = 90.0 * rng.lognormal(0.0, 0.4, int(is_op.sum()))
    total = round(per_account * n)
    count = rng.multinomial(total, weight / weight.sum()) if n else np.zeros(0, np.int64)

    # Per-account facts every chunk reads.
    peak = rng.normal(15.0, 4.0, n)  # personal peak hour (UTC)
    n_personal = 1 + rng.poisson(2.0, n)
    fav_model = rng.choice(len(MODELS), n, p=MODEL_P)
    shift = rng.integers(0, _SHIFTS, n)
    n_groups = int(group.max(initial=-1)) + 1
    g_size = np.bincount(group[is_op], minlength=n_groups)
    pos = np.zeros(n, dtype=np.int64)  # position of each operator account in its group
    ops = np.flatnonzero(is_op)
    order = ops[np.argsort(group[ops], kind="stable")]
    starts = np.concatenate([[0], np.cumsum(g_size)])[:-1]
    pos[order] = np.arange(len(order)) - np.repeat(starts, g_size)
    pool = np.maximum(OP_WINDOW, np.ceil(g_size * OP_WINDOW / OP_SHARE_PER_TEMPLATE)).astype(
        np.int64)
    g_model = rng.choice(len(MODELS), max(n_groups, 1), p=MODEL_P)
    n_bursts = USAGE_DAYS * DAY // _BURST_EVERY
    g_phase = rng.integers(0, _BURST_EVERY - 3600 - _BURST_SECONDS, max(n_groups, 1))
    jitter = rng.integers(0, 3600, (max(n_groups, 1), n_bursts))
    burst_start = (USAGE_START + g_phase[:, None] + np.arange(n_bursts) * _BURST_EVERY
                   + jitter)
    first_burst = np.clip((created - USAGE_START + _BURST_EVERY - 1) // _BURST_EVERY, 0,
                          n_bursts - _SHIFTS)

    remove_interactions(out_dir)
    folder = out_dir / "interactions"
    folder.mkdir(parents=True)
    pub_cdf = public_cdf()
    key = ns_key(seed, "prompt")
    bounds = np.searchsorted(np.cumsum(count), np.arange(_CHUNK_ROWS, total, _CHUNK_ROWS),
                             side="right")
    edges = np.concatenate([[0], bounds, [n]]).astype(np.int64)
    part = 0
    for lo, hi in itertools.pairwise(edges):  # one iteration per chunk of rows
        if hi <= lo:
            continue
        crng = sub_rng(seed, "usage", part)
        acct = np.repeat(np.arange(lo, hi), count[lo:hi])
        m = len(acct)
        op = is_op[acct]
        g = np.where(op, group[acct], 0)
        u = crng.random(m)
        # Templates: personal, public (Zipf) or the group's private pool.
        public = np.searchsorted(pub_cdf, crng.random(m), side="right").astype(np.uint64)
        personal = (_PERSONAL_BASE + acct.astype(np.uint64) * _U64(64)
                    + (crng.random(m) * n_personal[acct]).astype(np.uint64))
        win = (pos[acct] * pool[g] // np.maximum(g_size[g], 1)
               + crng.integers(0, OP_WINDOW, m)) % pool[g]
        private = _PRIVATE_BASE + g.astype(np.uint64) * _U64(1 << 20) + win.astype(np.uint64)
        template = np.where(op, np.where(u < 0.9, private, public),
                            np.where(u < 0.45, personal, public))
        # Time: operators in their shift's bursts, people at human hours.
        day = np.maximum(created[acct], USAGE_START)
        human = (day + crng.random(m) * (OBS_END - day)) // DAY * DAY + (
            (peak[acct] + crng.normal(0.0, 3.5, m)) % 24 * 3600).astype(np.int64)
        human = np.where(human >= OBS_END, human - DAY, human)
        human = np.where(human < created[acct],
                         created[acct] + crng.integers(60, DAY, m), human)
        fb = first_burst[acct]
        b = fb + (crng.random(m) * (n_bursts - fb)).astype(np.int64)
        b = b - b % _SHIFTS + shift[acct]
        b = np.where(b >= n_bursts, b - _SHIFTS, b)
        burst = burst_start[g, b] + crng.integers(0, _BURST_SECONDS, m)
        ts = np.where(op, np.maximum(burst, created[acct] + 60), human)
        model = np.where(op, np.where(crng.random(m) < 0.95, g_model[g],
                                      crng.choice(len(MODELS), m, p=MODEL_P)),
                         np.where(crng.random(m) < 0.7, fav_model[acct],
                                  crng.choice(len(MODELS), m, p=MODEL_P)))
        cat = np.where(op, crng.choice(len(CATEGORIES), m, p=OP_CATEGORY_P),
                       crng.choice(len(CATEGORIES), m, p=LEGIT_CATEGORY_P))
        tin = np.where(op, crng.lognormal(7.4, 0.5, m), crng.lognormal(6.0, 1.0, m))
        tout = np.where(op, crng.lognormal(7.0, 0.4, m), crng.lognormal(5.6, 1.0, m))
        order = np.argsort(ts, kind="stable")
        table = pa.table({
            "account_id": account_text.take(pa.array(acct[order])),
            "ts": timestamps(ts[order]),
            "model": pa.array(np.array(MODELS)[model[order]]),
            "prompt_fingerprint": bytes_text(prefixed("pf_", hex_chars(mix64(
                template[order], key)))),
            "category": pa.array(np.array(CATEGORIES)[cat[order]]),
            "input_tokens": pa.array(tin[order].astype(np.int64)),
            "output_tokens": pa.array(tout[order].astype(np.int64)),
        })
        write_table(table, folder / f"part-{part:05d}", fmt)
        part += 1
    return int(total)
