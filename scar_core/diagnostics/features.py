"""Linguistic-form features of a response: interpretable, cheap, no model.

Each response is parsed once with a CommonMark parser (markdown-it-py, tables enabled). Markdown
structure is counted from the parse; everything else is measured on the *prose*: the text of
paragraphs, headings, list items and table cells with markup, inline code and code blocks removed
(code would distort word-level rates). Definitions:

- words: word tokens (`\\w+` runs, contractions kept whole) in the whole response, code included.
- sentences: textstat's sentence count summed over prose blocks, so a sentence never spans two
  list items or a heading and its paragraph (textstat skips fragments of two words or fewer, but
  every non-empty block counts at least once).
- mean_sentence_length: prose words per sentence.
- type_token_ratio: distinct / total lower-cased prose words; mtld: MTLD (McCarthy & Jarvis 2010,
  threshold 0.72, via lexicalrichness), a diversity measure that does not fall with length as TTR does.
- function_word_share: share of prose words in scikit-learn's English stop-word list (closed-class
  words plus a few frequent content words such as "system" or "find").
- transitions / hedges / first_person per 100 prose words: the small lexicons below (no library
  ships them); multi-word phrases count once per occurrence.
- punctuation per 100 prose words: commas, colons, semicolons, question marks, exclamation marks,
  dashes (en/em dashes and spaced hyphens), parentheses and double quotes.
- bullet_items, numbered_items, headings, code_blocks, bold_spans, table_rows: counts;
  markdown_density: share of non-blank lines inside a list item, heading, code block, table or quote.
"""
from __future__ import annotations

import re
from collections.abc import Iterable

import numpy as np
import pandas as pd

WORD = re.compile(r"\w+(?:['’]\w+)*")

TRANSITIONS = (
    "however", "therefore", "moreover", "furthermore", "additionally", "consequently", "thus", "hence",
    "meanwhile", "nevertheless", "nonetheless", "instead", "otherwise", "similarly", "likewise",
    "accordingly", "finally", "firstly", "secondly", "thirdly", "lastly", "overall", "besides", "indeed",
    "also", "specifically", "ultimately", "in addition", "for example", "for instance", "in contrast",
    "on the other hand", "as a result", "in conclusion", "in summary", "to summarize", "in other words",
    "that said", "in fact", "first of all", "after that", "in particular", "by contrast",
)
HEDGES = (
    "might", "may", "perhaps", "possibly", "probably", "likely", "unlikely", "could", "seem", "seems",
    "seemed", "apparently", "arguably", "generally", "typically", "usually", "often", "somewhat",
    "suggest", "suggests", "i think", "i believe", "i guess", "i suppose", "it seems", "not sure",
    "in my opinion", "sort of", "kind of", "tend to", "tends to",
)
FIRST_PERSON = (
    "i", "me", "my", "mine", "myself", "we", "us", "our", "ours", "ourselves",
    "i'm", "i've", "i'd", "i'll", "we're", "we've", "we'd", "we'll",
)
PUNCTUATION = {
    "commas": r",", "colons": r":", "semicolons": r";", "questions": r"\?", "exclamations": r"!",
    "dashes": r"[—–]|(?<=\s)-(?=\s)|--", "parentheses": r"\(", "quotes": r"[\"“”]",
}

FEATURES = (
    "chars", "words", "sentences", "mean_sentence_length", "type_token_ratio", "mtld",
    "function_word_share", "transitions_per_100w", "hedges_per_100w", "first_person_per_100w",
    *(f"{name}_per_100w" for name in PUNCTUATION),
    "bullet_items", "numbered_items", "headings", "code_blocks", "bold_spans", "table_rows",
    "markdown_density",
)

_STRUCTURE = {"list_item_open", "heading_open", "fence", "code_block", "table_open", "blockquote_open"}


def _phrases(lexicon: Iterable[str]) -> re.Pattern:
    alternatives = sorted((re.escape(p) for p in lexicon), key=len, reverse=True)
    return re.compile(r"(?<![\w'])(?:" + "|".join(alternatives) + r")(?![\w'])")


class _Lexicons:
    """Compiled patterns and the imported libraries, built once per process."""

    def __init__(self) -> None:
        import textstat
        from lexicalrichness import LexicalRichness
        from markdown_it import MarkdownIt
        from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

        self.markdown = MarkdownIt("commonmark").enable("table")
        self.sentence_count = textstat.sentence_count
        self.richness = LexicalRichness
        self.function_words = ENGLISH_STOP_WORDS
        self.transitions, self.hedges, self.first_person = map(_phrases, (TRANSITIONS, HEDGES, FIRST_PERSON))
        self.punctuation = {name: re.compile(p) for name, p in PUNCTUATION.items()}


_lexicons: _Lexicons | None = None


def _get() -> _Lexicons:
    global _lexicons
    if _lexicons is None:
        _lexicons = _Lexicons()
    return _lexicons


def text_features(text: str) -> dict[str, float]:
    """The features of one response, keyed as in FEATURES."""
    lex = _get()
    tokens = lex.markdown.parse(text)
    blocks: list[str] = []
    counts = dict.fromkeys(("bullet_items", "numbered_items", "headings", "code_blocks", "bold_spans",
                            "table_rows"), 0)
    structured: set[int] = set()
    lists: list[str] = []
    for tok in tokens:
        kind = tok.type
        if kind in ("bullet_list_open", "ordered_list_open"):
            lists.append(kind)
        elif kind in ("bullet_list_close", "ordered_list_close"):
            lists.pop()
        elif kind == "list_item_open":
            counts["bullet_items" if lists[-1] == "bullet_list_open" else "numbered_items"] += 1
        elif kind == "heading_open":
            counts["headings"] += 1
        elif kind in ("fence", "code_block"):
            counts["code_blocks"] += 1
        elif kind == "tr_open":
            counts["table_rows"] += 1
        elif kind == "inline":
            parts = []
            for child in tok.children or ():
                if child.type == "text":
                    parts.append(child.content)
                elif child.type in ("softbreak", "hardbreak"):
                    parts.append(" ")
                elif child.type == "strong_open":
                    counts["bold_spans"] += 1
            blocks.append("".join(parts))
        if kind in _STRUCTURE and tok.map:
            structured.update(range(*tok.map))
    prose = "\n".join(blocks)
    words = [w.lower().replace("’", "'") for w in WORD.findall(prose)]
    n = len(words)
    joined = " ".join(words)
    per100 = 100.0 / n if n else 0.0
    sentences = sum(lex.sentence_count(b) for b in blocks if WORD.search(b))
    lines = [i for i, line in enumerate(re.split(r"\r\n?|\n", text)) if line.strip()]
    out = {
        "chars": float(len(text)),
        "words": float(len(WORD.findall(text))),
        "sentences": float(sentences),
        "mean_sentence_length": n / sentences if sentences else 0.0,
        "type_token_ratio": len(set(words)) / n if n else 0.0,
        "mtld": float(lex.richness(words, preprocessor=None, tokenizer=None).mtld()) if n else 0.0,
        "function_word_share": sum(w in lex.function_words for w in words) / n if n else 0.0,
        "transitions_per_100w": len(lex.transitions.findall(joined)) * per100,
        "hedges_per_100w": len(lex.hedges.findall(joined)) * per100,
        "first_person_per_100w": len(lex.first_person.findall(joined)) * per100,
        **{f"{name}_per_100w": len(p.findall(prose)) * per100 for name, p in lex.punctuation.items()},
        **{k: float(v) for k, v in counts.items()},
        "markdown_density": sum(i in structured for i in lines) / len(lines) if lines else 0.0,
    }
    return out


def features_frame(texts: Iterable[str]) -> pd.DataFrame:
    """One row of FEATURES per text (float64 columns), in input order."""
    rows = [text_features(t) for t in texts]
    if not rows:
        return pd.DataFrame({name: np.zeros(0) for name in FEATURES})
    return pd.DataFrame(rows, columns=list(FEATURES), dtype=np.float64)
