"""SCAR Studio's library: load -> clean -> score -> map -> select -> export.

    from scar_core import load, load_ranker, score_examples, cut, export
    data = load("pool.jsonl")
    ranker = load_ranker("default")
    scores = score_examples(ranker, data.examples)
    chosen = cut(scores.score, ratio=0.1)
    export("top10.jsonl", [data.examples[i] for i in chosen.kept], "alpaca")
"""
from scar_core.errors import InputError, ScarError
from scar_core.example import Example
from scar_core.export import export
from scar_core.load import LoadResult, load
from scar_core.ranker import StyleRanker, load_ranker, new_ranker
from scar_core.score import Scores, score_examples, score_pairs
from scar_core.select import cut, rank_order

__all__ = ["Example", "InputError", "LoadResult", "ScarError", "Scores", "StyleRanker", "cut", "export",
           "load", "load_ranker", "new_ranker", "rank_order", "score_examples", "score_pairs"]
