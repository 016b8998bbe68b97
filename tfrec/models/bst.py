"""BST (Chen et al., DLP-KDD 2019) and Cross-BST, the baselines of SEMI (§4.2.1 (3), (10); App.
A.2: one multi-head attention block shaped as SEMI's) and ADAPT (§IV-B).

BST runs a transformer block over the behaviour sequence, with time information (here SEMI's
1-hour time blocks, §3.2.3). Cross-BST is the same model over both domains merged into one
sequence ordered by timestamp (SEMI §4.2.1 (10), "the baseline previously used in online services
of Taobao"), with a learnt domain embedding added to each item.

Candidate handling, and how it differs from the BST paper and DeepCTR: there the candidate is
appended to the sequence and every position attends to every other, so the whole block depends
on the candidate and a request must run it once per candidate. Here the history positions attend
only to the history (computed once per user) and the candidate's row attends to the history
through the same block weights (a query row of the same attention, the transformer decoder's
cross-attention form). The model then concatenates the mean of the encoded history, the
candidate's row and the candidate itself. This is what lets serving encode a user once.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import tensorflow as tf
import tf_keras as keras

from tfrec.layers.attention import MultiHeadAttentionBlock
from tfrec.layers.pooling import SequencePooling
from tfrec.models import registry
from tfrec.models.base import RankingModel


@keras.utils.register_keras_serializable(package="tfrec")
class BST(RankingModel):
  """Behaviour Sequence Transformer over one domain's history or several merged by time.

    H   = Block(S, S, S)                 self-attention over the history S (SEMI eq. 2-3)
    r_t = Block(v_t, S, S)               the candidate's row, same weights
    logit = MLP([mean(H), r_t, v_t])

  Args:
    num_heads: heads of the block (SEMI A.1: 8).
    ff_dim: feed-forward width of the block (SEMI A.1: 128); None: dim.
    **kwargs: see `RankingModel` (`use_time_blocks` defaults to True: BST uses time).

  User state: {"history": <float>[batch, seq, dim] block inputs S,
               "encoded": <float>[batch, seq, dim] H, "mask": <bool>[batch, seq],
               "pooled": <float>[batch, dim] mean of H over real items}.
  """

  def __init__(self, num_items: int, num_heads: int = 8, ff_dim: Optional[int] = None,
               use_time_blocks: bool = True, **kwargs):
    super().__init__(num_items, use_time_blocks=use_time_blocks, **kwargs)
    self.num_heads = int(num_heads)
    self.ff_dim = None if ff_dim is None else int(ff_dim)
    self.block = MultiHeadAttentionBlock(num_heads=self.num_heads, ff_dim=self.ff_dim,
                                         dropout=self.dropout, name="transformer")
    self.pooling = SequencePooling("mean", name="mean_pooling")
    self.domain_embeddings = None
    if len(self.domains) > 1:
      self.domain_embeddings = self.add_weight(
          "domain_embeddings", shape=[2, self.dim], initializer="glorot_uniform")

  def encode_user(self, features: Dict[str, tf.Tensor],
                  training: Optional[bool] = None) -> Dict[str, tf.Tensor]:
    history, mask = self.merged_sequence(features, self.domain_embeddings)
    encoded = self.block(history, query_mask=mask, training=training)
    return {"history": history, "encoded": encoded, "mask": mask,
            "pooled": self.pooling(encoded, mask)}

  def score(self, user: Dict[str, tf.Tensor], candidate_ids: tf.Tensor,
            training: Optional[bool] = None) -> tf.Tensor:
    cand = self.candidates(candidate_ids)
    row = self.block(cand, user["history"], key_mask=user["mask"], training=training)
    return self._head(user["pooled"], row, cand, user["mask"], training)

  def call(self, features: Dict[str, tf.Tensor], training: Optional[bool] = None) -> tf.Tensor:
    """Training/pointwise path: one candidate per row, computed in ONE block call.

    The history rows and the candidate's row share keys and values (the history), so
    Block(Q=[S; v_t], K=V=S) gives H and r_t together and projects the history's K and V once
    (score-once serving projects them once per request anyway). Identical to
    `score(encode_user(features), item_id)`: the history rows never see the candidate.
    """
    history, mask = self.merged_sequence(features, self.domain_embeddings)
    cand = self.candidates(features["item_id"][:, None])  # [batch, 1, dim]
    seq_len = history.shape[1]
    queries = tf.concat([history, tf.cast(cand, history.dtype)], axis=1)
    query_mask = tf.concat([mask, tf.ones_like(mask[:, :1])], axis=1)
    both = self.block(queries, history, key_mask=mask, query_mask=query_mask, training=training)
    encoded, row = tf.split(both, [seq_len, 1], axis=1)  # split: a strided slice's gradient
    # cost about 50 ms per step at SEMI sizes (measured)
    return self._head(self.pooling(encoded, mask), row, cand, mask, training)[:, 0]

  def _head(self, pooled: tf.Tensor, row: tf.Tensor, cand: tf.Tensor, mask: tf.Tensor,
            training: Optional[bool]) -> tf.Tensor:
    """logit = MLP([mean(H), r_t, v_t]); r_t = 0 for a user without history (no interest)."""
    has_history = tf.reduce_any(mask, axis=1)[:, None, None]
    row = tf.where(has_history, row, tf.zeros_like(row))
    return self.logits([pooled, row, cand], training=training)

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), "num_heads": self.num_heads, "ff_dim": self.ff_dim}


registry.register("bst", BST, "BST: one transformer block over the target-domain history")
registry.register("cross_bst", BST, "Cross-BST: BST over both domains merged by timestamp",
                  domains=("source", "target"))
