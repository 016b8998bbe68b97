"""PDN, the Path-based Deep Network (Li et al., SIGIR 2021), M5 Table 2's baseline, in the
house's two-tower form: the user reaches a candidate t through 2-hop paths u -> j -> t over the
items j the user interacted with (the triggers), each path weighted by a Trigger Net (how much
j matters to u) times a Similarity Net (how related j and t are), and the paths summed.

What is implemented here (one mixed behaviour sequence per record):

  triggers j        the distinct items of the sequence (the newest occurrence of each; an item
                    seen twice is one trigger whose behaviour features say so)
  TrigNet           w_uj = softplus(MLP_T([e_u; e_j; b_uj])) > 0, with e_u the user's profile
                    embeddings, e_j the item encoder's vector of j and the behaviour features
                    b_uj = [embedding of the hours from the newest occurrence to the request
                    (one-hour blocks, `layers.time_block`); embedding of its domain;
                    log(1 + occurrences of j in the sequence)]
  SimNet            r_jt = <f(e_j), g(e_t)>, f and g two MLPs (a factorised similarity)
  2-hop paths       score(u, t) = sum_j w_uj r_jt = <sum_j w_uj f(e_j), g(e_t)>
  two towers        query = sum_j w_uj f(e_j)  (trigger-weighted sum of the triggers' SimNet
                    vectors), item tower = g(item encoder(t)); trained with the retrieval
                    core's losses (`negatives`), served by the house's index (`retrieve`, Faiss)

Because the similarity is a dot product, the sum over every 2-hop path is exactly one dot
product of the two towers: the path structure (trigger weights x item-to-item relevance) is kept
and the model retrieves through the same index as every other baseline.

What is NOT PDN, stated:
  * PDN's SimNet scores the PAIR (j, t) with one network over both items' features, not a
    factorised dot product; a pairwise SimNet cannot be served by an embedding index, so it is
    factorised here (and the path weights enter linearly: the sum of w_uj r_jt).
  * PDN retrieves through item-to-item paths: SimNet's scores build an i2i index offline, and at
    serving each trigger fetches its related items, whose path weights are summed per
    candidate. Here there is no i2i index; the summed paths are one query vector.
  * PDN's Direct Net (a one-hop u -> t path) and Bias Net (position / exposure bias of the
    training impressions) are left out: matching records carry no impression position, and a
    direct path would be another dot product added to the same query.
  * Training: the positives of matching records against the retrieval core's negatives
    (`negatives`; M5 trains every baseline with the softmax, §5.1.3).
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple

import tensorflow as tf
import tf_keras as keras

from tfrec.layers.mlp import MLP
from tfrec.layers.step_random import Dropout
from tfrec.layers.time_block import TimeBlockEmbedding
from tfrec.layers.user_embedding import embed_profile, profile_embeddings, profile_sizes
from tfrec.models import registry
from tfrec.models.retrieval import SEQ, RetrievalModel

NUM_DOMAINS = 2  # schema: 0 source, 1 target


def distinct_triggers(ids: tf.Tensor, mask: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
  """The newest occurrence of each distinct item of right-padded sequences, and its count.

  Args:
    ids: <int>[b, L] item ids, oldest first.
    mask: <bool>[b, L] True = real behaviour.

  Returns:
    (<bool>[b, L] True at the newest real occurrence of each item (the triggers);
     <int32>[b, L] at every real position, how often its item occurs in the sequence; 0 at
     padding).
  """
  mask = tf.cast(mask, tf.bool)
  same = tf.logical_and(tf.equal(ids[:, :, None], ids[:, None, :]),
                        tf.logical_and(mask[:, :, None], mask[:, None, :]))     # [b, L, L]
  count = tf.reduce_sum(tf.cast(same, tf.int32), axis=-1)
  steps = tf.shape(ids)[1]
  later = tf.range(steps)[None, :] > tf.range(steps)[:, None]                  # [L, L]: j > i
  seen_later = tf.reduce_any(tf.logical_and(same, later[None]), axis=-1)
  return tf.logical_and(mask, tf.logical_not(seen_later)), count


@keras.utils.register_keras_serializable(package="tfrec")
class PDN(RetrievalModel):
  """Trigger-weighted 2-hop paths with a factorised similarity (module docstring).

  Args:
    trigger_units: hidden widths of the Trigger Net (a linear unit is added).
    similarity_units: hidden widths of both SimNet towers f and g (a linear layer of width
      `dim` is added to each).
    user_feature_sizes: vocabulary of each profile feature (`dataset.json`, passed by
      `runs.build_model`).
    Others: `RetrievalModel` (`dropout`: in the Trigger Net and the history's SimNet tower).
  """

  USES_USER_FEATURES = True  # the Trigger Net reads the profile: `retrieve` requests carry it

  def __init__(self, num_items: int, trigger_units: Sequence[int] = (64,),
               similarity_units: Sequence[int] = (128,),
               user_feature_sizes: Sequence[int] = (2, 7, 21, 11), **kwargs):
    super().__init__(num_items, **kwargs)
    self.trigger_units = tuple(int(u) for u in trigger_units)
    self.similarity_units = tuple(int(u) for u in similarity_units)
    self.user_feature_sizes = profile_sizes(user_feature_sizes)
    self.profile = profile_embeddings(self.user_feature_sizes, self.dim)
    self.recency = TimeBlockEmbedding(self.dim, name="recency")
    self.domain = keras.layers.Embedding(NUM_DOMAINS, self.dim, name="domain")
    self.input_dropout = Dropout(self.dropout)
    self.trigger_net = MLP(list(self.trigger_units) + [1], dropout=self.dropout,
                           linear_output=True, name="trigger_net")
    self.similarity_history = MLP(list(self.similarity_units) + [self.dim],
                                  dropout=self.dropout, linear_output=True,
                                  name="similarity_history")
    self.similarity_item = MLP(list(self.similarity_units) + [self.dim], linear_output=True,
                               name="similarity_item")

  def trigger_weights(self, features: Dict[str, tf.Tensor], items: tf.Tensor,
                      training: Optional[bool] = None) -> tf.Tensor:
    """<float>[b, L] w_uj at each trigger's position, 0 elsewhere (`items`: e_j [b, L, d])."""
    ids = tf.cast(features[SEQ], tf.int64)
    mask = tf.cast(features["seq_mask"], tf.bool)
    triggers, count = distinct_triggers(ids, mask)
    steps = tf.shape(ids)[1]
    profile = tf.concat(embed_profile(self.profile, features["user_features"]),
                        axis=-1)                                            # [b, 4 d]
    profile = tf.tile(profile[:, None, :], [1, steps, 1])
    recency = self.recency(features["seq_timestamps"], features["timestamp"], mask)
    domains = tf.clip_by_value(tf.cast(features["seq_domain_ids"], tf.int32), 0, NUM_DOMAINS - 1)
    behaviour = [tf.cast(recency, items.dtype), tf.cast(self.domain(domains), items.dtype),
                 tf.math.log1p(tf.cast(count, items.dtype))[..., None]]
    x = tf.concat([tf.cast(profile, items.dtype), items] + behaviour, axis=-1)
    z = self.trigger_net(x, training=training)[..., 0]
    return tf.math.softplus(z) * tf.cast(triggers, z.dtype)

  def encode_query(self, features: Dict[str, tf.Tensor],
                   training: Optional[bool] = None) -> tf.Tensor:
    items = self.input_dropout(self.item_encoder(features[SEQ]), training=training)
    weights = self.trigger_weights(features, items, training=training)         # [b, L]
    paths = self.similarity_history(items, training=training)                  # f(e_j)
    query = tf.einsum("bl,bld->bd", tf.cast(weights, paths.dtype), paths)
    return tf.cast(query, tf.float32)

  def encode_items(self, item_ids: tf.Tensor, training: Optional[bool] = None) -> tf.Tensor:
    del training  # the same tower in training and serving
    return tf.cast(self.similarity_item(self.item_encoder(item_ids)), tf.float32)

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), "trigger_units": list(self.trigger_units),
            "similarity_units": list(self.similarity_units),
            "user_feature_sizes": list(self.user_feature_sizes)}


registry.register("pdn", PDN, "PDN as two towers: trigger-net weights x factorised similarity "
                  "net over 2-hop paths = one dot product; in-batch softmax (matching records; "
                  "M5 baseline)")
