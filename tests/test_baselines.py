"""Matched baselines: as many rows as the cut, under the cut's cleaning, quotas and labels."""
import numpy as np
import pytest

from scar_core.baselines import KINDS, baseline, baselines, bin_of, length_bins
from scar_core.errors import ScarError
from scar_core.select import select

N = 300


def pool(seed=0):
    """Scores, lengths, duplicate clusters, language flags, sources, labels: the longest rows are the ones
    cleaning leaves out or a label drops, so a baseline ignoring them would pick them."""
    rng = np.random.default_rng(seed)
    scores = rng.normal(size=N)
    scores[[5, 6]] = np.nan  # unscored
    lengths = rng.integers(5, 400, size=N).astype(float)
    clusters = np.full(N, -1)
    clusters[[10, 11, 12]] = 0  # a duplicate cluster: two of its three are left out
    off_language = np.zeros(N, bool)
    off_language[[20, 21]] = True
    lengths[[5, 6, 10, 11, 12, 20, 21]] = 10_000  # ineligible rows are the longest of all
    sources = np.array(["a", "b", "c"] * (N // 3), dtype=object)
    labels = np.full(N, None, dtype=object)
    labels[[30, 31]] = "drop"
    lengths[[30, 31]] = 9_000  # the longest eligible rows, but a label forces them out
    labels[[40, 41, 42]] = "keep"
    lengths[[40, 41, 42]] = 1  # the shortest, forced in
    labels[[50, 51]] = "flag"
    return scores, lengths, clusters, off_language, sources, labels


def cut_of(scores, clusters, off_language, sources, labels=None, quotas=None, ratio=0.1):
    return select(scores, "ratio", ratio, clusters=clusters, left_out_by=np.where(off_language, "language", None),
                  sources=sources,
                  quotas=quotas, labels=labels)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("with_labels", [False, True])
@pytest.mark.parametrize("quotas", [None, {"a": 3}])
def test_a_baseline_keeps_exactly_as_many_rows_as_the_cut(kind, with_labels, quotas):
    scores, lengths, clusters, off, sources, labels = pool()
    labels = labels if with_labels else None
    cut = cut_of(scores, clusters, off, sources, labels, quotas)
    b = baseline(cut, scores, kind, lengths=lengths, sources=sources, labels=labels, seed=3)
    assert len(b.kept) == len(cut.kept) == b.params()["ordering"]["k"] and b.mask.sum() == len(b.kept)
    assert len(set(b.kept.tolist())) == len(b.kept)
    assert b.params()["ordering"]["baseline"] == kind and b.params()["ordering"]["short"] == 0


@pytest.mark.parametrize("kind", KINDS)
def test_baselines_never_take_rows_cleaning_left_out(kind):
    scores, lengths, clusters, off, sources, _ = pool()
    cut = cut_of(scores, clusters, off, sources, ratio=0.5)
    b = baseline(cut, scores, kind, lengths=lengths, sources=sources, seed=1)
    assert cut.pool[b.kept].all()
    assert not np.isin([5, 6, 20, 21], b.kept).any()
    assert np.isin([10, 11, 12], b.kept).sum() <= 1
    assert b.left_out == cut.left_out and b.pool.sum() == cut.pool.sum()


@pytest.mark.parametrize("kind", KINDS)
def test_labels_force_rows_into_and_out_of_every_baseline(kind):
    scores, lengths, clusters, off, sources, labels = pool()
    cut = cut_of(scores, clusters, off, sources, labels)
    b = baseline(cut, scores, kind, lengths=lengths, sources=sources, labels=labels, seed=2)
    assert np.isin([40, 41, 42], b.kept).all()
    assert not np.isin([30, 31], b.kept).any()


def test_a_cut_that_applied_labels_needs_them_for_its_baselines():
    scores, lengths, clusters, off, sources, labels = pool()
    cut = cut_of(scores, clusters, off, sources, labels)
    with pytest.raises(ScarError):
        baseline(cut, scores, "random", sources=sources)


@pytest.mark.parametrize("kind", KINDS)
def test_quotas_hold_in_every_baseline(kind):
    scores, lengths, clusters, off, sources, _ = pool()
    lengths = np.where(sources == "a", lengths + 5_000, lengths)  # source a has the longest rows
    cut = cut_of(scores, clusters, off, sources, quotas={"a": 2})
    b = baseline(cut, scores, kind, lengths=lengths, sources=sources, seed=0)
    assert (sources[b.kept] == "a").sum() == 2 and len(b.kept) == len(cut.kept)


@pytest.mark.parametrize("kind", KINDS)
def test_a_baseline_is_reproducible_from_its_recorded_seed(kind):
    scores, lengths, clusters, off, sources, labels = pool()
    cut = cut_of(scores, clusters, off, sources, labels)
    first = baseline(cut, scores, kind, lengths=lengths, sources=sources, labels=labels, seed=7)
    seed = first.params()["ordering"]["seed"]
    again = baseline(cut, scores, kind, lengths=lengths, sources=sources, labels=labels,
                     seed=0 if seed is None else seed)
    assert first.kept.tolist() == again.kept.tolist() and first.params() == again.params()
    if kind != "longest":
        assert seed == 7
        other = baseline(cut, scores, kind, lengths=lengths, sources=sources, labels=labels, seed=8)
        assert set(other.kept.tolist()) != set(first.kept.tolist())


def test_longest_keeps_the_longest_eligible_responses_and_kept_is_best_score_first():
    scores, lengths, clusters, off, sources, _ = pool()
    cut = cut_of(scores, clusters, off, sources)
    b = baseline(cut, scores, "longest", lengths=lengths)
    eligible = np.flatnonzero(cut.pool)
    longest = eligible[np.argsort(-lengths[eligible], kind="stable")[:len(cut.kept)]]
    assert set(b.kept.tolist()) == set(longest.tolist())
    assert (np.diff(scores[b.kept]) <= 0).all()
    assert b.threshold == scores[b.kept].min()


def test_length_matched_draws_as_many_rows_per_length_bin_as_the_cut_has():
    scores, lengths, clusters, off, sources, _ = pool()
    scores = scores + lengths / 100  # the cut leans long, so an unmatched random draw would not match it
    cut = cut_of(scores, clusters, off, sources, ratio=0.2)
    b = baseline(cut, scores, "length-matched", lengths=lengths, seed=5, bins=4)
    order = b.params()["ordering"]
    edges = np.array(order["bins"])
    assert len(edges) == 5 and edges[0] == lengths[cut.kept].min() and edges[-1] == lengths[cut.kept].max()
    per_bin = np.bincount(bin_of(lengths[b.kept], edges), minlength=4)
    assert per_bin.tolist() == np.bincount(bin_of(lengths[cut.kept], edges), minlength=4).tolist() == order["per_bin"]
    assert set(b.kept.tolist()) != set(cut.kept.tolist())
    rand = baseline(cut, scores, "random", seed=5)
    assert np.bincount(bin_of(lengths[rand.kept], edges) + 1, minlength=5)[1:].tolist() != order["per_bin"]


def test_length_bins_merge_equal_edges_and_rows_outside_the_range_get_none():
    edges = length_bins(np.array([3, 3, 3, 3, 8]), bins=4)
    assert edges.tolist() == [3.0, 8.0]
    assert bin_of(np.array([2, 3, 5, 8, 9]), edges).tolist() == [-1, 0, 0, 0, -1]
    assert bin_of(np.array([4, 4, 5]), np.array([4.0])).tolist() == [0, 0, -1]


def test_a_cut_made_only_of_forced_in_rows_gives_baselines_of_those_rows():
    scores = np.array([0.9, 0.1, 0.2, 0.3, 0.4])
    labels = np.array(["drop", "keep", "keep", None, None], dtype=object)
    cut = select(scores, "topk", 1, labels=labels)  # the best row is dropped, two are forced in
    assert sorted(cut.kept.tolist()) == [1, 2]
    for kind, b in baselines(cut, scores, np.arange(5.0), labels=labels).items():
        assert sorted(b.kept.tolist()) == [1, 2], kind
        assert b.params()["ordering"]["walked"] == 0


def test_an_empty_pool_gives_empty_baselines():
    scores = np.array([np.nan, np.nan])
    cut = select(scores, "ratio", 0.5)
    assert all(len(b.kept) == 0 for b in baselines(cut, scores, np.ones(2)).values())


def test_priority_walks_the_rule_in_another_order_but_a_threshold_still_compares_scores():
    scores = np.array([0.5, 0.9, 0.1, 0.7])
    priority = np.array([0.0, 1.0, 3.0, 2.0])
    walked = select(scores, "topk", 2, priority=priority)
    assert walked.kept.tolist() == [3, 2]  # rows 2 and 3 taken; kept is best score first
    assert select(scores, "threshold", 0.5, priority=priority).kept.tolist() == [1, 3, 0]
    with pytest.raises(ScarError):
        select(scores, "topk", 2, priority=np.array([0.0, np.nan, 1.0, 2.0]))
