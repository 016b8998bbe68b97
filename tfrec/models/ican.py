"""ICAN (Xie, Qiu, Rao, Liu, Zhang & Lin, IJCAI 2020, "Internal and contextual attention network
for cold-start multi-channel matching in recommendation") as COUPLE's Table 4 runs it (§4.2:
"we adjust the ID input feature with tag embeddings to fit in the content cold-start
scenario, while keeping all other settings unchanged"), on the retrieval contract. What ICAN
does is read from the authors' code (zhijieqiu/ICAN, `CrossModel` with its `run.sh` settings:
average pooling of histories, the group attention on, tanh user layers):

  fields   per channel (here: domain 0 source, 1 target) the mean of the channel's history
           items and the mean of the channel's history tags: F = 2 x num_domains vectors of
           width d (ICAN: per channel the history ids, tags and categories, 64 wide each)
  context  c = E_channel[target]: the channel the request is for
  g'       = ContextualAttention(fields, c)       each field weighted by its relevance to c
                                                  (`layers.contextual_attention`)
  h        = MultiHeadAttention(g')               the internal attention across the fields:
                                                  num_heads heads, output projection, no
                                                  residual, norm or feed-forward (ICAN's attn)
  query    = MLP_tanh([h_1; ...; h_F]) -> d        YouTube DNN's user tower over the fields
  item     = mean of the item's tag embeddings    (`ItemEncoder` "tags": ICAN's doc id
                                                  embedding replaced by tags, COUPLE eq. 1)
  score    = <query, item>

Adaptations, stated:
  * Items come from their tags, not ids (COUPLE's change): the history-item field and the item
    tower read the item encoder's tag table, so a never-seen item is scored from its tags. The
    tag field keeps a table of its own, as ICAN's tag fields have their own embeddings; without
    it the two fields of a channel would be one table's per-item and per-tag means.
  * Channels are the record's domains; categories are not a field (COUPLE's items are tags).
    COUPLE retrieves for one channel, the target domain, so the context is one learnt vector:
    the contextual weights still differ per user, through the fields.
  * No user-profile features (COUPLE's data and COUPLE itself read none; tfrec's YouTube DNN
    neither), so requests carry none.
  * The internal attention scales its scores by 1 / sqrt(d_h) (`MultiHeadAttentionBlock`; the
    authors' code does not scale); dropout (`dropout`) on the attention weights, its output
    and the MLP, in training (the authors' code calls its attention with dropout off).
  * The last layer of the query MLP is linear (ICAN: tanh, bounding the query); the softmax's
    temperature sets the scale. ICAN trains a softmax against 20 uniformly drawn negatives;
    here the contract's loss (registered: the in-batch softmax, temperature 0.1, as COUPLE's
    other baselines; the FIFO queue is COUPLE's own, Table 5).

Serving: the tag fields read each history item's tags through `ItemEncoder.stored_tags` (in an
export, its `item_tags` table, grown by `add_items`): an item added after training can be
retrieved and sent in a request's history alike.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import tensorflow as tf
import tf_keras as keras

from tfrec.data import schema
from tfrec.layers.attention import MultiHeadAttentionBlock
from tfrec.layers.contextual_attention import ContextualAttention
from tfrec.layers.mlp import MLP
from tfrec.models import registry
from tfrec.models.retrieval import SEQ, RetrievalModel


def _masked_mean(x: tf.Tensor, real: tf.Tensor, axes) -> tf.Tensor:
  """Mean of `x` <float>[b, ..., d] over `axes` where `real` <bool>[b, ...]; zeros if none."""
  w = tf.cast(real, x.dtype)[..., None]
  return tf.reduce_sum(x * w, axis=axes) / tf.maximum(tf.reduce_sum(w, axis=axes), 1.0)


@keras.utils.register_keras_serializable(package="tfrec")
class ICAN(RetrievalModel):
  """Module docstring.

  Args:
    num_heads: heads of the internal attention (ICAN: 8); d must be divisible by it.
    attention_units: hidden widths of the contextual attention's scoring MLP (ICAN: 64, 32).
    mlp_units: hidden widths of the query MLP, tanh (ICAN: 128, 64); a linear layer of width d
      is added.
    num_domains: channels (the record's domain ids are in [0, num_domains)).
    **kwargs: `RetrievalModel`; item_features must include "tags".
  """

  def __init__(self, num_items: int, num_heads: int = 8,
               attention_units: Sequence[int] = (64, 32), mlp_units: Sequence[int] = (128, 64),
               num_domains: int = 2, **kwargs):
    kwargs.setdefault("item_features", ("tags",))
    super().__init__(num_items, **kwargs)
    if "tags" not in self.item_features:
      raise ValueError(f"ICAN's tag fields read the items' tags: item_features must include "
                       f"'tags', got {list(self.item_features)}")
    if self.dim % num_heads:
      raise ValueError(f"dim {self.dim} is not divisible by num_heads {num_heads}")
    if num_domains <= schema.TARGET:
      raise ValueError(f"num_domains must be > the target domain {schema.TARGET}")
    self.num_heads, self.num_domains = int(num_heads), int(num_domains)
    self.attention_units = tuple(int(u) for u in attention_units)
    self.mlp_units = tuple(int(u) for u in mlp_units)
    self.channel_embeddings = self.add_weight(
        "channel_embeddings", shape=[self.num_domains, self.dim], initializer="glorot_uniform")
    self.tag_field_embeddings = self.add_weight(
        "tag_field_embeddings", shape=[self.num_tags + 1, self.dim],
        initializer="glorot_uniform")
    self.contextual = ContextualAttention(self.attention_units, name="contextual_attention")
    self.internal = MultiHeadAttentionBlock(
        num_heads=self.num_heads, ff_dim=0, use_layer_norm=False, use_residual=False,
        dropout=self.dropout, attention_dropout=self.dropout, name="internal_attention")
    self.query_mlp = MLP(list(self.mlp_units) + [self.dim], activation="tanh",
                         dropout=self.dropout, linear_output=True, name="query_mlp")

  def fields(self, features: Dict[str, tf.Tensor]) -> tf.Tensor:
    """<float>[batch, 2 x num_domains, d]: per domain, the mean history item and the mean
    history tag (zeros for a domain without history)."""
    ids = features[SEQ]
    mask = tf.cast(features["seq_mask"], tf.bool)                            # [b, l]
    domains = tf.cast(features["seq_domain_ids"], tf.int32)
    items = self.item_encoder(ids)                                           # [b, l, d]
    tags = self.item_encoder.stored_tags(ids)                                # [b, l, T]
    tag_vectors = tf.cast(tf.gather(self.tag_field_embeddings, tags), items.dtype)
    out = []
    for domain in range(self.num_domains):
      in_domain = tf.logical_and(mask, tf.equal(domains, domain))
      out.append(_masked_mean(items, in_domain, axes=1))
      out.append(_masked_mean(tag_vectors, tf.logical_and(in_domain[..., None], tags > 0),
                              axes=[1, 2]))
    return tf.stack(out, axis=1)

  def encode_query(self, features: Dict[str, tf.Tensor],
                   training: Optional[bool] = None) -> tf.Tensor:
    fields = self.fields(features)                                           # [b, F, d]
    context = tf.gather(self.channel_embeddings,
                        tf.fill(tf.shape(fields)[:1], schema.TARGET))        # [b, d]
    weighted = self.contextual(fields, tf.cast(context, fields.dtype))
    h = self.internal(weighted, training=training)                           # [b, F, d]
    flat = tf.reshape(h, [-1, h.shape[1] * self.dim])
    return tf.cast(self.query_mlp(flat, training=training), tf.float32)

  def get_config(self):
    return {**super().get_config(), "num_heads": self.num_heads,
            "attention_units": list(self.attention_units), "mlp_units": list(self.mlp_units),
            "num_domains": self.num_domains}


registry.register("ican", ICAN, "ICAN (COUPLE Table 4 baseline): YouTube DNN over per-domain "
                  "history fields with ICAN's contextual and internal (field) attention, items "
                  "from tags, no id (matching records)",
                  item_features=("tags",), temperature=0.1, negatives="in_batch")
