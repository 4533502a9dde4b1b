"""Vectorised encoders: integer entity ids and draws in, table text out.

The generator works on integers (entity ids, addresses, codes) until the very end, because
integers are cheap to draw, share and compare. This module turns them into the strings the
tables hold without a Python loop per row: fixed-width text is built as a ``uint8`` matrix
(one row per value, one column per character) and viewed as bytes; variable text is joined
with Arrow compute kernels.

Opaque tokens (card fingerprints, device ids, hashes) come from :func:`mix64`, a keyed
SplitMix64 finaliser. It is a bijection of 64-bit integers, so distinct ids always give
distinct tokens, and a different seed (key) gives unrelated tokens.
"""

from __future__ import annotations

import zlib
from functools import cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "ALNUM_LOWER",
    "ALNUM_UPPER",
    "alnum_chars",
    "assemble",
    "bytes_text",
    "digit_chars",
    "hex_chars",
    "ipv4_text",
    "ipv6_text",
    "mix64",
    "ns_key",
    "pattern_text",
    "prefixed",
    "sub_rng",
    "timestamps",
    "timestamps_text",
]

ALNUM_LOWER = b"0123456789abcdefghijklmnopqrstuvwxyz"
ALNUM_UPPER = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # referral-code alphabet: no 0/O, 1/I
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_U64 = np.uint64
_HEX_PAIRS = np.stack([_HEX[np.arange(256) >> 4], _HEX[np.arange(256) & 15]], axis=1)


def _words(seed: int, names: tuple[str | int, ...]) -> list[int]:
    # crc32 rather than hash(): str hashes are salted per process, crc32 is stable.
    return [seed, *(zlib.crc32(n.encode()) if isinstance(n, str) else int(n) for n in names)]


def sub_rng(seed: int, *names: str | int) -> np.random.Generator:
    """An independent generator for one component, derived from the seed and a name.

    Deriving by name (not by drawing from a parent generator) keeps a component's output
    unchanged when another component starts drawing more or fewer numbers.
    """
    return np.random.default_rng(np.random.SeedSequence(_words(seed, names)))


def ns_key(seed: int, *names: str | int) -> np.uint64:
    """A 64-bit key for one token namespace (``card``, ``device`` …) under one seed."""
    return _U64(np.random.SeedSequence(_words(seed, names)).generate_state(1, np.uint64)[0])


def mix64(x: np.ndarray, key: np.uint64 | int = 0) -> np.ndarray:
    """Keyed SplitMix64 finaliser: a bijection of ``uint64`` that scrambles every bit.

    Arithmetic wraps modulo 2**64 by design; numpy does not warn for array operands.
    """
    z = np.asarray(x).astype(np.uint64) ^ _U64(key)
    z = z + _U64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> _U64(27))) * _U64(0x94D049BB133111EB)
    return z ^ (z >> _U64(31))


def hex_chars(u: np.ndarray, nchars: int = 16) -> np.ndarray:
    """Lower-case hex of ``uint64`` values, high nibble first, as a ``(m, nchars)`` matrix.

    ``nchars`` may be below 16 to keep only the low-order digits.
    """
    raw = np.ascontiguousarray(np.asarray(u, dtype=np.uint64).astype(">u8")).view(np.uint8)
    pairs = _HEX_PAIRS[raw.reshape(-1, 8).astype(np.intp)].reshape(-1, 16)  # byte -> 2 chars
    return pairs[:, 16 - nchars:]


def digit_chars(x: np.ndarray, width: int) -> np.ndarray:
    """Zero-padded decimal digits of non-negative integers (mod ``10**width``)."""
    powers = 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)
    return ((np.asarray(x, dtype=np.int64)[:, None] // powers) % 10 + 48).astype(np.uint8)


def alnum_chars(u: np.ndarray, nchars: int, alphabet: bytes = ALNUM_LOWER) -> np.ndarray:
    """``nchars`` characters of ``alphabet`` taken as base-``len(alphabet)`` digits of ``u``."""
    table = np.frombuffer(alphabet, dtype=np.uint8)
    base = _U64(len(alphabet))
    rest = u.astype(np.uint64)
    out = np.empty((len(rest), nchars), dtype=np.uint8)
    for j in range(nchars):  # per character position, not per row
        out[:, j] = table[(rest % base).astype(np.intp)]
        rest = rest // base
    return out


def prefixed(prefix: str, chars: np.ndarray) -> np.ndarray:
    """Put the same ASCII ``prefix`` in front of every row of a character matrix."""
    head = np.frombuffer(prefix.encode(), dtype=np.uint8)
    return np.hstack([np.broadcast_to(head, (len(chars), len(head))), chars])


def bytes_text(chars: np.ndarray) -> pa.Array:
    """An Arrow string array from a ``(m, width)`` ASCII matrix, one string per row."""
    chars = np.ascontiguousarray(chars, dtype=np.uint8)
    m, width = chars.shape
    if m == 0:
        return pa.array([], pa.string())
    flat = chars.view(f"S{width}").ravel()
    return pc.cast(pa.array(flat, pa.binary()), pa.string())


def pattern_text(pattern: str, u: np.ndarray, slot: str = "9A") -> pa.Array:
    """Fill a pattern such as ``A9A 9A9``: ``9`` becomes a digit, ``A`` a letter.

    ``u`` (``uint64``) supplies the characters, so equal ``u`` gives equal text. If ``slot``
    is ``"d"``, ``u`` is instead a ``(m, k)`` digit matrix whose columns fill the ``d`` slots
    in order (used for phone numbers, whose digits are chosen elsewhere).
    """
    if slot == "d":
        cols, k = [], 0
        for ch in pattern:
            if ch == "d":
                cols.append(u[:, k])
                k += 1
            else:
                cols.append(np.full(len(u), ord(ch), dtype=np.uint8))
        return bytes_text(np.stack(cols, axis=1))
    out = np.empty((len(u), len(pattern)), dtype=np.uint8)
    for j, ch in enumerate(pattern):
        if ch == "9":
            out[:, j] = (mix64(u, j + 1) % _U64(10)).astype(np.uint8) + 48
        elif ch == "A":
            out[:, j] = (mix64(u, j + 1) % _U64(26)).astype(np.uint8) + 65
        else:
            out[:, j] = ord(ch)
    return bytes_text(out)


def assemble(m: int, pieces: list[tuple[np.ndarray, pa.Array]]) -> pa.Array:
    """Scatter string pieces into one array of length ``m``: ``out[idx] = values``.

    Positions no piece covers are null. A later piece wins where pieces overlap.
    """
    if not pieces:
        return pa.nulls(m, pa.string())
    idx = np.concatenate([p[0] for p in pieces]).astype(np.int64)
    # large_string: at millions of accounts the pieces can hold more than 2 GB of text (a
    # plain string array's limit, which is also why pyarrow may hand a piece over chunked).
    vals = pa.concat_arrays([_one_array(p[1].cast(pa.large_string())) for p in pieces]
                            + [pa.nulls(1, pa.large_string())])
    src = np.full(m, len(idx), dtype=np.int64)  # default: the trailing null
    src[idx] = np.arange(len(idx), dtype=np.int64)
    out = vals.take(pa.array(src))
    return out.cast(pa.string()) if out.nbytes < 2**31 else out  # (nbytes >= text size)


def _one_array(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


@cache
def _octets() -> pa.Array:
    return pa.array([str(i) for i in range(256)], pa.string())


@cache
def _hextets(exploded: bool) -> pa.Array:
    fmt = "{:04x}" if exploded else "{:x}"
    return pa.array([fmt.format(i) for i in range(65536)], pa.string())


def ipv4_text(addr: np.ndarray) -> pa.Array:
    """Dotted-quad text of ``uint32`` IPv4 addresses."""
    a = addr.astype(np.uint32)
    parts = [_octets().take(pa.array(((a >> np.uint32(s)) & np.uint32(255)).astype(np.int32)))
             for s in (24, 16, 8, 0)]
    return pc.binary_join_element_wise(*parts, ".")


def ipv6_text(hi: np.ndarray, lo: np.ndarray, exploded: np.ndarray) -> pa.Array:
    """IPv6 text: compressed (RFC 5952 style) or, where ``exploded``, all eight hextets padded.

    The generator only makes addresses with at most one run of two or more zero hextets, so
    compressing the first such run is also the canonical (longest-run) compression.
    """
    m = len(hi)
    if m == 0:
        return pa.array([], pa.string())
    groups = np.empty((m, 8), dtype=np.int32)
    for j in range(4):
        shift = _U64(48 - 16 * j)
        groups[:, j] = ((hi.astype(np.uint64) >> shift) & _U64(0xFFFF)).astype(np.int32)
        groups[:, 4 + j] = ((lo.astype(np.uint64) >> shift) & _U64(0xFFFF)).astype(np.int32)
    out = []
    for flag in (False, True):
        sel = np.flatnonzero(exploded == flag)
        table = _hextets(flag)
        cols = [table.take(pa.array(groups[sel, j])) for j in range(8)]
        text = pc.binary_join_element_wise(*cols, ":") if len(sel) else pa.array([], pa.string())
        if not flag and len(sel):
            text = pc.replace_substring_regex(
                text, pattern=r"(^|:)0(:0)+(:|$)", replacement="::", max_replacements=1)
        out.append((sel, text))
    return assemble(m, out)


def timestamps(seconds: np.ndarray) -> pa.Array:
    """``timestamp[us, tz=UTC]`` from integer seconds since the Unix epoch."""
    return pa.array(np.asarray(seconds, dtype=np.int64) * 1_000_000, pa.timestamp("us", "UTC"))


def timestamps_text(seconds: np.ndarray) -> pa.Array:
    """ISO 8601 text with a ``Z`` suffix, e.g. ``2025-03-03T09:15:02Z``."""
    ts = pa.array(np.asarray(seconds, dtype=np.int64), pa.timestamp("s"))
    return pc.strftime(ts, format="%Y-%m-%dT%H:%M:%SZ")
