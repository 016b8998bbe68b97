"""MF: matrix factorisation with a trained user vector (Koren et al. 2009), ADAPT's Table IV
single-domain baseline ("we use a low-dimensional vector to represent user preference", §IV-A)
and the base of THACIL's BPR and NCF (`bpr.py`, `ncf.py`).

    python -m tfrec.train --flagfile=configs/thacil/mf.flags

score(u, i) = <p_u, x_i>: p_u a trained user embedding, x_i the item's representation from the
item encoder (THACIL §4.3: every method using item embedding uses x = [f; c], 64-d visual +
64-d category, no id embedding, so a cold item is scored from its features). Trained with the
ranking task's BCE on the labelled impressions (THACIL eq. 10, ADAPT eq. 11).

The user is read from `user_id` (ranking records carry it; ids in [0, num_users), checked
before the lookup). A serving `rank` request carries no user id, so these models are not
exportable (`EXPORTABLE = False`); they are trained and evaluated like every ranker.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple

import tensorflow as tf
import tf_keras as keras

from tfrec.layers.step_random import Dropout
from tfrec.layers.user_embedding import UserEmbedding
from tfrec.models import registry
from tfrec.models.base import RankingModel


@keras.utils.register_keras_serializable(package="tfrec")
class MF(RankingModel):
  """logit = <p_u, x_i> (no bias: ADAPT's MF "represents user preference by a vector").

  Args:
    num_items: item ids are in [1, num_items].
    num_users: user ids are in [0, num_users) (`runs.build_model` passes the dataset's
      `num_users`).
    l2: L2 weight decay on the user table, the item encoder's tables and every kernel, as
      THACIL's public code: l2 * sum(w^2) / 2 (THACIL §4.3: 5e-5).
    item_features: THACIL §4.3: ("visual", "category") concatenated (`item_combine`).
    item_combine: "concat" (x = [f; c]) or "sum".
    dropout: dropout on the user vector (0: none, as the paper).
    **kwargs: see `RankingModel` (`dim`: width of p_u and x_i, THACIL 128; the histories,
      `mlp_units` and time blocks are not read by MF).

  User state: {"user": <float>[batch, dim] p_u}.
  """

  EXPORTABLE = False  # the serving request has no user id (module docstring).

  def __init__(self, num_items: int, num_users: int = 1, l2: float = 0.0,
               item_features: Sequence[str] = ("visual", "category"),
               item_combine: str = "concat", dropout: float = 0.0, **kwargs):
    super().__init__(num_items, item_features=item_features, item_combine=item_combine,
                     dropout=dropout, **kwargs)
    self.num_users = int(num_users)
    self.l2 = float(l2)
    reg = self.regularized(self.l2, head=False)  # L2 on the item encoder too.
    self.user_embedding = UserEmbedding(self.num_users, self.dim, embeddings_regularizer=reg,
                                        name="user_embedding")
    self.user_dropout = Dropout(self.dropout)

  def regularizer(self) -> Optional[keras.regularizers.Regularizer]:
    """L2(l2 / 2) (tf.nn.l2_loss's convention, THACIL's public code), or None."""
    return keras.regularizers.L2(self.l2 / 2) if self.l2 > 0 else None

  def encode_user(self, features: Dict[str, tf.Tensor],
                  training: Optional[bool] = None) -> Dict[str, tf.Tensor]:
    user = self.user_embedding(features["user_id"])
    return {"user": self.user_dropout(user, training=training)}

  def score(self, user: Dict[str, tf.Tensor], candidate_ids: tf.Tensor,
            training: Optional[bool] = None) -> tf.Tensor:
    cand = self.candidates(candidate_ids)                       # [b, n, d]
    u = tf.cast(user["user"], cand.dtype)                       # [b, d]
    return tf.cast(tf.einsum("bd,bnd->bn", u, cand), tf.float32)

  @property
  def user_input_names(self) -> Tuple[str, ...]:
    return ("user_id",) + super().user_input_names

  def dummy_features(self, batch: int = 1) -> Dict[str, tf.Tensor]:
    return {**super().dummy_features(batch), "user_id": tf.zeros([batch], tf.int64)}

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), "num_users": self.num_users, "l2": self.l2}


registry.register("mf", MF, "MF: trained user vector . item features (ADAPT Table IV; "
                  "THACIL's item representation [visual; category])",
                  item_features=("visual", "category"))
