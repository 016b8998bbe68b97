"""Multi-head attention block of SEMI (Lei et al., KDD 2021) §3.2.2, eq. 2-3, and `masked_softmax`.

`masked_softmax` is the one implementation of attention masking in tfrec: every attention layer
(this block, `TargetAttention`) normalises its scores through it.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, Optional, Union

import tensorflow as tf
import tf_keras as keras

from tfrec.layers._utils import clone_initializer
from tfrec.layers.step_random import Dropout


def masked_softmax(logits: tf.Tensor, mask: Optional[tf.Tensor] = None,
                   axis: int = -1, zero_all_masked: bool = True) -> tf.Tensor:
  """Softmax over `axis` that gives masked entries exactly zero weight (SEMI eq. 3's softmax).

  A masked logit gets the most negative finite value of its dtype added before the softmax, so
  its weight underflows to exactly 0 whenever one entry of the slice is unmasked; a slice whose
  entries are ALL masked gets all-zero weights (never NaN, and independent of the masked
  logits). Gradients are finite in both cases. The additive bias and the all-masked factor are
  computed at the mask's (broadcast) shape, so on [batch, heads, q, k] scores with a
  [batch, 1, 1, k] key mask the full-size work is one add, the softmax and one multiply by a
  [batch, 1, 1, 1] factor (cheaper than a full-size select plus a full-size mask product).

  Args:
    logits: <float>[..., n] attention scores.
    mask: <bool>[..., n] (anything broadcastable to `logits`); True = may receive weight.
      None: a plain softmax.
    axis: the axis to normalise over.
    zero_all_masked: zero the weights of all-masked slices. False leaves them finite but
      meaningless, for a caller that zeroes a smaller tensor downstream instead (the attention
      block zeroes the heads of such queries, [batch, q, heads, head_dim] < [.., q, k]).

  Returns:
    <float>[..., n] weights of `logits`' shape: they sum to 1 over `axis` where at least one entry
    is unmasked and are all 0 where every entry is masked.
  """
  if mask is None:
    return tf.nn.softmax(logits, axis=axis)
  mask = tf.cast(mask, tf.bool)
  bias = tf.where(mask, tf.constant(0, logits.dtype), tf.constant(logits.dtype.min, logits.dtype))
  weights = tf.nn.softmax(logits + bias, axis=axis)
  if zero_all_masked:
    weights *= tf.cast(tf.reduce_any(mask, axis=axis, keepdims=True), logits.dtype)
  return weights


def _build_in_scope(layer: keras.layers.Layer, shape: tf.TensorShape) -> None:
  """Builds a sublayer under its own name scope, so its variables get distinct names."""
  with tf.name_scope(layer.name):
    layer.build(shape)


NORM_ORDERS = ("post", "pre", "sasrec")


@keras.utils.register_keras_serializable(package="tfrec")
class MultiHeadAttentionBlock(keras.layers.Layer):
  """Transformer block of SEMI §3.2.2 (eq. 2-3) with a position-wise feed-forward network.

  Computes, with `h = num_heads` heads of width `d_h = head_dim`:

    head_i = softmax(Q W_i^Q (K W_i^K)^T / sqrt(d_h)) V W_i^V             (eq. 3, d_k = d_h)
    A      = Concat(head_1, ..., head_h) W^O                              (eq. 2 + projection)
    X      = LayerNorm(Q + Dropout(A))                                    (residual + norm)
    Y      = LayerNorm(X + Dropout(FFN(X))),  FFN(x) = act(x W_1 + b_1) W_2 + b_2

  Norm order (`norm_order`):
    "post"    the above: residual add, then layer norm, as in the original transformer [31] that
              §3.2.2 follows and in BST (whose block SEMI's baseline shares, App. A.2); the
              paper says no more. The default.
    "pre"     SASRec's g(x) = x + Dropout(g(LayerNorm(x))) (Kang & McAuley, ICDM 2018, §III-B):
                X = Q + Dropout(A(LN(Q), LN(K), LN(V))),  Y = X + Dropout(FFN(LN(X)))
              (in self-attention K = V = Q, so all three are normalised once).
    "sasrec"  the SASRec reference code (kang205/SASRec, pmixer/SASRec.pytorch), which produced
              the paper's figures: only the query is normalised and the residual starts from it,
                Q~ = LN(Q),  X = Q~ + Dropout(A(Q~, K, V)),  X~ = LN(X),  Y = X~ + Dropout(FFN(X~)).
    Pre-norm stacks need a layer norm after their last block (the model's, not this layer's).
  The output projection W^O maps the concatenated heads back to the query width so that the
  residual can be added; SEMI's eq. 2 omits it, Vaswani et al. have it.

  Masks: a key with `key_mask` False never receives weight; a query whose keys are all masked
  gets all-zero weights and heads (A = b^O), so its output stays finite, never NaN. `query_mask` zeroes
  the outputs of padded queries. `attention_mask` <bool>[batch, q, k] restricts which key each
  query sees (e.g. THACIL's forward mask, eq. 7). All heads are computed at once with einsum.
  Query, key and value share the feature width `dim`.

  Args:
    num_heads: number of heads n_h.
    head_dim: width d_h of each head; None: dim // num_heads (dim must then be divisible).
    ff_dim: hidden width of the feed-forward network; None: dim; 0: no feed-forward sublayer.
    dropout: rate applied to each sublayer's output before the residual add.
    attention_dropout: rate applied to the attention weights.
    use_layer_norm: apply layer normalisation (where: `norm_order`).
    norm_order: "post", "pre" or "sasrec" (above).
    use_residual: add the sublayer input to its output (False with ff_dim=0 and no layer
      norm gives the bare multi-head attention of ADAPT eq. 9-10 plus W^O).
    activation: activation of the feed-forward hidden layer.
    use_bias: biases in the Q/K/V/output projections.
    kernel_initializer: initialiser of all kernels (projections and feed-forward).
    kernel_regularizer: regulariser of all kernels.
    layer_norm_epsilon: epsilon of the layer norms. The default, 1.001e-5, is the smallest that
      lets Keras use its fused layer-norm kernel (fwd+bwd 1.27x faster at SEMI sizes on CPU).

  Call args:
    query: <float32>[batch, q, dim].
    value: <float32>[batch, k, dim]; None: self-attention (value = key = query, and `key_mask`
      defaults to `query_mask`).
    key: <float32>[batch, k, dim]; None: key = value.
    query_mask: <bool>[batch, q], True = real query; padded queries give zero outputs.
    key_mask: <bool>[batch, k], True = real key.
    attention_mask: <bool>[batch, q, k], True = query may attend to key.
    training: dropout switch.
    return_attention_scores: also return the attention weights.

  Returns:
    <float32>[batch, q, dim]; with `return_attention_scores` also the weights
    <float32>[batch, num_heads, q, k] (before dropout).
  """

  def __init__(self,
               num_heads: int = 1,
               head_dim: Optional[int] = None,
               ff_dim: Optional[int] = None,
               dropout: float = 0.0,
               attention_dropout: float = 0.0,
               use_layer_norm: bool = True,
               use_residual: bool = True,
               activation: Union[str, Callable[..., Any]] = "relu",
               use_bias: bool = True,
               kernel_initializer: Any = "glorot_uniform",
               kernel_regularizer: Any = None,
               layer_norm_epsilon: float = 1.001e-5,
               norm_order: str = "post",
               **kwargs):
    super().__init__(**kwargs)
    if norm_order not in NORM_ORDERS:
      raise ValueError(f"norm_order must be one of {NORM_ORDERS}, got {norm_order!r}")
    if num_heads < 1:
      raise ValueError(f"num_heads must be >= 1, got {num_heads}")
    if head_dim is not None and head_dim < 1:
      raise ValueError(f"head_dim must be >= 1 or None, got {head_dim}")
    if ff_dim is not None and ff_dim < 0:
      raise ValueError(f"ff_dim must be >= 0 or None, got {ff_dim}")
    for name, rate in (("dropout", dropout), ("attention_dropout", attention_dropout)):
      if not 0.0 <= rate < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {rate}")
    self.num_heads = num_heads
    self.head_dim = head_dim
    self.ff_dim = ff_dim
    self.dropout = dropout
    self.attention_dropout = attention_dropout
    self.use_layer_norm = use_layer_norm
    self.use_residual = use_residual
    self.activation = keras.activations.get(activation)
    self.use_bias = use_bias
    self.kernel_initializer = keras.initializers.get(kernel_initializer)
    self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
    self.layer_norm_epsilon = layer_norm_epsilon
    self.norm_order = norm_order
    self._output_dropout = Dropout(dropout)
    self._weights_dropout = Dropout(attention_dropout)

  def build(self, query_shape: tf.TensorShape) -> None:
    dim = tf.TensorShape(query_shape)[-1]
    if dim is None:
      raise ValueError("MultiHeadAttentionBlock needs a known last dimension of the query")
    dim = int(dim)
    if self.head_dim is None and dim % self.num_heads:
      raise ValueError(f"dim {dim} is not divisible by num_heads {self.num_heads}; "
                       "pass head_dim explicitly")
    self._dim = dim
    self._head_dim = self.head_dim or dim // self.num_heads
    inner = self.num_heads * self._head_dim
    self._kernels = {}
    self._biases = {}
    for name, shape in (("query", [dim, inner]), ("key", [dim, inner]), ("value", [dim, inner]),
                        ("output", [inner, dim])):
      self._kernels[name] = self.add_weight(
          f"{name}_kernel", shape=shape, initializer=clone_initializer(self.kernel_initializer),
          regularizer=self.kernel_regularizer)
      if self.use_bias:
        self._biases[name] = self.add_weight(f"{name}_bias", shape=[shape[1]],
                                             initializer="zeros")
    ff_dim = dim if self.ff_dim is None else self.ff_dim
    self._ff_hidden = self._ff_output = None
    if ff_dim:
      self._ff_hidden = keras.layers.Dense(
          ff_dim, activation=self.activation, name="ff_hidden",
          kernel_initializer=clone_initializer(self.kernel_initializer),
          kernel_regularizer=self.kernel_regularizer)
      self._ff_output = keras.layers.Dense(
          dim, name="ff_output", kernel_initializer=clone_initializer(self.kernel_initializer),
          kernel_regularizer=self.kernel_regularizer)
      _build_in_scope(self._ff_hidden, query_shape)
      _build_in_scope(self._ff_output, tf.TensorShape(query_shape)[:-1].concatenate([ff_dim]))
    self._attention_norm = self._ff_norm = None
    if self.use_layer_norm:
      self._attention_norm = keras.layers.LayerNormalization(
          epsilon=self.layer_norm_epsilon, name="attention_norm")
      _build_in_scope(self._attention_norm, query_shape)
      if ff_dim:
        self._ff_norm = keras.layers.LayerNormalization(epsilon=self.layer_norm_epsilon,
                                                        name="ff_norm")
        _build_in_scope(self._ff_norm, query_shape)
    super().build(query_shape)

  def _project(self, x: tf.Tensor, name: str, scale: Optional[float] = None) -> tf.Tensor:
    """<float>[batch, n, dim] -> <float>[batch, heads, n, head_dim] (heads-major for matmul),
    times `scale` when given: folded into the [dim, inner] kernel and the bias, (x W + b) s =
    x (W s) + b s, instead of a multiply (and its gradient) over the projected sequence."""
    shape = tf.shape(x)
    kernel = self._kernels[name]
    bias = self._biases.get(name)
    if scale is not None:
      kernel = kernel * tf.cast(scale, kernel.dtype)
      bias = None if bias is None else bias * tf.cast(scale, bias.dtype)
    out = tf.matmul(tf.reshape(x, [-1, self._dim]), kernel)
    if bias is not None:
      out = tf.nn.bias_add(out, bias)  # BiasAddGrad, not a broadcast Sum
    out = tf.reshape(out, [shape[0], shape[1], self.num_heads, self._head_dim])
    return tf.transpose(out, [0, 2, 1, 3])

  def _sublayer(self, x: tf.Tensor, y: tf.Tensor, norm: Optional[keras.layers.Layer],
                training: Optional[bool]) -> tf.Tensor:
    """Dropout(y), residual add from x, then the norm when post-norm (x is already normalised
    in the pre-norm orders)."""
    y = self._output_dropout(y, training=training)
    if self.use_residual:
      y = x + y
    return norm(y) if norm is not None and self.norm_order == "post" else y

  def _pre_norm(self, x: tf.Tensor, norm: Optional[keras.layers.Layer]) -> tf.Tensor:
    return norm(x) if norm is not None and self.norm_order != "post" else x

  def call(self,
           query: tf.Tensor,
           value: Optional[tf.Tensor] = None,
           key: Optional[tf.Tensor] = None,
           query_mask: Optional[tf.Tensor] = None,
           key_mask: Optional[tf.Tensor] = None,
           attention_mask: Optional[tf.Tensor] = None,
           training: Optional[bool] = None,
           return_attention_scores: bool = False):
    self_attention = value is None
    if self_attention:
      if key is not None:
        raise ValueError("pass `value` together with `key` (self-attention takes neither)")
      value = query
      if key_mask is None:
        key_mask = query_mask
    if key is None:
      key = value
    for name, t in (("key", key), ("value", value)):
      if t.shape[-1] is not None and t.shape[-1] != self._dim:
        raise ValueError(f"{name} width {t.shape[-1]} differs from the query width {self._dim}")
    residual = query  # what the attention sublayer's residual adds (`norm_order`)
    if self.norm_order != "post" and self._attention_norm is not None:
      normed = self._attention_norm(query)
      if self.norm_order == "pre":
        if self_attention:
          key = value = normed
        else:
          key, value = self._attention_norm(key), self._attention_norm(value)
      else:  # "sasrec": keys and values as given, the residual from the normalised query
        residual = normed
      query = normed
    q = self._project(query, "query", scale=1.0 / math.sqrt(self._head_dim))  # eq. 3
    k = self._project(key, "key")
    v = self._project(value, "value")
    # Batched matmuls over [batch, heads, n, head_dim]: about 1.2x faster on CPU than the
    # equivalent einsums (measured, TF 2.21, SEMI sizes). The 1/sqrt(d_h) scale is folded into
    # W^Q (`_project`): no multiply over Q or the [batch, heads, q, k] scores.
    logits = tf.matmul(q, k, transpose_b=True)
    mask = None
    if key_mask is not None:
      mask = tf.cast(key_mask, tf.bool)[:, None, None, :]
    if attention_mask is not None:
      pair = tf.cast(attention_mask, tf.bool)[:, None, :, :]
      mask = pair if mask is None else tf.logical_and(mask, pair)
    weights = masked_softmax(logits, mask, axis=-1, zero_all_masked=False)
    heads = tf.matmul(self._weights_dropout(weights, training=training), v)  # [b, h, q, e]
    # A query without any real key gets zero heads (and zero weights). In self-attention over
    # one mask (key mask = query mask, no attention mask) only padded queries lack keys, and
    # their outputs are zeroed by the query mask below: the product is skipped there.
    only_padded = (self_attention and attention_mask is None and query_mask is not None
                   and key_mask is query_mask and not return_attention_scores)
    if mask is not None and not only_padded:
      has_key = tf.cast(tf.reduce_any(mask, axis=-1, keepdims=True), heads.dtype)
      heads *= has_key
      if return_attention_scores:
        weights *= has_key
    shape = tf.shape(query)
    heads = tf.reshape(tf.transpose(heads, [0, 2, 1, 3]),
                       [-1, self.num_heads * self._head_dim])
    attended = tf.matmul(heads, self._kernels["output"])
    if self.use_bias:
      attended = tf.nn.bias_add(attended, self._biases["output"])
    attended = tf.reshape(attended, [shape[0], shape[1], self._dim])
    x = self._sublayer(residual, attended, self._attention_norm, training)
    if self._ff_hidden is not None:
      normed = self._pre_norm(x, self._ff_norm)
      x = self._sublayer(normed if self.norm_order == "sasrec" else x,
                         self._ff_output(self._ff_hidden(normed)), self._ff_norm, training)
    if query_mask is not None:
      x *= tf.cast(query_mask, x.dtype)[..., None]
    if return_attention_scores:
      return x, weights
    return x

  def get_config(self) -> Dict[str, Any]:
    config = super().get_config()
    config.update(
        num_heads=self.num_heads,
        head_dim=self.head_dim,
        ff_dim=self.ff_dim,
        dropout=self.dropout,
        attention_dropout=self.attention_dropout,
        use_layer_norm=self.use_layer_norm,
        use_residual=self.use_residual,
        activation=keras.activations.serialize(self.activation),
        use_bias=self.use_bias,
        kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        kernel_regularizer=keras.regularizers.serialize(self.kernel_regularizer),
        layer_norm_epsilon=self.layer_norm_epsilon,
        norm_order=self.norm_order)
    return config
