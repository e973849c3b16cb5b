"""Shared by the S3 tests: the section-3 vectors and an independent (hashlib) brute force."""

from __future__ import annotations

import hashlib
import random

from hasherd.kernel.midstate import midstate
from hasherd.protocol.s3 import TxTask, Work, data2_from_header

SPACE = 1 << 32

GENESIS = bytes.fromhex(
    "01000000" + "00" * 32 + "3ba3edfd7a7b12b27ac72c3e67768f617fc81bc3888a51323a9fb8aa4b1e5e4a"
    "29ab5f49ffff001d1dac2b7c"
)
GENESIS_N = int.from_bytes(GENESIS[76:80], "little")  # the kernel's nonce value, 0x7C2BAC1D
# [calc] section 4.4: the genesis midstate, H0..H7 each LE
GENESIS_MIDSTATE = bytes.fromhex("339A90BCF0BF58637DACCC90A8CA591EE9D8C8C3C803014F3687B1961BF91947")
# [calc] section 3.2: TxConfig with the init defaults (8 chains x 32 ASICs, PWM A0, 282 MHz)
TX_CONFIG = bytes.fromhex("51001400 5F000000 0820A02D 1A01 0000 00000000 00 04 870C")
# [calc] section 3.2: genesis work, wid 1, new_block 1, diff 0
TX_TASK = bytes.fromhex(
    "520036000100000001000000339A90BCF0BF58637DACCC90A8CA591EE9D8C8C3C803014F3687B1961BF919"
    "474A5E1E4B495FAB291D00FFFF5922"
)
# [calc] section 3.2: the init detect request
DETECT = bytes.fromhex("530008000200000000 00830D")
# [calc] section 3.3: genesis nonce, fifo 0x0100, wid 1 (total_nonce_num 1)
RX_NONCE = bytes.fromhex("A20016000001000001000000000000000100 00007C2BAC1D230E")


def dsha(data: bytes) -> bytes:
    return hashlib.sha256(hashlib.sha256(data).digest()).digest()


def zero_bits_of(header: bytes, n: int) -> int:
    digest = dsha(header[:76] + n.to_bytes(4, "little"))
    return 256 - int.from_bytes(digest, "little").bit_length()


def header_of(seed: int) -> bytes:
    return random.Random(seed).randbytes(80)


def task_of(header: bytes, work_id: int, diff: int = 0) -> TxTask:
    return TxTask((Work(work_id, midstate(header), data2_from_header(header)),), diff=diff)


def brute_force(
    header: bytes, chips: int, zero_bits: int, sweep: int, alive: list[int] | None = None
) -> list[int]:
    """Every nonce (header LE value) of every live chip's window from 0 with ``zero_bits``
    leading zero bits, in scan order from the header's own nonce; hashlib only."""
    n0 = int.from_bytes(header[76:80], "little")
    found = []
    for chip in range(chips) if alive is None else alive:
        first = chip * (SPACE // chips)
        for step in range(sweep):
            n = (first + step) % SPACE
            if zero_bits_of(header, n) >= zero_bits:
                found.append(n)
    return sorted(found, key=lambda n: (n - n0) % SPACE)
