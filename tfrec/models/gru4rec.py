"""GRU4Rec (Hidasi et al., ICLR 2016) as a retrieval baseline: a GRU reads the behaviour sequence
and its last hidden state is the query, scored against the item tower by a dot product. Trained
here with the retrieval core's in-batch softmax (the paper's session-parallel mini-batches with
in-batch negatives are the same idea); COUPLE's and M5's baseline.

GRU4Rec+ (Hidasi & Karatzoglou, CIKM 2018; M5 Table 2's "GRU4Rec+"), `gru4rec_plus`: the same
query tower (a subclass: only the loss and the sampling differ, so nothing is duplicated) with
the paper's two changes:
  * additional negatives: the in-batch candidates (every replica's positives, the paper's
    mini-batch sampling) plus `num_sampled` items shared by the whole batch, drawn with
    replacement with P(i) proportional to supp_i^alpha (`sample_alpha`: 0 uniform, 1 the
    popularity; supp_i = the item's positives in the train split, `item_log_q`), seeded by
    (seed, step) as the core's "sampled" negatives;
  * the ranking-max losses (`tfrec.tasks.ranking_max`): BPR-max with the score regularisation
    (`ranking_loss`, default; lambda = `score_regularization`) or TOP1-max.
Unlike the reference code, a negative equal to the row's positive item (an accidental hit: the
same item positive in another row, or drawn) is left out of the row's negatives, as the core's
softmax does. No log-q correction (the ranking-max losses have none); scores are plain dot
products divided by `temperature` (1: the paper).
"""

from __future__ import annotations

from typing import Dict, Optional

import tensorflow as tf
import tf_keras as keras

from tfrec.layers.step_random import Dropout
from tfrec.models import registry
from tfrec.models.retrieval import SEQ, RetrievalModel, shared_step_seed
from tfrec.moco.queue import gather_replicas
from tfrec.tasks.ranking_max import LOSSES as RANKING_MAX_LOSSES
from tfrec.tasks.ranking_max import ranking_max
from tfrec.tasks.retrieval import mask_accidental_hits


@keras.utils.register_keras_serializable(package="tfrec")
class GRU4Rec(RetrievalModel):
  """query = W h_L, h = GRU(item encodings of the real behaviours), L = the last real one.

  Args:
    hidden: GRU width (the paper: 100).
    Others: `RetrievalModel`.
  """

  def __init__(self, num_items: int, hidden: int = 100, **kwargs):
    super().__init__(num_items, **kwargs)
    self.hidden = int(hidden)
    self.gru = keras.layers.GRU(self.hidden, name="gru")
    self.dropout_layer = Dropout(self.dropout)  # in-step seeds: exact resume
    self.output_layer = keras.layers.Dense(self.dim, name="query")

  def encode_query(self, features: Dict[str, tf.Tensor],
                   training: Optional[bool] = None) -> tf.Tensor:
    mask = tf.cast(features["seq_mask"], tf.bool)
    # Sequences are right-padded, oldest first: with the mask the GRU stops at the last real
    # item (a row without any keeps the zero initial state).
    h = self.gru(self.item_encoder(features[SEQ]), mask=mask, training=training)
    h = self.dropout_layer(h, training=training)
    return tf.cast(self.output_layer(h), tf.float32)

  def get_config(self):
    return {**super().get_config(), "hidden": self.hidden}


@keras.utils.register_keras_serializable(package="tfrec")
class GRU4RecPlus(GRU4Rec):
  """GRU4Rec's query tower trained with BPR-max / TOP1-max over in-batch and alpha-sampled
  negatives (module docstring).

  Args:
    ranking_loss: "bpr_max" (the paper's best) or "top1_max".
    sample_alpha: P(sampled negative i) proportional to supp_i^alpha (the reference: 0.75).
    score_regularization: BPR-max's lambda (the reference's `bpreg`: 1.0).
    Others: `GRU4Rec` / `RetrievalModel`; `negatives` "sampled" (additional negatives,
      `num_sampled` of them: the reference's n_sample = 2048) or "in_batch" (none).

  Losses: "ranking_max" (per example).
  """

  LOSSES = ("ranking_max",)

  def __init__(self, num_items: int, ranking_loss: str = "bpr_max", sample_alpha: float = 0.75,
               score_regularization: float = 1.0, **kwargs):
    super().__init__(num_items, **kwargs)
    if ranking_loss not in RANKING_MAX_LOSSES:
      raise ValueError(f"ranking_loss must be one of {RANKING_MAX_LOSSES}, got {ranking_loss!r}")
    if self.negatives not in ("in_batch", "sampled"):
      raise ValueError("GRU4Rec+ takes negatives='sampled' (in-batch + additional samples) or "
                       f"'in_batch', got {self.negatives!r}")
    self.ranking_loss, self.sample_alpha = ranking_loss, float(sample_alpha)
    self.score_regularization = float(score_regularization)

  def sample_negatives(self) -> tf.Tensor:
    """<int64>[num_sampled] ids drawn with P(i) ~ supp_i^alpha = exp(alpha `item_log_q`[i]),
    seeded as `RetrievalModel.sample_negatives` (the same on every replica)."""
    logits = self.sample_alpha * self.item_log_q[None, 1:]
    return tf.random.stateless_categorical(logits, self.num_sampled, shared_step_seed(),
                                           dtype=tf.int64)[0] + 1

  def candidates(self, batch: Dict[str, tf.Tensor], training: Optional[bool] = None):
    """(<float32>[n, d] candidate vectors, <int64>[n] their ids, <int32>[] the offset of this
    replica's rows): every replica's positives, then the sampled negatives."""
    positive_ids = tf.cast(batch["positive_item_id"], tf.int64)
    vectors, offset = gather_replicas(self.encode_items(positive_ids, training=training))
    ids, _ = gather_replicas(positive_ids)
    if self.negatives == "sampled":
      sampled = self.sample_negatives()
      vectors = tf.concat([vectors, self.encode_items(sampled, training=training)], axis=0)
      ids = tf.concat([ids, sampled], axis=0)
    return vectors, ids, offset

  def compute_losses(self, batch: Dict[str, tf.Tensor],
                     training: Optional[bool] = None) -> Dict[str, tf.Tensor]:
    query = self(batch, training=training)
    vectors, ids, offset = self.candidates(batch, training=training)
    scores = tf.matmul(query, vectors, transpose_b=True) / self.temperature       # [b, n]
    labels = offset + tf.range(tf.shape(query)[0], dtype=tf.int32)
    positive_ids = tf.cast(batch["positive_item_id"], tf.int64)
    negatives = tf.not_equal(ids[None, :], positive_ids[:, None])  # own column and hits out
    self.task.update_top1(mask_accidental_hits(scores, positive_ids, ids, labels), labels)
    return {"ranking_max": ranking_max(scores, labels, negatives, self.ranking_loss,
                                       self.score_regularization)}

  def get_config(self):
    return {**super().get_config(), "ranking_loss": self.ranking_loss,
            "sample_alpha": self.sample_alpha,
            "score_regularization": self.score_regularization}


registry.register("gru4rec", GRU4Rec, "GRU4Rec: a GRU over the behaviour sequence, in-batch "
                  "softmax (matching records; COUPLE/M5 baseline)")
registry.register("gru4rec_plus", GRU4RecPlus, "GRU4Rec+: GRU4Rec's tower, BPR-max (or TOP1-max) "
                  "over in-batch + popularity^alpha-sampled negatives (matching records; M5 "
                  "baseline)", negatives="sampled", num_sampled=2048, log_q_correction=False)
