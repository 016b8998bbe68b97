"""THACIL's attention layers (Chen et al., MM 2018, §3.2-3.3): additive attention with vector
scores (eq. 3-5, 9), forward multi-head self-attention between temporal blocks (eq. 6-8) and the
temporal hierarchical attention that composes them into the user profile u_1..u_m.

Where the paper is silent these follow its public code (github Ocxs/THACIL, `src/nets.py`):
the hidden activation of eq. 3-5 and 9 is ReLU; eq. 6's sigma is 5 tanh(x / 5); local and global
information are combined as LayerNorm(l + g); attention scores are vectors (one weight per
dimension), normalised by a softmax over the items (or blocks) of each dimension.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import tensorflow as tf
import tf_keras as keras

from tfrec.layers._utils import clone_initializer
from tfrec.layers.attention import masked_softmax
from tfrec.layers.step_random import Dropout

TANH_SCALE = 5.0  # eq. 6's sigma: TANH_SCALE * tanh(x / TANH_SCALE) (the public code).


@keras.utils.register_keras_serializable(package="tfrec")
class AdditiveAttentionPool(keras.layers.Layer):
  """alpha(x_j) = W_s relu(W_x x_j + W_q q + b_1) + b_2 (THACIL eq. 3, 5 and 9), a vector per
  item; softmax over the items of each dimension (eq. 4); output sum_j alpha_j ⊙ x_j.

  Args:
    hidden_units: width of the hidden layer (the paper: the width of x).
    dropout: dropout of the hidden layer.
    kernel_initializer: initialiser of the kernels.
    kernel_regularizer: regulariser of the kernels.

  Call args:
    x: <float>[..., n, d_x] the items to pool.
    query: <float>[..., n, d_q] a query per item (eq. 3/5: the item's other feature) or
      <float>[..., d_q] one query for all items (eq. 9: the candidate); broadcastable.
    mask: <bool>[..., n] True = real item (padded items get weight 0; a slice without any
      real item gives zeros).

  Returns:
    <float>[..., d_x].
  """

  def __init__(self, hidden_units: Optional[int] = None, dropout: float = 0.0,
               kernel_initializer: Any = "glorot_uniform", kernel_regularizer: Any = None,
               **kwargs):
    super().__init__(**kwargs)
    self.hidden_units = hidden_units
    self.dropout = float(dropout)
    self.kernel_initializer = keras.initializers.get(kernel_initializer)
    self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
    self._dropout = Dropout(self.dropout)

  def build(self, x_shape: tf.TensorShape, query_shape: tf.TensorShape = None,
            mask_shape: tf.TensorShape = None) -> None:
    d_x = int(x_shape[-1])
    hidden = self.hidden_units or d_x

    def dense(name, units, bias):
      return keras.layers.Dense(units, use_bias=bias, name=name,
                                kernel_initializer=clone_initializer(self.kernel_initializer),
                                kernel_regularizer=self.kernel_regularizer)
    self.x_proj = dense("x_proj", hidden, True)     # W_x, b_1
    self.q_proj = dense("q_proj", hidden, False)    # W_q
    self.score = dense("score", d_x, True)          # W_s, b_2
    super().build(x_shape)

  def call(self, x: tf.Tensor, query: tf.Tensor, mask: tf.Tensor,
           training: Optional[bool] = None) -> tf.Tensor:
    x, query = tf.convert_to_tensor(x), tf.convert_to_tensor(query)
    q = self.q_proj(query)
    if query.shape.rank == x.shape.rank - 1:  # one query for all n items.
      q = q[..., None, :]
    hidden = self._dropout(tf.nn.relu(self.x_proj(x) + q), training=training)
    weights = masked_softmax(self.score(hidden), tf.cast(mask, tf.bool)[..., None], axis=-2)
    return tf.reduce_sum(weights * x, axis=-2)

  def compute_mask(self, inputs, mask=None):
    return None

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), "hidden_units": self.hidden_units, "dropout": self.dropout,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer)}


def forward_mask(num_blocks: int) -> tf.Tensor:
  """<bool>[m, m] eq. 7: entry (i, j) is True (score kept) iff j < i."""
  idx = tf.range(num_blocks)
  return idx[None, :] < idx[:, None]


@keras.utils.register_keras_serializable(package="tfrec")
class ForwardBlockAttention(keras.layers.Layer):
  """Forward multi-head self-attention between temporal blocks (THACIL eq. 6-8).

  q_i, k_i, v_i = l_i W^q, l_i W^k, l_i W^v, split into h heads of d / h. Per head p:
    H_ij^(p) = W_p s(q_i^(p) + k_j^(p) + b_p),  s(x) = 5 tanh(x / 5)          (eq. 6)
    + M_ij: 0 where j < i (and block j is real), -inf elsewhere               (eq. 7)
    alpha_ij^(p) = softmax over j of each dimension;  g_i^(p) = sum_j alpha_ij^(p) ⊙ v_j^(p)
  and g_i concatenates the heads (eq. 8). Block 1 sees no block before it: g_1 = 0, and so does
  any block whose earlier blocks are all padding.

  Args:
    num_heads: h (THACIL: 8); the width must be a multiple of it.
    dropout: dropout of the projections (the public code's keep probability 0.8 -> 0.2).
    kernel_initializer, kernel_regularizer: of every kernel.

  Call args:
    blocks: <float>[batch, m, d] local information l_1..l_m.
    mask: <bool>[batch, m] True = a block with at least one real item.

  Returns:
    <float>[batch, m, d] global information g_1..g_m.
  """

  def __init__(self, num_heads: int = 8, dropout: float = 0.0,
               kernel_initializer: Any = "glorot_uniform", kernel_regularizer: Any = None,
               **kwargs):
    super().__init__(**kwargs)
    self.num_heads = int(num_heads)
    self.dropout = float(dropout)
    self.kernel_initializer = keras.initializers.get(kernel_initializer)
    self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
    self._dropout = Dropout(self.dropout)

  def build(self, blocks_shape: tf.TensorShape, mask_shape: tf.TensorShape = None) -> None:
    d = int(blocks_shape[-1])
    if d % self.num_heads:
      raise ValueError(f"width {d} is not a multiple of num_heads={self.num_heads}")
    head = d // self.num_heads
    self.head_dim = head

    def weight(name, shape, init):
      return self.add_weight(name, shape=shape, initializer=init,
                             regularizer=self.kernel_regularizer if init != "zeros" else None)
    init = lambda: clone_initializer(self.kernel_initializer)  # noqa: E731
    self.w_q, self.w_k, self.w_v = (weight(n, [d, d], init()) for n in ("w_q", "w_k", "w_v"))
    self.w_p = weight("w_p", [self.num_heads, head, head], init())  # W_p per head
    self.b_p = weight("b_p", [self.num_heads, head], "zeros")
    super().build(blocks_shape)

  def _heads(self, x: tf.Tensor) -> tf.Tensor:
    """[batch, m, d] -> [batch, h, m, d / h]."""
    b, m = tf.shape(x)[0], tf.shape(x)[1]
    return tf.transpose(tf.reshape(x, [b, m, self.num_heads, self.head_dim]), [0, 2, 1, 3])

  def scores(self, blocks: tf.Tensor, training: Optional[bool] = None) -> tf.Tensor:
    """Eq. 6 before the mask: <float>[batch, h, m (i), m (j), d / h]."""
    drop = lambda t: self._dropout(t, training=training)  # noqa: E731
    q = self._heads(drop(tf.matmul(blocks, self.w_q)))
    k = self._heads(drop(tf.matmul(blocks, self.w_k)))
    pre = q[:, :, :, None, :] + k[:, :, None, :, :] + self.b_p[None, :, None, None, :]
    act = TANH_SCALE * tf.tanh(pre / TANH_SCALE)
    return tf.einsum("bhijd,hde->bhije", act, self.w_p)

  def call(self, blocks: tf.Tensor, mask: tf.Tensor, training: Optional[bool] = None) -> tf.Tensor:
    m = tf.shape(blocks)[1]
    v = self._heads(self._dropout(tf.matmul(blocks, self.w_v), training=training))
    keep = forward_mask(m)[None, None] & tf.cast(mask, tf.bool)[:, None, None, :]  # [b,1,i,j]
    weights = masked_softmax(self.scores(blocks, training), keep[..., None], axis=3)
    g = tf.reduce_sum(weights * v[:, :, None, :, :], axis=3)   # [b, h, i, d / h]
    g = tf.transpose(g, [0, 2, 1, 3])
    return tf.reshape(g, tf.shape(blocks))

  def compute_mask(self, inputs, mask=None):
    return None

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), "num_heads": self.num_heads, "dropout": self.dropout,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer)}


def split_blocks(x: tf.Tensor, mask: tf.Tensor, block_size: int
                 ) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """A right-padded history cut into consecutive blocks of `block_size` (THACIL §3.2).

  Args:
    x: <float>[batch, n, d] items, oldest first, padding last.
    mask: <bool>[batch, n].
    block_size: k; n is padded up to m = ceil(n / k) blocks.

  Returns:
    (<float>[batch, m, k, d], <bool>[batch, m, k] item masks, <bool>[batch, m] block masks:
     True where a block holds at least one real item).
  """
  n = tf.shape(x)[1]
  m = (n + block_size - 1) // block_size
  pad = m * block_size - n
  x = tf.pad(x, [[0, 0], [0, pad], [0, 0]])
  mask = tf.pad(tf.cast(mask, tf.bool), [[0, 0], [0, pad]])
  b = tf.shape(x)[0]
  xb = tf.reshape(x, [b, m, block_size, x.shape[-1]])
  mb = tf.reshape(mask, [b, m, block_size])
  return xb, mb, tf.reduce_any(mb, axis=-1)


@keras.utils.register_keras_serializable(package="tfrec")
class TemporalHierarchicalAttention(keras.layers.Layer):
  """THACIL §3.2: the user profile u_1..u_m from a history of items x_j = [f_j; c_j].

  The history is cut into m blocks of k items (`split_blocks`). Inside block i:
    l_i^c = sum_j alpha_c(c_ij) ⊙ c_ij, alpha_c from eq. 3 (query f_ij), softmax eq. 4;
    l_i^f = sum_j alpha_f(f_ij) ⊙ f_ij, alpha_f from eq. 5 (query c_ij);
    l_i = [l_i^f; l_i^c]  (the order of x = [f; c]).
  Between blocks: g = `ForwardBlockAttention`(l) (eq. 6-8); u_i = LayerNorm(l_i + g_i) (the
  public code's combination and normalisation). Padded blocks give u_i that the block mask
  excludes downstream.

  Args:
    visual_dim: d_f, the width of f (the first d_f entries of x); the rest is c.
    block_size: k (THACIL: 20).
    num_heads: h of the forward self-attention (THACIL's code: 8).
    dropout: dropout inside the attentions.
    kernel_regularizer: of every kernel.

  Call args:
    items: <float>[batch, n, d_f + d_c] the history's x_j, oldest first, padding last.
    mask: <bool>[batch, n].

  Returns:
    (<float>[batch, m, d] profile, <bool>[batch, m] block mask).
  """

  def __init__(self, visual_dim: int, block_size: int = 20, num_heads: int = 8,
               dropout: float = 0.0, kernel_regularizer: Any = None, **kwargs):
    super().__init__(**kwargs)
    self.visual_dim = int(visual_dim)
    self.block_size = int(block_size)
    self.num_heads = int(num_heads)
    self.dropout = float(dropout)
    self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
    reg = self.kernel_regularizer
    self.category_attention = AdditiveAttentionPool(dropout=dropout, kernel_regularizer=reg,
                                                    name="category_attention")
    self.item_attention = AdditiveAttentionPool(dropout=dropout, kernel_regularizer=reg,
                                                name="item_attention")
    self.block_attention = ForwardBlockAttention(num_heads, dropout=dropout,
                                                 kernel_regularizer=reg, name="block_attention")
    self.norm = keras.layers.LayerNormalization(epsilon=1e-8, name="norm")

  def local(self, items: tf.Tensor, mask: tf.Tensor, training: Optional[bool] = None
            ) -> Tuple[tf.Tensor, tf.Tensor]:
    """(<float>[batch, m, d] l_1..l_m, <bool>[batch, m] block mask)."""
    blocks, item_mask, block_mask = split_blocks(items, mask, self.block_size)
    f, c = blocks[..., :self.visual_dim], blocks[..., self.visual_dim:]
    l_c = self.category_attention(c, f, item_mask, training=training)
    l_f = self.item_attention(f, c, item_mask, training=training)
    return tf.concat([l_f, l_c], axis=-1), block_mask

  def call(self, items: tf.Tensor, mask: tf.Tensor, training: Optional[bool] = None
           ) -> Tuple[tf.Tensor, tf.Tensor]:
    l, block_mask = self.local(items, mask, training)
    g = self.block_attention(l, block_mask, training=training)
    return self.norm(l + g), block_mask

  def compute_mask(self, inputs, mask=None):
    return None

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), "visual_dim": self.visual_dim, "block_size": self.block_size,
            "num_heads": self.num_heads, "dropout": self.dropout,
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer)}


__all__ = ["AdditiveAttentionPool", "ForwardBlockAttention", "TemporalHierarchicalAttention",
           "forward_mask", "split_blocks"]
