"""Learn signal weights from labelled accounts (a truth or analyst-label file).

After ingest, signals and edges have run in a DuckDB connection, every candidate pair in
``edge_signals`` is labelled *same operator* (both accounts in the same non-empty truth group)
or not. Its features are the per-signal evidence ``p`` the graph stage computed (0 where the
pair shares nothing of that signal). An L2-regularised, class-balanced logistic regression is
fitted by Newton's method (IRLS) with numpy:

    P(same | x) = sigmoid(b0 + sum_s beta_s * x_s)

Each signal's coefficient is then turned into a weight by one monotone rule. A pair that shares
exactly one key of signal ``s`` at full specificity has ``x_s = w_s`` (the weight it was
computed with) and nothing else; the model gives it ``P_s = sigmoid(b0 + beta_s * w_s)``, and a
pair with no evidence at all ``P_0 = sigmoid(b0)``. Read as a noisy-OR witness on top of that
baseline (``1 - P_s = (1 - P_0)(1 - w)``), the signal's new weight is

    w'_s = clip((P_s - P_0) / (1 - P_0), 0, 0.99)

which is 0 for ``beta_s <= 0`` (a signal that does not point to one operator gets no weight),
grows monotonically with ``beta_s`` and stays below 1 as the configuration requires. Signals
that are disabled (weight 0) or that no candidate pair shares are not learned: they are left
out of the result and keep their configured weight.

Everything is deterministic: pairs are read in ``(a, b)`` order, and Newton's method has no
randomness.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from linkage.config import RunConfig
from linkage.signals import COACTIVITY, COSIGNUP, signal_weights

__all__ = [
    "MAX_WEIGHT",
    "Fit",
    "dump_toml",
    "fit_logistic",
    "learn_from_input",
    "learn_weights",
    "weights_config",
]

MAX_WEIGHT = 0.99
L2 = 1e-3
"""Ridge strength on the coefficients (not the intercept), per unit of the mean,
class-balanced log-loss."""


@dataclass(frozen=True)
class Fit:
    """The fitted model and what it was fitted on."""

    signals: list[str]
    intercept: float
    coef: np.ndarray
    weights: dict[str, float]
    n_pairs: int
    n_same: int


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = L2, balance: bool = True,
                 max_iter: int = 100, tol: float = 1e-9) -> tuple[float, np.ndarray]:
    """Intercept and coefficients of an L2-regularised logistic regression (Newton / IRLS).

    The loss is the sample-weighted mean log-loss plus ``l2 / 2 * |beta|^2`` (the intercept is
    not penalised). With ``balance`` each class carries half the total sample weight.
    """
    n, k = x.shape
    yf = y.astype(np.float64)
    if balance:
        n_pos = float(yf.sum())
        n_neg = float(n - n_pos)
        v = np.where(y, 0.5 / max(n_pos, 1.0), 0.5 / max(n_neg, 1.0))
    else:
        v = np.full(n, 1.0 / max(n, 1))
    xb = np.hstack([np.ones((n, 1)), x])
    pen = np.full(k + 1, l2)
    pen[0] = 1e-12  # keeps the Hessian invertible when one class is missing

    def objective(beta: np.ndarray) -> float:
        z = xb @ beta
        # log(1 + e^z) - y z, computed stably
        return float(v @ (np.logaddexp(0.0, z) - yf * z) + 0.5 * (pen * beta) @ beta)

    beta = np.zeros(k + 1)
    obj = objective(beta)
    for _ in range(max_iter):
        z = xb @ beta
        prob = 1.0 / (1.0 + np.exp(-z))
        grad = xb.T @ (v * (prob - yf)) + pen * beta
        hess = (xb * (v * prob * (1.0 - prob))[:, None]).T @ xb + np.diag(pen)
        step = np.linalg.solve(hess, grad)
        # Backtracking: Newton on a convex objective, but guard against overshooting.
        t = 1.0
        while True:
            cand = beta - t * step
            cand_obj = objective(cand)
            if cand_obj <= obj + 1e-15 or t < 1e-6:
                break
            t *= 0.5
        beta, obj = cand, cand_obj
        if float(np.max(np.abs(t * step))) < tol:
            break
    return float(beta[0]), beta[1:]


def _weight_rule(b0: float, beta: np.ndarray, w_used: np.ndarray) -> np.ndarray:
    # w' = (P_s - P_0) / (1 - P_0) = 1 - (1 + e^{z0}) / (1 + e^{z_s}), stably in log space.
    zs = b0 + beta * w_used
    w = 1.0 - np.exp(np.logaddexp(0.0, b0) - np.logaddexp(0.0, zs))
    w = np.where(beta > 0, w, 0.0)
    return np.clip(w, 0.0, MAX_WEIGHT)


def _fit(con: duckdb.DuckDBPyConnection, truth: pa.Table, cfg: RunConfig) -> Fit:
    kinds = [r[0] for r in con.execute(
        "SELECT DISTINCT kind FROM observations ORDER BY kind").fetchall()]
    used = signal_weights(cfg.signals, kinds)
    signals = [r[0] for r in con.execute(
        "SELECT DISTINCT signal FROM edge_signals ORDER BY signal").fetchall()]
    signals = [s for s in signals if s in used]
    con.register("learn_truth", truth.select(["account_id", "group_id"]))
    try:
        con.execute(
            """
            CREATE OR REPLACE TEMP TABLE learn_pairs AS
            WITH g AS (
                SELECT a.idx, t.group_id FROM accounts a
                LEFT JOIN learn_truth t ON t.account_id = a.account_id
            )
            SELECT (row_number() OVER (ORDER BY p.a, p.b) - 1)::BIGINT AS pair, p.a, p.b,
                   coalesce(ga.group_id IS NOT NULL AND ga.group_id = gb.group_id, false) AS y
            FROM (SELECT DISTINCT a, b FROM edge_signals) p
            JOIN g ga ON ga.idx = p.a JOIN g gb ON gb.idx = p.b
            """
        )
    finally:
        con.unregister("learn_truth")
    y = np.asarray(con.execute("SELECT y FROM learn_pairs ORDER BY pair").fetchnumpy()["y"],
                   dtype=bool)
    con.execute("CREATE OR REPLACE TEMP TABLE learn_cols(signal VARCHAR, col INTEGER)")
    if signals:
        con.executemany("INSERT INTO learn_cols VALUES (?, ?)",
                        [(s, i) for i, s in enumerate(signals)])
    cells = con.execute(
        """
        SELECT lp.pair, c.col, e.p FROM edge_signals e
        JOIN learn_pairs lp USING (a, b) JOIN learn_cols c USING (signal)
        """
    ).fetchnumpy()
    con.execute("DROP TABLE learn_pairs")
    con.execute("DROP TABLE learn_cols")
    x = np.zeros((y.shape[0], len(signals)))
    x[np.asarray(cells["pair"], dtype=np.int64), np.asarray(cells["col"], dtype=np.int64)] = (
        np.asarray(cells["p"], dtype=np.float64))
    n_same = int(y.sum())
    if not signals or n_same == 0 or n_same == y.shape[0]:
        # Nothing to learn from: one class only, or no evidence at all.
        return Fit(signals, 0.0, np.zeros(len(signals)), {}, int(y.shape[0]), n_same)
    b0, beta = fit_logistic(x, y)
    w_used = np.array([used[s][0] for s in signals])
    new = _weight_rule(b0, beta, w_used)
    weights = {s: round(float(w), 4) for s, w in zip(signals, new, strict=True)}
    return Fit(signals, b0, beta, weights, int(y.shape[0]), n_same)


def learn_weights(con: duckdb.DuckDBPyConnection, truth: pa.Table,
                  cfg: RunConfig) -> dict[str, float]:
    """Learned weight of every signal that some candidate pair shares, by signal name
    (``card``, ``obs:<kind>``, ``cosignup``, ...).

    ``con`` must hold the ``accounts``, ``observations`` and ``edge_signals`` tables left by
    :func:`linkage.ingest.ingest`, :func:`linkage.signals.build_links` and
    :func:`linkage.graph.build_edges` run with ``cfg``; ``truth`` has ``account_id`` and
    ``group_id`` (null for legitimate accounts), as :func:`linkage.evaluate.read_truth`
    returns.
    """
    return _fit(con, truth, cfg).weights


def learn_from_input(input_dir: Path | str, truth: pa.Table, cfg: RunConfig,
                     secret: bytes) -> Fit:
    """Run ingest, signals and edges on ``input_dir`` and fit the model."""
    from linkage.engines import connect_duckdb, spill_folder
    from linkage.graph import build_edges
    from linkage.ingest import ingest
    from linkage.pseudonymise import Pseudonymiser
    from linkage.signals import build_links

    pseudo = Pseudonymiser(secret)
    with spill_folder(cfg.engine.temp_directory) as spill:
        con = connect_duckdb(cfg.engine, spill)
        try:
            pseudo.install(con)
            ingest(con, Path(input_dir), cfg.ingest, pseudo)
            build_links(con, cfg.signals)
            build_edges(con, cfg.graph)
            return _fit(con, truth, cfg)
        finally:
            con.close()


def weights_config(weights: dict[str, float]) -> dict[str, Any]:
    """The configuration entries (as TOML data) that set these weights."""
    signals: dict[str, Any] = {}
    for name, w in sorted(weights.items()):
        if name.startswith("obs:"):
            kinds = signals.setdefault("observation", {}).setdefault("kinds", {})
            kinds[name[4:]] = w
        elif name in (COSIGNUP, COACTIVITY) or name.isidentifier():
            signals.setdefault(name, {})["weight"] = w
    return {"signals": signals} if signals else {}


def merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` merged into it, table by table."""
    out = dict(base)
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = v
    return out


_BARE = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(k: str) -> str:
    return k if _BARE.match(k) else json.dumps(k)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def dump_toml(data: dict[str, Any], _path: tuple[str, ...] = ()) -> str:
    """Configuration data (tables, scalars, lists of scalars) as TOML text."""
    lines: list[str] = []
    scalars = {k: v for k, v in data.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in data.items() if isinstance(v, dict)}
    if _path and (scalars or not tables):
        lines.append("[" + ".".join(_key(p) for p in _path) + "]")
    for k, v in scalars.items():
        lines.append(f"{_key(k)} = {_value(v)}")
    if lines:
        lines.append("")
    for k, v in tables.items():
        lines.append(dump_toml(v, (*_path, k)))
    return "\n".join(lines)
