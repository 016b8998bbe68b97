"""THACIL (Chen et al., MM 2018): temporal hierarchical attention at category and item level for
item cold-start click-through prediction.

    python -m tfrec.train --flagfile=configs/thacil/thacil.flags

Items are embedded from their features only (§3.1: x = [f; c], f = E_f sigma^f the projected
visual feature, c = E_c sigma^c the category; no id embedding), so a cold item is scored like any
other. The history (n items, oldest first) is cut into blocks of k; `TemporalHierarchicalAttention`
gives the profile u_1..u_m (§3.2, eq. 3-8); the candidate attends over the real blocks (eq. 9)
and a feed-forward network of [u; x] gives the logit (§3.3, loss eq. 10). Where the paper is
silent the public code (github Ocxs/THACIL) decides: see `tfrec/layers/hierarchical_attention.py`;
its L2 (5e-5 on tf.nn.l2_loss = sum w^2 / 2) is `l2` here, applied to every kernel and the
category table; gradient clipping is the trainer's concern.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import tensorflow as tf
import tf_keras as keras

from tfrec.layers.hierarchical_attention import (AdditiveAttentionPool,
                                                 TemporalHierarchicalAttention)
from tfrec.models import registry
from tfrec.models.base import RankingModel


@keras.utils.register_keras_serializable(package="tfrec")
class THACIL(RankingModel):
  """THACIL on ranking records; reads the histories of `domains` (merged by time if two).

  Args:
    num_items: item ids are in [1, num_items].
    dim: d = d_f + d_c (THACIL: 128 = 64 + 64); each half of the item vector.
    block_size: k items per temporal block (THACIL: 20; n = 160 gives m = 8 blocks).
    num_heads: heads of the forward self-attention (the public code: 8).
    l2: L2 weight decay (THACIL: 5e-5, as the public code's tf.nn.l2_loss: l2 * sum(w^2) / 2).
    item_features: ("visual", "category"), x = [f; c] (§3.1); on data without a visual
      modality (MovieLens) ("title", "category"): f is the mean of the title's word
      embeddings.
    **kwargs: see `RankingModel` (mlp_units: the feed-forward network, the public code's
      [128]; dropout: its keep probability 0.8 -> 0.2; max_seq_len: n, THACIL 160).

  User state: {"profile": <float>[batch, m, d], "mask": <bool>[batch, m]}.
  """

  def __init__(self, num_items: int, block_size: int = 20, num_heads: int = 8,
               l2: float = 5e-5,
               item_features: Sequence[str] = ("visual", "category"),
               max_seq_len: int = 160, mlp_units: Sequence[int] = (128,),
               dropout: float = 0.2, **kwargs):
    kwargs.pop("item_combine", None)
    super().__init__(num_items, item_features=item_features, max_seq_len=max_seq_len,
                     mlp_units=mlp_units, dropout=dropout, item_combine="concat", **kwargs)
    if tuple(self.item_features) not in (("visual", "category"), ("title", "category")):
      raise ValueError("THACIL embeds items as x = [f; c] from a content feature and the "
                       "category, without an id (item_features=('visual', 'category'), or "
                       f"('title', 'category') on data without visual features); got "
                       f"{self.item_features}")
    self.block_size = int(block_size)
    self.num_heads = int(num_heads)
    self.l2 = float(l2)
    reg = self.regularized(self.l2)  # the public code's L2 on the encoder and head too.
    self.hierarchy = TemporalHierarchicalAttention(
        self.dim // 2, block_size=self.block_size, num_heads=self.num_heads,
        dropout=self.dropout, kernel_regularizer=reg, name="temporal_hierarchical_attention")
    self.profile_attention = AdditiveAttentionPool(dropout=self.dropout, kernel_regularizer=reg,
                                                   name="profile_attention")

  def encode_user(self, features: Dict[str, tf.Tensor],
                  training: Optional[bool] = None) -> Dict[str, tf.Tensor]:
    history, mask = self.merged_sequence(features)
    profile, block_mask = self.hierarchy(history, mask, training=training)
    return {"profile": profile, "mask": block_mask}

  def score(self, user: Dict[str, tf.Tensor], candidate_ids: tf.Tensor,
            training: Optional[bool] = None) -> tf.Tensor:
    cand = self.candidates(candidate_ids)                          # [b, n, d]
    profile = user["profile"][:, None]                               # [b, 1, m, d]
    mask = tf.cast(user["mask"], tf.bool)[:, None]                   # [b, 1, m]
    n = tf.shape(cand)[1]
    profile = tf.repeat(profile, n, axis=1)
    mask = tf.repeat(mask, n, axis=1)
    interest = self.profile_attention(profile, cand, mask, training=training)  # eq. 9
    return self.logits([interest, cand], training=training)

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), "block_size": self.block_size, "num_heads": self.num_heads,
            "l2": self.l2}


registry.register("thacil", THACIL, "THACIL: temporal hierarchical attention (category- and "
                  "item-level, forward block self-attention) over the target-domain history; "
                  "items from visual + category features only",
                  item_features=("visual", "category"))
