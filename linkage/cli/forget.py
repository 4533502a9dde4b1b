"""``linkage forget ACCOUNT_ID``: erase an account's rows from every run, and log it.

The work is :func:`linkage.store.erase.forget_account`; this module only parses options and
prints what was removed. Exit 0 erased; 2 unknown account (or a wrong key); 3 a run holds the
store (try again later); 1 the database failed (nothing was removed).
"""

from __future__ import annotations

import getpass
from typing import Annotated

import typer

from linkage.cli.common import DbOpt, SecretFileOpt, err, handle_errors, open_store

__all__ = ["forget"]


def forget(
    account_id: Annotated[str, typer.Argument(help="The account to erase, as in the input.")],
    db: DbOpt = None,
    by: Annotated[str | None, typer.Option(
        "--by", help="Who asked or approved (default: the login name).",
        show_default=False)] = None,
    reason: Annotated[str | None, typer.Option(
        "--reason", help="Why, e.g. a ticket number.")] = None,
    secret_file: SecretFileOpt = None,
) -> None:
    """Erase an account's memberships, evidence and quarantined values from every run, and
    the id from label notes and run errors; record the erasure.

    Run totals stay what each run saw; the erasures table names the account only by a keyed
    hash and counts the rows removed or rewritten per table. The --reason is stored as
    given: do not put the account id in it.

    Example: linkage forget acct-123 --by ann --reason "GDPR request 2026-0042"
    """
    with handle_errors():
        from linkage.pseudonymise import Pseudonymiser, load_secret
        from linkage.store.erase import forget_account

        pseudo = Pseudonymiser(load_secret(secret_file))
        with open_store(db) as store:
            result = forget_account(store, account_id, pseudo,
                                    by=by or _login(), reason=reason)
    per_table = ", ".join(f"{n} {t}" for t, n in result.rows_removed.items())
    err.print(
        f"erasure {result.erasure_id}: removed {result.n_rows_removed:,} rows ({per_table}) "
        f"from {len(result.runs)} run(s); where quarantined values, label notes and run "
        f"errors named the account they now say erased:{result.account_key} (the --reason "
        "text is kept as given)",
        markup=False, highlight=False)


def _login() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        return "unknown"
