"""Sections every paper's results file shares: the bootstrap intervals of a report, p-value
cells, the table of the paper's orderings with their verdicts, and the model-selection table.

`results`: row name -> one `harness.Runner.run` summary per seed; `arrays`: row name -> per-seed
evaluation arrays (`harness.save_arrays`).
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from tfrec.reproduce import bootstrap, harness, report, stats
from tfrec.reproduce.harness import values

Results = Mapping[str, List[Dict[str, Any]]]
Arrays = Mapping[str, List[Mapping[str, np.ndarray]]]


@dataclasses.dataclass(frozen=True)
class Scale:
  """A reproduction's scale (COUPLE's, M5's, ADAPT's): the synthetic preset with
  `world_overrides` (field, value) on top, generated in data/reproduce/syn-<world_name>; the
  flagfiles applied after each row's own (`scale_flagfile`) and each pre-training run's; the
  models' settings (`description`, every dataset) and the world's (`world`, synthetic only)."""

  name: str
  synthetic_preset: str
  world_overrides: Tuple[Tuple[str, Any], ...]
  world_name: str
  scale_flagfile: str
  pretrain_flagfile: str
  description: str
  world: str = ""

  def text(self, dataset: str) -> str:
    """The scale for the results file: the world (synthetic data only), then the settings."""
    return (f"{self.world}; " if dataset == "synthetic" and self.world else "") + self.description


class PartRows:
  """A paper's `Experiments` dataclass whose fields are named after its parts and hold their
  rows (COUPLE, M5): `rows(parts)` = every part's rows, each name once, in order."""

  def rows(self, parts: Sequence[str]) -> List[harness.Row]:
    out: Dict[str, harness.Row] = {}
    for part in parts:
      out.update({r.name: r for r in getattr(self, part)})
    return list(out.values())


def p_text(p: float, seeds: Optional[int] = None) -> str:
  """A p value with the paper's markers. A nan p has two causes (`stats.welch_t_test`): fewer
  than 2 seeds on a side, or both sides the same constant on every seed (e.g. a hit rate of 0
  for both rows); `seeds` (the smaller side's count) tells them apart."""
  if np.isfinite(p):
    return f"{p:.3g}{report.significance_marker(p)}"
  if seeds is not None and seeds >= 2:
    return "n/a (equal on every seed)"
  return "n/a (1 seed)"


def gain_text(a: float, b: float) -> str:
  """"+12.34%": a's relative gain over b, or "gain n/a" where b is 0 (a row that never hits,
  e.g. in a small scenario) or either is not finite."""
  if not (np.isfinite(a) and np.isfinite(b)) or b == 0:
    return "gain n/a"
  return f"{stats.relative_gain(a, b):+.2f}%"


def welch_p(a: Sequence[float], b: Sequence[float]) -> str:
  """One-sided Welch p for mean(a) > mean(b), with the paper's markers."""
  if len(a) < 2 or len(b) < 2:
    return "n/a (1 seed)"
  return p_text(stats.welch_t_test(a, b).p_one_sided_greater, min(len(a), len(b)))


class Intervals:
  """The bootstrap CIs of a report (`bootstrap.UserBootstrap`), computed on demand and kept;
  "n/a" where a row's arrays are missing."""

  def __init__(self, results: Results, arrays: Optional[Arrays], gauc_reduction: str = "samples",
               k: Optional[int] = None):
    """`gauc_reduction`: the reduction the results' "gauc" was computed with (the bootstrap
    recomputes "gauc" with it: `bootstrap.GAUC_METRICS`); `k`: the K of the HR@K and NDCG@K
    intervals (default: the results' first K)."""
    self._gauc = "gauc" if gauc_reduction == "samples" else f"gauc_{gauc_reduction}"
    if self._gauc not in bootstrap.GAUC_METRICS:
      raise ValueError(f"unknown GAUC reduction {gauc_reduction!r}")
    arrays = {n: a for n, a in (arrays or {}).items() if n in results and a}
    k = int(next(iter(results.values()))[0]["k"]) if k is None else int(k)
    self.boot = bootstrap.UserBootstrap(arrays, k) if arrays else None
    self.names = set(arrays)
    self._cache: Dict[Tuple[str, ...], bootstrap.Interval] = {}

  def row(self, name: str, metric: str) -> Optional[bootstrap.Interval]:
    if name not in self.names:
      return None
    key = ("row", name, metric)
    if key not in self._cache:
      self._cache[key] = self.boot.row(name, self._gauc if metric == "gauc" else metric)
    return self._cache[key]

  def difference(self, a: str, b: str, metric: str) -> Optional[bootstrap.Interval]:
    if a not in self.names or b not in self.names:
      return None
    key = ("diff", a, b, metric)
    if key not in self._cache:
      self._cache[key] = self.boot.difference(a, b, self._gauc if metric == "gauc" else metric)
    return self._cache[key]

  def text(self, name: str, metric: str) -> str:
    ci = self.row(name, metric)
    return ci.format() if ci else "n/a"


def subset_arrays(arrays: Optional[Arrays], key: str, value: int) -> Optional[Arrays]:
  """Each run's retrieval arrays (`harness.save_arrays`: one ranked positive per example)
  restricted to the examples whose `key` array (`cold_user`, `scenario_id`) equals `value`:
  the bootstrap of one user group or scenario. None where there are no arrays, and a row is
  left out when one of its runs has no such example (or no `key`; a missing `cold_user` reads
  as all 0)."""
  if not arrays:
    return None
  out = {}
  for name, runs in arrays.items():
    kept = []
    for a in runs:
      n = len(a["user_ids"])
      col = a.get(key, np.zeros(n, np.int64) if key == "cold_user" else None)
      if col is None:
        break
      sel = np.asarray(col) == value
      if not sel.any():
        break
      index = np.full(n, -1, np.int64)
      index[sel] = np.arange(int(sel.sum()))
      rows = np.asarray(a["rows"])
      keep_rows = sel[rows]
      kept.append({"user_ids": np.asarray(a["user_ids"])[sel],
                   "labels": np.asarray(a["labels"])[sel], "logits": np.asarray(a["logits"])[sel],
                   "rows": index[rows[keep_rows]], "ranks": np.asarray(a["ranks"])[keep_rows]})
    else:
      out[name] = kept
  return out or None


CLAIMS_INTRO = ("Verdict: **holds** only when the one-sided Welch p over seeds is below 0.05; "
                "otherwise **same direction, not significant** when the mean difference has the "
                "paper's sign, else **does not hold**. The difference's 95% CI is the paired "
                "bootstrap over users (both rows on the same resampled users).")


def claim_rows(claims: Sequence[Tuple[str, str, str]], results: Results, ci: Intervals,
               metrics: Sequence[str], labels: Mapping[str, str]) -> List[List[str]]:
  """One table row per (claim "a > b", metric) whose rows were run: the means, the relative
  gain, the difference with its paired bootstrap CI, the one-sided Welch p and the verdict."""
  rows = []
  for text, a, b in claims:
    if a not in results or b not in results:
      continue
    for m in metrics:
      va, vb = values(results[a], m), values(results[b], m)
      ma, mb = stats.mean_std(va)[0], stats.mean_std(vb)[0]
      words, p = stats.verdict(va, vb)
      d = ci.difference(a, b, m)
      rows.append([f"{text} ({labels[m]})",
                   f"{ma:.4f} vs {mb:.4f} ({gain_text(ma, mb)})",
                   f"{ma - mb:+.4f} {d.format() if d else 'n/a'}",
                   p_text(p, min(len(va), len(vb))), words])
  return rows


def retrieval_monitor(first: Mapping[str, Any], loss_text: str) -> str:
  """What a retrieval report's rows validated each epoch: `loss_text` for the loss, or the
  reported metric of `--valid_retrieval` (a summary's best.monitor, e.g. "val_hr@10")."""
  monitor = (first.get("best") or {}).get("monitor") or "val_loss"
  if monitor == "val_loss":
    return loss_text
  return (f"{monitor[len('val_'):].upper()} on the valid split with the evaluation's protocol "
          f"(`--valid_retrieval`, logged as `{monitor}`)")


def group_values(runs: Sequence[Mapping[str, Any]], where: str, group: Optional[str],
                 metric: str) -> List[float]:
  """A metric per seed over all examples (`group` None) or over one group's: the summaries'
  `where` ("groups": COUPLE's warm and cold users; "scenarios": M5's) entry `group`; NaN for a
  seed without it."""
  if group is None:
    return [float(r["metrics"][metric]) for r in runs]
  return [float(r.get(where, {}).get(group, {}).get("metrics", {}).get(metric, np.nan))
          for r in runs]


def group_claim_rows(claims: Sequence[Tuple[str, str, str]], results: Results,
                     cis: Mapping[Optional[str], Intervals], groups: Sequence[str], where: str,
                     metric: str, label: str, group_label=lambda g: g) -> List[List[str]]:
  """`claim_rows` within each group (`group_values`): the means over seeds, the difference
  with the group's own paired bootstrap CI (`cis[group]`, "n/a" without one), Welch, verdict.
  Claims whose rows lack the group are left out."""
  rows = []
  for g in groups:
    ci = cis.get(g)
    for text, a, b in claims:
      if a not in results or b not in results:
        continue
      va = group_values(results[a], where, g, metric)
      vb = group_values(results[b], where, g, metric)
      if not (np.all(np.isfinite(va)) and np.all(np.isfinite(vb))):
        continue
      words, p = stats.verdict(va, vb)
      d = ci.difference(a, b, metric) if ci else None
      ma, mb = float(np.mean(va)), float(np.mean(vb))
      rows.append([f"{text} ({group_label(g)}, {label})",
                   f"{ma:.4f} vs {mb:.4f} ({gain_text(ma, mb)})",
                   f"{ma - mb:+.4f} {d.format() if d else 'n/a'}",
                   p_text(p, min(len(va), len(vb))), words])
  return rows


def claims_section(rows: Sequence[Sequence[str]]) -> List[str]:
  if not rows:
    return []
  return ["## The paper's orderings, as measured here", "", CLAIMS_INTRO, "",
          report.markdown_table(["claim", "measured (mean over seeds)",
                                 "difference [95% CI]", "p (one-sided Welch)", "verdict"],
                                rows), ""]


def selection_section(rows: Sequence[harness.Row], results: Results) -> List[str]:
  """The learning-rate grid (each rate's seed-0 validation value, the choice) and the
  early-stopped epoch of every seed."""
  grids = [r.get("lr_grid") or {} for row in rows for r in results[row.name][:1]]
  rates = list(dict.fromkeys(lr for g in grids for lr in g))
  monitor = next((r["best"].get("monitor") for row in rows for r in results[row.name]
                  if r.get("best")), "val_auc")
  header = ["Method"] + [f"{monitor} at lr {lr}" for lr in rates] + [
      "chosen lr", "best epoch per seed", "epochs run per seed"]
  body = []
  for row in rows:
    res = results[row.name]
    grid = res[0].get("lr_grid") or {}
    cells = []
    for lr in rates:
      v = grid.get(lr, "")
      cells.append("diverged" if v is None and lr in grid else
                   (f"{v:.4f}" if isinstance(v, float) else ""))
    lr = res[0].get("lr")
    body.append([row.name] + cells + [
        "" if lr is None else harness.lr_name(lr),
        ", ".join(str((r.get("best") or {}).get("epoch", "?")) for r in res),
        ", ".join(f"{r.get('epochs_run', '?')}/{r.get('max_epochs', '?')}" for r in res)])
  return ["## Model selection (on the valid split)", "",
          "Each row's learning rate is the rate of the grid whose seed-0 run reached the best "
          f"`{monitor}` (on `valid`, at its best epoch); every seed then trains at "
          "that rate, stops early on the same monitor, and is evaluated at its best epoch. "
          "Epochs run: the epochs trained before early stopping, of the maximum.", "",
          report.markdown_table(header, body), ""]


def timings_section(timings: Mapping[str, float]) -> List[str]:
  if not timings:
    return []
  return ["## Run times (this invocation)", "",
          report.markdown_table(["run", "seconds"], [[k, f"{v:.0f}"] for k, v in timings.items()]),
          ""]


def closing_sections(rows: Sequence[harness.Row], results: Results,
                     timings: Mapping[str, float], stem: str) -> List[str]:
  """What ends every results file: the model selection (when rows chose a learning rate), the
  run times and the hand-written analysis of `<stem>.notes.md` (when it exists)."""
  lines: List[str] = []
  if any(results[r.name][0].get("lr_grid") is not None for r in rows):
    lines += selection_section(rows, results)
  lines += timings_section(timings)
  notes = stem + ".notes.md"
  if os.path.exists(notes):
    with open(notes) as f:
      lines += ["## Analysis", "", f.read().strip(), ""]
  return lines


def world_config(scale: Any, **more: Any):
  """The synthetic world of a paper's scale: its preset with the scale's `world_overrides`,
  then `more` (a swept knob). Every paper module exposes it as its own `world_config`."""
  from tfrec.datasets import synthetic
  return synthetic.get_config(scale.synthetic_preset, **dict(dict(scale.world_overrides), **more))


def report_opening(title: str, command: str, seconds: float, results: Results, notes_stem: str,
                   dataset_text: str, scale_text: str, extra_flags: Sequence[str], seeds: int
                   ) -> List[str]:
  """What every results file opens with: the title, the command and its times, the dataset,
  the scale (with the flags every row got) and the seeds."""
  return [f"# {title}", "",
          f"Generated by `{command}` on {datetime.date.today().isoformat()} "
          f"({seconds / 60:.0f} min in this invocation; the reported runs took "
          f"{compute_minutes(results):.0f} min of training and evaluation on this "
          "machine). Do not edit: re-run the command; the "
          f"analysis below comes from `{notes_stem}.notes.md`.", "",
          f"- **Dataset:** {dataset_text}",
          f"- **Scale:** {scale_text}"
          + (f"; every row also gets `{' '.join(extra_flags)}`" if extra_flags else "") + ".",
          f"- **Seeds:** {seeds} per row (training seeds 0-{seeds - 1}); cells are the mean ± "
          "sample std over seeds."]


def compute_minutes(results: Results) -> float:
  """Minutes of training and evaluation the reported runs took when they ran (cached runs
  included; the learning-rate grid's other rates not)."""
  return sum(float(r.get("train_seconds") or 0) + float(r.get("eval_seconds") or 0)
             for runs in results.values() for r in runs) / 60
