"""Showing text from the data in the app without it doing anything.

Examples come from the web: they can hold HTML, scripts, markdown images pointing at remote
hosts, ANSI escapes, zero-width and right-to-left override characters. Non-printable characters
are escaped as in terminal output (`errors.terminal_text`), so they can neither hide nor reorder
text; `markdown_escape` neutralises every markdown and HTML construct for the places where a UI
element only takes markdown (messages, labels, captions).
"""
from __future__ import annotations

import re

from scar_core.errors import terminal_text

_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:&=\"'^%@])")


def visible(text: str | None) -> str:
    """`text` with control, bidi and zero-width characters escaped (`\\u202e`); line breaks kept."""
    return terminal_text(text or "")


def snippet(text: str | None, limit: int = 160) -> str:
    """A one-line preview: visible characters, whitespace collapsed, cut at `limit` characters."""
    flat = " ".join(visible(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def markdown_escape(text: str | None) -> str:
    """Text that markdown renders literally: every markdown/HTML punctuation is backslash-escaped."""
    return _MARKDOWN.sub(r"\\\1", visible(text))
