"""Retrieval tasks: a softmax of each query's positive item against negatives, with the
corrections sampled softmax needs (issue 12 groundwork; COUPLE, M5 and their baselines).

In-batch softmax (`Retrieval`), for query i with positive item p_i:

    s_ij   = <q_i, c_j> / tau                        (temperature tau; scores of every candidate)
    s_ij  -= log Q(c_j)                              (log-q correction when candidates are sampled
                                                      non-uniformly, Yi et al., RecSys 2019)
    s_ij   = -inf  where id(c_j) = id(p_i), j != i   (accidental hits removed)
    loss_i = -log softmax_j(s_ij)[i]

The candidates are the positives of the WHOLE global batch (every replica's, gathered in replica
order with `tfrec.moco.queue.gather_replicas`, whose gradient flows back to the replica that
computed each vector), followed by optional extra negatives (a FIFO queue, items sampled by
popularity: with their own log Q). Two logical CPUs therefore give one device's loss and update.
The order (temperature, then correction, then hits) follows tensorflow_recommenders'
`tasks.Retrieval`; its implementation is not used because it neither gathers candidates across
replicas nor returns per-example losses (the core reduces those over the global batch).

Full softmax over a candidate set (`full_softmax`): the positive is located among the given
candidates by id (M5 eq. 7-8: the whole catalogue where it fits).

Top-1 accuracy (`Retrieval.update_top1`): the share of rows whose positive scores highest among
the loss's candidates: "batch_top1" over the batch (and extra negatives), "corpus_top1" over the
whole catalogue when the loss is the full softmax.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import tensorflow as tf
import tf_keras as keras

from tfrec.moco.queue import gather_replicas

_MASKED = -1e9  # a logit that softmax turns into 0 (not -inf: 0 * inf would give NaN gradients)


def _scores(queries: tf.Tensor, candidates: tf.Tensor, temperature: float,
            candidate_log_q: Optional[tf.Tensor]) -> tf.Tensor:
  """<float32>[b, n] (<q, c> / tau) - log Q(c)."""
  scores = tf.matmul(tf.cast(queries, tf.float32), tf.cast(candidates, tf.float32),
                     transpose_b=True) / temperature
  if candidate_log_q is not None:
    scores -= tf.cast(candidate_log_q, tf.float32)[None, :]
  return scores


def mask_accidental_hits(scores: tf.Tensor, positive_ids: tf.Tensor, candidate_ids: tf.Tensor,
                         labels: tf.Tensor) -> tf.Tensor:
  """`scores` <[b, n]> with every candidate that is the row's positive item but not the row's
  own label column (a duplicate of the positive among the negatives) set to a large negative."""
  same = tf.equal(tf.cast(positive_ids, tf.int64)[:, None],
                  tf.cast(candidate_ids, tf.int64)[None, :])
  own = tf.one_hot(labels, tf.shape(scores)[1], on_value=True, off_value=False)
  return tf.where(same & ~own, tf.constant(_MASKED, scores.dtype), scores)


def full_softmax_logits(queries: tf.Tensor, positive_ids: tf.Tensor, candidates: tf.Tensor,
                        candidate_ids: tf.Tensor, temperature: float = 1.0
                        ) -> Tuple[tf.Tensor, tf.Tensor]:
  """(<float32>[b, n] <q, c> / tau over `candidates` <[n, d]> (ids <[n]>), <int32>[b] the column
  of each row's positive): what `full_softmax` takes the softmax of.

  Raises (in graph):
    InvalidArgumentError: a positive id that is not among the candidates.
  """
  scores = _scores(queries, candidates, temperature, None)
  match = tf.equal(tf.cast(positive_ids, tf.int64)[:, None],
                   tf.cast(candidate_ids, tf.int64)[None, :])
  check = tf.debugging.assert_equal(
      tf.reduce_any(match, axis=1), True,
      message="full_softmax: a positive item id is not among the candidates")
  with tf.control_dependencies([check]):
    labels = tf.argmax(tf.cast(match, tf.int32), axis=1, output_type=tf.int32)
  return scores, labels


def full_softmax(queries: tf.Tensor, positive_ids: tf.Tensor, candidates: tf.Tensor,
                 candidate_ids: tf.Tensor, temperature: float = 1.0) -> tf.Tensor:
  """<float32>[b] -log softmax over `candidates` <[n, d]> (ids <[n]>) at each row's positive
  (`full_softmax_logits`)."""
  scores, labels = full_softmax_logits(queries, positive_ids, candidates, candidate_ids,
                                       temperature)
  return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=scores)


def top1_hits(scores: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
  """<float32>[b] 1 where a row's highest score is at its label column, else 0."""
  return tf.cast(tf.equal(tf.argmax(scores, axis=1, output_type=tf.int32),
                          tf.cast(labels, tf.int32)), tf.float32)


@keras.utils.register_keras_serializable(package="tfrec")
class Retrieval(keras.layers.Layer):
  """In-batch softmax retrieval with log-q correction and accidental-hit removal (module
  docstring), and the in-batch top-1 accuracy as its metric.

  Args:
    temperature: tau (> 0).
    remove_accidental_hits: mask candidates equal to the row's positive item.
    metric_name: name of the top-1 accuracy metric.

  Call args:
    queries: <float>[b, d] query-tower vectors.
    positives: <float>[b, d] item-tower vectors of each row's positive.
    positive_ids: <int>[b] their item ids.
    positive_log_q: <float>[b] log of each positive's probability of being drawn as an in-batch
      candidate (e.g. its share of training positives), or None (no correction).
    extra: (vectors <[n, d]>, ids <[n]>, log_q <[n]> or None) extra negatives appended after
      the gathered in-batch candidates (id 0: an empty slot, left out), or None.

  Returns:
    <float32>[b] per-example losses.
  """

  def __init__(self, temperature: float = 1.0, remove_accidental_hits: bool = True,
               metric_name: str = "batch_top1", **kwargs):
    kwargs.setdefault("dtype", "float32")
    super().__init__(**kwargs)
    if temperature <= 0:
      raise ValueError(f"temperature must be > 0, got {temperature}")
    self.temperature = float(temperature)
    self.remove_accidental_hits = bool(remove_accidental_hits)
    self.metric_name = metric_name
    self.top1 = keras.metrics.Mean(metric_name)

  def call(self, queries: tf.Tensor, positives: tf.Tensor, positive_ids: tf.Tensor,
           positive_log_q: Optional[tf.Tensor] = None, extra=None) -> tf.Tensor:
    candidates, offset = gather_replicas(tf.cast(positives, tf.float32))
    ids, _ = gather_replicas(tf.cast(positive_ids, tf.int64))
    log_q = None
    if positive_log_q is not None:
      log_q, _ = gather_replicas(tf.cast(positive_log_q, tf.float32))
    if extra is not None:
      vectors, extra_ids, extra_log_q = extra
      candidates = tf.concat([candidates, tf.cast(vectors, tf.float32)], axis=0)
      ids = tf.concat([ids, tf.cast(extra_ids, tf.int64)], axis=0)
      if log_q is not None or extra_log_q is not None:
        n_batch, n_extra = tf.shape(ids)[0] - tf.shape(extra_ids)[0], tf.shape(extra_ids)[0]
        log_q = tf.concat([tf.zeros([n_batch]) if log_q is None else log_q,
                           tf.zeros([n_extra]) if extra_log_q is None
                           else tf.cast(extra_log_q, tf.float32)], axis=0)
    scores = _scores(queries, candidates, self.temperature, log_q)
    # Id 0 marks an empty candidate slot (a queue not yet full): never a candidate.
    scores = tf.where(ids[None, :] > 0, scores, tf.constant(_MASKED, scores.dtype))
    labels = tf.cast(offset, tf.int32) + tf.range(tf.shape(queries)[0], dtype=tf.int32)
    if self.remove_accidental_hits:
      scores = mask_accidental_hits(scores, positive_ids, ids, labels)
    self.update_top1(scores, labels)
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=scores)

  def update_top1(self, scores: tf.Tensor, labels: tf.Tensor) -> None:
    """Adds a batch to the top-1 metric: `scores` <[b, n]> (accidental hits already masked),
    `labels` <int>[b] each row's positive column. A model whose loss does not go through
    `call` (a full softmax, a ranking loss over its own candidates) reports through this, so
    the metric is never a 0 that nothing measured."""
    self.top1.update_state(top1_hits(scores, labels))

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), "temperature": self.temperature,
            "remove_accidental_hits": self.remove_accidental_hits,
            "metric_name": self.metric_name}


__all__ = ["Retrieval", "full_softmax", "full_softmax_logits", "mask_accidental_hits",
           "top1_hits"]
