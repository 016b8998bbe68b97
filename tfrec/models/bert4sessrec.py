"""BERT4SessRec (Chen et al., MM 2019), SEMI's Table 1 baseline (5) (SEMI §4.2.1; App. A.2: "the
number of multi-head attention blocks ... the same as that used in SEMI ... 2 blocks. In the
pre-training stage, the mask percentage is set to 0.1").

Two registered models, two runs, as CCL -> SEMI:

  bert4sessrec_pretrain   masked-item pre-training (BERT's cloze task) on the target-domain
                          (micro-video) histories of the `ranking` records; loss "mlm".
  bert4sessrec            the click-through ranker over the same encoder, started from the
                          pre-training run with `--init_from=<run> --init_layers=item_encoder,
                          encoder` (configs/semi/bert4sessrec.flags).

Both hold the layers the transfer names under the same attributes: `item_encoder` (the shared
`ItemEncoder`, e(i)) and `encoder` (`BidirectionalEncoder`: learnt positions + 2 blocks).

Encoder (both models), over a right-padded, oldest-first history of L_u real items:

  E_t = e(i_t) + P[L_u - 1 - t]       item encoding + learnt position counted back from the
                                      newest item (the newest always has position 0)
  H   = Block_2(Block_1(E))           `MultiHeadAttentionBlock`s (post-norm, as BERT), every
                                      real position attends to EVERY real position (no causal
                                      mask: bidirectional), padding never attends or is attended

Pre-training (`BERT4SessRecPretrain`, per record):
  * k = max(1, round_half_up(mask_rate * L_u)) of the L_u real positions (0 for an empty
    history) are chosen uniformly without replacement; their input e(i_t) is replaced by a
    learnt [MASK] vector m (BERT's 80/10/10 replacement split is not used: always [MASK]).
  * Each masked position t predicts its item against `num_negatives` items drawn uniformly from
    the store's target-domain items, one draw shared by the whole (per-replica) batch: a
    sampled softmax over dot products with the (tied) item encodings,
        loss_t = -log( exp(h_t.e(i_t)) / (exp(h_t.e(i_t)) + sum_{n != i_t} exp(h_t.e(n))) ),
    a negative equal to the position's own item left out of its denominator. This is cheap:
    O(batch x L x K x d) with K = num_negatives << the catalogue (a full softmax is what
    BERT4Rec does; BERT4SessRec's content-based setting has no id softmax at all).
  * "mlm" <float32>[batch] = the mean of loss_t over the record's masked positions (0 for a
    record without target history; such rows still count in the batch mean).
  * Randomness: masked positions and negatives come from `step_random.step_seed()` inside a
    training step (a resumed run draws what the uninterrupted one drew), from fixed seeds
    outside training (validation compares epochs on the same draws).

Ranking (`BERT4SessRec`, a `RankingModel`), no masking:
  H     = encoder(history)                                  <[batch, seq, dim]>
  u_t   = TargetAttention("dot")(v_t, H)                    the candidate attends over H
  logit = MLP([mean(H), u_t, v_t])                          BCE (SEMI eq. 10)
H is candidate-independent (encode once per user, score N candidates).

Adaptation, stated: the original is content-based video relevance prediction (Hulu's
challenge): sessions of video *content features* pre-trained with masked prediction, then
fine-tuned to predict the relevance of video pairs. Here, as SEMI's other rows, items are the
shared item encoder (id, category and the multi-modal feature, App. A.2), the fine-tuning task
is click-through prediction of a (user history, candidate micro-video) pair, and the candidate
enters through target attention over the bidirectional encodings plus the pooled history. The
pre-training reads the same `ranking` records (their target histories; records of one user
repeat overlapping histories), not separate sessions.

Shapes: <float>[batch, seq, dim] sequences, <bool>[batch, seq] masks.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import numpy as np
import tensorflow as tf
import tf_keras as keras

from tfrec.data import schema
from tfrec.layers import step_random
from tfrec.layers.attention import MultiHeadAttentionBlock
from tfrec.layers.item_encoder import ItemEncoder
from tfrec.layers.pooling import SequencePooling
from tfrec.layers.target_attention import TargetAttention
from tfrec.models import core
from tfrec.models import registry
from tfrec.models.base import RankingModel, sequence_input

# Draws outside a training step (validation, evaluation, tests): the same every pass.
_FIXED_MASK_SEED = (20191021, 0)
_FIXED_NEGATIVE_SEED = (20191021, 1)


def num_masked(lengths: tf.Tensor, rate: float) -> tf.Tensor:
  """<int32>[batch] positions to mask: max(1, floor(rate * n + 1/2)) for n > 0 real items, else 0.

  Computed in float64, so that rate * n lands exactly on the half it should (0.1 * 25 = 2.5 -> 3).
  """
  n = tf.cast(lengths, tf.float64)
  k = tf.cast(tf.floor(n * float(rate) + 0.5), tf.int32)
  return tf.where(lengths > 0, tf.maximum(k, 1), 0)


def choose_masked_positions(mask: tf.Tensor, rate: float, seed: tf.Tensor) -> tf.Tensor:
  """Chooses `num_masked` real positions per row uniformly without replacement.

  Args:
    mask: <bool>[batch, seq], True = real item (anywhere in the row, not only a prefix).
    rate: fraction of the real positions to choose (0, 1].
    seed: <int>[2] seed of a stateless draw.

  Returns:
    <bool>[batch, seq]: True at the chosen positions, never at padding.
  """
  mask = tf.cast(mask, tf.bool)
  k = num_masked(tf.reduce_sum(tf.cast(mask, tf.int32), axis=1), rate)
  u = tf.random.stateless_uniform(tf.shape(mask), seed, dtype=tf.float32)  # [0, 1)
  u = tf.where(mask, u, 2.0)  # padding ranks after every real position
  rank = tf.argsort(tf.argsort(u, axis=1, stable=True), axis=1, stable=True)
  return tf.logical_and(mask, rank < k[:, None])


def masked_item_loss(pos_logits: tf.Tensor, neg_logits: tf.Tensor, masked: tf.Tensor,
                     pos_ids: tf.Tensor, neg_ids: tf.Tensor) -> tf.Tensor:
  """The "mlm" loss: sampled softmax of each masked position's item, averaged per row.

  Args:
    pos_logits: <float>[batch, seq] h_t . e(i_t).
    neg_logits: <float>[batch, seq, K] h_t . e(n_k) for the K shared negatives.
    masked: <bool>[batch, seq] the positions that count.
    pos_ids: <int>[batch, seq] i_t; a negative with the same id is left out at t.
    neg_ids: <int>[K] n_k.

  Returns:
    <float32>[batch]: mean over the row's masked positions of -log softmax(.)[positive]; 0 for
    a row without any.
  """
  pos_logits = tf.cast(pos_logits, tf.float32)
  neg_logits = tf.cast(neg_logits, tf.float32)
  logits = tf.concat([pos_logits[..., None], neg_logits], axis=-1)         # [b, L, 1 + K]
  other = tf.not_equal(tf.cast(neg_ids, tf.int64)[None, None, :],
                       tf.cast(pos_ids, tf.int64)[..., None])             # [b, L, K]
  valid = tf.concat([tf.ones_like(other[..., :1]), other], axis=-1)
  logits = tf.where(valid, logits, tf.float32.min)
  per_position = tf.reduce_logsumexp(logits, axis=-1) - pos_logits       # [b, L]
  weight = tf.cast(masked, tf.float32)
  return tf.reduce_sum(per_position * weight, axis=1) / tf.maximum(
      tf.reduce_sum(weight, axis=1), 1.0)


@keras.utils.register_keras_serializable(package="tfrec")
class BidirectionalEncoder(keras.layers.Layer):
  """Learnt positions + `num_blocks` unmasked self-attention blocks (module docstring).

  Args:
    max_seq_len: rows of the position table (the longest history it encodes).
    num_blocks: `MultiHeadAttentionBlock`s (SEMI A.2: 2).
    num_heads: heads per block (SEMI A.1: 8).
    ff_dim: feed-forward width of each block (SEMI A.1: 128); None: dim.
    dropout: on the input (item + position) and each block's sublayers.

  Call args:
    inputs: <float>[batch, seq, dim] item encodings (zero or anything at padding); real items
      must be a prefix of each row (right padding, oldest first), seq <= max_seq_len.
    mask: <bool>[batch, seq], True = real item.
    training: dropout switch.

  Returns:
    <float>[batch, seq, dim] H, zero at padding; independent of the inputs at padding.
  """

  def __init__(self, max_seq_len: int, num_blocks: int = 2, num_heads: int = 8,
               ff_dim: Optional[int] = None, dropout: float = 0.1, **kwargs):
    super().__init__(**kwargs)
    if num_blocks < 1:
      raise ValueError(f"num_blocks must be >= 1, got {num_blocks}")
    self.max_seq_len, self.num_blocks = int(max_seq_len), int(num_blocks)
    self.num_heads = int(num_heads)
    self.ff_dim = None if ff_dim is None else int(ff_dim)
    self.dropout = float(dropout)
    self.input_dropout = step_random.Dropout(self.dropout)
    self.blocks = [MultiHeadAttentionBlock(num_heads=self.num_heads, ff_dim=self.ff_dim,
                                           dropout=self.dropout, name=f"block_{i}")
                   for i in range(self.num_blocks)]

  def build(self, input_shape: tf.TensorShape) -> None:
    dim = int(tf.TensorShape(input_shape)[-1])
    self.positions = self.add_weight(  # BERT's initialiser
        "positions", shape=[self.max_seq_len, dim],
        initializer=keras.initializers.TruncatedNormal(stddev=0.02))
    super().build(input_shape)

  def call(self, inputs: tf.Tensor, mask: tf.Tensor,
           training: Optional[bool] = None) -> tf.Tensor:
    mask = tf.cast(mask, tf.bool)
    length = tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)
    steps = tf.shape(mask)[1]
    back = tf.clip_by_value(length[:, None] - 1 - tf.range(steps)[None, :], 0,
                            self.max_seq_len - 1)                         # newest: 0
    real = tf.cast(mask, inputs.dtype)[..., None]
    x = tf.where(mask[..., None], inputs, tf.zeros_like(inputs))  # padding cannot leak (NaN)
    x = x + tf.cast(tf.gather(self.positions, back), inputs.dtype)
    x = self.input_dropout(x, training=training) * real
    for block in self.blocks:
      x = block(x, query_mask=mask, training=training)
    return x

  def compute_mask(self, inputs, mask=None):
    return None

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), "max_seq_len": self.max_seq_len,
            "num_blocks": self.num_blocks, "num_heads": self.num_heads, "ff_dim": self.ff_dim,
            "dropout": self.dropout}


@keras.utils.register_keras_serializable(package="tfrec")
class BERT4SessRecPretrain(core.Model):
  """BERT4SessRec's masked-item pre-training on `ranking` records (module docstring).

  Args:
    num_items, dim, item_features, num_categories, visual_dim, num_tokens, max_seq_len,
      dropout, item_combine, pre_extracted_dim: as `RankingModel`'s; they must match the
      ranking run that initialises from this one.
    num_blocks, num_heads, ff_dim: of the encoder (SEMI A.1-A.2: 2, 8, 128).
    mask_rate: fraction of each history's real items masked (SEMI A.2: 0.1).
    num_negatives: K items sampled per step for the sampled softmax.

  `call(features)` returns the unmasked encoding H <float32>[batch, seq, dim] of the target
  history.
  """

  RECORD_KIND = "ranking"
  LOSSES = ("mlm",)
  MONITOR = ("loss", "min")
  VALIDATES = True
  EXPORTABLE = False
  DOMAIN = "target"

  def __init__(self, num_items: int, dim: int = 128,
               item_features: Sequence[str] = ("id", "category", "visual"),
               num_categories: int = 0, visual_dim: int = 0, num_tokens: int = 0,
               max_seq_len: int = schema.MAX_SEQ_LEN, num_blocks: int = 2, num_heads: int = 8,
               ff_dim: Optional[int] = None, dropout: float = 0.1, mask_rate: float = 0.1,
               num_negatives: int = 128, item_combine: str = "sum", pre_extracted_dim: int = 0,
               **kwargs):
    super().__init__(**kwargs)
    if not 0.0 < mask_rate <= 1.0:
      raise ValueError(f"mask_rate must be in (0, 1], got {mask_rate}")
    if num_negatives < 1:
      raise ValueError(f"num_negatives must be >= 1, got {num_negatives}")
    self.num_items, self.dim = int(num_items), int(dim)
    self.item_features = tuple(item_features)
    self.num_categories, self.visual_dim = int(num_categories), int(visual_dim)
    self.num_tokens, self.max_seq_len = int(num_tokens), int(max_seq_len)
    self.num_blocks, self.num_heads = int(num_blocks), int(num_heads)
    self.ff_dim = None if ff_dim is None else int(ff_dim)
    self.dropout, self.mask_rate = float(dropout), float(mask_rate)
    self.num_negatives, self.item_combine = int(num_negatives), str(item_combine)
    self.pre_extracted_dim = int(pre_extracted_dim)
    self.item_encoder = ItemEncoder(num_items, dim, self.item_features,
                                    num_categories=num_categories, visual_dim=visual_dim,
                                    num_tokens=num_tokens, combine=self.item_combine,
                                    pre_extracted_dim=self.pre_extracted_dim,
                                    name="item_encoder")
    self.encoder = BidirectionalEncoder(self.max_seq_len, self.num_blocks, self.num_heads,
                                        self.ff_dim, self.dropout, name="encoder")
    self.mask_embedding = self.add_weight(  # the [MASK] input
        "mask_embedding", shape=[self.dim],
        initializer=keras.initializers.TruncatedNormal(stddev=0.02))
    self._videos = None  # target-domain item ids (the negatives' pool), set by build_and_fill

  # ------------------------------------------------------------------ encoding

  def encode(self, features: Dict[str, tf.Tensor], masked: Optional[tf.Tensor] = None,
             training: Optional[bool] = None):
    """(H <float32>[batch, seq, dim], e(i) <float>[batch, seq, dim], mask <bool>[batch, seq])
    with the inputs at `masked` <bool>[batch, seq] replaced by [MASK] (None: no masking)."""
    items, mask = sequence_input(self.item_encoder, None, features, self.DOMAIN)
    x = items
    if masked is not None:
      x = tf.where(masked[..., None], tf.cast(self.mask_embedding, x.dtype)[None, None], x)
    return tf.cast(self.encoder(x, mask, training=training), tf.float32), items, mask

  def call(self, features: Dict[str, tf.Tensor], training: Optional[bool] = None) -> tf.Tensor:
    return self.encode(features, training=training)[0]

  def masked_positions(self, features: Dict[str, tf.Tensor],
                       training: Optional[bool] = None) -> tf.Tensor:
    """<bool>[batch, seq] positions to mask: the step's seed in training, a fixed one outside."""
    seed = step_random.step_seed() if training else None
    seed = tf.constant(_FIXED_MASK_SEED, tf.int64) if seed is None else seed
    return choose_masked_positions(features[f"{self.DOMAIN}_mask"], self.mask_rate, seed)

  def negatives(self, training: Optional[bool] = None) -> tf.Tensor:
    """<int64>[K] target-domain items, uniform with replacement, shared by the batch."""
    seed = step_random.step_seed() if training else None
    seed = tf.constant(_FIXED_NEGATIVE_SEED, tf.int64) if seed is None else seed
    pick = tf.random.stateless_uniform(
        [self.num_negatives], seed, minval=0,
        maxval=tf.shape(self._videos, out_type=tf.int64)[0], dtype=tf.int64)
    return tf.gather(self._videos, pick)

  def compute_losses(self, batch: Dict[str, tf.Tensor],
                     training: Optional[bool] = None) -> Dict[str, tf.Tensor]:
    """{"mlm": <float32>[batch]} (module docstring)."""
    masked = self.masked_positions(batch, training)
    neg_ids = self.negatives(training)
    h, items, _ = self.encode(batch, masked, training=training)
    pos_logits = tf.reduce_sum(h * tf.cast(items, tf.float32), axis=-1)          # [b, L]
    neg_items = tf.cast(self.item_encoder(neg_ids), tf.float32)                  # [K, d]
    neg_logits = tf.einsum("bld,kd->blk", h, neg_items)                          # [b, L, K]
    ids = tf.cast(batch[f"{self.DOMAIN}_item_ids"], tf.int64)
    return {"mlm": masked_item_loss(pos_logits, neg_logits, masked, ids, neg_ids)}

  # ------------------------------------------------------------------ building

  def dummy_features(self, batch: int = 1) -> Dict[str, tf.Tensor]:
    d = self.DOMAIN
    return {f"{d}_item_ids": tf.zeros([batch, self.max_seq_len], tf.int64),
            f"{d}_timestamps": tf.zeros([batch, self.max_seq_len], tf.int64),
            f"{d}_mask": tf.zeros([batch, self.max_seq_len], tf.bool)}

  def build_and_fill(self, item_store: Any) -> "BERT4SessRecPretrain":
    """Creates the weights, copies the item store in and takes its target-domain items as the
    negatives' pool.

    Raises:
      ValueError: the store has no target-domain item.
    """
    self(self.dummy_features(), training=False)
    self.item_encoder.set_item_features(item_store)
    videos = item_store.item_ids(domain=schema.TARGET)
    if not len(videos):
      raise ValueError("bert4sessrec_pretrain needs target-domain items in the item store")
    self._videos = tf.constant(np.asarray(videos, np.int64))
    return self

  def get_config(self) -> Dict[str, Any]:
    return dict(num_items=self.num_items, dim=self.dim, item_features=list(self.item_features),
                num_categories=self.num_categories, visual_dim=self.visual_dim,
                num_tokens=self.num_tokens, max_seq_len=self.max_seq_len,
                num_blocks=self.num_blocks, num_heads=self.num_heads, ff_dim=self.ff_dim,
                dropout=self.dropout, mask_rate=self.mask_rate,
                num_negatives=self.num_negatives, item_combine=self.item_combine,
                pre_extracted_dim=self.pre_extracted_dim)

  @classmethod
  def from_config(cls, config: Dict[str, Any], custom_objects=None) -> "BERT4SessRecPretrain":
    return cls(**config)


@keras.utils.register_keras_serializable(package="tfrec")
class BERT4SessRec(RankingModel):
  """BERT4SessRec's fine-tuned ranker (module docstring).

    H     = encoder(S)                          bidirectional, no masking
    u_t   = TargetAttention("dot")(v_t, H)      the candidate's attention over H
    logit = MLP([mean(H), u_t, v_t])

  Args:
    num_blocks, num_heads, ff_dim: of the encoder (and num_heads, ff_dim of the candidate's
      attention block); as the pre-training run's (SEMI A.1-A.2: 2, 8, 128).
    **kwargs: see `RankingModel`. With several `domains` the histories are merged by time
      (`merged_sequence`) and the position table has max_seq_len x len(domains) rows (then it
      does not fit a pre-training run's encoder).

  User state: {"encoded": <float>[batch, seq, dim] H, "mask": <bool>[batch, seq],
               "pooled": <float>[batch, dim] mean of H over real items}.
  """

  def __init__(self, num_items: int, num_blocks: int = 2, num_heads: int = 8,
               ff_dim: Optional[int] = None, **kwargs):
    super().__init__(num_items, **kwargs)
    self.num_blocks, self.num_heads = int(num_blocks), int(num_heads)
    self.ff_dim = None if ff_dim is None else int(ff_dim)
    self.encoder = BidirectionalEncoder(self.max_seq_len * len(self.domains), self.num_blocks,
                                        self.num_heads, self.ff_dim, self.dropout,
                                        name="encoder")
    self.target_attention = TargetAttention("dot", num_heads=self.num_heads, ff_dim=self.ff_dim,
                                            dropout=self.dropout, name="target_attention")
    self.pooling = SequencePooling("mean", name="mean_pooling")

  def encode_user(self, features: Dict[str, tf.Tensor],
                  training: Optional[bool] = None) -> Dict[str, tf.Tensor]:
    history, mask = self.merged_sequence(features)
    encoded = self.encoder(history, mask, training=training)
    return {"encoded": encoded, "mask": mask, "pooled": self.pooling(encoded, mask)}

  def score(self, user: Dict[str, tf.Tensor], candidate_ids: tf.Tensor,
            training: Optional[bool] = None) -> tf.Tensor:
    cand = self.candidates(candidate_ids)                                # [b, n, d]
    attended = self.target_attention(cand, user["encoded"], user["mask"], training=training)
    return self.logits([user["pooled"], attended, cand], training=training)

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), "num_blocks": self.num_blocks, "num_heads": self.num_heads,
            "ff_dim": self.ff_dim}


registry.register("bert4sessrec_pretrain", BERT4SessRecPretrain,
                  "BERT4SessRec pre-training (SEMI Table 1 (5)): 10% of the target history "
                  "masked, predicted against sampled micro-videos (loss mlm); trains on ranking "
                  "records; bert4sessrec loads it with --init_from")
registry.register("bert4sessrec", BERT4SessRec,
                  "BERT4SessRec (SEMI Table 1 (5)): 2 bidirectional transformer blocks over the "
                  "target history, candidate attention, MLP; --init_from a "
                  "bert4sessrec_pretrain run")


__all__ = ["BERT4SessRec", "BERT4SessRecPretrain", "BidirectionalEncoder",
           "choose_masked_positions", "masked_item_loss", "num_masked"]
