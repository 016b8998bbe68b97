"""ICAN's contextual attention (Xie et al., IJCAI 2020, "Internal and contextual attention network
for cold-start multi-channel matching"; `context_attention` in the authors' code,
zhijieqiu/ICAN): each of F feature-field vectors of a user is weighted by its relevance to the
context, the channel the request is for, and the fields stay apart (the internal attention
then runs across them):

  s_f   = tanh(w^T tanh(W_2 tanh(W_1 [c; g_f; g_f - c; g_f * c] + b_1) + b_2) + b_3)
  a     = softmax_f(s)                     (the code adds 0.001 to the denominator: left out)
  out_f = a_f g_f
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import tensorflow as tf
import tf_keras as keras

from tfrec.layers.attention import masked_softmax
from tfrec.layers.mlp import MLP


@keras.utils.register_keras_serializable(package="tfrec")
class ContextualAttention(keras.layers.Layer):
  """Weights F field vectors by an MLP of [context; field; field - context; field * context].

  Args:
    units: hidden widths of the scoring MLP (ICAN: 64, 32); a last layer of width 1 is added,
      tanh after every layer as in ICAN.

  Call args:
    fields: <float>[batch, F, d].
    context: <float>[batch, d].
    mask: optional <bool>[batch, F], True = a field that may take weight.
    return_weights: also return the weights.

  Returns:
    <float>[batch, F, d] the weighted fields; with `return_weights` also <float>[batch, F]
    (summing to 1 over the unmasked fields).
  """

  def __init__(self, units: Sequence[int] = (64, 32), **kwargs):
    super().__init__(**kwargs)
    self.units = tuple(int(u) for u in units)
    self.score = MLP(list(self.units) + [1], activation="tanh", name="score")

  def call(self, fields: tf.Tensor, context: tf.Tensor, mask: Optional[tf.Tensor] = None,
           return_weights: bool = False):
    g = tf.cast(fields, self.compute_dtype)
    c = tf.broadcast_to(tf.cast(context, g.dtype)[:, None, :], tf.shape(g))
    s = self.score(tf.concat([c, g, g - c, g * c], axis=-1))[..., 0]          # [b, F]
    a = masked_softmax(s, mask)
    out = g * a[..., None]
    return (out, a) if return_weights else out

  def compute_mask(self, inputs, mask=None):
    return None

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), "units": list(self.units)}


__all__ = ["ContextualAttention"]
