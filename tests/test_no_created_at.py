"""``accounts.created_at`` is optional: without it an account simply brings no signup-time
evidence (no co-signup keys, no burst, no "signed up within" reason); everything else links
as before."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from linkage.config import load_config
from linkage.pipeline import run_pipeline
from linkage.store import Store
from linkage.synth import generate

pytestmark = pytest.mark.slow

SECRET = b"no-created-at-secret-0123456789abcdef"


@pytest.fixture(scope="module")
def worlds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """The same generated world with ``created_at``, without the column, and with it
    empty for every other account."""
    full = tmp_path_factory.mktemp("full")
    generate(full, scenario="plain", n_accounts=3_000, seed=6)
    without, half = tmp_path_factory.mktemp("without"), tmp_path_factory.mktemp("half")
    for folder in (without, half):
        for f in full.iterdir():
            (folder / f.name).write_bytes(f.read_bytes())
    accounts = pq.read_table(full / "accounts.parquet")
    pq.write_table(accounts.drop_columns(["created_at"]), without / "accounts.parquet")
    odd = pc.equal(pc.bit_wise_and(pc.cast(pc.utf8_slice_codeunits(
        accounts["account_id"], 1), "int64"), 1), 1)
    pq.write_table(accounts.set_column(1, "created_at", pc.if_else(
        odd, None, accounts["created_at"])), half / "accounts.parquet")
    return full, without, half


def _run(folder: Path, db: Path) -> tuple[list[dict], dict[str, str]]:
    """A run's clusters, and the cluster of every clustered account."""
    with Store(f"sqlite:///{db}") as store:
        run = run_pipeline(folder, store, load_config(None), SECRET)
        members = store.memberships(run.run_id)
        return store.clusters(run.run_id).to_pylist(), dict(zip(
            members["account_id"].to_pylist(), members["cluster_id"].to_pylist(), strict=True))


def _clusters(folder: Path, db: Path) -> list[dict]:
    return _run(folder, db)[0]


def _burst(c: dict) -> float:
    return json.loads(c["features_json"])["burst"]


def _signed_up(c: dict) -> bool:
    return any("signed up" in r for r in json.loads(c["reasons_json"]))


def test_without_created_at_there_is_no_signup_evidence(worlds, tmp_path):
    full, without, _ = worlds
    with_times = _clusters(full, tmp_path / "full.db")
    assert any(_burst(c) > 0 for c in with_times) and any(map(_signed_up, with_times))
    clusters = _clusters(without, tmp_path / "without.db")
    assert clusters and all(_burst(c) == 0 for c in clusters)
    assert not any(map(_signed_up, clusters))
    assert not any("nan" in c["reasons_json"] for c in clusters)
    assert any(c["flagged"] for c in clusters)  # rings still link by their cards and devices


def test_accounts_without_created_at_bring_no_burst(worlds, tmp_path):
    _, _, half = worlds
    clusters, cluster_of = _run(half, tmp_path / "half.db")
    accounts = pq.read_table(half / "accounts.parquet")
    timed: dict[str, int] = {}
    for account, created in zip(accounts["account_id"].to_pylist(),
                                accounts["created_at"].to_pylist(), strict=True):
        if created is not None and account in cluster_of:
            timed[cluster_of[account]] = timed.get(cluster_of[account], 0) + 1
    assert any(_burst(c) > 0 for c in clusters)
    for c in clusters:
        # The burst counts members that signed up together: only those with a signup time.
        assert round(_burst(c) * c["size"]) <= timed.get(c["cluster_id"], 0), c["cluster_id"]
        assert "nan" not in c["reasons_json"]
