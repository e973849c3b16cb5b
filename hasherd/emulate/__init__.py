"""Software emulators of mining hardware on real ptys, for tests and bench work
(asic-protocols.md, section 5). See docs/emulator.md."""

from hasherd.emulate.bm1370 import FAULTS, ChainEmulator, EmulatorStats, share_start
from hasherd.emulate.stream import CommandDecoder, HostFrame

__all__ = [
    "FAULTS",
    "ChainEmulator",
    "CommandDecoder",
    "EmulatorStats",
    "HostFrame",
    "share_start",
]
