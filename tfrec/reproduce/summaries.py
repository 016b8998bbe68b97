"""What the reproduction keeps of an evaluation: the JSON summary of a (row, seed)
(`summarize`), the per-example arrays behind the bootstrap and Fig. 5 (`save_arrays`), SEMI
Fig. 5's activity groups, and `values` (a metric per seed). `tfrec.reproduce.harness` re-exports
them.
"""

from __future__ import annotations

import os
from typing import Any, Dict, List, Mapping, Sequence

import numpy as np

from tfrec import metrics
from tfrec.reproduce import report

# SEMI Fig. 5 groups users by their target-domain history length; here the groups are the
# quantiles of that length on the evaluated split (absolute bins such as "0-1 events" hold a
# handful of examples on datasets whose test histories are long).
NUM_ACTIVITY_GROUPS = 5


def summarize(result: Mapping[str, Any], row: Any, seed: int) -> Dict[str, Any]:
  """The JSON-ready part of an evaluation that the report needs."""
  oracle = result.get("oracle", {})
  if isinstance(oracle.get("metrics"), dict):  # a retrieval result: {available, metrics}
    oracle = oracle["metrics"]
  out = {"row": row.name, "seed": seed, "metrics": dict(result["metrics"]),
         "oracle": {m: v for m, v in oracle.items() if isinstance(v, float)},
         "counts": dict(result["counts"]),
         "k": int(result["protocol"]["ks"][0]) if result["protocol"].get("ks") else 0,
         "checkpoint": result["checkpoint"]["which"]}
  if result.get("groups"):  # retrieval: warm and cold users apart
    out["groups"] = {name: dict(g) for name, g in result["groups"].items()}
  if result.get("scenarios"):  # retrieval: per scenario (M5)
    out["scenarios"] = {name: dict(g) for name, g in result["scenarios"].items()}
  return out


def save_arrays(path: str, arrays: Mapping[str, Any]) -> None:
  """What Fig. 5 and the bootstrap over users need per example (user, history length, label,
  logit) and per ranked positive (its example and its 0-based rank among the negatives, ties
  against it).

  A retrieval evaluation's arrays (per example "user_ids", "ranks", "cold_user"; every example
  one ranked positive) are stored in the same layout: label 1, logit 0 and history length 0 per
  example, `rows` = every example, plus `cold_user`."""
  if "labels" not in arrays and "ranks" in arrays:
    ranks = np.asarray(arrays["ranks"], np.int64)
    n = len(ranks)
    arrays = {"user_ids": arrays["user_ids"], "target_len": np.zeros(n, np.int64),
              "labels": np.ones(n, np.int64), "logits": np.zeros(n, np.float32),
              "rows": np.arange(n, dtype=np.int64), "ranks": ranks,
              "cold_user": arrays.get("cold_user", np.zeros(n, np.int64)),
              **({"scenario_id": arrays["scenario_id"]} if "scenario_id" in arrays else {})}
  scores = arrays.get("scores")
  ranks = (metrics.rank_of_positive(scores[:, 0], scores[:, 1:]) if scores is not None
           else np.asarray(arrays.get("ranks", np.zeros(0, np.int64)), np.int64))
  extra = {k: np.asarray(arrays[k]) for k in ("cold_user", "scenario_id") if k in arrays}
  tmp = report.incomplete_path(path) + ".npz"
  np.savez(tmp, user_ids=np.asarray(arrays["user_ids"]),
           target_len=np.asarray(arrays["target_len"]), labels=np.asarray(arrays["labels"]),
           logits=np.asarray(arrays["logits"]),
           rows=np.asarray(arrays.get("rows", np.zeros(0, np.int64))), ranks=ranks, **extra)
  os.replace(tmp, path)


def quantile_edges(lengths: np.ndarray, groups: int = NUM_ACTIVITY_GROUPS) -> List[int]:
  """Upper bounds (inclusive) of `groups` groups of about equal size by history length."""
  qs = np.quantile(np.asarray(lengths), np.linspace(0, 1, groups + 1)[1:-1], method="lower")
  edges = sorted(set(int(q) for q in qs))
  return edges + [int(np.max(lengths))] if edges[-1:] != [int(np.max(lengths))] else edges


def group_labels(edges: Sequence[int]) -> List[str]:
  lows = [0] + [e + 1 for e in edges[:-1]]
  return [f"{lo}-{hi}" if hi > lo else f"{lo}" for lo, hi in zip(lows, edges)]


def activity_groups(arrays: Mapping[str, np.ndarray], k: int, edges: Sequence[int]
                    ) -> Dict[str, Dict[str, float]]:
  """Per history-length group (`edges`: inclusive upper bounds): examples, AUC, and HR@k of
  the ranked positives (Fig. 5).

  `arrays` as `save_arrays` writes them: per example "target_len", "labels", "logits"; per
  ranked positive "rows" (its example) and "ranks" (0-based).
  """
  lens = np.asarray(arrays["target_len"])
  labels, logits = np.asarray(arrays["labels"]), np.asarray(arrays["logits"])
  rows, ranks = np.asarray(arrays["rows"]), np.asarray(arrays["ranks"])
  out = {}
  lo = 0
  for label, hi in zip(group_labels(edges), edges):
    sel = (lens >= lo) & (lens <= hi)
    lo = hi + 1
    both = sel.any() and 0 < labels[sel].sum() < sel.sum()
    g: Dict[str, float] = {"examples": int(sel.sum()),
                           "auc": float(metrics.auc(labels[sel], logits[sel])) if both
                           else float("nan")}
    ranked = sel[rows] if len(rows) else np.zeros(0, bool)
    g["ranked"] = int(ranked.sum())
    g[f"hr@{k}"] = float(np.mean(ranks[ranked] < k)) if ranked.any() else float("nan")
    out[label] = g
  return out


def values(results: Sequence[Mapping[str, Any]], metric: str, where: str = "metrics"
           ) -> List[float]:
  return [float(r[where][metric]) for r in results]
