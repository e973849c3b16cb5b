"""Text classifications behind the feature words: token word classes and section domains.

Both are fixed, deterministic rule lists (docs/data.md spells them out); changing one
changes every feature vector, and so every trained seed's memory.
"""

from __future__ import annotations

import re
import unicodedata

# -- word classes (slot 4's low byte) -----------------------------------------------------

OTHER, WORD, CAPITALIZED, NUMBER, PUNCTUATION, WHITESPACE, CODE, MATH, ALNUM = range(9)
WORD_CLASSES = {
    OTHER: "other",
    WORD: "lowercase word",
    CAPITALIZED: "capitalized word",
    NUMBER: "number",
    PUNCTUATION: "punctuation",
    WHITESPACE: "whitespace",
    CODE: "code symbol",
    MATH: "math symbol",
    ALNUM: "mixed letters and digits",
}
PUNCT_CHARS = frozenset(".,;:!?'\"()-–—…«»“”‘’")
CODE_CHARS = frozenset("{}[]_#\\|&~@$%`")
MATH_CHARS = frozenset("+-*/=<>^")


def word_class(token_text: str) -> int:
    """The class of one token's text; the first rule that applies wins."""
    s = token_text.strip()
    if not s:
        return WHITESPACE
    if "\ufffd" in s:  # a token that is only part of a UTF-8 character
        return OTHER
    if s.isdecimal():
        return NUMBER
    if s.isalpha():
        return CAPITALIZED if s[0].isupper() else WORD
    if all(ch in PUNCT_CHARS for ch in s):
        return PUNCTUATION
    if all(ch in CODE_CHARS for ch in s):
        return CODE
    if all(ch in MATH_CHARS or unicodedata.category(ch) == "Sm" for ch in s):
        return MATH
    if s.isalnum():
        return ALNUM
    return OTHER


# -- domains (slot 10's low 16 bits) ------------------------------------------------------

PROSE, ACADEMIC = 0x1000, 0x1100
MATH_DOMAIN, LOGIC = 0x2000, 0x2100
CODE_DOMAIN, MARKUP = 0x3000, 0x3100
FINANCIAL, TECHNICAL = 0x4000, 0x5000
DOMAINS = {
    PROSE: "prose",
    ACADEMIC: "academic",
    MATH_DOMAIN: "math",
    LOGIC: "logic",
    CODE_DOMAIN: "code",
    MARKUP: "markup",
    FINANCIAL: "financial",
    TECHNICAL: "technical",
}
DOMAIN_THRESHOLD = 0.10

_WORDS = {
    CODE_DOMAIN: "def class import return function const let var elif lambda struct fn impl "
    "void printf println nullptr async await yield self none null true false int bool",
    LOGIC: "implies iff therefore premise premises conclusion valid contradiction tautology "
    "syllogism proposition negation conjunction disjunction entails axiom hence",
    MATH_DOMAIN: "theorem lemma proof equation integral derivative matrix vector sum prime "
    "polynomial modulo divisible root square formula",
    FINANCIAL: "revenue profit loss invoice dividend budget interest loan tax price cost "
    "payment equity asset assets liabilities cash quarter fiscal earnings margin shares stock",
    TECHNICAL: "voltage firmware hardware protocol latency throughput bandwidth configure "
    "configuration install device driver sensor circuit chip usb serial cpu gpu kernel "
    "packet cable power temperature fan board asic",
    ACADEMIC: "hypothesis methodology et al study studies participants findings literature "
    "analysis empirical theory research abstract experiment results significant journal",
}
KEYWORDS = {domain: frozenset(words.split()) for domain, words in _WORDS.items()}
_PATTERNS = {
    CODE_DOMAIN: re.compile(r"[{};]|==|!=|->|=>|::|\+=|&&|\|\||\(\)|\w_\w"),
    MARKUP: re.compile(r"</?[A-Za-z][\w-]*(?:\s[^<>]*)?/?>|&\w+;|\\(?:begin|end|section|item)\b"),
    LOGIC: re.compile(r"[∀∃¬∧∨→⇒↔⇔⊢⊨]|if and only if"),
    MATH_DOMAIN: re.compile(r"[=×÷−^∑∏∫√≤≥≈≠∞π∂∈⊂·]|\d\s*[-+*/]\s*\d|\b[a-z]\s*[=^]"),
    FINANCIAL: re.compile(r"[$€£¥]|\b(?:usd|eur|gbp)\b|\d%"),
    TECHNICAL: re.compile(
        r"\d\s?(?:mm|cm|km|kg|mg|ms|ns|hz|khz|mhz|ghz|kb|mb|gb|tb|mv|ma|kw|rpm|mbps|gbps)\b"
        r"|\d\s?(?:°c|v|w)\b"
    ),
    ACADEMIC: re.compile(r"\[\d+(?:,\s*\d+)*\]|\([A-Z][a-z]+(?: et al\.)?,? \d{4}\)"),
}
# Tie order: the more specific domain wins.
PRIORITY = (CODE_DOMAIN, MARKUP, LOGIC, MATH_DOMAIN, FINANCIAL, TECHNICAL, ACADEMIC)
_WORD = re.compile(r"[a-z]+")


def domain_scores(text: str) -> dict[int, float]:
    """Indicator hits per whitespace-separated chunk, for each non-prose domain."""
    chunks = max(1, len(text.split()))
    lower = text.lower()
    words = _WORD.findall(lower)
    scores: dict[int, float] = {}
    for domain in PRIORITY:
        hits = sum(1 for w in words if w in KEYWORDS.get(domain, ()))
        source = text if domain == ACADEMIC else lower
        hits += len(_PATTERNS[domain].findall(source))
        scores[domain] = hits / chunks
    return scores


def detect_domain(text: str) -> int:
    """The domain code of a section: the best-scoring domain at or above the threshold
    (ties go to the earlier one in ``PRIORITY``), else prose."""
    scores = domain_scores(text)
    best = max(PRIORITY, key=lambda d: (scores[d], -PRIORITY.index(d)))
    return best if scores[best] >= DOMAIN_THRESHOLD else PROSE
