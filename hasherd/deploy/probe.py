"""A lookup made by the kernel itself: a tiny BPF program that reads a weight through the
outer map, as a program on the rig's datapath would, run with BPF_PROG_TEST_RUN.

The program is hand-assembled (no compiler, no libbpf) and of type BPF_PROG_TYPE_SYSCALL
(Linux 5.14+, which also lets such sleepable programs use preallocated maps of maps): its
context is a 64-byte buffer, ``{u8 key[8]; u8 value[56]}``, which the kernel copies back
after the run. It

    looks up slot 0 of the outer map            -> return 1 when the slot is empty
    looks the key up in the inner map it holds  -> return 2 when the key is absent
    copies the 56-byte value into the context   -> return 0

``KernelProbe`` keeps the program loaded; each ``lookup`` is one BPF_PROG_TEST_RUN.
"""

from __future__ import annotations

import ctypes
import logging
import os
import struct
import sys
from types import TracebackType

from hasherd.deploy import bpf
from hasherd.deploy.abi import KEY_SIZE, VALUE_SIZE
from hasherd.deploy.errors import BpfError

LOGGER = logging.getLogger(__name__)
PROG_TYPE_SYSCALL = 31
F_SLEEPABLE = 1 << 4  # syscall programs must be sleepable
PSEUDO_MAP_FD = 1
FUNC_MAP_LOOKUP_ELEM = 1
FOUND, NO_SLOT, NO_KEY = 0, 1, 2
LICENSE = b"Dual MIT/GPL"
CTX_SIZE = KEY_SIZE + VALUE_SIZE


class ProgLoadAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [
        ("prog_type", ctypes.c_uint32),
        ("insn_cnt", ctypes.c_uint32),
        ("insns", ctypes.c_uint64),
        ("license", ctypes.c_uint64),
        ("log_level", ctypes.c_uint32),
        ("log_size", ctypes.c_uint32),
        ("log_buf", ctypes.c_uint64),
        ("kern_version", ctypes.c_uint32),
        ("prog_flags", ctypes.c_uint32),
        ("prog_name", ctypes.c_char * 16),
    ]


class TestRunAttr(ctypes.Structure):
    _pack_ = 1
    _fields_ = [
        ("prog_fd", ctypes.c_uint32),
        ("retval", ctypes.c_uint32),
        ("data_size_in", ctypes.c_uint32),
        ("data_size_out", ctypes.c_uint32),
        ("data_in", ctypes.c_uint64),
        ("data_out", ctypes.c_uint64),
        ("repeat", ctypes.c_uint32),
        ("duration", ctypes.c_uint32),
        ("ctx_size_in", ctypes.c_uint32),
        ("ctx_size_out", ctypes.c_uint32),
        ("ctx_in", ctypes.c_uint64),
        ("ctx_out", ctypes.c_uint64),
    ]


def insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    """One ``struct bpf_insn``; the register nibbles follow the host's bit-field order."""
    regs = (src << 4 | dst) if sys.byteorder == "little" else (dst << 4 | src)
    return struct.pack("=BBhi", code, regs, off, imm)


R0, R1, R2, R3, R6, R7, R10 = 0, 1, 2, 3, 6, 7, 10
MOV64_REG, MOV64_IMM, ADD64_IMM = 0xBF, 0xB7, 0x07
LD_IMM64, LDX_DW, STX_DW, ST_W = 0x18, 0x79, 0x7B, 0x62
JEQ_IMM, CALL, EXIT = 0x15, 0x85, 0x95


def program(outer_fd: int) -> bytes:
    copy = b"".join(
        insn(LDX_DW, R3, R0, off=8 * i) + insn(STX_DW, R6, R3, off=KEY_SIZE + 8 * i)
        for i in range(VALUE_SIZE // 8)
    )
    inner = [
        insn(MOV64_REG, R1, R0),  # the inner map, as the helper's map argument
        insn(LDX_DW, R7, R6, off=0),  # the 8-byte key from the context ...
        insn(STX_DW, R10, R7, off=-16),  # ... onto the stack
        insn(MOV64_REG, R2, R10),
        insn(ADD64_IMM, R2, imm=-16),
        insn(CALL, imm=FUNC_MAP_LOOKUP_ELEM),
    ]
    found = [copy, insn(MOV64_IMM, R0, imm=FOUND), insn(EXIT)]
    no_key = [insn(MOV64_IMM, R0, imm=NO_KEY), insn(EXIT)]
    no_slot = [insn(MOV64_IMM, R0, imm=NO_SLOT), insn(EXIT)]
    n = len  # jump offsets count instructions (8 bytes each)
    found_len = len(copy) // 8 + 2
    body = [
        insn(MOV64_REG, R6, R1),  # the context
        insn(LD_IMM64, R1, PSEUDO_MAP_FD, imm=outer_fd),
        insn(0),
        insn(ST_W, R10, off=-4, imm=0),  # slot 0
        insn(MOV64_REG, R2, R10),
        insn(ADD64_IMM, R2, imm=-4),
        insn(CALL, imm=FUNC_MAP_LOOKUP_ELEM),
        insn(JEQ_IMM, R0, off=n(inner) + 1 + found_len + n(no_key), imm=0),
        *inner,
        insn(JEQ_IMM, R0, off=found_len, imm=0),
        *found,
        *no_key,
        *no_slot,
    ]
    return b"".join(body)


class KernelProbe:
    """The loaded lookup program for the outer map ``outer`` (``close()`` or ``with``)."""

    def __init__(self, outer: bpf.Map) -> None:
        code = ctypes.create_string_buffer(program(outer.fd))
        lic = ctypes.create_string_buffer(LICENSE)
        log = ctypes.create_string_buffer(16384)
        attr = ProgLoadAttr(
            prog_type=PROG_TYPE_SYSCALL,
            insn_cnt=(len(code) - 1) // 8,
            insns=ctypes.addressof(code),
            license=ctypes.addressof(lic),
            log_level=1,
            log_size=len(log),
            log_buf=ctypes.addressof(log),
            prog_flags=F_SLEEPABLE,
            prog_name=b"hasher_probe",
        )
        try:
            self.fd = bpf.sys_bpf(bpf.PROG_LOAD, attr, outer.path)
        except BpfError:
            LOGGER.warning(
                "the verifier refused the probe:\n%s", log.value.decode(errors="replace")
            )
            raise

    def lookup(self, key: bytes) -> tuple[int, bytes | None]:
        """(FOUND, value) or (NO_SLOT | NO_KEY, None), as the kernel saw it."""
        ctx = ctypes.create_string_buffer(bytes(key) + bytes(VALUE_SIZE), CTX_SIZE)
        attr = TestRunAttr(prog_fd=self.fd, ctx_size_in=CTX_SIZE, ctx_in=ctypes.addressof(ctx))
        bpf.sys_bpf(bpf.PROG_TEST_RUN, attr)
        if attr.retval == FOUND:
            return FOUND, ctx.raw[KEY_SIZE:CTX_SIZE]
        return int(attr.retval), None

    def close(self) -> None:
        fd, self.fd = self.fd, -1
        if fd >= 0:
            os.close(fd)

    def __enter__(self) -> KernelProbe:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
