"""YouTube DNN, retrieval version (Covington et al., RecSys 2016, §3): the query is an MLP of the
mean of the user's watched items; candidates are scored by a dot product and trained with a
softmax over sampled negatives (here: every replica's in-batch positives, log-q corrected).
COUPLE's and M5's baseline. One documented difference: the softmax's item vectors are the same
item encoder as the history's inputs (Covington et al. learn separate output embeddings)."""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import tensorflow as tf
import tf_keras as keras

from tfrec.layers.mlp import MLP
from tfrec.layers.pooling import SequencePooling
from tfrec.models import registry
from tfrec.models.retrieval import SEQ, RetrievalModel


@keras.utils.register_keras_serializable(package="tfrec")
class YouTubeDNN(RetrievalModel):
  """query = MLP(mean of the real behaviour items) -> [batch, dim].

  Args:
    mlp_units: hidden widths of the query MLP (a last layer of width `dim`, linear, is added).
    Others: `RetrievalModel`.
  """

  def __init__(self, num_items: int, mlp_units: Sequence[int] = (128,), **kwargs):
    super().__init__(num_items, **kwargs)
    self.mlp_units = tuple(int(u) for u in mlp_units)
    self.pooling = SequencePooling("mean", name="mean_pooling")
    self.query_mlp = MLP(list(self.mlp_units) + [self.dim], dropout=self.dropout,
                         linear_output=True, name="query_mlp")

  def encode_query(self, features: Dict[str, tf.Tensor],
                   training: Optional[bool] = None) -> tf.Tensor:
    mask = tf.cast(features["seq_mask"], tf.bool)
    history = self.item_encoder(features[SEQ]) * tf.cast(mask, self.compute_dtype)[..., None]
    return tf.cast(self.query_mlp(self.pooling(history, mask=mask), training=training),
                   tf.float32)

  def get_config(self):
    return {**super().get_config(), "mlp_units": list(self.mlp_units)}


registry.register("youtube_dnn", YouTubeDNN,
                  "YouTube DNN, retrieval version: MLP of the mean behaviour item, in-batch "
                  "softmax with log-q correction (matching records; COUPLE/M5 baseline)")
