"""YouTubeNet (Covington et al., RecSys 2016) as the SEMI/ADAPT baseline: a user is the average
of the item representations in the behaviour sequence (SEMI §4.2.1 (4), ADAPT §IV-B)."""

from __future__ import annotations

from typing import Dict, Optional

import tensorflow as tf
import tf_keras as keras

from tfrec.layers.pooling import SequencePooling
from tfrec.models import registry
from tfrec.models.base import RankingModel


@keras.utils.register_keras_serializable(package="tfrec")
class YouTubeNet(RankingModel):
  """u_d = mean of the real history items of each domain d; logit = MLP([u_d..., v_t]).

  Inputs and arguments: see `RankingModel`. Shapes: histories <int64>[batch, seq];
  user state {"user": <float>[batch, dim * len(domains)]}; logits <float32>[batch, n].
  """

  def __init__(self, num_items: int, **kwargs):
    super().__init__(num_items, **kwargs)
    self.pooling = SequencePooling("mean", name="mean_pooling")

  def encode_user(self, features: Dict[str, tf.Tensor],
                  training: Optional[bool] = None) -> Dict[str, tf.Tensor]:
    pooled = [self.pooling(*self.domain_sequence(features, d)) for d in self.domains]
    return {"user": tf.concat(pooled, axis=-1)}

  def score(self, user: Dict[str, tf.Tensor], candidate_ids: tf.Tensor,
            training: Optional[bool] = None) -> tf.Tensor:
    return self.logits([user["user"], self.candidates(candidate_ids)], training=training)


registry.register("youtubenet", YouTubeNet,
                  "YouTubeNet: mean-pooled target-domain history (single-domain baseline)")
