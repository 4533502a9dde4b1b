"""Learning signal weights from a truth file (``linkage.learn``, ``linkage learn``)."""

from __future__ import annotations

import tomllib
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from linkage.config import RunConfig, load_config
from linkage.evaluate import read_truth
from linkage.learn import (
    MAX_WEIGHT,
    dump_toml,
    fit_logistic,
    learn_from_input,
    weights_config,
)
from linkage.synth import generate
from tests import helpers

SECRET = b"learn-test-secret-0123456789abcdef"
invoke = partial(helpers.invoke, LINKAGE_SECRET=SECRET.decode())


@pytest.fixture(scope="module")
def plain(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("plain")
    generate(out, scenario="plain", n_accounts=5_000, seed=3)
    return out


def test_learned_weights_are_in_range_deterministic_and_load(plain: Path,
                                                             tmp_path: Path) -> None:
    truth = read_truth(plain / "truth.csv")
    first = learn_from_input(plain, truth, RunConfig(), SECRET)
    again = learn_from_input(plain, truth, RunConfig(), SECRET)
    assert first.weights == again.weights
    assert first.n_same > 0 and first.n_pairs > first.n_same
    assert {"card", "device"} <= set(first.weights)
    assert all(0.0 <= w < 1.0 and w <= MAX_WEIGHT for w in first.weights.values())
    # a shared card is the strongest tie in "plain"; a /24 range is mostly neighbours
    assert first.weights["card"] > first.weights.get("ip_net", 0.0)

    path = tmp_path / "weights.toml"
    path.write_text(dump_toml(weights_config(first.weights)), encoding="utf-8")
    cfg = load_config(path)
    assert cfg.signals.card.weight == first.weights["card"]
    for name, w in first.weights.items():
        if name.startswith("obs:"):
            assert cfg.signals.observation.kinds[name[4:]] == w


def _write(folder: Path, name: str, header: str, rows: list[str]) -> None:
    (folder / name).write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")


@pytest.fixture()
def tiny(tmp_path: Path) -> Path:
    """Two operator groups whose members share devices (same-group pairs only), and a coupon
    observation that only ever links accounts of different groups or legitimate accounts."""
    folder = tmp_path / "in"
    folder.mkdir()
    groups = {f"g1_{i}": "g1" for i in range(5)} | {f"g2_{i}": "g2" for i in range(5)}
    legit = [f"u{i}" for i in range(12)]
    ids = [*groups, *legit]
    # a day apart: no co-signup
    _write(folder, "accounts.csv", "account_id,created_at",
           [f"{a},2026-01-{1 + i:02d}T00:00:00Z" for i, a in enumerate(ids)])
    _write(folder, "devices.csv", "account_id,device_id",
           [f"{a},dev-{g}" for a, g in groups.items()]
           + [f"g1_{i},dev-g1-extra" for i in range(3)])
    coupons = [("g1_0", "u0"), ("g2_0", "u1"), ("u2", "u3"), ("u4", "u5"), ("g1_1", "g2_1"),
               ("u6", "u7"), ("g2_2", "u8")]
    _write(folder, "observations.csv", "account_id,kind,value",
           [f"{a},coupon,c{i}" for i, pair in enumerate(coupons) for a in pair])
    _write(folder, "truth.csv", "account_id,group_id",
           [f"{a},{g}" for a, g in groups.items()] + [f"{a}," for a in legit])
    return folder


def test_signal_that_links_only_same_group_pairs_outweighs_one_that_never_does(
        tiny: Path) -> None:
    fit = learn_from_input(tiny, read_truth(tiny / "truth.csv"), RunConfig(), SECRET)
    assert set(fit.weights) == {"device", "obs:coupon"}
    assert fit.weights["device"] > 0.5
    assert fit.weights["obs:coupon"] == 0.0
    assert fit.coef[fit.signals.index("obs:coupon")] < 0


def test_fit_logistic_recovers_a_known_model_and_is_monotone() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((20_000, 2))
    z = -1.0 + 4.0 * x[:, 0] - 2.0 * x[:, 1]
    y = rng.random(20_000) < 1 / (1 + np.exp(-z))
    b0, beta = fit_logistic(x, y, l2=0.0, balance=False)
    assert b0 == pytest.approx(-1.0, abs=0.15)
    assert beta == pytest.approx([4.0, -2.0], abs=0.25)


def test_cli_writes_a_config_merged_over_the_given_one(tiny: Path, tmp_path: Path) -> None:
    given = tmp_path / "given.toml"
    given.write_text("[communities]\nresolution = 0.07\n\n"
                     "[signals.device]\nweight = 0.7\ncap = 500\n", encoding="utf-8")
    out = tmp_path / "weights.toml"
    result = invoke("learn", "--input", tiny, "--truth", tiny / "truth.csv",
                    "--config", given, "--out", out)
    assert result.exit_code == 0, result.output
    assert "obs:coupon" in result.output
    data = tomllib.loads(out.read_text(encoding="utf-8"))
    assert data["communities"] == {"resolution": 0.07}
    assert data["signals"]["device"]["cap"] == 500
    assert data["signals"]["observation"]["kinds"]["coupon"] == 0.0
    cfg = load_config(out)
    assert cfg.signals.device.weight > 0.5 and cfg.communities.resolution == 0.07


def test_cli_bad_truth_file_is_exit_2(tiny: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("account_id,grp\na,1\n", encoding="utf-8")
    result = invoke("learn", "--input", tiny, "--truth", bad, "--out", tmp_path / "w.toml")
    assert result.exit_code == 2
    assert not (tmp_path / "w.toml").exists()


def test_dump_toml_quotes_odd_keys() -> None:
    data = weights_config({"obs:odd kind.x": 0.25, "card": 0.5})
    assert tomllib.loads(dump_toml(data)) == {
        "signals": {"card": {"weight": 0.5}, "observation": {"kinds": {"odd kind.x": 0.25}}}}


def test_cli_output_folder_must_exist(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "nowhere" / "w.toml"
    result = invoke("learn", "--input", tiny, "--truth", tiny / "truth.csv", "--out", out)
    assert result.exit_code == 2 and "nowhere' does not exist" in result.stderr
