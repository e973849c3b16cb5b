"""The S3 controller engine, byte for byte: section-3 vectors in, section-3 tokens out."""

from __future__ import annotations

import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hasherd.emulate.s3 import FAULTS, S3Engine
from hasherd.emulate.s3_stream import MAX_TX_TOKEN, TxDecoder
from hasherd.errors import InputError
from hasherd.kernel import spec
from hasherd.kernel.midstate import midstate, sha256d_from_midstate
from hasherd.protocol.s3 import (
    ConfigFlag,
    RxDecoder,
    RxNonce,
    RxStatus,
    RxStatusRequest,
    RxToken,
    StatusFlag,
    TxConfig,
    TxTask,
    Work,
    data2_from_header,
)
from tests.s3.s3_helpers import (
    DETECT,
    GENESIS,
    GENESIS_MIDSTATE,
    GENESIS_N,
    RX_NONCE,
    TX_CONFIG,
    TX_TASK,
    brute_force,
    header_of,
    task_of,
    zero_bits_of,
)

FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SWEEP = 512


def tokens(data: bytes) -> list[RxToken]:
    return RxDecoder().feed(data)


def nonces_of(data: bytes) -> list[tuple[int, int]]:
    """(work_id, header-LE nonce) of every entry, in wire order."""
    return [
        (e.work_id, int.from_bytes(e.header_nonce, "little"))
        for t in tokens(data)
        if isinstance(t, RxNonce)
        for e in t.nonces
    ]


# -- midstates -----------------------------------------------------------------------------


def test_genesis_midstate_and_continuation() -> None:
    assert midstate(GENESIS) == GENESIS_MIDSTATE
    for seed in range(5):
        header = header_of(seed)
        assert sha256d_from_midstate(midstate(header), header[64:]) == spec.dsha256(header)


# -- vectors ---------------------------------------------------------------------------------


def test_genesis_work_gives_the_section_3_nonce_token() -> None:
    engine = S3Engine(1, 32, sweep_start=GENESIS_N - 1000, sweep_limit=4096, fifo_depth=0x100)
    assert engine.feed(TX_TASK) == RX_NONCE
    assert engine.stats().works == 1 and engine.stats().nonces_found == 1


def test_detect_request_answers_chain_and_asic_counts() -> None:
    engine = S3Engine(5, 8, chains=2)
    (status,) = tokens(engine.feed(DETECT))
    assert isinstance(status, RxStatus)
    assert status.chain_asic_num == (3, 2)
    assert status.asic_exist == status.asic_status == (0xE000_0000, 0xC000_0000)
    assert status.fifo_space == 64 and status.flags == 0
    (status,) = tokens(engine.feed(RxStatusRequest(StatusFlag.CHIP_STATUS).to_bytes()))
    assert isinstance(status, RxStatus) and status.flags == 1
    assert engine.stats().status_requests == 2


def test_config_is_taken_and_reset_restarts_the_nonce_count() -> None:
    engine = S3Engine(2, 4, sweep_limit=64)
    engine.feed(task_of(header_of(1), 1).to_bytes())
    assert engine.stats().nonces_found > 0
    assert engine.feed(TX_CONFIG) == b""
    assert engine.config == TxConfig.from_bytes(TX_CONFIG)
    assert engine.config.flags & ConfigFlag.RESET
    assert engine.stats().configs == 1 and engine.stats().nonces_found == 0


# -- works ---------------------------------------------------------------------------------


def test_nonces_are_exactly_the_brute_forced_ones_with_the_work_id_echoed() -> None:
    header = header_of(2)
    engine = S3Engine(4, 6, sweep_limit=SWEEP)
    got = nonces_of(engine.feed(task_of(header, 0xDEAD_BEEF).to_bytes()))
    want = brute_force(header, 4, 6, SWEEP)
    assert sorted(n for _, n in got) == sorted(want) and want
    assert {wid for wid, _ in got} == {0xDEAD_BEEF}
    assert all(zero_bits_of(header, n) >= 6 for _, n in got)
    chips_in_order = [n // (1 << 30) for _, n in got]
    assert chips_in_order != sorted(chips_in_order)  # out of order across chips


def test_task_diff_adds_zero_bits() -> None:
    header = header_of(3)
    engine = S3Engine(2, 4, sweep_limit=SWEEP)
    got = nonces_of(engine.feed(task_of(header, 9, diff=3).to_bytes()))
    assert sorted(n for _, n in got) == sorted(brute_force(header, 2, 7, SWEEP))
    out = tokens(engine.feed(task_of(header, 10, diff=3).to_bytes()))
    assert out and all(isinstance(t, RxNonce) and t.diff == 3 for t in out)


def test_fifo_space_accounting() -> None:
    engine = S3Engine(1, 0, sweep_limit=1, fifo_depth=3)
    works = tuple(Work(i, header_of(i)[:32], bytes(12)) for i in range(1, 9))
    out = tokens(engine.feed(TxTask(works).to_bytes()))
    assert [(t.fifo_space, t.nonces[0].work_id) for t in out if isinstance(t, RxNonce)] == [
        (1, 1),
        (2, 2),
        (3, 3),
    ]
    assert engine.stats().works == 3 and engine.stats().works_dropped == 5


def test_running_total_and_token_size() -> None:
    engine = S3Engine(2, 0, sweep_limit=10)
    out = [t for t in tokens(engine.feed(task_of(header_of(4), 1).to_bytes()))]
    assert [len(t.nonces) for t in out if isinstance(t, RxNonce)] == [8, 8, 4]
    assert {t.total_nonce_num for t in out if isinstance(t, RxNonce)} == {20}


# -- faults ----------------------------------------------------------------------------------


def test_fault_bad_crc_and_garbage() -> None:
    header = header_of(5)
    engine = S3Engine(4, 4, {"bad_crc", "garbage"}, sweep_limit=SWEEP)
    decoder = RxDecoder()
    decoder.feed(engine.feed(task_of(header, 1).to_bytes()))
    assert decoder.crc_errors > 0
    assert decoder.garbage_bytes >= engine.stats().garbage_bytes_sent > 0


def test_fault_duplicate_and_drop_nonce() -> None:
    header = header_of(6)
    want = brute_force(header, 4, 5, SWEEP)
    engine = S3Engine(4, 5, {"duplicate", "drop_nonce"}, sweep_limit=SWEEP, fault_every=3)
    got = [n for _, n in nonces_of(engine.feed(task_of(header, 1).to_bytes()))]
    s = engine.stats()
    assert s.nonces_dropped == len(want) // 3 > 0
    assert len(set(got)) == len(want) - s.nonces_dropped
    assert len(got) > len(set(got))
    assert set(got) < set(want)


def test_fault_stale_job_uses_unknown_work_ids() -> None:
    engine = S3Engine(2, 4, {"stale_job"}, sweep_limit=SWEEP)
    ids = {
        w for i in (1, 2) for w, _ in nonces_of(engine.feed(task_of(header_of(i), i).to_bytes()))
    }
    assert ids == {1, 2, 2 | 0x8000_0000}


def test_fault_dead_chip_is_silent_and_unhealthy() -> None:
    header = header_of(7)
    engine = S3Engine(4, 4, {"dead_chip"}, sweep_limit=SWEEP, dead_chip=1)
    got = sorted(n for _, n in nonces_of(engine.feed(task_of(header, 1).to_bytes())))
    assert got == sorted(brute_force(header, 4, 4, SWEEP, alive=[0, 2, 3]))
    (status,) = tokens(engine.feed(DETECT))
    assert isinstance(status, RxStatus)
    assert status.asic_exist == (0xF000_0000,) and status.asic_status == (0xB000_0000,)


def test_fault_late_holds_nonce_tokens_until_due() -> None:
    now = [100.0]
    engine = S3Engine(2, 4, {"late"}, sweep_limit=SWEEP, late_delay=0.5, clock=lambda: now[0])
    assert engine.feed(task_of(header_of(8), 1).to_bytes()) == b""
    assert isinstance(tokens(engine.feed(DETECT))[0], RxStatus)  # status is never held
    assert engine.next_due() == 100.5 and engine.take() == b""
    now[0] = 100.5
    assert nonces_of(engine.take()) and engine.next_due() is None


def test_rejects_bad_arguments() -> None:
    for bad in (
        {"chips": 0},
        {"zero_bits": 33},
        {"faults": {"melted"}},
        {"chains": 3, "chips": 2},
        {"sweep_limit": 0},
        {"fifo_depth": 0},
        {"dead_chip": 4},
    ):
        options = {"chips": 4, "zero_bits": 8, **bad}
        with pytest.raises(InputError):
            S3Engine(**options)  # type: ignore[arg-type]
    assert {"drop_nonce", "late", "stale_job"} <= FAULTS


# -- the host-token decoder ------------------------------------------------------------------


def test_tx_decoder_one_byte_at_a_time_with_garbage_and_bad_crc() -> None:
    bad = bytearray(DETECT)
    bad[-1] ^= 1
    stream = b"\x01\x52\x00" + TX_CONFIG + bytes(bad) + b"\x53" + TX_TASK + b"\x51" + DETECT
    decoder = TxDecoder()
    out = [t for byte in stream for t in decoder.feed(bytes((byte,)))]
    assert out == [
        TxConfig.from_bytes(TX_CONFIG),
        TxTask.from_bytes(TX_TASK),
        RxStatusRequest.from_bytes(DETECT),
    ]
    assert decoder.crc_errors == 1 and decoder.garbage_bytes >= 4 and decoder.buffered == 0


@FUZZ
@given(st.binary(max_size=600), st.integers(1, 64))
def test_engine_takes_random_bytes_without_raising(blob: bytes, chunk: int) -> None:
    engine = S3Engine(2, 8, sweep_limit=16)
    for at in range(0, len(blob), chunk):
        out = engine.feed(blob[at : at + chunk])
        assert all(isinstance(t, RxStatus | RxNonce) for t in tokens(out))
    s = engine.stats()
    assert s.garbage_bytes + engine._decoder.buffered <= len(blob)


@FUZZ
@given(st.data())
def test_engine_resyncs_after_mutated_tokens(data: st.DataObject) -> None:
    stream = bytearray(TX_CONFIG + TX_TASK + DETECT)
    for _ in range(data.draw(st.integers(1, 6))):
        stream[data.draw(st.integers(0, len(stream) - 1))] = data.draw(st.integers(0, 255))
    engine = S3Engine(1, 8, sweep_limit=16)
    engine.feed(bytes(stream))
    # clean requests after the damage are answered once a false candidate (at most the
    # largest token) has been filled and rejected
    out = tokens(engine.feed(DETECT * (MAX_TX_TOKEN // len(DETECT) + 1)))
    assert any(isinstance(t, RxStatus) for t in out)


def test_random_headers_every_work_checks_out() -> None:
    rng = random.Random(11)
    engine = S3Engine(3, 5, sweep_limit=256)
    for wid in range(1, 4):
        header = rng.randbytes(80)
        work = Work(wid, midstate(header), data2_from_header(header))
        got = nonces_of(engine.feed(TxTask((work,)).to_bytes()))
        assert sorted(n for _, n in got) == sorted(brute_force(header, 3, 5, 256))
