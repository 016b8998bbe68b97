"""M5's multi-interest extraction for one channel (Zhao et al., KDD 2023, §4.3, Fig. 3): the
behaviours bucketed by item kind (§4.3.1), an optional L-layer bidirectional transformer over
the decorated behaviours (§4.3.2), SIN calibration (eq. 3, §4.3.3) and one interest per bucket.

  x_j   = E(m_j) (or the [MASK] vector at a masked position) + P[pos_j] + s_j W_s + b_s
                                     "the sum of main and subsidiary embeddings of each position"
  H     = Block_L(... Block_1(x))    post-norm blocks (residual + layer norm, as [38]); position
                                     j attends to the real positions of ITS bucket only
  int_j = SIN(h_j, s_j)              eq. 3: exp(MLP(...)), exactly 1 at the start
  v_k   = sum_{j in bucket k} int_j h_j                                   ("a weighted sum")

Without self-attention H = E(m) (the raw embeddings: M5's CG channel); without SIN every
int_j = 1 (plain sum pooling per bucket).

Reading choices, stated:
  * "M5 divides the user behaviors into different buckets": each bucket is a behaviour sequence
    of its own. One transformer pass with a block-diagonal attention mask (position j sees the
    positions of its bucket) equals running the same (shared-weight) transformer on each
    bucket's sub-sequence, in one call; a bucket without real behaviours gives v_k = 0.
  * Decoration: P[pos_j] is a learnt embedding of the behaviour's position counted back from the
    newest real behaviour of the whole sequence (the paper's "show engage positional indices",
    used for positional encoding as in BST [3]); the other subsidiary features (continuous here,
    `subsidiary_features`) enter linearly, s_j W_s + b_s (E^SH of each field summed). Only the
    main id is replaced by [MASK] (eq. 2: "only main IDs ... are masked, while the subsidiary
    features are reserved").
  * `reduction="mean"` divides v_k by sum_{j in k} int_j (an attention-style average);
    "sum" (the default) is the paper's weighted sum.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple, Union

import tensorflow as tf
import tf_keras as keras

from tfrec.layers.attention import MultiHeadAttentionBlock
from tfrec.layers.step_random import Dropout
from tfrec.layers.subsidiary_intensity import SubsidiaryIntensity

REDUCTIONS = ("sum", "mean")


def bucket_attention_mask(buckets: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
  """<bool>[batch, seq, seq]: True where query j and key l are both real and in one bucket."""
  mask = tf.cast(mask, tf.bool)
  same = tf.equal(buckets[:, :, None], buckets[:, None, :])
  return tf.logical_and(same, tf.logical_and(mask[:, :, None], mask[:, None, :]))


def positions_from_newest(mask: tf.Tensor) -> tf.Tensor:
  """<int32>[batch, seq]: the number of real behaviours newer than each (0 = the newest), any
  padding layout; 0 at padding."""
  real = tf.cast(mask, tf.int32)
  return tf.cumsum(real, axis=1, exclusive=True, reverse=True) * real


@keras.utils.register_keras_serializable(package="tfrec")
class InterestExtraction(keras.layers.Layer):
  """One channel's bucketed multi-interest extraction (module docstring).

  Args:
    num_buckets: K; bucket ids are in [0, K).
    max_seq_len: rows of the position table (longer sequences clip to the last row).
    num_subsidiary: n, the width of the subsidiary features.
    self_attention: run the transformer (False: H = the raw embeddings).
    sin: calibrate with SIN (False: every intensity 1).
    decorate: add the position and subsidiary embeddings to the transformer's input (§4.3.1's
      subsidiary decoration; needs `self_attention`, ignored without it).
    mask_token: hold a learnt [MASK] vector for MLM (eq. 2; needs `self_attention`).
    num_layers, num_heads, ff_dim, dropout: the transformer (M5 §5.1.3: 3, 2, 512).
    sin_hidden_units: SIN's hidden widths (M5: (384, 384) for CG, () "a simple linear layer"
      for ID).
    reduction: "sum" or "mean" within a bucket (module docstring).

  Call args:
    embeddings: <float>[batch, seq, d] E(m_j) (anything at padding).
    buckets: <int>[batch, seq] in [0, K).
    mask: <bool>[batch, seq], True = a real behaviour.
    subsidiary: <float>[batch, seq, n].
    masked: optional <bool>[batch, seq]: positions whose input is the [MASK] vector.
    training: dropout switch.
    return_sequence: also return H.

  Returns:
    <float>[batch, K, d] the interests; with `return_sequence`, (interests, H <float>[batch,
    seq, d], zero at padding).
  """

  def __init__(self, num_buckets: int, max_seq_len: int, num_subsidiary: int,
               self_attention: bool = True, sin: bool = True, decorate: bool = True,
               mask_token: bool = False, num_layers: int = 3, num_heads: int = 2,
               ff_dim: int = 512, dropout: float = 0.0,
               sin_hidden_units: Sequence[int] = (), reduction: str = "sum", **kwargs):
    super().__init__(**kwargs)
    if num_buckets < 1 or max_seq_len < 1 or num_subsidiary < 1:
      raise ValueError("num_buckets, max_seq_len and num_subsidiary must be >= 1")
    if reduction not in REDUCTIONS:
      raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if self_attention and num_layers < 1:
      raise ValueError(f"self-attention needs num_layers >= 1, got {num_layers}")
    if mask_token and not self_attention:
      raise ValueError("mask_token (MLM) needs self_attention")
    self.num_buckets, self.max_seq_len = int(num_buckets), int(max_seq_len)
    self.num_subsidiary = int(num_subsidiary)
    self.self_attention, self.sin = bool(self_attention), bool(sin)
    self.decorate = bool(decorate) and self.self_attention
    self.mask_token = bool(mask_token)
    self.num_layers, self.num_heads = int(num_layers), int(num_heads)
    self.ff_dim, self.dropout = int(ff_dim), float(dropout)
    self.sin_hidden_units = [int(u) for u in sin_hidden_units]
    self.reduction = reduction
    policy = self.dtype_policy
    self.blocks = ([MultiHeadAttentionBlock(num_heads=self.num_heads, ff_dim=self.ff_dim,
                                            dropout=self.dropout, name=f"block_{i}",
                                            dtype=policy)
                    for i in range(self.num_layers)] if self.self_attention else [])
    self.input_dropout = Dropout(self.dropout, name="input_dropout", dtype=policy)
    self.intensity = (SubsidiaryIntensity(self.num_subsidiary, self.sin_hidden_units,
                                          name="sin", dtype=policy) if self.sin else None)

  def build(self, input_shape: Any) -> None:
    dim = int(tf.TensorShape(input_shape)[-1])
    self.positions = self.subsidiary_kernel = self.subsidiary_bias = self.mask_vector = None
    if self.decorate:
      self.positions = self.add_weight(
          "positions", shape=[self.max_seq_len, dim],
          initializer=keras.initializers.TruncatedNormal(stddev=0.02))
      self.subsidiary_kernel = self.add_weight(
          "subsidiary_kernel", shape=[self.num_subsidiary, dim], initializer="glorot_uniform")
      self.subsidiary_bias = self.add_weight("subsidiary_bias", shape=[dim],
                                             initializer="zeros")
    if self.mask_token:
      self.mask_vector = self.add_weight(  # BERT's initialiser
          "mask_embedding", shape=[dim],
          initializer=keras.initializers.TruncatedNormal(stddev=0.02))
    super().build(input_shape)

  def sequence(self, embeddings: tf.Tensor, buckets: tf.Tensor, mask: tf.Tensor,
               subsidiary: tf.Tensor, masked: Optional[tf.Tensor] = None,
               training: Optional[bool] = None) -> tf.Tensor:
    """H <float>[batch, seq, d]: the transformer's output (or the embeddings), zero at padding."""
    mask = tf.cast(mask, tf.bool)
    x = tf.cast(embeddings, self.compute_dtype)
    x = tf.where(mask[..., None], x, tf.zeros_like(x))  # padding cannot leak
    if not self.self_attention:
      if masked is not None:
        raise ValueError("masked positions need self_attention (MLM)")
      return x
    if masked is not None:
      if self.mask_vector is None:
        raise ValueError("this extraction has no [MASK] vector (mask_token=False)")
      x = tf.where(tf.cast(masked, tf.bool)[..., None],
                   tf.cast(self.mask_vector, x.dtype)[None, None], x)
    if self.decorate:
      pos = tf.minimum(positions_from_newest(mask), self.max_seq_len - 1)
      sub = tf.cast(subsidiary, self.compute_dtype)
      x = (x + tf.cast(tf.gather(self.positions, pos), x.dtype)
           + tf.einsum("bln,nd->bld", sub, tf.cast(self.subsidiary_kernel, x.dtype))
           + tf.cast(self.subsidiary_bias, x.dtype))
    x = self.input_dropout(x, training=training) * tf.cast(mask, x.dtype)[..., None]
    attention = bucket_attention_mask(buckets, mask)
    for block in self.blocks:
      x = block(x, query_mask=mask, attention_mask=attention, training=training)
    return x

  def call(self, embeddings: tf.Tensor, buckets: tf.Tensor, mask: tf.Tensor,
           subsidiary: tf.Tensor, masked: Optional[tf.Tensor] = None,
           training: Optional[bool] = None, return_sequence: bool = False
           ) -> Union[tf.Tensor, Tuple[tf.Tensor, tf.Tensor]]:
    mask = tf.cast(mask, tf.bool)
    buckets = tf.cast(buckets, tf.int32)
    h = self.sequence(embeddings, buckets, mask, subsidiary, masked, training=training)
    if self.intensity is not None:
      calibrated, weights = self.intensity(h, subsidiary, mask=mask, training=training,
                                           return_intensity=True)
    else:
      weights = tf.cast(mask, tf.float32)
      calibrated = h
    one_hot = tf.one_hot(buckets, self.num_buckets, dtype=tf.float32) * tf.cast(
        mask, tf.float32)[..., None]                                        # [b, l, K]
    interests = tf.einsum("bld,blk->bkd", tf.cast(calibrated, tf.float32), one_hot)
    if self.reduction == "mean":
      total = tf.einsum("bl,blk->bk", weights, one_hot)
      interests = tf.math.divide_no_nan(interests, total[..., None])
    interests = tf.cast(interests, self.compute_dtype)
    return (interests, h) if return_sequence else interests

  def compute_mask(self, inputs, mask=None):
    return None

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), "num_buckets": self.num_buckets,
            "max_seq_len": self.max_seq_len, "num_subsidiary": self.num_subsidiary,
            "self_attention": self.self_attention, "sin": self.sin,
            "decorate": self.decorate, "mask_token": self.mask_token,
            "num_layers": self.num_layers, "num_heads": self.num_heads, "ff_dim": self.ff_dim,
            "dropout": self.dropout, "sin_hidden_units": list(self.sin_hidden_units),
            "reduction": self.reduction}


__all__ = ["InterestExtraction", "REDUCTIONS", "bucket_attention_mask",
           "positions_from_newest"]
