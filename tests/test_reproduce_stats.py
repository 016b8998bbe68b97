"""tfrec.reproduce: statistics, report pieces and figures against closed forms and hand sums."""

import math
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

from tfrec.reproduce import figures
from tfrec.reproduce.report import (atomic_write_text, fmt_mean_std, markdown_table,
                                    significance_marker)
from tfrec.reproduce.stats import (TTest, betainc, mean_std, paired_t_test, relative_gain,
                                   student_t_sf, welch_t_test)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# Closed forms of Student's t survival function for small integer df.
def _sf_df2(t):
  return 0.5 - t / (2.0 * math.sqrt(t * t + 2.0))


def _sf_df3(t):
  return 0.5 - (math.atan(t / math.sqrt(3.0)) + math.sqrt(3.0) * t / (t * t + 3.0)) / math.pi


def _sf_df4(t):
  u = 1.0 + t * t / 4.0
  return 0.5 - 3.0 / 8.0 * t / math.sqrt(u) * (1.0 - t * t / (12.0 * u))


# ---------------------------------------------------------------------------------------------
# betainc and student_t_sf


@pytest.mark.parametrize("x", [0.0, 1e-9, 0.1, 0.37, 0.5, 0.9, 1.0 - 1e-9, 1.0])
def test_betainc_closed_forms(x):
  assert betainc(1, 1, x) == pytest.approx(x, rel=1e-13, abs=1e-300)
  for a in (0.5, 2.0, 7.3, 40.0):
    assert betainc(a, 1, x) == pytest.approx(x ** a, rel=1e-12, abs=1e-300)
  for b in (0.5, 2.0, 7.3, 40.0):
    # 1 - (1 - x)^b, written without cancelling at small x.
    expected = -math.expm1(b * math.log1p(-x)) if x < 1 else 1.0
    assert betainc(1, b, x) == pytest.approx(expected, rel=1e-12)


def test_betainc_integer_parameters_are_a_binomial_tail():
  # I_x(a, b) = P(Binomial(a + b - 1, x) >= a) for integer a, b: both sides of the switch.
  for a, b in [(2, 3), (5, 5), (12, 4), (3, 30), (60, 45)]:
    m = a + b - 1
    for x in (0.05, 0.3, 0.5, 0.62, 0.95):
      expected = sum(math.comb(m, j) * x ** j * (1 - x) ** (m - j) for j in range(a, m + 1))
      assert betainc(a, b, x) == pytest.approx(expected, rel=1e-11, abs=1e-300), (a, b, x)


def test_betainc_symmetry_and_arguments():
  for a, b in [(0.5, 0.5), (0.3, 4.0), (2.5, 11.0), (150.0, 0.5), (80.0, 95.0)]:
    for x in (0.01, 0.2, 0.5, 0.77, 0.999):
      assert betainc(a, b, x) == pytest.approx(1.0 - betainc(b, a, 1.0 - x), abs=1e-13)
  assert betainc(3, 4, 0) == 0.0 and betainc(3, 4, 1) == 1.0
  for a, b, x in [(0, 1, 0.5), (1, -1, 0.5), (1, 1, 1.5), (1, 1, -0.1), (1, 1, math.nan)]:
    with pytest.raises(ValueError, match="betainc"):
      betainc(a, b, x)


def test_student_t_sf_textbook_values():
  # Two-sided critical values from t tables: 0.05 at df 4, 0.01 at df 10.
  assert 2 * student_t_sf(2.776445, 4) == pytest.approx(0.05, abs=2e-7)
  assert 2 * student_t_sf(3.169273, 10) == pytest.approx(0.01, abs=2e-7)
  assert student_t_sf(-2.776445, 4) == pytest.approx(0.975, abs=1e-7)
  for df in (0.7, 1, 3, 29.5, 1e4):
    assert student_t_sf(0.0, df) == 0.5
  assert student_t_sf(math.inf, 5) == 0.0 and student_t_sf(-math.inf, 5) == 1.0
  assert math.isnan(student_t_sf(math.nan, 5))
  for df in (0, -1, math.nan):
    with pytest.raises(ValueError, match="df"):
      student_t_sf(1.0, df)


@pytest.mark.parametrize("t", [-30.0, -2.5, -0.3, 1e-6, 0.5, 1.0, 3.0, 12.0, 300.0])
def test_student_t_sf_closed_forms(t):
  # df = 1 is the Cauchy distribution; df = 2, 3, 4 have elementary closed forms.
  assert student_t_sf(t, 1) == pytest.approx(0.5 - math.atan(t) / math.pi, rel=1e-12)
  for df, sf in ((2, _sf_df2), (3, _sf_df3), (4, _sf_df4)):
    expected = sf(t)
    # Far in the upper tail the closed forms cancel; compare those absolutely.
    tol = dict(rel=1e-11) if expected > 1e-6 else dict(abs=1e-13)
    assert student_t_sf(t, df) == pytest.approx(expected, **tol), (t, df)


def test_student_t_sf_tends_to_the_normal():
  for t in (-3.0, -1.0, 0.5, 1.96, 4.0):
    normal = 0.5 * math.erfc(t / math.sqrt(2.0))
    assert student_t_sf(t, 1e6) == pytest.approx(normal, abs=2e-7)
    # With the first term of the expansion in 1/df, sf_t = sf_normal + pdf(t) (t^3 + t) / (4 df)
    # + O(1/df^2), the gap closes to rounding.
    pdf = math.exp(-t * t / 2) / math.sqrt(2 * math.pi)
    assert student_t_sf(t, 1e6) == pytest.approx(normal + pdf * (t ** 3 + t) / 4e6, abs=1e-11)
    assert student_t_sf(t, math.inf) == normal
    # Monotone in df towards the normal for t > 0 (heavier tails at small df).
    if t > 0:
      assert student_t_sf(t, 5) > student_t_sf(t, 50) > student_t_sf(t, 1e6) > normal


def test_student_t_sf_matches_scipy_where_installed():
  stats = pytest.importorskip("scipy.stats")  # not a dependency: a cross-check only
  rng = np.random.default_rng(0)
  for df, t in zip(np.exp(rng.uniform(-1, 8, 300)), rng.normal(0, 6, 300)):
    assert student_t_sf(t, df) == pytest.approx(stats.t.sf(t, df), rel=1e-9, abs=1e-300)


# ---------------------------------------------------------------------------------------------
# mean_std, t-tests, relative_gain


def test_mean_std():
  # mean 2.5; squared deviations 2.25 + 0.25 + 0.25 + 2.25 = 5, / (n - 1) = 5/3.
  mean, std = mean_std([1, 2, 3, 4])
  assert mean == 2.5 and std == pytest.approx(math.sqrt(5 / 3), rel=1e-15)
  assert mean_std([0.7]) == (0.7, 0.0)
  assert mean_std(np.array([0.1, 0.1, 0.1]))[1] == 0.0  # exactly: no rounding residue
  with pytest.raises(ValueError, match=r"NaN at positions \[1\]"):
    mean_std([0.5, math.nan, 0.6])
  with pytest.raises(ValueError, match="inf"):
    mean_std([0.5, math.inf])
  with pytest.raises(ValueError, match="empty"):
    mean_std([])


def test_welch_by_hand():
  # a = [1, 2, 3]: mean 2, var 1, va = 1/3.  b = [4, 6, 8]: mean 6, var 4, vb = 4/3.
  # t = (2 - 6) / sqrt(1/3 + 4/3) = -4 / sqrt(5/3) = -3.0983866769659336
  # df = (5/3)^2 / ((1/3)^2 / 2 + (4/3)^2 / 2) = (25/9) / (17/18) = 50/17 = 2.9411764705882355
  r = welch_t_test([1, 2, 3], [4, 6, 8])
  assert isinstance(r, TTest)
  assert r.t == pytest.approx(-4 / math.sqrt(5 / 3), rel=1e-14)
  assert r.df == pytest.approx(50 / 17, rel=1e-14)
  assert r.p_two_sided == pytest.approx(2 * student_t_sf(4 / math.sqrt(5 / 3), 50 / 17), rel=1e-14)
  assert r.p_one_sided_greater == pytest.approx(1 - r.p_two_sided / 2, rel=1e-14)
  # df between 2 and 3, so p lies between the closed forms at df 3 (lighter tail) and df 2.
  assert 2 * _sf_df3(-r.t) < r.p_two_sided < 2 * _sf_df2(-r.t)
  # Swapping the samples flips t and the one-sided p, not the two-sided one.
  s = welch_t_test([4, 6, 8], [1, 2, 3])
  assert s.t == -r.t and s.p_two_sided == r.p_two_sided
  assert s.p_one_sided_greater == pytest.approx(r.p_two_sided / 2, rel=1e-14)


def test_welch_equal_variances_has_integer_df():
  # a = [1, 2, 3], b = [2, 3, 4]: both var 1, va = vb = 1/3; t = -1 / sqrt(2/3) = -1.2247;
  # df = (2/3)^2 / (2 * (1/3)^2 / 2) = (4/9) / (1/9) = 4, so the df = 4 closed form applies.
  r = welch_t_test([1, 2, 3], [2, 3, 4])
  t = -1 / math.sqrt(2 / 3)
  assert r.t == pytest.approx(t, rel=1e-14) and r.df == pytest.approx(4.0, rel=1e-14)
  assert r.p_two_sided == pytest.approx(2 * _sf_df4(-t), rel=1e-12)
  assert r.p_one_sided_greater == pytest.approx(1 - _sf_df4(-t), rel=1e-12)


def test_welch_zero_variance_and_too_few_values():
  up = welch_t_test([0.8, 0.8, 0.8], [0.7, 0.7])
  assert up.t == math.inf and up.p_two_sided == 0.0 and up.p_one_sided_greater == 0.0
  assert math.isnan(up.df)
  down = welch_t_test([0.7, 0.7], [0.8, 0.8, 0.8])
  assert down.t == -math.inf and down.p_two_sided == 0.0 and down.p_one_sided_greater == 1.0
  same = welch_t_test([0.1, 0.1, 0.1], [0.1, 0.1])
  assert math.isnan(same.t) and math.isnan(same.p_two_sided)
  assert math.isnan(same.p_one_sided_greater)
  # One constant sample: the other's variance alone, df = its n - 1 = 2.
  # t = (1 - 2) / sqrt(1/3) = -sqrt(3); the df = 2 closed form applies.
  one = welch_t_test([1, 1, 1], [1, 2, 3])
  assert one.t == pytest.approx(-math.sqrt(3), rel=1e-14) and one.df == pytest.approx(2.0)
  assert one.p_two_sided == pytest.approx(2 * _sf_df2(math.sqrt(3)), rel=1e-12)
  with pytest.raises(ValueError, match="at least 2 values.*a has 1"):
    welch_t_test([0.7], [0.7, 0.8])
  with pytest.raises(ValueError, match="b has 1"):
    welch_t_test([0.7, 0.8], [0.7])
  with pytest.raises(ValueError, match="b contains NaN"):
    welch_t_test([0.7, 0.8], [0.7, math.nan])


def test_paired_by_hand():
  # d = a - b = [1, 2, 3]: mean 2, std 1, t = 2 / (1 / sqrt(3)) = 2 sqrt(3), df = 2.
  r = paired_t_test([2, 4, 6], [1, 2, 3])
  t = 2 * math.sqrt(3)
  assert r.t == pytest.approx(t, rel=1e-14) and r.df == 2.0
  assert r.p_two_sided == pytest.approx(2 * _sf_df2(t), rel=1e-12)  # 0.0742
  assert r.p_one_sided_greater == pytest.approx(_sf_df2(t), rel=1e-12)
  # The same numbers unpaired: the seed-to-seed spread is not cancelled, so p is larger.
  assert welch_t_test([2, 4, 6], [1, 2, 3]).p_two_sided > r.p_two_sided
  # Constant differences: +-inf; all differences 0: nan.
  assert paired_t_test([1.5, 2.5], [1, 2]).t == math.inf
  assert paired_t_test([1, 2], [1.5, 2.5]).p_one_sided_greater == 1.0
  assert math.isnan(paired_t_test([1, 2], [1, 2]).p_two_sided)
  with pytest.raises(ValueError, match="equal length"):
    paired_t_test([1, 2, 3], [1, 2])
  with pytest.raises(ValueError, match="at least 2 pairs"):
    paired_t_test([1], [2])


def test_relative_gain():
  assert relative_gain(0.75, 0.6) == pytest.approx(25.0)
  assert relative_gain(0.5, 0.625) == pytest.approx(-20.0)
  assert relative_gain(-1.0, -2.0) == pytest.approx(50.0)  # better than a negative baseline
  with pytest.raises(ValueError, match="old = 0"):
    relative_gain(0.1, 0.0)
  with pytest.raises(ValueError, match="finite"):
    relative_gain(math.nan, 0.5)


# ---------------------------------------------------------------------------------------------
# report pieces


def test_fmt_mean_std():
  # Deviations -0.0012, 0, +0.0012: var = 2 * 0.0012^2 / 2, std = 0.0012.
  assert fmt_mean_std([0.7384, 0.7396, 0.7408]) == "0.7396 ± 0.0012"
  assert fmt_mean_std([1, 2, 3, 4], digits=2) == "2.50 ± 1.29"
  assert fmt_mean_std([0.5]) == "0.5000 ± 0.0000"
  with pytest.raises(ValueError, match="NaN"):
    fmt_mean_std([math.nan])


def test_markdown_table():
  assert markdown_table(["model", "AUC"], [["SEMI", "0.7396 ± 0.0012"], ["a|b", "x\ny"]]) == (
      "| model | AUC |\n"
      "|---|---|\n"
      "| SEMI | 0.7396 ± 0.0012 |\n"
      "| a\\|b | x y |\n")
  assert markdown_table(["a", "b", "c"], [], align=["l", "r", "c"]) == (
      "| a | b | c |\n|:---|---:|:---:|\n")
  with pytest.raises(ValueError, match="row 0 has 1 cells for 2 columns"):
    markdown_table(["a", "b"], [["x"]])
  with pytest.raises(ValueError, match="alignment"):
    markdown_table(["a"], [["x"]], align=["x"])


def test_significance_marker():
  assert significance_marker(0.001) == "**"
  assert significance_marker(0.01) == "*"  # strictly below a level
  assert significance_marker(0.049) == "*"
  assert significance_marker(0.05) == ""
  assert significance_marker(math.nan) == ""
  assert significance_marker(0.0005, levels=((0.05, "*"), (0.001, "***"))) == "***"


def test_atomic_write_text(tmp_path):
  path = tmp_path / "new" / "dir" / "results.md"
  assert atomic_write_text(path, "first ±\n") == str(path)
  atomic_write_text(path, "second\n")
  assert path.read_text(encoding="utf-8") == "second\n"
  assert os.listdir(path.parent) == ["results.md"]  # no temporary file left behind


# ---------------------------------------------------------------------------------------------
# figures


def _png_size(path):
  data = open(path, "rb").read(24)
  assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
  return struct.unpack(">II", data[16:24])


def test_line_plot_numeric_and_categorical(tmp_path):
  path = tmp_path / "figs" / "queue.png"
  out = figures.line_plot(path, [64, 256, 1024], {"SEMI+CCL": ([0.70, 0.72, 0.73], [0.01] * 3),
                                                  "no std": ([0.69, 0.70, 0.71], None)},
                          "queue size", "AUC", "AUC vs queue size",
                          hlines={"w/o CCL": 0.69, "oracle": 0.80}, xscale="log")
  assert out == str(path)
  assert _png_size(path) == (768, 480)  # 6.4 x 4.0 inches at 120 dpi
  assert os.listdir(path.parent) == ["queue.png"]
  cat = figures.line_plot(tmp_path / "cat.png", ["none", "CCL", "CCL+adv"],
                          {"AUC": ([0.70, 0.72, 0.73], [0.002, 0.003, 0.001])},
                          "variant", "AUC", "ablation", figsize=(3, 2), dpi=50)
  assert _png_size(cat) == (150, 100)
  with pytest.raises(ValueError, match="numeric x"):
    figures.line_plot(tmp_path / "bad.png", ["a", "b"], {"s": ([1, 2], None)}, "", "", "",
                      xscale="log")
  with pytest.raises(ValueError, match="series 's': means has shape"):
    figures.line_plot(tmp_path / "bad.png", [1, 2, 3], {"s": ([1, 2], None)}, "", "", "")
  assert not (tmp_path / "bad.png").exists()


def test_grouped_bars(tmp_path):
  path = figures.grouped_bars(tmp_path / "bars.png", ["micro-video", "product"],
                              {"BST": ([0.70, 0.68], [0.01, 0.02]),
                               "SEMI": ([0.73, 0.71], [0.01, 0.01]),
                               "SEMI+CCL": ([0.74, 0.72], None)},
                              "AUC", "per domain", hlines={"oracle": 0.8}, ylim=(0.6, 0.85))
  assert _png_size(path) == (768, 480)
  with pytest.raises(ValueError, match="stds has shape"):
    figures.grouped_bars(tmp_path / "b.png", ["x"], {"s": ([1], [0.1, 0.2])}, "", "")


def test_figures_need_matplotlib_only_when_drawing(tmp_path, monkeypatch):
  code = ("import sys, tfrec.reproduce.figures, tfrec.reproduce.report, tfrec.reproduce.stats; "
          "assert 'matplotlib' not in sys.modules, 'imported matplotlib'")
  subprocess.run([sys.executable, "-c", code], check=True)
  monkeypatch.setitem(sys.modules, "matplotlib.figure", None)  # import now fails
  with pytest.raises(ImportError, match=r'pip install -e "\.\[reproduce\]"'):
    figures.line_plot(tmp_path / "x.png", [1], {"s": ([1.0], None)}, "", "", "")
