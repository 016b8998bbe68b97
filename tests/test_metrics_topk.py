"""THACIL §4.4 top-K metrics (`tfrec.metrics.topk`): hand-computed goldens, ties, skipped users,
both reductions, and agreement with a per-user loop written after the public code's
`solver.evaluation` (Ocxs/THACIL)."""

import math

import numpy as np
import pytest

from tfrec.metrics import topk_metrics, user_topk

L3 = 1.0 / math.log2(3)  # Discount of the second position.


def test_one_user_by_hand():
  # Sorted: 0.9 (clicked), 0.5 (clicked), 0.1 (not): both clicks in front.
  m = topk_metrics([7, 7, 7], [1, 0, 1], [0.9, 0.1, 0.5], ks=(1, 2))
  assert m["precision@1"] == 1.0 and m["recall@1"] == 0.5
  assert m["f_score@1"] == pytest.approx(2 / 3) and m["ndcg@1"] == 1.0
  assert m["precision@2"] == 1.0 and m["recall@2"] == 1.0
  assert m["f_score@2"] == 1.0 and m["ndcg@2"] == pytest.approx(1.0)
  assert (m["users"], m["users_skipped"]) == (1, 0)


def test_one_user_with_the_unclicked_item_first():
  # Sorted: 0.9 (not), 0.5 (clicked), 0.1 (clicked).
  labels, scores = [1, 0, 1], [0.1, 0.9, 0.5]
  m = topk_metrics([0] * 3, labels, scores, ks=(1, 2, 3, 5))
  assert (m["precision@1"], m["recall@1"], m["f_score@1"], m["ndcg@1"]) == (0, 0, 0, 0)
  assert m["precision@2"] == 0.5 and m["recall@2"] == 0.5 and m["f_score@2"] == 0.5
  assert m["ndcg@2"] == pytest.approx(L3 / (1 + L3))           # IDCG of min(2, 2) clicks.
  assert m["precision@3"] == pytest.approx(2 / 3) and m["recall@3"] == 1.0
  assert m["f_score@3"] == pytest.approx(0.8)
  assert m["ndcg@3"] == pytest.approx((L3 + 0.5) / (1 + L3))
  assert m["precision@5"] == pytest.approx(2 / 5)                 # Divided by K, not n_u.
  assert m["f_score_of_means@3"] == pytest.approx(0.8)
  retrieved = topk_metrics([0] * 3, labels, scores, ks=(2,), ndcg_ideal="retrieved")
  assert retrieved["ndcg@2"] == pytest.approx(L3)                # IDCG of the 1 click found.


def test_ties_are_deterministic():
  scores = [0.5, 0.5, 0.5]
  pessimistic = topk_metrics([1, 1, 1], [1, 0, 0], scores, ks=(1, 3))
  assert pessimistic["precision@1"] == 0.0                       # Unclicked first among ties.
  assert pessimistic["ndcg@3"] == pytest.approx(0.5)             # The click at rank 3.
  in_order = topk_metrics([1, 1, 1], [1, 0, 0], scores, ks=(1,), ties="input_order")
  assert in_order["precision@1"] == 1.0
  in_order = topk_metrics([1, 1, 1], [0, 0, 1], scores, ks=(1,), ties="input_order")
  assert in_order["precision@1"] == 0.0
  # Permuting the input never changes the pessimistic result.
  rng = np.random.default_rng(0)
  u, y, s = rng.integers(0, 4, 60), rng.integers(0, 2, 60), rng.integers(0, 3, 60) / 2
  perm = rng.permutation(60)
  assert topk_metrics(u, y, s, ks=(3,)) == topk_metrics(u[perm], y[perm], s[perm], ks=(3,))


def test_users_without_positive_are_skipped_and_reductions_weight():
  users = [0, 0, 1, 1, 1, 1, 2, 2]
  labels = [1, 0, 0, 1, 0, 0, 0, 0]          # User 2: no click -> skipped.
  scores = [0.9, 0.1, 0.8, 0.7, 0.2, 0.1, 0.5, 0.4]
  m = topk_metrics(users, labels, scores, ks=(1,))
  assert (m["users"], m["users_skipped"]) == (2, 1)
  assert m["precision@1"] == 0.5                       # (1 + 0) / 2.
  s = topk_metrics(users, labels, scores, ks=(1,), reduction="samples")
  assert s["precision@1"] == pytest.approx(2 / 6)      # (2 * 1 + 4 * 0) / 6.
  per = user_topk(users, labels, scores, ks=(1, 2))
  assert per.users.tolist() == [0, 1] and per.num_samples.tolist() == [2, 4]
  assert per.values["recall"][:, 1].tolist() == [0.0, 1.0]
  # All-clicked users: kept by default, skipped like the public code when asked.
  m = topk_metrics([0, 0, 1, 1], [1, 1, 1, 0], [0.3, 0.2, 0.9, 0.1], ks=(1,))
  assert m["users"] == 2
  m = topk_metrics([0, 0, 1, 1], [1, 1, 1, 0], [0.3, 0.2, 0.9, 0.1], ks=(1,),
                   skip_users_without_negative=True)
  assert (m["users"], m["users_skipped"]) == (1, 1)
  empty = topk_metrics([0], [0], [0.5], ks=(1,))
  assert empty["users"] == 0 and math.isnan(empty["precision@1"])


def _public_code_style(users, labels, scores, k):
  """Per-user loop after Ocxs/THACIL `solver.evaluation` (stable sort by score descending;
  users with one class skipped; precision/recall weighted by the user's sample count)."""
  prec, rec, ndcg = [], [], []
  for user in np.unique(users):
    idx = np.nonzero(users == user)[0]
    rows = sorted(zip(scores[idx], labels[idx]), key=lambda x: x[0], reverse=True)
    lab = np.array([r[1] for r in rows])
    if lab.sum() in (0, len(lab)):
      continue
    top = lab[:k]
    prec.append((top.sum() / k, len(lab)))
    rec.append((top.sum() / lab.sum(), len(lab)))
    pos_idx = np.nonzero(top == 1)[0]
    dcg = np.sum(np.log(2) / np.log(2 + pos_idx))
    idcg = np.sum(np.log(2) / np.log(2 + np.arange(len(pos_idx))))
    ndcg.append(dcg / idcg if idcg else 0.0)

  def weighted(pairs):
    a = np.array(pairs)
    return float((a[:, 0] * a[:, 1]).sum() / a[:, 1].sum())
  return weighted(prec), weighted(rec), float(np.mean(ndcg))


def test_agrees_with_the_public_code_loop():
  rng = np.random.default_rng(3)
  n = 400
  users = rng.integers(0, 12, n)
  labels = (rng.random(n) < 0.3).astype(np.int64)
  scores = rng.random(n) + 0.5 * labels                   # Distinct scores: no ties.
  for k in (1, 5, 10, 40):
    p, r, ndcg = _public_code_style(users, labels, scores, k)
    kw = dict(ks=(k,), ties="input_order", skip_users_without_negative=True)
    s = topk_metrics(users, labels, scores, reduction="samples", **kw)
    assert s["precision@%d" % k] == pytest.approx(p)
    assert s["recall@%d" % k] == pytest.approx(r)
    u = topk_metrics(users, labels, scores, reduction="users", ndcg_ideal="retrieved", **kw)
    assert u["ndcg@%d" % k] == pytest.approx(ndcg)


def test_metrics_stay_in_range_and_a_perfect_scorer_is_perfect():
  rng = np.random.default_rng(1)
  users = rng.integers(0, 20, 500)
  labels = rng.integers(0, 2, 500)
  per = user_topk(users, labels, rng.random(500), ks=(1, 10, 100))
  for v in per.values.values():
    assert (v >= 0).all() and (v <= 1 + 1e-12).all()
  perfect = topk_metrics(users, labels, labels + 0.0, ks=(1, 5))
  assert perfect["ndcg@1"] == 1.0 and perfect["ndcg@5"] == pytest.approx(1.0)
  assert perfect["precision@1"] == 1.0


def test_bad_inputs_are_refused():
  with pytest.raises(ValueError, match="length"):
    topk_metrics([0, 0], [1], [0.1, 0.2])
  with pytest.raises(ValueError, match="0 or 1"):
    topk_metrics([0], [2], [0.1])
  with pytest.raises(ValueError, match="NaN"):
    topk_metrics([0], [1], [float("nan")])
  with pytest.raises(ValueError, match="positive"):
    topk_metrics([0], [1], [0.1], ks=(0,))
  with pytest.raises(ValueError, match="reduction"):
    topk_metrics([0], [1], [0.1], reduction="mean")
  with pytest.raises(ValueError, match="ties"):
    topk_metrics([0], [1], [0.1], ties="random")
