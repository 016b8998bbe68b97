"""Time-block embedding of SEMI (Lei et al., KDD 2021) §3.2.3 and ADAPT (Chen et al., TMM 2021)
§III-C: events are bucketed into one-hour blocks counted back from the request time."""

from __future__ import annotations

from typing import Any, Dict, Optional

import tensorflow as tf
import tf_keras as keras


def time_block_index(timestamps: tf.Tensor, reference_time: tf.Tensor, block_seconds: int,
                     num_blocks: int) -> tf.Tensor:
  """Block of each event counted back from the reference time (SEMI §3.2.3, ADAPT §III-C).

  block = clip(floor((reference_time - t) / block_seconds), 0, num_blocks - 1)

  Events at or after the reference time (which the data contract forbids) fall into block 0;
  events `num_blocks - 1` or more blocks ago share the last block, "older".

  Args:
    timestamps: <int64>[batch, seq] event times in seconds.
    reference_time: <int64>[batch] (or [batch, 1]) request/target time in seconds.
    block_seconds: length of one block in seconds.
    num_blocks: number of blocks, the last one collecting everything older.

  Returns:
    <int32>[batch, seq] block indices in [0, num_blocks - 1].
  """
  timestamps = tf.cast(timestamps, tf.int64)
  reference_time = tf.cast(reference_time, tf.int64)
  if reference_time.shape.rank == 1:
    reference_time = reference_time[:, None]
  delta = tf.maximum(reference_time - timestamps, 0)
  block = tf.minimum(delta // block_seconds, num_blocks - 1)
  return tf.cast(block, tf.int32)


@keras.utils.register_keras_serializable(package="tfrec")
class TimeBlockEmbedding(keras.layers.Layer):
  """Timestamp embedding per one-hour time block, SEMI §3.2.3 (t_i^v, t_i^p) / ADAPT §III-C.

  Each event is embedded by its block `time_block_index(t_i, t_ref)` counted back from the
  reference time t_ref, the timestamp of the request (the target item's impression); the
  target item itself, at t_ref, falls into block 0. The paper only says behaviours are "split
  into time blocks of one hour"; counting back from the request keeps the vocabulary bounded
  and makes "the last hour" mean the same thing for every request.

  Sharing across domains: SEMI says t_i^v and t_i^p "share the embedding for the same time
  block" (ADAPT: storytelling and product in the same block share one embedding). Use ONE
  instance of this layer for both domains' sequences (and the target): it owns one table of
  `num_blocks` rows, so an event in either domain that falls into block b gets row b.

  Args:
    output_dim: embedding width (SEMI: 128, summed with the multi-modal features).
    num_blocks: number of blocks; block num_blocks - 1 collects all older events (default one
      week of hours).
    block_seconds: block length in seconds (SEMI and ADAPT: one hour).
    embeddings_initializer: initialiser of the table.
    embeddings_regularizer: regulariser of the table.

  Call args:
    timestamps: <int64>[batch, seq] event times in seconds.
    reference_time: <int64>[batch] request time in seconds.
    mask: <bool>[batch, seq], True = real event; padded positions give zeros. None: all real.

  Returns:
    <float32>[batch, seq, output_dim].
  """

  def __init__(self,
               output_dim: int,
               num_blocks: int = 168,
               block_seconds: int = 3600,
               embeddings_initializer: Any = "uniform",
               embeddings_regularizer: Any = None,
               **kwargs):
    super().__init__(**kwargs)
    if output_dim < 1:
      raise ValueError(f"output_dim must be >= 1, got {output_dim}")
    if num_blocks < 1:
      raise ValueError(f"num_blocks must be >= 1, got {num_blocks}")
    if block_seconds < 1:
      raise ValueError(f"block_seconds must be >= 1, got {block_seconds}")
    self.output_dim = output_dim
    self.num_blocks = num_blocks
    self.block_seconds = block_seconds
    self.embeddings_initializer = keras.initializers.get(embeddings_initializer)
    self.embeddings_regularizer = keras.regularizers.get(embeddings_regularizer)

  def build(self, input_shape: tf.TensorShape) -> None:
    self.embeddings = self.add_weight(
        "embeddings", shape=[self.num_blocks, self.output_dim],
        initializer=self.embeddings_initializer, regularizer=self.embeddings_regularizer)
    super().build(input_shape)

  def call(self, timestamps: tf.Tensor, reference_time: tf.Tensor,
           mask: Optional[tf.Tensor] = None) -> tf.Tensor:
    blocks = time_block_index(timestamps, reference_time, self.block_seconds, self.num_blocks)
    out = tf.gather(self.embeddings, blocks)
    if mask is not None:
      out *= tf.cast(mask, out.dtype)[..., None]
    return out

  def compute_mask(self, inputs, mask=None):
    return None

  def get_config(self) -> Dict[str, Any]:
    config = super().get_config()
    config.update(
        output_dim=self.output_dim,
        num_blocks=self.num_blocks,
        block_seconds=self.block_seconds,
        embeddings_initializer=keras.initializers.serialize(self.embeddings_initializer),
        embeddings_regularizer=keras.regularizers.serialize(self.embeddings_regularizer))
    return config
