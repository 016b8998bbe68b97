"""Two-tower BST: the Behaviour Sequence Transformer (Chen et al., DLP-KDD 2019) as M5's
retrieval baseline (M5 §5.1.2: "BST extends the YouTube DNN by utilizing Transformer layers ...
For computation efficiency, we use two-tower modeling other than an MLP in BST").

  E_t   = e(i_t) + P_t                        item encoding + position (`positions`)
  H     = Block_B(... Block_1(E))             `num_blocks` transformer blocks over the real
                                              behaviours (`layers.attention`'s block, post-norm
                                              as BST and `models/bst.py`)
  query = MLP(pool(H))                        pooled over the real positions (`pooling`), then
                                              YouTube DNN's query MLP, linear to d
  score = <query, item encoder(candidate)>    the retrieval core's item tower and losses

Positions (`positions`): "time" is BST's pos(v_i) = t(v_t) - t(v_i), the time from each
behaviour to the request, bucketed in one-hour blocks (`layers.time_block.TimeBlockEmbedding`,
as SEMI's BST baseline in `models/bst.py`); "order" a learnt embedding of the position counted
back from the newest behaviour (SASRec's).

What the two-tower form changes, and why: BST appends the target item to the sequence, so every
output depends on the candidate and an MLP scores the concatenation; a retrieval index needs a
query computed once per user, so the target stays out of the transformer and only meets the
query in the dot product (the ranking BST of `models/bst.py` keeps its candidate row instead).
BST's other features (user profile, context) are left out: M5 describes its baselines as the
YouTube DNN's behaviour tower.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import tensorflow as tf
import tf_keras as keras

from tfrec.layers.attention import MultiHeadAttentionBlock
from tfrec.layers.mlp import MLP
from tfrec.layers.pooling import SequencePooling
from tfrec.layers.step_random import Dropout
from tfrec.layers.time_block import TimeBlockEmbedding
from tfrec.models import registry
from tfrec.models.retrieval import SEQ, RetrievalModel

POSITIONS = ("time", "order")
POOLINGS = ("mean", "max", "sum")


@keras.utils.register_keras_serializable(package="tfrec")
class BSTTwoTower(RetrievalModel):
  """BST's transformer over the behaviours, pooled to the query (module docstring).

  Args:
    num_blocks: transformer blocks (BST: 1).
    num_heads: heads per block (BST: 8).
    ff_dim: feed-forward width of the blocks; None: dim.
    positions: "time" (BST) or "order".
    pooling: "mean", "max" or "sum" over the real positions.
    mlp_units: hidden widths of the query MLP (a linear layer of width `dim` is added).
    Others: `RetrievalModel`.
  """

  def __init__(self, num_items: int, num_blocks: int = 1, num_heads: int = 8,
               ff_dim: Optional[int] = None, positions: str = "time", pooling: str = "mean",
               mlp_units: Sequence[int] = (128,), **kwargs):
    super().__init__(num_items, **kwargs)
    if positions not in POSITIONS:
      raise ValueError(f"positions must be one of {POSITIONS}, got {positions!r}")
    if pooling not in POOLINGS:
      raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
    self.num_blocks, self.num_heads = int(num_blocks), int(num_heads)
    self.ff_dim = None if ff_dim is None else int(ff_dim)
    self.positions, self.pooling = positions, pooling
    self.mlp_units = tuple(int(u) for u in mlp_units)
    if positions == "time":
      self.position_embedding = TimeBlockEmbedding(self.dim, name="time_blocks")
    else:
      self.position_embedding = keras.layers.Embedding(self.max_seq_len, self.dim,
                                                       name="positions")
    self.input_dropout = Dropout(self.dropout)
    self.blocks = [MultiHeadAttentionBlock(num_heads=self.num_heads, ff_dim=self.ff_dim,
                                           dropout=self.dropout, name=f"transformer_{i}")
                   for i in range(self.num_blocks)]
    self.pool = SequencePooling(pooling, name=f"{pooling}_pooling")
    self.query_mlp = MLP(list(self.mlp_units) + [self.dim], dropout=self.dropout,
                         linear_output=True, name="query_mlp")

  def position_encodings(self, features: Dict[str, tf.Tensor]) -> tf.Tensor:
    """<float>[b, L, d] P_t of each behaviour (`positions`)."""
    mask = tf.cast(features["seq_mask"], tf.bool)
    if self.positions == "time":
      return self.position_embedding(features["seq_timestamps"], features["timestamp"], mask)
    length = tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)
    back = tf.maximum(length[:, None] - 1 - tf.range(tf.shape(mask)[1])[None, :], 0)
    return self.position_embedding(back)

  def encode_query(self, features: Dict[str, tf.Tensor],
                   training: Optional[bool] = None) -> tf.Tensor:
    mask = tf.cast(features["seq_mask"], tf.bool)
    x = self.item_encoder(features[SEQ])
    x = x + tf.cast(self.position_encodings(features), x.dtype)
    x = self.input_dropout(x, training=training) * tf.cast(mask, x.dtype)[..., None]
    for block in self.blocks:
      x = block(x, query_mask=mask, training=training)
    query = self.query_mlp(self.pool(x, mask=mask), training=training)
    return tf.cast(query, tf.float32)

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), "num_blocks": self.num_blocks, "num_heads": self.num_heads,
            "ff_dim": self.ff_dim, "positions": self.positions, "pooling": self.pooling,
            "mlp_units": list(self.mlp_units)}


registry.register("bst_two_tower", BSTTwoTower, "Two-tower BST: BST's transformer over the "
                  "behaviour sequence (time positions), pooled, query MLP; in-batch softmax "
                  "(matching records; M5 baseline)")
