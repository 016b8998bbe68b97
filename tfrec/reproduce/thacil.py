"""THACIL (Chen et al., MM 2018): Table 2, Fig. 4 and the drift regime map, and the results file
`docs/results/thacil_<dataset>.md`.

  Table 2  BPR, LSTM, LSTM+Attention, ATRank, NCF, THACIL: GAUC (eq. 11) and AUC on the item
           cold-start split (`test_cold`: impressions of items never trained on)
  Fig. 4   precision, recall, F-score and NDCG of each user's top-K impressions over K (§4.4)
  sweep    `--sweep=interest_drift_per_day=...`: THACIL - ATRank across the world's interest
           drift (the temporal blocks are the paper's claim; `tfrec.reproduce.sweep`)

GAUC is eq. 11's per-user AUC weighted by the user's impressions, as the public code
(Ocxs/THACIL) weighs its per-user metrics (the issue's "per-user metrics weighted by the user's
sample count"); the plain mean of eq. 11 is what `python -m tfrec.evaluate
--gauc_reduction=mean` gives. Fig. 4's metrics are the plain mean over users with a click.

Scales: "paper" runs the rows' own flagfiles (`configs/thacil/*.flags`: d = 128, n = 160 in
blocks of 20, 8 heads, batch 128, Adam 1e-3, L2 5e-5, clipping at 5) on the full `thacil`
preset; "cpu" adds `configs/reproduce/thacil_cpu.flags` (d = 64, 4 heads, hidden 64, batch 256,
at most 4 epochs) on the `thacil` preset with 300 users. Both keep n = 160 in blocks of 20.

Datasets: synthetic (the `thacil` preset: long histories, category-level interest, interest
drift, item cold start); movielens (MovieLens-1M as two domains with histories of 160:
`python -m tfrec.datasets.movielens --out data/ml1m_thacil --max_history=160`; no visual
feature, so every row embeds items from [title; category], f = the mean of the title's word
embeddings, `--model_args=item_features=[title,category]`; test_cold = ratings of held-out
movies); microvideo (MicroVideo-1.7M converted by `python -m tfrec.datasets.microvideo`; not
reachable from the machines this project runs on: the report then lists the BARS anchors as
the reference).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from tfrec.reproduce import bootstrap, figures, report, stats, tables
from tfrec.reproduce.harness import Row, values

PAPER = "thacil"
CONFIGS = "configs/thacil"
PARTS = ("table2", "fig4")
DATASETS = ("synthetic", "movielens", "microvideo")
DATA_DIRS = {"movielens": "data/ml1m_thacil", "microvideo": "data/microvideo"}
# MovieLens has no visual feature: items are [title; category] for every row.
TITLE_ITEMS = "--model_args=item_features=[title,category]"
EVAL_SPLIT = "test_cold"
PROTOCOL = "none"  # pointwise: each user's own impressions, no sampled negatives

# The paper's Table 2 on MicroVideo-1.7M, and the BARS benchmark's MicroVideo1.7M_x1 gAUC
# (the anchors for users who have the data).
PAPER_TABLE2 = {"BPR": 0.583, "LSTM": 0.641, "LSTM+Attention": 0.654, "ATRank": 0.660,
                "NCF": 0.672, "THACIL": 0.684}
BARS_ANCHORS = (("DIN", 0.6883), ("DIEN", 0.6867), ("BST", 0.6854),
                ("THACIL (the released checkpoint's name)", 0.6844))


@dataclasses.dataclass(frozen=True)
class Scale:
  name: str
  synthetic_preset: str
  world_overrides: Tuple[Tuple[str, Any], ...]  # (field, value) on top of the preset
  world_name: str                                # data/reproduce/syn-<world_name>
  scale_flagfile: str
  pretrain_flagfile: str
  topk_ks: Tuple[int, ...]                       # synthetic test_cold: ~6 impressions a user
  description: str                               # the models' settings (every dataset)
  world: str = ""                                # the synthetic world, when it is one

  def text(self, dataset: str) -> str:
    """The scale for the results file: the world (synthetic data only), then the settings."""
    return (f"{self.world}; " if dataset == "synthetic" and self.world else "") + self.description


SCALES = {
    "cpu": Scale(
        "cpu", "thacil", (("num_users", 300),), "thacil-u300",
        "configs/reproduce/thacil_cpu.flags", "", topk_ks=(1, 2, 3, 5, 10),
        world="the `thacil` preset with 300 users",
        description="scaled-down CPU variant: d = 64 (32 content (visual, or title words) + 32 "
        "category), 4 heads, hidden 64, batch 256, at most 4 epochs with early stopping on "
        "`valid` (`configs/reproduce/thacil_cpu.flags` after each row's own flagfile); n = 160 "
        "in blocks of 20 as the paper"),
    "paper": Scale(
        "paper", "thacil", (), "thacil", "", "", topk_ks=(1, 2, 3, 5, 10),
        description="the paper's settings (§4.3 and the public code): each row's own flagfile "
        "in `configs/thacil/` (d = 128, n = 160 in blocks of 20, 8 heads, hidden 128, batch "
        "128, Adam 1e-3, L2 5e-5, keep probability 0.8, gradients clipped at 5)"),
}
# MicroVideo-1.7M's test users hold ~343 impressions each: the public code's K = 10..100.
MICROVIDEO_KS = tuple(range(10, 101, 10))


def topk_ks(scale: Scale, dataset: str) -> Tuple[int, ...]:
  return MICROVIDEO_KS if dataset == "microvideo" else scale.topk_ks


world_config = tables.world_config


def harness_settings(scale: Scale, dataset: str) -> Dict[str, Any]:
  """What `harness.Settings` takes from this paper: its split, protocol, Fig. 4's K and the
  flags a dataset needs on every row."""
  return {"eval_split": EVAL_SPLIT, "protocol": PROTOCOL, "topk_ks": topk_ks(scale, dataset),
          "extra_flags": (TITLE_ITEMS,) if dataset == "movielens" else ()}


@dataclasses.dataclass(frozen=True)
class Experiments:
  table2: Tuple[Row, ...]

  def rows(self, parts: Sequence[str]) -> List[Row]:
    del parts  # Fig. 4 is measured on Table 2's runs
    return list(self.table2)


def experiments(scale: Scale) -> Experiments:
  del scale
  return Experiments(tuple(Row(name, f"{CONFIGS}/{stem}.flags") for name, stem in (
      ("BPR", "bpr"), ("LSTM", "lstm"), ("LSTM+Attention", "lstm_attention"),
      ("ATRank", "atrank"), ("NCF", "ncf"), ("THACIL", "thacil"))))


# ------------------------------------------------------------------ the results file

METRICS = ("gauc", "auc")
_LABEL = {"gauc": "GAUC", "auc": "AUC"}
FIG4 = (("precision", "precision"), ("recall", "recall"), ("f_score", "F-score"),
        ("ndcg", "NDCG"))

# The orderings the paper states (§4.5), each "a > b".
CLAIMS = (("THACIL > ATRank", "THACIL", "ATRank"),
          ("ATRank > LSTM+Attention", "ATRank", "LSTM+Attention"),
          ("LSTM+Attention > LSTM", "LSTM+Attention", "LSTM"),
          ("LSTM > BPR", "LSTM", "BPR"),
          ("THACIL > NCF (the paper's t-test)", "THACIL", "NCF"))


def _table2(rows: Sequence[Row], results, ci: tables.Intervals, oracle: Mapping[str, float],
            paper_column: bool) -> str:
  base = [r for r in rows if r.name != "THACIL"]
  best = {m: max(base, key=lambda r: np.mean(values(results[r.name], m))).name for m in METRICS}
  header = ["Method"]
  for m in METRICS:
    header += [f"{_LABEL[m]} (mean ± std)", f"{_LABEL[m]} 95% CI", f"p ({_LABEL[m]} > {best[m]})"]
  if paper_column:
    header.append("paper AUC (MicroVideo-1.7M)")
  body = []
  for row in rows:
    res = results[row.name]
    line = [row.name]
    for m in METRICS:
      line += [report.fmt_mean_std(values(res, m)), ci.text(row.name, m),
               "(best baseline)" if row.name == best[m] else
               tables.welch_p(values(res, m), values(results[best[m]], m))]
    if paper_column:
      line.append(f"{PAPER_TABLE2[row.name]:.3f}")
    body.append(line)
  if all(np.isfinite(oracle.get(m, np.nan)) for m in METRICS):
    line = ["oracle (planted P(click))"]
    for m in METRICS:
      line += [f"{oracle[m]:.4f}", "", ""]
    body.append(line + ([""] if paper_column else []))
  return report.markdown_table(header, body)


def _fig4(rows: Sequence[Row], results, ci: tables.Intervals, ks: Sequence[int],
          fig_dir: str, fig_base: str) -> List[str]:
  lines = ["## Fig. 4: top-K precision, recall, F-score and NDCG", "",
           "Each user's impressions of the evaluated split ranked by the model's score; "
           "precision@K = clicks in the top K / K (as the public code: a user with fewer than K "
           "impressions cannot reach 1), recall@K = clicks in the top K / the user's clicks, "
           "F-score their harmonic mean, NDCG@K against min(K, clicks) clicks in front; plain "
           "mean over users with a click, mean ± std over seeds.", ""]
  oracle = next(iter(results.values()))[0].get("oracle", {})
  for metric, label in FIG4:
    keys = [f"topk_{metric}@{k}" for k in ks]
    series = {}
    for row in rows:
      ms = [stats.mean_std(values(results[row.name], key)) for key in keys]
      series[row.name] = ([a for a, _ in ms], [b for _, b in ms])
    hl = [oracle.get(key, np.nan) for key in keys]
    path = figures.line_plot(os.path.join(fig_dir, f"{fig_base}_fig4_{metric}.png"),
                             [str(k) for k in ks], series, "K", label, f"Fig. 4: {label}@K")
    lines.append(f"![Fig. 4 {label}]({os.path.basename(path)})")
    table = [[row.name] + [report.fmt_mean_std(values(results[row.name], key)) for key in keys]
             for row in rows]
    if all(np.isfinite(hl)):
      table.append(["oracle (planted P(click))"] + [f"{v:.4f}" for v in hl])
    lines += ["", f"**{label}@K**", "",
              report.markdown_table(["Method"] + [f"K={k}" for k in ks], table)]
  k_mid = ks[len(ks) // 2]
  lines += ["", f"95% CIs at K = {k_mid} (paired bootstrap over users):", "",
            report.markdown_table(
                ["Method"] + [f"{label}@{k_mid}" for _, label in FIG4],
                [[row.name] + [ci.text(row.name, f"topk_{m}@{k_mid}") for m, _ in FIG4]
                 for row in rows]), ""]
  return lines


def write_report(results, exp: Experiments, scale: Scale, dataset: str, dataset_text: str,
                 out_md: str, seconds: float, command: str, timings: Mapping[str, float],
                 extra_flags: Sequence[str] = (), max_eval_examples: int = 0,
                 arrays: Optional[tables.Arrays] = None) -> str:
  """Writes `out_md` and the Fig. 4 PNGs beside it; returns the path (arguments as
  `semi.write_report`)."""
  stem = os.path.splitext(out_md)[0]
  fig_dir, fig_base = os.path.dirname(out_md), os.path.basename(stem)
  rows = [r for r in exp.table2 if r.name in results]
  seeds = max(len(v) for v in results.values())
  first = next(iter(results.values()))[0]
  oracle = {m: float(first["oracle"].get(m, np.nan)) for m in METRICS}
  ci = tables.Intervals(results, arrays)
  ks = topk_ks(scale, dataset)
  valid = first.get("valid_split") or "valid"
  grid = list(first.get("lr_grid") or {})
  lines = tables.report_opening(
      f"THACIL reproduction on {dataset}", command, seconds, results, fig_base, dataset_text,
      f"`{scale.name}`: {scale.text(dataset)}", extra_flags, seeds) + [
           f"- **Model selection, on `{valid}` only:** each epoch validates on `{valid}`; "
           "training stops early on validation AUC and the best epoch is evaluated; the "
           "learning rate is chosen per row from "
           + (f"{{{', '.join(grid)}}}" if grid else "the flagfile (no grid)")
           + " by seed 0's best validation AUC (table below).",
           f"- **Protocol (§4.4):** the item cold-start split `{EVAL_SPLIT}` (impressions of "
           "items never seen in training; the models embed items from their "
           + ("title words" if dataset == "movielens" else "visual feature")
           + " and category only, no id). GAUC = eq. 11's per-user AUC over users with both classes, "
           "weighted by the user's impressions (the public code's weighting); AUC over all "
           "impressions"
           + (f"; all impressions of users sampled with eval seed {first.get('eval_seed', 0)}, "
              f"at most {max_eval_examples:,}" if max_eval_examples else "") + ".",
           f"- **95% CI:** percentile bootstrap over users ({bootstrap.N_RESAMPLES} resamples), "
           "the same resampled users for every row (paired); it covers which users are in the "
           "test split, with the trained models fixed.",
           "- **p-values:** one-sided Welch t-test over seeds (`*` p < 0.05, `**` p < 0.01).", ""]
  lines += ["## Table 2: GAUC and AUC on the item cold-start split", "",
            _table2(rows, results, ci, oracle, paper_column=True), ""]
  if dataset == "microvideo":
    lines += ["Reference on MicroVideo-1.7M (BARS benchmark, MicroVideo1.7M_x1, gAUC): "
              + ", ".join(f"{n} {v:.4f}" for n, v in BARS_ANCHORS) + ".", ""]
  else:
    lines += ["The paper's column is its MicroVideo-1.7M result, for the ordering only: the "
              "absolute numbers of "
              + ("a synthetic world" if dataset == "synthetic" else "another dataset")
              + " are not comparable. Users with the data "
              "reproduce it with `--dataset=microvideo`; the BARS benchmark's MicroVideo1.7M_x1 "
              "gAUC is the anchor there: " + ", ".join(f"{n} {v:.4f}" for n, v in BARS_ANCHORS)
              + ".", ""]
  if all(f"topk_precision@{ks[0]}" in results[r.name][0]["metrics"] for r in rows):
    lines += _fig4(rows, results, ci, ks, fig_dir, fig_base)
  lines += tables.claims_section(tables.claim_rows(CLAIMS, results, ci, METRICS, _LABEL))
  lines += tables.closing_sections(rows, results, timings, stem)
  return report.atomic_write_text(out_md, "\n".join(lines) + "\n")
