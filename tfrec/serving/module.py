"""Serving export: a SavedModel whose `rank` signature encodes a user's sequences once per request
and scores N candidate items against that encoding (SEMI App. A.4: about 500 candidates per
request), for TensorFlow Serving.

Signatures (every input int64; times in seconds; d ranges over the model's `domains`):

  rank      one user, N candidates (the online ranking request):
              timestamp           []   request time
              {d}_item_ids        [L]  the user's recent items, oldest first, newest last,
                                       0 <= L <= `max_len` (the dataset's max_seq_len,
                                       passed by `export_run`; default schema.MAX_SEQ_LEN)
              {d}_timestamps      [L]  their times, non-decreasing
              candidate_item_ids  [N]  N >= 1 items to score
            -> scores <float32>[N] (sigmoid probabilities), logits <float32>[N].
            The histories are truncated to the model's `max_seq_len` keeping the newest events
            (as the input pipeline does) and padded with masks; then
              user   = model.encode_user(history, batch 1)           once per request
              logits = model.score(user, candidate_item_ids[None])[0]
  score     (also `serving_default`) B paired examples, the training layout:
              timestamp [B], item_id [B], {d}_item_ids [B, L], {d}_timestamps [B, L]
              (rows right-padded with id 0; masks are ids > 0; L <= `max_len`)
            -> scores <float32>[B], logits <float32>[B].

A malformed request fails before any embedding lookup (on GPU an out-of-range gather returns
zeros instead of failing) with an InvalidArgumentError whose message names the input and shows
the bad values: wrong rank, ids and timestamps of different lengths, a history longer than the
data contract's maximum, no candidates, unknown item ids (candidates outside [1, num_items],
history ids outside [0, num_items]), padding (0) before a real history item, decreasing
timestamps.

Why the rank checks look the way they do: a signature's declared shapes are not enforced.
TensorFlow Serving does no input shape verification (its maintainers, tensorflow/serving#1436
and #1527), and a Python call of a loaded signature whose shapes do not match falls back to the
flat signature, which runs the graph anyway (measured on TF 2.21: a [1, 2] tensor fed to a
[None] input runs). And an in-graph `tf.rank` of an input declared [None] is constant-folded
to 1 by Grappler, so its assertion disappears (measured). The signatures therefore declare the
documented shapes AND check, first, the rank of an opaque copy of each input (`_runtime_rank`).

The exported object is a `tf.Module` holding the model's variables and two `tf.function`s with
input signatures (the pattern of TF Model Garden's official/core/export_base.py). It holds the
variables, not the Keras model object: a compiled model would bring its optimizer slots (3x the
weights) and Keras's own traced call functions into the serving artifact (measured: 85 vs 29
variables and 3x the save time on a tiny Cross-BST).

Security: a SavedModel is a program (a TensorFlow graph that can read and write files). Keras'
`safe_mode` does not apply to `tf.saved_model.load` or to TensorFlow Serving; load a SavedModel
only from a trusted source.
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import tensorflow as tf

from tfrec.data import schema
from tfrec.layers.item_encoder import check_item_ids
from tfrec.models.base import RankingModel

RANK = "rank"
SCORE = "score"
SERVING_DEFAULT = "serving_default"
CANDIDATES = "candidate_item_ids"
MAX_LEN = schema.MAX_SEQ_LEN  # the longest history a request may carry without a dataset

Features = Dict[str, tf.Tensor]


# ------------------------------------------------------------------------------ signatures


def rank_input_specs(domains: Sequence[str]) -> Dict[str, tf.TensorSpec]:
  """Inputs of the `rank` signature: one user's natural-length histories and N candidates."""
  specs = {"timestamp": tf.TensorSpec([], tf.int64, name="timestamp")}
  for d in domains:
    for f in ("item_ids", "timestamps"):
      specs[f"{d}_{f}"] = tf.TensorSpec([None], tf.int64, name=f"{d}_{f}")
  specs[CANDIDATES] = tf.TensorSpec([None], tf.int64, name=CANDIDATES)
  return specs


def score_input_specs(domains: Sequence[str]) -> Dict[str, tf.TensorSpec]:
  """Inputs of the `score` signature: B (user, item) examples with right-padded histories."""
  specs = {"timestamp": tf.TensorSpec([None], tf.int64, name="timestamp"),
           "item_id": tf.TensorSpec([None], tf.int64, name="item_id")}
  for d in domains:
    for f in ("item_ids", "timestamps"):
      specs[f"{d}_{f}"] = tf.TensorSpec([None, None], tf.int64, name=f"{d}_{f}")
  return specs


class ServingModule(tf.Module):
  """The object `export` saves: the model's variables and its `rank` and `score` functions.

  In memory, `ServingModule(model).rank(request)` runs exactly what the SavedModel serves.

  Args:
    model: a built `RankingModel` (weights and item store filled in).
    max_len: the longest history (per domain) a request may carry: the dataset's
      `max_seq_len` (`export_run` passes it; `schema.max_len_for`).
  """

  def __init__(self, model: RankingModel, max_len: int = MAX_LEN, name: str = "tfrec_serving"):
    super().__init__(name=name)
    if not model.built:
      raise ValueError("build the model (build_and_fill or restore it) before exporting")
    if max_len < 1:
      raise ValueError(f"max_len must be >= 1, got {max_len}")
    self.max_len = int(max_len)
    # Tracked: what the SavedModel stores. The model object itself is only closed over.
    self.model_variables = list(model.variables)
    self.domains = tuple(model.domains)

    def rank(request: Features) -> Dict[str, tf.Tensor]:
      return _rank(model, request, self.max_len)

    def score(examples: Features) -> Dict[str, tf.Tensor]:
      return _score(model, examples, self.max_len)

    self.rank = tf.function(rank, input_signature=[rank_input_specs(model.domains)])
    self.score = tf.function(score, input_signature=[score_input_specs(model.domains)])
    # Every item's encoding, computed once here: requests then gather rows of this table
    # instead of the store's columns plus the visual projection (measured by bench serve).
    self.item_table = tf.Variable(model.item_encoder.encode_all(), trainable=False,
                                  name="item_table")
    with model.item_encoder.lookup_table(self.item_table):  # traced now, with the table
      self.rank.get_concrete_function()
      self.score.get_concrete_function()

  def signatures(self) -> Dict[str, tf.types.experimental.ConcreteFunction]:
    score = self.score.get_concrete_function()
    return {RANK: self.rank.get_concrete_function(), SCORE: score, SERVING_DEFAULT: score}


def _outputs(logits: tf.Tensor) -> Dict[str, tf.Tensor]:
  logits = tf.cast(logits, tf.float32)
  return {"scores": tf.sigmoid(logits), "logits": logits}


def _rank(model: RankingModel, request: Features, max_len: int) -> Dict[str, tf.Tensor]:
  """One user's request -> {"scores", "logits"} <float32>[N]; the user is encoded once."""
  sig = RANK
  ranks = {name: (0 if name == "timestamp" else 1) for name in request}
  x = _after(_rank_checks(sig, request, ranks), request)
  checks = [_assert(tf.size(x[CANDIDATES]) > 0,
                    f"{sig}: {CANDIDATES} is empty; a request needs at least one candidate")]
  for d in model.domains:
    checks += _length_checks(sig, d, tf.size(x[f"{d}_item_ids"]),
                             tf.size(x[f"{d}_timestamps"]), max_len)
  x = _after(checks, x)
  candidates = check_item_ids(x[CANDIDATES], model.num_items, CANDIDATES, allow_padding=False)
  features = {"timestamp": x["timestamp"][None]}
  for d in model.domains:
    features.update(_history(model, sig, d, x[f"{d}_item_ids"][None],
                             x[f"{d}_timestamps"][None]))
  user = model.encode_user(features, training=False)
  return _outputs(model.score(user, candidates[None, :], training=False)[0])


def _score(model: RankingModel, examples: Features, max_len: int) -> Dict[str, tf.Tensor]:
  """B paired examples -> {"scores", "logits"} <float32>[B] (the training forward pass)."""
  sig = SCORE
  ranks = {name: (1 if name in ("timestamp", "item_id") else 2) for name in examples}
  x = _after(_rank_checks(sig, examples, ranks), examples)
  batch = tf.shape(x["timestamp"])[0]
  checks = []
  for name in x:
    n = tf.shape(x[name])[0]
    checks.append(_assert(tf.equal(n, batch), f"{sig}: every input needs one row per example; "
                          f"rows of {name} and of timestamp:", n, batch))
  for d in model.domains:
    ids, ts = tf.shape(x[f"{d}_item_ids"]), tf.shape(x[f"{d}_timestamps"])
    checks.append(_assert(tf.reduce_all(tf.equal(ids, ts)),
                          f"{sig}: {d}_item_ids and {d}_timestamps must have the same shape "
                          "(aligned); got shapes", ids, ts))
    checks += _length_checks(sig, d, ids[1], ts[1], max_len)
  x = _after(checks, x)
  item_id = check_item_ids(x["item_id"], model.num_items, "item_id", allow_padding=False)
  features = {"timestamp": x["timestamp"], "item_id": item_id}
  for d in model.domains:
    features.update(_history(model, sig, d, x[f"{d}_item_ids"], x[f"{d}_timestamps"]))
  return _outputs(model(features, training=False))


# ------------------------------------------------------------------------------ checks


def _assert(ok: tf.Tensor, message: str, *data: tf.Tensor) -> tf.Operation:
  return tf.debugging.Assert(ok, [message, *data], summarize=2 * MAX_LEN)


def _after(ops: List[tf.Operation], tensors: Features) -> Features:
  """`tensors` that can be used only after every op of `ops` has run (and passed)."""
  with tf.control_dependencies(ops):
    return {k: tf.identity(v) for k, v in tensors.items()}


def _runtime_rank(x: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
  """(rank, shape) of `x` computed when the request runs.

  The input's declared shape would let graph optimisation fold `tf.rank(x)` to a constant, so
  the rank is taken of a copy whose static shape is unknown (a serialize/parse round trip:
  microseconds for a request's few hundred ids).
  """
  opaque = tf.io.parse_tensor(tf.io.serialize_tensor(x), x.dtype)
  return tf.rank(opaque), tf.shape(opaque)


def _rank_checks(sig: str, inputs: Features, ranks: Dict[str, int]) -> List[tf.Operation]:
  shapes = {0: "a scalar []", 1: "a vector [n]", 2: "a matrix [batch, length]"}
  checks = []
  for name, x in inputs.items():
    rank, shape = _runtime_rank(x)
    checks.append(_assert(tf.equal(rank, ranks[name]),
                          f"{sig}: {name} must be {shapes[ranks[name]]}; got shape", shape))
  return checks


def _length_checks(sig: str, d: str, n_ids: tf.Tensor, n_ts: tf.Tensor,
                   max_len: int) -> List[tf.Operation]:
  return [
      _assert(tf.equal(n_ids, n_ts), f"{sig}: {d}_item_ids and {d}_timestamps must have the "
              "same length (aligned); got lengths", n_ids, n_ts),
      _assert(n_ids <= max_len, f"{sig}: {d}_item_ids holds at most {max_len} events (the "
              "dataset's maximum history); got length", n_ids),
  ]


def _history(model: RankingModel, sig: str, d: str, ids: tf.Tensor, ts: tf.Tensor) -> Features:
  """Checks <int64>[B, L] right-padded history rows and fits them to the model's length.

  Returns {d}_item_ids, {d}_timestamps <int64>[B, max_seq_len] and {d}_mask <bool>[B,
  max_seq_len]: the newest min(length, max_seq_len) real events of each row, oldest first,
  right-padded with 0 (what `tfrec.data.pipeline.Reader` gives the model in training).
  """
  ids = check_item_ids(ids, model.num_items, f"{d}_item_ids", allow_padding=True)
  real = ids > 0
  gap = tf.reduce_any(tf.logical_not(real[:, :-1]) & real[:, 1:], axis=1)
  back = tf.reduce_any(real[:, 1:] & (ts[:, 1:] < ts[:, :-1]), axis=1)
  checked = _after([
      _assert(tf.logical_not(tf.reduce_any(gap)), f"{sig}: {d}_item_ids has a real item after "
              "padding (0); 0 may only follow the real items; first bad row:",
              tf.boolean_mask(ids, gap)[:1]),
      _assert(tf.logical_not(tf.reduce_any(back)), f"{sig}: {d}_timestamps must be "
              "non-decreasing (oldest first, newest last); first bad row:",
              tf.boolean_mask(ts, back)[:1]),
  ], {"ids": ids, "ts": ts})
  ids, ts, mask = keep_newest(checked["ids"], checked["ts"], model.max_seq_len)
  return {f"{d}_item_ids": ids, f"{d}_timestamps": ts, f"{d}_mask": mask}


def keep_newest(ids: tf.Tensor, timestamps: tf.Tensor, max_len: int):
  """Right-padded <int64>[B, L] rows -> their newest `max_len` real events, padded to max_len.

  Returns:
    (ids <int64>[B, max_len], timestamps <int64>[B, max_len], mask <bool>[B, max_len]), real
    events first (oldest first), then 0 padding; a row with more than `max_len` real events
    keeps its last `max_len` (the input pipeline's truncation), any L (also 0) is accepted.
  """
  length = tf.reduce_sum(tf.cast(ids > 0, tf.int32), axis=1)
  keep = tf.minimum(length, max_len)
  steps = tf.range(max_len)[None, :]
  positions = (length - keep)[:, None] + steps  # < max(length, max_len) <= L + max_len
  mask = steps < keep[:, None]
  pad = [[0, 0], [0, max_len]]
  ids, timestamps = (
      tf.where(mask, tf.gather(tf.pad(v, pad), positions, batch_dims=1), tf.zeros([], v.dtype))
      for v in (ids, timestamps))
  return ids, timestamps, mask
