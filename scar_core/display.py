"""Showing text from the data without it doing anything.

Examples come from the web: they can hold HTML, scripts, markdown images pointing at remote
hosts, ANSI escapes, zero-width and right-to-left override characters. `visible` makes invisible
and control characters visible as `<U+202E>`-style marks so they can neither hide text nor reorder
it; `markdown_escape` neutralises every markdown and HTML construct for the few places where a
UI only takes markdown (labels, captions).
"""
from __future__ import annotations

import re
import unicodedata

_KEEP = {"\n", "\t"}
_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:&=\"'^%])")


def visible(text: str | None) -> str:
    """`text` with control, format (zero-width, bidi override), surrogate and unassigned code points
    replaced by a visible `<U+XXXX>` mark; newlines and tabs are kept."""
    if not text:
        return ""
    return "".join(c if c in _KEEP or not unicodedata.category(c).startswith("C") else f"<U+{ord(c):04X}>"
                   for c in text)


def snippet(text: str | None, limit: int = 160) -> str:
    """A one-line preview: visible characters, whitespace collapsed, cut at `limit` characters."""
    flat = " ".join(visible(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def markdown_escape(text: str | None) -> str:
    """Text that markdown renders literally: every markdown/HTML punctuation is backslash-escaped."""
    return _MARKDOWN.sub(r"\\\1", visible(text).replace("\n", " "))
