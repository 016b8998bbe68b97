"""COUPLE's user encoders (§3.2.1-3.2.2): weighted aggregation WA (eq. 3-4, also eq. 11) and
the tag-level frequency encoder (eq. 5). Items from their tags (eq. 1) are `ItemEncoder`'s
"tags" feature, shared with every baseline of COUPLE's tables.

  e_m   = (1/m) sum_k e_k,  d_k = e_k^T M e_m,  a = softmax(d),         eq. 4: WA over m vectors
  WA    = sum_k a_k e_k
  h_i   = tanh(W_w e_{t,i} + b_w),  a_i = softmax_i(e^(h) . h_i),       eq. 5: over the n x l
  e^(c) = sum_i a_i e_{t,i}                                             tags of the history (a
                                                                        tag seen twice weighs
                                                                        twice)

Shapes are stated per layer; masks are <bool> with True = a real entry (padding tags, padded
history positions: never weighted).
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import tensorflow as tf
import tf_keras as keras

from tfrec.layers.attention import masked_softmax


@keras.utils.register_keras_serializable(package="tfrec")
class WeightedAggregation(keras.layers.Layer):
  """WA of eq. 3-4 (and eq. 11): m vectors weighted by their bilinear agreement with their mean.

  Args:
    dim: d (M is d x d).

  Call args:
    vectors: <float>[batch, m, dim]. mask: optional <bool>[batch, m] (masked vectors take no
      weight and leave the mean).

  Returns:
    <float>[batch, dim].
  """

  def __init__(self, dim: int, **kwargs):
    super().__init__(**kwargs)
    self.dim = int(dim)

  def build(self, input_shape: tf.TensorShape) -> None:
    self.m = self.add_weight("m", shape=[self.dim, self.dim], initializer="glorot_uniform")
    super().build(input_shape)

  def call(self, vectors: tf.Tensor, mask: Optional[tf.Tensor] = None) -> tf.Tensor:
    x = tf.cast(vectors, self.compute_dtype)
    if mask is None:
      mean = tf.reduce_mean(x, axis=1)
    else:
      real = tf.cast(mask, x.dtype)[..., None]
      mean = tf.reduce_sum(x * real, axis=1) / tf.maximum(tf.reduce_sum(real, axis=1), 1.0)
    d = tf.einsum("bkd,de,be->bk", x, tf.cast(self.m, x.dtype), mean)         # e_k^T M e_m
    a = masked_softmax(d, mask)
    return tf.einsum("bk,bkd->bd", a, x)

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), "dim": self.dim}


@keras.utils.register_keras_serializable(package="tfrec")
class FrequencyEncoder(keras.layers.Layer):
  """Eq. 5's cross-layer attention of the user's history representation over every tag of the
  history (the n x l tag embeddings), so a tag that recurs is weighted once per occurrence.

  Args:
    dim: d (W_w is d x d).

  Call args:
    tags: <float>[batch, T, dim] the history's tag embeddings (T = n x l). user: <float>[batch,
      dim] e^(h). mask: optional <bool>[batch, T].

  Returns:
    <float>[batch, dim] e^(c) (zeros for a row without a real tag).
  """

  def __init__(self, dim: int, **kwargs):
    super().__init__(**kwargs)
    self.dim = int(dim)
    self.hidden = keras.layers.Dense(self.dim, activation="tanh", name="hidden")

  def build(self, input_shape: tf.TensorShape) -> None:
    with tf.name_scope(self.hidden.name):
      self.hidden.build(tf.TensorShape([None, self.dim]))
    super().build(input_shape)

  def call(self, tags: tf.Tensor, user: tf.Tensor,
           mask: Optional[tf.Tensor] = None) -> tf.Tensor:
    h = self.hidden(tags)                                                     # [b, T, d]
    scores = tf.einsum("btd,bd->bt", h, tf.cast(user, h.dtype))
    a = masked_softmax(scores, mask)
    return tf.einsum("bt,btd->bd", a, tf.cast(tags, h.dtype))

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), "dim": self.dim}


__all__ = ["FrequencyEncoder", "WeightedAggregation"]
