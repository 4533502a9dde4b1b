"""``linkage serve``: the online check's contract, its keys, its arithmetic, swaps and SIGTERM.

The store-backed tests run on SQLite and, with ``LINKAGE_TEST_PG_URL``, on PostgreSQL, over a
real night of generated data (``linkage run``); nothing is mocked.
"""

from __future__ import annotations

import functools
import gc
import hmac
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient
from hypothesis import given, settings
from hypothesis import strategies as st

from linkage.config import EngineConfig, IngestConfig, RunConfig, SignalsConfig
from linkage.engines import connect_duckdb
from linkage.ingest import ingest
from linkage.pseudonymise import Pseudonymiser
from linkage.serve.app import MAX_BODY, ServeState, create_app
from linkage.serve.index import index_tables, key_codes, link_evidence, risk_of
from linkage.serve.keys import BadField, KeyMaker
from linkage.signals import build_links
from linkage.store import Store
from linkage.synth import generate
from tests import helpers
from tests.helpers import examples

SECRET = "serve-test-secret-0123456789abcdef"
TOKEN = "token-0123456789abcdef-serve"
PSEUDO = Pseudonymiser(SECRET.encode())
invoke = partial(helpers.invoke, LINKAGE_SECRET=SECRET)
PG_URL = os.environ.get("LINKAGE_TEST_PG_URL")
BACKENDS = [pytest.param("sqlite", id="sqlite")]
if PG_URL:
    BACKENDS.append(pytest.param("postgresql", id="postgresql", marks=pytest.mark.pg))
TABLES = ("accounts", "payment_instruments", "ip_events", "devices", "observations")


# -- a night of generated data ----------------------------------------------------------------


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("serve") / "data"
    generate(out, scenario="plain", n_accounts=3_000, seed=3)
    return out


@pytest.fixture(scope="module", params=BACKENDS)
def night(request: pytest.FixtureRequest, data: Path,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """A store holding one night over ``data``: (URL, run id)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'linkage.db'}"
        yield url, helpers.run_id_of(invoke("run", "--input", data, "--db", url))
        return
    assert PG_URL is not None
    with helpers.pg_database(PG_URL) as url:
        yield url, helpers.run_id_of(invoke("run", "--input", data, "--db", url))


@functools.lru_cache(maxsize=16)
def rows(data: Path, table: str) -> list[dict]:
    """The generated rows of ``table`` as the text a client would send (ISO timestamps);
    read once per folder (callers must not change them)."""
    out = []
    for row in pq.read_table(data / f"{table}.parquet").to_pylist():
        out.append({k: (v.astimezone(UTC).isoformat() if isinstance(v, datetime)
                        else None if v is None else str(v)) for k, v in row.items()})
    return out


def request_of(data: Path, account_ids: list[str]) -> dict[str, dict]:
    """Check requests describing ``account_ids`` exactly as the input does."""
    wanted = set(account_ids)
    bodies: dict[str, dict] = {a: {t: [] for t in TABLES[1:]} for a in account_ids}
    for r in rows(data, "accounts"):
        if r["account_id"] in wanted:
            bodies[r["account_id"]]["account"] = r
    for table in TABLES[1:]:
        for r in rows(data, table):
            if r["account_id"] in wanted:
                bodies[r["account_id"]][table].append(r)
    return bodies


def flagged_card(url: str, run_id: int, data: Path) -> tuple[str, str, int]:
    """(cluster_id, card fingerprint, members carrying it) of a card two or more members of
    a flagged cluster share."""
    with Store(url) as store:
        members = store.memberships(run_id).to_pylist()
    flagged = {m["account_id"]: m["cluster_id"] for m in members if m["flagged"]}
    by_card: dict[tuple[str, str], set[str]] = {}
    for r in rows(data, "payment_instruments"):
        if r["account_id"] in flagged:
            by_card.setdefault((flagged[r["account_id"]], r["fingerprint"]), set()).add(
                r["account_id"])
    (cluster, card), carriers = max(by_card.items(), key=lambda kv: len(kv[1]))
    assert len(carriers) >= 2
    return cluster, card, len(carriers)


@pytest.fixture
def client(night: tuple[str, int]) -> Iterator[tuple[TestClient, ServeState]]:
    url, run_id = night
    store = Store(url)
    state = ServeState(store, PSEUDO, TOKEN.encode(), poll_seconds=3600)
    state.load(run_id)
    with TestClient(create_app(state)) as c:
        yield c, state
    store.close()


AUTH = {"Authorization": f"Bearer {TOKEN}"}


def check(c: TestClient, body: object, **headers: str) -> object:
    return c.post("/v1/check", json=body, headers={**AUTH, **headers})


# -- the contract's shapes and status codes ---------------------------------------------------


@pytest.mark.slow
def test_healthz_and_check_shapes(client, night, data):
    c, _ = client
    _, run_id = night
    r = c.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok", "run_id": run_id}
    r = check(c, {"account": {"account_id": "new-1"}})
    assert r.status_code == 200
    assert r.json() == {"run_id": run_id, "risk": 0.0, "links": []}
    assert isinstance(r.json()["run_id"], int)


@pytest.mark.slow
def test_a_flagged_members_card_links_to_its_cluster_and_a_fresh_account_does_not(
        client, night, data):
    c, _ = client
    url, run_id = night
    cluster, card, carriers = flagged_card(url, run_id, data)
    body = {"account": {"account_id": "new-123", "created_at": "2026-05-01T10:00:00Z",
                        "email": "someone.new@example.org", "signup_ip": "198.51.100.77"},
            "payment_instruments": [{"fingerprint": f"  {card} "}],  # cleaned as ingest does
            "devices": [{"device_id": "never-seen-device"}]}
    r = check(c, body)
    assert r.status_code == 200, r.text
    reply = r.json()
    link = next(x for x in reply["links"] if x["cluster_id"] == cluster)
    assert link["flagged"] is True and 0 < link["evidence"] <= 1
    assert {"signal": "card", "members": carriers, "keys": 1} in link["shared"]
    assert reply["links"][0]["evidence"] >= link["evidence"]  # strongest first
    assert 0 < reply["risk"] <= 1
    fresh = {"account": {"account_id": "new-124", "email": "fresh@example.org"},
             "payment_instruments": [{"fingerprint": "tok_never_seen_before"}],
             "devices": [{"device_id": "another-fresh-device"}]}
    assert check(c, fresh).json()["links"] == []


@pytest.mark.slow
def test_a_flagged_members_device_links_to_its_cluster(client, night, data):
    c, _ = client
    url, run_id = night
    with Store(url) as store:
        flagged = {m["account_id"]: m["cluster_id"]
                   for m in store.memberships(run_id).to_pylist() if m["flagged"]}
    shared: dict[tuple[str, str], int] = {}
    for r in rows(data, "devices"):
        if r["account_id"] in flagged:
            k = (flagged[r["account_id"]], r["device_id"])
            shared[k] = shared.get(k, 0) + 1
    (cluster, device), n = max(shared.items(), key=lambda kv: kv[1])
    assert n >= 2
    reply = check(c, {"account": {"account_id": "x"}, "devices": [{"device_id": device}]}).json()
    assert cluster in [x["cluster_id"] for x in reply["links"]]


@pytest.mark.slow
@pytest.mark.parametrize(("body", "field"), [
    ({}, "account"),
    ([1, 2], "body"),
    ({"account": {}}, "account.account_id"),
    ({"account": {"account_id": 7}}, "account.account_id"),
    ({"account": {"account_id": "a", "created_at": "yesterday"}}, "account.created_at"),
    ({"account": {"account_id": "a", "signup_ip": "1.2.3"}}, "account.signup_ip"),
    ({"account": {"account_id": "a"}, "ip_events": [{"ip": "1.2.3.4"}, {"ip": "300.1.1.1"}]},
     "ip_events.1.ip"),
    ({"account": {"account_id": "a"}, "payment_instruments": [{"bin": "411111"}]},
     "payment_instruments.0.fingerprint"),
    ({"account": {"account_id": "a"}, "payment_instruments": [
        {"fingerprint": "4111 1111 1111 1111"}]}, "payment_instruments.0.fingerprint"),
    ({"account": {"account_id": "a"}, "devices": {"device_id": "d"}}, "devices"),
    ({"account": {"account_id": "a"}, "devices": ["d"]}, "devices.0"),
    ({"account": {"account_id": "a"}, "observations": [{"kind": "ref"}]},
     "observations.0.value"),
    ({"account": {"account_id": "a", "email": "x" * 10_001}}, "account.email"),
    ({"account": {"account_id": "a"}, "devices": [{"device_id": "d"}] * 1001}, "devices"),
])
def test_bad_bodies_are_400_naming_the_field(client, body, field):
    c, _ = client
    r = check(c, body)
    assert r.status_code == 400, r.text
    assert r.json()["field"] == field
    assert "4111" not in r.text  # a card number is never echoed


@pytest.mark.slow
def test_not_json_and_wrong_media_type_are_400(client):
    c, _ = client
    r = c.post("/v1/check", content=b"{not json", headers={**AUTH,
                                                          "Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["field"] == "body"
    r = c.post("/v1/check", content=b"{}", headers={**AUTH, "Content-Type": "text/plain"})
    assert r.status_code == 400 and r.json()["field"] == "Content-Type"


@pytest.mark.slow
def test_more_than_one_mib_is_413(client):
    c, _ = client
    pad = "x" * (MAX_BODY)
    r = check(c, {"account": {"account_id": "a"}, "pad": pad})
    assert r.status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: the size is counted as it comes
        yield b'{"account": {"account_id": "a"}, "pad": "'
        for _ in range(20):
            yield b"y" * 65536
        yield b'"}'

    r = c.post("/v1/check", content=chunks(), headers={**AUTH,
                                                      "Content-Type": "application/json"})
    assert r.status_code == 413
    at_limit = {"account": {"account_id": "a"}, "pad": ""}
    at_limit["pad"] = "z" * (MAX_BODY - len(json.dumps(at_limit)))
    assert len(json.dumps(at_limit)) == MAX_BODY
    r = c.post("/v1/check", content=json.dumps(at_limit).encode(),
               headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 200


@pytest.mark.slow
def test_token_is_required_and_compared_in_constant_time(client, monkeypatch):
    c, _ = client
    body = {"account": {"account_id": "a"}}
    r = c.post("/v1/check", json=body)
    assert r.status_code == 401 and r.content == b""
    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    wrong = "X" + TOKEN[1:]  # same length, one character off
    assert len(wrong) == len(TOKEN)
    r = c.post("/v1/check", json=body, headers={"Authorization": f"Bearer {wrong}"})
    assert r.status_code == 401 and r.content == b""
    assert calls == [(wrong.encode(), TOKEN.encode())]
    r = c.post("/v1/check", json=body, headers={"Authorization": f"Basic {TOKEN}"})
    assert r.status_code == 401
    assert check(c, body).status_code == 200


@pytest.mark.slow
def test_metrics_and_openapi(client, night):
    c, _ = client
    _, run_id = night
    check(c, {"account": {"account_id": "a"}})
    check(c, {"account": {}})
    text = c.get("/metrics").text
    assert 'linkage_serve_requests_total{endpoint="/v1/check",status="200"}' in text
    assert 'linkage_serve_errors_total{reason="bad_request"}' in text
    assert f"linkage_serve_run_id {float(run_id)}" in text
    assert "linkage_serve_request_seconds_bucket" in text
    assert "linkage_serve_index_age_seconds" in text
    spec = c.get("/openapi.json").json()
    body = spec["paths"]["/v1/check"]["post"]["requestBody"]["content"]["application/json"]
    assert "account" in body["schema"]["required"]
    assert "Account" in spec["components"]["schemas"]
    assert c.get("/docs").status_code == 200


# -- the keys are a night's keys ---------------------------------------------------------------


def night_links(folder: Path) -> tuple[dict[str, set[tuple[str, str]]], RunConfig]:
    """Each account's (signal, key) links, from a real ingest and signals stage."""
    cfg = RunConfig()
    con = connect_duckdb(EngineConfig())
    ingest(con, folder, cfg.ingest, PSEUDO)
    build_links(con, cfg.signals)
    got: dict[str, set[tuple[str, str]]] = {}
    for account_id, name, key in con.execute(
            "SELECT a.account_id, l.signal, l.key FROM links l JOIN accounts a USING (idx)"
    ).fetchall():
        got.setdefault(account_id, set()).add((name, key))
    return got, cfg


ODD = {
    "accounts": [
        {"account_id": "odd1", "created_at": "2026-05-01T12:14:59+02:00",
         "email": "  John.Smith+promo@GoogleMail.com ", "phone": "+44 (20) 7946-0018",
         "signup_ip": "::FFFF:10.1.2.3", "user_agent": "UA/1"},
        {"account_id": "odd2", "created_at": "2026-05-01 10:29:00",
         "email": "johnsmith@gmail.com", "phone": "442079460018",
         "signup_ip": "010.001.002.009", "user_agent": "UA/1"},
    ],
    "payment_instruments": [
        {"account_id": "odd1", "fingerprint": "tok_A", "bin": "4111 11",
         "billing_postal": "SW1A 1AA"},
        {"account_id": "odd2", "fingerprint": " tok_A", "bin": "411111",
         "billing_postal": "sw1a1aa"},
    ],
    "ip_events": [
        {"account_id": "odd1", "ip": "2001:DB8::1", "seen_at": "2026-05-01T10:00:00Z"},
        {"account_id": "odd2", "ip": "2001:0db8:0000:0000:0000:0000:0000:0002",
         "seen_at": "2026-05-01T10:00:00Z"},
    ],
    "devices": [{"account_id": "odd1", "device_id": "D1"},
                {"account_id": "odd2", "device_id": "D1 "}],
    "observations": [
        {"account_id": "odd1", "kind": "Referral_Code", "value": "R1",
         "seen_at": "2026-05-01T10:00:00Z"},
        {"account_id": "odd2", "kind": "referral_code", "value": "R1", "seen_at": None},
    ],
}


def _write(folder: Path, tables: dict[str, list[dict]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        columns = helpers.CONTRACT_COLUMNS[name]
        pq.write_table(pa.table({c: pa.array([r.get(c) for r in table], pa.string())
                                 for c in columns}), folder / f"{name}.parquet")


def test_request_keys_equal_a_nights_keys_on_odd_values(tmp_path):
    _write(tmp_path / "odd", ODD)
    links, cfg = night_links(tmp_path / "odd")
    maker = KeyMaker(PSEUDO, cfg.ingest, cfg.signals, ["referral_code"])
    for account_id in ("odd1", "odd2"):
        body = {"account": next(r for r in ODD["accounts"] if r["account_id"] == account_id)}
        for table in TABLES[1:]:
            body[table] = [r for r in ODD[table] if r["account_id"] == account_id]
        assert maker.keys(body) == links[account_id], account_id
    # The two spellings of one person's values are one person's keys.
    shared = links["odd1"] & links["odd2"]
    assert {s for s, _ in shared} >= {"card", "email", "phone", "device", "bin_postal",
                                      "ip_net", "obs:referral_code", "cosignup"}


_TEXT = st.text(alphabet=" \tAaBb.+@-_:09\u00a0é", min_size=0, max_size=12)
_IP = st.ip_addresses().flatmap(lambda ip: st.sampled_from([
    str(ip), str(ip).upper(), ip.exploded,
    *([f"::ffff:{ip}"] if ip.version == 4 else [])]))
_WHEN = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2099, 1, 1)).flatmap(
    lambda t: st.sampled_from([t.isoformat(timespec="seconds"),
                               t.isoformat(sep=" ", timespec="seconds"),
                               t.isoformat(timespec="seconds") + "Z",
                               t.isoformat(timespec="seconds") + "+05:30"]))


@st.composite
def _accounts(draw: st.DrawFn) -> dict[str, list[dict]]:
    tables: dict[str, list[dict]] = {t: [] for t in TABLES}
    for a in ("h1", "h2"):
        tables["accounts"].append({
            "account_id": a, "created_at": draw(_WHEN), "email": draw(_TEXT),
            "phone": draw(_TEXT), "signup_ip": draw(st.none() | _IP),
            "user_agent": draw(_TEXT)})
        fingerprint = "tok" + draw(_TEXT)
        tables["payment_instruments"].append({
            "account_id": a, "fingerprint": fingerprint, "bin": draw(_TEXT),
            "billing_postal": draw(_TEXT)})
        tables["ip_events"].append({"account_id": a, "ip": draw(_IP), "seen_at": draw(_WHEN)})
        tables["devices"].append({"account_id": a, "device_id": "d" + draw(_TEXT)})
        tables["observations"].append({"account_id": a, "kind": "k" + draw(_TEXT).strip(),
                                       "value": "v" + draw(_TEXT), "seen_at": draw(_WHEN)})
    return tables


@settings(max_examples=examples(12), deadline=None)
@given(tables=_accounts())
def test_request_keys_equal_a_nights_keys_on_drawn_values(tables):
    with tempfile.TemporaryDirectory() as tmp:
        _write(Path(tmp) / "in", tables)
        links, cfg = night_links(Path(tmp) / "in")
    kinds = sorted({s[4:] for keys in links.values() for s, _ in keys if s.startswith("obs:")})
    maker = KeyMaker(PSEUDO, cfg.ingest, cfg.signals, kinds)
    for account in tables["accounts"]:
        body = {"account": account, **{t: [r for r in tables[t]
                                          if r["account_id"] == account["account_id"]]
                                       for t in TABLES[1:]}}
        assert maker.keys(body) == links.get(account["account_id"], set())


@pytest.mark.slow
def test_request_keys_equal_a_nights_keys_on_generated_accounts(data):
    links, cfg = night_links(data)
    kinds = sorted({s[4:] for keys in links.values() for s, _ in keys if s.startswith("obs:")})
    maker = KeyMaker(PSEUDO, cfg.ingest, cfg.signals, kinds)
    accounts = [r["account_id"] for r in rows(data, "accounts")]  # every one of them
    for account_id, body in request_of(data, accounts).items():
        assert maker.keys(body) == links.get(account_id, set()), account_id


def test_key_maker_refuses_without_quoting():
    maker = KeyMaker(PSEUDO, IngestConfig(), SignalsConfig(), [])
    with pytest.raises(BadField) as exc:
        maker.keys({"account": {"account_id": "a", "phone": ["555"]}})
    assert exc.value.field == "account.phone" and "555" not in str(exc.value)


# -- the arithmetic, by hand --------------------------------------------------------------------


def _index(keys: list[tuple[str, str, str, int, int | None]],
           clusters: list[tuple[str, float, bool]]):
    table = pa.table({
        "cluster_id": [k[0] for k in keys], "signal": [k[1] for k in keys],
        "key_hash": [k[2] for k in keys],
        "n_members": pa.array([k[3] for k in keys], pa.int32()),
        "n_global": pa.array([k[4] for k in keys], pa.int32())})
    cl = pa.table({"cluster_id": [c[0] for c in clusters],
                   "size": pa.array([10] * len(clusters), pa.int32()),
                   "score": [c[1] for c in clusters], "flagged": [c[2] for c in clusters]})
    return index_tables(7, None, PSEUDO, RunConfig(), table, cl)


def test_evidence_and_risk_match_hand_computed_values():
    h = PSEUDO.hash
    index = _index(
        [("cA", "card", h("card", "tok_A"), 10, 10),            # all ten carriers in cA
         ("cA", "device", h("device", "dev_1"), 2, 4),          # two of its four carriers
         ("cB", "device", h("device", "dev_1"), 2, 4),          # the other two
         ("cB", "ip", h("ip", "203.0.113.7"), 3, 250)],         # above the ip cap (200)
        [("cA", 0.9, True), ("cB", 0.3, False)])
    reply = index.check({"account": {"account_id": "n", "signup_ip": "203.0.113.7"},
                         "payment_instruments": [{"fingerprint": "tok_A"}],
                         "devices": [{"device_id": "dev_1"}]})
    # card: 0.9 * ln(2000/11)/ln(1000) = 0.9 * 0.753212 = 0.677891 (m/n = 1)
    # device: 0.8 * ln(1000/5)/ln(500) * 2/4 = 0.8 * 0.852559 * 0.5 = 0.341023
    # cA: 1 - (1 - 0.677891)(1 - 0.341023) = 0.787738; cB: device alone, 0.341023
    # risk: only cA is flagged: 0.787738 * 0.9 = 0.708964
    links = {x["cluster_id"]: x for x in reply["links"]}
    assert links["cA"]["evidence"] == pytest.approx(0.787738, abs=2e-6)
    assert links["cB"]["evidence"] == pytest.approx(0.341023, abs=2e-6)
    assert reply["risk"] == pytest.approx(0.708964, abs=2e-6)
    assert [x["cluster_id"] for x in reply["links"]] == ["cA", "cB"]
    assert [s["signal"] for s in links["cB"]["shared"]] == ["device"]  # the hub IP: nothing
    assert link_evidence({"card": 0.5, "ip": 0.5}) == 0.75
    assert risk_of([(0.5, 1.0, True), (0.5, 1.0, True), (1.0, 1.0, False)]) == 0.75


def test_risk_reaches_one_half_for_an_operators_card_and_device():
    h = PSEUDO.hash
    index = _index([("cA", "card", h("card", "c"), 3, 3),
                    ("cA", "device", h("device", "d"), 3, 3)], [("cA", 0.95, True)])
    reply = index.check({"account": {"account_id": "n"}, "payment_instruments": [
        {"fingerprint": "c"}], "devices": [{"device_id": "d"}]})
    card = 0.9 * math.log(2000 / 4) / math.log(1000)
    device = 0.8 * math.log(1000 / 4) / math.log(500)
    assert reply["risk"] == pytest.approx(0.95 * (1 - (1 - card) * (1 - device)), abs=2e-6)
    assert reply["risk"] >= 0.5


def test_key_codes_are_equal_for_equal_texts_only():
    hi, lo = key_codes(["card", "card", "device", "card"], ["k1", "k1", "k1", "k2"])
    assert hi[0] == hi[1] and lo[0] == lo[1]
    assert len({(int(a), int(b)) for a, b in zip(hi, lo)}) == 3
    long = ["x" * 200 + str(i) for i in range(3)]  # longer than one word, differing late
    hi, lo = key_codes(["s"] * 3, long)
    assert len(set(hi.tolist())) == 3
    # A key's code does not depend on the other keys it is computed with (their lengths).
    texts = ["k", "k" * 8, "k" * 9, "cosignup-like:" + "0" * 32 + ":900:970113", "k" * 300]
    together = key_codes(["s"] * len(texts), texts)
    for i, text in enumerate(texts):
        alone = key_codes(["s"], [text])
        assert (alone[0][0], alone[1][0]) == (together[0][i], together[1][i]), text


# -- a newer run under load ----------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_switch_to_a_newer_run_under_concurrent_requests(night, data):
    import httpx2 as httpx
    import uvicorn

    url, run_id = night
    store = Store(url)
    state = ServeState(store, PSEUDO, TOKEN.encode(), poll_seconds=0.1)
    state.load(run_id)
    old = weakref.ref(state.index)
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(state), host="127.0.0.1", port=port,
                                           log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    cluster, card, _ = flagged_card(url, run_id, data)
    body = {"account": {"account_id": "n"}, "payment_instruments": [{"fingerprint": card}]}
    seen: list[tuple[int, int]] = []
    failures: list[str] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=AUTH) as http:
            while not stop.is_set():
                sent = time.monotonic()
                try:
                    r = http.post("/v1/check", json=body)
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                    continue
                if r.status_code != 200:
                    failures.append(r.text)
                    continue
                reply = r.json()
                if cluster not in [x["cluster_id"] for x in reply["links"]]:
                    failures.append(f"run {reply['run_id']}: no link")
                seen.append((sent, reply["run_id"]))
    try:
        while not server.started:
            time.sleep(0.05)
        workers = [threading.Thread(target=hammer) for _ in range(4)]
        for w in workers:
            w.start()
        time.sleep(0.5)
        newer = helpers.run_id_of(invoke("run", "--input", data, "--db", url))
        deadline = time.monotonic() + 120
        while state.index.run_id != newer and time.monotonic() < deadline:
            time.sleep(0.05)
        swapped = time.monotonic()
        time.sleep(0.5)
        stop.set()
        for w in workers:
            w.join()
    finally:
        stop.set()
        server.should_exit = True
        thread.join(30)
        store.close()
    assert not failures, failures[:3]
    runs = [r for _, r in sorted(seen)]
    assert runs[0] == run_id and runs[-1] == newer
    assert {r for t, r in seen if t > swapped} == {newer}  # sent after the swap: the new run
    gc.collect()
    assert old() is None  # the old index was freed


# -- the command: exit statuses, SIGTERM with a request in flight --------------------------------


def _read_all(s: socket.socket) -> bytes:
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    return out


def test_serve_usage_errors_exit_2(tmp_path):
    res = invoke("serve", "--db", f"sqlite:///{tmp_path}/none.db",
                 LINKAGE_API_TOKEN=None, LINKAGE_API_TOKEN_FILE=None)
    assert res.exit_code == 2 and "LINKAGE_API_TOKEN" in res.stderr
    res = invoke("serve", "--db", f"sqlite:///{tmp_path}/none.db", LINKAGE_API_TOKEN="short")
    assert res.exit_code == 2 and "at least 16" in res.stderr
    res = invoke("serve", "--db", f"sqlite:///{tmp_path}/none.db", LINKAGE_API_TOKEN=TOKEN)
    assert res.exit_code == 2 and "no store at" in res.stderr
    assert not (tmp_path / "none.db").exists()  # only reads: never creates a store
    res = invoke("serve", "--db", f"sqlite:///{tmp_path}/none.db", LINKAGE_API_TOKEN=TOKEN,
                 LINKAGE_SECRET=None, LINKAGE_SECRET_FILE=None)
    assert res.exit_code == 2 and "pseudonymisation key" in res.stderr
    res = invoke("serve", "--port", "70000", LINKAGE_API_TOKEN=TOKEN)
    assert res.exit_code == 2
    assert "Example: linkage " in invoke("serve", "--help").stdout


@pytest.mark.slow
@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_finishes_the_request_in_flight_and_exits_0(night, data, tmp_path, workers):
    url, _ = night
    with Store(url) as store:
        run_id = store.latest_run_id()  # another test may have published a newer run
    port = _free_port()
    token_file = tmp_path / "api-token"
    token_file.write_text(TOKEN + "\n")
    env = {**os.environ, "LINKAGE_SECRET": SECRET, "LINKAGE_API_TOKEN_FILE": str(token_file),
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env.pop("LINKAGE_API_TOKEN", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "linkage", "serve", "--db", url, "--port", str(port),
         "--workers", str(workers)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, proc.communicate()
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    if b'"run_id":%d' % run_id in _read_all(s):
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline
            time.sleep(0.2)
        body = json.dumps({"account": {"account_id": "in-flight"}}).encode()
        with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
            s.sendall(b"POST /v1/check HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      + f"Authorization: Bearer {TOKEN}\r\nContent-Length: {len(body)}\r\n\r\n"
                      .encode() + body[:10])
            time.sleep(0.5)  # the request is in flight: headers read, body half sent
            proc.send_signal(signal.SIGTERM)
            time.sleep(0.5)
            s.sendall(body[10:])
            reply = _read_all(s)
        assert reply.startswith(b"HTTP/1.1 200"), reply[:200]
        assert b'"run_id":%d' % run_id in reply
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()[-2000:]
        assert b"in-flight" not in out + err  # nothing of a request is logged
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()  # reaps it and closes its pipes



@pytest.mark.slow
def test_a_key_that_is_not_the_stores_is_refused(night):
    url, _ = night
    res = invoke("serve", "--db", url, "--port", _free_port(), LINKAGE_API_TOKEN=TOKEN,
                 LINKAGE_SECRET="another-key-0123456789abcdef")
    assert res.exit_code == 2 and "key" in res.stderr
