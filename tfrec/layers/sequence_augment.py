"""Sequence augmentations of CL4SRec (Xie et al., ICDE 2022): item crop, item mask and
item reorder of right-padded behaviour sequences, stateless (seeded, e.g. from
`step_random.step_seed()`, so a resumed run draws the same views).

For a row with n real items (floor as the paper):

  crop     a random contiguous part of length max(floor(eta n), 1), moved to the front
           (the start uniform over the n - len + 1 possible ones)
  mask     floor(gamma n) of the real positions, chosen uniformly without replacement, get
           `mask_id` (a token outside the item ids: the model embeds it)
  reorder  a random contiguous window of length floor(beta n) is shuffled in place

Every output stays right-padded: padded positions are 0 with a False mask, never masked, moved
or cropped into the real part, and the ids written at padded positions of the input are never
read. Each function takes an <int64>[2] seed; `augment` draws one method per row.
"""

from __future__ import annotations

from typing import Sequence, Tuple

import tensorflow as tf

AUGMENTATIONS = ("crop", "mask", "reorder")


def _lengths(mask: tf.Tensor) -> tf.Tensor:
  return tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)


def _share(ratio: float, n: tf.Tensor) -> tf.Tensor:
  """<int32> floor(ratio * n)."""
  return tf.cast(tf.floor(ratio * tf.cast(n, tf.float64)), tf.int32)


def _start(n: tf.Tensor, size: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
  """<int32>[b] a uniform start in [0, n - size] (0 when size >= n)."""
  u = tf.random.stateless_uniform(tf.shape(n), seed, dtype=tf.float64)
  room = tf.maximum(n - size + 1, 1)
  return tf.minimum(tf.cast(tf.floor(u * tf.cast(room, tf.float64)), tf.int32), room - 1)


def _zero_padding(ids: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
  return tf.where(mask, ids, tf.zeros_like(ids))


def crop(ids: tf.Tensor, mask: tf.Tensor, ratio: float, seed: tf.Tensor
         ) -> Tuple[tf.Tensor, tf.Tensor]:
  """Item crop: <int>[b, L], <bool>[b, L] -> the cropped ids and mask (module docstring)."""
  mask = tf.cast(mask, tf.bool)
  n = _lengths(mask)
  size = tf.minimum(tf.maximum(_share(ratio, n), 1), n)
  start = _start(n, size, seed)
  steps = tf.shape(ids)[1]
  index = tf.minimum(start[:, None] + tf.range(steps)[None, :], steps - 1)
  new_mask = tf.range(steps)[None, :] < size[:, None]
  return _zero_padding(tf.gather(ids, index, batch_dims=1), new_mask), new_mask


def mask_items(ids: tf.Tensor, mask: tf.Tensor, ratio: float, mask_id: int, seed: tf.Tensor
               ) -> Tuple[tf.Tensor, tf.Tensor]:
  """Item mask: floor(ratio n) real positions get `mask_id` (module docstring)."""
  mask = tf.cast(mask, tf.bool)
  k = _share(ratio, _lengths(mask))
  keys = tf.random.stateless_uniform(tf.shape(ids), seed)
  keys = tf.where(mask, keys, tf.fill(tf.shape(keys), 2.0))  # padding ranks last
  rank = tf.argsort(tf.argsort(keys, axis=1, stable=True), axis=1, stable=True)
  chosen = tf.logical_and(rank < k[:, None], mask)
  masked = tf.where(chosen, tf.cast(tf.fill(tf.shape(ids), mask_id), ids.dtype), ids)
  return _zero_padding(masked, mask), mask


def reorder(ids: tf.Tensor, mask: tf.Tensor, ratio: float, seed: tf.Tensor
            ) -> Tuple[tf.Tensor, tf.Tensor]:
  """Item reorder: a window of floor(ratio n) real items shuffled in place (module docstring).

  Each position gets a sort key: its index outside the window, start - 0.5 + r u inside it
  (u uniform), so the window's items sort among themselves at random and stay between the
  positions around it.
  """
  mask = tf.cast(mask, tf.bool)
  n = _lengths(mask)
  size = _share(ratio, n)
  start_seed, order_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
  start = _start(n, size, start_seed)
  steps = tf.shape(ids)[1]
  position = tf.range(steps)[None, :]
  window = tf.logical_and(position >= start[:, None], position < (start + size)[:, None])
  u = tf.random.stateless_uniform(tf.shape(ids), order_seed, dtype=tf.float64)
  inside = tf.cast(start, tf.float64)[:, None] - 0.5 + u * tf.cast(size, tf.float64)[:, None]
  keys = tf.where(window, inside, tf.cast(position, tf.float64) + tf.zeros_like(u))
  order = tf.argsort(keys, axis=1, stable=True)
  return _zero_padding(tf.gather(ids, order, batch_dims=1), mask), mask


def augment(ids: tf.Tensor, mask: tf.Tensor, seed: tf.Tensor, crop_ratio: float,
            mask_ratio: float, reorder_ratio: float, mask_id: int,
            methods: Sequence[str] = AUGMENTATIONS) -> Tuple[tf.Tensor, tf.Tensor]:
  """One augmentation per row, drawn uniformly from `methods` (CL4SRec: all three).

  Returns:
    (<int>[b, L] ids, <bool>[b, L] mask) of the augmented view.
  """
  methods = tuple(methods)
  unknown = sorted(set(methods) - set(AUGMENTATIONS))
  if not methods or unknown:
    raise ValueError(f"methods must be a non-empty subset of {AUGMENTATIONS}, got {methods}")
  seeds = tf.unstack(tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), 4))
  views = {"crop": lambda: crop(ids, mask, crop_ratio, seeds[1]),
           "mask": lambda: mask_items(ids, mask, mask_ratio, mask_id, seeds[2]),
           "reorder": lambda: reorder(ids, mask, reorder_ratio, seeds[3])}
  outs = [views[m]() for m in methods]
  choice = tf.random.stateless_uniform(tf.shape(ids)[:1], seeds[0], maxval=len(methods),
                                       dtype=tf.int32)
  new_ids, new_mask = outs[0]
  for i, (other_ids, other_mask) in enumerate(outs[1:], start=1):
    pick = tf.equal(choice, i)[:, None]
    new_ids = tf.where(pick, other_ids, new_ids)
    new_mask = tf.where(pick, other_mask, new_mask)
  return new_ids, new_mask


__all__ = ["AUGMENTATIONS", "augment", "crop", "mask_items", "reorder"]
