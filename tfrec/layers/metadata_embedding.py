"""M5's "w/ Raw Metadata" CG embedding (Zhao et al., KDD 2023, §5.3.1): "we replace the CG
embeddings with the concatenation of the representative meta features (show genres, brands,
texts) and feed them to the same layers in the CG channel".

  x(i)      = [E_cat[category(i)];  mean_{t in tags(i)} E_tag[t];  mean_{w in title(i)} E_tok[w]]
  E^CG(i)   = x(i) W                              W <[parts * dim, dim]>, no bias

The three tables are trained, each `dim` wide; the means leave the padding ids (0) out (an item
without tags or title words gets zeros there: `ItemEncoder`'s "tags" / "title" parts). Reading
choice, stated: the paper's concatenation is mapped linearly to the CG width so the same CG
layers (SIN [384, 384, 1], the indicator, SMoE) apply unchanged. A part whose vocabulary the
dataset lacks (size 0) is left out of x(i); at least one must remain.

The store's columns live in the layer (an `ItemEncoder` with combine="concat"), so a
checkpoint or SavedModel carries them, and `encode_features` gives an item known only by its
columns (an item added after training) its CG vector.
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, Tuple

import tensorflow as tf
import tf_keras as keras

from tfrec.layers.item_encoder import ItemEncoder

PARTS = ("category", "tags", "title")  # the concatenation's order


@keras.utils.register_keras_serializable(package="tfrec")
class MetadataEmbedding(keras.layers.Layer):
  """E^CG(i) from the item store's metadata (module docstring).

  Args:
    num_items: item ids are in [0, num_items]; 0 = padding.
    dim: width of each metadata embedding and of the output (M5's cg_dim).
    num_categories, num_tags, num_tokens: the dataset's category, tag and title-token
      vocabularies (ids in [0, size]; a size 0 leaves that part out).

  Call args:
    ids: <int>[...] item ids.

  Returns:
    <float32>[..., dim] (the compute dtype under mixed precision).

  Raises:
    ValueError: no vocabulary (every size 0).
  """

  def __init__(self, num_items: int, dim: int, num_categories: int = 0, num_tags: int = 0,
               num_tokens: int = 0, **kwargs):
    super().__init__(**kwargs)
    self.num_items, self.dim = int(num_items), int(dim)
    self.num_categories, self.num_tags = int(num_categories), int(num_tags)
    self.num_tokens = int(num_tokens)
    sizes = {"category": self.num_categories, "tags": self.num_tags, "title": self.num_tokens}
    self.parts: Tuple[str, ...] = tuple(p for p in PARTS if sizes[p] > 0)
    if not self.parts:
      raise ValueError("the raw-metadata CG embedding needs the item store's categories, tags "
                       "or titles: num_categories, num_tags and num_tokens are all 0")
    self.metadata = ItemEncoder(self.num_items, len(self.parts) * self.dim, self.parts,
                                num_categories=self.num_categories, num_tags=self.num_tags,
                                num_tokens=self.num_tokens, combine="concat", name="metadata")
    self.projection = keras.layers.Dense(self.dim, use_bias=False, name="projection")

  def call(self, ids: tf.Tensor) -> tf.Tensor:
    return self.projection(self.metadata(ids))

  def encode_features(self, columns: Mapping[str, Any]) -> tf.Tensor:
    """E^CG of items given by their columns ("category" <int>[...], "tags" <int>[...,
    MAX_TAGS], "title" <int>[..., MAX_TITLE_LEN], those of `parts`) -> <[..., dim]>."""
    if not self.built:
      self(tf.zeros([1], tf.int32))
    return self.projection(self.metadata.encode_features(dict(columns)))

  def set_item_features(self, store: Any) -> None:
    """Copies the store's category, tags and title columns in (checked against the
    vocabularies by `ItemEncoder.set_item_features`)."""
    if not self.built:
      self(tf.zeros([1], tf.int32))
    self.metadata.set_item_features(store)

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), "num_items": self.num_items, "dim": self.dim,
            "num_categories": self.num_categories, "num_tags": self.num_tags,
            "num_tokens": self.num_tokens}


__all__ = ["MetadataEmbedding", "PARTS"]
