"""SASRec (Kang & McAuley, ICDM 2018): causal self-attention over the behaviour sequence; the output
at each position predicts the next item, and the output at the last position is the query.

  E_t   = e(i_t) * sqrt(d) + P[L_u - 1 - t]      (item encoding + learnt position, counted back
                                                  from the newest item, so the newest always
                                                  has position 0 whatever the length)
  H     = blocks(E) with a causal mask            (position t attends to positions <= t)
  query = H[L_u - 1]                              (the newest real position)

Objectives (`objective`):
  bce      the paper's §3.5: at every real position t the next item (the sequence's own next
           item, and after the newest one the record's positive) against one random negative
           item: -log s(h_t . e(next)) - log(1 - s(h_t . e(neg))), averaged over the positions.
           Negatives are uniform over the items, drawn from the step's seed
           (`tfrec.layers.step_random`; a fixed seed in validation); unlike the paper they are
           not re-drawn when they hit the user's history (a chance of about L/N).
  softmax  the retrieval core's in-batch softmax at the newest position only.
Validation (any call with training falsy: `test_step`, the held-out records of the sequential
view) scores the held-out position only: the record's positive after the newest item, against
one negative from a fixed seed. The other positions are the training sequence's own next items,
which a model has trained on; averaged in, they made the validation loss fall with the training
loss, so early stopping never stopped (measured on ML-1M: 83-86 of 200 epochs, valid loss still
falling).
Blocks (`norm_order`, `tfrec.layers.attention.MultiHeadAttentionBlock`): "sasrec" (the default)
is the paper's reference code, which produced its figures: Q~ = LN(H), H' = Q~ + Dropout(A(Q~, H,
H)), then the same around the feed-forward network, and a layer norm after the last block;
"pre" is the paper's text, g(x) = x + Dropout(g(LayerNorm(x))), also with the final norm; "post"
(tfrec's other models, and SASRec here before 2026-11-28) normalises after each residual add, no
final norm. Dropout as the code: on the input embedding, the attention weights and each
sublayer's output (the code's extra dropout inside the feed-forward network is not applied).
Training negatives are redrawn, up to `_NEGATIVE_REDRAWS` times, while they hit the record's
sequence or positive (the code draws "random_neq" outside the user's training items; the ones
older than the kept max_seq_len are not known to the model here); a negative that still hits
after the redraws is kept (probability about (L/N)^(1 + redraws), under 1e-5 on ML-1M).
Positions count back from the newest item (the paper left-pads to a fixed length, which gives the
same positions).
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Tuple

import tensorflow as tf
import tf_keras as keras

from tfrec.layers import step_random
from tfrec.layers.attention import NORM_ORDERS, MultiHeadAttentionBlock
from tfrec.models import registry
from tfrec.models.retrieval import SEQ, RetrievalModel

OBJECTIVES = ("bce", "softmax")
_VALIDATION_SEED = (20181118, 0)  # negatives of a validation pass: the same every epoch
_NEGATIVE_REDRAWS = 3


@keras.utils.register_keras_serializable(package="tfrec")
class SASRec(RetrievalModel):
  """Causal self-attention sequence model (module docstring).

  Args:
    num_blocks: attention blocks (the paper: 2).
    num_heads: heads per block (the paper: 1).
    objective: "bce" (the paper) or "softmax".
    Others: `RetrievalModel` (the paper: dim 50, dropout 0.2, max_seq_len 200 on ML-1M).
  """

  LOSSES = ("next_item",)

  def __init__(self, num_items: int, num_blocks: int = 2, num_heads: int = 1,
               objective: str = "bce", norm_order: str = "sasrec", **kwargs):
    super().__init__(num_items, **kwargs)
    if objective not in OBJECTIVES:
      raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    if norm_order not in NORM_ORDERS:
      raise ValueError(f"norm_order must be one of {NORM_ORDERS}, got {norm_order!r}")
    self.num_blocks, self.num_heads, self.objective = int(num_blocks), int(num_heads), objective
    self.norm_order = norm_order
    self.positions = keras.layers.Embedding(self.max_seq_len, self.dim, name="positions")
    self.input_dropout = step_random.Dropout(self.dropout)
    self.blocks = [MultiHeadAttentionBlock(num_heads=self.num_heads, ff_dim=self.dim,
                                           dropout=self.dropout,
                                           attention_dropout=(self.dropout if norm_order != "post"
                                                              else 0.0),
                                           norm_order=norm_order, name=f"block_{i}")
                   for i in range(self.num_blocks)]
    self.final_norm = (None if norm_order == "post" else
                       keras.layers.LayerNormalization(epsilon=1.001e-5, name="final_norm"))

  def embed_sequence(self, ids: tf.Tensor) -> tf.Tensor:
    """<int>[b, L] -> [b, L, d] the item encodings the blocks read (CL4SRec adds its mask
    token, `tfrec.models.cl4srec`)."""
    return self.item_encoder(ids)

  def sequence_outputs(self, features: Dict[str, tf.Tensor],
                       training: Optional[bool] = None):
    """(<float32>[b, L, d] the output at every position, <bool>[b, L] mask, <int32>[b] lengths)."""
    mask = tf.cast(features["seq_mask"], tf.bool)
    length = tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)
    steps = tf.shape(mask)[1]
    back = tf.maximum(length[:, None] - 1 - tf.range(steps)[None, :], 0)  # newest: 0
    x = (self.embed_sequence(features[SEQ]) * tf.cast(math.sqrt(self.dim), self.compute_dtype)
         + self.positions(back))
    x = self.input_dropout(x, training=training) * tf.cast(mask, x.dtype)[..., None]
    causal = tf.linalg.band_part(tf.ones([steps, steps], tf.bool), -1, 0)[None]
    for block in self.blocks:
      x = block(x, query_mask=mask, attention_mask=causal, training=training)
    if self.final_norm is not None:
      x = self.final_norm(x) * tf.cast(mask, x.dtype)[..., None]
    return tf.cast(x, tf.float32), mask, length

  def encode_query(self, features: Dict[str, tf.Tensor],
                   training: Optional[bool] = None) -> tf.Tensor:
    h, _, length = self.sequence_outputs(features, training=training)
    return tf.gather(h, tf.maximum(length - 1, 0), batch_dims=1)  # zeros for an empty row

  def unmeasured_metrics(self) -> Tuple[str, ...]:
    """The "bce" objective scores each position against one sampled negative, not through the
    retrieval task: no top-1 accuracy to report."""
    return () if self.objective == "softmax" else (self.task.metric_name,)

  def compute_losses(self, batch: Dict[str, tf.Tensor],
                     training: Optional[bool] = None) -> Dict[str, tf.Tensor]:
    if self.objective == "softmax":
      return {"next_item": super().compute_losses(batch, training=training)["softmax"]}
    h, mask, length = self.sequence_outputs(batch, training=training)
    ids = tf.cast(batch[SEQ], tf.int64)
    nxt = tf.concat([ids[:, 1:], tf.zeros_like(ids[:, :1])], axis=1)  # the next real item...
    last = tf.one_hot(length - 1, tf.shape(ids)[1], on_value=True, off_value=False)
    positive = tf.cast(batch["positive_item_id"], tf.int64)[:, None]
    nxt = tf.where(last, positive, nxt)  # ...and after the newest one, the record's positive
    seed = step_random.step_seed() if training else None
    if seed is None:  # validation: one fixed draw
      neg = self._negatives(ids, positive, [tf.constant(_VALIDATION_SEED, tf.int64)])
    else:
      neg = self._negatives(ids, positive, [seed] + [step_random.step_seed()
                                                     for _ in range(_NEGATIVE_REDRAWS)])
    pos_logit = tf.reduce_sum(h * self.encode_items(nxt), axis=-1)
    neg_logit = tf.reduce_sum(h * self.encode_items(neg), axis=-1)
    per_position = tf.nn.softplus(-pos_logit) + tf.nn.softplus(neg_logit)
    # Training: every real position; validation: the held-out one (module docstring).
    weight = tf.cast(mask if training else last, tf.float32)
    loss = tf.reduce_sum(per_position * weight, axis=1) / tf.maximum(
        tf.reduce_sum(weight, axis=1), 1.0)
    return {"next_item": loss}

  def _negatives(self, ids: tf.Tensor, positive: tf.Tensor, seeds) -> tf.Tensor:
    """<int64>[b, L] uniform item ids in [1, num_items] from `seeds[0]`; each redrawn from
    `seeds[1]`, `seeds[2]`, ... while it is an item of its row's sequence or its positive."""
    known = tf.concat([ids, positive], axis=1)  # [b, L + 1], padding 0 never drawn
    draw = lambda s: tf.random.stateless_uniform(  # noqa: E731
        tf.shape(ids), s, minval=1, maxval=self.num_items + 1, dtype=tf.int64)
    neg = draw(seeds[0])
    for s in seeds[1:]:
      hit = tf.reduce_any(neg[:, :, None] == known[:, None, :], axis=-1)
      neg = tf.where(hit, draw(s), neg)
    return neg

  def get_config(self):
    return {**super().get_config(), "num_blocks": self.num_blocks, "num_heads": self.num_heads,
            "objective": self.objective, "norm_order": self.norm_order}


registry.register("sasrec", SASRec, "SASRec: causal self-attention, every position predicts "
                  "its next item (BCE, one random negative) (matching records)")
