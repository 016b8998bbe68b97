"""The serving SavedModel of a retrieval model (issue 12): a `retrieve` signature that answers one
request with the top-k items of an index held inside the SavedModel, so TensorFlow Serving can
load it alone.

  retrieve  (also `serving_default`), every input int64 except k:
              timestamp       []   request time
              seq_item_ids    [L]  the user's recent behaviours, oldest first, newest last,
                                   0 <= L <= `max_len` (the dataset's matching maximum,
                                   max(100, max_seq_len): `schema.max_len_for`)
              seq_domain_ids  [L]  their domains (0 source, 1 target)
              seq_timestamps  [L]  their times
              user_features   [F]  only for a model whose query tower reads the user's profile
                                   (`USES_USER_FEATURES`, DSSM): the F = 4 profile ids of
                                   `schema.USER_FEATURE_NAMES`, each in [0, its vocabulary)
              scenario_id     []   only for a scenario-aware query tower (`USES_SCENARIO`,
                                   M5): the request's scenario, in [0, num_scenarios)
              seq_subsidiary  [L, S] float32, only for a model that reads the behaviours'
                                   subsidiary signals (`USES_SUBSIDIARY`, M5): per behaviour
                                   the S = `schema.NUM_SUBSIDIARY` values (watch count,
                                   playback hours), finite and >= 0, aligned with seq_item_ids
              k               []   int32, 1 <= k <= the index size
            -> item_ids <int64>[k], scores <float32>[k], best first.
            The sequence is truncated to the model's `max_seq_len` keeping the newest events,
            the query is encoded once, scored against every index vector (exact search), and
            the request's own behaviour items are left out of the results.
  encode_query  the same inputs without k -> query <float32>[d] (or [K, d] for a multi-interest
            model): what an approximate index outside the SavedModel searches with
            (`tfrec.serving.ann`).

What the module holds (all non-trainable variables):

  item_table     <float32>[R, d]  the item encoder's output per item id (row 0 padding): the
                                  model's items, then items added later from their features
                                  (`tfrec.serving.add_items`); the query tower reads history
                                  items from it (`ItemEncoder.lookup_table`)
  item_known     <bool>[R]        which rows are items (ids between added ones may be gaps)
  index_ids      <int64>[P]       the items retrieved from, unique
  index_vectors  <float32>[P, d]  their item-tower vectors (`model.encode_items` over the table)
  index_position <int32>[R]       position of each id in the index, -1 if not in it (the
                                  request's own items are excluded in O(L), not O(P * L))
  max_request_len <int64>[]       `max_len`

A malformed request (wrong rank, unaligned sequences, a sequence over `max_len`, ids that are no
item of this export, k out of range) fails before any lookup with an InvalidArgumentError naming
the input (the checks of `tfrec.serving.module`). `k` is a tensor, so one SavedModel answers any
k. tensorflow_recommenders' `factorized_top_k.BruteForce` works beside tf_keras 2.21 but was
no faster over 1M x 64 and keeps its index outside these variables (measured: WORKSPACE.md).
"""

from __future__ import annotations

from typing import Dict, Optional

import numpy as np
import tensorflow as tf

from tfrec.data import schema
from tfrec.serving.module import _after, _assert, _rank_checks, keep_newest

RETRIEVE = "retrieve"
ENCODE_QUERY = "encode_query"
MAX_LEN = schema.MAX_MATCH_SEQ_LEN  # without a dataset: the contract's default
_SEQ = ("seq_item_ids", "seq_domain_ids", "seq_timestamps")


def retrieve_input_specs(with_k: bool = True, user_features: bool = False,
                         scenario: bool = False, subsidiary: bool = False
                         ) -> Dict[str, tf.TensorSpec]:
  specs = {"timestamp": tf.TensorSpec([], tf.int64, name="timestamp")}
  if scenario:
    specs["scenario_id"] = tf.TensorSpec([], tf.int64, name="scenario_id")
  if subsidiary:
    specs["seq_subsidiary"] = tf.TensorSpec([None, schema.NUM_SUBSIDIARY], tf.float32,
                                            name="seq_subsidiary")
  if with_k:
    specs["k"] = tf.TensorSpec([], tf.int32, name="k")
  for name in _SEQ:
    specs[name] = tf.TensorSpec([None], tf.int64, name=name)
  if user_features:
    specs["user_features"] = tf.TensorSpec([schema.NUM_USER_FEATURES], tf.int64,
                                           name="user_features")
  return specs


class RetrievalServingModule(tf.Module):
  """What `export` saves for a retrieval model: its variables, the index, `retrieve` and
  `encode_query`.

  Args:
    model: a built `RetrievalModel`.
    index_ids: <int64>[P] the items to retrieve from (default: every item 1..num_items).
    max_len: the longest `seq_item_ids` a request may carry.
    item_table: <float32>[R, d] item-encoder rows (default `model.item_encoder.encode_all()`);
      R > num_items + 1 when items were added from their features.
    item_known: <bool>[R] rows that are items (default: every row but 0).
    item_tags: <int32>[R, MAX_TAGS] each row's tags, held when the item encoder has the "tags"
      feature (default: its store column): a query tower that reads its history's tags
      (`ItemEncoder.stored_tags`: COUPLE, DeepCoNN, ICAN) reads added items' from here.
  """

  def __init__(self, model, index_ids: Optional[np.ndarray] = None, max_len: int = MAX_LEN,
               item_table: Optional[np.ndarray] = None, item_known: Optional[np.ndarray] = None,
               item_tags: Optional[np.ndarray] = None, name: str = "tfrec_retrieval"):
    super().__init__(name=name)
    if not model.built:
      raise ValueError("build the model (build_and_fill or restore it) before exporting")
    if max_len < 1:
      raise ValueError(f"max_len must be >= 1, got {max_len}")
    table = (model.item_encoder.encode_all().numpy() if item_table is None
             else np.asarray(item_table, np.float32))
    rows = table.shape[0]
    known = np.arange(rows) > 0 if item_known is None else np.asarray(item_known, bool)
    if rows < model.num_items + 1 or known.shape != (rows,):
      raise ValueError(f"item_table needs >= {model.num_items + 1} rows and item_known one "
                       f"flag per row; got {table.shape} and {known.shape}")
    ids = (np.arange(1, model.num_items + 1) if index_ids is None
           else np.asarray(index_ids, np.int64))
    if len(ids) == 0 or ids.min() < 1 or ids.max() >= rows or not known[ids].all():
      raise ValueError(f"index ids must be items of the table (in [1, {rows - 1}], known)")
    if len(np.unique(ids)) != len(ids):
      raise ValueError("index ids must be unique")
    position = np.full(rows, -1, np.int32)
    position[ids] = np.arange(len(ids), dtype=np.int32)
    self.max_len = int(max_len)
    self.model_variables = list(model.variables)
    self.item_table = tf.Variable(table, trainable=False, name="item_table")
    self.item_known = tf.Variable(known, trainable=False, name="item_known")
    self.index_ids = tf.Variable(ids, trainable=False, name="index_ids")
    self.index_position = tf.Variable(position, trainable=False, name="index_position")
    self.max_request_len = tf.Variable(self.max_len, dtype=tf.int64, trainable=False,
                                       name="max_request_len")
    self.item_tags = None
    encoder = model.item_encoder
    if "tags" in encoder.features:
      tags = (encoder.item_tags.numpy() if item_tags is None
              else np.asarray(item_tags, np.int32))
      if tags.shape[0] != rows:
        raise ValueError(f"item_tags needs one row per item_table row ({rows}); got "
                         f"{tags.shape}" + (" (the store's: pass the added items' tags)"
                                            if item_tags is None else ""))
      self.item_tags = tf.Variable(tags, trainable=False, name="item_tags")
    with encoder.lookup_table(self.item_table, self.item_tags):
      self.index_vectors = tf.Variable(model.encode_items(tf.constant(ids)), trainable=False,
                                       name="index_vectors")

    def retrieve(request: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
      return _retrieve(model, self, request)

    def encode_query(request: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
      query, _, _ = _query(model, self, request, ENCODE_QUERY)
      return {"query": query}

    reads = dict(user_features=bool(getattr(model, "USES_USER_FEATURES", False)),
                 scenario=bool(getattr(model, "USES_SCENARIO", False)),
                 subsidiary=bool(getattr(model, "USES_SUBSIDIARY", False)))
    self.retrieve = tf.function(retrieve, input_signature=[retrieve_input_specs(**reads)])
    self.encode_query = tf.function(
        encode_query, input_signature=[retrieve_input_specs(False, **reads)])
    with encoder.lookup_table(self.item_table, self.item_tags):  # traced now, with the tables
      self.retrieve.get_concrete_function()
      self.encode_query.get_concrete_function()

  def signatures(self):
    fn = self.retrieve.get_concrete_function()
    return {RETRIEVE: fn, "serving_default": fn,
            ENCODE_QUERY: self.encode_query.get_concrete_function()}


def _query(model, module: RetrievalServingModule, request: Dict[str, tf.Tensor], sig: str):
  """Checks a request and encodes its query: (<float32>[d] or [K, d], the checked seq
  <int64>[L], the checked request)."""
  ranks = {name: (0 if name in ("timestamp", "k", "scenario_id") else
                  2 if name == "seq_subsidiary" else 1) for name in request}
  x = _after(_rank_checks(sig, request, ranks), request)
  n = tf.size(x["seq_item_ids"])
  max_len = module.max_len
  checks = [_assert(tf.equal(tf.size(x[name]), n), f"{sig}: {name} must have as many events as "
                    "seq_item_ids (aligned); got", tf.size(x[name]), n)
            for name in _SEQ[1:]]
  checks.append(_assert(n <= max_len, f"{sig}: seq_item_ids holds at most {max_len} events "
                        "(the dataset's matching maximum); got", n))
  if "seq_subsidiary" in x:
    sub = x["seq_subsidiary"]
    checks.append(_assert(tf.equal(tf.shape(sub)[0], n), f"{sig}: seq_subsidiary must have as "
                          "many rows as seq_item_ids has events (aligned); got",
                          tf.shape(sub)[0], n))
    checks.append(_assert(tf.reduce_all(tf.math.is_finite(sub) & (sub >= 0)),
                          f"{sig}: seq_subsidiary values must be finite and >= 0"))
  if "scenario_id" in x:
    scenarios = int(getattr(model, "num_scenarios", 1))
    checks.append(_assert((x["scenario_id"] >= 0) & (x["scenario_id"] < scenarios),
                          f"{sig}: scenario_id must be in [0, {scenarios}); got",
                          x["scenario_id"]))
  if "k" in x:
    size = tf.shape(module.index_ids)[0]
    checks.append(_assert((x["k"] >= 1) & (x["k"] <= size),
                          f"{sig}: k must be in [1, the index size]; got k and the size",
                          x["k"], size))
  if "user_features" in x:
    sizes = tf.constant(model.user_feature_sizes, tf.int64)
    checks.append(_assert(tf.equal(tf.size(x["user_features"]), schema.NUM_USER_FEATURES),
                          f"{sig}: user_features holds {schema.NUM_USER_FEATURES} ids "
                          f"({', '.join(schema.USER_FEATURE_NAMES)}); got",
                          tf.size(x["user_features"])))
  x = _after(checks, x)
  if "user_features" in x:  # after the length check: the comparison needs aligned shapes
    u = x["user_features"]
    x = _after([_assert(tf.reduce_all((u >= 0) & (u < sizes)),
                        f"{sig}: user_features must be in [0, the vocabulary size) per feature "
                        "(sizes, then the request):", sizes, u)], x)
  seq = _check_known(x["seq_item_ids"], module.item_known)
  ids, ts, mask = keep_newest(seq[None], x["seq_timestamps"][None], model.max_seq_len)
  # The same truncation for the domains (shifted to 1, 2: keep_newest counts ids > 0).
  domains, _, _ = keep_newest(x["seq_domain_ids"][None] + 1, x["seq_timestamps"][None],
                              model.max_seq_len)
  features = {"timestamp": x["timestamp"][None], "seq_item_ids": ids, "seq_timestamps": ts,
              "seq_domain_ids": tf.maximum(domains - 1, 0), "seq_mask": mask}
  if "user_features" in x:
    features["user_features"] = x["user_features"][None]
  if "scenario_id" in x:
    features["scenario_id"] = x["scenario_id"][None]
  if "seq_subsidiary" in x:  # the same newest events as the ids (every request id is real)
    sub = x["seq_subsidiary"][-model.max_seq_len:]
    features["seq_subsidiary"] = tf.pad(
        sub, [[0, model.max_seq_len - tf.shape(sub)[0]], [0, 0]])[None]
  return model.encode_user(features, training=False)["query"][0], seq, x


def _check_known(seq: tf.Tensor, known: tf.Variable) -> tf.Tensor:
  """`seq` <int64>[L] after asserting every id is a row of the table (range first, then the
  gather of `known`) and an item."""
  rows = known.shape[0]
  bad = (seq < 1) | (seq >= rows)
  in_range = _assert(tf.logical_not(tf.reduce_any(bad)), "seq_item_ids: item ids must be in "
                     f"[1, {rows - 1}]; unknown ids:", tf.boolean_mask(seq, bad)[:10])
  with tf.control_dependencies([in_range]):
    is_item = tf.gather(known, tf.identity(seq))
  gap = _assert(tf.reduce_all(is_item), "seq_item_ids: unknown ids (no item of this export):",
                tf.boolean_mask(seq, tf.logical_not(is_item))[:10])
  with tf.control_dependencies([gap]):
    return tf.identity(seq)


def _retrieve(model, module: RetrievalServingModule,
              request: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
  query, seq, x = _query(model, module, request, RETRIEVE)
  vectors = module.index_vectors
  if query.shape.rank == 2:  # multi-interest: each interest retrieves, merged by best score
    scores = tf.reduce_max(tf.matmul(vectors, query, transpose_b=True), axis=1)  # [P]
  else:
    scores = tf.linalg.matvec(vectors, query)  # [P]
  seen = tf.gather(module.index_position, seq)
  seen = tf.boolean_mask(seen, seen >= 0)[:, None]
  scores = tf.tensor_scatter_nd_update(
      scores, seen, tf.fill(tf.shape(seen)[:1], tf.constant(-np.inf, scores.dtype)))
  top = tf.math.top_k(scores, k=x["k"])
  return {"item_ids": tf.gather(module.index_ids, top.indices), "scores": top.values}


__all__ = ["ENCODE_QUERY", "MAX_LEN", "RETRIEVE", "RetrievalServingModule",
           "retrieve_input_specs"]
