"""DeepCoNN's convolutional tower (Zheng, Noroozi & Yu, WSDM 2017) over tag sequences, as COUPLE
runs it in Table 4 ("two parallel convolutional neural networks" fed "a sequence of items
represented by tag features"), and the item encoder whose items are that tower of their tags.

  x_1..x_m  the embeddings of the m real tags, moved to the front in their order: a document of
            tags (padding tags and padded history positions leave it, so what they hold and how
            long the padding is change nothing)
  z_j       = ReLU(b + sum_{s<k} x_{j+s} K_s)    one per real start j, n_f filters of width k;
            a window that runs past the last real tag reads zeros there (a zero-padded document)
  o         = max_j z_j                           max pooling over time (ReLU >= 0, so masked
                                                  positions, set to 0, never win the max)
  y         = W o + b_o                           the fully connected layer, linear: the towers
                                                  meet in a dot product, not in DeepCoNN's FM
  A row without a real tag gives zeros (not the bias).

`TagCNNItemEncoder` is an `ItemEncoder` (feature "tags") whose `encode_features` is this tower
over the item's own tags instead of their mean, so `encode_all`, `lookup_table` (the serving
table), `set_item_features` and `tfrec.serving.add_items` (a new item from its tags) work as for
every item encoder.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import tensorflow as tf
import tf_keras as keras

from tfrec.data import schema
from tfrec.layers._utils import clone_initializer
from tfrec.layers.item_encoder import ItemEncoder
from tfrec.layers.step_random import Dropout


@keras.utils.register_keras_serializable(package="tfrec")
class TagCNN(keras.layers.Layer):
  """One DeepCoNN tower over a masked sequence of tag embeddings (module docstring).

  Args:
    dim: output width.
    num_filters: n_f convolution filters (DeepCoNN: 100).
    kernel_width: k, the window in tags (DeepCoNN: 3).
    dropout: rate on the pooled features o, in training (`step_random.Dropout`).
    kernel_initializer: initialiser of the convolution and dense kernels.

  Call args:
    x: <float>[..., n, e] tag embeddings.
    mask: <bool>[..., n], True = a real tag.
    training: dropout switch.

  Returns:
    <float>[..., dim] (zeros where a row has no real tag).
  """

  def __init__(self, dim: int, num_filters: int = 100, kernel_width: int = 3,
               dropout: float = 0.0, kernel_initializer: Any = "glorot_uniform", **kwargs):
    super().__init__(**kwargs)
    if dim < 1 or num_filters < 1 or kernel_width < 1:
      raise ValueError(f"dim, num_filters and kernel_width must be >= 1, got {dim}, "
                       f"{num_filters}, {kernel_width}")
    if not 0.0 <= dropout < 1.0:
      raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    self.dim, self.num_filters = int(dim), int(num_filters)
    self.kernel_width, self.dropout = int(kernel_width), float(dropout)
    self.kernel_initializer = keras.initializers.get(kernel_initializer)
    self.output_dense = keras.layers.Dense(
        self.dim, kernel_initializer=clone_initializer(self.kernel_initializer), name="output")
    self._dropout = Dropout(self.dropout) if self.dropout else None

  def build(self, input_shape: tf.TensorShape) -> None:
    width = tf.TensorShape(input_shape)[-1]
    if width is None:
      raise ValueError("TagCNN needs a known embedding width")
    self.kernel = self.add_weight(
        "kernel", shape=[self.kernel_width, int(width), self.num_filters],
        initializer=clone_initializer(self.kernel_initializer))
    self.bias = self.add_weight("bias", shape=[self.num_filters], initializer="zeros")
    with tf.name_scope(self.output_dense.name):
      self.output_dense.build(tf.TensorShape([None, self.num_filters]))
    super().build(input_shape)

  def call(self, x: tf.Tensor, mask: tf.Tensor, training: Optional[bool] = None) -> tf.Tensor:
    x = tf.cast(x, self.compute_dtype)
    lead_shape, lead = x.shape[:-2], tf.shape(x)[:-2]
    n = tf.shape(x)[-2]
    x = tf.reshape(x, [-1, n, x.shape[-1]])
    mask = tf.reshape(tf.cast(mask, tf.bool), [-1, n])
    # The real tags to the front in their order (a stable sort), then zeros.
    order = tf.argsort(tf.cast(tf.logical_not(mask), tf.int32), axis=-1, stable=True)
    real = tf.cast(tf.gather(mask, order, batch_dims=1), x.dtype)             # [rows, n]
    x = tf.gather(x, order, batch_dims=1) * real[..., None]
    x = tf.pad(x, [[0, 0], [0, self.kernel_width - 1], [0, 0]])
    z = tf.nn.relu(tf.nn.conv1d(x, self.kernel, stride=1, padding="VALID") + self.bias)
    pooled = tf.reduce_max(z * real[..., None], axis=1)                       # [rows, n_f]
    if self._dropout is not None:
      pooled = self._dropout(pooled, training=training)
    y = self.output_dense(pooled) * tf.reduce_max(real, axis=1, keepdims=True)
    out = tf.reshape(y, tf.concat([lead, [self.dim]], axis=0))
    out.set_shape(lead_shape.concatenate([self.dim]))
    return out

  def compute_mask(self, inputs, mask=None):
    return None

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), "dim": self.dim, "num_filters": self.num_filters,
            "kernel_width": self.kernel_width, "dropout": self.dropout,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer)}


@keras.utils.register_keras_serializable(package="tfrec")
class TagCNNItemEncoder(ItemEncoder):
  """Items as DeepCoNN's item tower of their tags: e(i) = TagCNN(E_tag[tags(i)]) (module
  docstring); no id embedding, so a never-seen item is encoded from its tags alone.

  Args:
    num_items, dim, num_tags: as `ItemEncoder` (features must be ("tags",)).
    num_filters, kernel_width: of the item tower's `TagCNN`.
    **kwargs: the other `ItemEncoder` arguments (embeddings_initializer, ...).

  Call args:
    ids: <int>[...] item ids.

  Returns:
    <float32>[..., dim] (the layer's compute dtype under mixed precision).
  """

  def __init__(self, num_items: int, dim: int, features: Sequence[str] = ("tags",),
               num_tags: int = 0, num_filters: int = 100, kernel_width: int = 3, **kwargs):
    if tuple(features) != ("tags",):
      raise ValueError(f"TagCNNItemEncoder encodes items from their tags alone: features must "
                       f"be ['tags'], got {list(features)}")
    super().__init__(num_items, dim, features, num_tags=num_tags, **kwargs)
    self.num_filters, self.kernel_width = int(num_filters), int(kernel_width)
    self.cnn = TagCNN(self.dim, self.num_filters, self.kernel_width, name="item_cnn")

  def build(self, input_shape: tf.TensorShape) -> None:
    super().build(input_shape)
    with tf.name_scope(self.cnn.name):
      self.cnn.build(tf.TensorShape([None, schema.MAX_TAGS, self.part_dim]))

  def encode_features(self, columns: Dict[str, Any], ids: Any = None) -> tf.Tensor:
    """<compute dtype>[..., dim] from columns["tags"] <int>[..., MAX_TAGS] (0 = padding tag):
    what `call` computes for a stored item and what a new item gets (`serving.add_items`)."""
    del ids  # no id embedding
    if "tags" not in columns:
      raise ValueError("this item encoder reads the items' tags: a new item needs its 'tags' "
                       "column")
    tags = tf.cast(columns["tags"], tf.int32)
    x = tf.gather(self.tag_embeddings, tags)                                  # [..., T, e]
    return tf.cast(self.cnn(x, tags > 0), self.compute_dtype)

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), "num_filters": self.num_filters,
            "kernel_width": self.kernel_width}


__all__ = ["TagCNN", "TagCNNItemEncoder"]
