"""A queue dictionary of keys (SEMI §3.3 Algorithm 1 lines 2-4 and 12-13; MoCo's queue).

The queue is a ring buffer of the K most recent keys, held as non-trainable variables so that
checkpoints (and `BackupAndRestore`) carry it. Under a `tf.distribute` strategy each replica
encodes its share of the global batch; `enqueue` gathers the keys of *all* replicas, in replica
order, and writes them once per step. Every replica computes the same new queue from the same
gathered keys; the variables aggregate with ONLY_FIRST_REPLICA, so the write happens exactly once.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import tensorflow as tf
import tf_keras as keras


def replica_context() -> tf.distribute.ReplicaContext:
  """The current replica context; the default strategy's outside any `strategy.run`."""
  ctx = tf.distribute.get_replica_context()
  if ctx is None:
    raise RuntimeError("queue updates run in a replica context (inside strategy.run or "
                       "a Keras train_step), not in a cross-replica context")
  return ctx


def gather_replicas(values: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
  """Concatenates every replica's `values` along axis 0, replica 0 first.

  Args:
    values: <T>[n_r, ...] on replica r (n_r may differ between replicas).

  Returns:
    (<T>[sum_r n_r, ...] the gathered values; <int32>[] the offset of this replica's rows in
    them).
  """
  ctx = replica_context()
  if ctx.num_replicas_in_sync == 1:
    return values, tf.constant(0, tf.int32)
  sizes = ctx.all_gather(tf.shape(values)[:1], axis=0)  # [replicas]
  offset = tf.reduce_sum(sizes[:ctx.replica_id_in_sync_group])
  return ctx.all_gather(values, axis=0), offset


@keras.utils.register_keras_serializable(package="tfrec")
class KeyQueue(keras.layers.Layer):
  """A FIFO dictionary of `size` keys of width `dim`.

  Weights (non-trainable, ONLY_FIRST_REPLICA): `keys` <float32>[size, dim] (row i holds the key
  written at some step; the oldest row is overwritten first), `pointer` <int64>[] (the next row
  to write) and `count` <int64>[] (keys ever written: `count >= size` means the queue is full);
  with `with_ids`, also `ids` <int64>[size]: an id written beside each key (-1 = never
  written), so a query can tell its own earlier keys from negatives (CCL's owner mask).

  Args:
    size: K, the number of keys (SEMI A.1: 40 x 1024).
    dim: key width.
    with_ids: keep an int64 id per key (`enqueue(keys, ids)`).
  """

  def __init__(self, size: int, dim: int, with_ids: bool = False, **kwargs):
    super().__init__(**kwargs)
    if size < 1 or dim < 1:
      raise ValueError(f"KeyQueue needs size >= 1 and dim >= 1, got size={size}, dim={dim}")
    self.size = int(size)
    self.dim = int(dim)
    self.with_ids = bool(with_ids)

  def build(self, input_shape=None):
    first = tf.VariableAggregation.ONLY_FIRST_REPLICA
    self.keys = self.add_weight("keys", shape=[self.size, self.dim], dtype=tf.float32,
                                initializer="zeros", trainable=False, aggregation=first)
    self.pointer = self.add_weight("pointer", shape=[], dtype=tf.int64, initializer="zeros",
                                   trainable=False, aggregation=first)
    self.count = self.add_weight("count", shape=[], dtype=tf.int64, initializer="zeros",
                                 trainable=False, aggregation=first)
    if self.with_ids:
      self.ids = self.add_weight("ids", shape=[self.size], dtype=tf.int64,
                                 initializer=keras.initializers.Constant(-1), trainable=False,
                                 aggregation=first)
    super().build(input_shape)

  def call(self, inputs=None):
    """The current keys <float32>[size, dim]."""
    return tf.identity(self.keys)

  def enqueue(self, keys: tf.Tensor, ids: Optional[tf.Tensor] = None
              ) -> Tuple[tf.Tensor, tf.Tensor]:
    """Writes the keys of every replica (replica order, then row order) over the oldest ones.

    Call once per step in a replica context. The global batch must fit in the queue.

    Args:
      keys: <float>[n, dim], this replica's keys.
      ids: <int>[n] their ids; required exactly when the queue was made `with_ids` (then
        `self.ids` holds them after the write, in the same rows).

    Returns:
      (<float32>[size, dim] the queue after the write, identical on every replica;
       <int64>[n] the rows where this replica's keys were written).
    """
    if not self.built:
      self.build()
    if (ids is None) == self.with_ids:
      raise ValueError(f"{self.name}: enqueue takes ids exactly when the queue keeps them "
                       f"(with_ids={self.with_ids})")
    keys = tf.cast(keys, tf.float32)
    gathered, offset = gather_replicas(keys)
    total = tf.shape(gathered, out_type=tf.int64)[0]
    tf.debugging.assert_less_equal(
        total, tf.constant(self.size, tf.int64),
        message=f"{self.name}: a global batch larger than the queue ({self.size} keys)")
    start = self.pointer.read_value()
    rows = (start + tf.range(total)) % self.size
    queue = tf.tensor_scatter_nd_update(self.keys.read_value(), rows[:, None], gathered)
    self.keys.assign(queue)
    if self.with_ids:
      all_ids, _ = gather_replicas(tf.cast(tf.reshape(ids, [-1]), tf.int64))
      self.ids.assign(tf.tensor_scatter_nd_update(self.ids.read_value(), rows[:, None], all_ids))
    self.pointer.assign((start + total) % self.size)
    self.count.assign_add(total)
    local = tf.shape(keys, out_type=tf.int64)[0]
    mine = (start + tf.cast(offset, tf.int64) + tf.range(local)) % self.size
    return queue, mine

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), "size": self.size, "dim": self.dim,
            "with_ids": self.with_ids}
