"""Keyed pseudonymisation: every identifying value becomes an HMAC-SHA256 before it is stored.

The key comes from the environment (``LINKAGE_SECRET``) or a key file (``LINKAGE_SECRET_FILE``
or ``--secret-file``) and never enters the database: without it a stored hash cannot be
matched to a value, yet equal values still hash equally, which is all linkage needs. Hashes are
namespaced (``email``, ``ip``, ``card`` …) so that equal text of two kinds never collides, and
truncated to 128 bits (32 hex characters), ample against accidental collisions among billions
of values.

The same HMAC runs inside DuckDB as the SQL macro ``lk_hash(namespace, value)`` so that
ingest hashes millions of values in a vectorised query rather than a Python loop; tests check
it against :mod:`hmac`.

Examples
--------
>>> p = Pseudonymiser(b"0123456789abcdef0123456789abcdef")
>>> p.hash("email", "ann@example.com")
'18d1383797831573054e707d4b4c586e'
"""

from __future__ import annotations

import hashlib
import hmac
import os
from pathlib import Path

from linkage.engines import SQLConnection
from linkage.errors import ConfigError

__all__ = ["HASH_HEX_CHARS", "MIN_SECRET_BYTES", "Pseudonymiser", "load_secret"]

HASH_HEX_CHARS = 32
MIN_SECRET_BYTES = 16
_SEP = "\x1f"  # unit separator: cannot occur in a namespace, so ns+value is unambiguous
_BLOCK = 64  # SHA-256 block size, per RFC 2104


def load_secret(secret_file: Path | str | None = None) -> bytes:
    """Return the pseudonymisation key.

    Order: ``secret_file`` if given, else ``LINKAGE_SECRET`` (the key itself), else
    ``LINKAGE_SECRET_FILE`` (a path). Leading and trailing whitespace of a file is ignored.
    """
    if secret_file is None and os.environ.get("LINKAGE_SECRET"):
        raw = os.environ["LINKAGE_SECRET"].encode()
        source = "LINKAGE_SECRET"
    else:
        path = secret_file or os.environ.get("LINKAGE_SECRET_FILE")
        if not path:
            raise ConfigError(
                "no pseudonymisation key: set LINKAGE_SECRET, or LINKAGE_SECRET_FILE / "
                "--secret-file to a file holding at least "
                f"{MIN_SECRET_BYTES} bytes (e.g. `openssl rand -hex 32 > .linkage-secret`)"
            )
        try:
            raw = Path(path).read_bytes().strip()
        except OSError as exc:
            raise ConfigError(f"cannot read key file {str(path)!r}: {exc.strerror}") from None
        source = f"key file {str(path)!r}"
    if len(raw) < MIN_SECRET_BYTES:
        raise ConfigError(
            f"pseudonymisation key from {source} is {len(raw)} bytes; "
            f"at least {MIN_SECRET_BYTES} are required"
        )
    return raw


class Pseudonymiser:
    """HMAC-SHA256 of namespaced values, in Python and as a DuckDB macro."""

    def __init__(self, secret: bytes) -> None:
        key = hashlib.sha256(secret).digest() if len(secret) > _BLOCK else secret
        key = key.ljust(_BLOCK, b"\0")
        # HMAC's keyed state, copied per value: the key is not re-derived for each one.
        self._keyed = hmac.new(secret, digestmod=hashlib.sha256)
        self._ipad = bytes(b ^ 0x36 for b in key)
        self._opad = bytes(b ^ 0x5C for b in key)

    def hash(self, namespace: str, value: str | None) -> str | None:
        """Keyed hash of one value (``None`` stays ``None``)."""
        if value is None:
            return None
        mac = self._keyed.copy()
        mac.update(f"{namespace}{_SEP}{value}".encode())
        return mac.hexdigest()[:HASH_HEX_CHARS]

    def check_value(self) -> str:
        """A value stored beside the data to detect a run made with a different key."""
        return self.hash("linkage-key-check", "linkage") or ""

    def install(self, con: SQLConnection) -> None:
        """Create the macro ``lk_hash(namespace, value)`` in an engine's connection (one
        without macros inlines it where it is called).

        The macro computes ``H(opad || H(ipad || namespace 0x1F value))`` with DuckDB's
        ``sha256`` on blobs: exactly :func:`hmac.new` with SHA-256, vectorised.
        """
        con.execute(
            f"""
            CREATE OR REPLACE TEMP MACRO lk_hash(ns, v) AS
            CASE WHEN v IS NULL THEN NULL ELSE left(sha256(
                unhex('{self._opad.hex()}') ||
                unhex(sha256(unhex('{self._ipad.hex()}') || encode(ns || chr(31) || v)))
            ), {HASH_HEX_CHARS}) END
            """
        )
