"""DIEN (Zhou et al., AAAI 2019, "Deep Interest Evolution Network for Click-Through Rate
Prediction", arXiv:1809.03672) as ADAPT's Table IV baseline: "an improved version of DIN, which
proposes an interest evolving layer on top of DIN model to capture user's dynamic interest over
time" (ADAPT §IV-A). Equation numbers are DIEN's; e_t is the t-th behaviour of the history
(the item encoding, + its time block with `use_time_blocks`), e_a the candidate's encoding.

  h_t    = GRU(e_1..t)                                    interest extractor (eq. 1-4), d units,
                                                          <float>[batch, seq, d]
  L_aux  = mean over t of -log s(h_t . e_{t+1})           auxiliary loss (eq. 5), per user, over
           - log(1 - s(h_t . ê_{t+1}))                    its real pairs (t, t + 1); 0 for a
                                                          history shorter than 2
  a_t    = exp(h_t W e_a) / sum_j exp(h_j W e_a)          attention (eq. 7), over real steps
  h'_T   = AUGRU(h_1..T, a_1..T)                          interest evolution (eq. 10-11,
                                                          `tfrec.layers.augru`), <[batch, d]>
  logit  = MLP([h'_T; sum_t e_t; e_a])                    the head (DIEN's code: final state,
                                                          sum-pooled behaviours, candidate)
  L      = L_target + alpha * L_aux                       eq. 6: named losses "bce" and
                                                          "auxiliary" (`--loss_weights=
                                                          auxiliary=alpha`; DIEN: alpha = 1)

Differences from the paper, stated:
- ê_{t+1}, the negative behaviour, is an item drawn uniformly from the catalogue items of the
  behaviour's own domain (the item store's ids; for the storytelling history, storytelling
  items), with the same time block as e_{t+1}. DIEN samples it from the item set other than
  the clicked item; here it is not redrawn when it hits e_{t+1} or another history item (a
  chance of about 1 / (items of the domain) per history item). Draws take their seeds from
  the training step (`tfrec.layers.step_random`, one draw per domain) and a fixed seed
  outside training, as `cmf.py` and `sasrec.py`.
- The auxiliary term is the inner product of eq. 5, so both GRUs are d wide (DIEN's public code
  uses a small MLP over [h_t; e] instead).
- DIEN is single-domain: as DIN here (`din.py`), it reads `domains`, by default the
  storytelling (target) history alone; with both domains the histories are merged by time.
- No user-profile or context features (ADAPT's baselines score from the histories and the
  candidate alone); the head is ADAPT's MLP with the core's BCE.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import numpy as np
import tensorflow as tf
import tf_keras as keras

from tfrec.data import schema
from tfrec.layers import step_random
from tfrec.layers.attention import masked_softmax
from tfrec.layers.augru import AUGRU
from tfrec.models import registry
from tfrec.models.base import DOMAINS, RankingModel

_VALIDATION_SEED = 20180911  # negatives outside training: (seed, domain index), every pass


@keras.utils.register_keras_serializable(package="tfrec")
class DIEN(RankingModel):
  """Interest extractor GRU + auxiliary loss, candidate attention, AUGRU (module docstring).

  Args:
    num_items: item ids in [1, num_items].
    **kwargs: `RankingModel` (the extractor and evolution layers are `dim` wide; domains:
      ("target",), the storytelling history).

  User state: {"states": h_t <float>[batch, seq, dim] (zero at padding), "behaviours": e_t
  <float>[batch, seq, dim] (zero at padding), "mask": <bool>[batch, seq]}; the attention and
  the AUGRU run per candidate in `score`. Losses: "bce" and "auxiliary", <float32>[batch] each.
  """

  LOSSES = ("bce", "auxiliary")

  def __init__(self, num_items: int, **kwargs):
    super().__init__(num_items, **kwargs)
    self.extractor = keras.layers.GRU(self.dim, return_sequences=True, name="extractor")
    # W of eq. 7, applied to the candidate: h_t W e_a = h_t . (W e_a).
    self.attention_kernel = keras.layers.Dense(self.dim, use_bias=False, name="attention")
    self.evolution = AUGRU(self.dim, name="evolution")
    self._negative_pools: Optional[Dict[str, tf.Tensor]] = None  # set by build_and_fill

  def build_and_fill(self, item_store: Any) -> "DIEN":
    super().build_and_fill(item_store)
    pools = {}
    for d in self.domains:
      ids = item_store.item_ids(domain=schema.SOURCE if d == "source" else schema.TARGET)
      if not len(ids):
        raise ValueError(f"DIEN samples negatives among the {d} items; the item store has none")
      pools[d] = tf.constant(np.asarray(ids, np.int64))
    self._negative_pools = pools
    return self

  # ------------------------------------------------------------------ scoring

  def encode_user(self, features: Dict[str, tf.Tensor],
                  training: Optional[bool] = None) -> Dict[str, tf.Tensor]:
    behaviours, mask = self.merged_sequence(features)
    # Right-padded, oldest first: the mask stops the recurrence at the last real step.
    states = self.extractor(behaviours, mask=mask, training=training)
    states = states * tf.cast(mask, states.dtype)[..., None]
    return {"states": states, "behaviours": behaviours, "mask": mask}

  def attention_weights(self, user: Dict[str, tf.Tensor], cand: tf.Tensor) -> tf.Tensor:
    """DIEN eq. 7: <float>[batch, n, dim] candidates -> <float>[batch, n, seq] weights a_t,
    summing to 1 over each row's real steps (all 0 for a row without any)."""
    query = self.attention_kernel(cand)                                  # W e_a: [b, n, d]
    scores = tf.einsum("bnd,bsd->bns", query, tf.cast(user["states"], query.dtype))
    return masked_softmax(scores, user["mask"][:, None, :], axis=-1)

  def score(self, user: Dict[str, tf.Tensor], candidate_ids: tf.Tensor,
            training: Optional[bool] = None) -> tf.Tensor:
    cand = self.candidates(candidate_ids)                                # [b, n, d]
    weights = self.attention_weights(user, cand)                         # [b, n, s]
    states, mask = user["states"], user["mask"]
    b, n, s = tf.shape(weights)[0], tf.shape(weights)[1], tf.shape(weights)[2]
    # One AUGRU row per (user, candidate): [b * n, s, d].
    rows = tf.repeat(states, n, axis=0)
    final = self.evolution(rows, tf.reshape(weights, [b * n, s]),
                           mask=tf.repeat(mask, n, axis=0))
    final = tf.reshape(final, [b, n, self.dim])
    pooled = tf.reduce_sum(user["behaviours"], axis=1)  # zero at padding already
    return self.logits([final, pooled, cand], training=training)

  # ------------------------------------------------------------------ losses

  def compute_losses(self, batch: Dict[str, tf.Tensor],
                     training: Optional[bool] = None) -> Dict[str, tf.Tensor]:
    """{"bce": the click-through BCE, "auxiliary": eq. 5 per user}, <float32>[batch] each."""
    user = self.encode_user(batch, training=training)
    logits = self.score(user, tf.cast(batch["item_id"], tf.int64)[:, None],
                        training=training)[:, 0]
    bce = self.task(batch["label"], logits)
    negatives = self.merged_sequence(self.negative_features(batch, training))[0]
    return {"bce": bce, "auxiliary": auxiliary_loss(user["states"], user["behaviours"],
                                                    negatives, user["mask"])}

  def negative_features(self, features: Dict[str, tf.Tensor],
                        training: Optional[bool] = None) -> Dict[str, tf.Tensor]:
    """`features` with every history id replaced by an item drawn uniformly from its domain's
    items (padding kept), so that `merged_sequence` of it gives ê_t in e_t's order and with
    e_t's time blocks."""
    if self._negative_pools is None:
      raise ValueError("DIEN draws negatives from the item store: call build_and_fill first")
    out = dict(features)
    for d in self.domains:
      ids = tf.cast(features[f"{d}_item_ids"], tf.int64)
      seed = step_random.step_seed() if training else None
      if seed is None:
        seed = tf.constant([_VALIDATION_SEED, DOMAINS.index(d)], tf.int64)
      pool = self._negative_pools[d]
      pick = tf.random.stateless_uniform(tf.shape(ids), seed, minval=0,
                                         maxval=tf.shape(pool, out_type=tf.int64)[0],
                                         dtype=tf.int64)
      mask = tf.cast(features[f"{d}_mask"], tf.bool)
      out[f"{d}_item_ids"] = tf.where(mask, tf.gather(pool, pick), tf.zeros_like(ids))
    return out


def auxiliary_loss(states: tf.Tensor, positives: tf.Tensor, negatives: tf.Tensor,
                   mask: tf.Tensor) -> tf.Tensor:
  """DIEN eq. 5 per user: the mean over the real pairs (t, t + 1) of
  -log s(h_t . e_{t+1}) - log(1 - s(h_t . ê_{t+1})).

  Args:
    states: <float>[batch, seq, dim] h_t.
    positives: <float>[batch, seq, dim] e_t (the behaviours).
    negatives: <float>[batch, seq, dim] ê_t (the sampled negatives at the same positions).
    mask: <bool>[batch, seq], right-padded.

  Returns:
    <float32>[batch]; 0 for a row with fewer than 2 real steps.
  """
  h = tf.cast(states, tf.float32)[:, :-1]
  pos = tf.reduce_sum(h * tf.cast(positives, tf.float32)[:, 1:], axis=-1)
  neg = tf.reduce_sum(h * tf.cast(negatives, tf.float32)[:, 1:], axis=-1)
  per_step = tf.nn.softplus(-pos) + tf.nn.softplus(neg)          # BCE with labels 1 / 0
  real = tf.cast(mask, tf.float32)[:, 1:]                          # step t + 1 real => t real
  return tf.reduce_sum(per_step * real, axis=1) / tf.maximum(tf.reduce_sum(real, axis=1), 1.0)


registry.register("dien", DIEN, "DIEN: interest extractor GRU with an auxiliary next-behaviour "
                  "loss, candidate attention and AUGRU interest evolution (ADAPT Table IV)")

__all__ = ["DIEN", "auxiliary_loss"]
