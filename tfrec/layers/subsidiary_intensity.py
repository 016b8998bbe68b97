"""M5's subsidiary-intensity interest calibration, SIN (Zhao et al., KDD 2023, §4.3.3, eq. 3),
and the subsidiary decoration of §4.3.1 derived from what the data contract carries.

  int_j = exp(MLP([E(m_j), E^SH(s_j,1), ..., E^SH(s_j,n),
                   E(m_j) . E^SH(s_j,1), ..., E(m_j) . E^SH(s_j,n)]))                 eq. 3
  out_j = int_j E(m_j) for a real position j, 0 for padding

E(m_j) <[batch, seq, d]> are the behaviour embeddings (the raw CG embeddings, or the ID
channel's self-attention outputs); s_j <[batch, seq, n]> the subsidiary features; "." an inner
product. The MLP is ReLU with its LAST layer's kernel and bias zero-initialised, so every
intensity is exactly 1 at the start (out = E(m) on real positions); appendix: hidden [384, 384]
then 1 for the CG channel, "a simple linear layer" (`hidden_units=()`) for the ID channel.

Reading choices, stated:
  * E^SH(s_k): the paper indexes features into categorical form, so a subsidiary value is a
    bucket of a d-wide table when `boundaries` (one sorted list per field) are given; without
    them a value is embedded linearly, E^SH(s_k) = s_k v_k + c_k (v_k, c_k trained, d wide).
    Either way it is d wide, so it can be crossed with E(m_j).
  * "M5 performs a weighted sum to compute the attentive aggregation": `reduction="sum"` gives
    sum_j int_j E(m_j) <[batch, d]>; `reduction="mean"` divides by sum_j int_j (a softmax
    attention over the real positions); the default (None) returns the calibrated sequence.
  * exp is taken in float32; an intensity can overflow only if the MLP's output passes ~88.

`subsidiary_features` builds the decoration of §4.3.1 from a `matching` record's fields.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple, Union

import tensorflow as tf
import tf_keras as keras

from tfrec.layers._utils import clone_initializer
from tfrec.layers.mlp import MLP

NORMALIZATIONS = ("per_watch", "share")
REDUCTIONS = (None, "sum", "mean")


def subsidiary_feature_names(with_time: bool = True) -> Tuple[str, ...]:
  """The columns of `subsidiary_features`, in order."""
  return (("watch_count", "playback_hours", "normalized_playback")
          + (("engage_till_now",) if with_time else ()) + ("position",))


def subsidiary_features(seq_subsidiary: tf.Tensor, seq_mask: tf.Tensor,
                        seq_timestamps: Optional[tf.Tensor] = None,
                        timestamp: Optional[tf.Tensor] = None,
                        normalization: str = "per_watch", log1p: bool = True,
                        time_unit: float = 86400.0) -> tf.Tensor:
  """M5 §4.3.1's subsidiary decoration from the contract's `seq_subsidiary`.

  The contract carries, per behaviour, [episodic watch count, playback duration in hours]
  (`schema.NUM_SUBSIDIARY`), the behaviour's time and the request time. From them:
    watch_count          the episodic watch count, as carried;
    playback_hours       the playback duration, as carried;
    normalized_playback  NOT the paper's (presumably the duration over the show's own length,
                         which no record or item store holds): "per_watch" = hours / watch
                         count (hours per episode watched), or "share" = hours / the row's
                         total real hours (the behaviour's share of the user's watching);
    engage_till_now      (timestamp - seq_timestamps) / time_unit (days by default), only when
                         both timestamps are given;
    position             the number of real behaviours newer than this one (0 = the newest;
                         stable under the reader's keep-newest truncation).
  Not derivable here: the show's runtime (for the paper's normalisation), the paper's
  categorical bucketing of these values (SIN's `boundaries` take it), and the behaviour
  categorisation into VOD series / movies / Live (an item attribute, not a subsidiary one).

  Args:
    seq_subsidiary: <float>[batch, seq, 2].
    seq_mask: <bool>[batch, seq], True = a real behaviour (any padding layout).
    seq_timestamps: optional <int>[batch, seq] (s). timestamp: optional <int>[batch] (s).
    normalization: "per_watch" or "share".
    log1p: log(1 + x) of every column (the counts, hours, days and positions span orders of
      magnitude; every column is >= 0).
    time_unit: seconds per unit of engage_till_now.

  Returns:
    <float32>[batch, seq, 5] (4 without timestamps; `subsidiary_feature_names`), exactly 0 at
    padded positions.

  Raises:
    ValueError: a bad normalization, only one of the timestamps, or a width other than 2.
  """
  if normalization not in NORMALIZATIONS:
    raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {normalization!r}")
  if (seq_timestamps is None) != (timestamp is None):
    raise ValueError("give both seq_timestamps and timestamp, or neither")
  sub = tf.cast(seq_subsidiary, tf.float32)
  if sub.shape[-1] != 2:
    raise ValueError(f"seq_subsidiary must be [batch, seq, 2] (count, hours), got {sub.shape}")
  real = tf.cast(seq_mask, tf.float32)
  count, hours = sub[..., 0] * real, sub[..., 1] * real
  if normalization == "per_watch":
    normalized = tf.math.divide_no_nan(hours, count)
  else:
    normalized = tf.math.divide_no_nan(hours, tf.reduce_sum(hours, axis=1, keepdims=True))
  columns = [count, hours, normalized]
  if seq_timestamps is not None:
    age = tf.cast(timestamp, tf.int64)[:, None] - tf.cast(seq_timestamps, tf.int64)
    columns.append(tf.maximum(tf.cast(age, tf.float32) / time_unit, 0.0) * real)
  newer = tf.cumsum(real, axis=1, exclusive=True, reverse=True)
  columns.append(newer * real)
  out = tf.stack(columns, axis=-1)
  return tf.math.log1p(out) if log1p else out


@keras.utils.register_keras_serializable(package="tfrec")
class SubsidiaryIntensity(keras.layers.Layer):
  """SIN of eq. 3 (module docstring): per-position intensities exp(MLP(...)) times E(m_j).

  Args:
    num_subsidiary: n, the width of the subsidiary features.
    hidden_units: the MLP's hidden widths (CG channel: (384, 384); ID channel: ()), then a
      zero-initialised 1-wide output layer.
    activation: hidden activation (M5: ReLU).
    boundaries: optional per field a sorted list of bucket boundaries (n lists): E^SH is then a
      bucket embedding (len + 1 rows per field); None: the linear embedding s v + c.
    reduction: None (the sequence), "sum" or "mean" (module docstring).
    kernel_initializer: initialiser of the hidden kernels and of the subsidiary embeddings.

  Call args:
    embeddings: <float>[batch, seq, d] E(m_j).
    subsidiary: <float>[batch, seq, n] (`subsidiary_features`).
    mask: optional <bool>[batch, seq], True = real; padded positions give exactly 0.
    return_intensity: also return the intensities <float32>[batch, seq] (0 at padding).

  Returns:
    <float>[batch, seq, d] (reduction None) or <float>[batch, d]; with `return_intensity`, a
    pair. A row without a real position gives zeros.
  """

  def __init__(self, num_subsidiary: int, hidden_units: Sequence[int] = (384, 384),
               activation: Any = "relu", boundaries: Optional[Sequence[Sequence[float]]] = None,
               reduction: Optional[str] = None, kernel_initializer: Any = "glorot_uniform",
               **kwargs):
    super().__init__(**kwargs)
    if num_subsidiary < 1:
      raise ValueError(f"num_subsidiary must be >= 1, got {num_subsidiary}")
    if reduction not in REDUCTIONS:
      raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    if boundaries is not None:
      boundaries = [[float(b) for b in field] for field in boundaries]
      if len(boundaries) != num_subsidiary:
        raise ValueError(f"boundaries: one list per subsidiary field ({num_subsidiary}), "
                         f"got {len(boundaries)}")
      if any(f != sorted(f) for f in boundaries):
        raise ValueError("boundaries must be sorted within each field")
    self.num_subsidiary = int(num_subsidiary)
    self.hidden_units = [int(u) for u in hidden_units]
    self.activation = keras.activations.get(activation)
    self.boundaries = boundaries
    self.reduction = reduction
    self.kernel_initializer = keras.initializers.get(kernel_initializer)
    policy = self.dtype_policy
    self.hidden = (MLP(self.hidden_units, activation=self.activation,
                       kernel_initializer=self.kernel_initializer, name="hidden", dtype=policy)
                   if self.hidden_units else None)
    self.output_layer = keras.layers.Dense(1, kernel_initializer="zeros",
                                           bias_initializer="zeros", name="intensity_logit",
                                           dtype=policy)

  def build(self, input_shape: tf.TensorShape) -> None:
    dim = int(input_shape[-1])
    n = self.num_subsidiary
    if self.boundaries is None:
      self.sub_scale = self.add_weight("subsidiary_scale", shape=[n, dim],
                                       initializer=clone_initializer(self.kernel_initializer))
      self.sub_bias = self.add_weight("subsidiary_bias", shape=[n, dim], initializer="zeros")
    else:
      rows = sum(len(f) + 1 for f in self.boundaries)
      self.sub_table = self.add_weight("subsidiary_embeddings", shape=[rows, dim],
                                       initializer=clone_initializer(self.kernel_initializer))
    super().build(input_shape)

  def subsidiary_embeddings(self, subsidiary: tf.Tensor) -> tf.Tensor:
    """E^SH(s_j,k): <[batch, seq, n, d]> in the compute dtype."""
    if self.boundaries is None:
      s = tf.cast(subsidiary, self.compute_dtype)
      e = (s[..., None] * tf.cast(self.sub_scale, self.compute_dtype)
           + tf.cast(self.sub_bias, self.compute_dtype))
    else:
      s = tf.cast(subsidiary, tf.float32)
      ids, offset = [], 0
      for k, field in enumerate(self.boundaries):
        bucket = tf.raw_ops.Bucketize(input=s[..., k], boundaries=field)   # [b, l] in [0, len]
        ids.append(bucket + offset)
        offset += len(field) + 1
      e = tf.gather(self.sub_table, tf.stack(ids, axis=-1))
    return tf.cast(e, self.compute_dtype)

  def intensity(self, embeddings: tf.Tensor, subsidiary: tf.Tensor,
                training: Optional[bool] = None) -> tf.Tensor:
    """int_j of eq. 3 before masking: <float32>[batch, seq]."""
    e = tf.cast(embeddings, self.compute_dtype)
    if subsidiary.shape[-1] != self.num_subsidiary:
      raise ValueError(f"subsidiary must be [batch, seq, {self.num_subsidiary}], "
                       f"got {subsidiary.shape}")
    sub = self.subsidiary_embeddings(subsidiary)                            # [b, l, n, d]
    crosses = tf.einsum("bld,blnd->bln", e, sub)                            # E(m) . E^SH(s_k)
    flat = tf.reshape(sub, tf.concat([tf.shape(sub)[:2], [-1]], 0))
    x = tf.concat([e, flat, crosses], axis=-1)
    x.set_shape(e.shape[:2].concatenate([e.shape[-1] * (self.num_subsidiary + 1)
                                         + self.num_subsidiary]))
    if self.hidden is not None:
      x = self.hidden(x, training=training)
    return tf.exp(tf.cast(self.output_layer(x), tf.float32))[..., 0]

  def call(self, embeddings: tf.Tensor, subsidiary: tf.Tensor,
           mask: Optional[tf.Tensor] = None, training: Optional[bool] = None,
           return_intensity: bool = False) -> Union[tf.Tensor, Tuple[tf.Tensor, tf.Tensor]]:
    e = tf.cast(embeddings, self.compute_dtype)
    weights = self.intensity(e, subsidiary, training=training)             # [b, l]
    if mask is not None:
      weights = tf.where(tf.cast(mask, tf.bool), weights, tf.zeros_like(weights))
    if self.reduction == "mean":
      scaled = tf.math.divide_no_nan(weights, tf.reduce_sum(weights, axis=1, keepdims=True))
    else:
      scaled = weights
    out = e * tf.cast(scaled, e.dtype)[..., None]
    if mask is not None:  # a select, so padding stays exactly 0 whatever its embedding holds
      out = tf.where(tf.cast(mask, tf.bool)[..., None], out, tf.zeros_like(out))
    if self.reduction is not None:
      out = tf.reduce_sum(out, axis=1)
    return (out, weights) if return_intensity else out

  def compute_mask(self, inputs, mask=None):
    return None

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), "num_subsidiary": self.num_subsidiary,
            "hidden_units": list(self.hidden_units),
            "activation": keras.activations.serialize(self.activation),
            "boundaries": self.boundaries, "reduction": self.reduction,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer)}


__all__ = ["NORMALIZATIONS", "REDUCTIONS", "SubsidiaryIntensity", "subsidiary_feature_names",
           "subsidiary_features"]
