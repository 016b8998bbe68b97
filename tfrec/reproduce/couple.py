"""COUPLE (cross-domain cold-start retrieval from tags): Tables 4 and 5 and the tag-overlap
regime map, and the results file `docs/results/couple_<dataset>.md`.

  Table 4  DSSM, DeepCoNN, YouTube DNN, ICAN, SASRec, ComiRec-SA and COUPLE, every one on the
           same tag-based items (§4.2: an item is the mean of its tag embeddings, no id), HR@5/10
           and NDCG@5/10 on the cold-item split, for all users and for warm and cold users apart
  Table 5  Base (user history + domain), + user content (eq. 5), + memory tree (eq. 6-10),
           all + batch negatives, all + FIFO queue (= COUPLE)
  Fig. 4   COUPLE trained on a share of the source-domain behaviours (`--source_share`: each
           behaviour kept or dropped by a hash, `tfrec.data.pipeline.source_keep_hash`; the
           test histories keep everything): HR@10 and NDCG@10 of warm and cold users over the
           share, PNGs
  Fig. 5   the memory tree's leaves with and without the orthogonality penalty (srip_weight 0):
           their coherence, SRIP value and effective rank per seed, and a 2-D embedding of seed
           0's leaves coloured by their first-layer parent (`tfrec.evaluation.leaf_groups`)
  diag     (not in the paper) Base + memory tree and COUPLE with the Gumbel temperature falling
           to its floor within the run (`RUN_LENGTH_TAU`), beside their A.1.2 schedule
  sweep    `--sweep=tag_overlap=...`: COUPLE - SASRec across the share of target tags the
           source domain uses (the paper explains its larger gain on TPMV than on Amazon by 60%
           vs 25% overlap; `tfrec.reproduce.sweep`)

Protocol (§4.1): each test example's positive is an item never trained on (synthetic: the
world's `test_cold` matching split, clicks on cold items on the last day; MovieLens and Amazon:
each user's last target positive, held out of training by the converters' `couple` view), ranked
against 100 negatives, 50 uniform and 50 by training popularity, drawn from every target item
the user has not interacted with (`--negative_pool=all`: the paper samples from the whole pool;
the cold pool alone would leave the popular half without popularity). Cold users
(`cold_user` = 1) have no target-domain history; their examples are reported apart.

Model selection on `valid` only: retrieval rows validate the in-batch softmax loss every epoch
(the queue is left out of validation, `tfrec.models.retrieval`), stop early on it and are
evaluated at their best epoch; the learning rate per row from the grid by seed 0.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from tfrec.reproduce import bootstrap, figures, report, stats, tables
from tfrec.reproduce.harness import Row

PAPER = "couple"
CONFIGS = "configs/couple"
PARTS = ("table4", "table5", "fig4", "fig5", "diag")
# Diagnostics (not in the paper): the Gumbel temperature of A.1.2 falls over millions of steps
# (tau = max(1, 20 e^{-1e-5 t}), updated every 1,000); a CPU run takes ~1,000, so tau stays 20.
# These rows let tau reach its floor within the run (20 e^{-0.004 t}: 1 at t = 750, updated
# every 100 steps), testing whether the memory tree's collapse is the schedule's.
RUN_LENGTH_TAU = "--model_args=tau_rate=0.004,tau_every=100"
SOURCE_SHARES = (0.2, 0.4, 0.6, 0.8)  # Fig. 4's shares below 1 (1.0 is COUPLE's own row)
DATASETS = ("synthetic", "movielens", "amazon")
DATA_DIRS = {"movielens": "data/ml1m_couple", "amazon": "data/amazon_couple"}
EVAL_SPLIT = "test_cold"
PROTOCOL = "couple"  # 50 uniform + 50 popular negatives, K = 5, 10 (tfrec.metrics.PROTOCOLS)
NEGATIVE_POOL = "all"

# The paper's Table 4 (HR@5, HR@10, NDCG@5, NDCG@10) on Amazon Books -> Movies and TV.
PAPER_TABLE4_AMAZON = {
    "DSSM": (0.05119, 0.09463, 0.03093, 0.04658),
    "DeepCoNN": (0.05352, 0.10278, 0.03319, 0.04800),
    "YouTube DNN": (0.06777, 0.12398, 0.04174, 0.05970),
    "ICAN": (0.07431, 0.13071, 0.04601, 0.06405),
    "SASRec": (0.06918, 0.12410, 0.04352, 0.06109),
    "ComiRec-SA": (0.07036, 0.12684, 0.04322, 0.06127),
    "COUPLE": (0.07753, 0.13358, 0.04920, 0.06711)}
# Table 5 (TPMV): HR@10, NDCG@10.
PAPER_TABLE5 = {"Base (history + domain)": (0.28411, 0.17042),
                "Base + user content": (0.28928, 0.17531),
                "Base + memory tree": (0.29554, 0.18392),
                "All + batch negatives": (0.3011, 0.18787),
                "All + FIFO queue (COUPLE)": (0.30625, 0.19062)}


Scale = tables.Scale

SCALES = {
    "cpu": Scale(
        "cpu", "couple", (("num_users", 2000), ("cold_user_share", 0.3)), "couple-u2000",
        "configs/reproduce/couple_cpu.flags", "",
        world="the `couple` preset with 2,000 users, 30% of them cold (no target-domain "
        "history before the test day: enough cold-user examples to report them apart)",
        description="the paper's model sizes (d = 64, one attention block of 4 heads, l = 8, "
        "tree 1-32-512, queue 10 x 256, batch 256) with at most 20 epochs and patience 2 "
        "(`configs/reproduce/couple_cpu.flags` after each row's own flagfile)"),
    "paper": Scale(
        "paper", "couple", (), "couple", "", "",
        description="the paper's settings (A.1.2): each row's own flagfile in "
        "`configs/couple/`"),
}


world_config = tables.world_config


def harness_settings(scale: Scale, dataset: str) -> Dict[str, Any]:
  del scale, dataset
  return {"eval_split": EVAL_SPLIT, "protocol": PROTOCOL, "negative_pool": NEGATIVE_POOL}


@dataclasses.dataclass(frozen=True)
class Experiments(tables.PartRows):
  table4: Tuple[Row, ...]
  table5: Tuple[Row, ...]
  fig4: Tuple[Row, ...] = ()
  fig5: Tuple[Row, ...] = ()
  diag: Tuple[Row, ...] = ()


COUPLE_ROW = "COUPLE"
NO_ORTHOGONALITY = "COUPLE w/o orthogonality"
TABLE5_ALIASES = {"All + FIFO queue (COUPLE)": COUPLE_ROW}


def experiments(scale: Scale) -> Experiments:
  del scale
  table4 = tuple(Row(name, f"{CONFIGS}/{stem}.flags") for name, stem in (
      ("DSSM", "dssm"), ("DeepCoNN", "deepconn"), ("YouTube DNN", "youtube_dnn"),
      ("ICAN", "ican"), ("SASRec", "sasrec"), ("ComiRec-SA", "comirec_sa"),
      (COUPLE_ROW, "couple")))
  couple = table4[-1]
  table5 = tuple(Row(name, f"{CONFIGS}/{stem}.flags") for name, stem in (
      ("Base (history + domain)", "base_history"), ("Base + user content", "base_content"),
      ("Base + memory tree", "base_tree"), ("All + batch negatives", "batch_negatives")))
  fig4 = tuple(Row(share_row(p), couple.flagfile, (f"--source_share={p}",))
               for p in SOURCE_SHARES) + (couple,)
  fig5 = (couple, Row(NO_ORTHOGONALITY, f"{CONFIGS}/no_orthogonality.flags"))
  tree = table5[2]
  diag = (Row(f"{tree.name}, tau over the run", tree.flagfile, (RUN_LENGTH_TAU,)),
          Row(f"{COUPLE_ROW}, tau over the run", couple.flagfile, (RUN_LENGTH_TAU,)))
  return Experiments(table4, table5 + (couple,), fig4, fig5, diag)



def extra_results(runner: Any, exp: Experiments, parts: Sequence[str],
                  seeds: int) -> Dict[str, Any]:
  """Fig. 5's leaf statistics of every seed of its rows, and seed 0's 2-D leaf embeddings
  (`tfrec.reproduce.__main__` calls this after the rows ran)."""
  if "fig5" not in parts:
    return {}
  from tfrec import runs
  from tfrec.evaluation import leaf_groups
  out: Dict[str, Any] = {"stats": {}, "embedding": {}}
  for row in exp.fig5:
    out["stats"][row.name] = []
    for seed in range(seeds):
      runner.run(row, seed)
      model, *_ = runs.restore_model(runner.row_dir(row, seed), "best")
      slots, parents = leaf_groups.leaf_slots(model)
      out["stats"][row.name].append(leaf_groups.leaf_statistics(slots))
      if seed == 0:
        xy, method = leaf_groups.embed_2d(slots)
        out["embedding"][row.name] = (xy, parents, method)
  return out


def share_row(share: float) -> str:
  return f"COUPLE, {share:.0%} of source data"


# ------------------------------------------------------------------ the results file

METRICS = ("hr@10", "ndcg@10")  # the claims' metrics (bootstrap CIs at K = 10)
TABLE_METRICS = ("hr@5", "hr@10", "ndcg@5", "ndcg@10")
_LABEL = {"hr@5": "HR@5", "hr@10": "HR@10", "ndcg@5": "NDCG@5", "ndcg@10": "NDCG@10"}
CI_K = 10
GROUPS = ("warm users", "cold users")

DIAG_CLAIMS = (
    ("run-length tau > A.1.2's tau (Base + memory tree)", "Base + memory tree, tau over the run",
     "Base + memory tree"),
    ("run-length tau > A.1.2's tau (COUPLE)", f"{COUPLE_ROW}, tau over the run", COUPLE_ROW))

CLAIMS = tuple((f"COUPLE > {b}", COUPLE_ROW, b) for b in (
    "SASRec", "ComiRec-SA", "ICAN", "YouTube DNN", "DeepCoNN", "DSSM")) + (
    ("Base + user content > Base", "Base + user content", "Base (history + domain)"),
    ("Base + memory tree > Base", "Base + memory tree", "Base (history + domain)"),
    ("FIFO queue > batch negatives", COUPLE_ROW, "All + batch negatives"))


def group_values(runs: Sequence[Mapping[str, Any]], group: Optional[str], metric: str
                 ) -> List[float]:
  """A metric per seed, over all examples (`group` None) or one user group's."""
  return tables.group_values(runs, "groups", group, metric)


def group_arrays(arrays: Optional[tables.Arrays], group: str) -> Optional[tables.Arrays]:
  """Each run's arrays restricted to the examples of one user group (`cold_user`)."""
  return tables.subset_arrays(arrays, "cold_user", {"warm users": 0, "cold users": 1}[group])


def _cell(runs, group, metric) -> str:
  v = group_values(runs, group, metric)
  return "n/a" if not np.all(np.isfinite(v)) else report.fmt_mean_std(v)


def _table(rows: Sequence[Row], results, cis: Mapping[Optional[str], tables.Intervals],
           paper: Optional[Mapping[str, Sequence[float]]], paper_metrics: Sequence[str],
           groups: Sequence[str]) -> str:
  header = ["Method"] + [f"{_LABEL[m]} (mean ± std)" for m in TABLE_METRICS] + [
      "HR@10 95% CI"]
  for g in groups:
    header += [f"{g}: HR@10", f"{g}: NDCG@10"]
  if paper:
    header.append("paper " + " / ".join(_LABEL[m] for m in paper_metrics))
  body = []
  for row in rows:
    res = results[row.name]
    line = [row.name] + [_cell(res, None, m) for m in TABLE_METRICS]
    line.append(cis[None].text(row.name, "hr@10"))
    for g in groups:
      line += [_cell(res, g, "hr@10"), _cell(res, g, "ndcg@10")]
    if paper:
      ref = paper.get(row.name)
      line.append(" / ".join(f"{v:.4f}" for v in ref) if ref else "")
    body.append(line)
  first = results[rows[0].name][0]
  oracle = first.get("oracle", {})
  if all(m in oracle for m in TABLE_METRICS):
    body.append(["oracle (planted intensities)"] + [f"{oracle[m]:.4f}" for m in TABLE_METRICS]
                + [""] * (1 + 2 * len(groups) + bool(paper)))
  return report.markdown_table(header, body)


def _group_claims(results, cis: Mapping[Optional[str], tables.Intervals], groups: Sequence[str]
                  ) -> List[List[str]]:
  """COUPLE's claims on HR@10 per user group (the paper's Fig. 4 splits warm and cold)."""
  return tables.group_claim_rows(CLAIMS, results, cis, groups, "groups", "hr@10", "HR@10")


def _fig4(rows: Sequence[Row], results, groups: Sequence[str], fig_dir: str, fig_base: str
          ) -> List[str]:
  """Fig. 4: HR@10 and NDCG@10 per user group over the share of source-domain data."""
  shares = [float(r.flags[0].split("=")[1]) if r.flags else 1.0 for r in rows]
  lines = ["## Fig. 4: the share of source-domain data", "",
           "COUPLE trained with each share of the source-domain behaviours in the training "
           "histories (`--source_share`; the same behaviours dropped in every record and epoch; "
           "validation and test histories keep everything), mean ± std over seeds.", ""]
  labels = [f"{p:.0%}" for p in shares]
  for metric in ("hr@10", "ndcg@10"):
    series = {}
    for g in [None] + list(groups):
      ms = [stats.mean_std(group_values(results[r.name], g, metric)) for r in rows]
      series[g or "all users"] = ([a for a, _ in ms], [b for _, b in ms])
    path = figures.line_plot(os.path.join(fig_dir, f"{fig_base}_fig4_{metric.replace('@', '')}.png"),
                             labels, series, "share of source-domain training data",
                             _LABEL[metric], f"Fig. 4: {_LABEL[metric]} by user group")
    lines += [f"![Fig. 4 {_LABEL[metric]}]({os.path.basename(path)})", ""]
  header = ["source share"] + [f"{g or 'all users'}: {_LABEL[m]}" for g in [None] + list(groups)
                               for m in ("hr@10", "ndcg@10")]
  body = [[label] + [_cell(results[r.name], g, m) for g in [None] + list(groups)
                     for m in ("hr@10", "ndcg@10")] for label, r in zip(labels, rows)]
  return lines + [report.markdown_table(header, body), ""]


FIG5_STATS = (("coherence", "mean absolute cosine between leaves"), ("srip", "sigma(G - I), eq. 10"),
              ("effective_rank", "effective rank"))


def _fig5(fig5: Mapping[str, Any], results, fig_dir: str, fig_base: str) -> List[str]:
  stats_by_row = fig5.get("stats", {})
  if COUPLE_ROW not in stats_by_row or NO_ORTHOGONALITY not in stats_by_row:
    return []
  lines = ["## Fig. 5: the memory tree's leaves with and without orthogonality", "",
           "The trained leaf slots (512 x d) of each seed: the mean |cos| between distinct "
           "leaves (lower: more spread), eq. 10's sigma(G - I) computed exactly, and the "
           "effective rank of the slot matrix (higher: more directions used); mean ± std over "
           "seeds, p one-sided Welch.", ""]
  body = []
  for key, label in FIG5_STATS:
    a = [s[key] for s in stats_by_row[COUPLE_ROW]]
    b = [s[key] for s in stats_by_row[NO_ORTHOGONALITY]]
    lower = key != "effective_rank"  # the penalty should lower these, raise the rank
    words, p = stats.verdict(b, a) if lower else stats.verdict(a, b)
    body.append([label, report.fmt_mean_std(a), report.fmt_mean_std(b),
                 ("w/o > with" if lower else "with > w/o")
                 + f": {tables.p_text(p, min(len(a), len(b)))}, {words}"])
  if COUPLE_ROW in results and NO_ORTHOGONALITY in results:
    for m in ("hr@10", "ndcg@10"):
      a, b = (group_values(results[n], None, m) for n in (COUPLE_ROW, NO_ORTHOGONALITY))
      words, p = stats.verdict(a, b)
      body.append([f"retrieval {_LABEL[m]}", report.fmt_mean_std(a), report.fmt_mean_std(b),
                   f"with > w/o: {tables.p_text(p, min(len(a), len(b)))}, {words}"])
  lines += [report.markdown_table(["leaves", "COUPLE (orthogonality)", "w/o orthogonality",
                                   "expected order: p, verdict"], body), ""]
  emb = fig5.get("embedding", {})
  if COUPLE_ROW in emb and NO_ORTHOGONALITY in emb:
    method = emb[COUPLE_ROW][2]
    path = figures.scatter_plot(
        os.path.join(fig_dir, f"{fig_base}_fig5_leaves.png"),
        {f"{name} (seed 0)": (emb[name][0], emb[name][1])
         for name in (COUPLE_ROW, NO_ORTHOGONALITY)},
        f"Fig. 5: the 512 leaves in 2-D ({method}), coloured by first-layer parent")
    lines += [f"![Fig. 5 leaves]({os.path.basename(path)})", ""]
  return lines


def write_report(results, exp: Experiments, scale: Scale, dataset: str, dataset_text: str,
                 out_md: str, seconds: float, command: str, timings: Mapping[str, float],
                 extra_flags: Sequence[str] = (), max_eval_examples: int = 0,
                 arrays: Optional[tables.Arrays] = None,
                 extra: Optional[Mapping[str, Any]] = None) -> str:
  """Writes `out_md` (arguments as `semi.write_report`; `extra`: `extra_results`); returns its
  path."""
  stem = os.path.splitext(out_md)[0]
  fig_base = os.path.basename(stem)
  table4 = [r for r in exp.table4 if r.name in results]
  table5 = [r for r in exp.table5 if r.name in results]
  fig4 = [r for r in exp.fig4 if r.name in results]
  fig5 = [r for r in exp.fig5 if r.name in results]
  diag = [r for r in exp.diag if r.name in results]
  rows = list({r.name: r for r in table4 + table5 + fig4 + fig5 + diag}.values())
  seeds = max(len(v) for v in results.values())
  first = next(iter(results.values()))[0]
  groups = [g for g in GROUPS if any(g in r.get("groups", {}) for runs in results.values()
                                     for r in runs)]
  cis: Dict[Optional[str], tables.Intervals] = {None: tables.Intervals(results, arrays, k=CI_K)}
  for g in groups:
    sub = group_arrays(arrays, g)
    if sub:
      cis[g] = tables.Intervals(results, sub, k=CI_K)
  counts = first.get("counts", {})
  valid = first.get("valid_split") or "valid"
  grid = list(first.get("lr_grid") or {})
  group_counts = ", ".join(f"{g} {first['groups'][g]['examples']:,} examples"
                           for g in groups if g in first.get("groups", {}))
  lines = tables.report_opening(
      f"COUPLE reproduction on {dataset}", command, seconds, results, fig_base, dataset_text,
      f"`{scale.name}`: {scale.text(dataset)}", extra_flags, seeds) + [
           f"- **Model selection, on `{valid}` only:** each epoch validates "
           + tables.retrieval_monitor(first, "the in-batch softmax loss")
           + "; training stops early on it and the best epoch is evaluated; the learning rate "
           "per row from " + (f"{{{', '.join(grid)}}}" if grid else "the flagfile (no grid)")
           + " by seed 0's best validation value (table below).",
           f"- **Protocol (§4.1):** the cold-item split `{EVAL_SPLIT}` ({counts.get('examples', 0):,} "
           f"examples of {counts.get('users', 0):,} users"
           + (f"; {group_counts}" if group_counts else "")
           + "): each positive is an item never trained on, ranked against 100 negatives (50 "
           "uniform, 50 by training popularity) from the target items the user has not "
           "interacted with; HR@K and NDCG@K, K = 5, 10. Every row represents items by their "
           "tags only (no id embedding). Cold users have no target-domain history"
           + (f"; all examples of users sampled with eval seed {first.get('eval_seed', 0)}, "
              f"at most {max_eval_examples:,}" if max_eval_examples else "") + ".",
           f"- **95% CI:** percentile bootstrap over users ({bootstrap.N_RESAMPLES} resamples, "
           "paired across rows) at K = 10, per user group on that group's users.",
           "- **p-values:** one-sided Welch t-test over seeds (`*` p < 0.05, `**` p < 0.01).", ""]
  if table4:
    amazon = dataset == "amazon"
    lines += ["## Table 4: cold-item retrieval", "",
              _table(table4, results, cis, PAPER_TABLE4_AMAZON, TABLE_METRICS, groups), "",
              "The paper's column is its Amazon (Books -> Movies and TV) result"
              + ("" if amazon else ", for the ordering only: the absolute numbers of "
                 + ("a synthetic world" if dataset == "synthetic" else "another dataset")
                 + " are not comparable; users with the Amazon files reproduce it with "
                 "`--dataset=amazon`") + ".", ""]
  if table5:
    paper5 = {TABLE5_ALIASES.get(k, k): v for k, v in PAPER_TABLE5.items()}
    lines += ["## Table 5: ablation", "",
              _table(table5, results, cis, paper5, ("hr@10", "ndcg@10"), groups), "",
              "The paper's column is its TPMV ablation (HR@10 / NDCG@10), for the ordering.", ""]
  if len(fig4) > 1:
    lines += _fig4(fig4, results, groups, os.path.dirname(out_md), fig_base)
  if extra:
    lines += _fig5(extra, results, os.path.dirname(out_md), fig_base)
  if diag:
    lines += ["## Diagnostics (not in the paper): the Gumbel temperature over the run", "",
              "A.1.2's schedule keeps tau at 20 for the ~1,000 steps of a CPU run; these rows "
              "let it fall to 1 within the run (`tau_rate=0.004, tau_every=100`), everything "
              "else as their paper rows.", "",
              _table(diag, results, cis, None, (), groups), ""]
    compared = tables.claim_rows(DIAG_CLAIMS, results, cis[None], METRICS, _LABEL)
    if compared:
      lines += [report.markdown_table(["comparison", "measured (mean over seeds)",
                                       "difference [95% CI]", "p (one-sided Welch)",
                                       "verdict"], compared), ""]
  claim_rows = tables.claim_rows(CLAIMS, results, cis[None], METRICS, _LABEL)
  lines += tables.claims_section(claim_rows + _group_claims(results, cis, groups))
  lines += tables.closing_sections(rows, results, timings, stem)
  return report.atomic_write_text(out_md, "\n".join(lines) + "\n")
