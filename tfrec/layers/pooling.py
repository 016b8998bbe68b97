"""Masked pooling of a behaviour sequence: the max pooling g(.) of SEMI (Lei et al., KDD 2021)
§3.3 eq. 4 (CCL sequence representations) and the average pooling of its baselines (App. A.2)."""

from __future__ import annotations

from typing import Any, Dict, Optional

import tensorflow as tf
import tf_keras as keras

MODES = ("mean", "sum", "max")


@keras.utils.register_keras_serializable(package="tfrec")
class SequencePooling(keras.layers.Layer):
  """Pools a right-padded sequence over its real items (SEMI eq. 4's g(.) = max; mean; sum).

    mean: sum_i m_i x_i / max(sum_i m_i, 1)      sum: sum_i m_i x_i
    max:  max over {x_i : m_i} per feature

  Padded positions never influence the result; a row without real items gives zeros (not NaN,
  not -inf). The result is invariant to permutations of the real items.

  Args:
    mode: "mean", "sum" or "max".

  Call args:
    inputs: <float32>[batch, seq, dim].
    mask: <bool>[batch, seq], True = real item. None: every position is real.

  Returns:
    <float32>[batch, dim].
  """

  def __init__(self, mode: str = "mean", **kwargs):
    super().__init__(**kwargs)
    if mode not in MODES:
      raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    self.mode = mode

  def call(self, inputs: tf.Tensor, mask: Optional[tf.Tensor] = None) -> tf.Tensor:
    if mask is None:
      mask = tf.ones(tf.shape(inputs)[:-1], tf.bool)
    mask = tf.cast(mask, tf.bool)[..., None]  # [batch, seq, 1]
    if self.mode == "max":
      filled = tf.where(mask, inputs, tf.constant(inputs.dtype.min, inputs.dtype))
      pooled = tf.reduce_max(filled, axis=1)
      return tf.where(tf.reduce_any(mask, axis=1), pooled, tf.zeros_like(pooled))
    total = tf.reduce_sum(tf.where(mask, inputs, tf.zeros_like(inputs)), axis=1)
    if self.mode == "sum":
      return total
    count = tf.reduce_sum(tf.cast(mask, inputs.dtype), axis=1)
    return total / tf.maximum(count, 1.0)

  def compute_mask(self, inputs, mask=None):
    return None

  def get_config(self) -> Dict[str, Any]:
    config = super().get_config()
    config.update(mode=self.mode)
    return config
