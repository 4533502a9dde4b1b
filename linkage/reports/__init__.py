"""Reports read only from the store: what an analyst sees is what the run decided."""

from linkage.reports.exports import safe_text_column, write_csv, write_memberships

__all__ = ["safe_text_column", "write_csv", "write_memberships"]
