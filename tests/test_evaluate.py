"""Evaluation against truth files, hand-computed."""

from __future__ import annotations

import pyarrow as pa
import pytest

from linkage.errors import InputError
from linkage.evaluate import evaluate_flagged, read_truth


def test_hand_computed_case(tmp_path):
    truth = tmp_path / "truth.csv"
    truth.write_text("account_id,group_id\na,g1\nb,g1\nc,g2\nd,\ne,\nf,\n")
    m = pa.table({"account_id": ["a", "b", "d", "e"], "flagged": [True, True, True, False]})
    r = evaluate_flagged(read_truth(truth), m)
    # flagged {a, b, d}; operators {a, b, c}: tp 2, fp 1, fn 1
    assert (r.true_positives, r.false_positives, r.false_negatives) == (2, 1, 1)
    assert r.precision == pytest.approx(2 / 3, abs=1e-4)
    assert r.recall == pytest.approx(2 / 3, abs=1e-4)
    assert r.f1 == pytest.approx(2 / 3, abs=1e-4)
    assert r.false_positive_rate == pytest.approx(1 / 3, abs=1e-6)


def test_nothing_flagged(tmp_path):
    truth = tmp_path / "t.csv"
    truth.write_text("group_id,account_id\ng,a\n,b\n")
    r = evaluate_flagged(read_truth(truth), pa.table({"account_id": pa.array([], pa.string()),
                                                      "flagged": pa.array([], pa.bool_())}))
    assert (r.precision, r.recall, r.f1) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize(
    "content,message",
    [
        ("account,group_id\na,\n", "column 'account_id'"),
        ("account_id,group_id\na,\na,g\n", "row 2: duplicate account_id (value 'a')"),
        ("account_id,group_id\n,g\n", "row 1: missing account_id"),
    ],
)
def test_bad_truth_files(tmp_path, content, message):
    path = tmp_path / "t.csv"
    path.write_text(content)
    with pytest.raises(InputError) as exc:
        read_truth(path)
    assert message in str(exc.value)
    assert "t.csv" in str(exc.value)
    assert exc.value.exit_code == 2


def test_missing_truth_file(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        read_truth(tmp_path / "nope.csv")


def test_flagged_accounts_missing_from_truth_are_legitimate(tmp_path):
    truth = tmp_path / "t.csv"
    truth.write_text("account_id,group_id\na,g\n")
    m = pa.table({"account_id": ["a", "x", "y"], "flagged": [True, True, True]})
    r = evaluate_flagged(read_truth(truth), m)
    assert (r.false_positives, r.legitimate_accounts) == (2, 2)
    assert r.false_positive_rate == 1.0


def test_semicolon_file_is_not_sniffed_into_a_truth_file(tmp_path):
    truth = tmp_path / "t.csv"
    truth.write_text("account_id;group_id\na;g\n")
    with pytest.raises(InputError, match="missing required column"):
        read_truth(truth)
