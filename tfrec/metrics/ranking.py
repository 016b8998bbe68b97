"""Ranking metrics as the papers define them, with the choices peers disagree on made explicit.

  auc          rank-based (Mann-Whitney) AUC; tied scores count 1/2.
  gauc         per-user AUC (THACIL eq. 11, ADAPT eq. 12) reduced over users with both classes:
               "mean" (plain mean over users: THACIL eq. 11, EasyRec), "samples" (weighted by
               the user's number of examples: FuxiCTR, THACIL's code), "positives" (weighted by
               the user's positives: RecBole). Users with one class are skipped and counted.
  HR@K, NDCG@K one positive against sampled negatives (SEMI: 300 random unseen, K=3; ADAPT:
               K=5; COUPLE: 100 = 50 random + 50 by popularity, K=5/10). A tie with a negative
               counts against the positive (pessimistic), so a constant scorer gets HR@K = 0
               unless K exceeds the number of negatives, never a perfect score.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, Optional, Sequence

import numpy as np


def _ranks(x: np.ndarray) -> np.ndarray:
  """1-based ranks with ties given their average rank."""
  order = np.argsort(x, kind="mergesort")
  sx = x[order]
  ranks = np.empty(len(x), np.float64)
  # Boundaries of runs of equal values.
  starts = np.r_[0, np.nonzero(np.diff(sx))[0] + 1]
  ends = np.r_[starts[1:], len(x)]
  avg = (starts + ends + 1) / 2.0  # mean of ranks starts+1 .. ends
  ranks[order] = np.repeat(avg, ends - starts)
  return ranks


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
  """Area under the ROC curve: P(score of a positive > score of a negative), ties 1/2.

  Args:
    labels: <int>[n] in {0, 1}.
    scores: <float>[n].

  Returns:
    the AUC, or NaN when only one class is present.
  """
  labels = np.asarray(labels).astype(bool)
  scores = np.asarray(scores, np.float64)
  if labels.shape != scores.shape:
    raise ValueError(f"labels {labels.shape} and scores {scores.shape} differ in shape")
  n_pos = int(labels.sum())
  n_neg = labels.size - n_pos
  if n_pos == 0 or n_neg == 0:
    return float("nan")
  r = _ranks(scores)
  return float((r[labels].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


GAUC_REDUCTIONS = ("mean", "samples", "positives")


def gauc(user_ids: np.ndarray, labels: np.ndarray, scores: np.ndarray,
         reduction: str = "samples") -> Dict[str, float]:
  """Group AUC: per-user AUC reduced over the users that have both classes.

  Args:
    user_ids: <int>[n].
    labels: <int>[n] in {0, 1}.
    scores: <float>[n].
    reduction: "mean", "samples" or "positives" (see the module docstring).

  Returns:
    {"gauc": value, "users": users counted, "users_skipped": users with one class}.
  """
  if reduction not in GAUC_REDUCTIONS:
    raise ValueError(f"reduction must be one of {GAUC_REDUCTIONS}, not {reduction!r}")
  per = per_user_auc(user_ids, labels, scores)
  kept = np.isfinite(per["auc"])
  w = {"mean": np.ones(len(per["users"])), "samples": per["examples"].astype(np.float64),
       "positives": per["positives"].astype(np.float64)}[reduction][kept]
  total = float(np.sum(w * per["auc"][kept]))
  return {"gauc": total / float(w.sum()) if w.sum() else float("nan"),
          "users": int(kept.sum()), "users_skipped": int((~kept).sum())}


def per_user_auc(user_ids: np.ndarray, labels: np.ndarray, scores: np.ndarray
                 ) -> Dict[str, np.ndarray]:
  """Each user's AUC over the user's own examples (the terms of THACIL eq. 11).

  Returns:
    {"users": <int64>[U] ascending, "auc": <float64>[U] (NaN for a user with one class),
    "examples": <int64>[U], "positives": <int64>[U]}.
  """
  user_ids = np.asarray(user_ids).reshape(-1)
  labels = np.asarray(labels).reshape(-1)
  scores = np.asarray(scores, np.float64).reshape(-1)
  order = np.argsort(user_ids, kind="mergesort")
  u, lab, sc = user_ids[order], labels[order], scores[order]
  bounds = np.r_[0, np.nonzero(np.diff(u))[0] + 1, len(u)] if len(u) else np.zeros(1, np.int64)
  starts, ends = bounds[:-1], bounds[1:]
  values = np.array([auc(lab[a:b], sc[a:b]) for a, b in zip(starts, ends)], np.float64)
  return {"users": u[starts].astype(np.int64), "auc": values,
          "examples": (ends - starts).astype(np.int64),
          "positives": np.array([int(lab[a:b].sum()) for a, b in zip(starts, ends)], np.int64)}


def rank_of_positive(pos_scores: np.ndarray, neg_scores: np.ndarray) -> np.ndarray:
  """0-based rank of each positive among its negatives; ties count against the positive.

  Args:
    pos_scores: <float>[n].
    neg_scores: <float>[n, m]; NaN marks a missing negative (ignored).

  Returns:
    <int64>[n]: number of negatives scored >= the positive.
  """
  pos = np.asarray(pos_scores, np.float64)[:, None]
  neg = np.asarray(neg_scores, np.float64)
  return np.sum(neg >= pos, axis=1).astype(np.int64)


def hit_rate_at_k(pos_scores: np.ndarray, neg_scores: np.ndarray, k: int) -> float:
  """HR@K: share of positives ranked in the top K among themselves and their negatives."""
  return float(np.mean(rank_of_positive(pos_scores, neg_scores) < k))


def ndcg_at_k(pos_scores: np.ndarray, neg_scores: np.ndarray, k: int) -> float:
  """NDCG@K with one relevant item: 1 / log2(rank + 2) if rank < K else 0, averaged."""
  r = rank_of_positive(pos_scores, neg_scores)
  return float(np.mean(np.where(r < k, 1.0 / np.log2(r + 2.0), 0.0)))


@dataclasses.dataclass(frozen=True)
class SampledProtocol:
  """A sampled-negative evaluation protocol.

  Attributes:
    name: protocol name, recorded with every result.
    num_random: negatives drawn uniformly from the candidate pool.
    num_popular: negatives drawn proportionally to item popularity.
    ks: the cut-offs reported.
    exclude_seen: negatives are items the user never interacted with.
  """

  name: str
  num_random: int
  num_popular: int
  ks: Sequence[int]
  exclude_seen: bool = True

  @property
  def num_negatives(self) -> int:
    return self.num_random + self.num_popular

  def describe(self) -> str:
    parts = []
    if self.num_random:
      parts.append(f"{self.num_random} random")
    if self.num_popular:
      parts.append(f"{self.num_popular} by popularity")
    seen = " unseen" if self.exclude_seen else ""
    return f"sampled: 1 positive vs {' + '.join(parts)}{seen} negatives, K={list(self.ks)}"


PROTOCOLS = {
    "semi": SampledProtocol("semi", num_random=300, num_popular=0, ks=(3,)),      # SEMI §4.2.2
    # ADAPT §IV states K=5 but not its negatives: we use SEMI's 300 random unseen ones.
    "adapt": SampledProtocol("adapt", num_random=300, num_popular=0, ks=(5,)),
    "couple": SampledProtocol("couple", num_random=50, num_popular=50, ks=(5, 10)),  # COUPLE
    "sasrec": SampledProtocol("sasrec", num_random=100, num_popular=0, ks=(10,)),  # SASRec §4
}


def sample_negatives(rng: np.random.Generator, pool: np.ndarray, seen: np.ndarray,
                     protocol: SampledProtocol,
                     popularity: Optional[np.ndarray] = None) -> np.ndarray:
  """Draws one user's negatives under a protocol, without replacement.

  Args:
    rng: the random generator (seed it for reproducible evaluation).
    pool: <int64>[p] candidate item ids (e.g. the target domain's non-cold items).
    seen: <int64>[s] items the user interacted with (and the positive): never drawn when
      `protocol.exclude_seen`.
    protocol: how many random / popularity-weighted negatives.
    popularity: <float>[p] weights aligned with `pool` (needed when num_popular > 0).

  Returns:
    <int64>[num_negatives] distinct item ids.

  Raises:
    ValueError: the pool has fewer eligible items than the protocol needs.
  """
  pool = np.asarray(pool, np.int64)
  eligible = ~np.isin(pool, seen) if protocol.exclude_seen else np.ones(len(pool), bool)
  if eligible.sum() < protocol.num_negatives:
    raise ValueError(f"only {int(eligible.sum())} eligible negatives, protocol "
                     f"{protocol.name} needs {protocol.num_negatives}")
  chosen = np.zeros(len(pool), bool)
  if protocol.num_popular:
    if popularity is None:
      raise ValueError(f"protocol {protocol.name} needs item popularity")
    w = np.where(eligible, np.asarray(popularity, np.float64), 0.0)
    if (w > 0).sum() < protocol.num_popular:
      w = np.where(eligible, w + 1e-12, 0.0)
    idx = rng.choice(len(pool), protocol.num_popular, replace=False, p=w / w.sum())
    chosen[idx] = True
  if protocol.num_random:
    rest = np.nonzero(eligible & ~chosen)[0]
    chosen[rng.choice(rest, protocol.num_random, replace=False)] = True
  return pool[chosen]
