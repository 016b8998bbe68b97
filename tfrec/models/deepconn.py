"""DeepCoNN (Zheng, Noroozi & Yu, WSDM 2017) as COUPLE's Table 4 runs it (§4.2: "two parallel
convolutional neural networks", fed "a sequence of items represented by tag features where
convolution is applied"), on the retrieval contract (`tfrec.models.retrieval`).

  user  = TagCNN_u(E_tag[the tags of the behaviour items, oldest first, each item's tags in
          their order, flattened; padding tags and padded positions left out])
  item  = TagCNN_i(E_tag[the item's own tags])          (`layers.tag_cnn.TagCNNItemEncoder`)
  score = <user, item>

TagCNN = convolution (`num_filters` filters of width `kernel_width`, ReLU), max pooling over
time, a dense layer to d (`tfrec.layers.tag_cnn`). The two towers have their own convolution
and dense weights and read one tag embedding table.

Adaptations, stated:
  * Documents are tag sequences, not review texts (COUPLE's setting): the user's document is
    the tags of the behaviour sequence (both domains, as the record holds it), the item's its
    own tags. No id embedding: a never-seen item is encoded from its tags alone.
  * DeepCoNN joins the towers with a factorization machine regressing the rating; retrieval
    needs a score that is a dot product of the two towers (an index of item vectors, the
    encode-once contract), so the towers meet in <user, item> and train with the contract's
    softmax (registered: in-batch, temperature 0.1, as COUPLE's other baselines; the FIFO
    queue is COUPLE's own, Table 5). The dense layer is therefore linear (a dot product of
    ReLU outputs could not be negative).
  * One tag embedding table for both towers (one tag space, as COUPLE's); each tower has its
    own convolution and dense layer.
  * Dropout (`dropout`) on the user tower's pooled features in training; the item tower has
    none (its vectors are the serving index).

Serving: the item tower is the item encoder, so `RetrievalServingModule` indexes the CNN
vectors and `tfrec.serving.add_items` encodes a new item from its tags. The user tower reads
each history item's tags through `ItemEncoder.stored_tags`: in an export, from its `item_tags`
table, which `add_items` grows with the new items' tags, so an added item can be retrieved and
sent in a request's history alike.
"""

from __future__ import annotations

from typing import Dict, Optional

import tensorflow as tf
import tf_keras as keras

from tfrec.layers.tag_cnn import TagCNN, TagCNNItemEncoder
from tfrec.models import registry
from tfrec.models.retrieval import SEQ, RetrievalModel


@keras.utils.register_keras_serializable(package="tfrec")
class DeepCoNN(RetrievalModel):
  """Module docstring.

  Args:
    num_filters: convolution filters of each tower (DeepCoNN: 100).
    kernel_width: window of the convolutions in tags (DeepCoNN: 3).
    **kwargs: `RetrievalModel`; item_features must be ("tags",) (the item tower is the CNN of
      the item's tags).
  """

  def __init__(self, num_items: int, num_filters: int = 100, kernel_width: int = 3, **kwargs):
    kwargs.setdefault("item_features", ("tags",))
    super().__init__(num_items, **kwargs)
    if self.item_features != ("tags",):
      raise ValueError(f"DeepCoNN's towers read tag sequences: item_features must be ['tags'], "
                       f"got {list(self.item_features)}")
    self.num_filters, self.kernel_width = int(num_filters), int(kernel_width)
    self.item_encoder = TagCNNItemEncoder(num_items, self.dim, num_tags=self.num_tags,
                                          num_filters=self.num_filters,
                                          kernel_width=self.kernel_width, name="item_encoder")
    self.user_cnn = TagCNN(self.dim, self.num_filters, self.kernel_width, dropout=self.dropout,
                           name="user_cnn")

  def encode_query(self, features: Dict[str, tf.Tensor],
                   training: Optional[bool] = None) -> tf.Tensor:
    mask = tf.cast(features["seq_mask"], tf.bool)                            # [b, l]
    tags = self.item_encoder.stored_tags(features[SEQ])                      # [b, l, T]
    real = tf.logical_and(tags > 0, mask[..., None])
    rows = tf.shape(tags)[0]
    tags, real = tf.reshape(tags, [rows, -1]), tf.reshape(real, [rows, -1])  # [b, l * T]
    x = tf.gather(self.item_encoder.tag_embeddings, tags)
    return tf.cast(self.user_cnn(x, real, training=training), tf.float32)

  def get_config(self):
    return {**super().get_config(), "num_filters": self.num_filters,
            "kernel_width": self.kernel_width}


registry.register("deepconn", DeepCoNN, "DeepCoNN (COUPLE Table 4 baseline): two parallel "
                  "CNNs over tag sequences (the history's tags, the item's tags), dot product, "
                  "no id (matching records)",
                  item_features=("tags",), temperature=0.1, negatives="in_batch")
