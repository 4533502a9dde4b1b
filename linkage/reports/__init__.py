"""Reports read only from the store: what an analyst sees is what the run decided."""

from linkage.reports.exports import (
    FORMATS,
    safe_text_column,
    write_csv,
    write_memberships,
    write_table,
)

__all__ = ["FORMATS", "safe_text_column", "write_csv", "write_memberships", "write_table"]
