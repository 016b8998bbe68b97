"""THACIL §4.4 top-K metrics: per-user precision, recall, F-score and NDCG of the top-K list.

THACIL (MM 2018) §4.4 and Fig. 4: besides GAUC (eq. 11, `tfrec.metrics.ranking.gauc`), "the
precision, recall, F-score, and NDCG of the top-K items of each user", "averaged" over users
at several K. Each user's list is the user's own test impressions (clicked and not clicked)
sorted by predicted score; the clicked ones are the relevant items. No sampled negatives: the
candidates are exactly the impressions, as in the public code (Ocxs/THACIL, `solver.evaluation`,
which reports K = 10, 20, ..., 100).

For one user u with n_u impressions, P_u clicked ones and h_u(K) clicked ones in the top K:

  precision@K = h_u(K) / K          (K, not min(K, n_u): as the public code; a user with fewer
                                     than K impressions cannot reach 1)
  recall@K    = h_u(K) / P_u
  F-score@K   = 2 * precision * recall / (precision + recall), 0 when both are 0
  NDCG@K      = DCG / IDCG, DCG = sum over clicked positions r < K (0-based) of 1 / log2(r + 2);
                IDCG ("relevant", default, the standard definition) = the DCG of min(K, P_u)
                clicked items in front; "retrieved" = the DCG of h_u(K) clicked items in front
                (the public code's `idcg`: it only measures the order inside the top K);
                0 when IDCG is 0.

Users: a user without any clicked impression has no relevant item and is skipped (counted in
"users_skipped"); `skip_users_without_negative=True` also skips users whose impressions are all
clicked, as the public code does (it shares GAUC's rule: both classes needed).

Reductions over the kept users ("users" is the default):
  "users"    plain mean (the paper's "average results"),
  "samples"  weighted by the user's number of impressions n_u (the public code's weighting of
             precision and recall; its NDCG is weighted by min(K, n_u) instead, a detail not
             reproduced here).
"f_score" is the reduction of the per-user F-scores; "f_score_of_means" is the harmonic mean of
the reduced precision and recall (what a figure drawn from the two averages shows).

Ties: the list is sorted by score descending; among equal scores unclicked impressions come
first (`ties="pessimistic"`, default: a constant scorer gets no credit from the input order,
as HR@K in `tfrec.metrics.ranking`), or the input order decides (`ties="input_order"`, what the
public code's stable sort does). Either way the result is deterministic.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Sequence

import numpy as np

REDUCTIONS = ("users", "samples")
TIES = ("pessimistic", "input_order")
NDCG_IDEALS = ("relevant", "retrieved")
THACIL_KS = tuple(range(10, 101, 10))  # The public code's K = 10, 20, ..., 100.
METRICS = ("precision", "recall", "f_score", "ndcg")


@dataclasses.dataclass(frozen=True)
class UserTopK:
  """Per-user top-K metrics of the kept users.

  Attributes:
    users: <int64>[U] user ids, ascending.
    num_samples: <int64>[U] impressions n_u.
    num_positives: <int64>[U] clicked impressions P_u (>= 1).
    ks: the cut-offs, in the order given.
    values: metric name ("precision", "recall", "f_score", "ndcg") -> <float64>[len(ks), U].
    users_skipped: users left out (no clicked impression; or no unclicked one when asked).
  """

  users: np.ndarray
  num_samples: np.ndarray
  num_positives: np.ndarray
  ks: tuple
  values: Dict[str, np.ndarray]
  users_skipped: int


def _check(user_ids, labels, scores, ks):
  user_ids = np.asarray(user_ids).reshape(-1)
  labels = np.asarray(labels).reshape(-1)
  scores = np.asarray(scores, np.float64).reshape(-1)
  if not (len(user_ids) == len(labels) == len(scores)):
    raise ValueError(f"user_ids ({len(user_ids)}), labels ({len(labels)}) and scores "
                     f"({len(scores)}) differ in length")
  if labels.size and not np.isin(labels, (0, 1)).all():
    raise ValueError(f"labels must be 0 or 1, got {np.unique(labels)[:5].tolist()}")
  if not np.isfinite(scores).all():
    raise ValueError("scores hold NaN or inf")
  ks = tuple(int(k) for k in ks)
  if not ks or min(ks) < 1:
    raise ValueError(f"ks must be positive integers, got {ks}")
  return user_ids, labels.astype(np.int64), scores, ks


def user_topk(user_ids: np.ndarray, labels: np.ndarray, scores: np.ndarray,
              ks: Sequence[int] = THACIL_KS, ties: str = "pessimistic",
              ndcg_ideal: str = "relevant",
              skip_users_without_negative: bool = False) -> UserTopK:
  """Precision, recall, F-score and NDCG of each user's top-K impressions (THACIL §4.4).

  Args:
    user_ids: <int>[n] the user of each impression.
    labels: <int>[n] 1 = clicked (relevant), 0 = not clicked.
    scores: <float>[n] predicted click scores (finite).
    ks: the cut-offs K (Fig. 4).
    ties: "pessimistic" or "input_order" (module docstring).
    ndcg_ideal: "relevant" or "retrieved": which ideal DCG divides (module docstring).
    skip_users_without_negative: also skip users whose impressions are all clicked.

  Returns:
    `UserTopK` over the kept users.

  Raises:
    ValueError: lengths differ, a label outside {0, 1}, a NaN/inf score, K < 1, or an
      unknown `ties` / `ndcg_ideal`.
  """
  if ties not in TIES:
    raise ValueError(f"ties must be one of {TIES}, not {ties!r}")
  if ndcg_ideal not in NDCG_IDEALS:
    raise ValueError(f"ndcg_ideal must be one of {NDCG_IDEALS}, not {ndcg_ideal!r}")
  user_ids, labels, scores, ks = _check(user_ids, labels, scores, ks)
  n = len(labels)
  tie_key = labels if ties == "pessimistic" else np.zeros(n, np.int64)
  # lexsort: the last key is primary. User, score descending, unclicked first, input order.
  order = np.lexsort((np.arange(n), tie_key, -scores, user_ids))
  u, lab = user_ids[order], labels[order]
  starts = np.r_[0, np.nonzero(u[1:] != u[:-1])[0] + 1] if n else np.zeros(0, np.int64)
  ends = (np.r_[starts[1:], n] if n else np.zeros(0)).astype(np.int64)
  sizes = ends - starts
  pos = np.arange(n) - np.repeat(starts, sizes)                    # 0-based rank in the list
  hits_cum = np.r_[0, np.cumsum(lab)]                               # [n + 1]
  dcg_cum = np.r_[0.0, np.cumsum(lab / np.log2(pos + 2.0))]
  positives = hits_cum[ends] - hits_cum[starts]
  keep = positives > 0
  if skip_users_without_negative:
    keep &= positives < sizes
  starts, ends, sizes, positives = starts[keep], ends[keep], sizes[keep], positives[keep]
  ideal = np.r_[0.0, np.cumsum(1.0 / np.log2(np.arange(max(ks + (1,))) + 2.0))]  # [max K + 1]
  values = {m: np.zeros([len(ks), len(starts)]) for m in METRICS}
  for i, k in enumerate(ks):
    cut = starts + np.minimum(k, sizes)
    hits = hits_cum[cut] - hits_cum[starts]
    precision = hits / k
    recall = hits / positives
    denom = precision + recall
    f_score = np.divide(2 * precision * recall, denom, out=np.zeros(len(denom)),
                        where=denom > 0)
    best = np.minimum(k, positives) if ndcg_ideal == "relevant" else hits
    idcg = ideal[best]
    dcg = dcg_cum[cut] - dcg_cum[starts]
    ndcg = np.divide(dcg, idcg, out=np.zeros(len(idcg)), where=idcg > 0)
    for name, v in zip(METRICS, (precision, recall, f_score, ndcg)):
      values[name][i] = v
  return UserTopK(users=u[starts].astype(np.int64), num_samples=sizes.astype(np.int64),
                  num_positives=positives.astype(np.int64), ks=ks, values=values,
                  users_skipped=int((~keep).sum()))


def topk_metrics(user_ids: np.ndarray, labels: np.ndarray, scores: np.ndarray,
                 ks: Sequence[int] = THACIL_KS, reduction: str = "users",
                 ties: str = "pessimistic", ndcg_ideal: str = "relevant",
                 skip_users_without_negative: bool = False) -> Dict[str, float]:
  """THACIL §4.4 / Fig. 4: the per-user top-K metrics of `user_topk`, reduced over users.

  Args:
    user_ids, labels, scores, ks, ties, ndcg_ideal, skip_users_without_negative: as
      `user_topk`.
    reduction: "users" (plain mean) or "samples" (weighted by each user's impressions).

  Returns:
    a JSON-ready dict: "<metric>@<K>" for metric in precision, recall, f_score,
    f_score_of_means, ndcg and every K; "users" (kept), "users_skipped". With no kept user
    every metric is NaN.
  """
  if reduction not in REDUCTIONS:
    raise ValueError(f"reduction must be one of {REDUCTIONS}, not {reduction!r}")
  per = user_topk(user_ids, labels, scores, ks, ties, ndcg_ideal, skip_users_without_negative)
  w = (np.ones(len(per.users)) if reduction == "users"
       else per.num_samples.astype(np.float64))
  out: Dict[str, float] = {}
  for i, k in enumerate(per.ks):
    for name in METRICS:
      out[f"{name}@{k}"] = (float(per.values[name][i] @ w / w.sum()) if w.sum()
                            else float("nan"))
    p, r = out[f"precision@{k}"], out[f"recall@{k}"]
    out[f"f_score_of_means@{k}"] = 2 * p * r / (p + r) if p + r > 0 else (
        float("nan") if np.isnan(p + r) else 0.0)
  out["users"] = len(per.users)
  out["users_skipped"] = per.users_skipped
  return out


__all__ = ["METRICS", "NDCG_IDEALS", "REDUCTIONS", "THACIL_KS", "TIES", "UserTopK",
           "topk_metrics", "user_topk"]
