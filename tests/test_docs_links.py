"""Every link and file citation in the documentation resolves inside the repository.

Checked: markdown links (``[text](target)``, ``[name]: target``) to a file, with their
``#anchor`` against the target's headings; repository paths cited in the text
(``docs/kernel.md``, `` `systemd/INSTALL.md` ``); and a doc cited by its bare name in a
code span (`` `asic-protocols.md` ``). Nothing may point outside the repository.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted(
    [
        ROOT / "README.md",
        ROOT / "tools" / "README.md",
        *(ROOT / "docs").rglob("*.md"),
        *(ROOT / "systemd").rglob("*.md"),
        *(ROOT / "etc").rglob("*.md"),
    ]
)
# Notes about other repositories: their code spans and paths name files of those.
EXTERNAL = {ROOT / "docs" / "asic-protocols.md", ROOT / "docs" / "upstream.md"}
FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
CODE_SPAN = re.compile(r"`([^`\n]+)`")
INLINE_LINK = re.compile(r"!?\[(?:[^\]\n]|\][^(\n])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]\n]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
REPO_PATH = re.compile(r"(?<![\w./-])((?:docs|systemd|etc|tools|tests|hasherd)/[\w./-]*\w\.md)\b")
BARE_DOC = re.compile(r"^[\w-]+\.md$")
SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)


def _prose(text: str) -> str:
    """The text without fenced code blocks (examples, not links)."""
    return FENCE.sub("", text)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for line in _prose(path.read_text()).splitlines():
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            slug = _slug(m.group(1))
            n = seen.get(slug, 0)
            seen[slug] = n + 1
            found.add(slug if n == 0 else f"{slug}-{n}")
    return found


def _links(text: str) -> list[str]:
    prose = CODE_SPAN.sub("", _prose(text))
    return INLINE_LINK.findall(prose) + REFERENCE_LINK.findall(prose)


def _problem(doc: Path, target: str) -> str | None:
    """Why ``target`` (a link in ``doc``) does not resolve, or None."""
    if SCHEME.match(target):
        return None  # a URL: not checked here
    file, _, anchor = target.partition("#")
    path = (doc.parent / file).resolve() if file else doc
    if not path.is_relative_to(ROOT):
        return "points outside the repository"
    if not path.exists():
        return "no such file"
    if anchor and path.suffix == ".md" and anchor not in _anchors(path):
        return f"no heading #{anchor} in {path.relative_to(ROOT)}"
    return None


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_markdown_links_resolve_inside_the_repository(doc: Path) -> None:
    bad = [(t, why) for t in _links(doc.read_text()) if (why := _problem(doc, t))]
    assert not bad, bad


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_cited_files_exist(doc: Path) -> None:
    if doc in EXTERNAL:
        pytest.skip("names files of other repositories")
    text = doc.read_text()
    missing = [p for p in REPO_PATH.findall(text) if not (ROOT / p).exists()]
    for name in CODE_SPAN.findall(_prose(text)):
        if BARE_DOC.match(name) and not any(
            (d / name).exists() for d in (doc.parent, ROOT / "docs", ROOT)
        ):
            missing.append(name)
    assert not missing, sorted(set(missing))


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_nothing_points_outside_the_repository(doc: Path) -> None:
    text = doc.read_text()
    assert "../shared" not in text and "shared/docs" not in text


def test_the_checks_catch_what_they_should() -> None:
    """The link parser and the anchor rule on known cases."""
    text = "see [a](x.md#b) and `[c](y.md)`\n\n```\n[e](w.md)\n```\n[d]: z.md\n"
    assert _links(text) == ["x.md#b", "z.md"]
    assert _slug("`hasherd train` flags (old → new)") == "hasherd-train-flags-old--new"
    doc = ROOT / "docs" / "configuration.md"
    assert _problem(doc, "../../outside.md") == "points outside the repository"
    assert _problem(doc, "nothing-here.md") == "no such file"
    assert _problem(doc, "#reloading") is None
    assert _problem(doc, "#no-such-heading") is not None
