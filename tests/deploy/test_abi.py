"""The map ABI's bytes, the checksum definition, the backup file format, and the gates
(pure: no kernel needed)."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import pytest

from hasherd.deploy import abi, backups
from hasherd.deploy.errors import DeployError
from hasherd.deploy.flash import Gates, select
from hasherd.storage.rows import WeightRow


def weight(
    id_: int,
    token: int,
    ctx: int,
    *,
    bits: int = 8,
    fitness: float = 0.5,
    validation: str = "validated",
) -> WeightRow:
    return WeightRow(
        record_id=id_,
        run_id=1,
        token_id=token,
        context_key=ctx,
        slots=bytes(48),
        seed=bytes([id_]) * 32,
        output=0xA0B0C0D0,
        golden_nonce=id_,
        prefix_bits=bits,
        difficulty_bits=6,
        fitness=fitness,
        generation=3,
        epoch=0,
        memory_id="m",
        layer=token // 1000,
        validation=validation,
        id=id_,  # type: ignore[arg-type]
    )


def test_key_value_and_meta_layouts() -> None:
    key = abi.pack_key(0x01020304, 0xA1B2C3D4)
    assert key.hex() == "04030201d4c3b2a1"
    value = abi.WeightValue(bytes(range(32)), 1, 2, 3, 4, 0.5, abi.FLAG_VALIDATED).to_bytes()
    assert len(value) == 56
    assert value[:32] == bytes(range(32))
    fields = [value[i : i + 4].hex() for i in range(32, 56, 4)]
    assert fields == ["01000000", "02000000", "03000000", "04000000", "0000003f", "01000000"]
    meta = abi.Meta(7, 9, 0x0102030405060708, b"\xaa" * 32).to_bytes()
    assert (meta[:4].hex(), meta[4:8].hex(), meta[8:16].hex()) == (
        "07000000",
        "09000000",
        "0807060504030201",
    )
    assert meta[16:48] == b"\xaa" * 32
    assert abi.Meta.from_bytes(meta) == abi.Meta(7, 9, 0x0102030405060708, b"\xaa" * 32)


def test_entry_of_a_weight_sets_the_validated_flag() -> None:
    key, value = abi.entry_of(weight(5, 1234, 99))
    assert abi.unpack_key(key) == (1234, 99)
    v = abi.WeightValue.from_bytes(value)
    assert (v.seed, v.output, v.golden_nonce, v.prefix_bits, v.generation, v.fitness, v.flags) == (
        bytes([5]) * 32,
        0xA0B0C0D0,
        5,
        8,
        3,
        0.5,
        1,
    )
    assert (
        abi.WeightValue.from_bytes(abi.entry_of(weight(5, 1, 2, validation="unvalidated"))[1]).flags
        == 0
    )
    with pytest.raises(DeployError, match="context_key 4294967296 is not a u32"):
        abi.entry_of(weight(5, 1, 1 << 32))


def test_checksum_is_sha256_of_entries_in_token_then_context_order() -> None:
    # (1, 2) sorts before (256, 0) numerically, though its little-endian bytes sort after
    entries = {abi.pack_key(256, 0): b"B" * 56, abi.pack_key(1, 2): b"A" * 56}
    manual = hashlib.sha256(
        struct.pack("<II", 1, 2) + b"A" * 56 + struct.pack("<II", 256, 0) + b"B" * 56
    ).digest()
    assert abi.checksum(entries) == manual
    assert abi.checksum({}) == hashlib.sha256(b"").digest()


def test_backup_round_trip_and_damage(tmp_path: Path) -> None:
    entries = dict(abi.entry_of(weight(i, 1000 + i, i * 3)) for i in range(1, 6))
    meta = abi.Meta(1, 5, 1_700_000_000, abi.checksum(entries))
    path = backups.write(tmp_path, "hasher_weights", meta, entries)
    assert path.name.startswith("hasher_weights.") and path.name.endswith(".layer1.bak")
    data = path.read_bytes()
    assert data[:8] == b"HSHRBAK1" and len(data) == abi.BACKUP_HEADER.size + 5 * 64
    assert backups.read(path) == (meta, entries)
    flipped = bytearray(data)
    flipped[abi.BACKUP_HEADER.size + 36] ^= 1  # inside the first entry
    path.write_bytes(bytes(flipped))
    with pytest.raises(DeployError, match="checksum mismatch"):
        backups.read(path)
    path.write_bytes(data[:-1])
    with pytest.raises(DeployError, match="bytes of entries"):
        backups.read(path)
    path.write_bytes(b"not a backup")
    with pytest.raises(DeployError, match="bad magic"):
        backups.read(path)


def test_backups_are_ordered_and_pruned(tmp_path: Path) -> None:
    meta = abi.Meta(0, 0, 0, abi.checksum({}))
    written = [
        backups.write(tmp_path, "w", abi.Meta(i, 0, 0, meta.checksum), {})
        for i in range(backups.KEEP + 3)
    ]
    kept = backups.backups(tmp_path, "w")
    assert kept == written[-backups.KEEP :]
    assert backups.latest(tmp_path, "w") == written[-1]
    assert backups.read(written[-1])[0].layer == backups.KEEP + 2
    assert backups.latest(tmp_path, "other") is None


def test_gates_and_duplicate_keys() -> None:
    ws = [
        weight(1, 10, 1, validation="validated"),
        weight(2, 11, 1, validation="unvalidated"),
        weight(3, 12, 1, validation="non-deterministic"),
        weight(4, 13, 1, fitness=0.2),
        weight(5, 14, 1, bits=4),
        weight(6, 10, 1, bits=9),  # the same key as weight 1, with more prefix bits
        weight(7, 10, 1, bits=7),  # ... and one with fewer
    ]
    strict = select(ws, 0, Gates("strict"))
    assert strict.rejected == {"unvalidated": 1, "non_deterministic": 1}
    assert strict.duplicates == 2 and strict.stored == 7
    assert abi.WeightValue.from_bytes(strict.entries[abi.pack_key(10, 1)]).golden_nonce == 6
    assert sorted(abi.unpack_key(k) for k in strict.entries) == [(10, 1), (13, 1), (14, 1)]
    lenient = select(ws, 0, Gates("lenient", min_fitness=0.3, min_difficulty=5))
    assert lenient.rejected == {"non_deterministic": 1, "below_fitness": 1, "below_difficulty": 1}
    assert sorted(abi.unpack_key(k) for k in lenient.entries) == [(10, 1), (11, 1)]
    with pytest.raises(Exception, match="validation_mode: 'loose' is not strict or lenient"):
        Gates("loose")
