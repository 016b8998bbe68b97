"""Storytelling-to-product matching (ADAPT Table VII, tfrec/evaluation/dual_matching.py): the
metrics of one query by hand, exact nearest neighbours with id tie-breaks, and a planted case
where the extractor's features put each product next to its storytelling."""

import numpy as np
import pytest

from tfrec.data import schema
from tfrec.data.item_store import ItemStore
from tfrec.evaluation import dual_matching as dm


def test_query_metrics_by_hand():
  ranked = np.array([7, 3, 9, 4, 5, 6])
  # Top 4 recalled: 7, 3, 9, 4. Ground truth 3 (recalled, rank 1) and 5 (not recalled).
  m = dm.query_metrics(ranked, np.array([3, 5]), top=4, k=2)
  # Pairs (truth, other recalled) = 2 x 3; 3 beats 9 and 4 (2 pairs); 5 beats none.
  assert m["auc@4"] == pytest.approx(2 / 6)
  assert m["hr@2"] == 1.0
  # DCG@2 = 1 / log2(3); ideal: two relevant in front, 1 + 1 / log2(3).
  assert m["ndcg@2"] == pytest.approx((1 / np.log2(3)) / (1 + 1 / np.log2(3)))
  miss = dm.query_metrics(ranked, np.array([6]), top=4, k=2)
  assert miss == {"auc@4": 0.0, "hr@2": 0.0, "ndcg@2": 0.0}


def test_nearest_is_exact_and_breaks_ties_by_id():
  cands = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [3.0, 3.0]])
  ids = np.array([10, 12, 11, 13])
  got, dist = dm.nearest(np.array([[0.0, 0.0], [0.5, 0.5]]), cands, ids, 3)
  np.testing.assert_array_equal(got[0], [10, 11, 12])  # 11 and 12 both at distance 1
  np.testing.assert_array_equal(got[1], [10, 11, 12])  # all three at sqrt(0.5)
  np.testing.assert_allclose(dist[0], [0.0, 1.0, 1.0], atol=1e-6)


class _Extractor:
  """Features = the store's visual vector (one part)."""

  parts, dim = ("visual",), 2

  def __init__(self, store):
    self.visual = store.visual

  def __call__(self, ids, training=None):
    import tensorflow as tf
    return {"visual": tf.gather(tf.constant(self.visual), ids)}


def _store():
  # Products 1-3 (source), stories 4-7 (target); story 4 + p mounts product p, story 7 is far.
  visual = np.array([[0, 0], [0, 0], [5, 0], [0, 5], [0.1, 0], [5.1, 0], [0, 5.1], [9, 9]],
                    np.float32)
  n = len(visual)
  return ItemStore(domain=np.r_[0, 0, 0, 0, 1, 1, 1, 1], category=np.zeros(n, np.int64),
                   tags=np.zeros((n, schema.MAX_TAGS), np.int64),
                   title=np.zeros((n, schema.MAX_TITLE_LEN), np.int64), visual=visual,
                   cold=np.zeros(n, np.int64))


def test_a_planted_alignment_scores_perfectly_and_nearest_stories_names_them():
  store = _store()
  truth = {1: np.array([4]), 2: np.array([5]), 3: np.array([6])}
  result = dm.evaluate(_Extractor(store), store, truth, top=3, k=1)
  assert result["metrics"] == {"auc@3": 1.0, "hr@1": 1.0, "ndcg@1": 1.0}
  assert (result["queries"], result["candidates"], result["pairs"]) == (3, 4, 3)
  (product, stories), = dm.nearest_stories(_Extractor(store), store, [2], k=2)
  assert product == 2 and [s for s, _ in stories] == [5, 4]
  with pytest.raises(ValueError, match="not products"):
    dm.nearest_stories(_Extractor(store), store, [5])
  assert dm.nearest_stories(_Extractor(store), store, []) == []
