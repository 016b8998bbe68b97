"""DIN (Zhou et al., KDD 2018) as the SEMI/ADAPT baseline: the local activation unit weighs each
behaviour by its relevance to the candidate (DIN eq. 3; SEMI §4.2.1 (1), ADAPT §IV-B)."""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import tensorflow as tf
import tf_keras as keras

from tfrec.layers.target_attention import TargetAttention
from tfrec.models import registry
from tfrec.models.base import RankingModel


@keras.utils.register_keras_serializable(package="tfrec")
class DIN(RankingModel):
  """u(v_t) = sum_j a(e_j, v_t) e_j over real behaviours (DIN eq. 3, unnormalised weights);
  logit = MLP([u(v_t), v_t]). With both domains the histories are merged by time.

  Args:
    attention_units: hidden widths of the activation unit (DIN: 80, 40).
    **kwargs: see `RankingModel`.

  User state: {"history": <float>[batch, seq, dim], "mask": <bool>[batch, seq]}; the
  activation unit runs per candidate in `score` (it takes the candidate as input).
  """

  def __init__(self, num_items: int, attention_units: Sequence[int] = (80, 40), **kwargs):
    super().__init__(num_items, **kwargs)
    self.attention_units = tuple(int(u) for u in attention_units)
    self.attention = TargetAttention("din", din_units=self.attention_units, name="din_attention")

  def encode_user(self, features: Dict[str, tf.Tensor],
                  training: Optional[bool] = None) -> Dict[str, tf.Tensor]:
    history, mask = self.merged_sequence(features)
    return {"history": history, "mask": mask}

  def score(self, user: Dict[str, tf.Tensor], candidate_ids: tf.Tensor,
            training: Optional[bool] = None) -> tf.Tensor:
    cand = self.candidates(candidate_ids)
    interest = self.attention(cand, user["history"], user["mask"], training=training)
    return self.logits([interest, cand], training=training)

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), "attention_units": list(self.attention_units)}


registry.register("din", DIN, "DIN: activation-unit attention over the target-domain history")
