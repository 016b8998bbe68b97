"""ComiRec-SA (Cen et al., KDD 2020, §3.2.2): K interests of a user by self-attentive pooling of
the behaviour sequence; at serving each interest retrieves and the results merge by score.

  H = e(behaviours) + P (learnt positions)                    <[L, d]>
  A = softmax_over_L(W_2 tanh(W_1 H^T))                        <[K, L]>, padded positions 0
  V = A H                                                      <[K, d]> the K interests
  score(user, item) = max_k <v_k, e(item)>                     (merging the K retrievals)
  training: the interest closest to the target, k* = argmax_k <v_k, e(target)> (eq. 9),
            in the retrieval core's softmax (in-batch, log-q corrected; or negatives="full",
            the softmax over the whole catalogue, as M5 §5.1.3 trains every baseline, or
            "sampled")

The query of this model is <float32>[batch, K, dim]; `score`, `tfrec.evaluation.retrieval` and
the `retrieve` signature take the maximum over the interests.
"""

from __future__ import annotations

from typing import Dict, Optional

import tensorflow as tf
import tf_keras as keras

from tfrec.models import registry
from tfrec.models.retrieval import SEQ, RetrievalModel


@keras.utils.register_keras_serializable(package="tfrec")
class ComiRecSA(RetrievalModel):
  """Multi-interest retrieval by self-attentive pooling (module docstring).

  Args:
    num_interests: K (the paper: 4).
    attention_units: width of W_1 (the paper: 4 d).
    Others: `RetrievalModel`.
  """

  def __init__(self, num_items: int, num_interests: int = 4, attention_units: int = 0,
               **kwargs):
    super().__init__(num_items, **kwargs)
    if self.negatives not in ("in_batch", "full", "sampled"):
      raise ValueError("ComiRec-SA trains with negatives 'in_batch', 'full' or 'sampled', not "
                       f"{self.negatives!r}")
    self.num_interests = int(num_interests)
    self.attention_units = int(attention_units) or 4 * self.dim
    self.positions = keras.layers.Embedding(self.max_seq_len, self.dim, name="positions")
    self.w1 = keras.layers.Dense(self.attention_units, activation="tanh", use_bias=False,
                                 name="w1")
    self.w2 = keras.layers.Dense(self.num_interests, use_bias=False, name="w2")

  def encode_query(self, features: Dict[str, tf.Tensor],
                   training: Optional[bool] = None) -> tf.Tensor:
    """<float32>[batch, K, dim] the user's interests."""
    mask = tf.cast(features["seq_mask"], tf.bool)
    steps = tf.shape(mask)[1]
    h = self.item_encoder(features[SEQ]) + self.positions(tf.range(steps))[None]
    h = tf.cast(h, tf.float32) * tf.cast(mask, tf.float32)[..., None]
    logits = self.w2(self.w1(h))  # [b, L, K]
    logits = tf.where(mask[..., None], logits, tf.constant(-1e9, logits.dtype))
    weights = tf.nn.softmax(logits, axis=1) * tf.cast(mask, logits.dtype)[..., None]
    return tf.einsum("blk,bld->bkd", tf.cast(weights, tf.float32), h)

  def score(self, user: Dict[str, tf.Tensor], candidate_ids: tf.Tensor,
            training: Optional[bool] = None) -> tf.Tensor:
    """<float32>[batch, n]: max over the K interests of the dot product."""
    per_interest = tf.einsum("bkd,bnd->bkn", user["query"], self.encode_items(candidate_ids))
    return tf.reduce_max(per_interest, axis=1)

  def compute_losses(self, batch: Dict[str, tf.Tensor],
                     training: Optional[bool] = None) -> Dict[str, tf.Tensor]:
    interests = self(batch, training=training)  # [b, K, d]
    positive_ids = tf.cast(batch["positive_item_id"], tf.int64)
    positives = self.encode_items(positive_ids)
    chosen = tf.argmax(tf.einsum("bkd,bd->bk", interests, positives), axis=1)  # eq. 9
    query = tf.gather(interests, chosen, batch_dims=1)
    if self.negatives != "in_batch":  # the whole catalogue or sampled negatives (module doc)
      return {"softmax": self.matching_loss(query, batch, training=training)}
    log_q = tf.gather(self.item_log_q, positive_ids) if self.log_q_correction else None
    return {"softmax": self.task(query, positives, positive_ids, log_q)}

  def get_config(self):
    return {**super().get_config(), "num_interests": self.num_interests,
            "attention_units": self.attention_units}


registry.register("comirec_sa", ComiRecSA, "ComiRec-SA: K interests by self-attentive pooling, "
                  "max over interests at serving (matching records; COUPLE/M5 baseline)")
