"""SEMI + CCL (Lei et al., KDD 2021): the rows of Tables 1-2 and Figures 3-5 that tfrec has, and
the results file `docs/results/semi_<dataset>.md`.

  Table 1  single- and cross-domain baselines vs SEMI w. CCL (AUC, HR@3 vs 300 unseen videos)
  Table 2  SEMI / SEMI-Micro-Video / SEMI-Product, each w/o and w. CCL
  Fig. 3   SEMI w. CCL against the dictionary size K (K = 0: SEMI w/o CCL)
  Fig. 4   SEMI w. CCL against MLEN, the pre-training set's minimum target length (0: w/o)
  Fig. 5   SEMI w. vs w/o CCL per user-activity group (target history length)

Scales: "paper" runs the rows' own flagfiles (the paper's sizes, A.1) on the synthetic "large"
preset; "cpu" adds `configs/reproduce/semi_cpu*.flags` (d = 32, fewer epochs, K scaled to the
pre-training set) on the "small" preset, and finishes on 2 CPU cores in under 2 hours.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from tfrec.reproduce import figures
from tfrec.reproduce import report
from tfrec.reproduce import stats
from tfrec.reproduce import harness
from tfrec.reproduce.harness import Pretrain, Row, values

PAPER = "semi"
BASELINES = "configs/baselines"
SEMI_FLAGS = "configs/semi/semi.flags"
CCL_FLAGS = "configs/semi/ccl_pretrain.flags"
NOT_YET = ("DIEN", "BERT4SessRec", "THACIL", "CoNet", "π-Net", "MiNet")


@dataclasses.dataclass(frozen=True)
class Scale:
  name: str
  synthetic_preset: str
  scale_flagfile: str
  pretrain_flagfile: str
  default_k: int
  dict_sizes: Tuple[int, ...]
  default_mlen: int
  mlens: Tuple[int, ...]
  description: str


SCALES = {
    "cpu": Scale(
        "cpu", "small", "configs/reproduce/semi_cpu.flags", "configs/reproduce/semi_cpu_ccl.flags",
        default_k=256, dict_sizes=(64, 128, 256, 512), default_mlen=10, mlens=(1, 5, 10, 20),
        description="scaled-down CPU variant: d = 32, 4 heads, feed-forward 32, MLP 32 -> 1, "
        "batch 256, 4 epochs; CCL batch 64, 30 epochs, K = 256 (`configs/reproduce/"
        "semi_cpu.flags`, `semi_cpu_ccl.flags` after each row's own flagfile)"),
    "paper": Scale(
        "paper", "large", "configs/reproduce/semi_paper.flags", "",
        default_k=40960, dict_sizes=(10240, 20480, 40960, 51200, 61440), default_mlen=10,
        mlens=(1, 5, 10, 15, 20),
        description="the paper's sizes (A.1): d = 128, 8 heads, feed-forward 128, MLP 128 -> 1, "
        "batch 1024, Adam 1e-3, dropout 0.1; CCL K = 40 x 1024, m = 0.999, tau = 0.7 (each "
        "row's own flagfile; `configs/reproduce/semi_paper.flags` fixes the protocol)"),
}


def ensure_pretrain_split(mlen: int):
  """`prepare` hook: selects the §4.1 pre-training pairs with this MLEN once per dataset."""

  def prepare(data_dir: str) -> None:
    from tfrec.datasets import ccl_select
    from tfrec.data import tfrecord_io
    split = ccl_select.default_out_split(mlen)
    if not os.path.exists(tfrecord_io.manifest_path(data_dir, "ccl_pair", split)):
      ccl_select.select_split(data_dir, split, mlen)

  return prepare


def ccl(k: int, mlen: int, normalize: bool = False) -> Pretrain:
  return Pretrain(f"CCL K={k} MLEN={mlen}" + (" normalised" if normalize else ""), CCL_FLAGS,
                  (f"--queue_size={k}", f"--train_split=pretrain_mlen{mlen}")
                  + (("--normalize",) if normalize else ()),
                  prepare=ensure_pretrain_split(mlen))


@dataclasses.dataclass(frozen=True)
class Experiments:
  """Every row of every table and figure at one scale (rows shared by name are one run)."""

  table1: Tuple[Tuple[str, Row], ...]      # (group, row)
  table2: Tuple[Tuple[str, Row], ...]
  fig3: Tuple[Tuple[int, Row], ...]        # (K, row); K = 0 is SEMI w/o CCL
  fig4: Tuple[Tuple[int, Row], ...]        # (MLEN, row); 0 is SEMI w/o CCL
  diag: Tuple[Tuple[str, Row], ...] = ()   # (what it tests, row): not in the paper

  def rows(self, parts: Sequence[str]) -> List[Row]:
    chosen = {"table1": self.table1, "table2": self.table2, "fig3": self.fig3,
              "fig4": self.fig4, "fig5": self.table2, "diag": self.diag}
    out: Dict[str, Row] = {}
    for part in parts:
      for _, row in chosen[part]:
        out.setdefault(row.name, row)
    return list(out.values())


def experiments(scale: Scale) -> Experiments:
  default = ccl(scale.default_k, scale.default_mlen)
  semi_wo = Row("SEMI w/o CCL", SEMI_FLAGS)
  semi_w = Row("SEMI w. CCL", SEMI_FLAGS, pretrain=default)
  mv, prod = "configs/semi/semi_micro_video.flags", "configs/semi/semi_product.flags"
  table1 = (("Single-Domain", Row("DIN", f"{BASELINES}/din.flags")),
            ("Single-Domain", Row("BST", f"{BASELINES}/bst.flags")),
            ("Single-Domain", Row("YouTubeNet", f"{BASELINES}/youtubenet.flags")),
            ("Cross-Domain", Row("Cross-BST", f"{BASELINES}/cross_bst.flags")),
            ("Cross-Domain", semi_w))
  table2 = (("w/o CCL", Row("SEMI-Product w/o CCL", prod)),
            ("w/o CCL", Row("SEMI-Micro-Video w/o CCL", mv)),
            ("w/o CCL", semi_wo),
            ("w. CCL", Row("SEMI-Product w. CCL", prod, pretrain=default)),
            ("w. CCL", Row("SEMI-Micro-Video w. CCL", mv, pretrain=default)),
            ("w. CCL", semi_w))
  fig3 = ((0, semi_wo),) + tuple(
      (k, semi_w if k == scale.default_k else
       Row(f"SEMI w. CCL (K={k})", SEMI_FLAGS, pretrain=ccl(k, scale.default_mlen)))
      for k in scale.dict_sizes)
  fig4 = ((0, semi_wo),) + tuple(
      (m, semi_w if m == scale.default_mlen else
       Row(f"SEMI w. CCL (MLEN={m})", SEMI_FLAGS, pretrain=ccl(scale.default_k, m)))
      for m in scale.mlens)
  normalised = ccl(scale.default_k, scale.default_mlen, normalize=True)
  diag = (("reference", semi_wo), ("reference", semi_w),
          ("CCL's attention blocks only: item encoder and time blocks start fresh",
           Row("SEMI w. CCL (attention blocks only)", SEMI_FLAGS,
               ("--init_layers=target_encoder,source_encoder",), pretrain=default)),
          ("CCL with L2-normalised q and k (MoCo), not eq. 5-6's raw dot products",
           Row("SEMI w. CCL (normalised q, k)", SEMI_FLAGS, pretrain=normalised)),
          ("reference", Row("SEMI-Product w/o CCL", prod)),
          ("the same for SEMI-Product",
           Row("SEMI-Product w. CCL (normalised q, k)", prod, pretrain=normalised)))
  return Experiments(table1, table2, fig3, fig4, diag)


# ------------------------------------------------------------------ the results file

_METRICS = ("auc", "hr@3")
_LABEL = {"auc": "AUC", "hr@3": "HR@3"}


def _ms(results, metric) -> Tuple[float, float]:
  return stats.mean_std(values(results, metric))


def _p(a, b) -> str:
  """One-sided Welch p for mean(a) > mean(b), with the paper's markers."""
  if len(a) < 2 or len(b) < 2:
    return "n/a (1 seed)"
  t = stats.welch_t_test(a, b)
  return f"{t.p_one_sided_greater:.3g}{report.significance_marker(t.p_one_sided_greater)}"


def _table(rows: Sequence[Tuple[str, Row]], results: Mapping[str, List[Dict[str, Any]]],
           best: Optional[Tuple[str, Dict[str, str]]]) -> str:
  header = ["Group", "Method"] + [_LABEL[m] for m in _METRICS]
  if best:
    header += [f"p ({_LABEL[m]} > {best[1][m]})" for m in _METRICS]
  body = []
  for group, row in rows:
    res = results[row.name]
    line = [group, row.name] + [report.fmt_mean_std(values(res, m)) for m in _METRICS]
    if best:
      line += ["(baseline)" if row.name == best[1][m] else
               _p(values(res, m), values(results[best[1][m]], m)) for m in _METRICS]
    body.append(line)
  return report.markdown_table(header, body)


def _oracle(results: Mapping[str, List[Dict[str, Any]]]) -> Dict[str, float]:
  any_run = next(iter(results.values()))[0]
  return {m: float(any_run["oracle"].get(m, float("nan"))) for m in _METRICS}


def _claim(text: str, a: List[float], b: List[float]) -> List[str]:
  """"holds" only when significant (one-sided Welch p < 0.05, `stats.verdict`)."""
  ma, mb = float(np.mean(a)), float(np.mean(b))
  words, p = stats.verdict(a, b)
  return [text, f"{ma:.4f} vs {mb:.4f} ({stats.relative_gain(ma, mb):+.2f}%, one-sided Welch "
                f"p = {p:.3g})", words]


def write_report(results: Mapping[str, List[Dict[str, Any]]], exp: Experiments, scale: Scale,
                 dataset: str, dataset_text: str, out_md: str, seconds: float,
                 command: str, timings: Mapping[str, float],
                 extra_flags: Sequence[str] = (), max_eval_examples: int = 0,
                 group_arrays: Optional[Mapping[str, List[Mapping[str, np.ndarray]]]] = None
                 ) -> str:
  """Writes `out_md` and its figures (`<stem>_fig*.png` beside it); returns the path.

  `group_arrays`: per-seed evaluation arrays (`harness.save_arrays`) of "SEMI w. CCL" and
  "SEMI w/o CCL", for Fig. 5.
  """
  stem = os.path.splitext(out_md)[0]
  fig_dir, fig_base = os.path.dirname(out_md), os.path.basename(stem)
  seeds = max(len(v) for v in results.values())
  oracle = _oracle(results)
  has = lambda rows: all(r.name in results for _, r in rows)  # noqa: E731
  lines = [f"# SEMI + CCL reproduction on {dataset}", "",
           f"Generated by `{command}` on {datetime.date.today().isoformat()} "
           f"({seconds / 60:.0f} min on this machine). Do not edit: re-run the command; the "
           f"analysis below comes from `{fig_base}.notes.md`.", "",
           f"- **Dataset:** {dataset_text}",
           f"- **Scale:** `{scale.name}`: {scale.description}"
           + (f"; every ranking row also gets `{' '.join(extra_flags)}`" if extra_flags
              else "") + ".",
           f"- **Seeds:** {seeds} per row (mean ± sample std); p-values: one-sided Welch t-test "
           "against the best baseline (`*` p < 0.05, `**` p < 0.01).",
           "- **Protocol (§4.2.2):** AUC over the test impressions; HR@3 of each positive "
           "against 300 random target-domain items the user has not watched "
           "(`python -m tfrec.evaluate --protocol=semi`). Rows train a fixed number of epochs "
           "without validation (nothing is chosen on the test split) and are evaluated at the "
           "epoch with the highest training AUC"
           + (f"; the first {max_eval_examples:,} test examples only" if max_eval_examples
              else "") + ".", ""]
  if np.isfinite(oracle["auc"]):
    lines += [f"- **Oracle ceiling** (the generator's planted P(click)): AUC "
              f"{oracle['auc']:.4f}, HR@3 {oracle['hr@3']:.4f}.", ""]
  else:
    lines += ["- **Oracle ceiling:** none (real data).", ""]
  if has(exp.table1):
    base_rows = [r for g, r in exp.table1 if not r.name.startswith("SEMI")]
    best = {m: max(base_rows, key=lambda r: np.mean(values(results[r.name], m))).name
            for m in _METRICS}
    lines += ["## Table 1: overall comparison", "",
              _table(exp.table1, results, ("best baseline", best)),
              f"Not in tfrec yet (later issues): {', '.join(NOT_YET)}.", ""]
  if has(exp.table2):
    lines += ["## Table 2: ablations", "", _table(exp.table2, results, None), ""]
  for key, rows, xlabel, title in (
      ("fig3", exp.fig3, "dictionary size K (0 = SEMI w/o CCL)", "Fig. 3: dictionary size"),
      ("fig4", exp.fig4, "MLEN (0 = SEMI w/o CCL)", "Fig. 4: pre-training set's MLEN")):
    if not has(rows):
      continue
    xs = [x for x, _ in rows]
    lines += [f"## {title}", ""]
    table = []
    for m in _METRICS:
      ms = [_ms(results[r.name], m) for _, r in rows]
      path = figures.line_plot(
          os.path.join(fig_dir, f"{fig_base}_{key}_{slug(m)}.png"), [str(x) for x in xs],
          {"SEMI w. CCL": ([a for a, _ in ms], [b for _, b in ms])}, xlabel, _LABEL[m],
          f"{title} ({_LABEL[m]})", hlines={"SEMI w/o CCL": ms[0][0]})
      lines.append(f"![{title} {_LABEL[m]}]({os.path.basename(path)})")
      table.append([_LABEL[m]] + [report.fmt_mean_std(values(results[r.name], m))
                                  for _, r in rows])
    lines += ["", report.markdown_table([xlabel.split(" (")[0]] + [str(x) for x in xs], table),
              ""]
  if exp.diag and has(exp.diag):
    lines += ["## Diagnostics (not in the paper)", "",
              "Rows that test an explanation of the results above, same seeds and protocol.", "",
              report.markdown_table(
                  ["what it tests", "Method"] + [_LABEL[m] for m in _METRICS],
                  [[why, r.name] + [report.fmt_mean_std(values(results[r.name], m))
                                    for m in _METRICS] for why, r in exp.diag]), ""]
  groups = fig5_groups(group_arrays, results) if group_arrays else None
  if groups:
    names = list(groups["SEMI w/o CCL"][0])
    lines += ["## Fig. 5: CCL gain per user-activity group", "",
              "Groups: quintiles of the example's target-domain (micro-video) history length "
              "on the evaluated split (the paper's absolute groups, e.g. <= 1 event, hold a "
              "handful of examples here: test histories are long)."]
    table = []
    for m in _METRICS:
      series = {}
      for label in ("SEMI w/o CCL", "SEMI w. CCL"):
        per = [[g[name][m] for g in groups[label]] for name in names]
        series[label] = ([_finite_mean_std(v)[0] for v in per],
                         [_finite_mean_std(v)[1] for v in per])
      shown = [v for mean, _ in series.values() for v in mean if np.isfinite(v)]
      span = (max(shown) - min(shown)) if shown else 0.0
      ylim = ((max(0.0, min(shown) - span - 0.02), max(shown) + span + 0.02) if shown
              else None)  # differences of a point or two vanish on bars drawn from 0
      path = figures.grouped_bars(
          os.path.join(fig_dir, f"{fig_base}_fig5_{slug(m)}.png"), names, series, _LABEL[m],
          f"Fig. 5: {_LABEL[m]} per target-history length", ylim=ylim)
      lines.append(f"![Fig. 5 {_LABEL[m]}]({os.path.basename(path)})")
      for i, name in enumerate(names):
        a, b = series["SEMI w. CCL"][0][i], series["SEMI w/o CCL"][0][i]
        n = groups["SEMI w. CCL"][0][name]["examples" if m == "auc" else "ranked"]
        table.append([_LABEL[m], name, str(n), f"{b:.4f}", f"{a:.4f}",
                      f"{stats.relative_gain(a, b):+.2f}%" if np.isfinite(a + b) and b else "n/a"])
    lines += ["", report.markdown_table(
        ["metric", "target history length", "examples", "w/o CCL", "w. CCL", "gain"], table), ""]
  lines += _claims(results, groups)
  if timings:
    lines += ["## Run times (this invocation)", "",
              report.markdown_table(["run", "seconds"],
                                    [[k, f"{v:.0f}"] for k, v in timings.items()]), ""]
  notes = stem + ".notes.md"
  if os.path.exists(notes):
    with open(notes) as f:
      lines += ["## Analysis", "", f.read().strip(), ""]
  return report.atomic_write_text(out_md, "\n".join(lines) + "\n")


def slug(metric: str) -> str:
  return metric.replace("@", "")


def _finite_mean_std(v: Sequence[float]) -> Tuple[float, float]:
  """Mean and sample std of the finite values (NaN: a group without both classes)."""
  x = [float(a) for a in v if np.isfinite(a)]
  if not x:
    return float("nan"), float("nan")
  return stats.mean_std(x)


def fig5_groups(group_arrays: Mapping[str, List[Mapping[str, np.ndarray]]],
                results: Mapping[str, List[Dict[str, Any]]]
                ) -> Optional[Dict[str, List[Dict[str, Dict[str, float]]]]]:
  """Per seed, each group's metrics for SEMI w/o and w. CCL, with one set of quintile edges
  (from the w/o CCL run of seed 0: every run evaluates the same examples)."""
  if not all(group_arrays.get(n) for n in ("SEMI w/o CCL", "SEMI w. CCL")):
    return None
  edges = harness.quantile_edges(group_arrays["SEMI w/o CCL"][0]["target_len"])
  k = int(results["SEMI w/o CCL"][0]["k"])
  return {n: [harness.activity_groups(a, k, edges) for a in group_arrays[n]]
          for n in ("SEMI w/o CCL", "SEMI w. CCL")}


def _claims(results: Mapping[str, List[Dict[str, Any]]],
            groups: Optional[Mapping[str, List[Dict[str, Dict[str, float]]]]] = None
            ) -> List[str]:
  """The orderings the issue asks to check, each with its measured numbers."""
  checks = [("SEMI w. CCL > SEMI w/o CCL", "SEMI w. CCL", "SEMI w/o CCL"),
            ("SEMI w/o CCL > Cross-BST", "SEMI w/o CCL", "Cross-BST"),
            ("Cross-BST > BST (target only)", "Cross-BST", "BST"),
            ("SEMI-Micro-Video > SEMI-Product (w/o CCL)", "SEMI-Micro-Video w/o CCL",
             "SEMI-Product w/o CCL"),
            ("SEMI-Product w. CCL > SEMI-Product w/o CCL", "SEMI-Product w. CCL",
             "SEMI-Product w/o CCL")]
  rows = []
  for text, a, b in checks:
    if a in results and b in results:
      for m in _METRICS:
        rows.append([f"{text} ({_LABEL[m]})"] + _claim("", values(results[a], m),
                                                     values(results[b], m))[1:])
  if groups:
    names = list(groups["SEMI w/o CCL"][0])
    gains = {n: _finite_mean_std([g[n]["auc"] for g in groups["SEMI w. CCL"]])[0]
             - _finite_mean_std([g[n]["auc"] for g in groups["SEMI w/o CCL"]])[0]
             for n in names}
    top = max(gains, key=gains.get)
    rows.append([f"largest CCL AUC gain in the least active group ({names[0]} target events)",
                 ", ".join(f"{n}: {v:+.4f}" for n, v in gains.items()),
                 "holds" if top == names[0] else f"does NOT hold (largest: {top})"])
  if not rows:
    return []
  return ["## The paper's orderings, as measured here", "",
          report.markdown_table(["claim", "measured (mean over seeds)", "verdict"], rows), ""]
