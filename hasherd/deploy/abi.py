"""The bytes hasherd writes into BPF maps and backup files (docs/bpf-abi.md).

All little-endian and packed:

    key   (8 B)   {u32 token_id; u32 context_key}
    value (56 B)  {u8 seed[32]; u32 output; u32 golden_nonce; u32 prefix_bits;
                   u32 generation; f32 fitness; u32 flags}         flags bit 0: validated
    meta  (96 B)  {u32 layer; u32 count; u64 deployed_at_unix; u8 checksum[32];
                   u32 abi_version = 2; u32 passes; u32 zero_bits; u32 token_bits;
                   u8 memory_id[32]}                   the live layer's kernel

ABI 1 had the first 48 bytes of meta only; a v1 meta still reads (its kernel unknown).
The checksum of a layer is SHA-256 over its entries' ``key || value`` bytes, concatenated
in ascending (token_id, context_key) order; an empty layer's is SHA-256 of nothing.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from hasherd.deploy.errors import DeployError
from hasherd.storage.rows import Kernel, WeightRow

ABI_VERSION = 2
KEY = struct.Struct("<II")
VALUE = struct.Struct("<32sIIIIfI")
META_V1 = struct.Struct("<IIQ32s")
KERNEL = struct.Struct("<IIII32s")  # abi_version, passes, zero_bits, token_bits, memory_id
META = struct.Struct("<IIQ32sIIII32s")
KEY_SIZE, VALUE_SIZE, META_SIZE = KEY.size, VALUE.size, META.size  # 8, 56, 96
META_V1_SIZE = META_V1.size  # 48
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


def kernel_bytes(kernel: Kernel | None) -> bytes:
    """The kernel part of a meta (or a backup header): all zero for an unknown kernel."""
    if kernel is None:
        return KERNEL.pack(ABI_VERSION, 0, 0, 0, bytes(32))
    try:
        memory = bytes.fromhex(kernel.memory_id)
    except ValueError:
        memory = b""
    if len(memory) != 32:
        raise DeployError(f"memory_id {kernel.memory_id!r} is not 64 hex digits (a SHA-256)")
    return KERNEL.pack(ABI_VERSION, kernel.passes, kernel.zero_bits, kernel.token_bits, memory)


def kernel_of(raw: bytes, where: str) -> Kernel | None:
    """The kernel of ``kernel_bytes`` (None: unknown, passes 0; or all zero, a meta map
    just created)."""
    if not any(raw):
        return None
    version, passes, zero_bits, token_bits, memory = KERNEL.unpack(raw)
    if version != ABI_VERSION:
        raise DeployError(f"{where}: ABI version {version}, expected {ABI_VERSION}")
    if not passes and (zero_bits or token_bits or any(memory)):
        raise DeployError(f"{where}: kernel with 0 passes but other settings (damaged)")
    return Kernel(passes, zero_bits, token_bits, memory.hex()) if passes else None


@dataclass(frozen=True)
class Meta:
    """What is live: the layer, its entry count, since when, its checksum, and the kernel
    its seeds need (None: unknown, as in a meta of ABI 1 or one never deployed through)."""

    layer: int
    count: int
    deployed_at: int
    checksum: bytes
    kernel: Kernel | None = None

    def to_bytes(self) -> bytes:
        head = META_V1.pack(self.layer, self.count, self.deployed_at, self.checksum)
        return head + kernel_bytes(self.kernel)

    @classmethod
    def from_bytes(cls, raw: bytes) -> Meta:
        """A meta of ABI 2 (96 bytes) or ABI 1 (48 bytes, no kernel)."""
        if len(raw) not in (META_SIZE, META_V1_SIZE):
            raise DeployError(f"meta: {len(raw)} bytes, expected {META_SIZE} (or {META_V1_SIZE})")
        layer, count, deployed_at, checksum = META_V1.unpack_from(raw)
        kernel = kernel_of(raw[META_V1_SIZE:], "meta") if len(raw) == META_SIZE else None
        return cls(layer, count, deployed_at, checksum, kernel)

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
# header (112 B): {u8 magic[8] = "HSHRBAK1"; u32 version = 2; u32 layer; u32 count;
#                  u32 reserved = 0; u64 deployed_at_unix; u8 checksum[32];
#                  u32 abi_version = 2; u32 passes; u32 zero_bits; u32 token_bits;
#                  u8 memory_id[32]}
# then ``count`` entries of ``key || value`` (64 B each) in checksum order. Nothing after.
# Version 1 (a 64-byte header: no kernel) still reads, its kernel unknown.

BACKUP_MAGIC = b"HSHRBAK1"
BACKUP_VERSION = 2
BACKUP_HEADER_V1 = struct.Struct("<8sIIIIQ32s")
BACKUP_HEADER = struct.Struct("<8sIIIIQ32s" + KERNEL.format.lstrip("<"))
ENTRY_SIZE = KEY_SIZE + VALUE_SIZE


def encode_backup(meta: Meta, entries: Mapping[bytes, bytes]) -> bytes:
    rows = sorted_entries(entries)
    head = BACKUP_HEADER_V1.pack(
        BACKUP_MAGIC, BACKUP_VERSION, meta.layer, len(rows), 0, meta.deployed_at, checksum(entries)
    )
    return head + kernel_bytes(meta.kernel) + b"".join(k + v for k, v in rows)


def decode_backup(data: bytes, where: str) -> tuple[Meta, Entries]:
    """The meta and entries of a backup file; ``DeployError`` naming ``where`` if it is
    truncated, of another format or version, or fails its checksum."""
    if len(data) < BACKUP_HEADER_V1.size or data[:8] != BACKUP_MAGIC:
        raise DeployError(f"{where}: not a hasherd layer backup (bad magic)")
    _, version, layer, count, _, deployed_at, digest = BACKUP_HEADER_V1.unpack_from(data)
    if version not in (1, BACKUP_VERSION):
        raise DeployError(f"{where}: backup format version {version}, expected {BACKUP_VERSION}")
    kernel, size = None, BACKUP_HEADER_V1.size
    if version == BACKUP_VERSION:
        size = BACKUP_HEADER.size
        if len(data) < size:
            raise DeployError(f"{where}: {len(data)} bytes, shorter than its header")
        kernel = kernel_of(data[BACKUP_HEADER_V1.size : size], where)
    body = data[size:]
    if len(body) != count * ENTRY_SIZE:
        raise DeployError(f"{where}: {len(body)} bytes of entries, expected {count * ENTRY_SIZE}")
    entries = {
        body[i : i + KEY_SIZE]: body[i + KEY_SIZE : i + ENTRY_SIZE]
        for i in range(0, len(body), ENTRY_SIZE)
    }
    if len(entries) != count or checksum(entries) != digest:
        raise DeployError(f"{where}: checksum mismatch (the file is damaged)")
    return Meta(layer, count, deployed_at, digest, kernel), entries
