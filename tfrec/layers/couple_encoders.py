"""COUPLE's encoders (§3.2.1-3.2.2): items from their semantic tags (eq. 1), weighted
aggregation WA (eq. 3-4, also eq. 11) and the tag-level frequency encoder (eq. 5).

  e_i   = (1/n) sum_k e_{t,k} (+ E_dom[domain(i)] in training only)      eq. 1: a never-seen item
                                                                        is encoded from its tags
  e_m   = (1/m) sum_k e_k,  d_k = e_k^T M e_m,  a = softmax(d),         eq. 4: WA over m vectors
  WA    = sum_k a_k e_k
  h_i   = tanh(W_w e_{t,i} + b_w),  a_i = softmax_i(e^(h) . h_i),       eq. 5: over the n x l
  e^(c) = sum_i a_i e_{t,i}                                             tags of the history (a
                                                                        tag seen twice weighs
                                                                        twice)

Shapes are stated per layer; masks are <bool> with True = a real entry (padding tags, padded
history positions: never weighted).
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np
import tensorflow as tf
import tf_keras as keras

from tfrec.data import schema
from tfrec.layers._utils import clone_initializer
from tfrec.layers.attention import masked_softmax


@keras.utils.register_keras_serializable(package="tfrec")
class TagItemEncoder(keras.layers.Layer):
  """Eq. 1: an item is the mean of its tags' embeddings; in training a domain embedding is
  added (COUPLE follows BERT's segment embedding; inference and serving use the tags alone).

  The store's tags and domains live in the layer as non-trainable tables (`item_tags`
  <int32>[num_items + 1, MAX_TAGS], `item_domain` <int32>[num_items + 1]), filled by
  `set_item_features(store)`; row 0 is the padding item (zeros). An item without a real tag
  encodes as zeros (plus its domain embedding in training).

  Args:
    num_items: item ids in [0, num_items]; 0 = padding.
    num_tags: tag ids in [1, num_tags]; 0 = padding.
    dim: d.
    num_domains: Q, rows of the domain embedding (COUPLE: the channels; here 2: source, target).
    embeddings_initializer: of the tag and domain tables.

  Call args:
    ids: <int>[...] item ids. training: adds the domain embedding.

  Returns:
    <float>[..., dim].
  """

  def __init__(self, num_items: int, num_tags: int, dim: int, num_domains: int = 2,
               embeddings_initializer: Any = "glorot_uniform", **kwargs):
    super().__init__(**kwargs)
    if num_tags < 1 or dim < 1 or num_domains < 1:
      raise ValueError(f"TagItemEncoder needs num_tags, dim, num_domains >= 1, got "
                       f"{num_tags}, {dim}, {num_domains}")
    self.num_items, self.num_tags, self.dim = int(num_items), int(num_tags), int(dim)
    self.num_domains = int(num_domains)
    self.embeddings_initializer = keras.initializers.get(embeddings_initializer)

  def build(self, input_shape: tf.TensorShape) -> None:
    rows = self.num_items + 1
    self.tag_embeddings = self.add_weight(
        "tag_embeddings", shape=[self.num_tags + 1, self.dim],
        initializer=clone_initializer(self.embeddings_initializer))
    self.domain_embeddings = self.add_weight(
        "domain_embeddings", shape=[self.num_domains, self.dim],
        initializer=clone_initializer(self.embeddings_initializer))
    self.item_tags = self.add_weight("item_tags", shape=[rows, schema.MAX_TAGS],
                                     dtype=tf.int32, initializer="zeros", trainable=False)
    self.item_domain = self.add_weight("item_domain", shape=[rows], dtype=tf.int32,
                                       initializer="zeros", trainable=False)
    super().build(input_shape)

  def set_item_features(self, store: Any) -> None:
    """Copies the store's tags and domains (an `ItemStore`; the layer built)."""
    if not self.built:
      raise RuntimeError("build the TagItemEncoder (call it once) before set_item_features")
    if store.num_items != self.num_items:
      raise ValueError(f"item store has {store.num_items} items, the encoder {self.num_items}")
    tags = np.asarray(store.tags)
    if tags.size and int(tags.max()) > self.num_tags:
      raise ValueError(f"item store has tag {int(tags.max())} > num_tags {self.num_tags}")
    if int(np.max(store.domain)) >= self.num_domains:
      raise ValueError(f"item store has domain {int(np.max(store.domain))} >= num_domains "
                       f"{self.num_domains}")
    self.item_tags.assign(tags.astype(np.int32))
    self.item_domain.assign(np.asarray(store.domain).astype(np.int32))

  def encode_tags(self, tags: Any, domains: Any = None,
                  training: Optional[bool] = None) -> tf.Tensor:
    """Eq. 1 from the tags themselves (a new item, no retraining): <int>[..., MAX_TAGS] tags
    (0-padded) and, in training, <int>[...] domains -> <float>[..., dim]."""
    tags = tf.cast(tags, tf.int32)
    emb = tf.gather(self.tag_embeddings, tags)                                # [..., n, d]
    real = tf.cast(tags > 0, emb.dtype)[..., None]
    out = tf.reduce_sum(emb * real, axis=-2) / tf.maximum(tf.reduce_sum(real, axis=-2), 1.0)
    if training and domains is not None:
      out = out + tf.gather(self.domain_embeddings, tf.cast(domains, tf.int32))
    return tf.cast(out, self.compute_dtype)

  def call(self, ids: tf.Tensor, training: Optional[bool] = None) -> tf.Tensor:
    ids = tf.cast(ids, tf.int32)
    return self.encode_tags(tf.gather(self.item_tags, ids), tf.gather(self.item_domain, ids),
                            training=training)

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), "num_items": self.num_items, "num_tags": self.num_tags,
            "dim": self.dim, "num_domains": self.num_domains,
            "embeddings_initializer": keras.initializers.serialize(self.embeddings_initializer)}


@keras.utils.register_keras_serializable(package="tfrec")
class WeightedAggregation(keras.layers.Layer):
  """WA of eq. 3-4 (and eq. 11): m vectors weighted by their bilinear agreement with their mean.

  Args:
    dim: d (M is d x d).

  Call args:
    vectors: <float>[batch, m, dim]. mask: optional <bool>[batch, m] (masked vectors take no
      weight and leave the mean).

  Returns:
    <float>[batch, dim].
  """

  def __init__(self, dim: int, **kwargs):
    super().__init__(**kwargs)
    self.dim = int(dim)

  def build(self, input_shape: tf.TensorShape) -> None:
    self.m = self.add_weight("m", shape=[self.dim, self.dim], initializer="glorot_uniform")
    super().build(input_shape)

  def call(self, vectors: tf.Tensor, mask: Optional[tf.Tensor] = None) -> tf.Tensor:
    x = tf.cast(vectors, self.compute_dtype)
    if mask is None:
      mean = tf.reduce_mean(x, axis=1)
    else:
      real = tf.cast(mask, x.dtype)[..., None]
      mean = tf.reduce_sum(x * real, axis=1) / tf.maximum(tf.reduce_sum(real, axis=1), 1.0)
    d = tf.einsum("bkd,de,be->bk", x, tf.cast(self.m, x.dtype), mean)         # e_k^T M e_m
    a = masked_softmax(d, mask)
    return tf.einsum("bk,bkd->bd", a, x)

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), "dim": self.dim}


@keras.utils.register_keras_serializable(package="tfrec")
class FrequencyEncoder(keras.layers.Layer):
  """Eq. 5's cross-layer attention of the user's history representation over every tag of the
  history (the n x l tag embeddings), so a tag that recurs is weighted once per occurrence.

  Args:
    dim: d (W_w is d x d).

  Call args:
    tags: <float>[batch, T, dim] the history's tag embeddings (T = n x l). user: <float>[batch,
      dim] e^(h). mask: optional <bool>[batch, T].

  Returns:
    <float>[batch, dim] e^(c) (zeros for a row without a real tag).
  """

  def __init__(self, dim: int, **kwargs):
    super().__init__(**kwargs)
    self.dim = int(dim)
    self.hidden = keras.layers.Dense(self.dim, activation="tanh", name="hidden")

  def build(self, input_shape: tf.TensorShape) -> None:
    with tf.name_scope(self.hidden.name):
      self.hidden.build(tf.TensorShape([None, self.dim]))
    super().build(input_shape)

  def call(self, tags: tf.Tensor, user: tf.Tensor,
           mask: Optional[tf.Tensor] = None) -> tf.Tensor:
    h = self.hidden(tags)                                                     # [b, T, d]
    scores = tf.einsum("btd,bd->bt", h, tf.cast(user, h.dtype))
    a = masked_softmax(scores, mask)
    return tf.einsum("bt,btd->bd", a, tf.cast(tags, h.dtype))

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), "dim": self.dim}


__all__ = ["FrequencyEncoder", "TagItemEncoder", "WeightedAggregation"]
