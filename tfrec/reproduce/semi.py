"""SEMI + CCL (Lei et al., KDD 2021): the rows of Tables 1-2 and Figures 3-5 that tfrec has, and
the results file `docs/results/semi_<dataset>.md`.

  Table 1  single- and cross-domain baselines vs SEMI w. CCL (AUC, HR@3 vs 300 unseen videos)
  Table 2  SEMI / SEMI-Micro-Video / SEMI-Product, each w/o and w. CCL
  Fig. 3   SEMI w. CCL against the dictionary size K (K = 0: SEMI w/o CCL)
  Fig. 4   SEMI w. CCL against MLEN, the pre-training set's minimum target length (0: w/o)
  Fig. 5   SEMI w. vs w/o CCL per user-activity group (target history length)

Scales: "paper" runs the rows' own flagfiles (the paper's sizes, A.1) on the synthetic "large"
preset; "cpu" adds `configs/reproduce/semi_cpu*.flags` (d = 32, fewer epochs, K scaled to the
pre-training set) on the "semi" preset with 50,000 CCL-only users, whose week-scope pairs are
the pre-training set (issue 15 item 3; `pretrain_from`). Both validate on `valid` with early stopping, and the
harness picks each row's learning rate on `valid` (`tfrec.reproduce.harness`).

Inputs (issue 15 item 2): every SEMI row and its CCL pre-training read the paper's inputs,
frozen pre-extracted item vectors of the rows' width from one extractor per domain (`prepare`
writes them once per dataset, `tfrec.datasets.pre_extract`), with dropout only after the final
MLP (`configs/semi/paper_inputs.flags`); CCL then transfers the sequence encoders and time
blocks alone. The baselines read the same vectors (A.2: "the same multi-modal embeddings with
our method as inputs"), except THACIL, whose items are its own model ([visual; category]). The
earlier learnt-item setup (id + category + visual projection, CCL's
item encoder transferred too) stays as diagnostic rows.

The results file: per row mean ± std over seeds and a 95% CI from a paired bootstrap over users
(`tfrec.reproduce.bootstrap`); one-sided Welch p-values over seeds (`tfrec.reproduce.stats`);
the learning-rate grid with each rate's validation AUC, the rate chosen, and the early-stopped
epoch of every seed; and the paper's orderings, each "holds" (p < 0.05), "same direction, not
significant" or "does not hold", with the paired bootstrap CI of the difference.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from tfrec.reproduce import bootstrap
from tfrec.reproduce import figures
from tfrec.reproduce import report
from tfrec.reproduce import stats
from tfrec.reproduce import harness
from tfrec.reproduce import tables
from tfrec.reproduce.harness import Pretrain, Row, values

PAPER = "semi"
PARTS = ("table1", "table2", "fig3", "fig4", "fig5", "diag")
DATASETS = ("synthetic", "movielens")
BASELINES = "configs/baselines"
SEMI_FLAGS = "configs/semi/semi.flags"
CCL_FLAGS = "configs/semi/ccl_pretrain.flags"
BERT4_PRETRAIN_FLAGS = "configs/semi/bert4sessrec_pretrain.flags"
# The paper's inputs for every row (issue 15 item 2; A.2 gives the baselines the same): frozen
# pre-extracted item vectors per domain; for SEMI and CCL dropout only after the final MLP. The
# learnt-item setup of the earlier reproductions stays as diagnostic rows.
PAPER_INPUTS = ("--flagfile=configs/semi/paper_inputs.flags",)


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
  dim: int = 32  # the rows' d: the width of the pre-extracted item vectors
  world_overrides: Tuple[Tuple[str, Any], ...] = ()  # (field, value) on top of the preset
  world_name: str = ""                               # data/reproduce/syn-<world_name>
  # Where the synthetic world's pre-training pairs are selected from (§4.1): "ranking" (one
  # record per user of the ranking split) or "ccl_pair" (the generator's pairs, CCL-only users
  # included). Real data selects from its ranking records.
  pretrain_from: str = "ranking"


SCALES = {
    "cpu": Scale(
        "cpu", "semi", "configs/reproduce/semi_cpu.flags", "configs/reproduce/semi_cpu_ccl.flags",
        default_k=512, dict_sizes=(128, 256, 512, 1024, 2048), default_mlen=10,
        mlens=(1, 5, 10, 20), world_overrides=(("ccl_only_users", 50_000),),
        world_name="semi-ccl50k", pretrain_from="ccl_pair",
        description="scaled-down CPU variant: the `semi` preset (1,000 users) with 50,000 "
        "CCL-only users whose week-scope pairs (SEMI §4.1: 7-day sequences) are the "
        "pre-training set; d = 32, 4 heads, feed-forward 32, MLP 32 -> 1, batch 256, at most 8 "
        "epochs with early stopping on `valid`; CCL batch 256, 5 epochs, K = 512, momentum "
        "fitted to the run (`configs/reproduce/semi_cpu.flags`, `semi_cpu_ccl.flags` after "
        "each row's own flagfile)"),
    "paper": Scale(
        "paper", "large", "configs/reproduce/semi_paper.flags", "",
        default_k=40960, dict_sizes=(10240, 20480, 40960, 51200, 61440), default_mlen=10,
        mlens=(1, 5, 10, 15, 20), dim=128, world_name="large",
        description="the paper's sizes (A.1): d = 128, 8 heads, feed-forward 128, MLP 128 -> 1, "
        "batch 1024, dropout 0.1; CCL K = 40 x 1024, m = 0.999, tau = 0.7, Adam 1e-3 (each "
        "row's own flagfile; `configs/reproduce/semi_paper.flags`: at most 10 epochs with "
        "early stopping on `valid`)"),
}


world_config = tables.world_config


def harness_settings(scale: Scale, dataset: str) -> Dict[str, Any]:
  """What `harness.Settings` takes from this paper (its defaults: `test`, protocol semi)."""
  del scale, dataset
  return {}


def prepare(data_dir: str, scale: Scale) -> None:
  """Writes the pre-extracted item vectors of the scale's width into the dataset once
  (`tfrec.datasets.pre_extract`: the frozen inputs of the SEMI and CCL rows). The item store's
  manifest changes with it, and it is part of every cached run's key: runs of another paper on
  the same directory (ADAPT's on `data/ml1m`) train again; a separate `--data_dir` keeps
  them."""
  from tfrec.data.item_store import ItemStore
  from tfrec.datasets import pre_extract
  store = ItemStore.load(data_dir)
  if store.pre_extracted_dim != scale.dim:
    pre_extract.pre_extract(store, scale.dim)
    store.save(data_dir)


def ensure_pretrain_split(mlen: int, from_kind: str = "ranking"):
  """`prepare` hook: selects the §4.1 pre-training pairs with this MLEN once per dataset, from
  the ranking records or the generator's pairs (`from_kind`)."""

  def prepare(data_dir: str) -> None:
    from tfrec.datasets import ccl_select
    from tfrec.data import tfrecord_io
    split = ccl_select.default_out_split(mlen)
    if not os.path.exists(tfrecord_io.manifest_path(data_dir, "ccl_pair", split)):
      ccl_select.select_split(data_dir, split, mlen, from_kind=from_kind)

  return prepare


def ccl(k: int, mlen: int, normalize: bool = False, learnt_items: bool = False,
        from_kind: str = "ranking") -> Pretrain:
  """CCL pre-training on the paper's inputs (`learnt_items`: the earlier id-embedding inputs),
  its pairs selected from `from_kind` records."""
  return Pretrain(f"CCL K={k} MLEN={mlen}" + (" normalised" if normalize else "")
                  + (" learnt items" if learnt_items else ""), CCL_FLAGS,
                  (f"--model_args=queue_size={k}", f"--train_split=pretrain_mlen{mlen}")
                  + (("--model_args=normalize=true",) if normalize else ())
                  + (() if learnt_items else PAPER_INPUTS),
                  prepare=ensure_pretrain_split(mlen, from_kind))


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


def experiments(scale: Scale, dataset: str = "synthetic") -> Experiments:
  """Every row at `scale` on `dataset` (the synthetic world selects its pre-training pairs as
  `scale.pretrain_from` says; real data from its ranking records)."""
  from_kind = scale.pretrain_from if dataset == "synthetic" else "ranking"

  def pretraining(k: int, mlen: int, **kwargs: Any) -> Pretrain:
    return ccl(k, mlen, from_kind=from_kind, **kwargs)

  default = pretraining(scale.default_k, scale.default_mlen)
  semi_wo = Row("SEMI w/o CCL", SEMI_FLAGS, PAPER_INPUTS)
  semi_w = Row("SEMI w. CCL", SEMI_FLAGS, PAPER_INPUTS, pretrain=default)
  mv, prod = "configs/semi/semi_micro_video.flags", "configs/semi/semi_product.flags"
  # BERT4SessRec's masked-item pre-training: at the cpu scale over the pre-training overlay
  # (d = 32 as the rows) but 3 epochs of batch 256, not CCL's 30 of 64 (it reads every ranking
  # record's history, not the selected pairs).
  bert4 = Pretrain("BERT4SessRec pre-training", BERT4_PRETRAIN_FLAGS,
                   (("--epochs=3", "--batch_size=256", "--early_stopping_patience=1")
                    if scale.name == "cpu" else ()) + PAPER_INPUTS)
  # A.2: the baselines take "the same multi-modal embeddings with our method as inputs".
  table1 = (("Single-Domain", Row("DIN", f"{BASELINES}/din.flags", PAPER_INPUTS)),
            ("Single-Domain", Row("DIEN", f"{BASELINES}/dien.flags", PAPER_INPUTS)),
            ("Single-Domain", Row("BST", f"{BASELINES}/bst.flags", PAPER_INPUTS)),
            ("Single-Domain", Row("YouTubeNet", f"{BASELINES}/youtubenet.flags", PAPER_INPUTS)),
            ("Single-Domain", Row("BERT4SessRec", "configs/semi/bert4sessrec.flags",
                                  PAPER_INPUTS, pretrain=bert4)),
            # THACIL's items are its own model (§3.1: x = [f; c], a content feature and the
            # category, no id): it keeps them.
            ("Single-Domain", Row("THACIL", f"{BASELINES}/thacil.flags")),
            ("Cross-Domain", Row("CoNet", "configs/semi/conet.flags", PAPER_INPUTS)),
            ("Cross-Domain", Row("π-Net", "configs/semi/pinet.flags", PAPER_INPUTS)),
            ("Cross-Domain", Row("MiNet", "configs/semi/minet.flags", PAPER_INPUTS)),
            ("Cross-Domain", Row("Cross-BST", f"{BASELINES}/cross_bst.flags", PAPER_INPUTS)),
            ("Cross-Domain", semi_w))
  prod_wo = Row("SEMI-Product w/o CCL", prod, PAPER_INPUTS)
  table2 = (("w/o CCL", prod_wo),
            ("w/o CCL", Row("SEMI-Micro-Video w/o CCL", mv, PAPER_INPUTS)),
            ("w/o CCL", semi_wo),
            ("w. CCL", Row("SEMI-Product w. CCL", prod, PAPER_INPUTS, pretrain=default)),
            ("w. CCL", Row("SEMI-Micro-Video w. CCL", mv, PAPER_INPUTS, pretrain=default)),
            ("w. CCL", semi_w))
  fig3 = ((0, semi_wo),) + tuple(
      (k, semi_w if k == scale.default_k else
       Row(f"SEMI w. CCL (K={k})", SEMI_FLAGS, PAPER_INPUTS,
           pretrain=pretraining(k, scale.default_mlen)))
      for k in scale.dict_sizes)
  fig4 = ((0, semi_wo),) + tuple(
      (m, semi_w if m == scale.default_mlen else
       Row(f"SEMI w. CCL (MLEN={m})", SEMI_FLAGS, PAPER_INPUTS,
           pretrain=pretraining(scale.default_k, m)))
      for m in scale.mlens)
  normalised = pretraining(scale.default_k, scale.default_mlen, normalize=True)
  learnt = pretraining(scale.default_k, scale.default_mlen, learnt_items=True)
  diag = (("reference", semi_wo), ("reference", semi_w),
          ("CCL with L2-normalised q and k (MoCo), not eq. 5-6's raw dot products",
           Row("SEMI w. CCL (normalised q, k)", SEMI_FLAGS, PAPER_INPUTS, pretrain=normalised)),
          ("reference", prod_wo),
          ("the same for SEMI-Product",
           Row("SEMI-Product w. CCL (normalised q, k)", prod, PAPER_INPUTS,
               pretrain=normalised)),
          ("learnt item inputs (id + category + visual projection; the earlier setup)",
           Row("SEMI w/o CCL (learnt items)", SEMI_FLAGS)),
          ("the same, w. CCL (its item encoder transferred too)",
           Row("SEMI w. CCL (learnt items)", SEMI_FLAGS, pretrain=learnt)),
          ("the same, CCL's attention blocks only: item encoder and time blocks start fresh",
           Row("SEMI w. CCL (learnt items, attention blocks only)", SEMI_FLAGS,
               ("--init_layers=target_encoder,source_encoder",), pretrain=learnt)))
  return Experiments(table1, table2, fig3, fig4, diag)


# ------------------------------------------------------------------ the results file

METRICS = ("auc", "hr@3")
_LABEL = {"auc": "AUC", "hr@3": "HR@3"}
Results = Mapping[str, List[Dict[str, Any]]]
Arrays = Mapping[str, List[Mapping[str, np.ndarray]]]


def _ms(results, metric) -> Tuple[float, float]:
  return stats.mean_std(values(results, metric))


def _table(rows: Sequence[Tuple[str, Row]], results: Results, ci: tables.Intervals,
           best: Optional[Dict[str, str]]) -> str:
  header = ["Group", "Method"]
  for m in METRICS:
    header += [f"{_LABEL[m]} (mean ± std)", f"{_LABEL[m]} 95% CI"]
  if best:
    header += [f"p ({_LABEL[m]} > {best[m]})" for m in METRICS]
  body = []
  for group, row in rows:
    res = results[row.name]
    line = [group, row.name]
    for m in METRICS:
      line += [report.fmt_mean_std(values(res, m)), ci.text(row.name, m)]
    if best:
      line += ["(baseline)" if row.name == best[m] else
               tables.welch_p(values(res, m), values(results[best[m]], m)) for m in METRICS]
    body.append(line)
  return report.markdown_table(header, body)


def _oracle(results: Results) -> Dict[str, float]:
  any_run = next(iter(results.values()))[0]
  return {m: float(any_run["oracle"].get(m, float("nan"))) for m in METRICS}


def write_report(results: Results, exp: Experiments, scale: Scale, dataset: str,
                 dataset_text: str, out_md: str, seconds: float, command: str,
                 timings: Mapping[str, float], extra_flags: Sequence[str] = (),
                 max_eval_examples: int = 0, arrays: Optional[Arrays] = None) -> str:
  """Writes `out_md` and its figures (`<stem>_fig*.png` beside it); returns the path.

  `results`: row name -> one `Runner.run` summary per seed. `arrays`: row name -> per-seed
  evaluation arrays (`harness.save_arrays`), for the bootstrap CIs and Fig. 5 (rows without
  arrays get "n/a" CIs).
  """
  stem = os.path.splitext(out_md)[0]
  fig_dir, fig_base = os.path.dirname(out_md), os.path.basename(stem)
  seeds = max(len(v) for v in results.values())
  first = next(iter(results.values()))[0]
  oracle = _oracle(results)
  ci = tables.Intervals(results, arrays)
  has = lambda rows: all(r.name in results for _, r in rows)  # noqa: E731
  valid = first.get("valid_split") or "valid"
  grid = list(first.get("lr_grid") or {})
  patience = first.get("patience")
  lines = [f"# SEMI + CCL reproduction on {dataset}", "",
           f"Generated by `{command}` on {datetime.date.today().isoformat()} "
           f"({seconds / 60:.0f} min on this machine). Do not edit: re-run the command; the "
           f"analysis below comes from `{fig_base}.notes.md`.", "",
           f"- **Dataset:** {dataset_text}",
           f"- **Scale:** `{scale.name}`: {scale.description}"
           + (f"; every ranking row also gets `{' '.join(extra_flags)}`" if extra_flags
              else "") + ".",
           f"- **Seeds:** {seeds} per row (training seeds 0-{seeds - 1}); cells are the mean ± "
           "sample std over seeds.",
           f"- **Model selection (SEMI A.2, every method at its best setting), on `{valid}` "
           f"only:** each epoch validates on `{valid}`; "
           + (f"training stops after {patience} epochs without a gain in validation AUC and "
              if patience else "every run trains all its epochs and ")
           + "the epoch with the best validation AUC is evaluated; the learning rate is chosen "
           "per row from "
           + (f"{{{', '.join(grid)}}}" if grid else "the flagfile (no grid)")
           + " by seed 0's best validation AUC (table below). CCL pre-training keeps its "
           "flagfile's learning rate (its only monitor is its own training loss).",
           "- **Protocol (§4.2.2):** AUC over the test impressions; HR@3 of each positive "
           "against 300 random target-domain items the user has not watched "
           f"(`python -m tfrec.evaluate --protocol=semi`), eval seed {first.get('eval_seed', 0)}"
           " for every run: every row and seed is evaluated on the same examples against the "
           "same negatives"
           + (f"; all examples of users sampled with that seed, at most {max_eval_examples:,}"
              if max_eval_examples else "") + ".",
           f"- **95% CI:** percentile bootstrap over users ({bootstrap.N_RESAMPLES} resamples, "
           "`scipy.stats.bootstrap`): users are resampled with replacement, the metric is "
           "recomputed on their examples and averaged over seeds; the same resampled users for "
           "every row, so a difference's CI is paired. It covers which users are in the test "
           "split, with the trained models fixed.",
           "- **p-values:** one-sided Welch t-test over seeds (`scipy.stats.ttest_ind`, "
           "`equal_var=False`; `*` p < 0.05, `**` p < 0.01). A claim of the paper **holds** "
           "only when p < 0.05; otherwise it is **same direction, not significant** (the mean "
           "difference has the paper's sign) or **does not hold**.", ""]
  if np.isfinite(oracle["auc"]):
    lines += [f"- **Oracle ceiling** (the generator's planted P(click)): AUC "
              f"{oracle['auc']:.4f}, HR@3 {oracle['hr@3']:.4f}.", ""]
  else:
    lines += ["- **Oracle ceiling:** none (real data).", ""]
  if has(exp.table1):
    base_rows = [r for g, r in exp.table1 if not r.name.startswith("SEMI")]
    best = {m: max(base_rows, key=lambda r: np.mean(values(results[r.name], m))).name
            for m in METRICS}
    lines += ["## Table 1: overall comparison", "", _table(exp.table1, results, ci, best), ""]
  if has(exp.table2):
    lines += ["## Table 2: ablations", "", _table(exp.table2, results, ci, None), ""]
  for key, rows, xlabel, title in (
      ("fig3", exp.fig3, "dictionary size K (0 = SEMI w/o CCL)", "Fig. 3: dictionary size"),
      ("fig4", exp.fig4, "MLEN (0 = SEMI w/o CCL)", "Fig. 4: pre-training set's MLEN")):
    if not has(rows):
      continue
    xs = [x for x, _ in rows]
    lines += [f"## {title}", ""]
    table = []
    for m in METRICS:
      ms = [_ms(results[r.name], m) for _, r in rows]
      path = figures.line_plot(
          os.path.join(fig_dir, f"{fig_base}_{key}_{slug(m)}.png"), [str(x) for x in xs],
          {"SEMI w. CCL": ([a for a, _ in ms], [b for _, b in ms])}, xlabel, _LABEL[m],
          f"{title} ({_LABEL[m]})", hlines={"SEMI w/o CCL": ms[0][0]})
      lines.append(f"![{title} {_LABEL[m]}]({os.path.basename(path)})")
      table.append([_LABEL[m]] + [report.fmt_mean_std(values(results[r.name], m))
                                  for _, r in rows])
      table.append([f"{_LABEL[m]} 95% CI"] + [ci.text(r.name, m) for _, r in rows])
    lines += ["", report.markdown_table([xlabel.split(" (")[0]] + [str(x) for x in xs], table),
              ""]
  if exp.diag and has(exp.diag):
    header = ["what it tests", "Method"]
    for m in METRICS:
      header += [f"{_LABEL[m]} (mean ± std)", f"{_LABEL[m]} 95% CI"]
    lines += ["## Diagnostics (not in the paper)", "",
              "Rows that test an explanation of the results above, same seeds and protocol.", "",
              report.markdown_table(header, [
                  [why, r.name] + [c for m in METRICS
                                   for c in (report.fmt_mean_std(values(results[r.name], m)),
                                             ci.text(r.name, m))]
                  for why, r in exp.diag]), ""]
  groups = fig5_groups(arrays, results) if arrays else None
  if groups:
    names = list(groups["SEMI w/o CCL"][0])
    lines += ["## Fig. 5: CCL gain per user-activity group", "",
              "Groups: the example's target-domain (micro-video) history length in absolute "
              f"bins ({', '.join(names)} events; the paper names users with one or less "
              "micro-video action as its least active group, its figure's other bins are not "
              "in its text); each group's examples are counted in the table below."]
    table = []
    for m in METRICS:
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
  lines += _claims(results, ci, groups)
  selected = [r for r in exp.rows(["table1", "table2", "fig3", "fig4", "diag"])
              if r.name in results]
  lines += tables.closing_sections(selected, results, timings, stem)
  return report.atomic_write_text(out_md, "\n".join(lines) + "\n")


def slug(metric: str) -> str:
  return metric.replace("@", "")


def _finite_mean_std(v: Sequence[float]) -> Tuple[float, float]:
  """Mean and sample std of the finite values (NaN: a group without both classes)."""
  x = [float(a) for a in v if np.isfinite(a)]
  if not x:
    return float("nan"), float("nan")
  return stats.mean_std(x)


# Fig. 5's bins of the target-domain history length (inclusive upper bounds; the last bin runs
# to the longest history): the paper's least active group is "one or less" micro-video action.
ACTIVITY_EDGES = (1, 5, 10, 20)


def absolute_edges(lengths: np.ndarray) -> List[int]:
  """`ACTIVITY_EDGES` below the longest history, then the longest (inclusive upper bounds)."""
  top = int(np.max(lengths))
  return [e for e in ACTIVITY_EDGES if e < top] + [top]


def fig5_groups(arrays: Arrays, results: Results
                ) -> Optional[Dict[str, List[Dict[str, Dict[str, float]]]]]:
  """Per seed, each group's metrics for SEMI w/o and w. CCL, in the absolute bins of
  `ACTIVITY_EDGES` (every run evaluates the same examples)."""
  if not all(arrays.get(n) for n in ("SEMI w/o CCL", "SEMI w. CCL")):
    return None
  edges = absolute_edges(arrays["SEMI w/o CCL"][0]["target_len"])
  k = int(results["SEMI w/o CCL"][0]["k"])
  return {n: [harness.activity_groups(a, k, edges) for a in arrays[n]]
          for n in ("SEMI w/o CCL", "SEMI w. CCL")}


CLAIMS = (("SEMI w. CCL > SEMI w/o CCL", "SEMI w. CCL", "SEMI w/o CCL"),
          ("SEMI w/o CCL > Cross-BST", "SEMI w/o CCL", "Cross-BST"),
          ("Cross-BST > BST (target only)", "Cross-BST", "BST"),
          ("SEMI-Micro-Video > SEMI-Product (w/o CCL)", "SEMI-Micro-Video w/o CCL",
           "SEMI-Product w/o CCL"),
          ("SEMI-Product w. CCL > SEMI-Product w/o CCL", "SEMI-Product w. CCL",
           "SEMI-Product w/o CCL"))


def _claims(results: Results, ci: tables.Intervals,
            groups: Optional[Mapping[str, List[Dict[str, Dict[str, float]]]]] = None
            ) -> List[str]:
  """The orderings the paper states, each with its numbers, the paired bootstrap CI of the
  difference, the one-sided Welch p over seeds and the verdict (`stats.verdict`)."""
  rows = tables.claim_rows(CLAIMS, results, ci, METRICS, _LABEL)
  if groups:
    names = list(groups["SEMI w/o CCL"][0])
    gains = {n: [w[n]["auc"] - wo[n]["auc"] for w, wo in zip(groups["SEMI w. CCL"],
                                                             groups["SEMI w/o CCL"])]
             for n in names}
    least = names[0]
    finite = {n: [g for g in v if np.isfinite(g)] for n, v in gains.items()}
    if finite[least] and all(finite[n] for n in names[1:]):
      # Holds only when the least active group's gain exceeds every other group's,
      # significantly; the weakest of those comparisons decides.
      checks = [stats.verdict(finite[least], finite[n]) for n in names[1:]]
      order = (stats.DOES_NOT_HOLD, stats.NOT_SIGNIFICANT, stats.HOLDS)
      words = min((w for w, _ in checks), key=order.index)
      p = max(p for _, p in checks) if all(np.isfinite(p) for _, p in checks) else np.nan
      rows.append([f"largest CCL AUC gain in the least active group ({least} target events; "
                   "p: the largest of its tests against each other group)",
                   ", ".join(f"{n}: {np.mean(v):+.4f}" for n, v in finite.items()),
                   "", tables.p_text(p), words])
  return tables.claims_section(rows)
