"""The host-to-controller S2/S3 token stream, framed as the controller sees it
(asic-protocols.md, sections 3.1-3.2).

``protocol.s3.RxDecoder`` frames the device-to-host direction; this is its mirror for
``TxConfig`` (0x51), ``TxTask`` (0x52) and ``RxStatusRequest`` (0x53), on the same scan
(``protocol.s3_framing.TokenDecoder``). A candidate starts at one of those type bytes
with version 0 and a length that type can have; a whole candidate whose CRC-16/MODBUS
fails counts in ``crc_errors`` and one whose CRC passes but whose layout does not counts
in ``malformed``; in both cases the scan resumes one byte later. Other bytes count in
``garbage_bytes``. ``feed`` never raises on wire input, and the buffer never holds more
than the largest token. Pure: no file descriptors here.
"""

from __future__ import annotations

import re
from typing import TypeAlias

from hasherd.protocol.s3 import (
    MAX_WORKS,
    RX_STATUS_REQUEST,
    TX_CONFIG,
    TX_TASK,
    RxStatusRequest,
    TxConfig,
    TxTask,
)
from hasherd.protocol.s3_framing import TokenDecoder

__all__ = ["MAX_TX_TOKEN", "TxDecoder", "TxToken"]

TxToken: TypeAlias = TxConfig | TxTask | RxStatusRequest

MAX_TX_TOKEN = 10 + 48 * MAX_WORKS  # the largest host token: a TxTask of 8 works
_TX_START = re.compile(b"[\\x51\\x52\\x53]")


class TxDecoder(TokenDecoder[TxToken]):
    """Host tokens from a byte stream in any chunking (see the module docstring)."""

    _START = _TX_START

    def __init__(self) -> None:
        super().__init__(MAX_TX_TOKEN)

    def _plausible(self, kind: int, size: int) -> bool:
        """Whether a token of ``kind`` can be ``size`` bytes long (section 3.2)."""
        if kind == TX_CONFIG:
            return size == TxConfig.SIZE
        if kind == RX_STATUS_REQUEST:
            return size == RxStatusRequest.SIZE
        return 58 <= size <= MAX_TX_TOKEN and (size - 10) % 48 == 0

    def _parse(self, token: bytes) -> TxToken:
        if token[0] == TX_CONFIG:
            return TxConfig.from_bytes(token)
        if token[0] == TX_TASK:
            return TxTask.from_bytes(token)
        return RxStatusRequest.from_bytes(token)
