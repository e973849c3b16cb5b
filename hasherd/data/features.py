"""The 12 feature words of a text record (docs/data.md, "Feature words").

A record is ``context`` tokens followed by the target token. Every word is computed from
the context and the section it sits in, never from the target: a trained seed must be
usable on a record whose next token is unknown.

| slot | content |
|---|---|
| 0 | section anchor |
| 1, 2, 5, 6, 7, 8, 9, 11 | SimHash planes 0..7 of the context |
| 3 | entropy (bits 16..31) and FNV-1a of the context (bits 0..15) |
| 4 | word classes (bits 0..7: last token, 8..15: the one before), last token id (16..31) |
| 10 | domain code (bits 0..15), position of the last token in its section (16..31) |
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from hasherd.kernel import spec

SIMHASH_SLOTS = (1, 2, 5, 6, 7, 8, 9, 11)
SIMHASH_TAG = b"hasherd/simhash\x00"
ANCHOR_TAG = b"hasherd/anchor\x00"
ENTROPY_SCALE = 4096  # slot 3 keeps entropy in 1/4096 bit
FNV_OFFSET = 0x811C9DC5
FNV_PRIME = 0x01000193
BLOCK = 8192  # records encoded at once; bounds the (block, 256) SimHash accumulator


def section_anchor(text: str) -> int:
    """BE32 of SHA-256 over the tag and the section's words joined by single spaces."""
    normal = " ".join(text.split()).encode("utf-8")
    return int.from_bytes(hashlib.sha256(ANCHOR_TAG + normal).digest()[:4], "big")


@lru_cache(maxsize=1 << 17)
def _token_planes(token: int) -> bytes:
    return hashlib.sha256(SIMHASH_TAG + token.to_bytes(4, "little")).digest()


def token_signs(tokens: np.ndarray) -> np.ndarray:
    """(n, 256) int8 of +1/-1: bit b of SimHash plane p at column 32p + b, where plane p's
    word is LE32 of bytes 4p..4p+3 of SHA-256(tag || LE32(token))."""
    uniq, inverse = np.unique(tokens, return_inverse=True)
    raw = np.frombuffer(b"".join(_token_planes(int(t)) for t in uniq), dtype=np.uint8)
    bits = np.unpackbits(raw.reshape(-1, 32), axis=1, bitorder="little")
    signs = bits.astype(np.int8) * 2 - 1
    return signs[inverse.reshape(-1)]


@dataclass(frozen=True)
class Document:
    """A tokenized document: its tokens, each token's section and per-token word class."""

    tokens: np.ndarray  # (n,) int64
    section: np.ndarray  # (n,) int64 index into anchors/domains
    word_class: np.ndarray  # (n,) int64
    anchors: np.ndarray  # (sections,) uint32
    domains: np.ndarray  # (sections,) uint32


def _positions_in_section(section: np.ndarray) -> np.ndarray:
    n = len(section)
    idx = np.arange(n, dtype=np.int64)
    starts = np.ones(n, dtype=bool)
    starts[1:] = section[1:] != section[:-1]
    first = np.maximum.accumulate(np.where(starts, idx, 0))
    return idx - first


def _simhash(signs: np.ndarray, lo: int, hi: int, context: int) -> np.ndarray:
    """(hi - lo, 8) uint32 SimHash of the windows ending before lo..hi-1; weight j + 1 for
    the j-th token of the window (the last token weighs most)."""
    acc = np.zeros((hi - lo, 256), dtype=np.int32)
    for j in range(context):
        start = lo - context + j
        acc += (j + 1) * signs[start : start + hi - lo].astype(np.int32)
    bits = (acc > 0).astype(np.uint8)
    packed = np.packbits(bits, axis=1, bitorder="little")
    return packed.view("<u4").astype(np.uint32)


def _entropy_fnv(windows: np.ndarray) -> np.ndarray:
    """Slot 3: quantized Shannon entropy of each window's tokens, and their FNV-1a."""
    c = windows.shape[1]
    counts = (windows[:, :, None] == windows[:, None, :]).sum(axis=2)
    entropy = np.log2(c) - np.log2(counts).mean(axis=1)
    q = np.minimum(np.floor(entropy * ENTROPY_SCALE + 0.5), 0xFFFF).astype(np.uint64)
    h: np.ndarray = np.full(len(windows), FNV_OFFSET, dtype=np.uint64)
    for j in range(c):
        h = ((h ^ windows[:, j].astype(np.uint64)) * FNV_PRIME) & spec.MASK32
    out: np.ndarray = ((q << 16) | ((h ^ (h >> 16)) & 0xFFFF)).astype(np.uint32)
    return out


def encode(doc: Document, context: int) -> tuple[np.ndarray, np.ndarray]:
    """``(slots (R, 12) uint32, targets (R,))`` for every full window of the document:
    record r has context ``tokens[r : r + context]`` and target ``tokens[r + context]``."""
    n = len(doc.tokens)
    if n <= context:
        return np.zeros((0, spec.N_SLOTS), dtype=np.uint32), np.zeros(0, dtype=np.int64)
    signs = token_signs(doc.tokens)
    pos = _positions_in_section(doc.section)
    blocks = [
        _encode_block(doc, signs, pos, lo, min(lo + BLOCK, n), context)
        for lo in range(context, n, BLOCK)
    ]
    return np.concatenate(blocks), doc.tokens[context:]


def _encode_block(
    doc: Document, signs: np.ndarray, pos: np.ndarray, lo: int, hi: int, context: int
) -> np.ndarray:
    last = np.arange(lo - 1, hi - 1)
    windows = np.lib.stride_tricks.sliding_window_view(doc.tokens, context)[
        lo - context : hi - context
    ]
    sec = doc.section[last]
    out = np.zeros((hi - lo, spec.N_SLOTS), dtype=np.uint32)
    out[:, 0] = doc.anchors[sec]
    out[:, list(SIMHASH_SLOTS)] = _simhash(signs, lo, hi, context)
    out[:, 3] = _entropy_fnv(windows)
    before = doc.word_class[last - 1] if context >= 2 else np.zeros_like(last)
    out[:, 4] = (doc.word_class[last] | (before << 8) | ((doc.tokens[last] & 0xFFFF) << 16)).astype(
        np.uint32
    )
    out[:, 10] = (doc.domains[sec].astype(np.int64) | (np.minimum(pos[last], 0xFFFF) << 16)).astype(
        np.uint32
    )
    return out
