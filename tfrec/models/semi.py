"""SEMI: the Sequential multi-modal information transfer network (Lei et al., KDD 2021, §3.2-3.4).

  V^in, P^in  = item features + 1-hour time-block embeddings, shared table (§3.2.3)
  V^intra     = Block_v(V^in),  P^intra = Block_p(P^in)        intra-domain encoders (§3.2.3)
  [V^inter, P^inter] = Block_inter([V^intra, P^intra])        inter-domain attention (§3.4)
  u_v = Block_tv(Q=v_t^in, K=V=V^inter), u_p = Block_tp(Q=v_t^in, K=V=P^inter)   (§3.4)
  y^  = sigmoid(MLP([u_v, u_p, v_t^in]))                      MLP 128 -> 1, BCE (eq. 10)

v_t^in, the target micro-video, is its item features plus the time-block embedding of the request
time (block 0), as §3.4 says. With one domain the model is SEMI-Micro-Video (`domains=target`) or
SEMI-Product (`domains=source`) of Table 2; the inter-domain block then runs over that domain
alone. The intra-domain encoders are named `source_encoder` / `target_encoder` so that CCL
pre-training (§3.3) can initialise them (`--init_from`).

Everything up to V^inter / P^inter is candidate-independent (`encode_user`); the two target
attention blocks and the MLP run per candidate (`score`).
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import tensorflow as tf
import tf_keras as keras

from tfrec.layers.attention import MultiHeadAttentionBlock
from tfrec.layers.target_attention import TargetAttention
from tfrec.models import registry
from tfrec.models.base import RankingModel

_DOMAIN_LETTER = {"target": "v", "source": "p"}  # the paper's micro-video / product


@keras.utils.register_keras_serializable(package="tfrec")
class SEMI(RankingModel):
  """SEMI transfer network (§3.4).

  Args:
    num_heads: heads of every attention block (A.1: 8).
    ff_dim: feed-forward width of every attention block (A.1: 128); None: dim.
    use_inter_domain: the inter-domain block (False: an ablation, u from V^intra / P^intra).
    attention_dropout: dropout inside every attention block; None: `dropout` (A.1 puts
      dropout 0.1 only after the final MLP: `dropout=0.1, attention_dropout=0`).
    **kwargs: see `RankingModel` (time blocks are always on: §3.2.3); `dropout` is the output
      MLP's.

  User state: per domain d, "<d>_inter" <float>[batch, seq_d, dim] and "<d>_mask" <bool>[batch,
  seq_d]. Logits: <float32>[batch, n].
  """

  def __init__(self, num_items: int, num_heads: int = 8, ff_dim: Optional[int] = 128,
               use_inter_domain: bool = True, attention_dropout: Optional[float] = None,
               **kwargs):
    if not kwargs.pop("use_time_blocks", True):
      raise ValueError("SEMI's sequence encoders always use time blocks (§3.2.3)")
    super().__init__(num_items, use_time_blocks=True, **kwargs)
    self.num_heads = int(num_heads)
    self.ff_dim = None if ff_dim is None else int(ff_dim)
    self.use_inter_domain = bool(use_inter_domain)
    self.attention_dropout = None if attention_dropout is None else float(attention_dropout)
    block = dict(num_heads=self.num_heads, ff_dim=self.ff_dim, dropout=self.block_dropout)
    for d in self.domains:  # attributes named per domain: checkpoint keys CCL can match
      setattr(self, f"{d}_encoder", MultiHeadAttentionBlock(name=f"{d}_encoder", **block))
    self.inter_block = (MultiHeadAttentionBlock(name="inter_domain", **block)
                        if self.use_inter_domain else None)
    for d in self.domains:
      name = f"target_attention_{_DOMAIN_LETTER[d]}"
      setattr(self, name, TargetAttention("dot", num_heads=self.num_heads, ff_dim=self.ff_dim,
                                          dropout=self.block_dropout, name=name))

  @property
  def block_dropout(self) -> float:
    """The attention blocks' dropout (`attention_dropout`, else `dropout`)."""
    return self.dropout if self.attention_dropout is None else self.attention_dropout

  def encoder(self, domain: str) -> MultiHeadAttentionBlock:
    """The intra-domain sequence encoder of `domain` (§3.2.3)."""
    return getattr(self, f"{domain}_encoder")

  def required_init_parts(self) -> Tuple[str, ...]:
    """What `--init_from=<CCL run>` must restore (§3.4: "we first initialize the parameters
    of two sequence encoders pre-trained by the CCL algorithm"): the item encoder and the
    shared time blocks (the encoders' inputs, §3.2.3) and each domain's attention block."""
    return ("item_encoder", "time_blocks") + tuple(f"{d}_encoder" for d in self.domains)

  def _target_attention(self, domain: str) -> TargetAttention:
    return getattr(self, f"target_attention_{_DOMAIN_LETTER[domain]}")

  def encode_user(self, features: Dict[str, tf.Tensor],
                  training: Optional[bool] = None) -> Dict[str, tf.Tensor]:
    intra, masks = [], []
    for d in self.domains:
      x, mask = self.domain_sequence(features, d)
      intra.append(self.encoder(d)(x, query_mask=mask, training=training))
      masks.append(mask)
    if self.inter_block is not None:
      joint = self.inter_block(tf.concat(intra, axis=1),
                               query_mask=tf.concat(masks, axis=1), training=training)
      inter = tf.split(joint, [t.shape[1] for t in intra], axis=1)
    else:
      inter = intra
    user = {}
    for d, rep, mask in zip(self.domains, inter, masks):
      user[f"{d}_inter"], user[f"{d}_mask"] = rep, mask
    return user

  def score(self, user: Dict[str, tf.Tensor], candidate_ids: tf.Tensor,
            training: Optional[bool] = None) -> tf.Tensor:
    """v_t^in = item features + block 0's time embedding attends over each domain (§3.4)."""
    return self.target_attention_logits(user, candidate_ids, self._target_attention, "inter",
                                        training=training)

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), "num_heads": self.num_heads, "ff_dim": self.ff_dim,
            "use_inter_domain": self.use_inter_domain,
            "attention_dropout": self.attention_dropout}


registry.register("semi", SEMI, "SEMI (w/o CCL unless --init_from a CCL run): both domains, "
                  "intra- and inter-domain attention, target attention", domains=("target",
                                                                                  "source"))
registry.register("semi_micro_video", SEMI, "SEMI-Micro-Video (Table 2): the target domain only",
                  domains=("target",))
registry.register("semi_product", SEMI, "SEMI-Product (Table 2): the source domain only",
                  domains=("source",))
