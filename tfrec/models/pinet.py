"""π-Net (Ma et al., SIGIR 2019) as ADAPT's Table IV cross-domain baseline: "uses RNNs to encode
sequences and a gating mechanism to transfer information between sequences in cross-domain"
(ADAPT §IV-A), with ADAPT's item features and its click-through head.

  h^s_t = GRU_s(f^s_1..t),  h^p_t = GRU_p(f^p_1..t)     one GRU per domain (storytelling =
                                                        target, product = source), d units
  g     = sigmoid(W_g [h^s; h^p] + b_g)                 the transfer gate (π-Net's cross-domain
  h^{p->s} = g ⊙ tanh(W_t h^p + b_t)                    transfer unit, applied to the last
  h^{s->p} = g' ⊙ tanh(W'_t h^s + b'_t)                 states in both directions)
  y^    = sigmoid(MLP([h^s; h^{p->s}; h^p; h^{s->p}; f_target]))   ADAPT's head, BCE

Differences from π-Net, stated: π-Net predicts the next item of a shared account's mixed
sequence and transfers at every time step through its shared-account filter unit; here the
transfer runs once, on each domain's last state, and the model scores a candidate storytelling
item, which is how it enters ADAPT's comparison (the paper does not give its adaptation).

SEMI's Table 1 π-Net (`pinet_source`, `configs/semi/pinet.flags`) adds the product-domain loss
SEMI A.2 gives π-Net and MiNet ("we utilize the latest clicked product in the sequence as the
training target for the product domain"):
  r_+    the newest real product of the source history; the user's states h^s, h^p, h^{s->p}
         are recomputed from the histories without it (the positive is not in the input)
  r_-    a product drawn uniformly from the store's source items (`cmf.draw_products`)
  y_P(r) = MLP_P([h^p; h^{s->p}; r])                    the product head (mlp_units -> 1)
  "source" = softplus(-y_P(r_+)) + softplus(y_P(r_-))   (0 for a row without products)
Loss = bce + source (`--loss_weights=source=w`).
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import tensorflow as tf
import tf_keras as keras

from tfrec.layers.mlp import MLP
from tfrec.models import registry
from tfrec.models.base import RankingModel
from tfrec.models.cmf import draw_products, implicit_loss, newest_item, source_products


@keras.utils.register_keras_serializable(package="tfrec")
class PiNet(RankingModel):
  """Module docstring.

  Args:
    num_items: item ids in [1, num_items].
    gru_units: width of both GRUs; None: `dim`.
    **kwargs: `RankingModel` (domains: ("target", "source"); item features as the dataset has
      them; mlp_units: ADAPT's [256, 128]).

  User state: {"target": h^s, "source": h^p, "target_from_source": h^{p->s},
  "source_from_target": h^{s->p}}, each <float>[batch, units].
  """

  def __init__(self, num_items: int, gru_units: Optional[int] = None,
               domains: Sequence[str] = ("target", "source"),
               mlp_units: Sequence[int] = (256, 128), **kwargs):
    super().__init__(num_items, domains=domains, mlp_units=mlp_units, **kwargs)
    if tuple(sorted(self.domains)) != ("source", "target"):
      raise ValueError(f"π-Net transfers between two domains; got domains {self.domains}")
    self.gru_units = None if gru_units is None else int(gru_units)
    units = self.gru_units or self.dim
    for d in self.domains:
      setattr(self, f"{d}_gru", keras.layers.GRU(units, name=f"{d}_gru"))
    for a, b in (("target", "source"), ("source", "target")):
      setattr(self, f"{a}_gate", keras.layers.Dense(units, activation="sigmoid",
                                                    name=f"{a}_gate"))
      setattr(self, f"{a}_from_{b}", keras.layers.Dense(units, activation="tanh",
                                                        name=f"{a}_from_{b}"))

  def encode_user(self, features: Dict[str, tf.Tensor],
                  training: Optional[bool] = None) -> Dict[str, tf.Tensor]:
    last = {}
    for d in self.domains:
      x, mask = self.domain_sequence(features, d)
      # Right-padded, oldest first: the mask stops the recurrence at the last real item; a row
      # without any keeps the zero initial state.
      last[d] = getattr(self, f"{d}_gru")(x, mask=mask, training=training)
    user = dict(last)
    for a, b in (("target", "source"), ("source", "target")):
      gate = getattr(self, f"{a}_gate")(tf.concat([last[a], last[b]], axis=-1))
      user[f"{a}_from_{b}"] = gate * getattr(self, f"{a}_from_{b}")(last[b])
    return user

  def score(self, user: Dict[str, tf.Tensor], candidate_ids: tf.Tensor,
            training: Optional[bool] = None) -> tf.Tensor:
    cand = self.candidates(candidate_ids)
    parts = [user["target"], user["target_from_source"], user["source"],
             user["source_from_target"]]
    return self.logits(parts + [cand], training=training)

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), "gru_units": self.gru_units}


@keras.utils.register_keras_serializable(package="tfrec")
class PiNetSource(PiNet):
  """π-Net with SEMI A.2's product-domain task (module docstring).

  Args: as `PiNet`. Losses: "bce" (target impressions) and "source" (the newest product).
  """

  LOSSES = ("bce", "source")

  def __init__(self, num_items: int, **kwargs):
    super().__init__(num_items, **kwargs)
    # The product head; float32 logits as the target head's.
    self.source_mlp = MLP(list(self.mlp_units) + [1], dropout=self.dropout,
                          linear_output=True, name="source_mlp", dtype="float32")
    self._products = None  # the source-domain item ids, set by build_and_fill

  def build_and_fill(self, item_store: Any) -> "PiNetSource":
    super().build_and_fill(item_store)
    self._products = source_products(item_store, "π-Net's product task")
    units = self.gru_units or self.dim  # the head's weights exist from the start
    self.source_logits(tf.zeros([1, 2 * units]), tf.zeros([1, 1, self.dim]))
    return self

  def source_logits(self, state: tf.Tensor, items: tf.Tensor,
                    training: Optional[bool] = None) -> tf.Tensor:
    """y_P = MLP_P([h^p; h^{s->p}; r]): <float>[batch, 2 units] state, <float>[batch, k, dim]
    r -> <float32>[batch, k]."""
    items = tf.cast(items, tf.float32)
    state = tf.broadcast_to(tf.cast(state, tf.float32)[:, None, :],
                            tf.concat([tf.shape(items)[:2], tf.shape(state)[-1:]], 0))
    return tf.cast(self.source_mlp(tf.concat([state, items], -1), training=training)[..., 0],
                   tf.float32)

  def compute_losses(self, batch: Dict[str, tf.Tensor],
                     training: Optional[bool] = None) -> Dict[str, tf.Tensor]:
    bce = self.task(batch["label"], self(batch, training=training))
    positive, before, has = newest_item(batch["source_item_ids"], batch["source_mask"])
    user = self.encode_user(dict(batch, source_mask=before), training=training)
    negative = draw_products(self._products, positive, training)              # [b, 1]
    logits = self.source_logits(tf.concat([user["source"], user["source_from_target"]], -1),
                                self.item_encoder(tf.concat([positive, negative], 1)),
                                training=training)                            # [b, 2]
    return {"bce": bce, "source": implicit_loss(logits[:, :1], logits[:, 1:], has)}


registry.register("pinet", PiNet, "π-Net (ADAPT Table IV): a GRU per domain and gated "
                  "cross-domain transfer of their last states, ADAPT's head")
registry.register("pinet_source", PiNetSource, "π-Net with SEMI A.2's product-domain loss on "
                  "the newest product (SEMI Table 1)")
