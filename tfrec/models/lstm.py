"""LSTM and LSTM+Attention, THACIL's Table 2 baselines (§4.2).

    python -m tfrec.train --flagfile=configs/thacil/lstm.flags
    python -m tfrec.train --flagfile=configs/thacil/lstm_attention.flags

"LSTM: we implement an LSTM network to model user's behaviors as sequence, whose output is
combined with the item features to predict the click-through probability, just like the
feedforward network shown in Fig. 1 without attention." "LSTM+Attention: on top of the
implemented LSTM network, a vanilla attention mechanism is augmented, like the feedforward
network in Fig. 1."

  h_1..h_L = LSTM(x_1..x_L)   over the real behaviours, oldest first (x = [f; c], §3.1/§4.3)
  lstm:            logit = FFN([h_L; x])            h_L = the state after the last real item
  lstm_attention:  logit = FFN([sum_j alpha_j ⊙ h_j; x]), alpha from THACIL eq. 9 with the
                   candidate x as the query (`AdditiveAttentionPool`: vector weights, a softmax
                   over the real items of each dimension)

FFN is THACIL's feed-forward head (the base's output MLP, [128] + the logit). The LSTM is as
wide as THACIL's profile (d = 128: "the number of parameters is configured to be identical (as
possible) to our THACIL network"). The states are candidate-independent (`encode_user`); the
attention runs per candidate in `score`. A user without history gets h = 0.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import tensorflow as tf
import tf_keras as keras

from tfrec.layers.hierarchical_attention import AdditiveAttentionPool
from tfrec.models import registry
from tfrec.models.base import RankingModel


@keras.utils.register_keras_serializable(package="tfrec")
class LSTMRanker(RankingModel):
  """An LSTM over the merged history of `domains`, with or without attention (module docstring).

  Args:
    num_items: item ids are in [1, num_items].
    attention: False: FFN([h_L; x]) ("lstm"); True: FFN([attention(h, x); x])
      ("lstm_attention").
    lstm_units: width of the LSTM states; None: `dim`.
    l2: L2 as THACIL's public code, l2 * sum(w^2) / 2, on the item encoder's tables, the LSTM,
      attention and head kernels (THACIL §4.3: 5e-5).
    item_features, item_combine: THACIL §4.3: ("visual", "category") concatenated.
    **kwargs: see `RankingModel` (mlp_units: THACIL's head [128]; dropout: the head's and the
      attention's, THACIL's public code 0.2; max_seq_len: n, THACIL 160).

  User state: {"states": <float>[batch, seq, lstm_units] h_1..h_L (zero at padding),
               "last": <float>[batch, lstm_units] h_L, "mask": <bool>[batch, seq]}.
  """

  def __init__(self, num_items: int, attention: bool = False,
               lstm_units: Optional[int] = None, l2: float = 0.0,
               item_features: Sequence[str] = ("visual", "category"),
               item_combine: str = "concat", **kwargs):
    super().__init__(num_items, item_features=item_features, item_combine=item_combine,
                     **kwargs)
    self.attention = bool(attention)
    self.lstm_units = None if lstm_units is None else int(lstm_units)
    self.l2 = float(l2)
    reg = self.regularized(self.l2)  # L2 on the encoder and head too (as THACIL's model).
    self.lstm = keras.layers.LSTM(self.lstm_units or self.dim, return_sequences=True,
                                  return_state=True, kernel_regularizer=reg,
                                  recurrent_regularizer=reg, name="lstm")
    self.state_attention = (AdditiveAttentionPool(dropout=self.dropout, kernel_regularizer=reg,
                                                  name="state_attention")
                            if self.attention else None)

  def encode_user(self, features: Dict[str, tf.Tensor],
                  training: Optional[bool] = None) -> Dict[str, tf.Tensor]:
    history, mask = self.merged_sequence(features)
    # Right-padded, oldest first: with the mask the recurrence stops at the last real item (its
    # state is carried over the padding) and a row without any keeps the zero initial state.
    states, last, _ = self.lstm(history, mask=mask, training=training)
    states = states * tf.cast(mask, states.dtype)[..., None]
    return {"states": states, "last": last, "mask": mask}

  def score(self, user: Dict[str, tf.Tensor], candidate_ids: tf.Tensor,
            training: Optional[bool] = None) -> tf.Tensor:
    cand = self.candidates(candidate_ids)                                   # [b, n, d]
    if self.state_attention is None:
      return self.logits([user["last"], cand], training=training)
    interest = self.attend(user, cand, training=training)
    return self.logits([interest, cand], training=training)

  def attend(self, user: Dict[str, tf.Tensor], cand: tf.Tensor,
             training: Optional[bool] = None) -> tf.Tensor:
    """THACIL eq. 9 over the LSTM states, one query per candidate: <float>[b, n, lstm_units].

    The states broadcast over the n candidates ([b, 1, L, h] against queries [b, n, d]).
    """
    states = tf.cast(user["states"], cand.dtype)[:, None]                    # [b, 1, L, h]
    mask = tf.cast(user["mask"], tf.bool)[:, None]                           # [b, 1, L]
    return self.state_attention(states, cand[:, :, None, :], mask, training=training)

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), "attention": self.attention, "lstm_units": self.lstm_units,
            "l2": self.l2}


registry.register("lstm", LSTMRanker, "LSTM: the last LSTM state over the target history and "
                  "the item, THACIL's feed-forward head (THACIL Table 2)",
                  item_features=("visual", "category"))
registry.register("lstm_attention", LSTMRanker, "LSTM+Attention: THACIL eq. 9 attention over "
                  "the LSTM states with the candidate as query, THACIL's head (THACIL Table 2)",
                  item_features=("visual", "category"), attention=True)
