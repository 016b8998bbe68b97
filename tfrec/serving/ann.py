"""An approximate top-k index beside a retrieval export (issue 12 item 6), with Faiss.

Optional: needs `faiss-cpu` (`pip install 'tfrec[faiss]'`); nothing else in tfrec imports this
module, so the library and its tests run without it.

    build(export_dir, kind="ivf")  ->  <export_dir>.faiss/   (TensorFlow Serving ignores a
                                       version directory whose name is not a number)
        index.faiss   the Faiss index of the export's `index_vectors` (inner product, the
                      models' score): "ivf" = IndexIVFFlat (nlist k-means lists, nprobe of them
                      searched per query), "hnsw" = IndexHNSWFlat (M links, efSearch)
        ids.npy       <int64>[P] the export's `index_ids` (Faiss returns row positions)
        meta.json     kind, parameters, the export it was built from, and its recall@k against
                      the exact top-k, measured at build time
    ApproximateIndex.load(path).search(query, k, exclude)  ->  (ids <int64>[k], scores
                      <float32>[k]), best first; query <float32>[d] or [K, d] (a multi-interest
                      query: each interest searches, merged by best score, as `retrieve` does)

The query comes from the export's `encode_query` signature, so a request goes
encode_query (SavedModel) -> search (Faiss); `python -m tfrec.bench retrieve` times both paths.
Recall is measured on queries given to `build`, else on item vectors of the index drawn at
random (item vectors stand in for queries: both live in the space the towers share).
"""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf

INDEX_FILE, IDS_FILE, META_FILE = "index.faiss", "ids.npy", "meta.json"
KINDS = ("ivf", "hnsw")


def _faiss():
  try:
    import faiss  # pylint: disable=import-outside-toplevel
  except ImportError as e:
    raise ImportError("tfrec.serving.ann needs faiss: pip install 'tfrec[faiss]' "
                      "(faiss-cpu)") from e
  return faiss


def ann_path(export_dir: str) -> str:
  """Where `build` writes the approximate index of `export_dir`: `<export_dir>.faiss`."""
  return export_dir.rstrip("/") + ".faiss"


def default_nlist(size: int) -> int:
  """About 4 sqrt(P) lists (Faiss' guideline), at most P / 39 so k-means has 39 points a list."""
  return int(max(1, min(4 * np.sqrt(size), size // 39)))


def make_index(vectors: np.ndarray, kind: str = "ivf", nlist: Optional[int] = None,
               nprobe: Optional[int] = None, hnsw_m: int = 32, ef_search: int = 128,
               train_points_per_list: int = 64, seed: int = 0) -> Any:
  """A trained, filled Faiss inner-product index over <float32>[P, d] `vectors` (row = position).

  Args:
    kind: "ivf" (IndexIVFFlat) or "hnsw" (IndexHNSWFlat).
    nlist, nprobe: IVF lists and lists searched (defaults `default_nlist`, nlist / 16).
    hnsw_m, ef_search: HNSW links per node and search breadth.
    train_points_per_list: k-means of the IVF lists runs on at most this many vectors per list
      (a random sample; Faiss' default 256 took over 15 minutes for 1M x 64 and 4000 lists on
      2 shared cores).
  """
  faiss = _faiss()
  if kind not in KINDS:
    raise ValueError(f"ann kind must be one of {KINDS}, got {kind!r}")
  vectors = np.ascontiguousarray(vectors, np.float32)
  if vectors.ndim != 2 or len(vectors) == 0:
    raise ValueError(f"index vectors must be [P > 0, d]; got {vectors.shape}")
  d = vectors.shape[1]
  if kind == "hnsw":
    index = faiss.IndexHNSWFlat(d, hnsw_m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efSearch = int(ef_search)
    index.add(vectors)
    return index
  nlist = int(nlist or default_nlist(len(vectors)))
  quantizer = faiss.IndexFlatIP(d)
  index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
  index.cp.seed = int(seed)
  index.cp.max_points_per_centroid = int(train_points_per_list)
  index.train(vectors)
  index.add(vectors)
  index.nprobe = int(nprobe or max(1, nlist // 16))
  return index


def exact_top_k(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
  """<int64>[n, k] positions of the k highest inner products of each query row, best first."""
  scores = np.asarray(queries, np.float32) @ np.asarray(vectors, np.float32).T
  top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
  order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
  return np.take_along_axis(top, order, axis=1)


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
  """Mean over rows of |found ∩ exact| / k (both <[n, k]> ids or positions)."""
  hits = [len(np.intersect1d(f, e)) / exact.shape[1] for f, e in zip(found, exact)]
  return float(np.mean(hits))


class ApproximateIndex:
  """A Faiss index with the export's item ids (`build`, `load`).

  Args:
    index: a filled Faiss inner-product index.
    ids: <int64>[P] item id of each index row.
    meta: what `build` recorded.
  """

  def __init__(self, index: Any, ids: np.ndarray, meta: Optional[Dict[str, Any]] = None):
    if index.ntotal != len(ids):
      raise ValueError(f"the Faiss index holds {index.ntotal} vectors, ids {len(ids)}")
    self.index, self.ids, self.meta = index, np.asarray(ids, np.int64), dict(meta or {})

  @classmethod
  def load(cls, path: str) -> "ApproximateIndex":
    faiss = _faiss()
    return cls(faiss.read_index(os.path.join(path, INDEX_FILE)),
               np.load(os.path.join(path, IDS_FILE)), load_meta(path))

  def search(self, query: np.ndarray, k: int, exclude: Sequence[int] = ()
             ) -> Tuple[np.ndarray, np.ndarray]:
    """Top-k (ids <int64>[k'], scores <float32>[k']) of one query <[d]> or <[K, d]>, best
    first, leaving out the item ids in `exclude` (the request's own items); k' <= k when the
    index finds fewer."""
    if k < 1 or k > len(self.ids):
      raise ValueError(f"k must be in [1, the index size {len(self.ids)}]; got {k}")
    q = np.atleast_2d(np.asarray(query, np.float32))
    exclude = np.asarray(list(exclude), np.int64)
    scores, rows = self.index.search(q, min(k + len(exclude), len(self.ids)))
    scores, rows = scores.ravel(), rows.ravel()
    keep = rows >= 0
    items, scores = self.ids[rows[keep]], scores[keep]
    keep = ~np.isin(items, exclude)
    items, scores = items[keep], scores[keep]
    order = np.argsort(-scores, kind="stable")
    items, scores = items[order], scores[order]
    if len(q) > 1:  # several interests may find one item: keep its best score
      _, first = np.unique(items, return_index=True)
      first.sort()
      items, scores = items[first], scores[first]
    return items[:k], scores[:k].astype(np.float32)


def load_meta(path: str) -> Dict[str, Any]:
  with open(os.path.join(path, META_FILE)) as f:
    return json.load(f)


def build(export_dir: str, kind: str = "ivf", nlist: Optional[int] = None,
          nprobe: Optional[int] = None, out_dir: Optional[str] = None,
          queries: Optional[np.ndarray] = None, recall_k: int = 100,
          recall_queries: int = 200, overwrite: bool = False, seed: int = 0,
          **index_args: Any) -> str:
  """Builds the approximate index of a retrieval export's `index_vectors` and writes it to
  `out_dir` (default `ann_path(export_dir)`) atomically (`.incomplete`, then renamed), with its
  recall@k against the exact top-k in meta.json. Returns out_dir.

  Raises:
    FileExistsError: out_dir exists and `overwrite` is False.
    ValueError: `export_dir` has no index (not a retrieval export).
  """
  faiss = _faiss()
  out_dir = out_dir or ann_path(export_dir)
  if os.path.exists(out_dir) and not overwrite:
    raise FileExistsError(f"{out_dir} exists; remove it or pass --overwrite (overwrite=True)")
  loaded = tf.saved_model.load(export_dir)
  if not hasattr(loaded, "index_vectors"):
    raise ValueError(f"{export_dir} holds no retrieval index (index_vectors): not a retrieval "
                     "export")
  ids, vectors = loaded.index_ids.numpy(), loaded.index_vectors.numpy()
  index = make_index(vectors, kind, nlist=nlist, nprobe=nprobe, seed=seed, **index_args)
  k = min(recall_k, len(ids))
  if queries is None:
    rng = np.random.default_rng(seed)
    queries = vectors[rng.choice(len(vectors), min(recall_queries, len(vectors)),
                                 replace=False)]
  _, found = index.search(np.ascontiguousarray(queries, np.float32), k)
  meta = {"kind": kind, "export_dir": os.path.abspath(export_dir), "size": int(len(ids)),
          "dim": int(vectors.shape[1]), "recall_k": int(k),
          "recall": recall_at_k(found, exact_top_k(vectors, queries, k)),
          "recall_queries": int(len(queries)), "metric": "inner_product"}
  if kind == "ivf":
    meta.update(nlist=int(index.nlist), nprobe=int(index.nprobe))
  else:
    meta.update(hnsw_m=int(index_args.get("hnsw_m", 32)), ef_search=int(index.hnsw.efSearch))
  tmp = out_dir + ".incomplete"
  if os.path.exists(tmp):
    tf.io.gfile.rmtree(tmp)
  os.makedirs(tmp)
  faiss.write_index(index, os.path.join(tmp, INDEX_FILE))
  np.save(os.path.join(tmp, IDS_FILE), ids)
  with open(os.path.join(tmp, META_FILE), "w") as f:
    json.dump(meta, f, indent=2, sort_keys=True)
  if os.path.exists(out_dir):
    tf.io.gfile.rmtree(out_dir)
  os.rename(tmp, out_dir)
  return out_dir


__all__ = ["ApproximateIndex", "KINDS", "ann_path", "build", "default_nlist", "exact_top_k",
           "load_meta", "make_index", "recall_at_k"]
