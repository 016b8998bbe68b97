"""COUPLE: cross-domain cold-start retrieval from semantic tags with a memory tree (§3, eq. 1-12),
on the retrieval contract (`tfrec.models.retrieval`).

  e_i    = mean of the item's tag embeddings (eq. 1; `ItemEncoder` "tags", no id: a never-seen
           item is retrieved from its tags) + E_dom[domain(i)] in training only
  H      = MHAttn(e_{i,1..l})                           one self-attention block (eq. 2)
  e^(h)  = WA(H)                                        eq. 3-4, over the real positions
  e^(c)  = FrequencyEncoder(tags of the history, e^(h)) eq. 5, over the n x l tags
  e^(g)  = MemoryTree(e^(h))                            eq. 6-8: 1-32-512, Gumbel-softmax with
                                                        tau = max(1, 20 e^{-r t}) in training
  e_u    = WA([e^(h), e^(c), e^(g)])                    eq. 11
  loss   = InfoNCE of e_u against its positive and a FIFO queue of earlier positives (eq. 12,
           omega = 0.03: `negatives="queue"`, `temperature`) + the SRIP penalty (eq. 9-10) as
           the named loss "orthogonality"

Choices the paper leaves open, stated here:
  * Eq. 3's WA runs over the attention block's outputs at the history's real positions (the
    paper names its m inputs "the output representations of eq. 2").
  * The domain embedding is added to the history items and the loss's positives in training
    (eq. 1's "for training"); serving and evaluation use the tags alone, so the query and the
    index see the same item vectors there.
  * `content=False` / `group=False` drop e^(c) / e^(g) (Table 5's ablations).
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import tensorflow as tf
import tf_keras as keras

from tfrec.layers import step_random
from tfrec.layers.attention import MultiHeadAttentionBlock
from tfrec.layers.couple_encoders import FrequencyEncoder, WeightedAggregation
from tfrec.layers.memory_tree import MemoryTree, gumbel_temperature
from tfrec.models import registry
from tfrec.models.retrieval import SEQ, RetrievalModel


@keras.utils.register_keras_serializable(package="tfrec")
class COUPLE(RetrievalModel):
  """Module docstring.

  Args:
    num_heads, ff_dim: of the history's attention block (COUPLE: 4, 64).
    content, group: the user content (eq. 5) and user group (eq. 6-8) representations.
    branching, top_k, srip_weight, srip_iterations: the memory tree (`MemoryTree`; COUPLE:
      (32, 16), lambda 0.1, 2 iterations).
    tau_initial, tau_rate, tau_every: the Gumbel temperature schedule (20, 1e-5, 1,000 steps).
    num_domains: rows of the training-only domain embedding.
    **kwargs: `RetrievalModel` (item_features ("tags",), dim 64, temperature omega = 0.03,
      negatives "queue", queue_size 10 x 256, dropout 0.2 in COUPLE's configuration).

  Losses: "softmax" (eq. 12) and "orthogonality" (eq. 9, the same value on every row).
  """

  LOSSES = ("softmax", "orthogonality")

  def __init__(self, num_items: int, num_heads: int = 4, ff_dim: Optional[int] = 64,
               content: bool = True, group: bool = True, branching: Sequence[int] = (32, 16),
               top_k: int = 8, srip_weight: float = 0.1, srip_iterations: int = 2,
               tau_initial: float = 20.0, tau_rate: float = 1e-5, tau_every: int = 1000,
               num_domains: int = 2, **kwargs):
    kwargs.setdefault("item_features", ("tags",))
    super().__init__(num_items, **kwargs)
    if content and "tags" not in self.item_features:
      raise ValueError(f"COUPLE's content encoder (eq. 5) reads the items' tags: item_features "
                       f"must include 'tags', got {list(self.item_features)}")
    self.num_heads = int(num_heads)
    self.ff_dim = None if ff_dim is None else int(ff_dim)
    self.content, self.group = bool(content), bool(group)
    self.branching, self.top_k = tuple(int(b) for b in branching), int(top_k)
    self.srip_weight, self.srip_iterations = float(srip_weight), int(srip_iterations)
    self.tau_initial, self.tau_rate = float(tau_initial), float(tau_rate)
    self.tau_every, self.num_domains = int(tau_every), int(num_domains)
    self.history_block = MultiHeadAttentionBlock(num_heads=self.num_heads, ff_dim=self.ff_dim,
                                                 dropout=self.dropout, name="history_block")
    self.history_wa = WeightedAggregation(self.dim, name="history_wa")
    self.frequency = FrequencyEncoder(self.dim, name="frequency") if self.content else None
    self.tree = (MemoryTree(self.dim, self.branching, self.top_k, self.srip_weight,
                            self.srip_iterations, name="memory_tree") if self.group else None)
    self.user_wa = WeightedAggregation(self.dim, name="user_wa")
    self.domain_embeddings = self.add_weight(
        "domain_embeddings", shape=[self.num_domains, self.dim], initializer="glorot_uniform")
    self.item_domain = self.add_weight("item_domain", shape=[self.num_items + 1], dtype=tf.int32,
                                       initializer="zeros", trainable=False)

  def build_and_fill(self, item_store: Any) -> "COUPLE":
    super().build_and_fill(item_store)
    domains = item_store.domain
    if int(domains.max()) >= self.num_domains:
      raise ValueError(f"item store has domain {int(domains.max())} >= num_domains "
                       f"{self.num_domains}")
    self.item_domain.assign(domains.astype("int32"))
    return self

  def temperature_now(self) -> tf.Tensor:
    """tau of eq. 7 at the enclosing training step (the schedule's floor outside one)."""
    step = step_random.current_step()
    if step is None:
      return tf.constant(1.0)
    return gumbel_temperature(step, self.tau_initial, self.tau_rate, every=self.tau_every)

  def _domain(self, domains: tf.Tensor) -> tf.Tensor:
    return tf.gather(self.domain_embeddings, tf.cast(domains, tf.int32))

  def encode_items(self, item_ids: tf.Tensor, training: Optional[bool] = None) -> tf.Tensor:
    x = tf.cast(self.item_encoder(item_ids), tf.float32)
    if training:  # eq. 1's domain embedding, training only
      domains = tf.gather(self.item_domain, tf.cast(item_ids, tf.int32))
      x = x + tf.cast(self._domain(domains), tf.float32)
    return x

  def encode_query(self, features: Dict[str, tf.Tensor],
                   training: Optional[bool] = None) -> tf.Tensor:
    mask = tf.cast(features["seq_mask"], tf.bool)                            # [b, l]
    x = self.item_encoder(features[SEQ])                                     # [b, l, d]
    if training:
      x = x + tf.cast(self._domain(features["seq_domain_ids"]), x.dtype)
    x = x * tf.cast(mask, x.dtype)[..., None]
    e_h = self.history_wa(self.history_block(x, query_mask=mask, training=training), mask)
    parts = [e_h]
    if self.frequency is not None:  # eq. 5 over every tag of the history
      tags = self.item_encoder.stored_tags(features[SEQ])                    # [b, l, n]
      real = tf.logical_and(tags > 0, mask[..., None])                       # [b, l, n]
      emb = tf.gather(self.item_encoder.tag_embeddings, tags)                # [b, l, n, d]
      flat = tf.reshape(emb, [tf.shape(emb)[0], -1, self.dim])
      parts.append(self.frequency(flat, e_h, tf.reshape(real, [tf.shape(real)[0], -1])))
    if self.tree is not None:
      parts.append(self.tree(e_h, self.temperature_now(), training=training))
    user = self.user_wa(tf.stack([tf.cast(p, e_h.dtype) for p in parts], axis=1))
    return tf.cast(user, tf.float32)

  def compute_losses(self, batch: Dict[str, tf.Tensor],
                     training: Optional[bool] = None) -> Dict[str, tf.Tensor]:
    losses = super().compute_losses(batch, training=training)
    penalty = self.tree.srip_loss() if self.tree is not None else tf.constant(0.0)
    losses["orthogonality"] = tf.fill(tf.shape(losses["softmax"]), tf.cast(penalty, tf.float32))
    return losses

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), "num_heads": self.num_heads, "ff_dim": self.ff_dim,
            "content": self.content, "group": self.group, "branching": list(self.branching),
            "top_k": self.top_k, "srip_weight": self.srip_weight,
            "srip_iterations": self.srip_iterations, "tau_initial": self.tau_initial,
            "tau_rate": self.tau_rate, "tau_every": self.tau_every,
            "num_domains": self.num_domains}


registry.register("couple", COUPLE, "COUPLE (cold-start retrieval): tag-based items, history "
                  "attention + WA, frequency encoder, Gumbel-softmax memory tree with SRIP, "
                  "InfoNCE against a FIFO queue (matching records)",
                  item_features=("tags",), temperature=0.03, negatives="queue",
                  queue_size=2560, dropout=0.2)
