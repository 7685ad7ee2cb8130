"""Evidence figures on a hand-made pool, checked against values worked out by hand."""
import json

import numpy as np
import pytest

from scar_core.errors import ScarError
from scar_core.evidence import evidence, mean_pairwise_distance
from scar_core.select import select

SCORES = np.array([3.0, 2.0, 1.0, 0.0, -1.0, -2.0])
LENGTHS = np.array([10, 20, 30, 40, 50, 60])
VECTORS = np.array([[1, 0], [0, 1], [1, 0], [-1, 0], [0, 2], [0, 0]], dtype=np.float32)
CLUSTERS = np.array([0, 1, 0, 2, 1, -1])
SOURCES = np.array(["a", "a", "b", "b", None, "a"], dtype=object)
LABELS = np.array(["keep", "drop", None, "flag", "keep", None], dtype=object)


def figures():
    cut = select(SCORES, "topk", 3)  # rows 0, 1, 2
    return evidence({"cut": cut, "longest": [5, 4, 3], "other": np.array([0, 3]), "one": [1]},
                    scores=SCORES, lengths=LENGTHS, vectors=VECTORS, clusters=CLUSTERS, sources=SOURCES,
                    labels=LABELS)


def test_mean_pairwise_distance_by_hand():
    assert mean_pairwise_distance(VECTORS[[0, 1]]) == pytest.approx(1.0)  # orthogonal
    assert mean_pairwise_distance(VECTORS[[0, 2]]) == pytest.approx(0.0)  # the same direction
    assert mean_pairwise_distance(VECTORS[[0, 3]]) == pytest.approx(2.0)  # opposite
    assert mean_pairwise_distance(VECTORS[[0, 1, 2]]) == pytest.approx(2 / 3)  # 1, 0, 1
    assert mean_pairwise_distance(VECTORS[[5, 4, 3]]) == pytest.approx(1.0)  # a zero row: cosine 0 with all
    assert np.isnan(mean_pairwise_distance(VECTORS[[1]]))
    big = np.random.default_rng(0).normal(size=(50, 4))
    u = big / np.linalg.norm(big, axis=1, keepdims=True)
    brute = np.mean([1 - u[i] @ u[j] for i in range(50) for j in range(50) if i != j])
    assert mean_pairwise_distance(big) == pytest.approx(brute)


def test_evidence_figures_by_hand():
    table, _ = figures()
    assert table.index.tolist() == ["cut", "longest", "other", "one"]
    cut, longest, other, one = (table.loc[n] for n in table.index)
    assert cut["rows"] == 3 and cut["length mean"] == 20 and cut["length median"] == 20
    assert cut["length p10"] == pytest.approx(12) and cut["length p90"] == pytest.approx(28)
    assert cut["clusters touched"] == 2 and cut["cluster share"] == pytest.approx(2 / 3)
    assert cut["diversity"] == pytest.approx(2 / 3) and cut["mean score"] == 2.0
    assert cut["overlap with longest"] == 0.0
    assert cut["labelled"] == 2 and cut["keep precision"] == 0.5  # keep, drop (row 2 has no label)
    assert cut["source: a"] == pytest.approx(2 / 3) and cut["source: b"] == pytest.approx(1 / 3)
    assert cut["source: (none)"] == 0.0
    assert longest["length mean"] == 50 and longest["length p10"] == pytest.approx(42)
    assert longest["clusters touched"] == 2  # row 5 is in no cluster
    assert longest["diversity"] == pytest.approx(1.0) and longest["mean score"] == -1.0
    assert longest["overlap with longest"] == 1.0 and longest["source: (none)"] == pytest.approx(1 / 3)
    assert longest["labelled"] == 2 and longest["keep precision"] == 0.5  # keep, flag
    assert other["diversity"] == pytest.approx(2.0) and other["overlap with longest"] == 0.5
    assert other["length p90"] == pytest.approx(37) and other["mean score"] == 1.5
    assert one["rows"] == 1 and one["length p10"] == 20 and one["labelled"] == 1 and one["keep precision"] == 0.0
    assert one["diversity"] is None or np.isnan(one["diversity"])


def test_the_record_is_json_and_says_the_same():
    table, record = figures()
    back = json.loads(json.dumps(record))
    assert back["pool"] == {"rows": 6, "clusters": 3}
    assert back["subsets"]["cut"]["sources"] == {"a": pytest.approx(2 / 3), "b": pytest.approx(1 / 3)}
    assert back["subsets"]["one"]["diversity"] is None
    assert back["subsets"]["other"]["diversity"] == pytest.approx(table.loc["other", "diversity"])


def test_missing_inputs_leave_their_figures_out_and_misaligned_ones_are_refused():
    table, record = evidence({"cut": [0, 1]}, scores=SCORES, lengths=LENGTHS)
    assert "clusters touched" not in table and "keep precision" not in table
    assert record["subsets"]["cut"]["diversity"] is None
    assert record["subsets"]["cut"]["overlap with longest"] is None
    with pytest.raises(ScarError):
        evidence({"cut": [0]}, scores=SCORES, lengths=LENGTHS, vectors=VECTORS[:3])
