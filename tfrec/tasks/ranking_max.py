"""The ranking-max losses of GRU4Rec+ (Hidasi & Karatzoglou, CIKM 2018, §4.2): pairwise losses
of the positive against a softmax-weighted set of negatives, so that the many negatives a
large sample brings do not drown the few relevant (high-scoring) ones.

For a row with positive score r_i and negative scores r_j (j in the row's negatives N_i):

    s_j        = softmax over N_i of r_j            (the positive and left-out columns excluded)
    BPR-max    = -log sum_j s_j sigmoid(r_i - r_j) + lambda sum_j s_j r_j^2      (eq. 9 + the
                                                    score regularisation of §4.2.2)
    TOP1-max   = sum_j s_j (sigmoid(r_j - r_i) + sigmoid(r_j^2))                  (eq. 7)

as the reference code (hidasib/GRU4Rec: `bpr_max`, `top1_max`, `softmax_neg`), which adds 1e-24
inside BPR-max's log; here the log of the weighted sum is a logsumexp of log s_j + log sigmoid,
exact without it. A row without any negative (every column its positive) has loss 0.
"""

from __future__ import annotations

import tensorflow as tf

LOSSES = ("bpr_max", "top1_max")
_MASKED = -1e9  # finite: masked columns get weight exp(-1e9) = 0 and finite gradients


def ranking_max(scores: tf.Tensor, labels: tf.Tensor, negative_mask: tf.Tensor,
                loss: str = "bpr_max", score_regularization: float = 1.0) -> tf.Tensor:
  """Per-row BPR-max or TOP1-max (module docstring).

  Args:
    scores: <float>[b, n] scores of every candidate column.
    labels: <int>[b] the column of each row's positive.
    negative_mask: <bool>[b, n] True where the column is a negative of the row (callers leave
      out the positive's own column and columns of the same item, accidental hits).
    loss: "bpr_max" or "top1_max".
    score_regularization: lambda of BPR-max's sum_j s_j r_j^2 (the reference's `bpreg`).

  Returns:
    <float32>[b] per-row losses.
  """
  if loss not in LOSSES:
    raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
  scores = tf.cast(scores, tf.float32)
  negative_mask = tf.cast(negative_mask, tf.bool)
  positive = tf.gather(scores, tf.cast(labels, tf.int32), batch_dims=1)[:, None]   # [b, 1]
  masked = tf.where(negative_mask, scores, tf.constant(_MASKED, tf.float32))
  log_weights = masked - tf.reduce_logsumexp(masked, axis=1, keepdims=True)         # log s_j
  weights = tf.exp(log_weights) * tf.cast(negative_mask, tf.float32)
  if loss == "bpr_max":
    per_row = -tf.reduce_logsumexp(log_weights + tf.math.log_sigmoid(positive - scores), axis=1)
    per_row += score_regularization * tf.reduce_sum(weights * tf.square(scores), axis=1)
  else:
    per_row = tf.reduce_sum(
        weights * (tf.sigmoid(scores - positive) + tf.sigmoid(tf.square(scores))), axis=1)
  has_negative = tf.reduce_any(negative_mask, axis=1)
  return tf.where(has_negative, per_row, tf.zeros_like(per_row))


__all__ = ["LOSSES", "ranking_max"]
