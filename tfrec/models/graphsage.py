r"""Unsupervised GraphSAGE pre-training on M5's content metagraph: the node embeddings that M5's CG
embedding table is initialised from (Ye et al., KDD 2023, §4.2.1; Hamilton et al., NeurIPS 2017,
§3.2 eq. 1 and the pooling aggregator of §3.3).

    python -m tfrec.datasets.metagraph --data_dir=DIR [--visual_clusters=64]
    python -m tfrec.models.graphsage --data_dir=DIR [--dim=64 --steps=2000 --seed=0]

writes `cg_embeddings.npy` <float32>[num_items + 1, dim] (row 0, the padding item, zeros; an
item without any meta node, which the graph cannot place, zeros too) and `cg_embeddings.json`
(the settings, the loss curve, the metagraph's sha256, the file's sha256) beside the dataset;
`load_cg_embeddings` reads them back, checked.

Model (`GraphSAGE`): every node's input feature h^0 is a trained embedding (the metagraph's nodes
carry no feature vectors: GraphSAGE's featureless setting; the visual content enters through the
visual-cluster nodes), then K pooling layers (`layers.graphsage.GraphSAGEPooling`) over S_k
neighbours per hop drawn with replacement (`layers.graphsage.sample_neighbours`; K = 2, S =
(25, 10) as the GraphSAGE paper), ReLU in the hidden layers and a linear last layer, each
L2-normalised, so z_v has norm 1 (as GraphSAGE's reference code). Keep the hidden width well
above a handful of units: at 8, every hidden ReLU of a node can die, and nodes whose 2-hop
neighbourhood is dead share one z (measured on the tests' planted graph: 1 seed in 8; none in 8
at 32).

Loss (GraphSAGE eq. 1), per positive pair (u, v):

    J(u, v) = -log sigma(z_u . z_v) - sum_{n = 1..Q} log sigma(-z_u . z_{v_n})

the sum over Q negatives being Q times the expectation of eq. 1. Negatives v_n ~ P_n(v) ∝
degree(v)^0.75 over all nodes (word2vec's unigram^0.75, as GraphSAGE), Q per step shared by the
batch (as the reference code). Positive pairs: co-occurrence on short random walks (eq. 1's
"v co-occurs near u on a fixed-length random walk"): a walk of `walk_length` steps from an item u
drawn uniformly among the items with a meta node, and v = the node at a uniformly drawn step of
it (an item-meta pair at odd steps, item-meta-item at even ones); a walk back to u itself gives
its first step instead (a meta node of u's), so every row is a real pair.

The input, and why it is not `python -m tfrec.train`: train.py reads every model's input from
records (`runs.reader(..., kind=model.RECORD_KIND)`), and it has no hook for an input a model
builds itself. Positive pairs as a record kind would change the data contract
(`data/schema.py`) for pairs that are a pure function of the graph and a seed; a hook would
change train.py. Neither is done here: `pretrain_cg` builds a `tf.data` pipeline from the
metagraph (`pair_dataset`: each batch a stateless function of (seed, step), so a run is
reproducible without any file) and drives the model with Keras `fit`. The model is still a
`core.Model` (named per-example loss "unsupervised" reduced over the global batch, loss
trackers, in-step randomness of the neighbour sampling from `step_random` (seed, step)); it is
not registered (`--model=` could not feed it) and has no record kind (`RECORD_KIND = None`).
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tf_keras as keras

from tfrec.data.errors import DataError
from tfrec.data.item_store import ItemStore, file_sha256, verified_artefact
from tfrec.datasets.metagraph import GRAPH_FILE, Metagraph
from tfrec.layers import step_random
from tfrec.layers.graphsage import GraphSAGEPooling, sample_neighbours
from tfrec.models import core

EMBEDDINGS_FILE = "cg_embeddings.npy"
EMBEDDINGS_INFO = "cg_embeddings.json"
NEGATIVE_POWER = 0.75
_SEED_STRIDE = 1_000_003
_INFERENCE_SEED = 20_170_000  # neighbour samples outside training: fixed, so embed() repeats


class GraphSAGE(core.Model):
  """Unsupervised pooling GraphSAGE over a CSR graph (module docstring).

  Args:
    indptr: <int64>[num_nodes + 1] and
    indices: <int64>[num_directed_edges]: the graph (`Metagraph.indptr`, `.indices`), held as
      constants (not weights: checkpoints do not carry the graph).
    dim: d, the width of z (M5 §5.1.3: 128 for behaviour features).
    num_samples: S_k, neighbours drawn per node at hop k (its length is K, the layers).
    hidden_dim: width of the hidden layers' h^k; None = `dim`.
    feature_dim: width of the trained node features h^0; None = `dim`.
    num_negatives: Q.

  Batch (from `pair_dataset`):
    anchor: <int64>[batch] u; positive: <int64>[batch] v; negatives: <int64>[Q] v_n.
  """

  RECORD_KIND = None  # no records: the input is generated from the metagraph (module docstring)
  LOSSES = ("unsupervised",)
  MONITOR = ("loss", "min")
  VALIDATES = False
  EXPORTABLE = False

  def __init__(self, indptr, indices, dim: int = 64, num_samples: Sequence[int] = (25, 10),
               hidden_dim: Optional[int] = None, feature_dim: Optional[int] = None,
               num_negatives: int = 20, **kwargs):
    super().__init__(**kwargs)
    self.num_samples = tuple(int(s) for s in num_samples)
    if not self.num_samples or min(self.num_samples) < 1:
      raise ValueError(f"num_samples must be a non-empty list of positive counts, got "
                       f"{list(num_samples)}")
    if int(num_negatives) < 1:
      raise ValueError(f"num_negatives must be >= 1, got {num_negatives}")
    self.dim = int(dim)
    self.hidden_dim = int(hidden_dim or dim)
    self.feature_dim = int(feature_dim or dim)
    self.num_negatives = int(num_negatives)
    indptr = np.asarray(indptr, np.int64)
    self.num_nodes = len(indptr) - 1
    self.graph = (tf.constant(indptr), tf.constant(np.asarray(indices, np.int64)))
    self.features = keras.layers.Embedding(self.num_nodes, self.feature_dim, name="features")
    k = len(self.num_samples)
    self.aggregators = [
        GraphSAGEPooling(self.dim if i == k - 1 else self.hidden_dim,
                         activation=None if i == k - 1 else "relu", name=f"sage_{i + 1}")
        for i in range(k)]

  def _seed(self, hop: int) -> tf.Tensor:
    seed = step_random.step_seed()
    if seed is None:
      return tf.constant([_INFERENCE_SEED, hop], tf.int64)
    return seed

  def embed(self, nodes: tf.Tensor) -> tf.Tensor:
    """<float32>[n, dim] z of <int>[n] nodes: K hops sampled, then the K layers (Algorithm 1).
    Inside a training step the samples come from (seed, step); outside, from a fixed seed."""
    hops, masks = [tf.cast(nodes, tf.int64)], []
    for k, s in enumerate(self.num_samples):
      ids, mask = sample_neighbours(*self.graph, hops[-1], s, self._seed(k))
      hops.append(ids)
      masks.append(mask)
    h = [self.features(ids) for ids in hops]
    for layer in self.aggregators:
      h = [layer(h[i], h[i + 1], masks[i]) for i in range(len(h) - 1)]
    return h[0]

  def call(self, nodes, training=None):
    return self.embed(nodes)

  def compute_losses(self, batch, training=None) -> Dict[str, tf.Tensor]:
    anchor = tf.cast(batch["anchor"], tf.int64)
    n = tf.shape(anchor)[0]
    z = self.embed(tf.concat([anchor, tf.cast(batch["positive"], tf.int64),
                              tf.cast(batch["negatives"], tf.int64)], axis=0))
    z_u, z_v, z_n = z[:n], z[n:2 * n], z[2 * n:]
    positive = tf.reduce_sum(z_u * z_v, axis=-1)
    negative = tf.matmul(z_u, z_n, transpose_b=True)  # [batch, Q]
    loss = tf.nn.softplus(-positive) + tf.reduce_sum(tf.nn.softplus(negative), axis=-1)
    return {"unsupervised": loss}


# ------------------------------------------------------------------------------- input


def negative_table(graph: Metagraph) -> np.ndarray:
  """<float64>[num_nodes] the cumulative sums of degree^0.75 (P_n; node 0 and isolated nodes
  weigh 0)."""
  return np.cumsum(graph.degree().astype(np.float64) ** NEGATIVE_POWER)


def pair_dataset(graph: Metagraph, batch_size: int, num_negatives: int, walk_length: int = 5,
                 seed: int = 0, start_step: int = 0) -> tf.data.Dataset:
  """Endless batches {anchor <int64>[batch], positive <int64>[batch], negatives <int64>[Q]}
  (module docstring); batch i is a stateless function of (seed, start_step + i).

  Raises:
    ValueError: no item has a meta node, or a non-positive size.
  """
  if batch_size < 1 or num_negatives < 1 or walk_length < 1:
    raise ValueError(f"batch_size, num_negatives and walk_length must be >= 1, got "
                     f"{batch_size}, {num_negatives}, {walk_length}")
  degree = graph.degree()
  starts = np.nonzero(degree[1:graph.counts["item"]] > 0)[0] + 1
  if not len(starts):
    raise ValueError("the metagraph links no item to a meta node: nothing to pre-train on")
  starts_t = tf.constant(starts.astype(np.int64))
  cdf = tf.constant(negative_table(graph))
  indptr, indices = tf.constant(graph.indptr), tf.constant(graph.indices)
  base = int(seed) * _SEED_STRIDE

  def batch(step: tf.Tensor) -> Dict[str, tf.Tensor]:
    def draw_seed(k: int) -> tf.Tensor:
      return tf.stack([tf.constant(base + k, tf.int64), step])

    pick = tf.random.stateless_uniform([batch_size], draw_seed(0), minval=0,
                                       maxval=len(starts), dtype=tf.int64)
    anchor = tf.gather(starts_t, pick)
    node, walk = anchor, []
    for t in range(walk_length):
      node = sample_neighbours(indptr, indices, node, 1, draw_seed(1 + t))[0][:, 0]
      walk.append(node)
    walk = tf.stack(walk, axis=1)  # [batch, L]
    at = tf.random.stateless_uniform([batch_size], draw_seed(walk_length + 1), minval=0,
                                     maxval=walk_length, dtype=tf.int64)
    positive = tf.gather(walk, at, batch_dims=1)
    positive = tf.where(positive == anchor, walk[:, 0], positive)
    u = tf.random.stateless_uniform([num_negatives], draw_seed(walk_length + 2),
                                    dtype=tf.float64) * cdf[-1]
    negatives = tf.minimum(tf.searchsorted(cdf, u, side="right", out_type=tf.int64),
                           graph.num_nodes - 1)
    return {"anchor": anchor, "positive": positive, "negatives": negatives}

  return tf.data.Dataset.counter(start_step, dtype=tf.int64).map(
      batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


# ------------------------------------------------------------------------------- the run


def item_embeddings(model: GraphSAGE, graph: Metagraph, batch_size: int = 4096) -> np.ndarray:
  """<float32>[num_items + 1, dim]: z of every item with a meta node (fixed neighbour samples);
  row 0 and items without any meta node zeros."""
  out = np.zeros((graph.num_items + 1, model.dim), np.float32)
  items = np.nonzero(graph.degree()[1:graph.counts["item"]] > 0)[0] + 1
  embed = tf.function(model.embed)
  for i in range(0, len(items), batch_size):
    chunk = items[i:i + batch_size]
    out[chunk] = embed(tf.constant(chunk, tf.int64)).numpy()
  return out


def pretrain_cg(data_dir: str, out: Optional[str] = None, dim: int = 64, steps: int = 2000,
                seed: int = 0, batch_size: int = 512, learning_rate: float = 0.01,
                num_samples: Sequence[int] = (25, 10), hidden_dim: Optional[int] = None,
                num_negatives: int = 20, walk_length: int = 5, log_every: int = 100,
                verbose: int = 0) -> Tuple[np.ndarray, Dict[str, Any]]:
  """Pre-trains GraphSAGE on `data_dir`'s metagraph and writes the item embeddings.

  Args:
    data_dir: a dataset with items.npz and metagraph.npz (`tfrec.datasets.metagraph`).
    out: where cg_embeddings.npy/.json go; None = `data_dir`.
    dim, num_samples, hidden_dim, num_negatives: the model's (`GraphSAGE`).
    steps, batch_size, learning_rate: Adam steps over batches of positive pairs.
    seed: initialisation, walks, negatives and neighbour samples (sets the process's global
      seeds, as train.py does).
    walk_length: steps of each random walk (`pair_dataset`).
    log_every: steps per logged mean loss (the curve in the JSON).

  Returns:
    (the table <float32>[num_items + 1, dim], the settings written to the JSON).

  Raises:
    DataError: the metagraph is missing, damaged or built from other item content.
    ValueError: bad sizes, or the loss became NaN/inf.
  """
  if steps < 1 or log_every < 1:
    raise ValueError(f"--steps and log_every must be >= 1, got {steps}, {log_every}")
  store = ItemStore.load(data_dir)
  graph = Metagraph.load(data_dir, store=store)
  keras.utils.set_random_seed(seed)
  model = GraphSAGE(graph.indptr, graph.indices, dim=dim, num_samples=num_samples,
                    hidden_dim=hidden_dim, num_negatives=num_negatives, name="graphsage")
  model.configure_training(seed=seed)
  model.compile(optimizer=keras.optimizers.Adam(learning_rate))
  log_every = min(log_every, steps)
  full, rest = divmod(steps, log_every)
  curve = []
  for first, epochs, per_epoch in ((0, full, log_every), (full, full + 1, rest)):
    if epochs <= first or not per_epoch:
      continue
    # A second fit reads a new iterator: the stream resumes at the step reached.
    data = pair_dataset(graph, batch_size, num_negatives, walk_length, seed,
                        start_step=int(model.optimizer.iterations.numpy())).prefetch(2)
    history = model.fit(data, initial_epoch=first, epochs=epochs, steps_per_epoch=per_epoch,
                        verbose=verbose)
    curve += [float(x) for x in history.history["loss"]]
  if not all(math.isfinite(x) for x in curve):
    raise ValueError(f"the GraphSAGE loss became {curve[-1]} (curve {curve}): lower "
                     "--learning_rate")
  table = item_embeddings(model, graph)
  if not np.isfinite(table).all():
    raise ValueError("non-finite item embeddings after pre-training: lower --learning_rate")
  settings = {
      "dim": int(dim), "steps": int(model.optimizer.iterations.numpy()), "seed": int(seed),
      "batch_size": int(batch_size), "learning_rate": float(learning_rate),
      "num_samples": list(model.num_samples), "hidden_dim": model.hidden_dim,
      "num_negatives": int(num_negatives), "walk_length": int(walk_length),
      "log_every": int(log_every), "loss_curve": curve,
      "items_without_meta_nodes": int(np.sum(graph.degree()[1:graph.counts["item"]] == 0)),
      "metagraph_sha256": file_sha256(os.path.join(data_dir, GRAPH_FILE)),
      "metagraph_params": graph.params,
  }
  save_cg_embeddings(out or data_dir, table, settings)
  return table, settings


def save_cg_embeddings(directory: str, table: np.ndarray, settings: Dict[str, Any]) -> str:
  """Writes cg_embeddings.npy, then cg_embeddings.json with its size and sha256 (each through a
  temporary file and a rename; the JSON, last, is what marks the pair complete)."""
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, EMBEDDINGS_FILE)
  info_path = os.path.join(directory, EMBEDDINGS_INFO)
  if os.path.exists(info_path):
    os.remove(info_path)
  tmp = path + ".tmp.npy"
  try:
    np.save(tmp, np.asarray(table, np.float32))
    os.replace(tmp, path)
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)
  info = dict(settings, file=EMBEDDINGS_FILE, shape=list(np.shape(table)),
              bytes=os.path.getsize(path), sha256=file_sha256(path))
  with open(info_path + ".tmp", "w") as f:
    json.dump(info, f, indent=2, sort_keys=True)
  os.replace(info_path + ".tmp", info_path)
  return path


def load_cg_embeddings(directory: str, num_items: Optional[int] = None
                       ) -> Tuple[np.ndarray, Dict[str, Any]]:
  """(table <float32>[num_items + 1, dim], settings) as `pretrain_cg` wrote them.

  Raises:
    DataError: a missing, damaged or inconsistent file (a table for another item count when
      `num_items` is given), naming it.
  """
  path = os.path.join(directory, EMBEDDINGS_FILE)
  info_path = os.path.join(directory, EMBEDDINGS_INFO)
  hint = f"pre-train them with python -m tfrec.models.graphsage --data_dir={directory}"
  info = verified_artefact(path, info_path, "CG embeddings", hint, ("shape",),
                           manifest_what="CG embedding settings")
  try:
    shape = tuple(info["shape"])
  except TypeError as e:
    raise DataError(info_path, f"unreadable CG embedding settings: {e}") from e
  try:
    table = np.load(path, allow_pickle=False)
  except (OSError, ValueError) as e:
    raise DataError(path, f"unreadable CG embeddings: {e}") from e
  if table.shape != shape or table.ndim != 2 or table.dtype != np.float32:
    raise DataError(path, f"a {table.dtype} table of shape {table.shape}, the settings say "
                    f"float32 {list(shape)}")
  if num_items is not None and table.shape[0] != num_items + 1:
    raise DataError(path, f"{table.shape[0]} rows, the dataset has {num_items} items (+ the "
                    f"padding row): the embeddings belong to another item store; {hint}")
  if np.any(table[0] != 0) or not np.isfinite(table).all():
    raise DataError(path, "row 0 (padding) must be zeros and every value finite")
  return table, info


# ------------------------------------------------------------------------------- CLI


def _define_flags() -> None:
  from absl import flags
  flags.DEFINE_string("data_dir", None, "Dataset with items.npz and metagraph.npz.",
                      required=True)
  flags.DEFINE_string("out", None, "Where cg_embeddings.npy/.json go (default: data_dir).")
  flags.DEFINE_integer("dim", 64, "Width of the CG embeddings (M5: 128).")
  flags.DEFINE_integer("steps", 2000, "Optimizer steps.")
  flags.DEFINE_integer("seed", 0, "Seed of initialisation, walks, negatives, samples.")
  flags.DEFINE_integer("batch_size", 512, "Positive pairs per step.")
  flags.DEFINE_float("learning_rate", 0.01, "Adam's learning rate.")
  flags.DEFINE_list("num_samples", ["25", "10"], "Neighbours per hop (K = their count).")
  flags.DEFINE_integer("num_negatives", 20, "Q, negatives per step (degree^0.75).")
  flags.DEFINE_integer("walk_length", 5, "Steps of each random walk.")
  flags.DEFINE_integer("log_every", 100, "Steps per logged mean loss.")


def main(argv: Sequence[str]) -> None:
  from absl import flags
  del argv
  fv = flags.FLAGS
  try:
    num_samples = [int(s) for s in fv.num_samples]
  except ValueError:
    raise ValueError(f"--num_samples must be integers, got {fv.num_samples}") from None
  table, settings = pretrain_cg(
      fv.data_dir, fv.out, dim=fv.dim, steps=fv.steps, seed=fv.seed, batch_size=fv.batch_size,
      learning_rate=fv.learning_rate, num_samples=num_samples,
      num_negatives=fv.num_negatives, walk_length=fv.walk_length, log_every=fv.log_every)
  curve = settings["loss_curve"]
  print(f"tfrec.models.graphsage: {os.path.join(fv.out or fv.data_dir, EMBEDDINGS_FILE)} "
        f"{list(table.shape)}; loss {curve[0]:.4f} -> {curve[-1]:.4f} over "
        f"{settings['steps']} steps")


if __name__ == "__main__":
  from tfrec import cli
  cli.run(main, "tfrec.models.graphsage", _define_flags)
