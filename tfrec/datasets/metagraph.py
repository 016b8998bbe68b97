r"""M5's content metagraph (Ye et al., KDD 2023, §4.2.1) built from a dataset's item store.

    python -m tfrec.datasets.metagraph --data_dir=DIR [--visual_clusters=64] [--seed=0]

"Each node in the metagraph represents a particular modality and the meta nodes are connected
with the matched ID nodes to bridge the relevant shows." M5's graph holds show ID, tag, cast,
visual and text nodes; the item store has no cast, so here the item (show ID) nodes are linked
to meta nodes of four types, from the store's columns:

  tag       one node per tag id; an item is linked to each of its (non-padding) tags
  category  one node per category id; an item is linked to its category
  title     one node per title token id; an item is linked to each distinct token of its title
  visual    one node per k-means cluster of the items' visual vectors (numpy, k-means++ seeded
            by `seed`, at most `visual_clusters` clusters, empty ones dropped); an item is linked
            to its cluster. No visual node when the store has no visual columns (width 0) or
            `visual_clusters` is 0. M5 embeds covers with ResNet-50 and texts with BERT; the
            clusters are this project's stand-in for a visual modality over feature vectors.

Nothing here reads a click: every item, cold ones included, is in the graph (its content is
known; that is what lets the CG embedding "generalise to the new comings").

Node ids: items first, item id = node id (node 0 is the padding item, isolated), then each meta
type in its own block, in the order of `NODE_TYPES`:

    node = offsets[type] + id - 1      (tag, category, title: ids from 1)
    node = offsets["visual"] + cluster (clusters from 0)

A block holds `counts[type]` nodes: the vocabulary size (dataset.json's num_tags,
num_categories, num_tokens when given, else the largest id the store uses; ids nobody uses are
isolated nodes) or the number of clusters. Edges are undirected: every item-meta edge is stored
in both directions in a CSR adjacency (`indptr` <int64>[num_nodes + 1], `indices`
<int64>[2 * edges], each node's neighbours in ascending order, no duplicates).

Written beside the dataset as `metagraph.npz` (indptr, indices, the cluster centres) and
`metagraph.manifest.json` (offsets, counts, the parameters, the npz's size and sha256, and a
digest of the store's content columns), each through a temporary file and a rename, the manifest
last, so a reader never sees a half-written graph. `load` checks all of it and names what is
wrong. The GraphSAGE pre-training that turns this graph into M5's CG embeddings is
`python -m tfrec.models.graphsage` (models sit to the right of datasets: the packages' order).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np

from tfrec.data.errors import DataError
from tfrec.data.item_store import ItemStore, file_sha256, verified_artefact

GRAPH_FILE = "metagraph.npz"
GRAPH_MANIFEST = "metagraph.manifest.json"
NODE_TYPES = ("item", "tag", "category", "title", "visual")
META_TYPES = NODE_TYPES[1:]
# The store column each id-keyed meta type reads, and dataset.json's vocabulary size for it.
_COLUMN = {"tag": "tags", "category": "category", "title": "title"}
_VOCAB = {"tag": "num_tags", "category": "num_categories", "title": "num_tokens"}
_KMEANS_ITERATIONS = 100
_BLOCK = 65_536


@dataclasses.dataclass
class Metagraph:
  """An item-meta graph in CSR form (module docstring).

  Attributes:
    indptr: <int64>[num_nodes + 1]; node v's neighbours are indices[indptr[v]:indptr[v + 1]].
    indices: <int64>[num_directed_edges], ascending within a node.
    offsets: node type -> its first node id (NODE_TYPES order; "item" is 0).
    counts: node type -> how many nodes its block holds ("item": num_items + 1, padding included).
    visual_centres: <float32>[counts["visual"], visual_dim] the k-means centres (a new item is
      linked to its nearest centre); [0, 0] without visual nodes.
    params: how it was built (visual_clusters asked, seed, content digest of the store, ...).
  """

  indptr: np.ndarray
  indices: np.ndarray
  offsets: Dict[str, int]
  counts: Dict[str, int]
  visual_centres: np.ndarray
  params: Dict[str, Any]

  def __post_init__(self):
    self.indptr = np.asarray(self.indptr, np.int64)
    self.indices = np.asarray(self.indices, np.int64)
    self.visual_centres = np.asarray(self.visual_centres, np.float32)
    if self.visual_centres.ndim != 2:
      self.visual_centres = self.visual_centres.reshape(len(self.visual_centres), -1)
    self.offsets = {t: int(self.offsets[t]) for t in NODE_TYPES}
    self.counts = {t: int(self.counts[t]) for t in NODE_TYPES}

  @property
  def num_nodes(self) -> int:
    return len(self.indptr) - 1

  @property
  def num_items(self) -> int:
    """Real items (node ids 1..num_items)."""
    return self.counts["item"] - 1

  @property
  def num_edges(self) -> int:
    """Undirected item-meta edges (each stored twice in `indices`)."""
    return len(self.indices) // 2

  def degree(self) -> np.ndarray:
    """<int64>[num_nodes] neighbours per node."""
    return np.diff(self.indptr)

  def neighbours(self, node: int) -> np.ndarray:
    return self.indices[self.indptr[node]:self.indptr[node + 1]]

  def node(self, node_type: str, ids) -> np.ndarray:
    """Node ids of `ids` of one type (items: the id itself; tag/category/title ids from 1;
    visual clusters from 0).

    Raises:
      ValueError: an unknown type or an id outside the type's block.
    """
    if node_type not in NODE_TYPES:
      raise ValueError(f"unknown node type {node_type!r}; types are {list(NODE_TYPES)}")
    ids = np.asarray(ids, np.int64)
    local = ids if node_type in ("item", "visual") else ids - 1
    if np.any(local < 0) or np.any(local >= self.counts[node_type]):
      raise ValueError(f"{node_type} ids {ids.tolist()} outside the block of "
                       f"{self.counts[node_type]} nodes")
    return self.offsets[node_type] + local

  def node_types(self) -> np.ndarray:
    """<int64>[num_nodes] each node's index in NODE_TYPES."""
    return np.repeat(np.arange(len(NODE_TYPES)), [self.counts[t] for t in NODE_TYPES])

  def check(self, path: str = GRAPH_FILE) -> None:
    """Structural checks; raises DataError naming the first broken property."""
    n = self.num_nodes
    expected = sum(self.counts.values())
    if n != expected:
      raise DataError(path, f"{n} nodes in indptr, the blocks' counts add up to {expected}",
                      field="indptr")
    start = 0
    for t in NODE_TYPES:
      if self.offsets[t] != start:
        raise DataError(path, f"block {t} starts at {self.offsets[t]}, expected {start}")
      start += self.counts[t]
    if self.indptr[0] != 0 or self.indptr[-1] != len(self.indices) or np.any(
        np.diff(self.indptr) < 0):
      raise DataError(path, "indptr is not a CSR row pointer (0 first, non-decreasing, "
                      "ending at len(indices))", field="indptr")
    if len(self.indices) and (self.indices.min() < 0 or self.indices.max() >= n):
      raise DataError(path, f"neighbour ids outside [0, {n})", field="indices")
    rows = np.repeat(np.arange(n, dtype=np.int64), self.degree())
    forward = rows * n + self.indices
    if not np.array_equal(np.sort(forward), np.sort(self.indices * n + rows)):
      raise DataError(path, "the adjacency is not symmetric (an edge stored one way only)",
                      field="indices")
    if self.visual_centres.shape[0] != self.counts["visual"]:
      raise DataError(path, f"{self.visual_centres.shape[0]} visual centres for "
                      f"{self.counts['visual']} visual nodes", field="visual_centres")

  # ------------------------------------------------------------------ files

  def save(self, directory: str) -> str:
    """Writes metagraph.npz, then metagraph.manifest.json (each: temporary file + rename)."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, GRAPH_FILE)
    manifest_path = os.path.join(directory, GRAPH_MANIFEST)
    if os.path.exists(manifest_path):
      os.remove(manifest_path)  # the directory reads as "no metagraph" until both land
    tmp = path + ".tmp.npz"
    try:
      np.savez(tmp, indptr=self.indptr, indices=self.indices,
               visual_centres=self.visual_centres)
      os.replace(tmp, path)
    finally:
      if os.path.exists(tmp):
        os.remove(tmp)
    manifest = {"file": GRAPH_FILE, "bytes": os.path.getsize(path), "sha256": file_sha256(path),
                "num_nodes": self.num_nodes, "num_edges": self.num_edges,
                "node_types": list(NODE_TYPES), "offsets": self.offsets, "counts": self.counts,
                "params": self.params}
    with open(manifest_path + ".tmp", "w") as f:
      json.dump(manifest, f, indent=2, sort_keys=True)
    os.replace(manifest_path + ".tmp", manifest_path)
    return path

  @classmethod
  def load(cls, directory: str, store: Optional[ItemStore] = None) -> "Metagraph":
    """Reads and checks a saved metagraph; with `store`, also that it was built from that
    store's content (its digest).

    Raises:
      DataError: a missing, damaged, inconsistent or stale file, naming it.
    """
    path = os.path.join(directory, GRAPH_FILE)
    manifest_path = os.path.join(directory, GRAPH_MANIFEST)
    hint = f"build it with python -m tfrec.datasets.metagraph --data_dir={directory}"
    manifest = verified_artefact(path, manifest_path, "metagraph", hint,
                                 ("offsets", "counts", "params"))
    offsets, counts, params = manifest["offsets"], manifest["counts"], manifest["params"]
    try:
      with np.load(path, allow_pickle=False) as z:
        graph = cls(indptr=z["indptr"], indices=z["indices"], offsets=offsets, counts=counts,
                    visual_centres=z["visual_centres"], params=params)
    except (OSError, ValueError, KeyError, TypeError) as e:
      raise DataError(path, f"unreadable metagraph: {e}") from e
    graph.check(path)
    if store is not None and params.get("content_digest") != content_digest(store):
      raise DataError(path, f"built from other item content than the dataset's items.npz "
                      f"now holds (content digest differs): rebuild it; {hint}")
    return graph


# ------------------------------------------------------------------------------- building


def content_digest(store: ItemStore) -> str:
  """sha256 of the store columns the graph reads (category, tags, title, visual): a store
  rewritten with another column (pre_extracted) keeps its digest."""
  h = hashlib.sha256()
  for name in ("category", "tags", "title", "visual"):
    col = np.ascontiguousarray(getattr(store, name))
    h.update(f"{name}{col.dtype.str}{col.shape}".encode())
    h.update(col.tobytes())
  return h.hexdigest()


def kmeans(x: np.ndarray, k: int, seed: int = 0,
           iterations: int = _KMEANS_ITERATIONS) -> Tuple[np.ndarray, np.ndarray]:
  """k-means (Lloyd) from a k-means++ start drawn with `np.random.default_rng(seed)`.

  Args:
    x: <float>[n, d] points (held as float32; distances and sums go through blocks of
      `_BLOCK` rows, so memory stays O(block * (k + d)) beside x).
    k: most clusters; fewer when x has fewer distinct points (k-means++ stops when every point
      is a centre) or a cluster empties (dropped).
    iterations: most Lloyd steps; it stops earlier when no point changes cluster.

  Returns:
    (labels <int64>[n] in [0, k'), centres <float32>[k', d]); clusters numbered in the order of
    their first point, so the result does not depend on the order the centres were drawn in.
  """
  x = np.asarray(x, np.float32)
  n = len(x)
  if n == 0 or k < 1:
    return np.zeros(n, np.int64), np.zeros((0, x.shape[1] if x.ndim == 2 else 0), np.float32)
  rng = np.random.default_rng(seed)

  def sq_dist(c: np.ndarray) -> np.ndarray:
    return np.concatenate([np.sum((x[i:i + _BLOCK] - c) ** 2, axis=1, dtype=np.float64)
                           for i in range(0, n, _BLOCK)])

  centres = [x[rng.integers(n)].astype(np.float64)]
  d2 = sq_dist(centres[0])
  while len(centres) < min(k, n):
    total = d2.sum()
    if total <= 0:
      break  # every point sits on a centre already
    c = x[rng.choice(n, p=d2 / total)].astype(np.float64)
    centres.append(c)
    d2 = np.minimum(d2, sq_dist(c))
  centres = np.stack(centres)
  labels = None
  for _ in range(max(1, iterations)):  # at least one assignment
    new = np.empty(n, np.int64)
    sums = np.zeros_like(centres)
    norms = np.sum(centres ** 2, axis=1)
    for i in range(0, n, _BLOCK):
      block = x[i:i + _BLOCK].astype(np.float64)
      nearest = np.argmin(norms[None, :] - 2.0 * block @ centres.T, axis=1)
      new[i:i + _BLOCK] = nearest
      np.add.at(sums, nearest, block)
    if labels is not None and np.array_equal(new, labels):
      break
    labels = new
    sizes = np.bincount(labels, minlength=len(centres))
    keep = sizes > 0
    centres = sums[keep] / sizes[keep, None]
    if not keep.all():
      labels = (np.cumsum(keep) - 1)[labels]
  # Canonical numbering: by first point.
  _, first = np.unique(labels, return_index=True)
  order = np.argsort(first)
  rank = np.empty_like(order)
  rank[order] = np.arange(len(order))
  return rank[labels].astype(np.int64), centres[order].astype(np.float32)


def _sizes(store: ItemStore, sizes: Optional[Mapping[str, int]]) -> Dict[str, int]:
  """Block sizes of the id-keyed meta types: `sizes` (dataset.json's vocabularies) or the
  largest id the store uses."""
  out = {}
  for t, column in _COLUMN.items():
    used = int(getattr(store, column)[1:].max(initial=0))
    size = used if sizes is None or sizes.get(t) is None else int(sizes[t])
    if used > size:
      raise ValueError(f"the item store uses {t} id {used} but the vocabulary has {size}")
    out[t] = size
  return out


def build_metagraph(store: ItemStore, visual_clusters: int = 64, seed: int = 0,
                    sizes: Optional[Mapping[str, int]] = None) -> Metagraph:
  """The metagraph of `store` (module docstring).

  Args:
    store: the dataset's item store.
    visual_clusters: k of the visual k-means; 0 = no visual nodes.
    seed: the k-means++ start.
    sizes: {"tag": ..., "category": ..., "title": ...} block sizes (dataset.json's
      num_tags, num_categories, num_tokens); None = the largest id the store uses.

  Raises:
    ValueError: a negative `visual_clusters`, or a store id beyond `sizes`.
  """
  if visual_clusters < 0:
    raise ValueError(f"--visual_clusters must be >= 0, got {visual_clusters}")
  n_items = store.num_items
  items = np.arange(1, n_items + 1, dtype=np.int64)
  counts = {"item": n_items + 1, **_sizes(store, sizes)}
  labels = np.zeros(0, np.int64)
  centres = np.zeros((0, store.visual_dim), np.float32)
  if store.visual_dim and visual_clusters and n_items:
    labels, centres = kmeans(store.visual[1:], visual_clusters, seed)
  counts["visual"] = len(centres)
  offsets, start = {}, 0
  for t in NODE_TYPES:
    offsets[t] = start
    start += counts[t]
  num_nodes = start

  item_side, meta_side = [], []
  for t, column in _COLUMN.items():
    values = getattr(store, column)[1:].reshape(n_items, -1)
    rows, cols = np.nonzero(values > 0)
    item_side.append(items[rows])
    meta_side.append(offsets[t] + values[rows, cols] - 1)
  if len(labels):
    item_side.append(items)
    meta_side.append(offsets["visual"] + labels)
  a = np.concatenate(item_side) if item_side else np.zeros(0, np.int64)
  b = np.concatenate(meta_side) if meta_side else np.zeros(0, np.int64)
  pairs = np.unique(a * num_nodes + b)  # a title repeating a token links once
  a, b = pairs // num_nodes, pairs % num_nodes
  rows, cols = np.concatenate([a, b]), np.concatenate([b, a])
  order = np.lexsort((cols, rows))
  rows, cols = rows[order], cols[order]
  indptr = np.zeros(num_nodes + 1, np.int64)
  indptr[1:] = np.cumsum(np.bincount(rows, minlength=num_nodes))
  params = {"visual_clusters": int(visual_clusters), "seed": int(seed),
            "visual_dim": int(store.visual_dim), "content_digest": content_digest(store),
            "sizes": "given" if sizes is not None else "largest id used"}
  graph = Metagraph(indptr=indptr, indices=cols, offsets=offsets, counts=counts,
                    visual_centres=centres, params=params)
  graph.check("<built>")
  return graph


def build_for_dataset(data_dir: str, visual_clusters: int = 64, seed: int = 0) -> Metagraph:
  """Builds and saves the metagraph of the dataset in `data_dir` (block sizes from its
  dataset.json when there is one)."""
  from tfrec.data.info import INFO_FILE, DatasetInfo
  store = ItemStore.load(data_dir)
  sizes = None
  if os.path.exists(os.path.join(data_dir, INFO_FILE)):
    info = DatasetInfo.load(data_dir)
    sizes = {t: getattr(info, name) for t, name in _VOCAB.items()}
  graph = build_metagraph(store, visual_clusters, seed, sizes)
  graph.save(data_dir)
  return graph


def summary(graph: Metagraph) -> str:
  """One line per node type: nodes, edges to items, mean item degree."""
  types = graph.node_types()
  deg = graph.degree()
  lines = [f"metagraph: {graph.num_nodes} nodes, {graph.num_edges} item-meta edges"]
  for i, t in enumerate(NODE_TYPES):
    mask = types == i
    lines.append(f"  {t:9s} {int(mask.sum()):8d} nodes, {int(deg[mask].sum()):9d} edge ends, "
                 f"{int((deg[mask] == 0).sum())} isolated")
  return "\n".join(lines)


def _define_flags() -> None:
  from absl import flags
  flags.DEFINE_string("data_dir", None, "Dataset directory (metagraph.npz is written there).",
                      required=True)
  flags.DEFINE_integer("visual_clusters", 64, "k of the visual k-means (0: no visual nodes).")
  flags.DEFINE_integer("seed", 0, "Seed of the k-means++ start.")


def main(argv: Sequence[str]) -> None:
  from absl import flags
  del argv
  fv = flags.FLAGS
  graph = build_for_dataset(fv.data_dir, fv.visual_clusters, fv.seed)
  print(f"tfrec.datasets.metagraph: {os.path.join(fv.data_dir, GRAPH_FILE)}\n{summary(graph)}")


if __name__ == "__main__":
  from tfrec import cli
  cli.run(main, "tfrec.datasets.metagraph", _define_flags)
