"""Dataset statistics of a converted MovieLens dataset in the papers' form (SEMI Tables 3-5,
ADAPT Tables I/III): instances, users, items per domain, average sequence length, categories per
sequence, overlap between domains. Printed by `python -m tfrec.datasets.movielens` and written to
DIR/stats.md.
"""

from __future__ import annotations

from typing import List

import numpy as np

from tfrec.data import schema
from tfrec.datasets.movielens.conversion import (NON_DIGIT_REGION, SCENARIO_NAMES, SPLITS,
                                                 Prepared)


def _avg(x: np.ndarray) -> str:
  return f"{float(np.mean(x)):.2f}" if len(x) else "-"


def _domain_table(p: Prepared) -> List[str]:
  ev, store = p.events, p.store
  lines = ["| domain | primary genres | movies (cold) | rated movies | ratings (share) | "
           "positives | negatives | users |", "|---|---|---|---|---|---|---|---|"]
  genres = (p.info.extra["source_genres"], p.info.extra["target_genres"])
  for d, name in enumerate(schema.DOMAIN_NAMES):
    m = ev.domain == d
    in_d = store.domain[1:] == d
    g = ", ".join(genres[d]) if len(genres[d]) <= 4 else f"{len(genres[d])} others"
    lines.append(
        f"| {name} | {g} | {int(in_d.sum()):,} ({int(store.cold[1:][in_d].sum())}) | "
        f"{len(np.unique(ev.item[m])):,} | {int(m.sum()):,} ({m.mean() if len(m) else 0:.1%}) | "
        f"{int((m & (ev.label == 1)).sum()):,} | {int((m & (ev.label == 0)).sum()):,} | "
        f"{len(np.unique(ev.user[m])):,} |")
  both = np.intersect1d(ev.user[ev.domain == 0], ev.user[ev.domain == 1])
  pos = ev.label == 1
  both_pos = np.intersect1d(ev.user[pos & (ev.domain == 0)], ev.user[pos & (ev.domain == 1)])
  lines += ["", f"Overlap: {len(both):,} of {p.info.num_users:,} users rated movies of both "
            f"domains; {len(both_pos):,} have positives in both."]
  return lines


def _ranking_table(p: Prepared) -> List[str]:
  lines = ["| ranking split | instances | users | items | positive rate | avg source seq | "
           "avg target seq | categories / source seq | categories / target seq |",
           "|---|---|---|---|---|---|---|---|---|"]
  ev = p.events
  for split in SPLITS["ranking"]:
    plan = p.plans["ranking", split]
    cells = []
    for name in ("source", "target"):
      lo, hi = plan.windows[name]
      cells.append((_avg(hi - lo),
                     _avg(p.seqs[name].distinct_categories(lo, hi, p.config.max_history))))
    rows = plan.rows
    lines.append(f"| {split} | {len(rows):,} | {len(np.unique(ev.user[rows])):,} | "
                 f"{len(np.unique(ev.item[rows])):,} | {_avg(ev.label[rows])} | "
                 f"{cells[0][0]} | {cells[1][0]} | {cells[0][1]} | {cells[1][1]} |")
  return lines


def _other_table(p: Prepared) -> List[str]:
  ev = p.events
  lines = ["| record set | instances | users | items | avg seq length | categories / seq |",
           "|---|---|---|---|---|---|"]
  for split in SPLITS["matching"]:
    plan = p.plans["matching", split]
    lo, hi = plan.windows["mixed"]
    cats = p.seqs["mixed"].distinct_categories(lo, hi, p.config.max_match_history)
    lines.append(f"| matching/{split} | {len(plan.rows):,} | "
                 f"{len(np.unique(ev.user[plan.rows])):,} | "
                 f"{len(np.unique(ev.item[plan.rows])):,} | {_avg(hi - lo)} | {_avg(cats)} |")
  plan = p.plans["ccl_pair", "train"]
  lens = [plan.windows[n][1] - plan.windows[n][0] for n in ("source", "target")]
  lines.append(f"| ccl_pair/train | {len(plan.rows):,} | {len(np.unique(ev.user[plan.rows])):,} "
               f"| - | source {_avg(lens[0])}, target {_avg(lens[1])} | - |")
  for split in SPLITS["dual_pair"]:
    d = p.dual_splits[split]
    lines.append(f"| dual_pair/{split} | {len(d):,} | - | {len(np.unique(d[:, 0])):,} "
                 f"target -> {len(np.unique(d[:, 1])):,} source | - | - |")
  return lines


def _cold_user_lines(p: Prepared) -> List[str]:
  """Cold users (no warm target positive before the test cut) and the records they flag."""
  ev = p.events
  parts = []
  for kind in ("ranking", "matching"):
    for split in SPLITS[kind]:
      rows = p.plans[kind, split].rows
      parts.append(f"{kind}/{split} {int(p.cold_user[ev.user[rows]].sum()):,} of {len(rows):,}")
  return [f"Cold users (cold_user = 1: no positive target event on a warm movie before the "
          f"test cut): {int(p.cold_user.sum()):,} of {p.info.num_users:,}; records flagged: "
          + ", ".join(parts) + "."]


def statistics(p: Prepared, seconds: float = float("nan")) -> str:
  """Dataset statistics in the papers' form (SEMI Tables 3-5, ADAPT Tables I/III), Markdown."""
  ev = p.events
  scen = np.bincount(p.scenario, minlength=p.config.num_scenarios)
  lines = [f"# {p.info.name}: {p.info.num_users:,} users, {p.info.num_items:,} movies, "
           f"{len(ev.t):,} ratings (converted in {seconds:.1f} s)", "",
           f"Labels: rating >= {p.config.positive_min} positive, <= {p.config.negative_max} "
           f"negative, {int((ev.label < 0).sum()):,} ratings in between dropped. "
           f"Split: {p.config.split} (test_share {p.config.test_share}, valid_share "
           f"{p.config.valid_share} of the training period); {int(ev.test.sum()):,} ratings "
           f"in the users' test periods, {int(ev.valid.sum()):,} in their validation periods, "
           f"{int((~ev.test & ~ev.valid).sum()):,} in their training periods.", "",
           *_domain_table(p), "", *_ranking_table(p), "", *_cold_user_lines(p), "",
           *_other_table(p), "",
           "Skipped (counted, never silent):"]
  lines += [f"- {reason}: {n:,}" for reason, n in p.skipped.items()]
  lines += ["", "Users per scenario: " + ", ".join(
      f"{SCENARIO_NAMES[i] if i < len(SCENARIO_NAMES) else i} {n:,}" for i, n in enumerate(scen))
      + f"; zip codes not starting with a digit (region {NON_DIGIT_REGION}): {p.non_digit_zips}"]
  return "\n".join(lines) + "\n"
