"""Evaluation against truth files, hand-computed."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from linkage.errors import InputError
from linkage.evaluate import adjusted_rand, evaluate_flagged, read_truth
from tests.helpers import examples


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


def test_cluster_metrics_hand_computed(tmp_path):
    truth = tmp_path / "t.csv"
    truth.write_text("account_id,group_id\na,g1\nb,g1\nc,g1\nd,g2\ne,g2\nf,\ng,\n")
    m = pa.table({
        "account_id": ["a", "b", "c", "d", "e", "f", "g"],
        "cluster_id": ["X", "X", "Y", "Z", "Z", "Z", "W"],
        "cluster_score": [0.9, 0.9, 0.8, 0.7, 0.7, 0.7, 0.1],
        "flagged": [True, True, True, True, True, True, False],
    })
    r = evaluate_flagged(read_truth(truth), m)
    assert (r.groups, r.groups_detected) == (2, 2)
    assert (r.group_recall_min, r.group_recall_median) == (1.0, 1.0)
    assert r.fragmentation == 1.5  # g1 in X and Y, g2 in Z
    # top clusters by score: X (ops), Y (ops), Z (2 of 3 ops), W (legit)
    assert r.precision_at_k == {"10": 0.75, "50": 0.75, "100": 0.75}
    # flagged: a b c d e f; truth {abc}{de}{f}; predicted {ab}{c}{def}
    # agreeing pairs: ab, de -> index 2; true pairs 3 + 1 = 4; predicted pairs 1 + 3 = 4
    expected = 4 * 4 / 15
    assert r.adjusted_rand == pytest.approx((2 - expected) / (4 - expected), abs=1e-4)


@settings(max_examples=examples(200), deadline=None)
@given(st.lists(st.tuples(st.integers(0, 4), st.integers(0, 4)), min_size=2, max_size=40))
def test_adjusted_rand_equals_pair_counting(labels):
    from collections import Counter
    from itertools import combinations

    true, pred = zip(*labels, strict=True)
    cells = np.array(list(Counter(labels).values()), dtype=float)
    rows = np.array(list(Counter(true).values()), dtype=float)
    cols = np.array(list(Counter(pred).values()), dtype=float)
    pairs = list(combinations(range(len(labels)), 2))
    both = sum(true[i] == true[j] and pred[i] == pred[j] for i, j in pairs)
    same_t = sum(true[i] == true[j] for i, j in pairs)
    same_p = sum(pred[i] == pred[j] for i, j in pairs)
    expected = same_t * same_p / len(pairs)
    best = (same_t + same_p) / 2
    want = 1.0 if best == expected else (both - expected) / (best - expected)
    assert adjusted_rand(cells, rows, cols) == pytest.approx(want)


def test_display_rows_format_every_metric(tmp_path):
    truth = tmp_path / "t.csv"
    truth.write_text("account_id,group_id\na,g\nb,g\nc,\n")
    m = pa.table({"account_id": ["a", "b"], "cluster_id": ["X", "X"],
                  "cluster_score": [0.9, 0.9], "flagged": [True, True]})
    rows = dict(evaluate_flagged(read_truth(truth), m).display_rows())
    assert rows["precision"] == "1.0000" and rows["true positives"] == "2"
    assert rows["precision at k (top clusters)"] == "10: 1.00, 50: 1.00, 100: 1.00"
