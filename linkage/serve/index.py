"""The in-memory index of one run: keyed hash of every shared key → the clusters sharing it.

Built from the run's ``cluster_keys`` (every key two or more members of a cluster share, for
the clusters whose evidence the store keeps: score at least ``store.evidence_min_score``) and
``clusters``, and nothing else. Columnar: each ``(signal, key_hash)`` becomes a 128-bit code
(:func:`key_codes`); the codes are sorted, and each key points into flat arrays of
``(cluster, members)`` pairs. A request's keys get their codes from the same function and are
found by binary search. No Python object per key once built (the memory per key row is
in ``docs/benchmarks.md``).

How a request's keys become ``evidence`` and ``risk`` is :meth:`KeyIndex.check`, documented
with hand-computed examples in ``docs/algorithm.md`` (section "The online check").
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from hashlib import blake2b
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from linkage.config import RunConfig
from linkage.pseudonymise import Pseudonymiser
from linkage.serve.keys import KeyMaker
from linkage.signals import TIME_BUCKETED, specificity
from linkage.store import Store

__all__ = ["KeyIndex", "build_index", "index_tables", "key_codes", "link_evidence", "risk_of"]

_PERSON = b"linkage-serve"  # BLAKE2b personalisation: these codes are this module's own


def key_codes(signals: pa.Array | pa.ChunkedArray | list[str],
              keys: pa.Array | pa.ChunkedArray | list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Two ``uint64`` arrays ``(hi, lo)``: the 128-bit BLAKE2b digest of each
    ``signal 0x1F key``, the code that stands for a key in the index.

    The same function for the index's keys and a request's, one C call per key: a key has
    one code however it is computed, and two keys share one with probability about 2**-128.
    """
    sig = signals if isinstance(signals, list) else signals.to_pylist()
    key = keys if isinstance(keys, list) else keys.to_pylist()
    if None in sig or None in key:
        raise ValueError("a key or signal is missing")
    digests = b"".join(
        blake2b(f"{s}\x1f{k}".encode(), digest_size=16, person=_PERSON).digest()
        for s, k in zip(sig, key, strict=True))
    words = np.frombuffer(digests, dtype=">u8").reshape(-1, 2).astype(np.uint64)
    return np.ascontiguousarray(words[:, 0]), np.ascontiguousarray(words[:, 1])


def link_evidence(per_signal: dict[str, float]) -> float:
    """A cluster's evidence from its per-signal evidence: noisy-OR, as an edge weight is."""
    return 1.0 - math.prod(1.0 - p for p in per_signal.values())


def risk_of(links: Iterable[tuple[float, float, bool]]) -> float:
    """``1 - prod (1 - evidence * score)`` over the flagged links ``(evidence, score, flagged)``:
    the chance that the account belongs to at least one flagged cluster that is what its
    score says."""
    return 1.0 - math.prod(1.0 - e * s for e, s, flagged in links if flagged)


@dataclass
class KeyIndex:
    """The keys of one run, ready to answer checks (immutable once built)."""

    run_id: int
    finished_at: datetime | None
    maker: KeyMaker
    signals: list[str]
    """Signal names; ``key_signal`` holds positions in this list."""
    hi: np.ndarray
    lo: np.ndarray
    key_signal: np.ndarray
    n_global: np.ndarray
    """Accounts of the whole input carrying each key."""
    start: np.ndarray
    """Key ``i``'s pairs are ``start[i]:start[i + 1]`` of ``pair_cluster``/``pair_members``."""
    pair_cluster: np.ndarray
    pair_members: np.ndarray
    cluster_id: list[str]
    cluster_score: np.ndarray
    cluster_flagged: np.ndarray
    build_seconds: float = 0.0
    built_at: float = field(default_factory=time.time)

    @property
    def n_keys(self) -> int:
        return len(self.hi)

    @property
    def nbytes(self) -> int:
        """Bytes held by the arrays and cluster ids (what the index costs in memory)."""
        arrays = (self.hi, self.lo, self.key_signal, self.n_global, self.start,
                  self.pair_cluster, self.pair_members, self.cluster_score, self.cluster_flagged)
        return sum(a.nbytes for a in arrays) + sum(len(c) + 49 for c in self.cluster_id)

    def check(self, request: dict[str, Any]) -> dict[str, Any]:
        """The reply to one check: the account's links and its risk.

        A shared key ``k`` of signal ``s``, carried by ``n`` accounts of the night of which
        ``m`` are members of cluster ``c``, gives ``p = weight_s * specificity(n + 1, cap_s)
        * m / n`` (the new account would be carrier ``n + 1``; of a key's carriers, ``m / n``
        are this cluster's). Per cluster and signal the keys combine by noisy-OR (the
        time-bucketed signals take their strongest key); the signals by noisy-OR into the
        cluster's ``evidence``; ``risk`` is :func:`risk_of` over the links. Keys at or above
        their signal's cap give nothing and link nothing. Raises
        :class:`~linkage.serve.keys.BadField` for a request that breaks the contract.
        """
        pairs = sorted(self.maker.keys(request))
        found: dict[int, dict[str, list[float]]] = {}  # cluster -> signal -> [p..., m, keys]
        if pairs and self.n_keys:
            qhi, qlo = key_codes([s for s, _ in pairs], [k for _, k in pairs])
            pos = np.searchsorted(self.hi, qhi)
            weights = self.maker.weights
            for q, i in enumerate(pos.tolist()):
                while i < self.n_keys and self.hi[i] == qhi[q]:
                    if self.lo[i] == qlo[q]:
                        self._add(found, i, weights)
                    i += 1
        links: list[dict[str, Any]] = []
        for c, by_signal in found.items():
            per_signal = {
                s: (max(v[2:]) if s in TIME_BUCKETED else 1.0 - math.prod(1.0 - p for p in v[2:]))
                for s, v in by_signal.items()
            }
            evidence = link_evidence(per_signal)
            shared = sorted(by_signal, key=lambda s: (-per_signal[s], s))
            links.append({
                "cluster_id": self.cluster_id[c],
                "cluster_score": round(float(self.cluster_score[c]), 6),
                "flagged": bool(self.cluster_flagged[c]),
                "evidence": round(evidence, 6),
                "shared": [{"signal": s, "members": int(by_signal[s][0]),
                            "keys": int(by_signal[s][1])} for s in shared],
            })
        links.sort(key=lambda x: (-x["evidence"], -x["cluster_score"], x["cluster_id"]))
        risk = risk_of((x["evidence"], x["cluster_score"], x["flagged"]) for x in links)
        return {"run_id": self.run_id, "risk": round(min(1.0, max(0.0, risk)), 6),
                "links": links}

    def _add(self, found: dict[int, dict[str, list[float]]], i: int,
             weights: dict[str, tuple[float, int]]) -> None:
        signal = self.signals[int(self.key_signal[i])]
        weight, cap = weights.get(signal, (0.0, 0))
        n = int(self.n_global[i])
        p_key = weight * specificity(n + 1, cap) if cap else 0.0
        if p_key <= 0.0:
            return
        a, b = int(self.start[i]), int(self.start[i + 1])
        for c, m in zip(self.pair_cluster[a:b].tolist(), self.pair_members[a:b].tolist(),
                        strict=True):
            entry = found.setdefault(c, {}).setdefault(signal, [0, 0])
            entry[0] = max(entry[0], m)
            entry[1] += 1
            entry.append(p_key * m / n)


def build_index(store: Store, run_id: int, pseudo: Pseudonymiser) -> KeyIndex:
    """Read run ``run_id`` from ``store`` and index its keys (:func:`index_tables`)."""
    started = time.perf_counter()
    run = store.run(run_id)
    cfg = RunConfig.from_dict(json.loads(run["config_json"]))
    keys, clusters = store.cluster_keys(run_id)
    index = index_tables(run_id, run["finished_at"], pseudo, cfg, keys, clusters)
    index.build_seconds = time.perf_counter() - started
    return index


def index_tables(run_id: int, finished_at: datetime | None, pseudo: Pseudonymiser,
                 cfg: RunConfig, keys: pa.Table, clusters: pa.Table) -> KeyIndex:
    """The index of a run's ``keys`` (``cluster_id, signal, key_hash, n_members, n_global``)
    and ``clusters`` (``cluster_id, score, flagged``), whose configuration is ``cfg``.

    A key's popularity is its ``n_global``; where that is missing (a run published before it
    was stored) the members of the stored clusters that carry it, a lower bound.
    """
    signals = sorted(pc.unique(keys["signal"]).to_pylist())
    kinds = [s[4:] for s in signals if s.startswith("obs:")]
    maker = KeyMaker(pseudo, cfg.ingest, cfg.signals, kinds)
    cluster_of = np.asarray(pc.index_in(keys["cluster_id"], clusters["cluster_id"]),
                            dtype=np.int32)
    signal_of = np.asarray(pc.index_in(keys["signal"], pa.array(signals, pa.string())),
                           dtype=np.int16)
    members = np.asarray(keys["n_members"], dtype=np.int32)
    n_global = np.asarray(pc.fill_null(keys["n_global"], 0), dtype=np.int32)
    hi, lo = key_codes(keys["signal"], keys["key_hash"])
    order = np.lexsort((lo, hi))
    hi, lo = hi[order], lo[order]
    new = np.ones(len(hi), bool)
    new[1:] = (hi[1:] != hi[:-1]) | (lo[1:] != lo[:-1])
    starts = np.flatnonzero(new)
    members, cluster_of = members[order], cluster_of[order]
    if len(starts):
        summed = np.add.reduceat(members, starts)
        n_key = np.maximum(np.maximum.reduceat(n_global[order], starts), summed)
    else:
        n_key = np.zeros(0, np.int32)
    return KeyIndex(
        run_id=run_id,
        finished_at=finished_at,
        maker=maker,
        signals=signals,
        hi=hi[starts],
        lo=lo[starts],
        key_signal=signal_of[order][starts],
        n_global=n_key.astype(np.int32),
        start=np.append(starts, len(order)).astype(np.int32),
        pair_cluster=cluster_of,
        pair_members=members,
        cluster_id=clusters["cluster_id"].to_pylist(),
        cluster_score=np.asarray(clusters["score"], dtype=np.float64),
        cluster_flagged=np.asarray(clusters["flagged"], dtype=bool),
    )
