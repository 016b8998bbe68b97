"""GRU4Rec (Hidasi et al., ICLR 2016) as a retrieval baseline: a GRU reads the behaviour sequence
and its last hidden state is the query, scored against the item tower by a dot product. Trained
here with the retrieval core's in-batch softmax (the paper's session-parallel mini-batches with
in-batch negatives are the same idea); COUPLE's and M5's baseline."""

from __future__ import annotations

from typing import Dict, Optional

import tensorflow as tf
import tf_keras as keras

from tfrec.layers.step_random import Dropout
from tfrec.models import registry
from tfrec.models.retrieval import SEQ, RetrievalModel


@keras.utils.register_keras_serializable(package="tfrec")
class GRU4Rec(RetrievalModel):
  """query = W h_L, h = GRU(item encodings of the real behaviours), L = the last real one.

  Args:
    hidden: GRU width (the paper: 100).
    Others: `RetrievalModel`.
  """

  def __init__(self, num_items: int, hidden: int = 100, **kwargs):
    super().__init__(num_items, **kwargs)
    self.hidden = int(hidden)
    self.gru = keras.layers.GRU(self.hidden, name="gru")
    self.dropout_layer = Dropout(self.dropout)  # in-step seeds: exact resume
    self.output_layer = keras.layers.Dense(self.dim, name="query")

  def encode_query(self, features: Dict[str, tf.Tensor],
                   training: Optional[bool] = None) -> tf.Tensor:
    mask = tf.cast(features["seq_mask"], tf.bool)
    # Sequences are right-padded, oldest first: with the mask the GRU stops at the last real
    # item (a row without any keeps the zero initial state).
    h = self.gru(self.item_encoder(features[SEQ]), mask=mask, training=training)
    h = self.dropout_layer(h, training=training)
    return tf.cast(self.output_layer(h), tf.float32)

  def get_config(self):
    return {**super().get_config(), "hidden": self.hidden}


registry.register("gru4rec", GRU4Rec, "GRU4Rec: a GRU over the behaviour sequence, in-batch "
                  "softmax (matching records; COUPLE/M5 baseline)")
