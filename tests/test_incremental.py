"""Incremental runs: only tonight's new rows are read, and the result equals a full run."""

from __future__ import annotations

import shutil
from functools import partial
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from linkage.config import load_config
from linkage.errors import ConfigError, InputError
from linkage.incremental import state_path
from linkage.pipeline import run_pipeline
from linkage.store import Store
from linkage.synth import generate
from tests import helpers

pytestmark = pytest.mark.slow

SECRET = b"incremental-test-secret-0123456789"
invoke = partial(helpers.invoke, LINKAGE_SECRET=SECRET.decode())


@pytest.fixture(scope="module")
def nights(tmp_path_factory) -> tuple[Path, Path, Path, Path]:
    """``all`` (the cumulative input), ``old`` (night 1), ``delta1`` (what came on night 2),
    ``delta2`` (night 3: nothing new but a few rows)."""
    root = tmp_path_factory.mktemp("nights")
    generate(root / "all", scenario="mixed", n_accounts=4_000, seed=5)
    (root / "all" / "truth.csv").unlink()
    helpers.split_nights(root / "all", root / "old", root / "delta1", every=100)
    # night 3: a copy of the first rows of every table under new timestamps is "new"
    (root / "delta2").mkdir()
    for f in (root / "all").glob("*.parquet"):
        t = pq.read_table(f)
        pq.write_table(t.slice(0, 0) if f.name == "accounts.parquet" else t.slice(0, 5),
                       root / "delta2" / f.name)
    return root / "all", root / "old", root / "delta1", root / "delta2"


def _result(store: Store, run_id: int) -> dict:
    clusters = store.clusters(run_id).select(
        ["cluster_id", "size", "score", "flagged", "origin", "parents_json", "features_json",
         "contributions_json", "reasons_json", "first_seen_run_id"])
    with store.engine.connect() as conn:
        lineage = [tuple(r) for r in conn.exec_driver_sql(
            "SELECT cluster_id, kind, other_cluster_id, overlap, jaccard FROM lineage "
            f"WHERE run_id = {int(run_id)} ORDER BY cluster_id, kind, other_cluster_id")]
        evidence = sorted(tuple(r) for r in conn.exec_driver_sql(
            "SELECT cluster_id, account_a, account_b, weight FROM evidence "
            f"WHERE run_id = {int(run_id)}"))
    return {"memberships": store.memberships(run_id).to_pylist(),
            "clusters": clusters.sort_by("cluster_id").to_pylist(),
            "lineage": lineage, "evidence": evidence}


def test_incremental_equals_a_full_run_on_the_cumulative_input(db_url, tmp_path, nights):
    full_input, old, delta1, _ = nights
    cfg = load_config(None)
    state = tmp_path / "state"
    with Store(f"sqlite:///{tmp_path / 'full.db'}") as full:
        run_pipeline(old, full, cfg, SECRET)
        reference = run_pipeline(full_input, full, cfg, SECRET)
        expected = _result(full, reference.run_id)
    with Store(db_url) as store:
        first = run_pipeline(old, store, cfg, SECRET, state_dir=state)
        assert state_path(state, first.run_id).is_dir()
        night = run_pipeline(delta1, store, cfg, SECRET, state_dir=state, incremental=True)
        got = _result(store, night.run_id)
    # Only the delta was read ...
    assert sum(night.rows_read.values()) < sum(reference.rows_read.values()) / 10
    # ... and the result is the full run's, cluster ids, scores, lineage and evidence alike.
    assert night.n_accounts == reference.n_accounts and night.n_edges == reference.n_edges
    assert got["memberships"] == expected["memberships"]
    assert got["clusters"] == expected["clusters"]
    assert got["lineage"] == expected["lineage"]
    assert got["evidence"] == expected["evidence"]
    assert len(got["clusters"]) > 100
    # Only the latest run's state is kept.
    assert sorted(p.name for p in state.iterdir()) == [f"run-{night.run_id}"]


def test_incremental_nights_chain_and_equal_full_runs(tmp_path, nights):
    full_input, old, delta1, delta2 = nights
    cfg = load_config(None)
    night3 = tmp_path / "night3"  # the cumulative input of night 3, for the full run
    shutil.copytree(full_input, night3)
    for f in delta2.glob("*.parquet"):
        extra = pq.read_table(f)
        if extra.num_rows:
            t = pq.read_table(night3 / f.name)
            pq.write_table(pa.concat_tables([t, extra.cast(t.schema)]), night3 / f.name)
    state = tmp_path / "state"
    with Store(f"sqlite:///{tmp_path / 'full.db'}") as full:
        for folder in (old, full_input, night3):
            last = run_pipeline(folder, full, cfg, SECRET)
        expected = _result(full, last.run_id)
    with Store(f"sqlite:///{tmp_path / 'inc.db'}") as store:
        run_pipeline(old, store, cfg, SECRET, state_dir=state)
        for delta in (delta1, delta2):
            last = run_pipeline(delta, store, cfg, SECRET, state_dir=state, incremental=True)
        assert _result(store, last.run_id) == expected


def test_incremental_refuses_without_a_usable_state(tmp_path, nights):
    _, old, delta1, _ = nights
    cfg = load_config(None)
    state = tmp_path / "state"
    with Store(f"sqlite:///{tmp_path / 's.db'}") as store:
        with pytest.raises(ConfigError, match="earlier run"):
            run_pipeline(delta1, store, cfg, SECRET, state_dir=state, incremental=True)
        with pytest.raises(ConfigError, match="--state"):
            run_pipeline(delta1, store, cfg, SECRET, incremental=True)
        run_pipeline(old, store, cfg, SECRET)  # a full run without --state: no state kept
        with pytest.raises(ConfigError, match="no incremental state"):
            run_pipeline(delta1, store, cfg, SECRET, state_dir=state, incremental=True)
        run_pipeline(old, store, cfg, SECRET, state_dir=state)
        with pytest.raises(ConfigError, match="another pseudonymisation key"):
            run_pipeline(delta1, store, cfg, b"another-secret-0123456789abcdef",
                         state_dir=state, incremental=True)
        # A known account sent again as new, and a row of an account nobody knows.
        bad = tmp_path / "bad"
        shutil.copytree(delta1, bad)
        accounts = pq.read_table(delta1 / "accounts.parquet")
        known = pq.read_table(old / "accounts.parquet").slice(0, 1)
        pq.write_table(pa.concat_tables([accounts, known.cast(accounts.schema)]),
                       bad / "accounts.parquet")
        devices = pq.read_table(delta1 / "devices.parquet")
        pq.write_table(devices.set_column(0, "account_id", pa.array(
            ["nobody"] * devices.num_rows)), bad / "devices.parquet")
        with pytest.raises(InputError) as err:
            run_pipeline(bad, store, cfg, SECRET, state_dir=state, incremental=True)
        text = str(err.value)
        assert "duplicate account_id" in text and "unknown account_id" in text
        assert "nobody" in text


def test_a_failed_run_leaves_the_latest_state_in_place(tmp_path, nights, monkeypatch):
    _, old, delta1, _ = nights
    cfg = load_config(None)
    state = tmp_path / "state"
    with Store(f"sqlite:///{tmp_path / 's.db'}") as store:
        first = run_pipeline(old, store, cfg, SECRET, state_dir=state)

        def crash(*_a, **_k):
            raise RuntimeError("power cut during publish")

        monkeypatch.setattr(store, "publish_run", crash)
        with pytest.raises(RuntimeError):
            run_pipeline(delta1, store, cfg, SECRET, state_dir=state, incremental=True)
        monkeypatch.undo()
        assert store.latest_run_id() == first.run_id
        assert state_path(state, first.run_id).is_dir()
        # The next night builds on the last published run and cleans up.
        night = run_pipeline(delta1, store, cfg, SECRET, state_dir=state, incremental=True)
        assert sorted(p.name for p in state.iterdir()) == [f"run-{night.run_id}"]


def test_cli_incremental_run(tmp_path, nights):
    _, old, delta1, _ = nights
    db = f"sqlite:///{tmp_path / 'cli.db'}"
    first = invoke("run", "--input", old, "--db", db, "--state", tmp_path / "st", "--quiet")
    assert first.exit_code == 0, first.output
    res = invoke("run", "--incremental", "--input", delta1, "--db", db,
                 "--state", tmp_path / "st", "--quiet")
    assert helpers.run_id_of(res) == 2
    res = invoke("run", "--incremental", "--input", delta1, "--db", db, "--quiet")
    assert res.exit_code == 2 and "--state" in res.output


def test_incremental_refuses_after_an_erasure(tmp_path, nights):
    from linkage.pseudonymise import Pseudonymiser
    from linkage.store.erase import forget_account

    _, old, delta1, _ = nights
    cfg = load_config(None)
    state = tmp_path / "state"
    with Store(f"sqlite:///{tmp_path / 's.db'}") as store:
        first = run_pipeline(old, store, cfg, SECRET, state_dir=state)
        member = store.memberships(first.run_id).column("account_id")[0].as_py()
        forget_account(store, member, Pseudonymiser(SECRET), by="dpo")
        # The state still holds the account's rows: building on it would bring them back.
        with pytest.raises(ConfigError, match="erased"):
            run_pipeline(delta1, store, cfg, SECRET, state_dir=state, incremental=True)


def test_the_state_holds_identifying_values_only_as_keyed_hashes(tmp_path, nights):
    _, old, _, _ = nights
    state = tmp_path / "state"
    with Store(f"sqlite:///{tmp_path / 's.db'}") as store:
        run = run_pipeline(old, store, load_config(None), SECRET, state_dir=state)
    raw: set[str] = set()
    for table, columns in {"accounts": ("email", "phone", "display_name", "signup_ip"),
                           "payment_instruments": ("fingerprint",), "ip_events": ("ip",),
                           "devices": ("device_id",), "observations": ("value",)}.items():
        t = pq.read_table(old / f"{table}.parquet")
        for col in columns:
            if col in t.column_names:
                raw |= {v for v in t.column(col).to_pylist() if v}
    assert len(raw) > 1000
    folder = state_path(state, run.run_id)
    assert folder.stat().st_mode & 0o077 == 0  # owner only
    stored: set[str] = set()
    for f in folder.glob("*.parquet"):
        t = pq.read_table(f)
        for name in t.column_names:
            if pa.types.is_string(t.schema.field(name).type):
                stored |= set(t.column(name).drop_null().to_pylist())
    assert stored and not raw & stored
