"""DSSM for recommendation (Huang et al., CIKM 2013, as two-tower matching): a user MLP tower
over the user's profile and pooled behaviour, an item MLP tower over the item's features, the
cosine of the two (here: the dot product of L2-normalised vectors, scaled by 1 / temperature in
the softmax). COUPLE's and M5's baseline."""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import tensorflow as tf
import tf_keras as keras

from tfrec.layers.mlp import MLP
from tfrec.layers.pooling import SequencePooling
from tfrec.layers.user_embedding import embed_profile, profile_embeddings, profile_sizes
from tfrec.models import registry
from tfrec.models.retrieval import SEQ, RetrievalModel



@keras.utils.register_keras_serializable(package="tfrec")
class DSSM(RetrievalModel):
  """user = normalize(MLP_u([profile embeddings, mean behaviour item])),
  item = normalize(MLP_i(item features)).

  Args:
    tower_units: hidden widths of both towers (a last linear layer of width `dim` is added).
    user_feature_sizes: vocabulary of each user-profile feature (gender, age bucket,
      occupation, region), from the dataset's `dataset.json`.
    Others: `RetrievalModel`.
  """

  USES_USER_FEATURES = True  # the query tower reads the profile: `retrieve` requests carry it

  def __init__(self, num_items: int, tower_units: Sequence[int] = (128,),
               user_feature_sizes: Sequence[int] = (2, 7, 21, 11), **kwargs):
    super().__init__(num_items, **kwargs)
    self.tower_units = tuple(int(u) for u in tower_units)
    self.user_feature_sizes = profile_sizes(user_feature_sizes)
    self.profile = profile_embeddings(self.user_feature_sizes, self.dim)
    self.pooling = SequencePooling("mean", name="mean_pooling")
    self.user_tower = MLP(list(self.tower_units) + [self.dim], dropout=self.dropout,
                          linear_output=True, name="user_tower")
    self.item_tower = MLP(list(self.tower_units) + [self.dim], linear_output=True,
                          name="item_tower")

  def encode_query(self, features: Dict[str, tf.Tensor],
                   training: Optional[bool] = None) -> tf.Tensor:
    mask = tf.cast(features["seq_mask"], tf.bool)
    history = self.pooling(self.item_encoder(features[SEQ]), mask=mask)
    profile = embed_profile(self.profile, features["user_features"])
    x = self.user_tower(tf.concat(profile + [history], axis=-1), training=training)
    return tf.math.l2_normalize(tf.cast(x, tf.float32), axis=-1)

  def encode_items(self, item_ids: tf.Tensor, training: Optional[bool] = None) -> tf.Tensor:
    del training  # the same tower in training and serving
    x = self.item_tower(self.item_encoder(item_ids))
    return tf.math.l2_normalize(tf.cast(x, tf.float32), axis=-1)

  def get_config(self):
    return {**super().get_config(), "tower_units": list(self.tower_units),
            "user_feature_sizes": list(self.user_feature_sizes)}


registry.register("dssm", DSSM, "DSSM: user and item MLP towers, cosine similarity, in-batch "
                  "softmax (matching records; COUPLE/M5 baseline)", temperature=0.1)
