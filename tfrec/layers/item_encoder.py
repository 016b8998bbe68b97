"""Item input representation shared by every ranking model: a learnt id embedding, a category
embedding, the projected multi-modal feature of the item store (SEMI §3.2.3: "the multi-modal
item feature"; App. A.2: the baselines take the same multi-modal embeddings as input) and the
mean of the title's word embeddings (datasets without a visual feature, e.g. MovieLens), or the
store's frozen pre-extracted representation (SEMI §3.2.1: v^m, p^m from per-domain extractors,
used as they are; `tfrec.datasets.pre_extract`)."""

from __future__ import annotations

import contextlib
from typing import Any, Dict, Iterator, Optional, Sequence

import numpy as np
import tensorflow as tf
import tf_keras as keras

from tfrec.data import schema
from tfrec.layers._utils import clone_initializer

FEATURES = ("id", "category", "visual", "title", "pre_extracted", "tags")


@keras.utils.register_keras_serializable(package="tfrec")
class ItemEncoder(keras.layers.Layer):
  """Maps item ids to `dim`-wide vectors from the item store, inside the model.

  e(i) = [id]       E_id[i]
       + [category] E_cat[category(i)]
       + [visual]   visual(i) W_v + b_v       (the frozen multi-modal feature, projected)
       + [title]    mean over the title's tokens t of E_tok[t] (padding tokens 0 left out; an
                    item without a title word gets zeros; ADAPT's average pooling of titles)
       + [pre_extracted] the store's pre-extracted vector of i, as it is (no trainable
                    weight: SEMI §3.2.3's v_i^m; its width must be the part's width)
       + [tags]     mean over the item's semantic tags t of E_tag[t] (padding tags 0 left
                    out; COUPLE eq. 1: a never-seen item is encoded from its tags)

  With combine="concat" the parts are concatenated in the order of `features` instead, each
  dim / len(features) wide (THACIL §3.1: x = [f; c], features=("visual", "category")).

  The store's columns live in the layer as non-trainable weights (`item_category`,
  `item_visual`, `item_title`), so a checkpoint or SavedModel carries them and a serving request needs only
  item ids, as in SEMI's deployment (App. A.4). Fill them with `set_item_features(store)` after
  the layer is built; until then they are zeros. Row 0 is the padding item.

  Args:
    num_items: item ids are in [0, num_items]; 0 = padding.
    dim: output width d.
    features: which of "id", "category", "visual", "title", "pre_extracted", "tags" to sum
      (at least one).
    num_categories: category ids in [0, num_categories] (needed with "category").
    visual_dim: width of the store's visual vectors (needed with "visual"; must be > 0).
    num_tokens: title token ids in [0, num_tokens] (needed with "title"; must be > 0).
    embeddings_initializer: initialiser of the id, category and token tables.
    embeddings_regularizer: regulariser of the id, category and token tables.
    combine: "sum" (every part dim wide) or "concat" (module docstring).
    pre_extracted_dim: width of the store's pre-extracted vectors (needed with
      "pre_extracted": equal to dim, or dim / len(features) with combine="concat").
    num_tags: tag ids in [0, num_tags] (needed with "tags"; `dataset.json`'s num_tags).

  Call args:
    ids: <int>[...] item ids, any shape; callers check their range (see `check_item_ids`).

  Returns:
    <float32>[..., dim] (the layer's compute dtype under mixed precision).
  """

  def __init__(self,
               num_items: int,
               dim: int,
               features: Sequence[str] = ("id", "category", "visual"),
               num_categories: int = 0,
               visual_dim: int = 0,
               num_tokens: int = 0,
               embeddings_initializer: Any = "glorot_uniform",
               embeddings_regularizer: Any = None,
               combine: str = "sum",
               pre_extracted_dim: int = 0,
               num_tags: int = 0,
               **kwargs):
    super().__init__(**kwargs)
    features = tuple(features)
    if combine not in ("sum", "concat"):
      raise ValueError(f"combine must be 'sum' or 'concat', got {combine!r}")
    if combine == "concat" and dim % len(features):
      raise ValueError(f"combine='concat': dim {dim} is not a multiple of {len(features)} "
                       "features")
    self.combine = combine
    self.part_dim = int(dim) // len(features) if combine == "concat" else int(dim)
    unknown = set(features) - set(FEATURES)
    if not features or unknown:
      raise ValueError(f"features must be a non-empty subset of {FEATURES}, got {features}")
    if "category" in features and num_categories < 1:
      raise ValueError("the 'category' feature needs num_categories >= 1")
    if "visual" in features and visual_dim < 1:
      raise ValueError("the 'visual' feature needs visual_dim >= 1 (this dataset's item store "
                       "has no visual vectors: leave 'visual' out of the item features)")
    if "title" in features and num_tokens < 1:
      raise ValueError("the 'title' feature needs num_tokens >= 1 (this dataset has no title "
                       "vocabulary: leave 'title' out of the item features)")
    if "pre_extracted" in features and pre_extracted_dim != self.part_dim:
      raise ValueError(
          f"the 'pre_extracted' feature is used as it is: the store's vectors are "
          f"{pre_extracted_dim} wide (0: none; python -m tfrec.datasets.pre_extract "
          f"--dim={self.part_dim} writes them), the item encoder needs {self.part_dim}")
    if "tags" in features and num_tags < 1:
      raise ValueError("the 'tags' feature needs num_tags >= 1 (this dataset has no tag "
                       "vocabulary: leave 'tags' out of the item features)")
    self.pre_extracted_dim = int(pre_extracted_dim)
    self.num_tags = int(num_tags)
    self.num_tokens = int(num_tokens)
    self.num_items = int(num_items)
    self.dim = int(dim)
    self.features = features
    self.num_categories = int(num_categories)
    self.visual_dim = int(visual_dim)
    self.embeddings_initializer = keras.initializers.get(embeddings_initializer)
    self.embeddings_regularizer = keras.regularizers.get(embeddings_regularizer)
    self._projection = None
    self._serving_table = None  # see `lookup_table`
    self._serving_tags = None
    if "visual" in features:
      self._projection = keras.layers.Dense(self.part_dim, name="visual_projection")

  def build(self, input_shape: tf.TensorShape) -> None:
    rows = self.num_items + 1
    self.id_embeddings = self.category_embeddings = None
    self.item_category = self.item_visual = None
    self.token_embeddings = self.item_title = None
    self.item_pre_extracted = None
    self.tag_embeddings = self.item_tags = None
    if "id" in self.features:
      self.id_embeddings = self.add_weight(
          "id_embeddings", shape=[rows, self.part_dim],
          initializer=clone_initializer(self.embeddings_initializer),
          regularizer=self.embeddings_regularizer)
    if "category" in self.features:
      self.category_embeddings = self.add_weight(
          "category_embeddings", shape=[self.num_categories + 1, self.part_dim],
          initializer=clone_initializer(self.embeddings_initializer),
          regularizer=self.embeddings_regularizer)
      self.item_category = self.add_weight("item_category", shape=[rows], dtype=tf.int32,
                                           initializer="zeros", trainable=False)
    if "visual" in self.features:
      self.item_visual = self.add_weight("item_visual", shape=[rows, self.visual_dim],
                                         dtype=tf.float32, initializer="zeros", trainable=False)
      with tf.name_scope(self._projection.name):
        self._projection.build(tf.TensorShape([None, self.visual_dim]))
    if "title" in self.features:
      self.token_embeddings, self.item_title = self._bag_tables(
          "token_embeddings", self.num_tokens, "item_title", schema.MAX_TITLE_LEN)
    if "tags" in self.features:
      self.tag_embeddings, self.item_tags = self._bag_tables(
          "tag_embeddings", self.num_tags, "item_tags", schema.MAX_TAGS)
    if "pre_extracted" in self.features:
      self.item_pre_extracted = self.add_weight(
          "item_pre_extracted", shape=[rows, self.pre_extracted_dim], dtype=tf.float32,
          initializer="zeros", trainable=False)
    super().build(input_shape)

  def _bag_tables(self, embeddings: str, vocab: int, column: str, width: int):
    """A bag-of-ids feature's weights (title words, tags): the trained table <[vocab + 1,
    part_dim]> and the store's id column <int32>[num_items + 1, width], non-trainable."""
    table = self.add_weight(embeddings, shape=[vocab + 1, self.part_dim],
                            initializer=clone_initializer(self.embeddings_initializer),
                            regularizer=self.embeddings_regularizer)
    ids = self.add_weight(column, shape=[self.num_items + 1, width], dtype=tf.int32,
                          initializer="zeros", trainable=False)
    return table, ids

  def set_item_features(self, store: Any) -> None:
    """Copies the item store's columns into the layer (an `ItemStore`, built layer)."""
    if not self.built:
      raise RuntimeError("build the ItemEncoder (call it once) before set_item_features")
    if store.num_items != self.num_items:
      raise ValueError(f"item store has {store.num_items} items, the encoder {self.num_items}")
    if self.item_category is not None:
      if int(np.max(store.category)) > self.num_categories:
        raise ValueError(f"item store has category {int(np.max(store.category))} > "
                         f"num_categories {self.num_categories}")
      self.item_category.assign(store.category.astype(np.int32))
    if self.item_visual is not None:
      if store.visual_dim != self.visual_dim:
        raise ValueError(f"item store visual_dim {store.visual_dim} != {self.visual_dim}")
      self.item_visual.assign(store.visual.astype(np.float32))
    if self.item_title is not None:
      title = np.asarray(store.title)
      if title.shape[1:] != (schema.MAX_TITLE_LEN,):
        raise ValueError(f"item store titles are {title.shape[1:]} wide, not "
                         f"{schema.MAX_TITLE_LEN}")
      if title.size and int(title.max()) > self.num_tokens:
        raise ValueError(f"item store has title token {int(title.max())} > num_tokens "
                         f"{self.num_tokens}")
      self.item_title.assign(title.astype(np.int32))
    if self.item_tags is not None:
      tags = np.asarray(store.tags)
      if tags.size and int(tags.max()) > self.num_tags:
        raise ValueError(f"item store has tag {int(tags.max())} > num_tags {self.num_tags}")
      self.item_tags.assign(tags.astype(np.int32))
    if self.item_pre_extracted is not None:
      if store.pre_extracted_dim != self.pre_extracted_dim:
        raise ValueError(f"item store pre-extracted vectors are {store.pre_extracted_dim} "
                         f"wide, the encoder's {self.pre_extracted_dim}")
      self.item_pre_extracted.assign(store.pre_extracted.astype(np.float32))

  def encode_all(self) -> tf.Tensor:
    """<compute dtype>[num_items + 1, dim]: every item's encoding, row i = item i (0: padding)."""
    return self._encode(tf.range(self.num_items + 1, dtype=tf.int32))

  @contextlib.contextmanager
  def lookup_table(self, table: tf.Variable, tags: Optional[tf.Variable] = None
                   ) -> Iterator[None]:
    """Inside, `call(ids)` gathers rows of `table` instead of computing them, and
    `stored_tags(ids)` rows of `tags` (when given) instead of the store's column.

    Serving: the encoding of an item depends on its id alone, so an exported model can hold
    `encode_all()` once and skip the per-request gathers of the store's columns and the
    visual projection (`tfrec.export`). An export that grows (`tfrec.serving.add_items`) grows
    `tags` with `table`, so a query tower that reads its history's tags reads an added item's
    too. Neither is tracked by this layer.
    """
    object.__setattr__(self, "_serving_table", table)
    object.__setattr__(self, "_serving_tags", tags)
    try:
      yield
    finally:
      object.__setattr__(self, "_serving_table", None)
      object.__setattr__(self, "_serving_tags", None)

  def stored_tags(self, ids: tf.Tensor) -> tf.Tensor:
    """<int32>[..., MAX_TAGS] the tags of items `ids` <int>[...] (0 = padding tag): what a query
    tower that reads its history's tags looks up (COUPLE's eq. 5, DeepCoNN, ICAN). Needs the
    "tags" feature.

    Inside `lookup_table` with a `tags` table (serving) they come from it, items added after
    training included. With a serving item table but no tags table, an id above num_items
    (an added item, whose tags the store's column lacks) fails with an InvalidArgumentError
    saying so, never a silent row of zeros (a GPU's out-of-range gather).
    """
    if "tags" not in self.features:
      raise ValueError(f"stored_tags needs the 'tags' item feature; this encoder has "
                       f"{list(self.features)}")
    if not self.built:  # the column is a weight of this layer: build it as a call would
      self(tf.zeros([1], tf.int32))
    ids = tf.cast(ids, tf.int32)
    if self._serving_tags is not None:
      return tf.gather(self._serving_tags, ids)
    if self._serving_table is not None:
      added = ids > self.num_items
      check = tf.debugging.Assert(
          tf.logical_not(tf.reduce_any(added)),
          [f"seq_item_ids: this model's query tower reads each history item's tags from its "
           f"item store (ids 1..{self.num_items}); these items were added to the export after "
           "training (tfrec.serving.add_items) and can be retrieved but not sent in a "
           "request's history:", tf.boolean_mask(ids, added)[:10]], name="check_stored_tags")
      with tf.control_dependencies([check]):
        ids = tf.identity(ids)
    return tf.gather(self.item_tags, ids)

  def call(self, ids: tf.Tensor) -> tf.Tensor:
    ids = tf.cast(ids, tf.int32)
    if self._serving_table is not None:
      return tf.cast(tf.gather(self._serving_table, ids), self.compute_dtype)
    return self._encode(ids)

  def _encode(self, ids: tf.Tensor) -> tf.Tensor:
    columns = {}
    if self.item_category is not None:
      columns["category"] = tf.gather(self.item_category, ids)
    if self.item_visual is not None:
      columns["visual"] = tf.gather(self.item_visual, ids)
    if self.item_title is not None:
      columns["title"] = tf.gather(self.item_title, ids)
    if self.item_pre_extracted is not None:
      columns["pre_extracted"] = tf.gather(self.item_pre_extracted, ids)
    if self.item_tags is not None:
      columns["tags"] = tf.gather(self.item_tags, ids)
    return self.encode_features(columns, ids if self.id_embeddings is not None else None)

  def encode_features(self, columns: Dict[str, Any], ids: Any = None) -> tf.Tensor:
    """The encoding of items given by their feature columns (not looked up by id): what
    `call` computes for a known item, and what a new item gets without retraining
    (`tfrec.serving.add_items`).

    Args:
      columns: per feature of this encoder except "id": "category" <int>[...], "visual"
        <float>[..., visual_dim], "title" <int>[..., MAX_TITLE_LEN] (0 = padding token),
        "pre_extracted" <float>[..., pre_extracted_dim], "tags" <int>[..., MAX_TAGS] (0 =
        padding tag).
      ids: <int>[...] item ids, needed only with the "id" feature.

    Returns:
      <compute dtype>[..., dim].
    """
    parts = {}
    if self.id_embeddings is not None:
      if ids is None:
        raise ValueError("this item encoder has an id embedding: items need their ids")
      parts["id"] = tf.gather(self.id_embeddings, tf.cast(ids, tf.int32))
    if self.category_embeddings is not None:
      parts["category"] = tf.gather(self.category_embeddings,
                                    tf.cast(columns["category"], tf.int32))
    if self.item_visual is not None:
      parts["visual"] = self._projection(tf.cast(columns["visual"], self.compute_dtype))
    if self.item_title is not None:
      parts["title"] = _mean_of_real(self.token_embeddings, columns["title"])
    if self.item_tags is not None:  # COUPLE eq. 1
      parts["tags"] = _mean_of_real(self.tag_embeddings, columns["tags"])
    if self.item_pre_extracted is not None:
      if "pre_extracted" not in columns:
        raise ValueError("this item encoder reads pre-extracted vectors: a new item needs its "
                         "'pre_extracted' column")
      parts["pre_extracted"] = tf.cast(columns["pre_extracted"], self.compute_dtype)
    if self.combine == "concat":
      return tf.concat([tf.cast(parts[f], self.compute_dtype) for f in self.features], axis=-1)
    parts = [parts[f] for f in FEATURES if f in parts]  # the sum's fixed order.
    out = parts[0]
    for p in parts[1:]:
      out = out + tf.cast(p, out.dtype)
    return tf.cast(out, self.compute_dtype)

  def compute_mask(self, inputs, mask=None):
    return None

  def get_config(self) -> Dict[str, Any]:
    config = super().get_config()
    config.update(
        num_items=self.num_items,
        dim=self.dim,
        features=list(self.features),
        num_categories=self.num_categories,
        visual_dim=self.visual_dim,
        num_tokens=self.num_tokens,
        embeddings_initializer=keras.initializers.serialize(self.embeddings_initializer),
        embeddings_regularizer=keras.regularizers.serialize(self.embeddings_regularizer),
        combine=self.combine,
        pre_extracted_dim=self.pre_extracted_dim,
        num_tags=self.num_tags)
    return config


def _mean_of_real(table: tf.Tensor, ids: Any) -> tf.Tensor:
  """Mean over the last axis's real ids (> 0) of `table`'s rows: <int>[..., L] ->
  <float>[..., width]; zeros where a row has none (a title without words, an item without
  tags)."""
  ids = tf.cast(ids, tf.int32)
  rows = tf.gather(table, ids)                                            # [..., L, width]
  real = tf.cast(ids > 0, rows.dtype)[..., None]
  return tf.reduce_sum(rows * real, axis=-2) / tf.maximum(tf.reduce_sum(real, axis=-2), 1.0)


def check_item_ids(ids: tf.Tensor, num_items: int, name: str, allow_padding: bool) -> tf.Tensor:
  """Asserts `ids` are in [low, num_items] (low = 0 with padding, else 1) before any gather.

  On GPU an out-of-range `tf.gather` returns zeros instead of failing, so serving code checks
  ids first. Returns `ids` with the check as a control dependency.
  """
  ids = tf.convert_to_tensor(ids)
  low = 0 if allow_padding else 1
  ok = tf.reduce_all((ids >= low) & (ids <= num_items))
  bad = tf.boolean_mask(ids, (ids < low) | (ids > num_items))
  assert_op = tf.debugging.Assert(
      ok, [f"{name}: item ids must be in [{low}, {num_items}]; unknown ids:", bad[:10]],
      name=f"check_{name}")
  with tf.control_dependencies([assert_op]):
    return tf.identity(ids)


__all__ = ["ItemEncoder", "check_item_ids", "FEATURES"]
