"""Contrastive retrieval of a pair's own key from a dictionary of keys: InfoNCE (SEMI eq. 5-6,
MoCo) with top-1 accuracy as its metric. The dictionary (a `tfrec.moco.queue.KeyQueue`) and the
key encoders belong to the model; this task scores queries against what it is given."""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import tensorflow as tf
import tf_keras as keras


def info_nce(queries: tf.Tensor, dictionary: tf.Tensor, positives: tf.Tensor,
             temperature: float, exclude: Optional[tf.Tensor] = None
             ) -> Tuple[tf.Tensor, tf.Tensor]:
  """Per-example InfoNCE (SEMI eq. 5-6) and top-1 hits.

  Args:
    queries: <float>[n, dim] q_i.
    dictionary: <float32>[K, dim] keys k_j (for CCL: the other domain's updated queue).
    positives: <int>[n] the row of q_i's own key k_i in `dictionary`.
    temperature: tau.
    exclude: optional <bool>[n, K]: keys left out of q_i's softmax (not negatives of it, e.g.
      its own pair's stale keys from earlier steps); its positive is never left out.

  Returns:
    (<float32>[n] -log softmax_j(q_i . k_j / tau)[positive_i] over the keys not excluded;
     <float32>[n] 1.0 where the positive scores highest among them).
  """
  logits = tf.matmul(tf.cast(queries, tf.float32), dictionary, transpose_b=True) / temperature
  positives = tf.cast(positives, tf.int32)
  if exclude is not None:
    own = tf.one_hot(positives, tf.shape(logits)[1], on_value=True, off_value=False)
    logits = tf.where(tf.logical_and(exclude, ~own), tf.cast(-1e9, logits.dtype), logits)
  loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=positives, logits=logits)
  hits = tf.cast(tf.equal(tf.argmax(logits, axis=1, output_type=tf.int32), positives),
                 tf.float32)
  return loss, hits


@keras.utils.register_keras_serializable(package="tfrec")
class Contrastive(keras.layers.Layer):
  """InfoNCE against a dictionary with the top-1 accuracy as a metric.

  Args:
    temperature: tau of the softmax.
    metric_name: name of the top-1 accuracy metric (a Mean of hits over the epoch).

  Call args:
    queries: <float>[n, dim]; dictionary: <float32>[K, dim]; positives: <int>[n];
    exclude: optional <bool>[n, K] (see `info_nce`).

  Returns:
    (<float32>[n] per-example loss, <float32>[n] hits).
  """

  def __init__(self, temperature: float, metric_name: str = "top1", **kwargs):
    kwargs.setdefault("dtype", "float32")
    super().__init__(**kwargs)
    if temperature <= 0:
      raise ValueError(f"temperature must be > 0, got {temperature}")
    self.temperature = float(temperature)
    self.metric_name = metric_name
    self.top1 = keras.metrics.Mean(metric_name)

  def call(self, queries: tf.Tensor, dictionary: tf.Tensor, positives: tf.Tensor,
           exclude: Optional[tf.Tensor] = None) -> Tuple[tf.Tensor, tf.Tensor]:
    loss, hits = info_nce(queries, dictionary, positives, self.temperature, exclude)
    self.top1.update_state(hits)
    return loss, hits

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), "temperature": self.temperature,
            "metric_name": self.metric_name}
