"""Target attention of SEMI (Lei et al., KDD 2021) §3.4 (eq. 2-3 with the target as the query)
and of DIN (Zhou et al., KDD 2018, the activation unit, eq. 3)."""

from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Sequence, Union

import tensorflow as tf
import tf_keras as keras

from tfrec.layers.attention import MultiHeadAttentionBlock, masked_softmax
from tfrec.layers.mlp import MLP

MODES = ("dot", "din")


@keras.utils.register_keras_serializable(package="tfrec")
class TargetAttention(keras.layers.Layer):
  """Attends from a target item over a behaviour sequence (SEMI §3.4; DIN eq. 3).

  mode="dot" (SEMI §3.4, ADAPT eq. 9-10): a `MultiHeadAttentionBlock` whose query is the
    target v_t^in and whose keys and values are the sequence (V^inter or P^inter):
    u = Block(Q=[v_t], K=V=S)[0], scaled dot-product weights (eq. 3) over the real items.
    With use_residual=False, ff_dim=0 and use_layer_norm=False this is the bare multi-head
    attention of ADAPT eq. 9-10 (plus the output projection).
  mode="din" (DIN's activation unit): a_j = MLP([q, k_j, q - k_j, q * k_j]) -> scalar and
    u = sum_j a_j k_j over the real items. As in DIN the scores are NOT softmax-normalised
    unless `din_softmax` (then through `masked_softmax`).

  Masked keys receive zero weight, so values at padded positions cannot change the result, and
  the result is invariant to permutations of the real items. A row without any real item gives
  zeros in both modes (in "dot" mode the residual would otherwise pass the target through: a
  user with no history in a domain gets a zero representation of that domain).

  Args:
    mode: "dot" or "din".
    num_heads: heads of the "dot" block (SEMI: 8).
    head_dim: head width of the "dot" block; None: dim // num_heads.
    ff_dim: feed-forward width of the "dot" block; None: dim; 0: none.
    dropout: dropout rate of the "dot" block's sublayers and of the "din" MLP.
    use_layer_norm: layer norms in the "dot" block.
    use_residual: residual connections in the "dot" block.
    activation: feed-forward activation of the "dot" block.
    din_units: hidden widths of the "din" activation unit (a final width-1 layer is added).
    din_activation: hidden activation of the "din" activation unit.
    din_softmax: normalise the "din" scores with a masked softmax.
    kernel_initializer: initialiser of all kernels.

  Call args:
    query: <float32>[batch, dim] target item, or <float32>[batch, num_targets, dim] to score
      several targets against one sequence at once.
    keys: <float32>[batch, seq, dim] behaviour sequence (keys = values).
    mask: <bool>[batch, seq], True = real item. None: every position is real.
    training: dropout switch.
    return_attention_scores: also return the weights over the sequence.

  Returns:
    <float32>[batch, dim] (or <float32>[batch, num_targets, dim], following `query`); with
    `return_attention_scores` also the weights <float32>[batch, heads, seq] (or [batch, heads,
    num_targets, seq]; "din" mode: heads = 1, the activation unit's scores as they weigh the
    sum), 0 at padded positions and for a row without real items.
  """

  def __init__(self,
               mode: str = "dot",
               num_heads: int = 1,
               head_dim: Optional[int] = None,
               ff_dim: Optional[int] = None,
               dropout: float = 0.0,
               use_layer_norm: bool = True,
               use_residual: bool = True,
               activation: Union[str, Callable[..., Any]] = "relu",
               din_units: Sequence[int] = (80, 40),
               din_activation: Union[str, Callable[..., Any]] = "sigmoid",
               din_softmax: bool = False,
               kernel_initializer: Any = "glorot_uniform",
               **kwargs):
    super().__init__(**kwargs)
    if mode not in MODES:
      raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    self.mode = mode
    self.num_heads = num_heads
    self.head_dim = head_dim
    self.ff_dim = ff_dim
    self.dropout = dropout
    self.use_layer_norm = use_layer_norm
    self.use_residual = use_residual
    self.activation = keras.activations.get(activation)
    self.din_units = [int(u) for u in din_units]
    self.din_activation = keras.activations.get(din_activation)
    self.din_softmax = din_softmax
    self.kernel_initializer = keras.initializers.get(kernel_initializer)
    self._block = self._din_mlp = None
    if mode == "dot":
      self._block = MultiHeadAttentionBlock(
          num_heads=num_heads, head_dim=head_dim, ff_dim=ff_dim, dropout=dropout,
          use_layer_norm=use_layer_norm, use_residual=use_residual, activation=activation,
          kernel_initializer=kernel_initializer, name="block")
    else:
      self._din_mlp = MLP(self.din_units + [1], activation=din_activation, dropout=dropout,
                          linear_output=True, kernel_initializer=kernel_initializer,
                          name="activation_unit")

  def call(self, query: tf.Tensor, keys: tf.Tensor, mask: Optional[tf.Tensor] = None,
           training: Optional[bool] = None, return_attention_scores: bool = False):
    single = query.shape.rank == 2
    q = query[:, None, :] if single else query  # [batch, targets, dim]
    if mask is None:
      mask = tf.ones(tf.shape(keys)[:2], tf.bool)
    mask = tf.cast(mask, tf.bool)
    if self.mode == "dot":
      out = self._block(q, keys, key_mask=mask, training=training,
                        return_attention_scores=return_attention_scores)
      if return_attention_scores:
        out, weights = out  # weights: [batch, heads, targets, seq]
    else:
      q4 = q[:, :, None, :]                 # [batch, targets, 1, dim]
      k4 = keys[:, None, :, :]              # [batch, 1, seq, dim]
      diff = q4 - k4                        # [batch, targets, seq, dim]
      zeros = tf.zeros_like(diff)
      features = tf.concat([q4 + zeros, k4 + zeros, diff, q4 * k4], axis=-1)
      scores = self._din_mlp(features, training=training)[..., 0]  # [batch, targets, seq]
      key_mask = mask[:, None, :]
      if self.din_softmax:
        weights = masked_softmax(scores, key_mask, axis=-1)
      else:
        weights = tf.where(key_mask, scores, tf.zeros_like(scores))
      values = tf.where(mask[..., None], keys, tf.zeros_like(keys))
      out = tf.einsum("bts,bsd->btd", weights, values)
      weights = weights[:, None]  # one "head"
    has_items = tf.reduce_any(mask, axis=-1)[:, None, None]
    out = tf.where(has_items, out, tf.zeros_like(out))
    if not return_attention_scores:
      return out[:, 0, :] if single else out
    weights *= tf.cast(has_items[..., None], weights.dtype)
    return (out[:, 0, :], weights[:, :, 0, :]) if single else (out, weights)

  def compute_mask(self, inputs, mask=None):
    return None

  def get_config(self) -> Dict[str, Any]:
    config = super().get_config()
    config.update(
        mode=self.mode,
        num_heads=self.num_heads,
        head_dim=self.head_dim,
        ff_dim=self.ff_dim,
        dropout=self.dropout,
        use_layer_norm=self.use_layer_norm,
        use_residual=self.use_residual,
        activation=keras.activations.serialize(self.activation),
        din_units=list(self.din_units),
        din_activation=keras.activations.serialize(self.din_activation),
        din_softmax=self.din_softmax,
        kernel_initializer=keras.initializers.serialize(self.kernel_initializer))
    return config
