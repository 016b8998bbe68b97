"""Self-attentive pooling of a set of vectors, ADAPT eq. 2-4 (§III-A: the words of a
storytelling title):

  alpha(k) = W_a tanh(W_1 t_k + b_1)                          (eq. 2; W_a, W_1 in R^{d x d})
  alpha~(k) = exp(alpha(k)) / sum_k' exp(alpha(k'))           (eq. 3)
  t = sum_k alpha~(k) ⊙ t_k                                   (eq. 4)

With W_a in R^{d x d} each word's score is a d-vector, so the softmax of eq. 3 runs over the words
separately for each dimension (as THACIL's vector attention) and eq. 4's product is elementwise.
Padded words (id 0) get weight 0; a set without a real word pools to zeros.
"""

from __future__ import annotations

from typing import Any, Dict

import tensorflow as tf
import tf_keras as keras

from tfrec.layers._utils import clone_initializer
from tfrec.layers.attention import masked_softmax


@keras.utils.register_keras_serializable(package="tfrec")
class SelfAttentivePooling(keras.layers.Layer):
  """ADAPT eq. 2-4 (module docstring).

  Args:
    kernel_initializer, kernel_regularizer: of W_1 and W_a.

  Call args:
    x: <float>[..., K, d] the vectors to pool (a title's word embeddings).
    mask: <bool>[..., K] True = real.

  Returns:
    <float>[..., d].
  """

  def __init__(self, kernel_initializer: Any = "glorot_uniform", kernel_regularizer: Any = None,
               **kwargs):
    super().__init__(**kwargs)
    self.kernel_initializer = keras.initializers.get(kernel_initializer)
    self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)

  def build(self, x_shape: tf.TensorShape, mask_shape: tf.TensorShape = None) -> None:
    d = int(x_shape[-1])
    self.hidden = keras.layers.Dense(
        d, activation="tanh", name="hidden", kernel_regularizer=self.kernel_regularizer,
        kernel_initializer=clone_initializer(self.kernel_initializer))           # W_1, b_1
    self.score = keras.layers.Dense(
        d, use_bias=False, name="score", kernel_regularizer=self.kernel_regularizer,
        kernel_initializer=clone_initializer(self.kernel_initializer))           # W_a
    super().build(x_shape)

  def weights_of(self, x: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """<float>[..., K, d] eq. 3's weights: per dimension, sum to one over the real words."""
    return masked_softmax(self.score(self.hidden(x)), tf.cast(mask, tf.bool)[..., None],
                          axis=-2)

  def call(self, x: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    x = tf.convert_to_tensor(x)
    return tf.reduce_sum(self.weights_of(x, mask) * x, axis=-2)

  def compute_mask(self, inputs, mask=None):
    return None

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(),
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer)}
