"""Cutting a ranked pool."""
import numpy as np
import pytest

from scar_core.errors import ScarError
from scar_core.select import cut, rank_order

SCORES = np.array([0.1, 0.9, 0.5, 0.9, -2.0])


def test_rank_order_is_best_first_and_stable_on_ties():
    assert rank_order(SCORES).tolist() == [1, 3, 2, 0, 4]


def test_ratio_rounds_up_and_reports_threshold():
    c = cut(SCORES, ratio=0.5)
    assert c.kept.tolist() == [1, 3, 2] and c.threshold == 0.5


def test_topk_and_threshold():
    assert cut(SCORES, topk=2).kept.tolist() == [1, 3]
    assert cut(SCORES, threshold=0.1).kept.tolist() == [1, 3, 2, 0]
    assert cut(SCORES, threshold=5.0).kept.tolist() == []


@pytest.mark.parametrize("kwargs", [{}, {"ratio": 0.1, "topk": 1}, {"ratio": 0}, {"ratio": 1.5}, {"topk": 0}])
def test_bad_cuts_are_refused(kwargs):
    with pytest.raises(ScarError):
        cut(SCORES, **kwargs)
