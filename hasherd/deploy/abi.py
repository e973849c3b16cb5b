"""The bytes hasherd writes into BPF maps and backup files (docs/bpf-abi.md).

All little-endian and packed:

    key   (8 B)   {u32 token_id; u32 context_key}
    value (56 B)  {u8 seed[32]; u32 output; u32 golden_nonce; u32 prefix_bits;
                   u32 generation; f32 fitness; u32 flags}         flags bit 0: validated
    meta  (48 B)  {u32 layer; u32 count; u64 deployed_at_unix; u8 checksum[32]}

The checksum of a layer is SHA-256 over its entries' ``key || value`` bytes, concatenated
in ascending (token_id, context_key) order; an empty layer's is SHA-256 of nothing.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from hasherd.deploy.errors import DeployError
from hasherd.storage.rows import WeightRow

KEY = struct.Struct("<II")
VALUE = struct.Struct("<32sIIIIfI")
META = struct.Struct("<IIQ32s")
KEY_SIZE, VALUE_SIZE, META_SIZE = KEY.size, VALUE.size, META.size  # 8, 56, 48
FLAG_VALIDATED = 1 << 0
U32 = 1 << 32

Entries = dict[bytes, bytes]  # packed key -> packed value


def pack_key(token_id: int, context_key: int) -> bytes:
    return KEY.pack(token_id, context_key)


def unpack_key(raw: bytes) -> tuple[int, int]:
    token_id, context_key = KEY.unpack(raw)
    return int(token_id), int(context_key)


@dataclass(frozen=True)
class WeightValue:
    """One map value: the seed and what the chip needs to check it."""

    seed: bytes
    output: int
    golden_nonce: int
    prefix_bits: int
    generation: int
    fitness: float
    flags: int = 0

    @property
    def validated(self) -> bool:
        return bool(self.flags & FLAG_VALIDATED)

    def to_bytes(self) -> bytes:
        return VALUE.pack(
            self.seed,
            self.output,
            self.golden_nonce,
            self.prefix_bits,
            self.generation,
            self.fitness,
            self.flags,
        )

    @classmethod
    def from_bytes(cls, raw: bytes) -> WeightValue:
        seed, output, nonce, bits, generation, fitness, flags = VALUE.unpack(raw)
        return cls(seed, output, nonce, bits, generation, fitness, flags)


@dataclass(frozen=True)
class Meta:
    """What is live: the layer, its entry count, since when, and its checksum."""

    layer: int
    count: int
    deployed_at: int
    checksum: bytes

    def to_bytes(self) -> bytes:
        return META.pack(self.layer, self.count, self.deployed_at, self.checksum)

    @classmethod
    def from_bytes(cls, raw: bytes) -> Meta:
        layer, count, deployed_at, checksum = META.unpack(raw)
        return cls(layer, count, deployed_at, checksum)

    @property
    def empty(self) -> bool:
        """A freshly created meta map: nothing was ever deployed through it."""
        return self.deployed_at == 0 and self.checksum == bytes(32)


def _u32(value: int, what: str, w: WeightRow) -> int:
    if not 0 <= value < U32:
        raise DeployError(f"weight {w.id} (record {w.record_id}): {what} {value} is not a u32")
    return value


def entry_of(w: WeightRow) -> tuple[bytes, bytes]:
    """The (key, value) a stored weight becomes in the map."""
    key = pack_key(_u32(w.token_id, "token_id", w), _u32(w.context_key, "context_key", w))
    if len(w.seed) != 32:
        raise DeployError(f"weight {w.id} (record {w.record_id}): seed is not 32 bytes")
    value = WeightValue(
        bytes(w.seed),
        _u32(w.output, "output", w),
        _u32(w.golden_nonce, "golden_nonce", w),
        _u32(w.prefix_bits, "prefix_bits", w),
        _u32(w.generation, "generation", w),
        float(w.fitness),
        FLAG_VALIDATED if w.validation == "validated" else 0,
    )
    return key, value.to_bytes()


def sorted_entries(entries: Mapping[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    """Entries in ascending (token_id, context_key) order: the checksum's and backups'."""
    return sorted(entries.items(), key=lambda kv: unpack_key(kv[0]))


def checksum(entries: Mapping[bytes, bytes]) -> bytes:
    h = hashlib.sha256()
    for key, value in sorted_entries(entries):
        h.update(key)
        h.update(value)
    return h.digest()


# -- backup files ----------------------------------------------------------------------
#
# header (64 B): {u8 magic[8] = "HSHRBAK1"; u32 version = 1; u32 layer; u32 count;
#                 u32 reserved = 0; u64 deployed_at_unix; u8 checksum[32]}
# then ``count`` entries of ``key || value`` (64 B each) in checksum order. Nothing after.

BACKUP_MAGIC = b"HSHRBAK1"
BACKUP_VERSION = 1
BACKUP_HEADER = struct.Struct("<8sIIIIQ32s")
ENTRY_SIZE = KEY_SIZE + VALUE_SIZE


def encode_backup(meta: Meta, entries: Mapping[bytes, bytes]) -> bytes:
    rows = sorted_entries(entries)
    head = BACKUP_HEADER.pack(
        BACKUP_MAGIC, BACKUP_VERSION, meta.layer, len(rows), 0, meta.deployed_at, checksum(entries)
    )
    return head + b"".join(k + v for k, v in rows)


def decode_backup(data: bytes, where: str) -> tuple[Meta, Entries]:
    """The meta and entries of a backup file; ``DeployError`` naming ``where`` if it is
    truncated, of another format or version, or fails its checksum."""
    if len(data) < BACKUP_HEADER.size or data[:8] != BACKUP_MAGIC:
        raise DeployError(f"{where}: not a hasherd layer backup (bad magic)")
    _, version, layer, count, _, deployed_at, digest = BACKUP_HEADER.unpack_from(data)
    if version != BACKUP_VERSION:
        raise DeployError(f"{where}: backup format version {version}, expected {BACKUP_VERSION}")
    body = data[BACKUP_HEADER.size :]
    if len(body) != count * ENTRY_SIZE:
        raise DeployError(f"{where}: {len(body)} bytes of entries, expected {count * ENTRY_SIZE}")
    entries = {
        body[i : i + KEY_SIZE]: body[i + KEY_SIZE : i + ENTRY_SIZE]
        for i in range(0, len(body), ENTRY_SIZE)
    }
    if len(entries) != count or checksum(entries) != digest:
        raise DeployError(f"{where}: checksum mismatch (the file is damaged)")
    return Meta(layer, count, deployed_at, digest), entries
