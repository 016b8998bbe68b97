"""95% confidence intervals of the reproduction's metrics from a paired bootstrap over users.

A metric of one evaluated split (AUC over its examples, HR@K over its ranked positives) is
computed on examples that cluster by user: a user's examples share the user's history and taste.
The bootstrap therefore resamples USERS with replacement, and a resampled user brings all of
their examples (a user drawn twice counts twice): the metric is recomputed on the examples of
the resampled users. A row's statistic is the mean over its seeds of that metric; a claimed
difference is mean(row a) - mean(row b). Every interval is PAIRED: all rows and seeds are
evaluated on the same examples (the harness evaluates every run with one eval seed), and one
resample of users weights every row's examples at once, so a difference is computed on the same
resampled users for both rows, and every interval of a report uses the same resamples.

What the interval covers: the uncertainty from which users happen to be in the evaluated split
(the test sample), with the trained models held fixed. The spread over training seeds is the
t-test's business (`tfrec.reproduce.stats`).

How: `scipy.stats.bootstrap` with the users as the one sample (`data=(user indices,)`), a
vectorised statistic that turns each resample of users into per-user counts and evaluates the
metrics as weighted metrics (an example weighs its user's count), and `method="percentile"`.
The clustered statistic fits scipy's API this way because the statistic receives the resampled
users and may compute anything from them; pairing needs no `paired=True` since both rows are
computed from the same resampled users inside one statistic. BCa (scipy's default) is not used:
its jackknife recomputes the statistic once per left-out user (thousands of users times every
example), the percentile interval needs only the resamples.

The weighted AUC sorts each run's examples by logit once; for a resample it sums the weights of
positives and negatives per tie group and counts, per positive, the negatives scored below it
plus half the tied ones (ties count 1/2, as `tfrec.metrics.auc`). With every weight 1 it is the
plain AUC. HR@K is the weighted mean of hits (rank < K) over the ranked positives, NDCG@K
the weighted mean of 1 / log2(rank + 2) (0 from rank K on) over them. Per-user
metrics are means over users, so a resample weighs each user's value by the user's count:
"gauc" (each user's AUC, further weighted by the user's examples: the "samples" reduction of
`tfrec.metrics.gauc`, users with one class left out; "gauc_mean" / "gauc_positives": the
"mean" reduction, ADAPT eq. 12, and the "positives" one) and "topk_<metric>@K" (THACIL §4.4's
precision, recall, f_score or ndcg of the user's top-K impressions, `tfrec.metrics.topk`,
users without a click left out; plain mean). A resample on
which a metric is undefined (one class only, no ranked positive: tiny splits) makes that CI
"n/a" rather than an interval over the other resamples.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import warnings
from typing import Dict, List, Mapping, Optional, Sequence

import numpy as np
from scipy import stats as sp_stats

N_RESAMPLES = 1000
CONFIDENCE = 0.95
_MAX_CELLS = 4_000_000  # resamples x examples evaluated at once (float64: 32 MB)


@dataclasses.dataclass(frozen=True)
class Interval:
  """A point estimate (the metric on the evaluated users, as reported) and its CI."""

  estimate: float
  low: float
  high: float

  def format(self, digits: int = 4) -> str:
    if not (math.isfinite(self.low) and math.isfinite(self.high)):
      return "n/a"
    return f"[{self.low:.{digits}f}, {self.high:.{digits}f}]"

  def excludes_zero(self) -> bool:
    return self.low > 0 or self.high < 0


class _Run:
  """One (row, seed)'s arrays prepared for weighted metrics: examples sorted by logit with
  their tie groups, and per-user sums of hits and ranked positives."""

  def __init__(self, arrays: Mapping[str, np.ndarray], users: np.ndarray, k: Optional[int]):
    uid = np.asarray(arrays["user_ids"], np.int64)
    labels = np.asarray(arrays["labels"]).astype(np.int64)
    logits = np.asarray(arrays["logits"], np.float64)
    if not len(uid) == len(labels) == len(logits):
      raise ValueError(f"arrays disagree in length: user_ids {len(uid)}, labels "
                       f"{len(labels)}, logits {len(logits)}")
    user_index = np.searchsorted(users, uid)
    order = np.argsort(logits, kind="stable")
    s = logits[order]
    self.starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])  # tie groups
    self.user_sorted = user_index[order]
    self.pos_sorted = (labels[order] == 1).astype(np.float64)
    self.n = len(labels)
    self._arrays = {"user_ids": uid, "labels": labels, "logits": logits}
    self._users = users
    self._per_user: Dict[str, tuple] = {}
    self.hits = self.gains = self.ranked = None
    if k is not None and "rows" in arrays and "ranks" in arrays:
      rows = np.asarray(arrays["rows"], np.int64)
      ranked_users = user_index[rows]
      ranks = np.asarray(arrays["ranks"], np.float64)
      self.hits = np.bincount(ranked_users, weights=(ranks < k), minlength=len(users))
      self.gains = np.bincount(ranked_users, weights=np.where(ranks < k, 1.0 / np.log2(
          ranks + 2.0), 0.0), minlength=len(users))
      self.ranked = np.bincount(ranked_users, minlength=len(users)).astype(np.float64)

  def auc(self, counts: np.ndarray) -> np.ndarray:
    """<float64>[B] weighted AUC for user counts <[B, U]>."""
    out = np.empty(len(counts))
    step = max(1, _MAX_CELLS // max(1, self.n))
    for a in range(0, len(counts), step):
      w = counts[a:a + step][:, self.user_sorted].astype(np.float64)
      wp = w * self.pos_sorted
      gp = np.add.reduceat(wp, self.starts, axis=1)
      gn = np.add.reduceat(w - wp, self.starts, axis=1)
      below = np.cumsum(gn, axis=1) - gn
      num = np.sum(gp * (below + 0.5 * gn), axis=1)
      den = gp.sum(axis=1) * gn.sum(axis=1)
      with np.errstate(invalid="ignore", divide="ignore"):
        out[a:a + step] = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    return out

  def per_user(self, metric: str, counts: np.ndarray) -> np.ndarray:
    """<float64>[B] a per-user metric ("gauc", "topk_<metric>@K") for user counts <[B, U]>."""
    if metric not in self._per_user:
      self._per_user[metric] = _per_user_values(self._arrays, self._users, metric)
    values, weights = self._per_user[metric]
    w = counts * weights
    den = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
      return np.where(den > 0, (w @ values) / np.where(den > 0, den, 1.0), np.nan)

  def hit_rate(self, counts: np.ndarray, ndcg: bool = False) -> np.ndarray:
    """<float64>[B] weighted HR@K (NDCG@K with `ndcg`) for user counts <[B, U]>."""
    if self.hits is None:
      raise ValueError("no ranked positives in these arrays (rows, ranks) for HR@K")
    n = counts @ self.ranked
    got = counts @ (self.gains if ndcg else self.hits)
    with np.errstate(invalid="ignore", divide="ignore"):
      return np.where(n > 0, got / np.where(n > 0, n, 1.0), np.nan)


TOPK_PREFIX = "topk_"


GAUC_METRICS = {"gauc": "samples", "gauc_mean": "mean", "gauc_positives": "positives"}


def is_per_user(metric: str) -> bool:
  return metric in GAUC_METRICS or metric.startswith(TOPK_PREFIX)


def _per_user_values(arrays: Mapping[str, np.ndarray], users: np.ndarray, metric: str):
  """(values <float64>[U], weights <float64>[U]) of a per-user metric over `users` (a user
  without a value, or absent from the arrays, weighs 0)."""
  from tfrec import metrics
  values, weights = np.zeros(len(users)), np.zeros(len(users))
  if metric in GAUC_METRICS:  # the reductions of `tfrec.metrics.gauc`
    per = metrics.per_user_auc(arrays["user_ids"], arrays["labels"], arrays["logits"])
    ok = np.isfinite(per["auc"])
    at = np.searchsorted(users, per["users"][ok])
    weight = {"samples": per["examples"], "positives": per["positives"],
              "mean": np.ones(len(per["users"]))}[GAUC_METRICS[metric]]
    values[at], weights[at] = per["auc"][ok], weight[ok]
    return values, weights
  name, sep, k = metric[len(TOPK_PREFIX):].partition("@")
  if not sep or name not in metrics.topk.METRICS or not k.isdigit():
    raise ValueError(f"unknown per-user metric {metric!r}: {' | '.join(GAUC_METRICS)} or topk_<"
                     f"{'|'.join(metrics.topk.METRICS)}>@K")
  per = metrics.user_topk(arrays["user_ids"], arrays["labels"], arrays["logits"], (int(k),))
  at = np.searchsorted(users, per.users)
  values[at], weights[at] = per.values[name][0], 1.0
  return values, weights


def weighted_metric(arrays: Mapping[str, np.ndarray], metric: str, user_counts: Mapping[int, int]
                    ) -> float:
  """`metric` ("auc", "hr@K", "ndcg@K", "gauc[_mean|_positives]" or "topk_<metric>@K") of one
  run's arrays with each user's examples weighted by `user_counts[user]` (users absent: weight
  0). What one bootstrap resample computes."""
  users = np.unique(np.asarray(arrays["user_ids"], np.int64))
  ranked = metric.startswith(("hr@", "ndcg@"))
  run = _Run(arrays, users, int(metric.split("@")[1]) if ranked else None)
  counts = np.array([[user_counts.get(int(u), 0) for u in users]], np.float64)
  if is_per_user(metric):
    return float(run.per_user(metric, counts)[0])
  if ranked:
    return float(run.hit_rate(counts, ndcg=metric.startswith("ndcg@"))[0])
  return float(run.auc(counts)[0])


class UserBootstrap:
  """Percentile CIs of rows and of differences between rows, over one shared set of resampled
  users (module docstring).

  Args:
    arrays: row name -> one mapping per seed with "user_ids", "labels", "logits" per example
      and "rows", "ranks" per ranked positive (`harness.save_arrays`).
    k: the K of HR@K.
    n_resamples, confidence, seed: of `scipy.stats.bootstrap` (the same seed for every interval:
      every interval uses the same resamples of users).
  """

  def __init__(self, arrays: Mapping[str, Sequence[Mapping[str, np.ndarray]]], k: int,
               n_resamples: int = N_RESAMPLES, confidence: float = CONFIDENCE, seed: int = 0):
    if not arrays or not all(len(v) for v in arrays.values()):
      raise ValueError("UserBootstrap needs at least one run per row")
    self.users = np.unique(np.concatenate([np.asarray(a["user_ids"], np.int64)
                                           for runs in arrays.values() for a in runs]))
    self.k = int(k)
    self.n_resamples, self.confidence, self.seed = int(n_resamples), float(confidence), seed
    self._runs: Dict[str, List[_Run]] = {
        name: [_Run(a, self.users, self.k) for a in runs] for name, runs in arrays.items()}

  def _mean(self, name: str, metric: str, counts: np.ndarray) -> np.ndarray:
    if metric == "auc":
      per_seed = [r.auc(counts) for r in self._runs[name]]
    elif metric in (f"hr@{self.k}", f"ndcg@{self.k}"):
      per_seed = [r.hit_rate(counts, ndcg=metric.startswith("ndcg")) for r in self._runs[name]]
    elif is_per_user(metric):
      per_seed = [r.per_user(metric, counts) for r in self._runs[name]]
    else:
      raise ValueError(f"unknown metric {metric!r}: auc, hr@{self.k}, ndcg@{self.k}, "
                       f"{', '.join(GAUC_METRICS)} or topk_<metric>@K")
    return np.mean(per_seed, axis=0)

  def _counts(self, idx: np.ndarray) -> np.ndarray:
    """Resampled user indices <[B, U]> (or [U]) -> how often each user was drawn <[B, U]>."""
    idx = np.atleast_2d(idx)
    b, u = idx.shape[0], len(self.users)
    flat = (idx + u * np.arange(b)[:, None]).ravel()
    return np.bincount(flat, minlength=b * u).reshape(b, u).astype(np.float64)

  def _interval(self, stat) -> Interval:
    estimate = float(stat(np.ones((1, len(self.users))))[0])
    if len(self.users) < 2:
      return Interval(estimate, math.nan, math.nan)

    def statistic(idx, axis=-1):
      values = stat(self._counts(idx))
      return values if np.ndim(idx) > 1 else values[0]

    params = inspect.signature(sp_stats.bootstrap).parameters
    seeding = ({"rng": np.random.default_rng(self.seed)} if "rng" in params
               else {"random_state": np.random.default_rng(self.seed)})
    with warnings.catch_warnings():  # NaN resamples: scipy warns (of BCa); the CI is n/a
      warnings.simplefilter("ignore", sp_stats.DegenerateDataWarning)
      res = sp_stats.bootstrap((np.arange(len(self.users)),), statistic, vectorized=True,
                               n_resamples=self.n_resamples, confidence_level=self.confidence,
                               method="percentile", batch=100, **seeding)
    ci = res.confidence_interval
    return Interval(estimate, float(ci.low), float(ci.high))

  def row(self, name: str, metric: str) -> Interval:
    """The CI of a row's metric (its mean over seeds)."""
    return self._interval(lambda c: self._mean(name, metric, c))

  def difference(self, a: str, b: str, metric: str) -> Interval:
    """The CI of mean(a) - mean(b), both on the same resampled users."""
    return self._interval(lambda c: self._mean(a, metric, c) - self._mean(b, metric, c))
