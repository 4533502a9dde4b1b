"""Generated input with a ring of accounts whose ids are hostile text, for the report tests.

Night 1 is generated data; night 2 adds a ring of ten accounts that share a card, a device
and a signup burst, and whose ids try HTML injection, attribute breaking, Rich markup and
spreadsheet formulas. The ring is flagged and new in run 2.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

from linkage.synth import generate

__all__ = ["HOSTILE", "SECRET", "two_nights"]

SECRET = "report-test-secret-0123456789abcdef"

HOSTILE = [
    "<script>alert(1)</script>",
    '"onmouseover="alert(1)',
    "x' onmouseover='alert(2)",
    '=HYPERLINK("http://evil.example")',
    "+1+1",
    "-2+3",
    "@SUM(A1)",
    "[red]rich[/red]",
    "<img src=x onerror=alert(3)>",
    "h10&amp;",
]


def _append(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open(newline="") as f:
        header = next(csv.reader(f))
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header, lineterminator="\n")
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in header})


def two_nights(base: Path) -> tuple[Path, Path]:
    """Write night 1 (generated) and night 2 (plus the hostile ring) under ``base``."""
    first, second = base / "night1", base / "night2"
    generate(first, scenario="hubs", n_accounts=3000, seed=11, fmt="csv")
    shutil.copytree(first, second)
    _append(second / "accounts.csv", [
        {"account_id": acc, "created_at": f"2025-06-01T10:{i:02d}:00Z",
         "email": f"ring{i}@example.org", "display_name": '<script>alert("n")</script>',
         "signup_ip": "203.0.113.7", "country": "FR"}
        for i, acc in enumerate(HOSTILE)
    ])
    _append(second / "payment_instruments.csv", [
        {"account_id": acc, "fingerprint": "fp_hostile_ring", "bin": "414720",
         "last4": "0001", "billing_postal": "75001", "billing_country": "FR"}
        for acc in HOSTILE
    ])
    _append(second / "devices.csv", [
        {"account_id": acc, "device_id": "dev-hostile-ring", "seen_at": "2025-06-01T10:00:00Z"}
        for acc in HOSTILE
    ])
    # The ring's usage: 20 coding requests per account over two days (only the ring has any).
    with (second / "interactions.csv").open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["account_id", "ts", "category", "input_tokens", "output_tokens"])
        for acc in HOSTILE:
            for k in range(20):
                writer.writerow([acc, f"2025-06-0{2 + k % 2}T1{k % 10}:00:00Z", "coding",
                                 100, 1000])
    return first, second
