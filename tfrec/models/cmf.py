"""CMF: collective matrix factorisation (Singh & Gordon, KDD 2008), ADAPT's Table IV cross-domain
baseline: "factorizes matrix in different domains jointly, which transfers knowledge by sharing
user latent factors" (§IV-A).

One user factor p_u serves both domains:
  target   the labelled impressions (storytelling): BCE of <p_u, x_i>, as MF (`mf.py`)
  source   the user's product history as implicit positives: at every real position of the
           source sequence the product against one product drawn uniformly from the source
           domain, BCE of <p_u, x_p> (1) and <p_u, x_neg> (0), averaged over the positions
           (a user without product history contributes 0)
Loss = bce + source_weight-scaled "source" (the core's named losses; `--loss_weights=source=w`
also sets it). Item representations come from the shared item encoder, so products and
storytelling items live in one space. Negatives are drawn from the training step's seed
(`layers.step_random`), from a fixed seed outside training.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tf_keras as keras

from tfrec.data import schema
from tfrec.layers import step_random
from tfrec.models import registry
from tfrec.models.mf import MF

_VALIDATION_SEED = (20080824, 1)  # negatives outside training: the same every pass


@keras.utils.register_keras_serializable(package="tfrec")
class CMF(MF):
  """MF with the user factor shared by the source domain's implicit feedback (module docstring).

  Args:
    **kwargs: `MF` (num_users, l2, item_features, dim ...). The source history length is the
      run's `max_seq_len`.

  Losses: "bce" (target impressions) and "source" (the product history).
  """

  LOSSES = ("bce", "source")

  def __init__(self, num_items: int, **kwargs):
    kwargs.setdefault("domains", ("source", "target"))
    super().__init__(num_items, **kwargs)
    self._products = None  # the source-domain item ids, set by build_and_fill

  def build_and_fill(self, item_store: Any) -> "CMF":
    super().build_and_fill(item_store)
    self._products = source_products(item_store, "CMF")
    return self

  def compute_losses(self, batch: Dict[str, tf.Tensor],
                     training: Optional[bool] = None) -> Dict[str, tf.Tensor]:
    state = self.encode_user(batch, training=training)
    logits = self.score(state, tf.cast(batch["item_id"], tf.int64)[:, None],
                        training=training)[:, 0]
    bce = self.task(batch["label"], logits)
    user = state["user"]                                                   # [b, d]
    seq = tf.cast(batch["source_item_ids"], tf.int64)                      # [b, L]
    negatives = self.source_negatives(seq, training)
    u = tf.cast(user, tf.float32)[:, None, :]
    pos = tf.reduce_sum(u * tf.cast(self.item_encoder(seq), tf.float32), axis=-1)
    neg = tf.reduce_sum(u * tf.cast(self.item_encoder(negatives), tf.float32), axis=-1)
    return {"bce": bce, "source": implicit_loss(pos, neg, batch["source_mask"])}

  def source_negatives(self, seq: tf.Tensor, training: Optional[bool]) -> tf.Tensor:
    """`draw_products` from the store's source domain."""
    return draw_products(self._products, seq, training)


registry.register("cmf", CMF, "CMF: MF whose user factor also fits the source-domain (product) "
                  "history, shared user factors across domains (ADAPT Table IV)",
                  item_features=("visual", "category"))


def source_products(item_store: Any, model: str) -> tf.Tensor:
  """<int64>[P] the store's source-domain (product) ids, which `draw_products` samples;
  ValueError naming `model` when there are none."""
  products = item_store.item_ids(domain=schema.SOURCE)
  if not len(products):
    raise ValueError(f"{model} needs source-domain (product) items in the item store")
  return tf.constant(np.asarray(products, np.int64))


def draw_products(products: tf.Tensor, seq: tf.Tensor, training: Optional[bool]) -> tf.Tensor:
  """<int64>[b, L] ids drawn uniformly from `products` <int64>[P], one per position of `seq`
  <[b, L]>, from the training step's seed (`layers.step_random`), a fixed seed outside training
  (validation compares runs, CMF, CoNet and MiNet, on the same negatives)."""
  seed = step_random.step_seed() if training else None
  seed = tf.constant(_VALIDATION_SEED, tf.int64) if seed is None else seed
  pick = tf.random.stateless_uniform(tf.shape(seq), seed, minval=0,
                                     maxval=tf.shape(products, out_type=tf.int64)[0],
                                     dtype=tf.int64)
  return tf.gather(products, pick)


def pooled_mean(histories: Sequence[tf.Tensor], masks: Sequence[tf.Tensor]) -> tf.Tensor:
  """The mean of the real items of all `histories` (<float>[batch, seq_i, dim], masks
  <bool>[batch, seq_i]) together -> <float>[batch, dim]; 0 for a row without any (MiNet's
  long-term interest p_u, SEMI A.2's CoNet user)."""
  total = tf.add_n([tf.reduce_sum(tf.where(m[..., None], x, tf.zeros_like(x)), axis=1)
                    for x, m in zip(histories, masks)])
  count = tf.add_n([tf.reduce_sum(tf.cast(m, total.dtype), axis=1, keepdims=True)
                    for m in masks])
  return total / tf.maximum(count, 1)


def newest_item(seq: tf.Tensor, mask: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """SEMI A.2's product-domain target, "the latest clicked product in the sequence" (MiNet,
  π-Net): for a right-padded, oldest-first `seq` <int>[b, L] with `mask` <bool>[b, L], returns
  (<int64>[b, 1] the newest real item (the row's first item, padding, when it has none),
  <bool>[b, L] the real positions older than it (the user's input for predicting it),
  <bool>[b, 1] whether the row has one)."""
  mask = tf.cast(mask, tf.bool)
  positions = tf.range(tf.shape(seq, out_type=tf.int64)[1])[None, :]       # [1, L]
  newest = tf.reduce_max(tf.where(mask, positions, -1), axis=1)            # [b], -1: none
  positive = tf.gather(tf.cast(seq, tf.int64), tf.maximum(newest, 0), batch_dims=1)[:, None]
  before = tf.logical_and(mask, positions < newest[:, None])
  return positive, before, (newest >= 0)[:, None]


def implicit_loss(pos: tf.Tensor, neg: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
  """<float32>[b] the source loss: BCE of each real position's positive logit (label 1) and of
  its sampled negative's (label 0), <float>[b, L] each, averaged over the real positions
  (`mask` <bool>[b, L]); 0 for a row without any."""
  mask = tf.cast(mask, tf.float32)
  per_position = tf.nn.softplus(-pos) + tf.nn.softplus(neg)
  return tf.reduce_sum(per_position * mask, axis=1) / tf.maximum(tf.reduce_sum(mask, axis=1),
                                                                 1.0)
