"""Ranking metrics against hand computations and brute force."""

import itertools

import numpy as np
import pytest

from tfrec.metrics import (PROTOCOLS, SampledProtocol, auc, gauc, hit_rate_at_k, ndcg_at_k,
                           rank_of_positive, sample_negatives)


def _brute_auc(labels, scores):
  pos = [s for l, s in zip(labels, scores) if l]
  neg = [s for l, s in zip(labels, scores) if not l]
  pairs = [(p > n) + 0.5 * (p == n) for p, n in itertools.product(pos, neg)]
  return sum(pairs) / len(pairs)


def test_auc_by_hand_and_brute_force():
  assert auc([1, 0, 1, 0], [0.9, 0.1, 0.8, 0.2]) == 1.0
  assert auc([1, 0, 1, 0], [0.1, 0.9, 0.2, 0.8]) == 0.0
  # positives 0.5, 0.3; negatives 0.5, 0.1: pairs 0.5 (tie), 1, 0, 1 -> 2.5 / 4
  assert auc([1, 1, 0, 0], [0.5, 0.3, 0.5, 0.1]) == pytest.approx(0.625)
  rng = np.random.default_rng(0)
  for _ in range(20):
    labels = rng.integers(0, 2, 30)
    scores = rng.integers(0, 5, 30).astype(float)  # many ties
    if 0 < labels.sum() < 30:
      assert auc(labels, scores) == pytest.approx(_brute_auc(labels, scores))
  assert np.isnan(auc([1, 1], [0.2, 0.3]))


def test_gauc_reductions_by_hand():
  users = np.array([1, 1, 1, 2, 2, 3, 3, 3, 3])
  labels = np.array([1, 0, 0, 1, 0, 1, 1, 0, 1])
  scores = np.array([.9, .1, .2, .1, .9, .5, .6, .7, .8])
  # user 1: AUC 1 (3 samples, 1 positive); user 2: AUC 0 (2 samples, 1 positive);
  # user 3: positives .5 .6 .8 vs negative .7 -> 1/3 (4 samples, 3 positives).
  assert gauc(users, labels, scores, "mean")["gauc"] == pytest.approx((1 + 0 + 1 / 3) / 3)
  assert gauc(users, labels, scores, "samples")["gauc"] == pytest.approx((3 + 0 + 4 / 3) / 9)
  assert gauc(users, labels, scores, "positives")["gauc"] == pytest.approx((1 + 0 + 1) / 5)
  one_class = gauc(np.r_[users, 4, 4], np.r_[labels, 1, 1], np.r_[scores, .1, .2], "mean")
  assert one_class["users"] == 3 and one_class["users_skipped"] == 1
  with pytest.raises(ValueError, match="reduction"):
    gauc(users, labels, scores, "median")


def test_per_user_auc_by_hand():
  from tfrec.metrics import per_user_auc
  users = np.array([3, 1, 3, 1, 2, 3, 1, 3, 4])  # unsorted on purpose
  labels = np.array([1, 1, 1, 0, 1, 0, 0, 1, 1])
  scores = np.array([.5, .9, .6, .1, .1, .7, .2, .8, .3])
  per = per_user_auc(users, labels, scores)
  assert per["users"].tolist() == [1, 2, 3, 4]
  # user 1: .9 above .1 and .2 -> 1; user 2, 4: one class -> NaN; user 3: 1/3 (see above).
  assert per["auc"][0] == 1.0 and per["auc"][2] == pytest.approx(1 / 3)
  assert np.isnan(per["auc"][1]) and np.isnan(per["auc"][3])
  assert per["examples"].tolist() == [3, 1, 4, 1] and per["positives"].tolist() == [1, 1, 3, 1]


def test_hr_ndcg_by_hand_and_ties_are_pessimistic():
  pos = np.array([0.9, 0.5, 0.2])
  neg = np.array([[0.1, 0.2, 0.3], [0.6, 0.4, 0.7], [0.3, 0.4, 0.5]])
  assert rank_of_positive(pos, neg).tolist() == [0, 2, 3]
  assert hit_rate_at_k(pos, neg, 1) == pytest.approx(1 / 3)
  assert hit_rate_at_k(pos, neg, 3) == pytest.approx(2 / 3)
  assert ndcg_at_k(pos, neg, 3) == pytest.approx((1 + 1 / np.log2(4)) / 3)
  constant = np.zeros(5), np.zeros([5, 300])
  assert hit_rate_at_k(*constant, 3) == 0.0


def test_sample_negatives_protocols():
  rng = np.random.default_rng(0)
  pool = np.arange(1, 1001)
  seen = np.arange(1, 101)
  neg = sample_negatives(rng, pool, seen, PROTOCOLS["semi"])
  assert len(neg) == len(set(neg)) == 300 and not np.isin(neg, seen).any()
  popularity = np.where(pool > 900, 1000.0, 1.0)  # 100 very popular items
  neg = sample_negatives(rng, pool, seen, PROTOCOLS["couple"], popularity)
  assert len(neg) == len(set(neg)) == 100
  # 50 drawn by popularity land almost all in the popular block; 50 random mostly do not.
  assert 45 <= np.sum(neg > 900) <= 60
  with pytest.raises(ValueError, match="eligible"):
    sample_negatives(rng, pool[:200], seen, PROTOCOLS["semi"])
  with pytest.raises(ValueError, match="popularity"):
    sample_negatives(rng, pool, seen, SampledProtocol("p", 0, 10, (5,)))
  assert "300 random unseen" in PROTOCOLS["semi"].describe()
