"""Statistics over seeds for the reproduction tables, in numpy alone (scipy is no dependency).

`mean_std` summarises one row's runs; `welch_t_test` compares two rows trained with independent
seeds, `paired_t_test` two rows trained with the same seeds (run i of each shares seed i). Both
rest on `student_t_sf`, Student's t survival function written through the regularized incomplete
beta function `betainc` (Numerical Recipes, 3rd ed., §6.4: the continued fraction `betacf`,
evaluated by the modified Lentz method, on whichever side of the symmetry
I_x(a, b) = 1 - I_{1-x}(b, a) it converges fast).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterable

import numpy as np

_EPS = 1e-15  # relative change at which the continued fraction has converged
_TINY = 1e-300  # keeps the Lentz denominators away from zero


@dataclasses.dataclass(frozen=True)
class TTest:
  """The result of a t-test of mean(a) against mean(b).

  Attributes:
    t: the t statistic, positive when mean(a) > mean(b); +-inf when the means differ but neither
      sample varies, nan when they are equal and neither varies.
    df: degrees of freedom (Welch-Satterthwaite for `welch_t_test`, n - 1 for `paired_t_test`);
      nan where it is 0/0 (Welch with no variance in either sample).
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


def _var(x: np.ndarray) -> float:
  """Sample variance (ddof=1); exactly 0 when all values are equal (no rounding residue)."""
  if x.size < 2 or np.all(x == x[0]):
    return 0.0
  return float(np.var(x, ddof=1))


def _mean(x: np.ndarray) -> float:
  """The mean; exactly the value when all values are equal (np.mean of [0.1] * 3 is not 0.1)."""
  return float(x[0]) if np.all(x == x[0]) else float(np.mean(x))


def mean_std(values: Iterable[float]) -> tuple[float, float]:
  """Mean and sample standard deviation (ddof=1) of one row's runs; std 0.0 for a single run.

  Raises:
    ValueError: `values` is empty, not flat, or holds NaN or inf (named with their positions).
  """
  x = _as_sample(values)
  return _mean(x), math.sqrt(_var(x))


def _betacf(a: float, b: float, x: float) -> float:
  """Continued fraction of I_x(a, b) (NR `betacf`); converges fast for x < (a + 1)/(a + b + 2)."""
  qab, qap, qam = a + b, a + 1.0, a - 1.0
  c = 1.0
  d = 1.0 - qab * x / qap
  d = 1.0 / (d if abs(d) > _TINY else _TINY)
  h = d
  # The number of terms needed grows like sqrt(max(a, b)) (NR); the bound is generous.
  max_iter = 1000 + int(20 * math.sqrt(max(a, b)))
  for m in range(1, max_iter + 1):
    m2 = 2 * m
    for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)),  # even step
               -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):  # odd step
      d = 1.0 + aa * d
      d = 1.0 / (d if abs(d) > _TINY else _TINY)
      c = 1.0 + aa / c
      c = c if abs(c) > _TINY else _TINY
      delta = d * c
      h *= delta
    if abs(delta - 1.0) < _EPS:
      return h
  raise ArithmeticError(f"betainc({a}, {b}, {x}): continued fraction did not converge in "
                        f"{max_iter} iterations")


def _stirling_tail(z: float) -> float:
  """lgamma(z) - ((z - 1/2) log z - z + log(2 pi) / 2), to double precision for z >= 100."""
  z2 = z * z
  return (1.0 / 12.0 - (1.0 / 360.0 - (1.0 / 1260.0 - 1.0 / (1680.0 * z2)) / z2) / z2) / z


def _log_beta(a: float, b: float) -> float:
  """log B(a, b) = lgamma(a) + lgamma(b) - lgamma(a + b).

  With one argument large, lgamma(a + b) - lgamma(a) cancels to a small number and loses the
  digits lgamma's large values carry (1e-10 at a = 5e5: Student's t at df = 1e6); Stirling's
  series gives that difference directly.
  """
  big, small = max(a, b), min(a, b)
  if big < 100.0:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
  # lgamma(big + small) - lgamma(big), from Stirling's formula at both points.
  ratio = ((big - 0.5) * math.log1p(small / big) + small * math.log(big + small) - small
           + _stirling_tail(big + small) - _stirling_tail(big))
  return math.lgamma(small) - ratio


def _betainc(a: float, b: float, x: float, y: float) -> float:
  """I_x(a, b) given both x and y = 1 - x, so a caller holding an accurate 1 - x can pass it."""
  if x <= 0.0:
    return 0.0
  if y <= 0.0:
    return 1.0
  # x^a y^b / B(a, b), the prefactor of both sides of the symmetry; each log from the smaller of
  # x and y, where it is exact (a * log(x) amplifies x's rounding when a is large).
  log_x = math.log1p(-y) if x > 0.5 else math.log(x)
  log_y = math.log1p(-x) if y > 0.5 else math.log(y)
  front = math.exp(a * log_x + b * log_y - _log_beta(a, b))
  if x < (a + 1.0) / (a + b + 2.0):
    return front * _betacf(a, b, x) / a
  return 1.0 - front * _betacf(b, a, y) / b


def betainc(a: float, b: float, x: float) -> float:
  """The regularized incomplete beta function I_x(a, b) = B(x; a, b) / B(a, b).

  Args:
    a, b: positive shape parameters.
    x: in [0, 1].

  Returns:
    I_x(a, b) in [0, 1]; relative accuracy about 1e-14 away from the tails.

  Raises:
    ValueError: a or b not positive, or x outside [0, 1] (or NaN).
  """
  a, b, x = float(a), float(b), float(x)
  if not (a > 0.0 and b > 0.0) or math.isinf(a) or math.isinf(b):
    raise ValueError(f"betainc needs finite a > 0 and b > 0, got a={a}, b={b}")
  if not 0.0 <= x <= 1.0:
    raise ValueError(f"betainc needs 0 <= x <= 1, got x={x}")
  return _betainc(a, b, x, 1.0 - x)


def student_t_sf(t: float, df: float) -> float:
  """P(T > t) for T ~ Student's t with `df` degrees of freedom (df may be fractional).

  For t >= 0, P(T > t) = I_x(df/2, 1/2) / 2 with x = df / (df + t^2); for t < 0 it is
  1 - P(T > -t). df = inf gives the standard normal's survival function. Relative accuracy
  (against scipy, |t| <= 40): 1e-13 up to df = 1e3, 3e-11 at df = 1e6, 5e-9 at df = 1e8; the
  continued fraction needs O(sqrt(df)) terms and gathers rounding as df grows.

  Raises:
    ValueError: df is not positive (or NaN).
  """
  t, df = float(t), float(df)
  if not df > 0.0:
    raise ValueError(f"student_t_sf needs df > 0, got df={df}")
  if math.isnan(t):
    return math.nan
  if math.isinf(df):
    return 0.5 * math.erfc(t / math.sqrt(2.0))
  if math.isinf(t):
    return 0.0 if t > 0 else 1.0
  t2 = t * t
  # x and 1 - x each computed directly: 1 - x loses every digit when t is small.
  tail = 0.5 * _betainc(0.5 * df, 0.5, df / (df + t2), t2 / (df + t2))
  return tail if t >= 0.0 else 1.0 - tail


def _t_test(t: float, df: float) -> TTest:
  """p-values of a t statistic; t = +-inf (differing constant samples) gives p 0 or 1."""
  if math.isnan(t):
    return TTest(t, df, math.nan, math.nan)
  if math.isinf(t):
    return TTest(t, df, 0.0, 0.0 if t > 0 else 1.0)
  return TTest(t, df, min(1.0, 2.0 * student_t_sf(abs(t), df)), student_t_sf(t, df))


def _zero_se_t(diff: float) -> float:
  """t when the standard error is exactly 0: +-inf if the means differ, nan (0/0) otherwise."""
  return math.copysign(math.inf, diff) if diff != 0.0 else math.nan


def welch_t_test(a: Iterable[float], b: Iterable[float]) -> TTest:
  """Welch's unequal-variance t-test of mean(a) against mean(b) (independent seeds).

  t = (mean(a) - mean(b)) / sqrt(va + vb) with va = var(a) / n_a (ddof=1), and the
  Welch-Satterthwaite df = (va + vb)^2 / (va^2 / (n_a - 1) + vb^2 / (n_b - 1)).

  When neither sample varies the standard error is 0: t is +-inf if the means differ (p_two_sided
  0; p_one_sided_greater 0 for a > b, 1 for a < b) and nan if they are equal (p nan), and df is
  nan (0/0). When only one varies, the formulas above hold (df = that sample's n - 1).

  Raises:
    ValueError: a sample has fewer than 2 values, or holds NaN or inf.
  """
  x, y = _as_sample(a, "a"), _as_sample(b, "b")
  for name, s in (("a", x), ("b", y)):
    if s.size < 2:
      raise ValueError(f"welch_t_test needs at least 2 values per sample, {name} has {s.size}")
  va, vb = _var(x) / x.size, _var(y) / y.size
  diff = _mean(x) - _mean(y)
  if va + vb == 0.0:
    return _t_test(_zero_se_t(diff), math.nan)
  df = (va + vb) ** 2 / (va ** 2 / (x.size - 1) + vb ** 2 / (y.size - 1))
  return _t_test(diff / math.sqrt(va + vb), df)


def paired_t_test(a: Iterable[float], b: Iterable[float]) -> TTest:
  """Paired t-test of mean(a) against mean(b), where a[i] and b[i] share seed i.

  t = mean(d) / (std(d) / sqrt(n)) on the differences d = a - b, df = n - 1. If every difference is
  the same, t is +-inf (p as in `welch_t_test`) or nan when they are all 0.

  Raises:
    ValueError: lengths differ, fewer than 2 pairs, or NaN or inf in either sample.
  """
  x, y = _as_sample(a, "a"), _as_sample(b, "b")
  if x.size != y.size:
    raise ValueError(f"paired_t_test needs samples of equal length (pairs by seed), got "
                     f"{x.size} and {y.size}")
  if x.size < 2:
    raise ValueError(f"paired_t_test needs at least 2 pairs, got {x.size}")
  d = x - y
  df = float(d.size - 1)
  var = _var(d)
  if var == 0.0:
    return _t_test(_zero_se_t(float(d[0])), df)
  return _t_test(_mean(d) / math.sqrt(var / d.size), df)


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
