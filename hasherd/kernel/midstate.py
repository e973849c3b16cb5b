"""SHA-256 midstates in pure Python (asic-protocols.md, sections 2.6, 3.2, 4.2 and 4.3).

``hashlib`` cannot start from, or stop at, an intermediate state, so the midstate a chip
job carries (the raw compression state after header[0:64]: no padding, no finalisation)
is computed here, one compression in plain Python (about 4 kH/s, section 4.3; cheap for
one job, far too slow to sweep nonces with). ``sha256d_from_midstate`` goes the other
way, as a controller does: it continues from a midstate with block 2 and finishes the
double hash, for the rare candidate a fast kernel already picked out.

Midstates are kept in the S3 / cgminer wire form: H0..H7, each word little-endian.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Sequence

from hasherd.errors import InputError
from hasherd.kernel.lanegen import IV, K

__all__ = ["compress", "midstate", "midstate_words", "sha256d_from_midstate", "words_of"]

_M = 0xFFFFFFFF
_WORDS = struct.Struct(">16I")
_LE8 = struct.Struct("<8I")
_BE8 = struct.Struct(">8I")
_PAD80 = b"\x80" + bytes(39) + (640).to_bytes(8, "big")  # block 2 of an 80-byte message


def _rotr(x: int, n: int) -> int:
    return ((x >> n) | (x << (32 - n))) & _M


def _schedule(block: bytes) -> list[int]:
    w = list(_WORDS.unpack(block))
    for t in range(16, 64):
        x, y = w[t - 15], w[t - 2]
        s0 = _rotr(x, 7) ^ _rotr(x, 18) ^ (x >> 3)
        s1 = _rotr(y, 17) ^ _rotr(y, 19) ^ (y >> 10)
        w.append((w[t - 16] + s0 + w[t - 7] + s1) & _M)
    return w


def compress(state: Sequence[int], block: bytes) -> tuple[int, ...]:
    """One SHA-256 compression of the 64-byte ``block`` onto the eight words ``state``."""
    if len(block) != 64 or len(state) != 8:
        raise InputError("block", "needs a 64-byte block and an 8-word state")
    w = _schedule(block)
    a, b, c, d, e, f, g, h = state
    for t in range(64):
        s1 = _rotr(e, 6) ^ _rotr(e, 11) ^ _rotr(e, 25)
        t1 = (h + s1 + (g ^ (e & (f ^ g))) + K[t] + w[t]) & _M
        s0 = _rotr(a, 2) ^ _rotr(a, 13) ^ _rotr(a, 22)
        t2 = (s0 + ((a & b) | (c & (a | b)))) & _M
        a, b, c, d, e, f, g, h = (t1 + t2) & _M, a, b, c, (d + t1) & _M, e, f, g
    return tuple((x + y) & _M for x, y in zip(state, (a, b, c, d, e, f, g, h), strict=True))


def midstate_words(header: bytes) -> tuple[int, ...]:
    """H0..H7 after compressing header[0:64] (an 80-byte header)."""
    if len(header) != 80:
        raise InputError("header", f"needs 80 bytes, got {len(header)}")
    return compress(IV, bytes(header[:64]))


def midstate(header: bytes) -> bytes:
    """The midstate of ``header`` in the S3 TxTask form: H0..H7, each word LE (3.2)."""
    return _LE8.pack(*midstate_words(header))


def words_of(mid: bytes) -> tuple[int, ...]:
    """The eight state words of a midstate in the S3 form."""
    if len(mid) != 32:
        raise InputError("midstate", f"needs 32 bytes, got {len(mid)}")
    return tuple(_LE8.unpack(mid))


def sha256d_from_midstate(mid: bytes, tail: bytes) -> bytes:
    """SHA256(SHA256(header)) from the header's midstate (S3 form) and ``tail`` =
    header[64:80] (section 4.2, step 6)."""
    if len(tail) != 16:
        raise InputError("tail", f"needs 16 bytes, got {len(tail)}")
    first = _BE8.pack(*compress(words_of(mid), bytes(tail) + _PAD80))
    return hashlib.sha256(first).digest()
