"""SDM: Sequential Deep Matching (Lv et al., CIKM 2019), M5 Table 2's baseline, on the retrieval
contract: a short-term session and the long-term behaviours, each read with the user's profile as
the attention query, fused by a gate.

  e_u      = W_u [profile embeddings]                  the user (§3.2: profile embeddings; a
                                                       projection to d here, for the dot products)
  short-term session S (the newest `short_len` behaviours):
    h      = LSTM(e(S))                                §3.3, the sequential information
    X^     = MultiHead(h)                              multi-head self-attention, W^O concat(heads)
                                                       (no residual, norm or feed-forward)
    s^u    = sum_k a_k x^_k,  a = softmax_k(e_u . x^_k)   user attention
  long-term behaviours L (the rest of the sequence):
    z^u    = sum_k a_k g_k,   a = softmax_k(e_u . g_k)    §3.4, attention over L with e_u
    p^u    = tanh(W^p z^u + b)
  gated fusion (§3.5):
    G      = sigmoid(W^1 e_u + W^2 s^u + W^3 p^u + b)
    query  = (1 - G) * p^u + G * s^u                   scored against the item tower by a dot
                                                       product; the retrieval core's losses

Adaptation to one mixed behaviour sequence, stated: SDM cuts sessions by time gaps (a new
session after 10 minutes of inactivity, at most 50 items) and takes the long-term behaviours
from the 7 days before; a matching record here carries one sequence, so its newest `short_len`
behaviours are the short-term session and every older one in the kept `max_seq_len` is
long-term. A sequence of `short_len` items or fewer has no long-term part: its attention weights
are all zero and p^u = tanh(b), so the gate decides from the profile and the session alone.
SDM attends over each side-information field of the long-term items (id, leaf category, brand,
shop...) separately and concatenates the results; here the item encoder's vector, the sum of the
item's fields (`item_features`), is one field, and W^p maps it to d.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple

import tensorflow as tf
import tf_keras as keras

from tfrec.layers.attention import MultiHeadAttentionBlock, masked_softmax
from tfrec.layers.step_random import Dropout
from tfrec.layers.user_embedding import embed_profile, profile_embeddings, profile_sizes
from tfrec.models import registry
from tfrec.models.retrieval import SEQ, RetrievalModel


def split_sequence(ids: tf.Tensor, mask: tf.Tensor, short_len: int
                   ) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """The newest `short_len` real behaviours of right-padded sequences, and the rest.

  Args:
    ids: <int>[b, L] oldest first, right-padded.
    mask: <bool>[b, L] True = real behaviour.
    short_len: S, the length of the short-term session.

  Returns:
    (<int>[b, S] the short-term session, oldest first, right-padded with 0;
     <bool>[b, S] its mask;
     <bool>[b, L] the long-term behaviours: real positions older than the session).
  """
  mask = tf.cast(mask, tf.bool)
  steps = tf.shape(ids)[1]
  length = tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)
  start = tf.maximum(length - short_len, 0)                                    # [b]
  index = start[:, None] + tf.range(short_len)[None, :]                         # [b, S]
  short_mask = index < length[:, None]
  short = tf.gather(ids, tf.minimum(index, steps - 1), batch_dims=1)
  short = tf.where(short_mask, short, tf.zeros_like(short))
  long_mask = tf.logical_and(mask, tf.range(steps)[None, :] < start[:, None])
  return short, short_mask, long_mask


@keras.utils.register_keras_serializable(package="tfrec")
class SDM(RetrievalModel):
  """Short-term session (LSTM, multi-head self-attention, user attention) and long-term
  attention fused by a gate (module docstring).

  Args:
    short_len: behaviours of the short-term session (the newest ones).
    num_heads: heads of the session's self-attention.
    user_feature_sizes: vocabulary of each profile feature (`dataset.json`, passed by
      `runs.build_model`).
    Others: `RetrievalModel` (`dropout`: on the behaviours' item encodings).
  """

  USES_USER_FEATURES = True  # e_u is the attention query: `retrieve` requests carry the profile

  def __init__(self, num_items: int, short_len: int = 10, num_heads: int = 2,
               user_feature_sizes: Sequence[int] = (2, 7, 21, 11), **kwargs):
    super().__init__(num_items, **kwargs)
    if short_len < 1:
      raise ValueError(f"short_len must be >= 1, got {short_len}")
    self.short_len, self.num_heads = int(short_len), int(num_heads)
    self.user_feature_sizes = profile_sizes(user_feature_sizes)
    self.profile = profile_embeddings(self.user_feature_sizes, self.dim)
    self.user_projection = keras.layers.Dense(self.dim, name="user_projection")
    self.lstm = keras.layers.LSTM(self.dim, return_sequences=True, name="session_lstm")
    self.session_attention = MultiHeadAttentionBlock(
        num_heads=self.num_heads, ff_dim=0, use_layer_norm=False, use_residual=False,
        name="session_attention")
    self.long_projection = keras.layers.Dense(self.dim, activation="tanh", name="long_term")
    self.gate = keras.layers.Dense(self.dim, activation="sigmoid", name="fusion_gate")
    self.dropout_layer = Dropout(self.dropout)

  def user_vector(self, features: Dict[str, tf.Tensor]) -> tf.Tensor:
    """<float>[b, d] e_u from the profile ids."""
    profile = embed_profile(self.profile, features["user_features"])
    return self.user_projection(tf.concat(profile, axis=-1))

  @staticmethod
  def _attend(query: tf.Tensor, keys: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
    """sum_k softmax_k(query . key_k) key_k over the real keys; zeros without any."""
    logits = tf.einsum("bd,bld->bl", query, keys)
    weights = masked_softmax(logits, mask)
    return tf.einsum("bl,bld->bd", weights, keys)

  def parts(self, features: Dict[str, tf.Tensor], training: Optional[bool] = None
            ) -> Dict[str, tf.Tensor]:
    """{"user": e_u, "short": s^u, "long": p^u, "gate": G}, each <float>[b, d]."""
    mask = tf.cast(features["seq_mask"], tf.bool)
    ids = features[SEQ]
    e_u = self.user_vector(features)
    short, short_mask, long_mask = split_sequence(ids, mask, self.short_len)
    session = self.dropout_layer(self.item_encoder(short), training=training)
    session *= tf.cast(short_mask, e_u.dtype)[..., None]
    h = self.lstm(session, mask=short_mask, training=training)
    h = self.session_attention(h, query_mask=short_mask, training=training)
    s_u = self._attend(e_u, tf.cast(h, e_u.dtype), short_mask)
    history = self.dropout_layer(self.item_encoder(ids), training=training)
    history *= tf.cast(long_mask, e_u.dtype)[..., None]
    p_u = self.long_projection(self._attend(e_u, history, long_mask))
    gate = self.gate(tf.concat([e_u, s_u, p_u], axis=-1))
    return {"user": e_u, "short": s_u, "long": p_u, "gate": gate}

  def encode_query(self, features: Dict[str, tf.Tensor],
                   training: Optional[bool] = None) -> tf.Tensor:
    p = self.parts(features, training=training)
    fused = (1.0 - p["gate"]) * p["long"] + p["gate"] * p["short"]
    return tf.cast(fused, tf.float32)

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), "short_len": self.short_len, "num_heads": self.num_heads,
            "user_feature_sizes": list(self.user_feature_sizes)}


registry.register("sdm", SDM, "SDM: short-term session (LSTM, self-attention, user attention) "
                  "+ long-term attention, gated fusion; in-batch softmax (matching records; "
                  "M5 baseline)")
