"""tfrec.reproduce: statistics, the bootstrap over users, report pieces and figures, against
closed forms, hand sums and independent computations."""

import math
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

from tfrec import metrics
from tfrec.reproduce import bootstrap
from tfrec.reproduce import figures
from tfrec.reproduce.report import (atomic_write_text, fmt_mean_std, markdown_table,
                                    significance_marker)
from tfrec.reproduce.stats import TTest, mean_std, relative_gain, verdict, welch_t_test

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


# Closed forms of Student's t survival function for small integer df (textbook identities).
def _sf_df2(t):
  return 0.5 - t / (2.0 * math.sqrt(t * t + 2.0))


def _sf_df3(t):
  return 0.5 - (math.atan(t / math.sqrt(3.0)) + math.sqrt(3.0) * t / (t * t + 3.0)) / math.pi


def _sf_df4(t):
  u = 1.0 + t * t / 4.0
  return 0.5 - 3.0 / 8.0 * t / math.sqrt(u) * (1.0 - t * t / (12.0 * u))


def _sf_by_quadrature(t, df, n=20_000):
  """P(T > t) = 1/2 - integral_0^t of Student's density, by Simpson's rule (any real df)."""
  c = math.exp(math.lgamma((df + 1) / 2) - math.lgamma(df / 2)) / math.sqrt(df * math.pi)
  x = np.linspace(0.0, t, n + 1)
  f = c * (1 + x * x / df) ** (-(df + 1) / 2)
  integral = (x[1] - x[0]) / 3 * (f[0] + f[-1] + 4 * f[1:-1:2].sum() + 2 * f[2:-1:2].sum())
  return 0.5 - integral


def test_quadrature_matches_the_closed_forms():
  for t in (0.3, 1.2, 3.1):
    assert _sf_by_quadrature(t, 2) == pytest.approx(_sf_df2(t), rel=1e-9)
    assert _sf_by_quadrature(t, 4) == pytest.approx(_sf_df4(t), rel=1e-9)


# ---------------------------------------------------------------------------------------------
# mean_std, Welch's t-test (scipy), verdicts


def test_mean_std():
  # mean 2.5; squared deviations 2.25 + 0.25 + 0.25 + 2.25 = 5, / (n - 1) = 5/3.
  mean, std = mean_std([1, 2, 3, 4])
  assert mean == 2.5 and std == pytest.approx(math.sqrt(5 / 3), rel=1e-15)
  assert mean_std([0.7]) == (0.7, 0.0)
  assert mean_std(np.array([0.1, 0.1, 0.1])) == (0.1, 0.0)  # exactly: no rounding residue
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
  t, df = -4 / math.sqrt(5 / 3), 50 / 17
  assert r.t == pytest.approx(t, rel=1e-14)
  assert r.df == pytest.approx(df, rel=1e-14)
  assert r.p_two_sided == pytest.approx(2 * _sf_by_quadrature(-t, df), rel=1e-8)
  assert r.p_one_sided_greater == pytest.approx(1 - r.p_two_sided / 2, rel=1e-14)
  # df between 2 and 3, so p lies between the closed forms at df 3 (lighter tail) and df 2.
  assert 2 * _sf_df3(-r.t) < r.p_two_sided < 2 * _sf_df2(-r.t)
  # Swapping the samples flips t and the one-sided p, not the two-sided one.
  s = welch_t_test([4, 6, 8], [1, 2, 3])
  assert s.t == pytest.approx(-r.t, rel=1e-14)
  assert s.p_two_sided == pytest.approx(r.p_two_sided, rel=1e-12)
  assert s.p_one_sided_greater == pytest.approx(r.p_two_sided / 2, rel=1e-12)


def test_welch_equal_variances_has_integer_df():
  # a = [1, 2, 3], b = [2, 3, 4]: both var 1, va = vb = 1/3; t = -1 / sqrt(2/3) = -1.2247;
  # df = (2/3)^2 / (2 * (1/3)^2 / 2) = (4/9) / (1/9) = 4, so the df = 4 closed form applies.
  r = welch_t_test([1, 2, 3], [2, 3, 4])
  t = -1 / math.sqrt(2 / 3)
  assert r.t == pytest.approx(t, rel=1e-14) and r.df == pytest.approx(4.0, rel=1e-14)
  assert r.p_two_sided == pytest.approx(2 * _sf_df4(-t), rel=1e-12)
  assert r.p_one_sided_greater == pytest.approx(1 - _sf_df4(-t), rel=1e-12)


def test_welch_textbook_critical_value():
  # Equal n = 3 and equal variances give df = 4; the two-sided 5% critical value of t(4) is
  # 2.776445 (t tables). b = [0, 1, 2] (var 1), a = b + d with d = 2.776445 * sqrt(2/3).
  d = 2.776445 * math.sqrt(2 / 3)
  r = welch_t_test([d, 1 + d, 2 + d], [0, 1, 2])
  assert r.df == pytest.approx(4.0) and r.p_two_sided == pytest.approx(0.05, abs=2e-7)
  assert r.p_one_sided_greater == pytest.approx(0.025, abs=1e-7)


def test_welch_zero_variance_and_too_few_values():
  up = welch_t_test([0.8, 0.8, 0.8], [0.7, 0.7])
  assert up.t == math.inf and up.p_two_sided == 0.0 and up.p_one_sided_greater == 0.0
  assert math.isnan(up.df)
  down = welch_t_test([0.7, 0.7], [0.8, 0.8, 0.8])
  assert down.t == -math.inf and down.p_two_sided == 0.0 and down.p_one_sided_greater == 1.0
  same = welch_t_test([0.1, 0.1, 0.1], [0.1, 0.1])  # scipy alone: t = 1.41 from rounding
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


def test_verdicts():
  # b = [4, 6, 8] > a = [1, 2, 3]: one-sided p = P(T(50/17) > 3.098) = 0.027 < 0.05.
  words, p = verdict([4, 6, 8], [1, 2, 3])
  assert words == "holds" and p == pytest.approx(_sf_by_quadrature(4 / math.sqrt(5 / 3),
                                                                   50 / 17), rel=1e-8)
  # [2, 3, 4] > [1, 2, 3]: t = 1.2247 at df 4, p = 0.144: the right sign, not significant.
  words, p = verdict([2, 3, 4], [1, 2, 3])
  assert words == "same direction, not significant"
  assert p == pytest.approx(_sf_df4(1 / math.sqrt(2 / 3)), rel=1e-12)
  assert verdict([1, 2, 3], [2, 3, 4])[0] == "does not hold"
  assert verdict([1, 2, 3], [1, 2, 3])[0] == "does not hold"  # equal means: no ordering
  # One seed: no test, so never "holds".
  words, p = verdict([0.9], [0.1])
  assert words == "same direction, not significant" and math.isnan(p)
  assert verdict([0.1], [0.9])[0] == "does not hold"
  assert verdict([0.8, 0.8], [0.7, 0.7]) == ("holds", 0.0)  # constant and different


def test_p_text_names_why_there_is_no_p():
  from tfrec.reproduce import tables
  assert tables.p_text(0.0123) == "0.0123*"
  # Two rows equal on every seed (a hit rate of 0 for both): no test, and not for lack of seeds.
  _, p = verdict([0.0, 0.0, 0.0], [0.0, 0.0, 0.0])
  assert math.isnan(p)
  assert tables.p_text(p, 3) == "n/a (equal on every seed)"
  assert tables.p_text(p, 1) == tables.p_text(p) == "n/a (1 seed)"
  assert tables.welch_p([0.0, 0.0], [0.0, 0.0]) == "n/a (equal on every seed)"
  assert tables.welch_p([0.1], [0.0, 0.2]) == "n/a (1 seed)"


def test_relative_gain():
  assert relative_gain(0.75, 0.6) == pytest.approx(25.0)
  assert relative_gain(0.5, 0.625) == pytest.approx(-20.0)
  assert relative_gain(-1.0, -2.0) == pytest.approx(50.0)  # better than a negative baseline
  with pytest.raises(ValueError, match="old = 0"):
    relative_gain(0.1, 0.0)
  with pytest.raises(ValueError, match="finite"):
    relative_gain(math.nan, 0.5)


# ---------------------------------------------------------------------------------------------
# the bootstrap over users


def _run(seed, n_users=40, shift=0.0, tie=1):
  """Per-example arrays of a model evaluated on n_users users with 2..6 examples each; logits
  rounded to `tie` decimals (ties)."""
  rng = np.random.default_rng(seed)
  users = np.repeat(np.arange(n_users), rng.integers(2, 7, n_users))
  labels = rng.integers(0, 2, len(users))
  logits = np.round(labels * (0.6 + shift) + rng.normal(size=len(users)), tie)
  rows = np.flatnonzero(labels == 1)
  return {"user_ids": users, "labels": labels, "logits": logits, "rows": rows,
          "ranks": rng.integers(0, 8, len(rows))}


def test_weighted_metrics_are_the_metrics_of_the_replicated_users():
  arr = _run(0)
  counts = {0: 3, 5: 1, 6: 2, 11: 1, 20: 4, 39: 1}  # user -> times drawn; the rest 0
  rep = np.concatenate([np.repeat(np.flatnonzero(arr["user_ids"] == u), c)
                        for u, c in counts.items()])  # the resampled users' examples, repeated
  assert bootstrap.weighted_metric(arr, "auc", counts) == pytest.approx(
      metrics.auc(arr["labels"][rep], arr["logits"][rep]), rel=1e-12)
  ranked_users = arr["user_ids"][arr["rows"]]
  rep_ranked = np.concatenate([np.repeat(np.flatnonzero(ranked_users == u), c)
                               for u, c in counts.items()])
  assert bootstrap.weighted_metric(arr, "hr@3", counts) == pytest.approx(
      np.mean(arr["ranks"][rep_ranked] < 3), rel=1e-12)
  # NDCG@K: each drawn ranked positive's gain 1 / log2(rank + 2) (0 from rank K on), by hand.
  ranks = arr["ranks"][rep_ranked]
  assert bootstrap.weighted_metric(arr, "ndcg@3", counts) == pytest.approx(
      np.mean([1.0 / math.log2(r + 2) if r < 3 else 0.0 for r in ranks]), rel=1e-12)
  ones = {int(u): 1 for u in np.unique(arr["user_ids"])}
  assert bootstrap.weighted_metric(arr, "auc", ones) == pytest.approx(
      metrics.auc(arr["labels"], arr["logits"]), rel=1e-12)
  assert bootstrap.weighted_metric(arr, "ndcg@5", ones) == pytest.approx(
      np.mean([1.0 / math.log2(r + 2) if r < 5 else 0.0 for r in arr["ranks"]]), rel=1e-12)


def test_per_user_metrics_weigh_each_resampled_user_by_its_count():
  arr = _run(3)
  counts = {0: 3, 5: 1, 6: 2, 11: 1, 20: 4, 39: 1}
  rep_users = np.concatenate([np.full(c, u) for u, c in counts.items()])
  # GAUC ("samples"): each drawn user's AUC weighted by its examples, once per draw.
  per = metrics.per_user_auc(arr["user_ids"], arr["labels"], arr["logits"])
  auc_of = dict(zip(per["users"].tolist(), per["auc"]))
  n_of = dict(zip(per["users"].tolist(), per["examples"]))
  kept = [u for u in rep_users if np.isfinite(auc_of[u])]
  want = sum(auc_of[u] * n_of[u] for u in kept) / sum(n_of[u] for u in kept)
  assert bootstrap.weighted_metric(arr, "gauc", counts) == pytest.approx(want, rel=1e-12)
  ones = {int(u): 1 for u in np.unique(arr["user_ids"])}
  assert bootstrap.weighted_metric(arr, "gauc", ones) == pytest.approx(
      metrics.gauc(arr["user_ids"], arr["labels"], arr["logits"], "samples")["gauc"], rel=1e-12)
  # ADAPT eq. 12 ("mean"): the drawn users' AUCs, each once per draw, whatever its examples.
  assert bootstrap.weighted_metric(arr, "gauc_mean", counts) == pytest.approx(
      np.mean([auc_of[u] for u in kept]), rel=1e-12)
  for reduction in ("mean", "positives"):
    assert bootstrap.weighted_metric(arr, f"gauc_{reduction}", ones) == pytest.approx(
        metrics.gauc(arr["user_ids"], arr["labels"], arr["logits"], reduction)["gauc"],
        rel=1e-12)
  # Top-K impression metrics: the plain mean of the drawn users' values, once per draw.
  top = metrics.user_topk(arr["user_ids"], arr["labels"], arr["logits"], (2,))
  ndcg_of = dict(zip(top.users.tolist(), top.values["ndcg"][0]))
  kept = [u for u in rep_users if u in ndcg_of]
  assert bootstrap.weighted_metric(arr, "topk_ndcg@2", counts) == pytest.approx(
      np.mean([ndcg_of[u] for u in kept]), rel=1e-12)
  assert bootstrap.weighted_metric(arr, "topk_precision@2", ones) == pytest.approx(
      metrics.topk_metrics(arr["user_ids"], arr["labels"], arr["logits"], (2,))[
          "precision@2"], rel=1e-12)
  with pytest.raises(ValueError, match="unknown per-user metric"):
    bootstrap.weighted_metric(arr, "topk_map@2", ones)


def test_user_bootstrap_intervals():
  a = [_run(s) for s in range(3)]
  b = [_run(10 + s, shift=0.8) for s in range(3)]  # a clearly better model, users 0..39 too
  boot = bootstrap.UserBootstrap({"a": a, "b": b}, k=3, n_resamples=500)
  row = boot.row("a", "auc")
  # The estimate is the reported number: the mean over seeds of the plain AUC.
  assert row.estimate == pytest.approx(np.mean([metrics.auc(x["labels"], x["logits"])
                                                for x in a]), rel=1e-12)
  assert row.low < row.estimate < row.high
  hr = boot.row("a", "hr@3")
  assert hr.estimate == pytest.approx(np.mean([np.mean(x["ranks"] < 3) for x in a]))
  diff = boot.difference("b", "a", "auc")
  assert diff.estimate == pytest.approx(boot.row("b", "auc").estimate - row.estimate)
  assert diff.low > 0 and diff.excludes_zero()
  assert not boot.difference("a", "a", "auc").excludes_zero()  # 0 on every resample
  # Seeded: the same intervals again.
  assert bootstrap.UserBootstrap({"a": a}, k=3, n_resamples=500).row("a", "auc") == row


def test_user_bootstrap_matches_a_plain_percentile_bootstrap():
  # An independent, unvectorised bootstrap: draw users, repeat their examples, plain AUC.
  arr = _run(3, n_users=60)
  users = np.unique(arr["user_ids"])
  by_user = [np.flatnonzero(arr["user_ids"] == u) for u in users]
  rng = np.random.default_rng(123)
  aucs = []
  for _ in range(1000):
    idx = np.concatenate([by_user[i] for i in rng.integers(0, len(users), len(users))])
    aucs.append(metrics.auc(arr["labels"][idx], arr["logits"][idx]))
  low, high = np.percentile(aucs, [2.5, 97.5])
  ci = bootstrap.UserBootstrap({"x": [arr]}, k=3).row("x", "auc")
  width = high - low
  # Different random draws: the endpoints agree to Monte Carlo error (a few % of the width).
  assert ci.low == pytest.approx(low, abs=0.15 * width)
  assert ci.high == pytest.approx(high, abs=0.15 * width)


def test_paired_intervals_are_narrower_than_the_rows():
  # b = a with a small, user-independent improvement: the rows' intervals overlap, the paired
  # difference's is narrow and excludes 0.
  a = [_run(s, n_users=80, tie=3) for s in range(2)]
  b = [dict(x, logits=x["logits"] + 0.1 * x["labels"]) for x in a]
  boot = bootstrap.UserBootstrap({"a": a, "b": b}, k=3, n_resamples=400)
  ra, rb, d = boot.row("a", "auc"), boot.row("b", "auc"), boot.difference("b", "a", "auc")
  assert ra.high > rb.low  # overlapping rows
  assert d.low > 0 and (d.high - d.low) < 0.5 * (ra.high - ra.low)
  assert d.format() == f"[{d.low:.4f}, {d.high:.4f}]"


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
