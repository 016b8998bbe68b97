"""ADAPT (Chen et al., TMM 2021): Tables IV, VI and VII, the DUAL regime map, and the results file
`docs/results/adapt_<dataset>.md`.

  Table IV   MF, NCF, YouTubeNet, THACIL, DIN, DIEN, BST (single-domain) and CMF, CoNet,
             Cross-BST, π-Net, ADAPT (cross-domain): AUC (eq. 12), HR@5, NDCG@5
  Table VI   ADEN with visual (V), title (T) or both features, on the storytelling history only,
             the product history only, and both; the cross-domain rows with and without DUAL
  Table VII  storytelling-to-product matching (§IV-G) in the feature space of ADEN without
             DUAL, of DUAL alone and of ADAPT: products of the `dual_pair` test split as queries,
             the storytelling items mounting them as the ground truth (`evaluation.dual_matching`)
  sweep      `--sweep=visual_relatedness=...` or `--sweep=title_target_shared_prob=...`:
             ADAPT - ADAPT w/o DUAL across the world's visual or title domain gap (DUAL's claim
             is about that gap; `tfrec.reproduce.sweep`)

Metrics: eq. 12's AUC is the plain mean over users of each user's AUC (users with both
classes), i.e. `gauc` with the "mean" reduction, reported as "AUC (eq. 12)" beside the global AUC.
HR@5 and NDCG@5: each positive against 300 random items the user never interacted with (the
`adapt` protocol; §IV-C gives k = 5 but not the negatives, SEMI's are used).

Every row is valid-tuned: each epoch validates on `valid`, early stopping on validation AUC, the
learning rate from `--lr_grid` by seed 0. ADAPT rows initialise their extractor from a DUAL run of
the same seed (`--init_from`, `--init_layers=extractor`), DUAL trained on `dual_pair/train` and
validated on `dual_pair/valid`; DUAL's parts follow the row's features (V rows: a visual-only
DUAL, T rows: a title-only one).

Datasets: synthetic (the `adapt` preset: two domains with a planted visual and title gap and
storytelling items mounting products); movielens (MovieLens-1M as two domains,
`python -m tfrec.datasets.movielens --out data/ml1m`; it has no visual feature, so only the
T rows run, each row embedding items from their titles).
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from tfrec.reproduce import bootstrap, report, stats, tables
from tfrec.reproduce.harness import Pretrain, Row, values

PAPER = "adapt"
CONFIGS = "configs/adapt"
PARTS = ("table4", "table6", "table7")
DATASETS = ("synthetic", "movielens")
DATA_DIRS = {"movielens": "data/ml1m"}
PROTOCOL = "adapt"
GAUC_REDUCTION = "mean"  # eq. 12
MATCHING_SPLIT = "test"

# The paper's Table IV on SRD-2 (its larger dataset): AUC, HR@5, NDCG@5, for the ordering only.
PAPER_TABLE4 = {
    "MF": (0.5756, 0.4395, 0.2719), "NCF": (0.5926, 0.4605, 0.2853),
    "YouTubeNet": (0.6216, 0.5022, 0.3131), "THACIL": (0.6256, 0.5063, 0.3165),
    "DIN": (0.6296, 0.5141, 0.3213), "DIEN": (0.6319, 0.5172, 0.3235),
    "BST": (0.6370, 0.5245, 0.3281), "CMF": (0.5801, 0.4436, 0.2747),
    "CoNet": (0.5895, 0.4570, 0.2831), "Cross-BST": (0.6605, 0.5580, 0.3519),
    "π-Net": (0.6665, 0.5696, 0.3597), "ADAPT": (0.6742, 0.5815, 0.3684)}
PAPER_TABLE7 = {"w/o DUAL": (0.9127, 0.2637, 0.2939), "w. DUAL": (0.9249, 0.3730, 0.3405)}
SINGLE_DOMAIN = ("MF", "NCF", "YouTubeNet", "THACIL", "DIN", "DIEN", "BST")
CROSS_DOMAIN = ("CMF", "CoNet", "Cross-BST", "π-Net", "ADAPT")
FEATURES = {"V": "[visual]", "T": "[title]", "V+T": "[visual,title]"}


Scale = tables.Scale


SCALES = {
    "cpu": Scale(
        "cpu", "adapt", (), "adapt", "configs/reproduce/adapt_cpu.flags",
        "configs/reproduce/adapt_cpu_dual.flags",
        description="the paper's model sizes (d = 64, histories of 20, batch 128, AdamW with "
        "weight decay 0.01, dropout 0.1) with at most 4 epochs and patience 1 "
        "(`configs/reproduce/adapt_cpu.flags`; DUAL: `adapt_cpu_dual.flags`); synthetic data: "
        "the `adapt` preset (1,000 users)"),
    "paper": Scale(
        "paper", "adapt", (), "adapt", "", "",
        description="each row's own flagfile in `configs/adapt/` (§IV-B: d = 64, histories of "
        "20, batch 128, AdamW 1e-4 with weight decay 0.01, dropout 0.1, at most 10 epochs)"),
}


world_config = tables.world_config


def harness_settings(scale: Scale, dataset: str) -> Dict[str, Any]:
  """What `harness.Settings` takes from this paper (the rows' features are in their flags:
  `experiments`)."""
  del scale, dataset
  return {"eval_split": "test", "protocol": PROTOCOL, "gauc_reduction": GAUC_REDUCTION}


def _features_flag(features: str, thacil: bool = False) -> str:
  if thacil:
    parts = "[visual,category]" if "V" in features else "[title,category]"
    return f"--model_args=item_features={parts}"
  return f"--model_args=item_features={FEATURES[features]}"


def dual(features: str) -> Pretrain:
  """DUAL pre-training of the extractor parts `features` names ("V", "T" or "V+T")."""
  name = "DUAL" if features == "V+T" else f"DUAL {features}"
  return Pretrain(name, f"{CONFIGS}/dual.flags", (_features_flag(features),))


@dataclasses.dataclass(frozen=True)
class Experiments:
  table4: Tuple[Row, ...]
  table6: Tuple[Tuple[str, Row], ...]  # (group, row)
  matching: Tuple[Tuple[str, str, Optional[Pretrain]], ...]  # (label, row name, DUAL run)

  def rows(self, parts: Sequence[str]) -> List[Row]:
    out: Dict[str, Row] = {}
    if "table4" in parts:
      out.update((r.name, r) for r in self.table4)
    if "table6" in parts or "table7" in parts:
      out.update((r.name, r) for _, r in self.table6
                 if "table6" in parts or r.name in {n for _, n, _ in self.matching})
    return list(out.values())


def experiments(scale: Scale, dataset: str = "synthetic") -> Experiments:
  """The rows of each table. On MovieLens (no visual feature) every row embeds items from their
  titles (THACIL from title + category), Table VI has only its T rows, and ADAPT (with and
  without DUAL) is the T variant."""
  del scale
  movielens = dataset == "movielens"
  if movielens:
    flags_of = {n: (_features_flag("T", thacil=n == "THACIL"),) for n in SINGLE_DOMAIN
                + CROSS_DOMAIN}
  else:
    flags_of = {}
  top = "T" if movielens else "V+T"
  adapt = Row("ADAPT", f"{CONFIGS}/adapt.flags", flags_of.get("ADAPT", ()), pretrain=dual(top))
  table4 = tuple(
      [Row(n, f"{CONFIGS}/{stem}.flags", flags_of.get(n, ()))
       for n, stem in (("MF", "mf"), ("NCF", "ncf"), ("YouTubeNet", "youtubenet"),
                       ("THACIL", "thacil"), ("DIN", "din"), ("DIEN", "dien"), ("BST", "bst"),
                       ("CMF", "cmf"), ("CoNet", "conet"), ("Cross-BST", "cross_bst"),
                       ("π-Net", "pinet"))] + [adapt])
  aden = f"{CONFIGS}/aden.flags"
  table6: List[Tuple[str, Row]] = []
  feature_sets = ("T",) if movielens else ("V", "T", "V+T")
  for group, domains in (("Storytelling-domain", "[target]"), ("Product-domain", "[source]")):
    for f in feature_sets:
      table6.append((group, Row(f"{group.split('-')[0]} {f}", aden, (
          _features_flag(f), f"--model_args=domains={domains}"))))
  for f in feature_sets:
    if f == top:  # ADAPT itself, and ADEN with its features: ADAPT w/o DUAL
      table6.append(("Cross-domain", Row("ADAPT w/o DUAL", aden, (_features_flag(f),))))
      table6.append(("Cross-domain", adapt))
      continue
    table6.append(("Cross-domain", Row(f"{f} w/o DUAL", aden, (_features_flag(f),))))
    table6.append(("Cross-domain", Row(f"{f} w. DUAL", f"{CONFIGS}/adapt.flags",
                                       (_features_flag(f),), pretrain=dual(f))))
  matching = (("w/o DUAL (ADEN's extractor)", "ADAPT w/o DUAL", None),
              ("DUAL alone (pre-trained extractor)", "ADAPT", adapt.pretrain),
              ("w. DUAL (ADAPT's extractor)", "ADAPT", None))
  return Experiments(table4, tuple(table6), matching)


# ------------------------------------------------------------------ Table VII

def matching_results(runner: Any, exp: Experiments, seeds: int,
                     split: str = MATCHING_SPLIT) -> Dict[str, List[Dict[str, Any]]]:
  """Table VII: label -> one `dual_matching.evaluate` result per seed, on the extractor of each
  `exp.matching` entry (a row's best checkpoint, or its DUAL run's)."""
  from tfrec import runs
  from tfrec.evaluation import dual_matching
  by_name = {r.name: r for r in exp.rows(PARTS)}
  out: Dict[str, List[Dict[str, Any]]] = {}
  for label, name, pretrain in exp.matching:
    out[label] = []
    for seed in range(seeds):
      runner.run(by_name[name], seed)  # cached: trains and evaluates only what is missing
      run_dir = (runner.pretrain_dir(pretrain, seed) if pretrain is not None
                 else runner.row_dir(by_name[name], seed))
      model, cfg, info, store = runs.restore_model(run_dir, "best")
      reader = runs.reader(cfg, split, training=False, info=info, kind="dual_pair")
      truth = dual_matching.pairs_of_split(reader)
      result = dual_matching.evaluate(dual_matching.extractor_of(model), store, truth)
      out[label].append({"seed": seed, "run_dir": run_dir, **result})
  return out


def extra_results(runner: Any, exp: Experiments, parts: Sequence[str],
                  seeds: int) -> Dict[str, Any]:
  """What `write_report` needs beyond the ranking rows (`tfrec.reproduce.__main__`)."""
  return {"table7": matching_results(runner, exp, seeds)} if "table7" in parts else {}


# ------------------------------------------------------------------ the results file

METRICS = ("gauc", "auc", "hr@5", "ndcg@5")
_LABEL = {"gauc": "AUC (eq. 12)", "auc": "global AUC", "hr@5": "HR@5", "ndcg@5": "NDCG@5"}
CLAIMS = (("ADAPT > π-Net", "ADAPT", "π-Net"),
          ("π-Net > Cross-BST", "π-Net", "Cross-BST"),
          ("Cross-BST > BST", "Cross-BST", "BST"),
          ("BST > DIN", "BST", "DIN"),
          ("DIN > YouTubeNet", "DIN", "YouTubeNet"),
          ("YouTubeNet > MF (sequence > CF)", "YouTubeNet", "MF"),
          ("CoNet > CMF", "CoNet", "CMF"),
          ("ADAPT > ADAPT w/o DUAL", "ADAPT", "ADAPT w/o DUAL"),
          ("V w. DUAL > V w/o DUAL", "V w. DUAL", "V w/o DUAL"),
          ("T w. DUAL > T w/o DUAL", "T w. DUAL", "T w/o DUAL"),
          ("Cross V+T > Storytelling V+T", "ADAPT w/o DUAL", "Storytelling V+T"),
          ("Storytelling V+T > Product V+T", "Storytelling V+T", "Product V+T"))


def _metric_table(rows: Sequence[Tuple[str, Row]], results, ci: tables.Intervals,
                  oracle: Mapping[str, float], paper: Optional[Mapping[str, Tuple]] = None
                  ) -> str:
  header = ["Group", "Method"] + [f"{_LABEL[m]} (mean ± std)" for m in METRICS] + [
      f"{_LABEL[m]} 95% CI" for m in ("gauc", "hr@5")]
  if paper:
    header.append("paper AUC / HR@5 / NDCG@5 (SRD-2)")
  body = []
  for group, row in rows:
    res = results[row.name]
    line = [group, row.name] + [report.fmt_mean_std(values(res, m)) for m in METRICS]
    line += [ci.text(row.name, m) for m in ("gauc", "hr@5")]
    if paper:
      p = paper.get(row.name)
      line.append(" / ".join(f"{x:.4f}" for x in p) if p else "")
    body.append(line)
  if all(np.isfinite(oracle.get(m, np.nan)) for m in METRICS):
    body.append(["", "oracle (planted P(click))"] + [f"{oracle[m]:.4f}" for m in METRICS]
                + ["", ""] + ([""] if paper else []))
  return report.markdown_table(header, body)


def _table7(matching: Mapping[str, List[Dict[str, Any]]]) -> List[str]:
  if not matching:
    return []
  first = next(iter(matching.values()))[0]
  names = (f"auc@{first['top']}", f"hr@{first['k']}", f"ndcg@{first['k']}")
  body = [[label] + [report.fmt_mean_std([r["metrics"][n] for r in res]) for n in names]
          for label, res in matching.items()]
  labels = list(matching)
  lines = ["## Table VII: recommending storytelling to products", "",
           f"{first['protocol']}; AUC over the top {first['top']}, HR@{first['k']} and "
           f"NDCG@{first['k']}, the mean over queries; {first['queries']:,} queries, "
           f"{first['candidates']:,} candidates, {first['pairs']:,} pairs of the `dual_pair` "
           f"`{MATCHING_SPLIT}` split. Mean ± std over seeds.", "",
           report.markdown_table(["Method"] + [n.upper() for n in names], body), "",
           "The paper (SRD-2): " + "; ".join(
               f"{k} AUC {v[0]:.4f}, HR@5 {v[1]:.4f}, NDCG@5 {v[2]:.4f}"
               for k, v in PAPER_TABLE7.items()) + ".", ""]
  if len(labels) >= 2:
    a, b = labels[-1], labels[0]
    rows = []
    for n in names:
      va = [r["metrics"][n] for r in matching[a]]
      vb = [r["metrics"][n] for r in matching[b]]
      words, p = stats.verdict(va, vb)
      rows.append([f"{a} > {b} ({n})", f"{np.mean(va):.4f} vs {np.mean(vb):.4f}",
                   tables.p_text(p, min(len(va), len(vb))), words])
    lines += [report.markdown_table(["claim", "measured", "p (one-sided Welch)", "verdict"],
                                    rows), ""]
  return lines


def write_report(results, exp: Experiments, scale: Scale, dataset: str, dataset_text: str,
                 out_md: str, seconds: float, command: str, timings: Mapping[str, float],
                 extra_flags: Sequence[str] = (), max_eval_examples: int = 0,
                 arrays: Optional[tables.Arrays] = None,
                 extra: Optional[Mapping[str, Any]] = None) -> str:
  """Writes `out_md` (arguments as `thacil.write_report`; `extra`: `extra_results`)."""
  stem = os.path.splitext(out_md)[0]
  seeds = max(len(v) for v in results.values())
  first = next(iter(results.values()))[0]
  oracle = {m: float(first["oracle"].get(m, np.nan)) for m in METRICS}
  ci = tables.Intervals(results, arrays, gauc_reduction=GAUC_REDUCTION)
  grid = list(first.get("lr_grid") or {})
  lines = [f"# ADAPT reproduction on {dataset}", "",
           f"Generated by `{command}` on {datetime.date.today().isoformat()} "
           f"({seconds / 60:.0f} min in this invocation; the reported runs took "
           f"{tables.compute_minutes(results):.0f} min of training and evaluation on this "
           "machine). Do not edit: re-run the command; the analysis below comes from "
           f"`{os.path.basename(stem)}.notes.md`.", "",
           f"- **Dataset:** {dataset_text}",
           f"- **Scale:** `{scale.name}`: {scale.description}"
           + (f"; every row also gets `{' '.join(extra_flags)}`" if extra_flags else "") + ".",
           f"- **Seeds:** {seeds} per row (training seeds 0-{seeds - 1}, DUAL runs included); "
           "cells are the mean ± sample std over seeds.",
           "- **Model selection, on `valid` only:** early stopping on validation AUC, the best "
           "epoch evaluated; the learning rate per row from "
           + (f"{{{', '.join(grid)}}}" if grid else "the flagfile") + " by seed 0.",
           "- **Protocol (§IV-C):** the `test` split. AUC (eq. 12) = the plain mean over users "
           "of each user's AUC (users with both classes); global AUC over all impressions; "
           "HR@5 and NDCG@5 of each positive against 300 random unseen items"
           + (f"; users sampled with eval seed {first.get('eval_seed', 0)}, at most "
              f"{max_eval_examples:,} examples" if max_eval_examples else "") + ".",
           f"- **95% CI:** percentile bootstrap over users ({bootstrap.N_RESAMPLES} resamples, "
           "paired across rows). **p:** one-sided Welch t-test over seeds.", ""]
  t4 = [(("Single-domain" if r.name in SINGLE_DOMAIN else "Cross-domain"), r)
        for r in exp.table4 if r.name in results]
  if t4:
    lines += ["## Table IV: click-through prediction", "",
              _metric_table(t4, results, ci, oracle, PAPER_TABLE4), "",
              "The paper's column is SRD-2 (Taobao), for the ordering only.", ""]
  t6 = [(g, r) for g, r in exp.table6 if r.name in results]
  if t6:
    lines += ["## Table VI: ablation (features per domain, with and without DUAL)", "",
              _metric_table(t6, results, ci, oracle), ""]
  lines += _table7((extra or {}).get("table7") or {})
  lines += tables.claims_section(tables.claim_rows(CLAIMS, results, ci, METRICS, _LABEL))
  rows = list(dict.fromkeys([r for _, r in t4] + [r for _, r in t6]))
  lines += tables.closing_sections(rows, results, timings, stem)
  return report.atomic_write_text(out_md, "\n".join(lines) + "\n")
