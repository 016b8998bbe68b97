"""Storytelling-to-product matching in ADAPT's feature space (§IV-G, Table VII).

Queries are the products of a `dual_pair` split; the storytelling items that mount a product in
that split are its ground truth; the candidates are every storytelling (target-domain) item of
the item store. Items are compared by the Euclidean distance of their extractor features
x = [v; t] (the parts a `ContentExtractor` holds, concatenated: d(x, y)^2 = d_v^2 + d_t^2, the
two spaces DUAL's eq. 5 aligns), exactly (every candidate is scored).

Per query, over the ranked candidates (nearest first; ties by item id):
  AUC@N   ("we take the top-500 recalled storytellings to calculate the AUC"): the N nearest
          candidates are recalled; ground-truth items outside them are placed after the list;
          the AUC is the share of (ground truth, other recalled item) pairs in which the ground
          truth comes first. A query none of whose ground truth is recalled scores 0.
  HR@k    1 if a ground-truth item is among the k nearest.
  NDCG@k  DCG of the ground-truth items among the k nearest over the ideal DCG of
          min(k, #ground truth) items in front.
Each is averaged over the queries. With the run's extractor (DUAL, or the one ADEN trained
without DUAL) the same numbers give Table VII's rows with and without DUAL.
"""

from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

from tfrec.data import schema

TOP = 500  # Table VII's recall depth for the AUC
K = 5      # Table VII's HR@5, NDCG@5


def extractor_of(model: Any) -> Any:
  """The model's `ContentExtractor` (DUAL, ADEN/ADAPT): ValueError for a model without one."""
  extractor = getattr(model, "extractor", None)
  if extractor is None:
    raise ValueError(f"{type(model).__name__} has no ADAPT feature extractor (dual, aden): "
                     "storytelling-to-product matching compares extractor features")
  return extractor


def features(extractor: Any, ids: np.ndarray, batch: int = 4096) -> np.ndarray:
  """<float32>[n, parts * d] the concatenated extractor parts [v; t] of `ids`."""
  out = []
  for a in range(0, len(ids), batch):
    parts = extractor(tf.constant(np.asarray(ids[a:a + batch], np.int64)), training=False)
    out.append(tf.concat([tf.cast(parts[p], tf.float32) for p in extractor.parts],
                         axis=-1).numpy())
  width = len(extractor.parts) * extractor.dim
  return np.concatenate(out) if out else np.zeros([0, width], np.float32)


def nearest(query: np.ndarray, candidates: np.ndarray, candidate_ids: np.ndarray,
            k: int) -> Tuple[np.ndarray, np.ndarray]:
  """(<int64>[q, k] ids, <float32>[q, k] distances) of the k nearest candidates per query by
  Euclidean distance, ties broken by the lower item id."""
  q = np.atleast_2d(query).astype(np.float64)
  c = candidates.astype(np.float64)
  d2 = (q ** 2).sum(1)[:, None] - 2 * q @ c.T + (c ** 2).sum(1)[None, :]
  dist = np.sqrt(np.maximum(d2, 0.0))
  order = np.lexsort((np.broadcast_to(candidate_ids, dist.shape), dist), axis=-1)[:, :k]
  return candidate_ids[order], np.take_along_axis(dist, order, axis=1).astype(np.float32)


def query_metrics(ranked: np.ndarray, truth: np.ndarray, top: int = TOP,
                  k: int = K) -> Dict[str, float]:
  """AUC@top, HR@k and NDCG@k of one query (module docstring).

  Args:
    ranked: <int64>[>= top] candidate ids, nearest first (at least the `top` nearest; more
      are ignored).
    truth: <int64>[g] the query's ground-truth ids (g >= 1).
  """
  recalled = np.asarray(ranked)[:top]
  hit = np.isin(recalled, truth)
  n_pos_in, n_neg = int(hit.sum()), int((~hit).sum())
  # Ground truth outside the list comes after every recalled item: it beats no negative.
  negatives_after = n_neg - np.cumsum(~hit)
  pairs = len(truth) * n_neg
  auc = float(negatives_after[hit].sum() / pairs) if pairs else float(n_pos_in > 0)
  head = hit[:k]
  dcg = float(np.sum(head / np.log2(np.arange(2, len(head) + 2))))
  idcg = float(np.sum(1.0 / np.log2(np.arange(2, min(k, len(truth)) + 2))))
  return {f"auc@{top}": auc, f"hr@{k}": float(head.any()), f"ndcg@{k}": dcg / idcg}


def pairs_of_split(reader: Any) -> Dict[int, np.ndarray]:
  """product id -> <int64>[g] the storytelling items mounting it, from a dual_pair reader."""
  truth: Dict[int, set] = {}
  for batch in reader.dataset(4096):
    for s, p in zip(batch["target_item_id"].numpy(), batch["source_item_id"].numpy()):
      truth.setdefault(int(p), set()).add(int(s))
  return {p: np.array(sorted(s), np.int64) for p, s in sorted(truth.items())}


def evaluate(extractor: Any, store: Any, truth: Mapping[int, np.ndarray], top: int = TOP,
             k: int = K) -> Dict[str, Any]:
  """Table VII's metrics of `extractor` over the queries of `truth` (module docstring)."""
  stories = store.item_ids(domain=schema.TARGET)
  if not len(truth):
    raise ValueError("no dual pairs to evaluate (an empty split)")
  story_x = features(extractor, stories)
  products = np.array(list(truth), np.int64)
  product_x = features(extractor, products)
  depth = min(max(top, k), len(stories))
  per: List[Dict[str, float]] = []
  for a in range(0, len(products), 256):
    ranked, _ = nearest(product_x[a:a + 256], story_x, stories, depth)
    per += [query_metrics(r, truth[int(p)], top, k) for r, p in zip(ranked, products[a:a + 256])]
  metrics = {m: float(np.mean([x[m] for x in per])) for m in per[0]}
  return {"metrics": metrics, "queries": len(products), "candidates": int(len(stories)),
          "pairs": int(sum(len(v) for v in truth.values())), "top": top, "k": k,
          "parts": list(extractor.parts),
          "protocol": "queries: the split's products; ground truth: the storytelling items "
                      "mounting them in the split; candidates: every storytelling item; "
                      "Euclidean distance of the concatenated extractor parts"}


def nearest_stories(extractor: Any, store: Any, product_ids: Sequence[int], k: int = K
                    ) -> List[Tuple[int, List[Tuple[int, float]]]]:
  """For each product, its k nearest storytelling items with their distances."""
  ids = np.asarray(product_ids, np.int64)
  if not len(ids):
    return []
  known = store.item_ids(domain=schema.SOURCE)
  unknown = ids[~np.isin(ids, known)]
  if len(unknown):
    raise ValueError(f"--nearest_to: {unknown[:10].tolist()} are not products (source-domain "
                     "items) of this dataset")
  stories = store.item_ids(domain=schema.TARGET)
  ranked, dist = nearest(features(extractor, ids), features(extractor, stories), stories,
                         min(k, len(stories)))
  return [(int(p), [(int(s), float(d)) for s, d in zip(r, dd)])
          for p, r, dd in zip(ids, ranked, dist)]


def to_markdown(result: Mapping[str, Any], title: Optional[str] = None) -> str:
  m = result["metrics"]
  lines = [f"### {title or 'Storytelling-to-product matching (ADAPT Table VII)'}", "",
           f"{result['queries']:,} product queries, {result['pairs']:,} ground-truth pairs, "
           f"{result['candidates']:,} storytelling candidates; features "
           f"{' + '.join(result['parts'])}. {result['protocol']}.", "",
           "| metric | value |", "|---|---:|"]
  lines += [f"| {name.upper()} | {value:.4f} |" for name, value in m.items()]
  return "\n".join(lines) + "\n"
