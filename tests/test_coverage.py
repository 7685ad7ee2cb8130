"""The coverage-aware cut: 0 is today's cut; more coverage spreads the cut over the pool's clusters."""
import numpy as np
import pytest

from scar_core.coverage import EMBEDDING, METHOD, cluster_count, cluster_rows, coverage_order
from scar_core.errors import ScarError
from scar_core.select import select


def topics(per=60, seed=0):
    """Three tight clusters of embeddings (near-identical responses per topic); topic 0 has every top score."""
    rng = np.random.default_rng(seed)
    centres = np.eye(3, 16, dtype=np.float32) * 10
    vectors = np.concatenate([c + rng.normal(scale=0.05, size=(per, 16)) for c in centres]).astype(np.float32)
    topic = np.repeat(np.arange(3), per)
    scores = rng.normal(size=3 * per) + np.where(topic == 0, 10.0, 0.0)
    return scores, vectors, topic


def touched(kept, topic):
    return len(set(topic[kept].tolist()))


def test_the_number_of_clusters_follows_the_documented_rule():
    assert [cluster_count(n) for n in (0, 1, 3, 10, 200, 2000, 20_000, 10**6)] == [1, 1, 2, 2, 10, 32, 100, 100]


def test_coverage_zero_is_todays_cut_same_rows_same_order():
    rng = np.random.default_rng(1)
    n = 400
    scores = rng.normal(size=n).round(1)  # many ties: they must keep input order
    scores[[3, 4]] = np.nan
    vectors = rng.normal(size=(n, 8)).astype(np.float32)
    clusters = np.full(n, -1)
    clusters[[7, 8, 9]] = 0
    off = np.zeros(n, bool)
    off[[11]] = True
    sources = np.array(["a", "b"] * (n // 2), dtype=object)
    labels = np.full(n, None, dtype=object)
    labels[[12, 13]] = "keep"
    labels[[14]] = "drop"
    args = dict(clusters=clusters, left_out_by=np.where(off, "language", None), sources=sources, quotas={"a": 15}, labels=labels)
    today = select(scores, "ratio", 0.1, **args)
    cov = coverage_order(scores, vectors, 0.0, pool=today.pool, seed=0)
    same = select(scores, "ratio", 0.1, priority=cov.priority, **args)
    assert same.kept.tolist() == today.kept.tolist()
    assert {**same.params(), "ordering": None} == {**today.params(), "ordering": None}
    for rule, value in (("topk", 33), ("ratio", 0.37)):
        assert (select(scores, rule, value, priority=cov.priority, **args).kept.tolist()
                == select(scores, rule, value, **args).kept.tolist())


def test_full_coverage_touches_more_clusters_than_pure_score():
    scores, vectors, topic = topics()
    plain = select(scores, "ratio", 0.1)
    cov = coverage_order(scores, vectors, 1.0, k=3, seed=0)
    spread = select(scores, "ratio", 0.1, priority=cov.priority)
    assert touched(plain.kept, topic) == 1
    assert touched(spread.kept, topic) == 3
    assert len(spread.kept) == len(plain.kept)
    # k-means found the three topics, and each gives the cut its share, best rows first
    assert len({frozenset(np.flatnonzero(cov.clusters == c).tolist()) for c in range(3)}
               & {frozenset(np.flatnonzero(topic == t).tolist()) for t in range(3)}) == 3
    for t in range(3):
        mine = np.flatnonzero(topic == t)
        best = mine[np.argsort(-scores[mine])[:6]]
        assert set(best.tolist()) == set(spread.kept[topic[spread.kept] == t].tolist())


def test_half_coverage_lies_between():
    scores, vectors, topic = topics()
    spread = select(scores, "ratio", 0.2, priority=coverage_order(scores, vectors, 0.5, k=3).priority)
    share = np.bincount(topic[spread.kept], minlength=3) / len(spread.kept)
    assert 1 / 3 < share[0] < 1 and touched(spread.kept, topic) >= 2


def test_params_name_what_made_the_order_and_a_clustering_can_be_reused():
    scores, vectors, _ = topics()
    cov = coverage_order(scores, vectors, 0.5, seed=4)
    assert cov.k == cluster_count(len(scores)) == 9
    assert cov.params() == {"coverage": 0.5, "method": METHOD, "clusters": 9, "seed": 4, "embedding": EMBEDDING}
    again = coverage_order(scores, None, 0.5, clusters=cov.clusters, seed=4)
    assert np.array_equal(again.priority, cov.priority)
    assert np.array_equal(coverage_order(scores, vectors, 0.5, seed=4).clusters, cov.clusters)  # seeded
    chosen = select(scores, "ratio", 0.1, priority=cov.priority)
    chosen.ordering = cov.params()
    assert chosen.params()["ordering"]["clusters"] == 9


def test_rows_outside_the_pool_are_not_clustered_and_never_walked():
    scores, vectors, _ = topics()
    pool = np.ones(len(scores), bool)
    pool[:10] = False
    labels, k = cluster_rows(vectors, pool, seed=0)
    assert (labels[:10] == -1).all() and (labels[10:] >= 0).all() and k == cluster_count(len(scores) - 10)
    cov = coverage_order(scores, vectors, 1.0, pool=pool)
    assert np.isneginf(cov.priority[:10]).all() and np.isfinite(cov.priority[10:]).all()


@pytest.mark.parametrize("coverage", [-0.1, 1.5])
def test_coverage_outside_zero_to_one_is_refused(coverage):
    scores, vectors, _ = topics()
    with pytest.raises(ScarError):
        coverage_order(scores, vectors, coverage)


def test_full_coverage_touches_even_a_small_cluster_once_the_cut_has_a_row_for_each():
    rng = np.random.default_rng(2)
    topic = np.repeat([0, 1, 2], [100, 10, 3])
    vectors = (np.eye(3, 8)[topic] * 10 + rng.normal(scale=0.05, size=(len(topic), 8))).astype(np.float32)
    scores = rng.normal(size=len(topic)) + np.where(topic == 0, 10.0, 0.0)
    cov = coverage_order(scores, vectors, 1.0, k=3)
    spread = select(scores, "ratio", 0.1, priority=cov.priority)  # 12 rows: a 3-row topic's share is 0.3
    assert touched(select(scores, "ratio", 0.1).kept, topic) == 1
    assert np.bincount(topic[spread.kept], minlength=3).tolist() == [10, 1, 1]
