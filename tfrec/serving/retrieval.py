"""The serving SavedModel of a retrieval model (issue 12 groundwork): a `retrieve` signature that
answers one request with the top-k items of an index held inside the SavedModel, so TensorFlow
Serving can load it alone.

  retrieve  (also `serving_default`), every input int64 except k:
              timestamp       []   request time
              seq_item_ids    [L]  the user's recent behaviours, oldest first, newest last,
                                   0 <= L <= schema.MAX_MATCH_SEQ_LEN
              seq_domain_ids  [L]  their domains (0 source, 1 target)
              seq_timestamps  [L]  their times
              k               []   int32, 1 <= k <= the index size
            -> item_ids <int64>[k], scores <float32>[k], best first.
            The sequence is truncated to the model's `max_seq_len` keeping the newest events,
            the query is encoded once, scored against every index vector (exact search), and
            the request's own behaviour items are left out of the results.

The index: `index_ids` <int64>[P] and their item-tower vectors `index_vectors` <float32>[P, d],
computed at export. A malformed request (wrong rank, unaligned sequences, a sequence over the
contract's maximum, unknown item ids, k out of range) fails before any lookup with an
InvalidArgumentError naming the input (the checks of `tfrec.serving.module`). `k` is a tensor,
so one SavedModel answers any k (tensorflow_recommenders' `factorized_top_k.BruteForce` fixes k
when its layer is traced, which is why it is not used here).
"""

from __future__ import annotations

from typing import Dict, Optional

import numpy as np
import tensorflow as tf

from tfrec.data import schema
from tfrec.layers.item_encoder import check_item_ids
from tfrec.serving.module import _after, _assert, _rank_checks, keep_newest

RETRIEVE = "retrieve"
MAX_LEN = schema.MAX_MATCH_SEQ_LEN
_SEQ = ("seq_item_ids", "seq_domain_ids", "seq_timestamps")


def retrieve_input_specs() -> Dict[str, tf.TensorSpec]:
  specs = {"timestamp": tf.TensorSpec([], tf.int64, name="timestamp"),
           "k": tf.TensorSpec([], tf.int32, name="k")}
  for name in _SEQ:
    specs[name] = tf.TensorSpec([None], tf.int64, name=name)
  return specs


class RetrievalServingModule(tf.Module):
  """What `export` saves for a retrieval model: its variables, the index and `retrieve`.

  Args:
    model: a built `RetrievalModel`.
    index_ids: <int64>[P] the items to retrieve from (default: every item 1..num_items).
  """

  def __init__(self, model, index_ids: Optional[np.ndarray] = None,
               name: str = "tfrec_retrieval"):
    super().__init__(name=name)
    if not model.built:
      raise ValueError("build the model (build_and_fill or restore it) before exporting")
    ids = (np.arange(1, model.num_items + 1) if index_ids is None
           else np.asarray(index_ids, np.int64))
    if len(ids) == 0 or ids.min() < 1 or ids.max() > model.num_items:
      raise ValueError(f"index ids must be in [1, {model.num_items}]")
    self.model_variables = list(model.variables)
    self.index_ids = tf.Variable(ids, trainable=False, name="index_ids")
    self.index_vectors = tf.Variable(model.encode_items(tf.constant(ids)), trainable=False,
                                     name="index_vectors")

    def retrieve(request: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
      return _retrieve(model, self.index_ids, self.index_vectors, request)

    self.retrieve = tf.function(retrieve, input_signature=[retrieve_input_specs()])
    self.retrieve.get_concrete_function()

  def signatures(self):
    fn = self.retrieve.get_concrete_function()
    return {RETRIEVE: fn, "serving_default": fn}


def _retrieve(model, index_ids: tf.Variable, index_vectors: tf.Variable,
              request: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
  sig = RETRIEVE
  ranks = {name: (0 if name in ("timestamp", "k") else 1) for name in request}
  x = _after(_rank_checks(sig, request, ranks), request)
  n = tf.size(x["seq_item_ids"])
  size = tf.shape(index_ids)[0]
  checks = [_assert(tf.equal(tf.size(x[name]), n), f"{sig}: {name} must have as many events as "
                    "seq_item_ids (aligned); got", tf.size(x[name]), n)
            for name in _SEQ[1:]]
  checks += [_assert(n <= MAX_LEN, f"{sig}: seq_item_ids holds at most {MAX_LEN} events; got", n),
             _assert((x["k"] >= 1) & (x["k"] <= size),
                     f"{sig}: k must be in [1, the index size]; got k and the size", x["k"],
                     size)]
  x = _after(checks, x)
  seq = check_item_ids(x["seq_item_ids"], model.num_items, "seq_item_ids", allow_padding=False)
  ids, ts, mask = keep_newest(seq[None], x["seq_timestamps"][None], model.max_seq_len)
  # The same truncation for the domains (shifted to 1, 2: keep_newest counts ids > 0).
  domains, _, _ = keep_newest(x["seq_domain_ids"][None] + 1, x["seq_timestamps"][None],
                              model.max_seq_len)
  features = {"timestamp": x["timestamp"][None], "seq_item_ids": ids, "seq_timestamps": ts,
              "seq_domain_ids": tf.maximum(domains - 1, 0), "seq_mask": mask}
  query = model.encode_user(features, training=False)["query"][0]  # [d], or [K, d]
  if query.shape.rank == 2:  # multi-interest: each interest retrieves, merged by best score
    scores = tf.reduce_max(tf.matmul(index_vectors, query, transpose_b=True), axis=1)  # [P]
  else:
    scores = tf.linalg.matvec(index_vectors, query)  # [P]
  seen = tf.reduce_any(tf.equal(index_ids[:, None], seq[None, :]), axis=1)
  scores = tf.where(seen, tf.constant(-np.inf, scores.dtype), scores)
  top = tf.math.top_k(scores, k=x["k"])
  return {"item_ids": tf.gather(index_ids, top.indices), "scores": top.values}


__all__ = ["RETRIEVE", "RetrievalServingModule", "retrieve_input_specs"]
