"""``linkage generate --night N``: the same world a night later."""

from __future__ import annotations

from pathlib import Path

import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from linkage.synth import generate
from linkage.synth.nights import TIME_COLUMNS
from tests import helpers


@pytest.fixture(scope="module")
def worlds(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    root = tmp_path_factory.mktemp("worlds")
    for night in (1, 2, 3):
        generate(root / f"n{night}", scenario="mixed", n_accounts=4_000, seed=9,
                 group_sizes=(10, 60), night=night)
    return {night: root / f"n{night}" for night in (1, 2, 3)}


def _truth(folder: Path) -> dict[str, str]:
    t = pacsv.read_csv(folder / "truth.csv",
                       convert_options=pacsv.ConvertOptions(strings_can_be_null=False))
    return dict(zip(t["account_id"].to_pylist(), t["group_id"].to_pylist(), strict=True))


@pytest.mark.parametrize("later", [2, 3])
def test_a_later_night_keeps_every_earlier_row_and_adds_a_day(worlds, later):
    earlier = later - 1
    for name, column in TIME_COLUMNS.items():
        old = pq.read_table(worlds[earlier] / f"{name}.parquet")
        new = pq.read_table(worlds[later] / f"{name}.parquet")
        assert new.num_rows > old.num_rows, name
        assert new.slice(0, old.num_rows).equals(old), name  # every earlier row, unchanged
        added = new.slice(old.num_rows)
        last = pc.max(old[column]).as_py()
        first_new = pc.min(added[column]).as_py()
        assert first_new > last, name  # the new rows are a day later
        assert (pc.max(added[column]).as_py() - first_new).days < 1, name
    old_ids = pq.read_table(worlds[earlier] / "accounts.parquet")["account_id"].to_pylist()
    new_ids = pq.read_table(worlds[later] / "accounts.parquet")["account_id"].to_pylist()
    assert len(set(new_ids)) == len(new_ids)
    assert new_ids[len(old_ids)] == f"a{len(old_ids):07d}"  # numbered after the last one


def test_rings_grow_and_two_merge(worlds):
    night1, night2 = _truth(worlds[1]), _truth(worlds[2])
    groups1 = {g for g in night1.values() if g}
    groups2 = {g for g in night2.values() if g}
    assert len(groups2) == len(groups1) - 1  # two groups are one operator's
    [gone] = groups1 - groups2
    [kept] = {night2[a] for a, g in night1.items() if g == gone}
    assert kept in groups1
    recruits = {a: g for a, g in night2.items() if a not in night1 and g}
    assert recruits and set(recruits.values()) <= groups2
    size1 = sum(g == kept for g in night1.values()) + sum(g == gone for g in night1.values())
    assert sum(g == kept for g in night2.values()) > size1  # bridges (and maybe recruits)
    legit = [a for a, g in night2.items() if a not in night1 and not g]
    assert len(legit) == round(len(night1) / 182)  # a day's signups


def test_a_later_night_is_reproducible(worlds, tmp_path):
    generate(tmp_path, scenario="mixed", n_accounts=4_000, seed=9, group_sizes=(10, 60),
             night=2)
    for name in (*TIME_COLUMNS, "truth"):
        ext = "csv" if name == "truth" else "parquet"
        assert (tmp_path / f"{name}.{ext}").read_bytes() == \
            (worlds[2] / f"{name}.{ext}").read_bytes(), name


def test_night_is_refused_where_it_is_not_made(tmp_path):
    res = helpers.invoke("generate", "--out", tmp_path, "--scenario", "usageonly",
                         "--accounts", 500, "--night", 2)
    assert res.exit_code == 2 and "later night" in res.output
    res = helpers.invoke("generate", "--out", tmp_path, "--night", 0)
    assert res.exit_code == 2
    with pytest.raises(ValueError, match="night must be 1 or later"):
        generate(tmp_path, scenario="plain", n_accounts=500, night=0)
