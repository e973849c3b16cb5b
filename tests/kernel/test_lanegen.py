"""The generated lane kernels are the generator's output, and the generator's SHA-256 is
SHA-256 (its constant folding is checked through a pure-Python run of its own emitter)."""

from __future__ import annotations

import hashlib
import struct

from hasherd.kernel import lanegen


def test_committed_kernels_match_the_generator() -> None:
    assert lanegen.TARGET.read_text() == lanegen.generate(), "run: make lanes"


def _run_compress(block: bytes) -> bytes:
    """Emit one compression of a block whose words are all variables, execute the emitted
    lines with plain integers, and return the digest words."""
    em = lanegen.Emitter("")
    words = struct.unpack(">16I", block)
    w: list[lanegen.Value] = [em.let(f"w{i}") for i in range(16)]
    st = em.compress(list(lanegen.IV), w)
    out = [em.add(lanegen.IV[i], st[i]) for i in range(8)]
    env: dict[str, object] = {f"w{i}": words[i] for i in range(16)}

    class _U32:
        @staticmethod
        def uint32(x: int) -> int:
            return x & 0xFFFFFFFF

    env["np"] = _U32
    exec("\n".join(em.lines), env)  # the emitted code, run as plain Python
    return b"".join(
        struct.pack(">I", v if isinstance(v, int) else int(env[v]))  # type: ignore[call-overload]
        for v in out
    )


def test_emitter_computes_sha256_compression() -> None:
    msg = b"abc"
    block = msg + b"\x80" + bytes(55 - len(msg)) + struct.pack(">Q", 8 * len(msg))
    assert _run_compress(block) == hashlib.sha256(msg).digest()
