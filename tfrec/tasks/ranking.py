"""The pointwise click-through task: binary cross-entropy on logits (SEMI eq. 10, ADAPT eq. 11,
THACIL eq. 10) with AUC as its metric."""

from __future__ import annotations

from typing import Any, Dict

import tensorflow as tf
import tf_keras as keras


@keras.utils.register_keras_serializable(package="tfrec")
class Ranking(keras.layers.Layer):
  """L = -(y log sigmoid(z) + (1 - y) log(1 - sigmoid(z))) per example, and AUC over z.

  Returns per-example losses: the model's core reduces them over the GLOBAL batch, which keeps
  the update exact under tf.distribute when replicas hold different row counts.

  Call args:
    labels: <int|float>[batch] in {0, 1}.
    logits: <float>[batch].
    update_metrics: update the AUC (the metric `self.auc`, named "auc").

  Returns:
    <float32>[batch] binary cross-entropy of each example.
  """

  def __init__(self, name: str = "ranking_task", **kwargs):
    kwargs.setdefault("dtype", "float32")
    super().__init__(name=name, **kwargs)
    self.auc = keras.metrics.AUC(from_logits=True, name="auc")

  def call(self, labels: tf.Tensor, logits: tf.Tensor,
           update_metrics: bool = True) -> tf.Tensor:
    labels = tf.cast(labels, tf.float32)
    logits = tf.cast(logits, tf.float32)
    if update_metrics:
      self.auc.update_state(labels, logits)
    return tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)

  def get_config(self) -> Dict[str, Any]:
    return super().get_config()

