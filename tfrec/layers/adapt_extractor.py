"""ADAPT's feature extractor (§III-A): an item's visual feature v and textual feature t, the two
parts DUAL pre-trains (eq. 5-8) and ADEN sums with the time-block embedding (§III-C).

  v = E_v v^                  the store's visual vector projected by one matrix E_v shared by
                              both domains (no bias: "v = E_v v^")
  t = eq. 2-4 over the title  a storytelling (target-domain) item: self-attentive pooling of its
                              title's word embeddings (`SelfAttentivePooling`); a product
                              (source-domain) item: their average ("the title of the product is
                              composed by keywords")

Word embeddings are trained and shared by both domains. A token id above the vocabulary (a word
unseen in training, e.g. in the title of an item added at serving time) looks up one default
embedding, as the paper does; a title without a word gives t = 0.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

import numpy as np
import tensorflow as tf
import tf_keras as keras

from tfrec.data import schema
from tfrec.layers._utils import clone_initializer, distinct_items
from tfrec.layers.attentive_pooling import SelfAttentivePooling
from tfrec.layers.pooling import SequencePooling

PARTS = ("visual", "title")


@keras.utils.register_keras_serializable(package="tfrec")
class ContentExtractor(keras.layers.Layer):
  """Item ids -> (v, t), each <float>[..., dim] (module docstring).

  The store's visual, title and domain columns live in the layer as non-trainable weights
  (`item_visual`, `item_title`, `item_domain`), filled by `set_item_features(store)` after the
  layer is built (like `ItemEncoder`), so requests carry item ids only.

  Args:
    num_items: item ids in [0, num_items]; 0 = padding.
    dim: d of v and t.
    visual_dim: width of the store's visual vectors (needed with "visual").
    num_tokens: title vocabulary [1, num_tokens] (needed with "title"); row num_tokens + 1 of
      the word table is the default embedding of unseen words.
    parts: which of "visual", "title" to extract (ADAPT Table VI: V, T or V+T).
    embeddings_regularizer, kernel_regularizer: of the word table; of E_v and the pooling.

  Call args:
    ids: <int>[...] item ids (callers check their range).

  Returns:
    {"visual": <float>[..., dim], "title": <float>[..., dim]} for the chosen parts.
  """

  def __init__(self, num_items: int, dim: int, visual_dim: int = 0, num_tokens: int = 0,
               parts: Tuple[str, ...] = PARTS, embeddings_regularizer: Any = None,
               kernel_regularizer: Any = None, **kwargs):
    super().__init__(**kwargs)
    parts = tuple(parts)
    if not parts or set(parts) - set(PARTS):
      raise ValueError(f"parts must be a non-empty subset of {PARTS}, got {parts}")
    if "visual" in parts and visual_dim < 1:
      raise ValueError("the 'visual' part needs visual_dim >= 1 (this dataset has no visual "
                       "vectors: use parts=('title',))")
    if "title" in parts and num_tokens < 1:
      raise ValueError("the 'title' part needs num_tokens >= 1")
    self.num_items, self.dim = int(num_items), int(dim)
    self.visual_dim, self.num_tokens, self.parts = int(visual_dim), int(num_tokens), parts
    self.embeddings_regularizer = keras.regularizers.get(embeddings_regularizer)
    self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
    self.projection = (keras.layers.Dense(self.dim, use_bias=False, name="visual_projection",
                                          kernel_regularizer=self.kernel_regularizer)
                       if "visual" in parts else None)
    self.attentive = (SelfAttentivePooling(kernel_regularizer=self.kernel_regularizer,
                                           name="title_attention")
                      if "title" in parts else None)
    self.average = SequencePooling("mean", name="title_average")

  def build(self, input_shape: tf.TensorShape) -> None:
    rows = self.num_items + 1
    self.item_domain = self.add_weight("item_domain", shape=[rows], dtype=tf.int32,
                                       initializer="zeros", trainable=False)
    self.item_visual = self.item_title = self.word_embeddings = None
    if "visual" in self.parts:
      self.item_visual = self.add_weight("item_visual", shape=[rows, self.visual_dim],
                                         initializer="zeros", trainable=False)
      with tf.name_scope(self.projection.name):
        self.projection.build(tf.TensorShape([None, self.visual_dim]))
    if "title" in self.parts:
      self.item_title = self.add_weight("item_title", shape=[rows, schema.MAX_TITLE_LEN],
                                        dtype=tf.int32, initializer="zeros", trainable=False)
      self.word_embeddings = self.add_weight(
          "word_embeddings", shape=[self.num_tokens + 2, self.dim],
          initializer=clone_initializer(keras.initializers.get("glorot_uniform")),
          regularizer=self.embeddings_regularizer)
      with tf.name_scope(self.attentive.name):
        self.attentive.build(tf.TensorShape([None, schema.MAX_TITLE_LEN, self.dim]))
    super().build(input_shape)

  def set_item_features(self, store: Any) -> None:
    """Copies the item store's domain, visual and title columns into the layer."""
    if not self.built:
      raise RuntimeError("build the ContentExtractor (call it once) before set_item_features")
    if store.num_items != self.num_items:
      raise ValueError(f"item store has {store.num_items} items, the extractor "
                       f"{self.num_items}")
    self.item_domain.assign(np.asarray(store.domain).astype(np.int32))
    if self.item_visual is not None:
      if store.visual_dim != self.visual_dim:
        raise ValueError(f"item store visual_dim {store.visual_dim} != {self.visual_dim}")
      self.item_visual.assign(np.asarray(store.visual, np.float32))
    if self.item_title is not None:
      self.item_title.assign(np.asarray(store.title).astype(np.int32))

  def words(self, tokens: tf.Tensor) -> tf.Tensor:
    """<float>[..., L, dim] word embeddings; an id above the vocabulary: the default row."""
    tokens = tf.cast(tokens, tf.int32)
    unseen = tf.fill(tf.shape(tokens), self.num_tokens + 1)
    return tf.gather(self.word_embeddings, tf.where(tokens > self.num_tokens, unseen, tokens))

  def call(self, ids: tf.Tensor, training: Optional[bool] = None) -> Dict[str, tf.Tensor]:
    # Each distinct item of the request is extracted once and gathered back: a batch of
    # sequences repeats items (and padding) many times, and eq. 2-4 run per title word. Only
    # storytelling titles go through the attentive pooling; products take the average.
    # Inside `per_position_items` (FLOP counting) every position is extracted, with static
    # shapes: the same values.
    ids = tf.cast(ids, tf.int32)
    out_shape = tf.concat([tf.shape(ids), [self.dim]], axis=0)
    flat = tf.reshape(ids, [-1])
    distinct, where = tf.unique(flat) if distinct_items() else (flat, None)  # [U], [N]
    parts = {}
    if self.item_visual is not None:
      parts["visual"] = self.projection(tf.gather(self.item_visual, distinct))
    if self.item_title is not None:
      parts["title"] = self._titles(distinct, where is not None)
    return {name: tf.reshape(value if where is None else tf.gather(value, where), out_shape)
            for name, value in parts.items()}

  def _titles(self, ids: tf.Tensor, story_only: bool) -> tf.Tensor:
    """<float>[U, dim] t of items `ids` <int32>[U]: eq. 2-4 for storytelling items, the average
    of the word embeddings for products. `story_only`: eq. 2-4 run on the storytelling rows
    alone (a dynamic shape); else on every row, products' results discarded."""
    tokens = tf.gather(self.item_title, ids)                              # [U, L]
    words, real = self.words(tokens), tokens > 0                          # [U, L, dim], [U, L]
    pooled = self.average(words, mask=real)                               # products
    is_story = tf.gather(self.item_domain, ids) == schema.TARGET          # [U]
    if not story_only:
      return tf.where(is_story[:, None], self.attentive(words, real), pooled)
    story_at = tf.where(is_story)                                         # [S, 1]
    story = self.attentive(tf.gather_nd(words, story_at), tf.gather_nd(real, story_at))
    return tf.tensor_scatter_nd_update(pooled, story_at, story)          # eq. 2-4

  def compute_mask(self, inputs, mask=None):
    return None

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), "num_items": self.num_items, "dim": self.dim,
            "visual_dim": self.visual_dim, "num_tokens": self.num_tokens,
            "parts": list(self.parts),
            "embeddings_regularizer": keras.regularizers.serialize(self.embeddings_regularizer),
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer)}


@keras.utils.register_keras_serializable(package="tfrec")
class ContentItemEncoder(keras.layers.Layer):
  """ADEN's item encoder (ADAPT §III-C): f = v + t, the sum of a `ContentExtractor`'s parts
  (the time-block embedding is added by the model). It offers what ranking models and serving
  use of an item encoder (`ItemEncoder`): `call(ids)`, `encode_all()`, `lookup_table(table)`
  and `set_item_features(store)`; the extractor is shared, so `--init_from=<DUAL run>` restores
  it as the model's `extractor`.

  Args:
    extractor: the `ContentExtractor`.

  Call args:
    ids: <int>[...] item ids.

  Returns:
    <float>[..., dim].
  """

  def __init__(self, extractor: ContentExtractor, **kwargs):
    super().__init__(**kwargs)
    self.extractor = extractor
    self.num_items, self.dim = extractor.num_items, extractor.dim
    self._serving_table = None

  def call(self, ids: tf.Tensor) -> tf.Tensor:
    if self._serving_table is not None:
      return tf.cast(tf.gather(self._serving_table, tf.cast(ids, tf.int32)), self.compute_dtype)
    parts = self.extractor(ids)
    return tf.cast(tf.add_n([parts[p] for p in self.extractor.parts]), self.compute_dtype)

  def encode_all(self) -> tf.Tensor:
    """<float>[num_items + 1, dim] every item's f (row 0: padding)."""
    return self(tf.range(self.num_items + 1, dtype=tf.int32))

  def lookup_table(self, table: tf.Variable):
    """Inside, `call` gathers rows of `table` (serving; as `ItemEncoder.lookup_table`)."""
    return _TableScope(self, table)

  def set_item_features(self, store: Any) -> None:
    self.extractor.set_item_features(store)

  def compute_mask(self, inputs, mask=None):
    return None

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(),
            "extractor": keras.layers.serialize(self.extractor)}

  @classmethod
  def from_config(cls, config: Dict[str, Any]) -> "ContentItemEncoder":
    config = dict(config)
    config["extractor"] = keras.layers.deserialize(config["extractor"])
    return cls(**config)


class _TableScope:
  """The context of `ContentItemEncoder.lookup_table`."""

  def __init__(self, layer: ContentItemEncoder, table: tf.Variable):
    self.layer, self.table = layer, table

  def __enter__(self):
    object.__setattr__(self.layer, "_serving_table", self.table)

  def __exit__(self, *exc):
    object.__setattr__(self.layer, "_serving_table", None)
    return False
