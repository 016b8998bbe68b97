"""ADEN: the Attentional Domain-transfEr Network of ADAPT (Chen et al., TMM 2021, §III-C, eq. 9-11).

  f_i   = v_i + t_i + T_i           item feature: ADAPT's visual and textual features
                                    (`layers.adapt_extractor`, pre-trained by DUAL:
                                    `--init_from=<DUAL run>` restores `extractor`) plus the
                                    1-hour time-block embedding shared by both domains
  u_s   = MHA(f_target, F^s)        eq. 9-10: h = 4 heads of scaled dot-product attention, the
  u_p   = MHA(f_target, F^p)        target storytelling as the query over each domain's history
                                    (storytelling = target domain, product = source domain),
                                    heads concatenated; no residual, layer norm or feed-forward
  y^    = sigmoid(MLP([u_s; u_p; f_target]))   MLP 256 -> 128 -> 1, BCE (eq. 11)

Where the paper is silent: the target's own time block is block 0 (the request time), as SEMI's
candidate; a domain without history gives u = 0. Settings (§IV-B): d = 64, histories of 20,
batch 128, dropout 0.1 (`configs/adapt/aden.flags`).
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import tensorflow as tf
import tf_keras as keras

from tfrec.layers.adapt_extractor import PARTS, ContentExtractor, ContentItemEncoder
from tfrec.layers.target_attention import TargetAttention
from tfrec.models import registry
from tfrec.models.base import RankingModel


@keras.utils.register_keras_serializable(package="tfrec")
class ADEN(RankingModel):
  """Module docstring.

  Args:
    num_items: item ids in [1, num_items].
    item_features: the extractor's parts, a subset of ("visual", "title") (Table VI: V, T, V+T).
    num_heads: heads of each domain's attention (ADAPT: 4).
    num_tokens: the title vocabulary (from dataset.json).
    **kwargs: `RankingModel` (dim: ADAPT 64; mlp_units: [256, 128]; dropout 0.1; domains:
      ("target", "source") = storytelling and product).

  User state: per domain d, "<d>_history" <float>[batch, seq_d, dim], "<d>_mask".
  """

  def __init__(self, num_items: int, item_features: Sequence[str] = PARTS, num_heads: int = 4,
               num_tokens: int = 0, visual_dim: int = 0,
               mlp_units: Sequence[int] = (256, 128), domains: Sequence[str] = ("target",
                                                                                 "source"),
               **kwargs):
    if not kwargs.pop("use_time_blocks", True):
      raise ValueError("ADEN's item features always include the time-block embedding")
    kwargs.pop("item_combine", None)
    kwargs.pop("num_categories", None)  # passed for every model by runs.build_model
    # The base class's ItemEncoder is replaced below; it is built from the category alone.
    super().__init__(num_items, item_features=("category",), num_categories=1,
                     mlp_units=mlp_units, domains=domains, use_time_blocks=True, **kwargs)
    self.content_features = tuple(item_features)
    self.num_heads, self.num_tokens, self.content_visual_dim = (int(num_heads), int(num_tokens),
                                                                int(visual_dim))
    self.extractor = ContentExtractor(num_items, self.dim, visual_dim=visual_dim,
                                      num_tokens=num_tokens, parts=self.content_features,
                                      name="extractor")
    self.item_encoder = ContentItemEncoder(self.extractor, name="item_encoder")
    for d in self.domains:
      setattr(self, f"{d}_attention", TargetAttention(
          "dot", num_heads=self.num_heads, ff_dim=0, dropout=self.dropout,
          use_layer_norm=False, use_residual=False, name=f"{d}_attention"))

  def encode_user(self, features: Dict[str, tf.Tensor],
                  training: Optional[bool] = None) -> Dict[str, tf.Tensor]:
    user = {}
    for d in self.domains:
      user[f"{d}_history"], user[f"{d}_mask"] = self.domain_sequence(features, d)
    return user

  def score(self, user: Dict[str, tf.Tensor], candidate_ids: tf.Tensor,
            training: Optional[bool] = None) -> tf.Tensor:
    """f of the target (v + t + block 0's time embedding) attends over each domain (eq. 9)."""
    return self.target_attention_logits(
        user, candidate_ids, lambda d: getattr(self, f"{d}_attention"), "history",
        training=training)

  def attention_weights(self, features: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """ADAPT Fig. 6's case study: domain -> <float32>[batch, heads, seq] the weights of the
    labelled item's attention (eq. 9) over the domain's history, positions as in
    `<domain>_item_ids`; 0 at padding and for a domain without history (inference mode)."""
    user = self.encode_user(features, training=False)
    x = self.item_encoder(features["item_id"][:, None])
    cand = x + tf.cast(self.time_blocks.embeddings[0], x.dtype)  # as `score`
    out = {}
    for d in self.domains:
      _, weights = getattr(self, f"{d}_attention")(cand, user[f"{d}_history"],
                                                   user[f"{d}_mask"], training=False,
                                                   return_attention_scores=True)
      out[d] = weights[:, :, 0, :]
    return out

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), "item_features": list(self.content_features),
            "num_heads": self.num_heads, "num_tokens": self.num_tokens,
            "visual_dim": self.content_visual_dim}


registry.register("aden", ADEN, "ADAPT's ADEN (§III-C): visual + textual + time-block item "
                  "features, the target storytelling's 4-head attention over each domain's "
                  "history, MLP 256 -> 128; --init_from a DUAL run for ADAPT",
                  item_features=PARTS)
