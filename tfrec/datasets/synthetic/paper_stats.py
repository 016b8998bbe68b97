"""The papers' dataset figures, measured on a synthetic dataset beside the papers' own numbers
(printed into `stats.md`; the per-paper presets are calibrated against them):

  SEMI   Table 4: categories per target sequence and how many the source sequence shares
         (in `stats.py`, per ranking split); shares of sparse (<= 1, <= 5 target events) and
         cold users' examples.
  ADAPT  Table III: with both sequences cut to their last 20 behaviours, the average length of
         the storytelling (target) and product (source) sequences, categories per sequence and
         overlapping categories; Table II: the title-similarity histogram (eq. 1) of dual pairs.
  THACIL §4.1 / Fig. 3a: target clicks per user in the train period (the paper: 160 on
         average, 65% of users below the average).
  COUPLE §4.4: the share of the target domain's tags that the source domain uses too (TPMV
         60%, Amazon 25%).
  M5     §5.1.1: instances (matching records) per user (Dataset-H: 150M / 30M = 5) and the
         traffic of each scenario (the paper gives no shares; "Local" scenarios have fewer
         samples).
"""

from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np

from tfrec.data import schema
from tfrec.datasets.synthetic.items import title_similarity
from tfrec.datasets.synthetic.world import dual_pair_records

ADAPT_TABLE3 = {"target_length": 16.10, "source_length": 19.88, "target_categories": 8.17,
                "source_categories": 6.83, "overlap": 2.76}  # SRD-1 (SRD-2: 16.16 / 19.90 /
                                                             # 8.31 / 7.03 / 2.77).
ADAPT_TABLE2 = {"SRD-1": (0.418, 0.184, 0.110, 0.110, 0.178),
                "SRD-2": (0.299, 0.185, 0.128, 0.145, 0.243)}
TITLE_BINS = ("[0.0, 0.2)", "[0.2, 0.4)", "[0.4, 0.6)", "[0.6, 0.8)", "[0.8, 1.0]")
THACIL_CLICKS = {"mean": 160.0, "below_mean": 0.65}
COUPLE_TAG_OVERLAP = {"TPMV": 0.60, "Amazon": 0.25}
M5_INSTANCES_PER_USER = 150 / 30
ADAPT_MAX_LEN = 20


def title_histogram(similarities: np.ndarray) -> np.ndarray:
  """<float64>[5] shares of `similarities` in ADAPT Table II's bins (the last one closed)."""
  s = np.asarray(similarities, np.float64)
  if not len(s):
    return np.zeros(5)
  idx = np.minimum((s * 5 + 1e-9).astype(np.int64), 4)
  return np.bincount(idx, minlength=5) / len(s)


def dual_title_similarities(world) -> np.ndarray:
  """ADAPT eq. 1 of every dual pair of `world`."""
  title = world.store.title
  return np.array([title_similarity(title[p["target_item_id"]], title[p["source_item_id"]])
                   for p in dual_pair_records(world)])


def tag_overlap(store) -> float:
  """Share of the distinct tags of target items that some source item carries too."""
  tags = [set(store.tags[store.item_ids(domain=d)].ravel().tolist()) - {0}
          for d in (schema.SOURCE, schema.TARGET)]
  return len(tags[0] & tags[1]) / max(len(tags[1]), 1)


class PaperFigures:
  """Streaming sums of the per-user figures (module docstring); `merge` adds another's."""

  def __init__(self, category: np.ndarray, num_scenarios: int):
    self.category = category
    self.adapt = np.zeros(6)  # examples, target len, source len, target cats, source cats, overlap
    self.clicks: List[int] = []  # per regular user: target positives in the train period.
    self.instances: List[int] = []  # per regular user: matching records (all splits).
    self.scenarios = np.zeros(num_scenarios, np.int64)  # matching records per scenario.
    self.world: Dict[str, object] = {}

  def add_user(self, records: Dict[str, Dict[str, Sequence[dict]]]) -> None:
    """One regular user's records (kind -> split -> records)."""
    matching = records.get("matching", {})
    self.clicks.append(len(matching.get("train", ())))
    self.instances.append(sum(len(v) for v in matching.values()))
    for recs in matching.values():
      for r in recs:
        self.scenarios[r["scenario_id"]] += 1
    for r in records.get("ranking", {}).get("test", ()):
      tgt = r["target_item_ids"][-ADAPT_MAX_LEN:]
      src = r["source_item_ids"][-ADAPT_MAX_LEN:]
      ct, cs = set(self.category[tgt].tolist()), set(self.category[src].tolist())
      self.adapt += (1, len(tgt), len(src), len(ct), len(cs), len(ct & cs))

  def merge(self, other: "PaperFigures") -> None:
    self.adapt += other.adapt
    self.clicks += other.clicks
    self.instances += other.instances
    self.scenarios += other.scenarios

  def set_world(self, world) -> None:
    """The world-level figures: title-similarity histogram of dual pairs, tag overlap."""
    self.world = {"title_histogram": title_histogram(dual_title_similarities(world)),
                  "tag_overlap": tag_overlap(world.store)}

  def summary(self) -> Dict[str, float]:
    """Every figure as a flat dict (the calibration's targets compare against it)."""
    n = max(self.adapt[0], 1)
    clicks = np.asarray(self.clicks, np.float64)
    out = {"adapt_target_length": self.adapt[1] / n, "adapt_source_length": self.adapt[2] / n,
           "adapt_target_categories": self.adapt[3] / n,
           "adapt_source_categories": self.adapt[4] / n, "adapt_overlap": self.adapt[5] / n,
           "thacil_clicks_mean": float(clicks.mean()) if len(clicks) else 0.0,
           "thacil_below_mean": float(np.mean(clicks < clicks.mean())) if len(clicks) else 0.0,
           "m5_instances_per_user": float(np.mean(self.instances)) if self.instances else 0.0}
    total = max(self.scenarios.sum(), 1)
    for s, c in enumerate(self.scenarios):
      out[f"m5_scenario_{s}"] = c / total
    if self.world:
      hist = self.world["title_histogram"]
      out["adapt_title_below_0.6"] = float(hist[:3].sum())
      out["couple_tag_overlap"] = float(self.world["tag_overlap"])
    return out

  def markdown(self) -> List[str]:
    """stats.md sections: our figure beside the paper's, per paper."""
    f = self.summary()
    a = ADAPT_TABLE3
    lines = ["", "ADAPT Table III (ranking/test, both sequences cut to their last 20; "
             "storytelling = target, product = source):", "",
             "| | storytelling length | product length | storytelling categories | "
             "product categories | overlap |", "|---|---|---|---|---|---|",
             f"| ours | {f['adapt_target_length']:.2f} | {f['adapt_source_length']:.2f} | "
             f"{f['adapt_target_categories']:.2f} | {f['adapt_source_categories']:.2f} | "
             f"{f['adapt_overlap']:.2f} |",
             f"| ADAPT SRD-1 | {a['target_length']} | {a['source_length']} | "
             f"{a['target_categories']} | {a['source_categories']} | {a['overlap']} |"]
    if self.world:
      hist = self.world["title_histogram"]
      lines += ["", "ADAPT Table II (title similarity, eq. 1, of every dual pair):", "",
                "| | " + " | ".join(TITLE_BINS) + " |", "|---" * 6 + "|",
                "| ours | " + " | ".join(f"{h:.1%}" for h in hist) + " |"]
      lines += [f"| ADAPT {name} | " + " | ".join(f"{h:.1%}" for h in row) + " |"
                for name, row in ADAPT_TABLE2.items()]
      lines += ["", f"COUPLE: {f['couple_tag_overlap']:.1%} of the target domain's tags are "
                f"used by the source domain too (the paper: TPMV "
                f"{COUPLE_TAG_OVERLAP['TPMV']:.0%}, Amazon {COUPLE_TAG_OVERLAP['Amazon']:.0%})."]
    lines += ["", f"THACIL: {f['thacil_clicks_mean']:.1f} target positives per user in the train "
              f"period, {f['thacil_below_mean']:.0%} of users below that mean (the paper: "
              f"{THACIL_CLICKS['mean']:.0f}, {THACIL_CLICKS['below_mean']:.0%}).", "",
              f"M5: {f['m5_instances_per_user']:.2f} matching records per user (Dataset-H: "
              f"{M5_INSTANCES_PER_USER:.0f}); scenario traffic "
              + ", ".join(f"{s}: {f[f'm5_scenario_{s}']:.1%}" for s in range(len(self.scenarios)))
              + " (the paper gives no shares)."]
    return lines

