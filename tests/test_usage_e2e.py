"""End to end on ``usageonly``: operators with clean metadata are found from their usage alone.

``linkage generate`` + ``linkage run`` + ``linkage evaluate`` through the CLI on a few
thousand accounts, with the default configuration and with the usage signals switched off
(metadata alone must not find them).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_cli import invoke, run_ok

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("usageonly")
    res = invoke("generate", "--out", out, "--scenario", "usageonly", "--accounts", "6000",
                 "--operator-share", "0.03", "--group-sizes", "10", "60", "--seed", "2")
    assert res.exit_code == 0, res.output
    return out


def _evaluate(data: Path, db: str) -> dict:
    res = invoke("evaluate", "--truth", data / "truth.csv", "--db", db, "--json")
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_usage_finds_operators_with_clean_metadata(data: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'u.db'}"
    run_ok(data, db, "--quiet")
    q = _evaluate(data, db)
    assert q["operator_accounts"] == 180
    assert q["f1"] >= 0.95, q
    assert q["false_positive_rate"] <= 0.001, q


def test_metadata_alone_cannot(data: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "meta.toml"
    # every signal that reads interactions off
    cfg.write_text("".join(f"[signals.{name}]\nenabled = false\n" for name in
                           ("prompt", "prompt_sync", "template", "template_pool",
                            "activity_sync", "activity_group")))
    db = f"sqlite:///{tmp_path / 'm.db'}"
    run_ok(data, db, "--quiet", "--config", cfg)
    q = _evaluate(data, db)
    assert q["recall"] <= 0.1, q
