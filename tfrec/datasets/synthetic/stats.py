"""Statistics of a synthetic dataset, streamed while it is written: record counts, positive
rates, a binned oracle AUC and the papers' dataset figures (SEMI Table 4 for target histories
here; ADAPT, THACIL, COUPLE and M5 in `paper_stats.py`), printed by the generator's summary and
written to `stats.md`."""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from tfrec.data.info import DatasetInfo
from tfrec.datasets.synthetic.config import SPLITS
from tfrec.datasets.synthetic.paper_stats import PaperFigures

# SEMI Table 4 (test split; micro-video = target, product = source): categories per target
# sequence, how many of them the source sequence has too, their share (1.96 / 16.78 on the
# test split, 1.93 / 16.33 on train: 12%).
SEMI_TABLE4 = {"target_categories": 16.3, "overlap": 1.93, "overlap_share": 0.12}
# Per ranking split: examples, sums of target/source categories, overlapping categories,
# target length, and counts of <= 1 / <= 5 target events and of cold users.
_HIST_FIELDS = ("examples", "target_categories", "source_categories", "overlap",
                "target_length", "le1", "le5", "cold")


def history_stats(category: np.ndarray, recs: Sequence[dict]) -> np.ndarray:
  """<float64>[len(_HIST_FIELDS)] sums over ranking records (see `_HIST_FIELDS`)."""
  out = np.zeros(len(_HIST_FIELDS))
  for r in recs:
    tgt = set(category[r["target_item_ids"]].tolist())
    src = set(category[r["source_item_ids"]].tolist())
    n = len(r["target_item_ids"])
    out += (1, len(tgt), len(src), len(tgt & src), n, n <= 1, n <= 5, r.get("cold_user", 0))
  return out


def history_summary(sums: np.ndarray) -> Dict[str, float]:
  """Averages of `history_stats` sums: target/source categories per example, overlap, its
  share of the target categories, mean target length, shares with <= 1 / <= 5 target events
  and of cold users' examples."""
  d = dict(zip(_HIST_FIELDS, sums))
  n = max(d["examples"], 1)
  return {"target_categories": d["target_categories"] / n,
          "source_categories": d["source_categories"] / n,
          "overlap": d["overlap"] / n,
          "overlap_share": d["overlap"] / max(d["target_categories"], 1),
          "target_length": d["target_length"] / n,
          "le1": d["le1"] / n, "le5": d["le5"] / n, "cold": d["cold"] / n}


class Stats:
  """Streaming record counts, positive rates, a binned oracle AUC and SEMI Table-4 history
  figures (`history_stats`, when given the item categories) per ranking split."""

  BINS = 4096

  def __init__(self, category: Optional[np.ndarray] = None, num_scenarios: int = 0):
    self.category = category
    self.papers = (PaperFigures(category, num_scenarios)
                   if category is not None and num_scenarios else None)
    self.counts: Dict[Tuple[str, str], int] = {}
    self.hist: Dict[str, np.ndarray] = {}  # split -> [2, BINS] negatives, positives.
    self.mean_prob: Dict[str, float] = {}
    self.history: Dict[str, np.ndarray] = {}  # split -> history_stats sums.

  def add(self, kind: str, split: str, recs: List[dict]) -> None:
    self.counts[kind, split] = self.counts.get((kind, split), 0) + len(recs)
    if kind != "ranking" or not recs:
      return
    if self.category is not None:
      self.history[split] = self.history.get(split, 0) + history_stats(self.category, recs)
    probs = np.array([r["oracle_prob"] for r in recs])
    labels = np.array([r["label"] for r in recs])
    bins = np.minimum((probs * self.BINS).astype(np.int64), self.BINS - 1)
    h = self.hist.setdefault(split, np.zeros((2, self.BINS), np.int64))
    np.add.at(h, (labels, bins), 1)
    self.mean_prob[split] = self.mean_prob.get(split, 0.0) + probs.sum()

  def add_user(self, records: Dict[str, Dict[str, List[dict]]], regular: bool) -> None:
    """One user's records (kind -> split -> records); `regular`: not a CCL-only user."""
    for kind, by_split in records.items():
      for split, recs in by_split.items():
        self.add(kind, split, recs)
    if regular and self.papers is not None:
      self.papers.add_user(records)

  def merge(self, other: "Stats") -> None:
    if self.papers is not None and other.papers is not None:
      self.papers.merge(other.papers)
    for key, n in other.counts.items():
      self.counts[key] = self.counts.get(key, 0) + n
    for split, h in other.hist.items():
      self.hist[split] = self.hist.get(split, 0) + h
      self.mean_prob[split] = self.mean_prob.get(split, 0.0) + other.mean_prob[split]
    for split, h in other.history.items():
      self.history[split] = self.history.get(split, 0) + h

  def auc(self, split: str) -> float:
    neg, pos = self.hist[split]
    if not neg.sum() or not pos.sum():
      return float("nan")
    below = np.cumsum(neg) - neg
    return float((pos * below).sum() + 0.5 * (pos * neg).sum()) / (pos.sum() * neg.sum())

  def history_table(self) -> List[str]:
    """SEMI Table-4 style lines per ranking split, the paper's figures beside ours."""
    lines = ["  target histories (SEMI Table 4: 16.3 categories per target sequence, 1.93 of "
             "them in the source sequence, 12%):",
             f"    {'split':<10s} {'tgt cats':>8s} {'overlap':>8s} {'share':>6s} "
             f"{'<=1 tgt':>7s} {'<=5 tgt':>7s} {'cold':>6s}"]
    for split in SPLITS["ranking"]:
      if split not in self.history:
        continue
      h = history_summary(self.history[split])
      lines.append(f"    {split:<10s} {h['target_categories']:>8.2f} {h['overlap']:>8.2f} "
                   f"{h['overlap_share']:>6.1%} {h['le1']:>7.1%} {h['le5']:>7.1%} "
                   f"{h['cold']:>6.1%}")
    lines.append(f"    {'SEMI':<10s} {SEMI_TABLE4['target_categories']:>8.2f} "
                 f"{SEMI_TABLE4['overlap']:>8.2f} {SEMI_TABLE4['overlap_share']:>6.1%} "
                 f"{'-':>7s} {'-':>7s} {'-':>6s}")
    return lines

  def markdown(self, info: DatasetInfo) -> str:
    """stats.md: record counts and the Table-4 figures (deterministic: no timings)."""
    lines = [f"# {info.name} seed={info.extra['seed']}", "",
             f"{info.num_users} users ({info.extra['config'].get('ccl_only_users', 0)} of them "
             f"CCL-only), {info.num_items} items.", "",
             "| kind/split | records | positive rate | mean oracle_prob | oracle AUC |",
             "|---|---|---|---|---|"]
    order = {(k, s): (k, i) for k, splits in SPLITS.items() for i, s in enumerate(splits)}
    for (kind, split), n in sorted(self.counts.items(), key=lambda kv: order[kv[0]]):
      if kind == "ranking" and split in self.hist:
        pos = self.hist[split][1].sum()
        lines.append(f"| {kind}/{split} | {n} | {pos / max(n, 1):.3f} | "
                     f"{self.mean_prob[split] / max(n, 1):.3f} | {self.auc(split):.3f} |")
      else:
        lines.append(f"| {kind}/{split} | {n} | | | |")
    lines += ["", "Target histories of ranking examples (SEMI Table 4 style; the paper: "
              f"{SEMI_TABLE4['target_categories']} categories per target sequence, "
              f"{SEMI_TABLE4['overlap']} of them also in the source sequence, "
              f"{SEMI_TABLE4['overlap_share']:.0%}):", "",
              "| split | target categories | overlap with source | share | <= 1 target event "
              "| <= 5 target events | cold users' examples |", "|---|---|---|---|---|---|---|"]
    for split in SPLITS["ranking"]:
      if split in self.history:
        h = history_summary(self.history[split])
        lines.append(f"| {split} | {h['target_categories']:.2f} | {h['overlap']:.2f} | "
                     f"{h['overlap_share']:.1%} | {h['le1']:.1%} | {h['le5']:.1%} | "
                     f"{h['cold']:.1%} |")
    lines.append(f"| SEMI (Table 4) | {SEMI_TABLE4['target_categories']} | "
                 f"{SEMI_TABLE4['overlap']} | {SEMI_TABLE4['overlap_share']:.0%} | | | |")
    if self.papers is not None:
      lines += self.papers.markdown()
    return "\n".join(lines) + "\n"

  def summary(self, info: DatasetInfo, seconds: float) -> str:
    total = sum(self.counts.values())
    days = info.extra["config"]["days"]
    lines = [f"{info.name} seed={info.extra['seed']}: {info.num_users} users, "
             f"{info.num_items} items, {total} records in {seconds:.1f} s "
             f"({total / max(seconds, 1e-9):,.0f} records/s)",
             f"  splits by day: train = days 0-{days - 3}, valid = day {days - 2}, "
             f"test and test_cold = day {days - 1}"]
    order = {(k, s): (k, i) for k, splits in SPLITS.items() for i, s in enumerate(splits)}
    for (kind, split), n in sorted(self.counts.items(), key=lambda kv: order[kv[0]]):
      line = f"  {kind + '/' + split:<20s} {n:>10d}"
      if kind == "ranking" and split in self.hist:
        pos = self.hist[split][1].sum()
        line += (f"  positive rate {pos / max(n, 1):.3f}  mean oracle_prob "
                 f"{self.mean_prob[split] / max(n, 1):.3f}  oracle AUC {self.auc(split):.3f}")
      lines.append(line)
    if self.history:
      lines += self.history_table()
    return "\n".join(lines)


