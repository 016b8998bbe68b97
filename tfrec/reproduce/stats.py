"""Statistics over seeds for the reproduction tables, from `scipy.stats`.

`mean_std` summarises one row's runs; `welch_t_test` compares two rows trained with independent
seeds (`scipy.stats.ttest_ind(equal_var=False)`, one- and two-sided); `verdict` turns the
one-sided test of a claimed ordering into the words the results files use ("holds" only when
p < 0.05). Confidence intervals over users are in `tfrec.reproduce.bootstrap`.

scipy is a dependency since issue 6: an earlier version carried its own Student's t through an
incomplete beta function, which is the kind of code a well-kept library should own.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from typing import Iterable

import numpy as np
from scipy import stats as sp_stats

ALPHA = 0.05  # a claim holds only when its one-sided p is below this
HOLDS = "holds"
NOT_SIGNIFICANT = "same direction, not significant"
DOES_NOT_HOLD = "does not hold"


@dataclasses.dataclass(frozen=True)
class TTest:
  """The result of a t-test of mean(a) against mean(b).

  Attributes:
    t: the t statistic, positive when mean(a) > mean(b); +-inf when the means differ but neither
      sample varies, nan when they are equal and neither varies.
    df: Welch-Satterthwaite degrees of freedom; nan when neither sample varies (0/0).
    p_two_sided: P(|T| >= |t|) under H0: equal means.
    p_one_sided_greater: P(T >= t) under H0, for H1: mean(a) > mean(b).
  """
  t: float
  df: float
  p_two_sided: float
  p_one_sided_greater: float


def _as_sample(values: Iterable[float], name: str = "values") -> np.ndarray:
  """A finite float64 vector, or a ValueError that says what is wrong with `values`."""
  x = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, np.float64)
  if x.ndim != 1:
    raise ValueError(f"{name} must be a flat sequence of numbers, got shape {x.shape}")
  if x.size == 0:
    raise ValueError(f"{name} is empty")
  bad = np.flatnonzero(~np.isfinite(x))
  if bad.size:
    kinds = sorted({"NaN" if np.isnan(x[i]) else "inf" for i in bad})
    raise ValueError(f"{name} contains {' and '.join(kinds)} at positions {bad.tolist()}: "
                     f"{x.tolist()}")
  return x


def _constant(x: np.ndarray) -> bool:
  return bool(np.all(x == x[0]))


def mean_std(values: Iterable[float]) -> tuple[float, float]:
  """Mean and sample standard deviation (ddof=1) of one row's runs; std 0.0 for a single run,
  and exactly 0.0 (mean exactly the value) when every run gives the same number.

  Raises:
    ValueError: `values` is empty, not flat, or holds NaN or inf (named with their positions).
  """
  x = _as_sample(values)
  if _constant(x):  # one run included
    return float(x[0]), 0.0
  return float(np.mean(x)), float(np.std(x, ddof=1))


def welch_t_test(a: Iterable[float], b: Iterable[float]) -> TTest:
  """Welch's unequal-variance t-test of mean(a) against mean(b) (independent seeds), through
  `scipy.stats.ttest_ind(a, b, equal_var=False)` (two-sided and alternative="greater").

  When neither sample varies the standard error is 0, and scipy's answer is rounding noise
  (the mean of [0.1] * 3 is not 0.1): t is then +-inf if the values differ (p_two_sided 0;
  p_one_sided_greater 0 for a > b, 1 for a < b) and nan if they are equal (p nan), df nan.

  Raises:
    ValueError: a sample has fewer than 2 values, or holds NaN or inf.
  """
  x, y = _as_sample(a, "a"), _as_sample(b, "b")
  for name, s in (("a", x), ("b", y)):
    if s.size < 2:
      raise ValueError(f"welch_t_test needs at least 2 values per sample, {name} has {s.size}")
  if _constant(x) and _constant(y):
    diff = float(x[0] - y[0])
    if diff == 0.0:
      return TTest(math.nan, math.nan, math.nan, math.nan)
    return TTest(math.copysign(math.inf, diff), math.nan, 0.0, 0.0 if diff > 0 else 1.0)
  with warnings.catch_warnings():  # one constant sample: scipy warns of precision loss
    warnings.filterwarnings("ignore", "Precision loss", RuntimeWarning)
    two = sp_stats.ttest_ind(x, y, equal_var=False)
    greater = sp_stats.ttest_ind(x, y, equal_var=False, alternative="greater")
  return TTest(float(two.statistic), float(two.df), float(two.pvalue), float(greater.pvalue))


def verdict(a: Iterable[float], b: Iterable[float], alpha: float = ALPHA
            ) -> tuple[str, float]:
  """Whether the claim mean(a) > mean(b) holds over seeds: (words, one-sided Welch p).

  "holds" when p < `alpha`; otherwise "same direction, not significant" when mean(a) > mean(b),
  else "does not hold". With fewer than 2 runs on a side p is nan (no test), so a claim can
  never "hold" on one seed.
  """
  x, y = _as_sample(a, "a"), _as_sample(b, "b")
  p = (welch_t_test(x, y).p_one_sided_greater if x.size >= 2 and y.size >= 2
       else math.nan)
  if p < alpha:  # False for nan
    return HOLDS, p
  return (NOT_SIGNIFICANT if mean_std(x)[0] > mean_std(y)[0] else DOES_NOT_HOLD), p


def relative_gain(new: float, old: float) -> float:
  """The gain of `new` over `old` in percent: 100 * (new - old) / |old|, as papers report it.

  Raises:
    ValueError: old is 0, or either value is NaN or inf.
  """
  new, old = float(new), float(old)
  if not (math.isfinite(new) and math.isfinite(old)):
    raise ValueError(f"relative_gain needs finite values, got new={new}, old={old}")
  if old == 0.0:
    raise ValueError(f"relative_gain is undefined against old = 0 (new={new})")
  return 100.0 * (new - old) / abs(old)
