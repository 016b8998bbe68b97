"""NCF / NeuMF (He et al., WWW 2017, §3.4 eq. 11-12) as the baseline of THACIL's Table 2 (§4.2:
"each user/item is embedded into a 128-dim vector") and ADAPT's Table IV ("extends MF into a
deep framework ... a shallow network (element-wise product of user and item) and a deep network
(concatenation of user and item followed by several feed-forward layers)").

    python -m tfrec.train --flagfile=configs/thacil/ncf.flags

  phi^GMF = p_u^G ⊙ x_i                                   (eq. 9, the GMF tower)
  phi^MLP = a_L(W_L^T (... a_1(W_1^T [p_u^M; x_i] + b_1) ...) + b_L)   (eq. 10, the MLP tower)
  logit   = h^T [phi^GMF; phi^MLP] + b                    (eq. 11-12, the fusion layer)

As in NeuMF the two towers have their own user embeddings (p^G, p^M); the item side is the item
encoder's x_i (THACIL §4.3: [visual; category], no id embedding) shared by both towers. No
pre-training of the towers (the paper's optional initialisation); BCE on the impressions
(NCF eq. 7, THACIL eq. 10). Not exportable: see `mf.py`.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import tensorflow as tf
import tf_keras as keras

from tfrec.layers.mlp import MLP
from tfrec.layers.user_embedding import UserEmbedding
from tfrec.models import registry
from tfrec.models.mf import MF


@keras.utils.register_keras_serializable(package="tfrec")
class NCF(MF):
  """NeuMF: GMF and MLP towers of user and item embeddings fused by a final linear layer.

  Args:
    mlp_units: widths of the MLP tower (THACIL §4.3: hidden sizes 128), ReLU, `dropout` after
      each layer.
    dropout: dropout of the MLP tower (and of both user vectors, as `MF`).
    **kwargs: see `MF` (num_users, l2, dim: width of p^G, p^M and x_i).

  User state: {"user": <float>[batch, dim] p_u^G, "mlp_user": <float>[batch, dim] p_u^M}.
  """

  def __init__(self, num_items: int, mlp_units: Sequence[int] = (128,), **kwargs):
    super().__init__(num_items, mlp_units=mlp_units, **kwargs)
    reg = self.regularizer()
    self.mlp_user_embedding = UserEmbedding(self.num_users, self.dim,
                                            embeddings_regularizer=reg,
                                            name="mlp_user_embedding")
    self.mlp_tower = MLP(list(self.mlp_units), dropout=self.dropout, kernel_regularizer=reg,
                         name="mlp_tower")
    # The fusion layer h stays float32 under mixed precision (as the base's logit layer).
    self.fusion = keras.layers.Dense(1, kernel_regularizer=reg, name="fusion", dtype="float32")

  def encode_user(self, features: Dict[str, tf.Tensor],
                  training: Optional[bool] = None) -> Dict[str, tf.Tensor]:
    user = super().encode_user(features, training=training)
    mlp_user = self.mlp_user_embedding(features["user_id"])
    return {**user, "mlp_user": self.user_dropout(mlp_user, training=training)}

  def towers(self, user: Dict[str, tf.Tensor], candidate_ids: tf.Tensor,
             training: Optional[bool] = None) -> Dict[str, tf.Tensor]:
    """{"gmf": <float>[b, n, dim] p^G ⊙ x_i, "mlp": <float>[b, n, mlp_units[-1]]}."""
    cand = self.candidates(candidate_ids)                                    # [b, n, d]
    n = tf.shape(cand)[1]
    gmf = tf.cast(user["user"], cand.dtype)[:, None, :] * cand
    mlp_user = tf.repeat(tf.cast(user["mlp_user"], cand.dtype)[:, None, :], n, axis=1)
    mlp = self.mlp_tower(tf.concat([mlp_user, cand], axis=-1), training=training)
    return {"gmf": gmf, "mlp": mlp}

  def score(self, user: Dict[str, tf.Tensor], candidate_ids: tf.Tensor,
            training: Optional[bool] = None) -> tf.Tensor:
    t = self.towers(user, candidate_ids, training=training)
    fused = tf.concat([tf.cast(t["gmf"], tf.float32), tf.cast(t["mlp"], tf.float32)], axis=-1)
    return self.fusion(fused)[..., 0]


registry.register("ncf", NCF, "NCF (NeuMF): GMF (p_u ⊙ x_i) + MLP ([p_u; x_i]) towers fused "
                  "by a linear layer (THACIL Table 2, ADAPT Table IV)",
                  item_features=("visual", "category"))
