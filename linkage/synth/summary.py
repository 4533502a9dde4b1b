"""What a generation wrote: :class:`GenerateSummary`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["GenerateSummary"]


@dataclass(frozen=True)
class GenerateSummary:
    """What :func:`~linkage.synth.generate` or :func:`~linkage.synth.worlds.generate_world` wrote.

    Attributes
    ----------
    out_dir : Path
        The folder holding the tables and ``truth.csv``.
    scenario : str
        The scenario name (``"world"`` for a parametric world).
    n_accounts : int
        Rows of ``accounts``.
    n_operator_accounts : int
        Accounts with a non-empty ``group_id`` in ``truth.csv``.
    n_groups : int
        Distinct operator groups.
    rows : dict[str, int]
        Rows per table name (``accounts`` included).
    seed : int
        The seed everything was derived from.
    fmt : str
        ``"parquet"`` or ``"csv"``.
    """

    out_dir: Path
    scenario: str
    n_accounts: int
    n_operator_accounts: int
    n_groups: int
    rows: dict[str, int] = field(hash=False)
    seed: int
    fmt: str = "parquet"
