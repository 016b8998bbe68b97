"""BPR (Rendle et al., UAI 2009) as THACIL's Table 2 baseline (§4.2): a trained 128-d user
embedding, items from their features (64-d visual + 64-d category), trained with the pairwise
BPR loss.

    python -m tfrec.train --flagfile=configs/thacil/bpr.flags

Model: x_ui = <p_u, x_i> + b_i (BPR-MF, Rendle eq. for matrix factorisation). THACIL's items
have no id embedding (§4.3: "each micro-video is also embedded into a 128-dim vector, with
d_c = d_f = 64"), so the item bias is a function of the item's features too, b_i = w_b^T x_i
(an id bias would be a constant for every cold test item).

Loss: BPR-Opt, -ln sigma(x_ui - x_uj) for a clicked item i and an item j the user did not
click, on the training core's per-example losses. Where j comes from: our records are labelled
impressions (the paper's negatives are "observed but not clicked"), and the core reduces
per-example losses over a shuffled stream, so a user's own negative rarely shares the batch.
Each positive row r is therefore paired with every negative impression s of its batch (label
0, another item): loss_r = mean_s softplus(-(x_{u_r i_r} - x_{u_r i_s})), and a row that is
not positive (or has no such s) contributes 0. So the negatives are the items of the batch's
non-clicked impressions (training items only: sampling j uniformly from the catalogue would
draw the cold test items into training) and j is "not clicked by u" up to the rare item
another user skipped that u would click. The pairs are formed per replica (each replica's rows
only). L2 (BPR's lambda) is the `l2` regulariser. The ranking task still runs on the rows'
own logits to update the AUC that picks the best checkpoint; its BCE is not trained on.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import tensorflow as tf
import tf_keras as keras

from tfrec.models import registry
from tfrec.models.mf import MF


def bpr_in_batch_loss(user: tf.Tensor, items: tf.Tensor, item_ids: tf.Tensor,
                      labels: tf.Tensor) -> tf.Tensor:
  """BPR-Opt per row against the batch's negative impressions (module docstring).

  Args:
    user: <float>[batch, d] user vectors p_u, with a trailing 1 if the item side carries a bias.
    items: <float>[batch, d] candidate item vectors x_i (and their bias).
    item_ids: <int>[batch] candidate ids (a negative impression of the row's own item is not
      a pair).
    labels: <int|float>[batch] 1 = clicked.

  Returns:
    <float32>[batch]: mean over the pairs of row r of softplus(-(x_ur - x_us)), 0 for a row
    that is not positive or has no pair.
  """
  scores = tf.cast(tf.matmul(user, items, transpose_b=True), tf.float32)   # [b (u), b (i)]
  positive = tf.cast(labels, tf.float32) > 0.5
  own = tf.linalg.diag_part(scores)                                          # x_{u_r i_r}
  pairs = (positive[:, None] & ~positive[None, :]
           & tf.not_equal(item_ids[:, None], item_ids[None, :]))
  per_pair = tf.nn.softplus(-(own[:, None] - scores))                       # -ln sigma(.)
  weights = tf.cast(pairs, tf.float32)
  count = tf.reduce_sum(weights, axis=1)
  return tf.math.divide_no_nan(tf.reduce_sum(per_pair * weights, axis=1), count)


@keras.utils.register_keras_serializable(package="tfrec")
class BPR(MF):
  """x_ui = <p_u, x_i> + w_b^T x_i, trained with BPR-Opt against in-batch negative impressions.

  Args:
    item_bias: add the feature-based item bias w_b^T x_i.
    **kwargs: see `MF` (num_users, l2 = BPR's lambda, dim = 128 in THACIL).

  User state: {"user": <float>[batch, dim] p_u}.
  """

  LOSSES = ("bpr",)

  def __init__(self, num_items: int, item_bias: bool = True, **kwargs):
    super().__init__(num_items, **kwargs)
    self.item_bias = bool(item_bias)
    self.bias_layer = (keras.layers.Dense(1, use_bias=False, kernel_regularizer=self.regularizer(),
                                          name="item_bias") if self.item_bias else None)

  def _item_side(self, candidate_ids: tf.Tensor) -> tf.Tensor:
    """<int>[b, n] -> <float>[b, n, dim (+1)]: x_i (and b_i as a last column)."""
    cand = self.candidates(candidate_ids)
    if self.bias_layer is None:
      return cand
    return tf.concat([cand, tf.cast(self.bias_layer(cand), cand.dtype)], axis=-1)

  def _user_side(self, user: tf.Tensor) -> tf.Tensor:
    """<float>[b, dim] -> [b, dim (+1)]: p_u (and a 1 that multiplies b_i)."""
    if self.bias_layer is None:
      return user
    return tf.concat([user, tf.ones_like(user[:, :1])], axis=-1)

  def score(self, user: Dict[str, tf.Tensor], candidate_ids: tf.Tensor,
            training: Optional[bool] = None) -> tf.Tensor:
    items = self._item_side(candidate_ids)
    u = self._user_side(tf.cast(user["user"], items.dtype))
    return tf.cast(tf.einsum("bd,bnd->bn", u, items), tf.float32)

  def compute_losses(self, batch: Dict[str, tf.Tensor],
                     training: Optional[bool] = None) -> Dict[str, tf.Tensor]:
    """{"bpr": <float32>[batch]} (module docstring); updates the task's AUC on the rows."""
    user = self.encode_user(batch, training=training)["user"]
    items = self._item_side(batch["item_id"][:, None])[:, 0]
    u = self._user_side(tf.cast(user, items.dtype))
    logits = tf.cast(tf.reduce_sum(u * items, axis=-1), tf.float32)
    self.task(batch["label"], logits)  # AUC only (the monitor)
    return {"bpr": bpr_in_batch_loss(u, items, batch["item_id"], batch["label"])}

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), "item_bias": self.item_bias}


registry.register("bpr", BPR, "BPR: trained user vector . item features + feature bias, "
                  "pairwise BPR-Opt against the batch's negative impressions (THACIL Table 2)",
                  item_features=("visual", "category"))
