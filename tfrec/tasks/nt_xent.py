"""NT-Xent, the normalised-temperature cross entropy of SimCLR (Chen et al., ICML 2020) as CL4SRec
uses it (Xie et al., ICDE 2022): two views of each of N rows; each view's positive is the
other view of its row and its negatives the other 2(N - 1) views of the batch.

    l(a, b)   = -log exp(sim(a, b) / tau) / sum_{c in views, c != a} exp(sim(a, c) / tau)
    loss_i    = (l(x_i, y_i) + l(y_i, x_i)) / 2               per row (the mean over the 2N
                                                              anchors is the mean of loss_i)

with sim the dot product (CL4SRec's) or the cosine (SimCLR's). The batch is the GLOBAL batch:
every replica's views are gathered (`moco.queue.gather_replicas`, gradients flow back), so two
replicas give one device's loss. Each anchor is scored through `tasks.contrastive.info_nce`
with its own column excluded.
"""

from __future__ import annotations

import tensorflow as tf

from tfrec.moco.queue import gather_replicas
from tfrec.tasks.contrastive import info_nce

SIMILARITIES = ("dot", "cosine")


def nt_xent(first: tf.Tensor, second: tf.Tensor, temperature: float = 1.0,
            similarity: str = "dot") -> tf.Tensor:
  """Per-row NT-Xent of two views (module docstring).

  Args:
    first, second: <float>[b, d] the two views of this replica's rows.
    temperature: tau (> 0).
    similarity: "dot" or "cosine".

  Returns:
    <float32>[b] per-row losses.
  """
  if similarity not in SIMILARITIES:
    raise ValueError(f"similarity must be one of {SIMILARITIES}, got {similarity!r}")
  if temperature <= 0:
    raise ValueError(f"temperature must be > 0, got {temperature}")
  first, second = tf.cast(first, tf.float32), tf.cast(second, tf.float32)
  if similarity == "cosine":
    first, second = tf.math.l2_normalize(first, axis=-1), tf.math.l2_normalize(second, axis=-1)
  all_first, offset = gather_replicas(first)
  all_second, _ = gather_replicas(second)
  total = tf.shape(all_first)[0]
  views = tf.concat([all_first, all_second], axis=0)                            # [2B, d]
  rows = offset + tf.range(tf.shape(first)[0], dtype=tf.int32)
  own = lambda cols: tf.one_hot(cols, 2 * total, on_value=True, off_value=False)  # noqa: E731
  forward, _ = info_nce(first, views, total + rows, temperature, exclude=own(rows))
  backward, _ = info_nce(second, views, rows, temperature, exclude=own(total + rows))
  return (forward + backward) / 2.0


__all__ = ["SIMILARITIES", "nt_xent"]
