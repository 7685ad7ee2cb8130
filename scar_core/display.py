"""Showing text from the data in the app without it doing anything.

Examples come from the web: they can hold HTML, scripts, markdown images pointing at remote
hosts, ANSI escapes, zero-width and right-to-left override characters. Non-printable characters
are escaped as in terminal output (`errors.terminal_text`), so they can neither hide nor reorder
text; `markdown_escape` neutralises every markdown and HTML construct for the places where a UI
element only takes markdown (messages, labels, captions). `render_markdown` shows an example's
markdown as what it means (lists, tables, highlighted code) through a sanitising path: markdown-it
with raw HTML off (tags in the text appear as text), images shown as their alt text (no remote
fetch), links only to http(s)/mailto and never followed without a click, then nh3 (the ammonia
sanitiser) keeps only an allow-list of tags, attributes and classes.
"""
from __future__ import annotations

import re
from functools import lru_cache

import nh3
from markdown_it import MarkdownIt
from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import get_lexer_by_name
from pygments.token import STANDARD_TYPES
from pygments.util import ClassNotFound

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


CODE_STYLE = "friendly"  # pygments style of highlighted code blocks
_TAGS = {"p", "br", "hr", "h1", "h2", "h3", "h4", "h5", "h6", "strong", "em", "del", "s", "code", "pre", "span",
         "blockquote", "ul", "ol", "li", "table", "thead", "tbody", "tr", "th", "td", "a"}
_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}}  # classes: allowed_classes below
_TOKEN_CLASSES = {name for name in STANDARD_TYPES.values() if name}


@lru_cache(maxsize=1)
def _parser() -> MarkdownIt:
    parser = MarkdownIt("commonmark", {"html": False, "linkify": False, "highlight": _highlight}).enable(
        ["table", "strikethrough"])
    parser.add_render_rule("image", lambda self, tokens, idx, options, env:
                           f"[image: {self.renderInline(tokens[idx].children or [], options, env) or 'no text'}]")
    parser.validateLink = lambda url: url.strip().lower().startswith(("http://", "https://", "mailto:"))
    parser.core.ruler.push("unknown_info_is_code", _unknown_info_is_code)
    return parser


def _unknown_info_is_code(state) -> None:
    """A fence opened as "```public static final String[] VALUES = ..." (common in LIMA and Stack
    Exchange answers) has that code as its CommonMark info string, which renders nowhere: an info
    string that is not one word naming a language ("```docker run -p 3306:3306 ..." is code too) is put
    back as the block's first line."""
    for token in state.tokens:
        info = token.info.strip() if token.type == "fence" else ""
        if info and (len(info.split()) > 1 or info.lower() not in _languages()):
            token.content, token.info = f"{info}\n{token.content}", ""


def _highlight(code: str, language: str, attributes: str) -> str:
    """A fenced block's code as pygments token spans (markdown-it wraps them in <pre><code>); '' when the
    language is unnamed or unknown, so markdown-it escapes it plainly."""
    try:
        lexer = get_lexer_by_name(language.strip()) if language.strip() else None
    except ClassNotFound:
        lexer = None
    if lexer is None:
        return ""
    return highlight(code, lexer, HtmlFormatter(nowrap=True, classprefix="tok-"))


def render_markdown(text: str | None) -> str:
    """`text` as sanitised HTML: markdown rendered, raw HTML shown as text, no images fetched, no scripts,
    control and bidi characters made visible (as `visible`); code blocks highlighted (style: code_css)."""
    rendered = _parser().render(visible(text))
    return nh3.clean(rendered, tags=_TAGS, attributes=_ATTRIBUTES, url_schemes={"http", "https", "mailto"},
                     link_rel="noopener noreferrer nofollow",
                     allowed_classes={"span": {f"tok-{c}" for c in _TOKEN_CLASSES},
                                      "code": {f"language-{c}" for c in _languages()}},
                     set_tag_attribute_values={"a": {"target": "_blank"}})


@lru_cache(maxsize=1)
def _languages() -> frozenset[str]:
    from pygments.lexers import get_all_lexers

    return frozenset(alias for _, aliases, _, _ in get_all_lexers() for alias in aliases)


def code_css() -> str:
    """The stylesheet of render_markdown's highlighted code (token classes prefixed `tok-`)."""
    return (HtmlFormatter(style=CODE_STYLE, classprefix="tok-").get_style_defs(".scar-markdown pre")
            + "\n.scar-markdown table {border-collapse: collapse; margin: .5em 0;}"
            "\n.scar-markdown th, .scar-markdown td {border: 1px solid #ccc; padding: .25em .6em; text-align: left;}"
            "\n.scar-markdown th {background: #f3f3f3;}")

def duration(seconds: float) -> str:
    """A time in words: 'a few seconds', '45 seconds', '12 minutes', '3.5 hours'."""
    if seconds < 10:
        return "a few seconds"
    if seconds < 90:
        return f"{seconds:.0f} seconds"
    return f"{seconds / 60:.0f} minutes" if seconds < 5400 else f"{seconds / 3600:.1f} hours"


def plural(count: int, noun: str) -> str:
    """'1 run', '3 runs', '1,200 pairs'."""
    return f"{count:,} {noun}{'' if count == 1 else 's'}"
