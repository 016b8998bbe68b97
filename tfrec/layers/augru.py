"""AUGRU, the GRU with an attentional update gate of DIEN (Zhou et al., AAAI 2019, "Deep Interest
Evolution Network for Click-Through Rate Prediction", arXiv:1809.03672, §"Interest Evolving
Layer"); equation numbers are DIEN's."""

from __future__ import annotations

from typing import Any, Dict, Optional

import tensorflow as tf
import tf_keras as keras

from tfrec.layers._utils import clone_initializer


@keras.utils.register_keras_serializable(package="tfrec")
class AUGRU(keras.layers.Layer):
  """A GRU whose update gate is scaled by an attention score per step (DIEN eq. 1-3, 10-11):

    u_t   = sigmoid(W^u i_t + U^u h_{t-1} + b^u)                     (1)
    r_t   = sigmoid(W^r i_t + U^r h_{t-1} + b^r)                     (2)
    h~_t  = tanh(W^h i_t + r_t ⊙ U^h h_{t-1} + b^h)                  (3)
    u'_t  = a_t * u_t                                                (10)
    h_t   = (1 - u'_t) ⊙ h_{t-1} + u'_t ⊙ h~_t                       (11)

  from h_0 = 0. With a_t = 1 at every step this is DIEN's GRU (eq. 4); a step with a_t = 0
  leaves the state unchanged, and so does a padded step (mask False), whatever its input: the
  result of a right-padded row is its state after its last real step (zeros for a row without
  any). The reset gate acts after the recurrent product, as in eq. 3 (Keras' `reset_after`).
  Runs as one `tf.scan` over time, in eager and graph mode.

  Args:
    units: state width.
    kernel_initializer: initialiser of W = [W^u, W^r, W^h] <[dim, 3 * units]>.
    recurrent_initializer: initialiser of U = [U^u, U^r, U^h] <[units, 3 * units]>.
    bias_initializer: initialiser of b = [b^u, b^r, b^h] <[3 * units]>.

  Call args:
    inputs: <float>[batch, seq, dim] i_t (in DIEN the interest extractor's states).
    attention: <float>[batch, seq] a_t (DIEN eq. 7's weights).
    mask: <bool>[batch, seq], True = real step. None: every step is real.

  Returns:
    <float>[batch, units] the final state h_T.
  """

  def __init__(self, units: int, kernel_initializer: Any = "glorot_uniform",
               recurrent_initializer: Any = "orthogonal", bias_initializer: Any = "zeros",
               **kwargs):
    super().__init__(**kwargs)
    if int(units) < 1:
      raise ValueError(f"units must be >= 1, got {units}")
    self.units = int(units)
    self.kernel_initializer = keras.initializers.get(kernel_initializer)
    self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
    self.bias_initializer = keras.initializers.get(bias_initializer)

  def build(self, input_shape) -> None:
    dim = int(tf.TensorShape(input_shape)[-1])
    self.kernel = self.add_weight(
        "kernel", shape=[dim, 3 * self.units],
        initializer=clone_initializer(self.kernel_initializer))
    self.recurrent_kernel = self.add_weight(
        "recurrent_kernel", shape=[self.units, 3 * self.units],
        initializer=clone_initializer(self.recurrent_initializer))
    self.bias = self.add_weight("bias", shape=[3 * self.units],
                                initializer=clone_initializer(self.bias_initializer))
    super().build(input_shape)

  def call(self, inputs: tf.Tensor, attention: tf.Tensor,
           mask: Optional[tf.Tensor] = None) -> tf.Tensor:
    dtype = inputs.dtype
    if mask is None:
      mask = tf.ones(tf.shape(inputs)[:2], tf.bool)
    # The input projections of every step at once: [batch, seq, 3 * units].
    projected = tf.einsum("bsd,dk->bsk", inputs, tf.cast(self.kernel, dtype)) + tf.cast(
        self.bias, dtype)
    recurrent = tf.cast(self.recurrent_kernel, dtype)  # read once, outside the loop
    units = self.units

    def step(h, elems):
      x, a, m = elems                                        # [b, 3u], [b, 1], [b, 1]
      x_u, x_r, x_h = tf.split(x, 3, axis=-1)
      h_u, h_r, h_h = tf.split(tf.matmul(h, recurrent), 3, axis=-1)
      u = tf.sigmoid(x_u + h_u)                                # (1)
      r = tf.sigmoid(x_r + h_r)                                # (2)
      candidate = tf.tanh(x_h + r * h_h)                       # (3)
      u = a * u                                                # (10)
      new = (1 - u) * h + u * candidate                        # (11)
      return tf.where(m, new, h)                               # padded steps keep the state

    time_major = (tf.transpose(projected, [1, 0, 2]),
                  tf.transpose(tf.cast(attention, dtype), [1, 0])[..., None],
                  tf.transpose(tf.cast(mask, tf.bool), [1, 0])[..., None])
    h0 = tf.zeros(tf.stack([tf.shape(inputs)[0], units]), dtype)
    states = tf.scan(step, time_major, initializer=h0)       # [seq, batch, units]
    # A sequence of length 0 has no last state: h_0.
    return tf.cond(tf.shape(states)[0] > 0, lambda: states[-1], lambda: h0)

  def compute_mask(self, inputs, mask=None):
    return None

  def get_config(self) -> Dict[str, Any]:
    config = super().get_config()
    config.update(
        units=self.units,
        kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        recurrent_initializer=keras.initializers.serialize(self.recurrent_initializer),
        bias_initializer=keras.initializers.serialize(self.bias_initializer))
    return config


__all__ = ["AUGRU"]
