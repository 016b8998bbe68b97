"""The pointwise pass of an evaluation: every example's logit from the training path
(`model(features)`), AUC and GAUC of the model and of the records' planted oracle_prob."""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf

from tfrec import metrics
from tfrec.evaluation.sampled import batches, has_oracle_prob, model_features

FORMAT = "tfrec.evaluate/1"
# Pass 1 keeps these per example; "file" and "record" too when the data carry provenance.
_COLUMNS = ("labels", "logits", "user_ids", "item_ids", "oracle_prob", "timestamps",
            "scenario_ids", "source_len", "target_len")
KEPT = ("labels", "logits", "user_ids", "item_ids", "oracle_prob", "source_len", "target_len",
         "file", "record")

_REDUCTION_TEXT = {
    "mean": "plain mean over users (EasyRec)",
    "samples": "weighted by the user's examples (FuxiCTR, THACIL's code)",
    "positives": "weighted by the user's positives (RecBole)",
}


def pointwise_metrics(labels: np.ndarray, scores: np.ndarray, users: np.ndarray,
                       reduction: str) -> Dict[str, Any]:
  g = metrics.gauc(users, labels, scores, reduction)
  return {"auc": metrics.auc(labels, scores), "gauc": g["gauc"], "users": g["users"],
          "users_skipped": g["users_skipped"]}



def pointwise_pass(ds: tf.data.Dataset, pointwise: Callable,
                   selected: Optional[np.ndarray] = None) -> Dict[str, np.ndarray]:
  """Pass 1: per evaluated example of the split (`selected`, from `sample_users`; None: all)
  (`_COLUMNS`, and "file", "record" with provenance) its label, ids, request time, scenario,
  recorded oracle_prob (-1 when absent) and the pointwise logit of the training path,
  `model(features)`."""
  cols: Dict[str, list] = {k: [] for k in _COLUMNS}
  for _, _, batch in batches(ds, selected):
    n = int(tf.shape(batch["label"])[0])
    cols["labels"].append(batch["label"].numpy())
    cols["logits"].append(pointwise(model_features(batch)).numpy())
    cols["user_ids"].append(batch["user_id"].numpy())
    cols["item_ids"].append(batch["item_id"].numpy())
    cols["oracle_prob"].append(batch["oracle_prob"].numpy() if "oracle_prob" in batch
                               else np.full(n, -1.0, np.float32))
    cols["timestamps"].append(batch["timestamp"].numpy())
    cols["scenario_ids"].append(batch["scenario_id"].numpy() if "scenario_id" in batch
                                else np.zeros(n, np.int64))
    for d in ("source", "target"):  # history lengths (after truncation): user activity groups
      mask = batch.get(f"{d}_mask")
      cols[f"{d}_len"].append(np.zeros(n, np.int64) if mask is None
                              else np.sum(mask.numpy(), axis=1).astype(np.int64))
    if "_file" in batch:
      cols.setdefault("file", []).append(batch["_file"].numpy())
      cols.setdefault("record", []).append(batch["_record"].numpy())
  if not cols["labels"]:
    raise ValueError("no examples to evaluate (empty split or max_examples)")
  return {k: np.concatenate(v) for k, v in cols.items()}


TOPK_PREFIX = "topk_"  # result["metrics"] keys of the top-K impression metrics: topk_ndcg@10


def topk_result(cols: Mapping[str, np.ndarray], ks: Sequence[int]) -> Dict[str, Any]:
  """THACIL §4.4 / Fig. 4 (`tfrec.metrics.topk`): each user's impressions of the split ranked
  by the model's logit (and by the records' oracle_prob, when present), precision, recall,
  F-score and NDCG of the top K, plain mean over users with a click."""
  labels = cols["labels"].astype(np.int64)
  users = cols["user_ids"].astype(np.int64)
  model = metrics.topk_metrics(users, labels, cols["logits"], ks)
  oracle = (metrics.topk_metrics(users, labels, cols["oracle_prob"], ks)
            if has_oracle_prob(cols) else None)
  return {"ks": [int(k) for k in ks], "reduction": "users", "ties": "pessimistic",
          "ndcg_ideal": "relevant",
          "definition": "per user: the user's impressions in this split sorted by score "
                        "(unclicked first among ties); precision@K = clicks in the top K / K, "
                        "recall@K = clicks in the top K / the user's clicks, F-score their "
                        "harmonic mean, NDCG@K against min(K, clicks) clicks in front; the "
                        "plain mean over users with a click (THACIL §4.4)",
          "users": model["users"], "users_skipped": model["users_skipped"],
          "model": {k: v for k, v in model.items() if "@" in k},
          "oracle": None if oracle is None else {k: v for k, v in oracle.items() if "@" in k}}


def pointwise_result(cols: Mapping[str, np.ndarray], reduction: str,
                     sampling: Optional[Mapping[str, Any]] = None,
                     topk_ks: Sequence[int] = ()) -> Dict[str, Any]:
  """The result's counts, AUC/GAUC of the model and of the records' oracle_prob, GAUC notes,
  which examples were evaluated (`sampling`: `sample_users`' record) and, with `topk_ks`, the
  top-K impression metrics (`topk_result`, also in "metrics" as "topk_<metric>@K")."""
  labels = cols["labels"].astype(np.int64)
  users = cols["user_ids"].astype(np.int64)
  model_pw = pointwise_metrics(labels, cols["logits"], users, reduction)
  if has_oracle_prob(cols):
    oracle_pw = pointwise_metrics(labels, cols["oracle_prob"], users, reduction)
    pointwise_note = "AUC/GAUC of the records' oracle_prob (the planted P(click))"
  else:
    missing = int(np.sum(cols["oracle_prob"] < 0))
    oracle_pw = {"auc": math.nan, "gauc": math.nan}
    pointwise_note = (f"not available: {missing} of {len(labels)} examples carry no "
                      "oracle_prob (-1: not synthetic data)")
  result = {
      "format": FORMAT,
      "counts": {"examples": int(len(labels)), "users": int(len(np.unique(users))),
                 "positives": int(labels.sum()), "negatives": int(len(labels) - labels.sum())},
      "metrics": {"auc": model_pw["auc"], "gauc": model_pw["gauc"]},
      "oracle": {"auc": oracle_pw["auc"], "gauc": oracle_pw["gauc"],
                 "pointwise": pointwise_note},
      "gauc": {"reduction": reduction, "definition": "per-user AUC (THACIL eq. 11, ADAPT "
               "eq. 12) over users with both classes, " + _REDUCTION_TEXT[reduction],
               "users": model_pw["users"], "users_skipped": model_pw["users_skipped"]},
      "max_examples": int((sampling or {}).get("max_examples", 0)),
      "sampling": dict(sampling or {"rule": "every example of the split"}),
  }
  if topk_ks:
    top = result["topk"] = topk_result(cols, topk_ks)
    result["metrics"].update({TOPK_PREFIX + k: v for k, v in top["model"].items()})
    for k, v in (top["oracle"] or {}).items():
      result["oracle"][TOPK_PREFIX + k] = v
  return result
