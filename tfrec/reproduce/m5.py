"""M5 (multi-modal, multi-interest, multi-scenario two-tower matching, Zhao et al., KDD 2023):
Tables 1 and 2 and the results file `docs/results/m5_<dataset>.md`.

  Table 2  the baselines of §5.1.2 (YouTube DNN, GRU4Rec+, two-tower BST, SDM, ComiRec-SA, PDN,
           CL4SRec) and M5 with its variants (w/o MM, MI, MS; §5.3's multi-modal,
           multi-interest and multi-scenario ablations), HR@20 and HR@100 per scenario on the
           last day (the test split), against the whole candidate pool
  Table 1  the ID channel alone (M5 w/o MM) at depth L = 1..4 of the bidirectional transformer,
           with and without the MLM loss (eq. 2): the mean HR over scenarios and K = 20, 100
           ("the average Hit Ratio"); L = 3 with MLM is Table 2's "M5 w/o MM" run itself

Protocol (§5.1.1): each test example's positive (the next engaged item on the test day) is
ranked against every item of the pool (`--negative_pool=auto`: the warm target items), the
user's behaviour sequence excluded (`tfrec.evaluation.retrieval`, protocol "full"), HR@K for K
= 20 and 100 over all examples and per scenario (`scenario_id` of the request).

Model selection on `valid` only: every row validates its matching loss each epoch (the softmax
over the catalogue; GRU4Rec+ its BPR-max), stops early on it, and is evaluated at its best
epoch; the learning rate per row from the grid by seed 0.

Regime map: `--sweep=scenario_traffic_skew=0,1,2 --claims="M5 > M5 w/o MS"` (the world's
scenario traffic ^ skew: uniform at 0, the preset's at 1, steeper at 2) measures the claim on
HR@20 over all examples and in the smallest scenario (`SWEEP_METRICS`; the paper: the
multi-scenario design helps the scenarios with fewer samples most).

Pre-training: M5's CG table starts from GraphSAGE's node embeddings of the dataset's content
metagraph (§4.2.1); `prepare` builds the metagraph and pre-trains them once per dataset
(`cg_init=dataset` in the flagfiles reads them beside the run's data). They are part of the
dataset, so every row's cache key covers them.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from tfrec.reproduce import bootstrap, report, stats, tables
from tfrec.reproduce.harness import Row

PAPER = "m5"
CONFIGS = "configs/m5"
PARTS = ("table2", "table1")
DATASETS = ("synthetic", "movielens")
DATA_DIRS = {"movielens": "data/ml1m_m5"}
EVAL_SPLIT = "test"
PROTOCOL = "full"
NEGATIVE_POOL = "auto"
KS = (20, 100)
DEPTHS = (1, 2, 3, 4)  # Table 1

# Table 2 on Dataset-H (the paper's reference): scenario 1..4, (HR@20, HR@100) each.
PAPER_TABLE2_H = {
    "YouTube DNN": ((0.3178, 0.7206), (0.1949, 0.5401), (0.3178, 0.7206), (0.1491, 0.4972)),
    "GRU4Rec+": ((0.3209, 0.7205), (0.1983, 0.5453), (0.3145, 0.7220), (0.1522, 0.5059)),
    "BST": ((0.3918, 0.8349), (0.2051, 0.5471), (0.3378, 0.7279), (0.1918, 0.5471)),
    "SDM": ((0.4062, 0.8414), (0.2021, 0.5435), (0.3276, 0.7240), (0.1841, 0.5324)),
    "ComiRec-SA": ((0.3413, 0.7845), (0.1939, 0.5462), (0.3221, 0.7293), (0.1636, 0.5121)),
    "PDN": ((0.3546, 0.8251), (0.1987, 0.5504), (0.3301, 0.7295), (0.1757, 0.5269)),
    "CL4SRec": ((0.4017, 0.8408), (0.2123, 0.5564), (0.3396, 0.7370), (0.1935, 0.5597)),
    "M5": ((0.4856, 0.9089), (0.3881, 0.8215), (0.4247, 0.7803), (0.4761, 0.7645)),
    "M5 w/o MM": ((0.4628, 0.9003), (0.3787, 0.8107), (0.4114, 0.7759), (0.4760, 0.7642)),
    "M5 w/o MI": ((0.4130, 0.8505), (0.2926, 0.7389), (0.3295, 0.7410), (0.2297, 0.5568)),
    "M5 w/o MS": ((0.4317, 0.8691), (0.2385, 0.6407), (0.4293, 0.7746), (0.3586, 0.6692)),
    "M5 w/ Raw Metadata": ((0.4623, 0.8999), (0.3790, 0.8107), (0.4112, 0.7755),
                           (0.4740, 0.7587)),
    "M5 w/ Single Channel": ((0.4744, 0.9025), (0.3819, 0.8124), (0.4151, 0.7761),
                             (0.4712, 0.7614)),
    "M5 w/o Cate & Sub": ((0.4386, 0.8895), (0.3541, 0.7690), (0.3749, 0.7655),
                          (0.3411, 0.6500)),
    "M5 w/ SIN": ((0.4464, 0.8891), (0.3371, 0.7843), (0.3659, 0.7687), (0.4316, 0.7221)),
    "M5 w/ SA": ((0.4603, 0.8955), (0.3655, 0.8056), (0.3936, 0.7711), (0.4287, 0.7412)),
    "M5 w/ SA-SIN": ((0.4821, 0.9058), (0.3856, 0.8186), (0.4217, 0.7761), (0.4701, 0.7556)),
    "M5 w/o idx": ((0.4588, 0.8793), (0.2429, 0.6647), (0.4140, 0.7669), (0.4227, 0.6905)),
    "M5 w/o dis": ((0.4842, 0.9033), (0.3828, 0.8120), (0.4182, 0.7811), (0.4682, 0.7629)),
    "M5 w/ CGC": ((0.4843, 0.9111), (0.3693, 0.8048), (0.4268, 0.7828), (0.4705, 0.7547)),
    "M5 w/ PLE": ((0.4783, 0.9058), (0.3726, 0.8088), (0.4237, 0.7764), (0.4726, 0.7575)),
}
# Table 1 on Dataset-H: the average hit ratio at L = 1..4.
PAPER_TABLE1_H = {"w/o MLM": (0.4291, 0.4315, 0.4297, 0.4258),
                  "w/ MLM": (0.4368, 0.4439, 0.4527, 0.4546)}


@dataclasses.dataclass(frozen=True)
class Scale(tables.Scale):
  cg_dim: int = 128  # the CG table's width (the rows' d: §5.1.3's 128, the CPU variant's 64)
  graphsage_steps: int = 2000


SCALES = {
    "cpu": Scale(
        "cpu", "m5", (), "m5", "configs/reproduce/m5_cpu.flags", "",
        world="the `m5` preset (5,000 users, 4 scenarios with traffic 15/10/45/30%, 3 target "
        "item kinds, watch counts and playback hours per behaviour)",
        description="§5.1.3's model at half width for 2 CPU cores, every row alike: d = 64 (the "
        "CG table too), feed-forward 256, PDN's nets 64 and 128, SMoE / weighting / SIN "
        "hidden 256, the newest 20 "
        "behaviours; L = 3, 2 heads, batch 2048, Adam 0.002 with linear decay and the softmax "
        "over the whole catalogue as the paper; at most 30 epochs, patience 3 "
        "(`configs/reproduce/m5_cpu.flags` after each row's own flagfile); GraphSAGE's CG "
        "table 64 wide, 2,000 steps", cg_dim=64),
    "paper": Scale(
        "paper", "m5", (), "m5-d128", "", "",
        description="each row's own flagfile in `configs/m5/` (§5.1.3)"),
}


world_config = tables.world_config


def harness_settings(scale: Scale, dataset: str) -> Dict[str, Any]:
  del scale, dataset
  return {"eval_split": EVAL_SPLIT, "protocol": PROTOCOL, "negative_pool": NEGATIVE_POOL,
          "retrieval_ks": KS}


def prepare(data_dir: str, scale: Scale) -> None:
  """The content metagraph and GraphSAGE's CG embeddings (`scale.cg_dim` wide) beside the
  dataset, once (§4.2.1; the M5 rows read them through `cg_init=dataset`).

  Raises:
    ValueError: the dataset holds CG embeddings of another width (another scale's: give this
      one its own --data_dir rather than retrain the other's cached runs).
  """
  from tfrec.data.item_store import ItemStore
  from tfrec.datasets import metagraph
  from tfrec.models import graphsage
  if not os.path.exists(os.path.join(data_dir, metagraph.GRAPH_FILE)):
    metagraph.build_metagraph(ItemStore.load(data_dir)).save(data_dir)
  if not os.path.exists(os.path.join(data_dir, graphsage.EMBEDDINGS_FILE)):
    graphsage.pretrain_cg(data_dir, dim=scale.cg_dim, steps=scale.graphsage_steps)
  width = graphsage.load_cg_embeddings(data_dir)[0].shape[1]
  if width != scale.cg_dim:
    raise ValueError(f"{data_dir} holds CG embeddings {width} wide; the {scale.name} scale's "
                     f"rows are {scale.cg_dim} wide: reproduce it on its own --data_dir")


@dataclasses.dataclass(frozen=True)
class Experiments(tables.PartRows):
  table2: Tuple[Row, ...]
  table1: Tuple[Row, ...] = ()


M5_ROW = "M5"
BASELINES = ("YouTube DNN", "GRU4Rec+", "BST", "SDM", "ComiRec-SA", "PDN", "CL4SRec")
_BASELINE_FILES = ("youtube_dnn", "gru4rec_plus", "bst_two_tower", "sdm", "comirec_sa", "pdn",
                   "cl4srec")
# Table 2's variants: M5's flagfile with these model arguments (tfrec/models/m5.py).
VARIANTS = (
    ("M5 w/o MM", "multi_modal=False"),
    ("M5 w/o MI", "multi_interest=False"),
    ("M5 w/o MS", "multi_scenario=False"),
    ("M5 w/ Raw Metadata", "cg_source=raw,cg_init=none"),
    ("M5 w/ Single Channel", "channels=single"),
    ("M5 w/o Cate & Sub", "bucketing=False,subsidiary=False"),
    ("M5 w/ SIN", "self_attention=none"),
    ("M5 w/ SA", "self_attention=both,sin=False"),
    ("M5 w/ SA-SIN", "self_attention=both"),
    ("M5 w/o idx", "indicator=False"),
    ("M5 w/o dis", "disagreement=False"),
    ("M5 w/ CGC", "mixing=cgc"),
    ("M5 w/ PLE", "mixing=ple"),
)
NO_MM = "M5 w/o MM"


def table1_row(depth: int, mlm: bool) -> str:
  return NO_MM if (depth, mlm) == (3, True) else f"ID channel, L={depth}, " + (
      "w/ MLM" if mlm else "w/o MLM")


def experiments(scale: Scale) -> Experiments:
  del scale
  m5_flags = f"{CONFIGS}/m5.flags"
  baselines = tuple(Row(name, f"{CONFIGS}/{stem}.flags")
                    for name, stem in zip(BASELINES, _BASELINE_FILES))
  m5 = Row(M5_ROW, m5_flags)
  variants = tuple(Row(name, m5_flags, (f"--model_args={args}",)) for name, args in VARIANTS)
  no_mm = variants[0]
  table1 = tuple(no_mm if (d, mlm) == (3, True) else Row(
      table1_row(d, mlm), m5_flags,
      (f"--model_args=multi_modal=False,num_layers={d},mlm={mlm}",))
      for mlm in (False, True) for d in DEPTHS)
  return Experiments(baselines + (m5,) + variants, table1)


# ------------------------------------------------------------------ the results file

METRICS = ("hr@20", "hr@100")  # the claims' metrics
# The regime map (`--sweep=scenario_traffic_skew=0,1,2 --claims="M5 > M5 w/o MS"`): HR@20 over
# all examples and in scenario 1, the preset's smallest (10% of the traffic at skew 1).
SMALLEST_SCENARIO = 1
SWEEP_METRICS = ("hr@20", f"hr@20 in scenario {SMALLEST_SCENARIO}")
_LABEL = {"hr@20": "HR@20", "hr@100": "HR@100"}
CI_K = 20

CLAIMS = tuple((f"M5 > {b}", M5_ROW, b) for b in BASELINES) + tuple(
    (f"M5 > {v}", M5_ROW, v) for v in ("M5 w/o MM", "M5 w/o MI", "M5 w/o MS", "M5 w/o idx",
                                       "M5 w/o dis", "M5 w/ Raw Metadata",
                                       "M5 w/ Single Channel", "M5 w/o Cate & Sub"))


def scenarios_of(results) -> List[str]:
  """The scenario names of the results ("scenario 0", ...), in id order."""
  names: Dict[str, None] = {}
  for runs in results.values():
    for r in runs:
      names.update(dict.fromkeys(r.get("scenarios", {})))
  return sorted(names, key=lambda n: int(n.split()[-1]))


def scenario_values(runs: Sequence[Mapping[str, Any]], scenario: Optional[str], metric: str
                    ) -> List[float]:
  """A metric per seed, over all examples (`scenario` None) or one scenario's."""
  return tables.group_values(runs, "scenarios", scenario, metric)


def average_hit_ratio(run: Mapping[str, Any]) -> float:
  """Table 1's "average Hit Ratio": the mean of HR@20 and HR@100 over the scenarios (every
  scenario weighted alike, as the paper's per-scenario table; all examples without scenarios)."""
  groups = run.get("scenarios") or {"all": {"metrics": run["metrics"]}}
  return float(np.mean([g["metrics"][m] for g in groups.values() for m in METRICS]))


def _cell(runs, scenario, metric) -> str:
  v = scenario_values(runs, scenario, metric)
  return "n/a" if not np.all(np.isfinite(v)) else report.fmt_mean_std(v, digits=4)


def _scenario_label(name: str) -> str:
  return f"S{int(name.split()[-1]) + 1}"  # the paper numbers its scenarios from 1


def _table2(rows: Sequence[Row], results, ci: tables.Intervals, scenarios: Sequence[str],
            paper: bool) -> str:
  header = ["Method"] + [f"{_scenario_label(s)} {_LABEL[m]}" for s in scenarios for m in METRICS]
  header += [f"all {_LABEL[m]}" for m in METRICS] + [f"all HR@{CI_K} 95% CI"]
  if paper:
    header.append("paper (Dataset-H) HR@20 per scenario")
  body = []
  for row in rows:
    res = results[row.name]
    line = [row.name] + [_cell(res, s, m) for s in scenarios for m in METRICS]
    line += [_cell(res, None, m) for m in METRICS] + [ci.text(row.name, f"hr@{CI_K}")]
    if paper:
      ref = PAPER_TABLE2_H.get(row.name)
      line.append(" / ".join(f"{v[0]:.4f}" for v in ref) if ref else "")
    body.append(line)
  first = results[rows[0].name][0]
  oracle = first.get("oracle", {})
  if all(m in oracle for m in METRICS):
    per = [first.get("scenarios", {}).get(s, {}).get("oracle", {}) for s in scenarios]
    body.append(["oracle (planted intensities)"]
                + [f"{p[m]:.4f}" if m in p else "" for p in per for m in METRICS]
                + [f"{oracle[m]:.4f}" for m in METRICS] + [""] * (1 + paper))
  return report.markdown_table(header, body)


def _scenario_claims(results, cis: Mapping[str, tables.Intervals], scenarios: Sequence[str]
                     ) -> List[List[str]]:
  """M5 > each baseline and each variant in every scenario (HR@20): the paper's "over 10% HR
  lift under all scenarios" and "the multi-scenario strategy ... improves the 'Local'
  scenarios"."""
  return tables.group_claim_rows(CLAIMS, results, cis, scenarios, "scenarios", "hr@20", "HR@20",
                                 _scenario_label)


def _smallest_scenario_gain(results, scenarios: Sequence[str], traffic: Sequence[float]
                            ) -> List[str]:
  """The paper: SMoE and the indicators help the scenarios with fewer samples most. The gain
  of M5 over M5 w/o MS (and w/o idx) per scenario, ordered by the scenario's test examples."""
  lines = []
  for other in ("M5 w/o MS", "M5 w/o idx"):
    if M5_ROW not in results or other not in results:
      continue
    gains = []
    for s, share in zip(scenarios, traffic):
      a = scenario_values(results[M5_ROW], s, "hr@20")
      b = scenario_values(results[other], s, "hr@20")
      d = np.asarray(a) - np.asarray(b)
      gains.append((share, s, float(np.mean(d)), float(np.std(d, ddof=1)) if len(d) > 1 else 0))
    gains.sort()
    lines.append(f"- M5 - {other} (HR@20) by scenario, fewest test examples first: "
                 + "; ".join(f"{_scenario_label(s)} ({share:.0%} of examples) {g:+.4f} ± {sd:.4f}"
                             for share, s, g, sd in gains)
                 + ". " + _smallest_verdict([g for _, _, g, _ in gains]))
  return lines


def _smallest_verdict(gains: Sequence[float]) -> str:
  """Whether the first (smallest) scenario's gain is the largest: strictly, tied, or not."""
  if not gains:
    return ""
  others = max(gains[1:], default=-np.inf)
  if gains[0] > others:
    return "The smallest scenario gains most."
  if gains[0] == others:
    return "The smallest scenario ties for the largest gain."
  return "The smallest scenario does not gain most."


def _table1(results) -> List[str]:
  rows = [(d, mlm) for mlm in (False, True) for d in DEPTHS if table1_row(d, mlm) in results]
  if not rows:
    return []
  lines = ["## Table 1: the MLM loss against the depth of the self-attention", "",
           "The ID channel alone (M5 w/o MM) with L = 1..4 bidirectional layers, with and "
           "without the MLM loss (eq. 2); the cell is the average hit ratio (the mean of HR@20 "
           "and HR@100 over the scenarios), mean ± std over seeds; the last rows are MLM's gain "
           "per depth with the one-sided Welch p of w/ > w/o.", ""]
  header = ["", *[f"L={d}" for d in DEPTHS], "paper (Dataset-H)"]
  body = []
  per = {}
  for mlm in (False, True):
    name = "w/ MLM" if mlm else "w/o MLM"
    line = [name]
    for d in DEPTHS:
      row = table1_row(d, mlm)
      v = [average_hit_ratio(r) for r in results.get(row, [])]
      per[d, mlm] = v
      line.append(report.fmt_mean_std(v, digits=4) if v else "")
    line.append(" / ".join(f"{x:.4f}" for x in PAPER_TABLE1_H[name]))
    body.append(line)
  gain = ["MLM gain (p)"]
  for d in DEPTHS:
    a, b = per.get((d, True), []), per.get((d, False), [])
    if a and b:
      _, p = stats.verdict(a, b)
      gain.append(f"{np.mean(a) - np.mean(b):+.4f} ({tables.p_text(p, min(len(a), len(b)))})")
    else:
      gain.append("")
  body.append(gain + [" / ".join(f"{a - b:+.4f}" for a, b in zip(
      PAPER_TABLE1_H["w/ MLM"], PAPER_TABLE1_H["w/o MLM"]))])
  lines += [report.markdown_table(header, body), ""]
  gains = {d: np.mean(per[d, True]) - np.mean(per[d, False]) for d in DEPTHS
           if per.get((d, True)) and per.get((d, False))}
  if len(gains) >= 2:
    lo, hi = min(gains), max(gains)
    slope = np.polyfit(list(gains), list(gains.values()), 1)[0]
    lines += [f"MLM's gain grows with L (the paper: +0.008 at L = 1, +0.029 at L = 4): "
              f"{'yes' if slope > 0 else 'no'} here (least-squares slope {slope:+.4f} per "
              f"layer; L = {lo}: {gains[lo]:+.4f}, L = {hi}: {gains[hi]:+.4f}).", ""]
  return lines


def write_report(results, exp: Experiments, scale: Scale, dataset: str, dataset_text: str,
                 out_md: str, seconds: float, command: str, timings: Mapping[str, float],
                 extra_flags: Sequence[str] = (), max_eval_examples: int = 0,
                 arrays: Optional[tables.Arrays] = None) -> str:
  """Writes `out_md` (arguments as `semi.write_report`); returns its path."""
  stem = os.path.splitext(out_md)[0]
  fig_base = os.path.basename(stem)
  table2 = [r for r in exp.table2 if r.name in results]
  table1 = [r for r in exp.table1 if r.name in results]
  rows = list({r.name: r for r in table2 + table1}.values())
  seeds = max(len(v) for v in results.values())
  first = next(iter(results.values()))[0]
  scenarios = scenarios_of(results)
  ci = tables.Intervals(results, arrays, k=CI_K)
  cis = {}
  for s in scenarios:
    sub = tables.subset_arrays(arrays, "scenario_id", int(s.split()[-1]))
    if sub:
      cis[s] = tables.Intervals(results, sub, k=CI_K)
  counts = first.get("counts", {})
  examples = {s: first.get("scenarios", {}).get(s, {}).get("examples", 0) for s in scenarios}
  total = max(1, sum(examples.values()))
  grid = list(first.get("lr_grid") or {})
  lines = tables.report_opening(
      f"M5 reproduction on {dataset}", command, seconds, results, fig_base, dataset_text,
      f"`{scale.name}`: {scale.text(dataset)}", extra_flags, seeds) + [
          f"- **Model selection, on `{first.get('valid_split') or 'valid'}` only:** each "
          "epoch validates " + tables.retrieval_monitor(first, "the row's matching loss")
          + "; training stops early on it and the best epoch is evaluated; the learning rate "
          "per row from " + (f"{{{', '.join(grid)}}}" if grid else "the flagfile (no grid)")
          + " by seed 0's best validation value (table below).",
          f"- **Protocol (§5.1.1):** the last day, split `{EVAL_SPLIT}` "
          f"({counts.get('examples', 0):,} examples of {counts.get('users', 0):,} users; "
          + ", ".join(f"{_scenario_label(s)} {n:,} ({n / total:.0%})"
                      for s, n in examples.items())
          + "): each positive ranked against every warm target item, the user's behaviour "
          "sequence excluded; HR@20 and HR@100 per scenario (the paper's S1..S4 are scenario "
          "ids 0..3 here)"
          + (f"; all examples of users sampled with eval seed {first.get('eval_seed', 0)}, at "
             f"most {max_eval_examples:,}" if max_eval_examples else "") + ".",
          f"- **95% CI:** percentile bootstrap over users ({bootstrap.N_RESAMPLES} resamples, "
          f"paired across rows) at K = {CI_K}, per scenario on that scenario's examples.",
          "- **p-values:** one-sided Welch t-test over seeds (`*` p < 0.05, `**` p < 0.01).", ""]
  if table2:
    lines += ["## Table 2: baselines and M5's variants, per scenario", "",
              _table2(table2, results, ci, scenarios, True), "",
              "The paper's column is Dataset-H's HR@20 in scenarios 1-4, for the ordering only "
              "(Hulu's data: the absolute numbers are not comparable).", ""]
    lines += _smallest_scenario_gain(results, scenarios,
                                     [examples[s] / total for s in scenarios]) + [""]
  lines += _table1(results)
  ci100 = tables.Intervals(results, arrays, k=100)  # the bootstrap is at one K per object
  claim_rows = (tables.claim_rows(CLAIMS, results, ci, ("hr@20",), _LABEL)
                + tables.claim_rows(CLAIMS, results, ci100, ("hr@100",), _LABEL))
  lines += tables.claims_section(claim_rows + _scenario_claims(results, cis, scenarios))
  lines += tables.closing_sections(rows, results, timings, stem)
  return report.atomic_write_text(out_md, "\n".join(lines) + "\n")
