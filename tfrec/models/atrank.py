"""ATRank (Zhou et al., AAAI 2018) reduced to THACIL's setting, its Table 2 baseline (§4.2: "our
implementation of ATRank also employs the same feedforward network in Fig. 1").

    python -m tfrec.train --flagfile=configs/thacil/atrank.flags

ATRank projects heterogeneous behaviours into several latent spaces, runs self-attention over
them, then a vanilla attention from the downstream item over the result. THACIL's data have one
behaviour type (clicked micro-videos, x = [f; c]), so:

  H = Block(S, S, S)              multi-head self-attention over the behaviours S (ATRank §3.3
                                  "self-attention layer": heads = the latent spaces; residual,
                                  feed-forward, layer norms as the transformer it follows)
  u = MHA(Q = x, K = V = H)       the vanilla attention with the candidate x as query (ATRank
                                  "downstream application network", multi-head, no residual)
  logit = FFN([u; x])             THACIL's feed-forward head

ATRank's temporal encoding (bucketed time gaps) is the base's optional 1-hour time blocks
(`use_time_blocks`), off by default: MicroVideo-1.7M's timestamps keep only the order
(THACIL §4.1). Without them ATRank has no position information at all: its output is
invariant to permutations of the real behaviours (tested), unlike LSTM and THACIL.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import tensorflow as tf
import tf_keras as keras

from tfrec.layers.attention import MultiHeadAttentionBlock
from tfrec.layers.target_attention import TargetAttention
from tfrec.models import registry
from tfrec.models.base import RankingModel


@keras.utils.register_keras_serializable(package="tfrec")
class ATRank(RankingModel):
  """Self-attention over the behaviours, then the candidate's multi-head attention over them.

  Args:
    num_items: item ids are in [1, num_items].
    num_heads: heads (latent spaces) of both attentions (ATRank: 8; the width must divide).
    ff_dim: feed-forward width of the self-attention block; None: dim.
    l2: L2 as THACIL's public code, l2 * sum(w^2) / 2, on the item encoder's tables, the
      self-attention block and the head (THACIL §4.3: 5e-5; `TargetAttention` takes no
      regulariser, so the vanilla attention's projections are not decayed).
    item_features, item_combine: THACIL §4.3: ("visual", "category") concatenated.
    **kwargs: see `RankingModel` (mlp_units: THACIL's head [128]; dropout: the head's and the
      attentions' sublayers; use_time_blocks: ATRank's temporal encoding).

  User state: {"encoded": <float>[batch, seq, dim] H (zero at padding),
               "mask": <bool>[batch, seq]}.
  """

  def __init__(self, num_items: int, num_heads: int = 8, ff_dim: Optional[int] = None,
               l2: float = 0.0, item_features: Sequence[str] = ("visual", "category"),
               item_combine: str = "concat", **kwargs):
    super().__init__(num_items, item_features=item_features, item_combine=item_combine,
                     **kwargs)
    self.num_heads = int(num_heads)
    self.ff_dim = None if ff_dim is None else int(ff_dim)
    self.l2 = float(l2)
    reg = self.regularized(self.l2)  # L2 on the encoder and head too (as THACIL's model).
    self.self_attention = MultiHeadAttentionBlock(
        num_heads=self.num_heads, ff_dim=self.ff_dim, dropout=self.dropout,
        kernel_regularizer=reg, name="self_attention")
    self.vanilla_attention = TargetAttention(
        "dot", num_heads=self.num_heads, ff_dim=0, dropout=self.dropout, use_layer_norm=False,
        use_residual=False, name="vanilla_attention")

  def encode_user(self, features: Dict[str, tf.Tensor],
                  training: Optional[bool] = None) -> Dict[str, tf.Tensor]:
    history, mask = self.merged_sequence(features)
    encoded = self.self_attention(history, query_mask=mask, training=training)
    return {"encoded": encoded * tf.cast(mask, encoded.dtype)[..., None], "mask": mask}

  def score(self, user: Dict[str, tf.Tensor], candidate_ids: tf.Tensor,
            training: Optional[bool] = None) -> tf.Tensor:
    cand = self.candidates(candidate_ids)                                    # [b, n, d]
    interest = self.vanilla_attention(cand, tf.cast(user["encoded"], cand.dtype), user["mask"],
                                      training=training)                     # [b, n, d]
    return self.logits([interest, cand], training=training)

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), "num_heads": self.num_heads, "ff_dim": self.ff_dim,
            "l2": self.l2}


registry.register("atrank", ATRank, "ATRank: self-attention over the target history, the "
                  "candidate's multi-head attention over it, THACIL's head (THACIL Table 2)",
                  item_features=("visual", "category"))
