"""Configuration: defaults, TOML, and errors that name the key."""

from __future__ import annotations

import dataclasses

import pytest

from linkage.config import RunConfig, load_config
from linkage.errors import ConfigError


def test_defaults_are_complete_and_hash_is_stable():
    a, b = RunConfig(), RunConfig.from_dict({})
    assert a == b and a.hash() == b.hash()
    assert RunConfig.from_dict({"seed": 1}).hash() != a.hash()


def test_toml_overrides_merge_tables(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(
        "seed = 7\n[communities]\nresolution = 0.1\n"
        "[scoring.weights]\nburst = 0.2\n"
        "[signals.observation.kinds]\nreferral_code = 0.3\n"
        "[signals.cosignup]\nweak_keys = ['bin']\n"
    )
    cfg = load_config(path)
    assert cfg.seed == 7 and cfg.communities.resolution == 0.1
    assert cfg.scoring.weights["burst"] == 0.2
    assert cfg.scoring.weights["issuer_reuse"] == RunConfig().scoring.weights["issuer_reuse"]
    assert cfg.signals.observation.kinds == {"referral_code": 0.3}
    assert cfg.signals.cosignup.weak_keys == ("bin",)
    assert cfg.to_dict()["signals"]["cosignup"]["weak_keys"] == ["bin"]


@pytest.mark.parametrize(
    "data,message",
    [
        ({"sed": 1}, "unknown configuration key 'sed'"),
        ({"graph": {"cliquemax": 3}}, "unknown configuration key 'graph.cliquemax'"),
        ({"signals": {"card": {"weight": "high"}}}, "'signals.card.weight' must be float"),
        ({"signals": {"card": {"weight": 1.5}}}, "'signals.card.weight' must be in [0, 1)"),
        ({"communities": {"objective": "louvain"}}, "'communities.objective' must be one of"),
        ({"scoring": {"weights": {"vibes": 0.2}}}, "scoring.weights"),
        ({"signals": {"cosignup": {"weak_keys": ["shoe_size"]}}}, "weak_keys"),
        ({"ingest": {"on_bad_rows": "ignore"}}, "'ingest.on_bad_rows' must be one of"),
        ({"engine": {"threads": True}}, "'engine.threads' must be int"),
        ({"graph": 3}, "'graph' must be a table"),
        ({"signals": {"activity_sync": {"alpha": 1.5}}},
         "'signals.activity_sync.alpha' must be in (0, 1), not 1.5"),
        ({"signals": {"prompt": {"min_shared": 30}}},
         "'signals.prompt.min_shared' must be at most signals.prompt.bands, not 30"),
        ({"signals": {"observation": {"kinds": {"referral": 1.0}}}},
         "'signals.observation.kinds.referral' must be in [0, 1), not 1.0"),
        ({"communities": {"core_min_size": 2}},
         "'communities.core_min_size' must be 0 (off) or at least 3, not 2"),
        ({"scoring": {"weights": {"burst": 2.0}}}, "'scoring.weights.burst' must be in [0, 1]"),
        ({"engine": {"spark": {"buckets": 0}}}, "'engine.spark.buckets' must be at least 1"),
        ({"ingest": {"max_line_bytes": 10}}, "'ingest.max_line_bytes' must be at least 1024"),
    ],
)
def test_bad_config_names_the_key(data, message):
    with pytest.raises(ConfigError) as exc:
        RunConfig.from_dict(data)
    assert message in str(exc.value)


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("seed = = 3")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    assert load_config(None) == RunConfig()


def test_a_partial_signal_table_keeps_that_signals_other_defaults():
    cfg = RunConfig.from_dict({"signals": {"card": {"weight": 0.7}, "device": {"cap": 500}}})
    assert (cfg.signals.card.weight, cfg.signals.card.cap) == (0.7, RunConfig().signals.card.cap)
    assert cfg.signals.device.weight == RunConfig().signals.device.weight
    assert cfg.signals.device.cap == 500


@pytest.mark.parametrize(("toml", "expected"), [
    ("", "1.5GB"),                                 # linkage's default
    ('[engine]\nmemory_limit = "3GB"\n', "3GB"),
    ('[engine]\nmemory_limit = ""\n', None),       # DuckDB's own default, 80% of RAM
])
def test_memory_limit_reaches_duckdb(tmp_path, toml, expected):
    import duckdb

    from linkage.engines import connect_duckdb

    def limit(con: duckdb.DuckDBPyConnection) -> str:
        (value,) = con.execute("SELECT current_setting('memory_limit')").fetchone() or ("",)
        return str(value)

    path = tmp_path / "c.toml"
    path.write_text(toml)
    reference = duckdb.connect()
    if expected is not None:
        reference.execute("SET memory_limit = ?", [expected])
    con = connect_duckdb(load_config(path).engine, tmp_path)
    try:
        assert limit(con) == limit(reference)
    finally:
        con.close()
        reference.close()


def _tables(table, at=""):
    yield at, table
    for f in dataclasses.fields(table):
        value = getattr(table, f.name)
        if dataclasses.is_dataclass(value):
            yield from _tables(value, f"{at}{f.name}.")


def test_every_default_is_within_the_range_written_next_to_its_key():
    """The ranges sit next to the fields (field metadata and a table's rules across keys);
    the defaults hold them, and a value outside is refused whichever table it is in."""
    checked = 0
    for at, table in _tables(RunConfig()):
        for f in dataclasses.fields(table):
            if "must" in f.metadata:
                what, ok = f.metadata["must"]
                assert ok(getattr(table, f.name)), f"{at}{f.name} is not {what}"
                checked += 1
        for ok, name, what, _ in getattr(table, "rules", lambda at: ())(at):
            assert ok, f"{at}{name} is not {what}"
    assert checked > 60
    with pytest.raises(ConfigError, match=r"'signals\.ip_net\.cap' must be at least 2, not 1"):
        RunConfig.from_dict({"signals": {"ip_net": {"cap": 1}}})
