"""HASHER kernel v1, written as plainly as the specification (docs/kernel.md).

Everything here is pure Python over ``bytes`` and ``int``: it is the text of the spec in
executable form, and the oracle the fast evaluators are tested against. The fast paths
(``hasherd.kernel.memory`` indices, the numba evaluator) must agree with it everywhere.
"""

from __future__ import annotations

import hashlib
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hasherd.errors import InputError

SPEC = "hasher-kernel/1"
N_SLOTS = 12
SEED_BYTES = 32
HEADER_BYTES = 80
MASK32 = 0xFFFFFFFF
NONCE_SPACE = 1 << 32
DEFAULT_PASSES = 21
MAX_PASSES = 1 << 16
MAX_ZERO_BITS = 32
_HEX = re.compile(r"[0-9a-fA-F]*")

# Pass boundaries of the three jitter zones (kernel.md, "The jitter memory").
ZONE1_LAST_PASS = 7
ZONE2_LAST_PASS = 14
ZONE3_MIN_LEADING_ZEROS = 12
ZONE3_XOR = 0xFEEDFACE
MISS_XOR = 0x9E3779B9


# -- validation ---------------------------------------------------------------------------


def check_u32(value: Any, field: str) -> int:
    """``value`` as an int in 0..2^32-1, or an InputError naming ``field``."""
    if isinstance(value, np.integer):
        value = int(value)
    elif isinstance(value, bool) or not isinstance(value, int):
        raise InputError(field, f"expected an integer, got {type(value).__name__}")
    if not 0 <= value <= MASK32:
        raise InputError(field, f"{value} is outside 0..4294967295")
    return int(value)


def check_slots(slots: Any, field: str = "slots") -> tuple[int, ...]:
    """Twelve u32 slot values, or an InputError naming the bad one."""
    if isinstance(slots, np.ndarray) and slots.dtype == np.uint32 and slots.shape == (N_SLOTS,):
        return tuple(slots.tolist())  # every uint32 is in range by construction
    if isinstance(slots, (str, bytes)) or not hasattr(slots, "__len__"):
        raise InputError(field, f"expected a list of {N_SLOTS} integers")
    if len(slots) != N_SLOTS:
        raise InputError(field, f"expected {N_SLOTS} values, got {len(slots)}")
    return tuple(check_u32(v, f"{field}[{i}]") for i, v in enumerate(slots))


def check_seed(seed: Any, field: str = "seed") -> bytes:
    """A 32-byte seed (bytes, bytearray or lowercase/uppercase hex)."""
    if isinstance(seed, str):
        if len(seed) != 2 * SEED_BYTES or not _HEX.fullmatch(seed):
            raise InputError(field, f"expected {2 * SEED_BYTES} hex digits")
        seed = bytes.fromhex(seed)
    if not isinstance(seed, (bytes, bytearray, memoryview)):
        raise InputError(field, f"expected {SEED_BYTES} bytes, got {type(seed).__name__}")
    raw = bytes(seed)
    if len(raw) != SEED_BYTES:
        raise InputError(field, f"expected {SEED_BYTES} bytes, got {len(raw)}")
    return raw


def check_passes(passes: Any, field: str = "passes") -> int:
    if isinstance(passes, bool) or not isinstance(passes, int):
        raise InputError(field, f"expected an integer, got {type(passes).__name__}")
    if not 1 <= passes <= MAX_PASSES:
        raise InputError(field, f"{passes} is outside 1..{MAX_PASSES}")
    return passes


def check_zero_bits(zero_bits: Any, field: str = "zero_bits") -> int:
    if isinstance(zero_bits, bool) or not isinstance(zero_bits, int):
        raise InputError(field, f"expected an integer, got {type(zero_bits).__name__}")
    if not 0 <= zero_bits <= MAX_ZERO_BITS:
        raise InputError(field, f"{zero_bits} is outside 0..{MAX_ZERO_BITS}")
    return zero_bits


def check_token_bits(token_bits: Any, field: str = "token_bits") -> int:
    if isinstance(token_bits, bool) or not isinstance(token_bits, int):
        raise InputError(field, f"expected an integer, got {type(token_bits).__name__}")
    if not 1 <= token_bits <= 32:
        raise InputError(field, f"{token_bits} is outside 1..32")
    return token_bits


# -- header -------------------------------------------------------------------------------


def dsha256(data: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def build_header(slots: Sequence[int], seed: bytes) -> bytes:
    """The 80-byte header of ``slots`` and ``seed`` (kernel.md, "The header")."""
    s = check_slots(slots)
    sd = check_seed(seed)
    return sd[0:4] + struct.pack(">12I", *s) + sd[4:32]


def slots_of(header: bytes) -> tuple[int, ...]:
    """The 12 slots read back (big-endian) from bytes 4..51 of a header."""
    if len(header) != HEADER_BYTES:
        raise InputError("header", f"expected {HEADER_BYTES} bytes, got {len(header)}")
    return struct.unpack_from(">12I", header, 4)


def seed_of(header: bytes) -> bytes:
    """The seed a header was built from (inverse of ``build_header`` on the seed bytes)."""
    if len(header) != HEADER_BYTES:
        raise InputError("header", f"expected {HEADER_BYTES} bytes, got {len(header)}")
    return header[0:4] + header[52:80]


def scan_start(header: bytes) -> int:
    """``n0``: the header's own nonce field read little-endian."""
    return int.from_bytes(header[76:80], "little")


def meets(digest: bytes, zero_bits: int) -> bool:
    """True when the top ``zero_bits`` bits of LE32(digest[28:32]) are zero."""
    if zero_bits == 0:
        return True
    return int.from_bytes(digest[28:32], "little") >> (32 - zero_bits) == 0


@dataclass(frozen=True, slots=True)
class PassResult:
    nonce: int
    digest: bytes
    ntime_roll: int
    scanned: int = 1  # nonces hashed to find it (work accounting, not part of the kernel)


def golden_pass(header: bytes, zero_bits: int, nonce_space: int = NONCE_SPACE) -> PassResult:
    """One pass: the first nonce from n0 (mod 2^32) whose dsha256 meets ``zero_bits``.

    ``nonce_space`` bounds the nonces scanned per ntime value. It is 2^32 in the kernel;
    tests lower it to reach the ntime roll, which no real input can reach in reasonable time.
    """
    if zero_bits == 0:
        return PassResult(scan_start(header), dsha256(header), 0)
    n0 = scan_start(header)
    ntime0 = int.from_bytes(header[68:72], "little")
    roll = 0
    while True:
        prefix = header[:68] + ((ntime0 + roll) & MASK32).to_bytes(4, "little") + header[72:76]
        mid = hashlib.sha256(prefix[:64])
        tail = prefix[64:]
        for t in range(nonce_space):
            n = (n0 + t) & MASK32
            h = mid.copy()
            h.update(tail + n.to_bytes(4, "little"))
            d = hashlib.sha256(h.digest()).digest()
            if int.from_bytes(d[28:32], "little") >> (32 - zero_bits) == 0:
                return PassResult(n, d, roll, roll * nonce_space + t + 1)
        roll += 1


# -- jitter -------------------------------------------------------------------------------


def rotl32(x: int, n: int) -> int:
    n &= 31
    return ((x << n) | (x >> (32 - n))) & MASK32 if n else x & MASK32


def apply_jitter(header: bytes, jitter: int) -> bytes:
    """XOR ``rotl32(j, 8w)`` into the big-endian word at bytes 36+4w, w = 0..3."""
    j = check_u32(jitter, "jitter")
    if len(header) != HEADER_BYTES:
        raise InputError("header", f"expected {HEADER_BYTES} bytes, got {len(header)}")
    words = struct.unpack_from(">4I", header, 36)
    mixed = struct.pack(">4I", *(w ^ rotl32(j, 8 * i) for i, w in enumerate(words)))
    return header[:36] + mixed + header[52:]


def zone2_group(slots: Sequence[int]) -> int:
    """The zone-2 grouping value ``(S[10] & 0xF000) | (S[4] & 0xFF)``."""
    return (slots[10] & 0xF000) | (slots[4] & 0xFF)


def miss_jitter(key: int) -> int:
    return key ^ MISS_XOR ^ (key >> 16)


def lookup_linear(
    frames: Sequence[Sequence[int]], slots: Sequence[int], key: int, pass_no: int
) -> tuple[int, bool]:
    """``lookup(S, key, p)`` by a literal scan of the frames: the oracle for the indices."""
    if pass_no <= ZONE1_LAST_PASS:
        for f in frames:
            if f[0] == slots[0]:
                return f[1], True
    elif pass_no <= ZONE2_LAST_PASS:
        group = zone2_group(slots)
        best: Sequence[int] | None = None
        best_dist = 0
        for f in frames:
            if zone2_group(f) == group:
                dist = abs(f[1] - key)
                if best is None or dist < best_dist:
                    best, best_dist = f, dist
        if best is not None:
            return best[2], True
    else:
        diff = key ^ slots[3]
        if diff >> (32 - ZONE3_MIN_LEADING_ZEROS) == 0:
            return diff ^ ZONE3_XOR, True
    return miss_jitter(key), False


# -- tokens and difficulty -------------------------------------------------------------------


def target_word(token: int, token_bits: int) -> int:
    """``T << (32 - b)``; the token must be below 2^b."""
    b = check_token_bits(token_bits)
    t = check_u32(token, "token")
    if t >> b:
        raise InputError("token", f"{t} does not fit in token_bits={b}")
    return (t << (32 - b)) & MASK32


def decode(output: int, token_bits: int) -> int:
    """The token an output word stands for: its top ``token_bits`` bits."""
    return output >> (32 - token_bits)


def clz32(x: int) -> int:
    return 32 - (x & MASK32).bit_length()


def prefix_bits(output: int, target: int) -> int:
    return clz32(output ^ target)


def matching_bits(output: int, target: int) -> int:
    return 32 - ((output ^ target) & MASK32).bit_count()


@dataclass(frozen=True, slots=True)
class DifficultySchedule:
    """Dynamic difficulty: ``D(e) = clamp(base + floor((e-1)*num/den), base, cap)``."""

    base: int = 12
    step_num: int = 133
    step_den: int = 100
    cap: int = 32

    def __post_init__(self) -> None:
        if not 1 <= self.base <= 32:
            raise InputError("difficulty_bits", f"{self.base} is outside 1..32")
        if not self.base <= self.cap <= 32:
            raise InputError("difficulty cap", f"{self.cap} is outside {self.base}..32")
        if self.step_num < 0 or self.step_den < 1:
            raise InputError("difficulty step", f"{self.step_num}/{self.step_den} is not >= 0")

    def bits(self, epoch: int) -> int:
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1:
            raise InputError("epoch", f"{epoch!r} is not an integer >= 1")
        raw = self.base + (epoch - 1) * self.step_num // self.step_den
        return max(self.base, min(raw, self.cap))


def difficulty_bits(epoch: int) -> int:
    """The default schedule's difficulty for ``epoch`` (12, 13, 14, 15, 17, ...)."""
    return DifficultySchedule().bits(epoch)
