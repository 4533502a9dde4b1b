"""Keyed hashing: the DuckDB macro equals Python's hmac; keys load from env or file."""

from __future__ import annotations

import hashlib
import hmac

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from linkage.errors import ConfigError
from linkage.pseudonymise import Pseudonymiser, load_secret
from tests.helpers import examples

TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
               max_size=80)


@settings(max_examples=examples(200), deadline=None)
@given(secret=st.binary(min_size=16, max_size=130), ns=st.sampled_from(["email", "ip", "obs:x"]),
       value=TEXT)
def test_sql_macro_equals_python_hmac(secret, ns, value):
    p = Pseudonymiser(secret)
    con = duckdb.connect()
    p.install(con)
    (got,) = con.execute("SELECT lk_hash(?, ?)", [ns, value]).fetchone()
    want = hmac.new(secret, f"{ns}\x1f{value}".encode(), hashlib.sha256).hexdigest()[:32]
    assert got == want == p.hash(ns, value)


def test_namespaces_and_keys_separate_hashes():
    a, b = Pseudonymiser(b"k" * 32), Pseudonymiser(b"j" * 32)
    assert a.hash("email", "x") != a.hash("phone", "x")
    assert a.hash("email", "x") != b.hash("email", "x")
    assert a.hash("email", None) is None
    assert a.check_value() != b.check_value()


def test_load_secret_sources(tmp_path, monkeypatch):
    monkeypatch.delenv("LINKAGE_SECRET", raising=False)
    monkeypatch.delenv("LINKAGE_SECRET_FILE", raising=False)
    with pytest.raises(ConfigError, match="no pseudonymisation key"):
        load_secret()
    monkeypatch.setenv("LINKAGE_SECRET", "short")
    with pytest.raises(ConfigError, match="at least 16"):
        load_secret()
    monkeypatch.setenv("LINKAGE_SECRET", "s" * 20)
    assert load_secret() == b"s" * 20
    key = tmp_path / "key"
    key.write_text("f" * 64 + "\n")
    assert load_secret(key) == b"f" * 64  # an explicit file wins over the environment
    monkeypatch.delenv("LINKAGE_SECRET")
    monkeypatch.setenv("LINKAGE_SECRET_FILE", str(key))
    assert load_secret() == b"f" * 64
    with pytest.raises(ConfigError, match="cannot read key file"):
        load_secret(tmp_path / "nope")
