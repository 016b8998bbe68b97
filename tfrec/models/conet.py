"""CoNet: collaborative cross networks (Hu, Zhang & Yang, CIKM 2018), ADAPT's Table IV
cross-domain baseline: "extends CMF into a deep framework for cross-domain recommendation,
which employs a cross-stitch network to enable knowledge transfer" (§IV-A).

    python -m tfrec.train --flagfile=configs/adapt/conet.flags

CMF (`cmf.py`) made deep. One user factor p_u (shared by both domains, as CMF and CoNet) and
the item's representation x from the shared item encoder form each tower's input; one ReLU
tower per domain (T: storytelling = target, S: product = source), L = len(mlp_units) layers:

  a^0_T = [p_u; x_i],  a^0_S = [p_u; x_s]                              (the base network's
                                                                       input, MLP-based CF)
  a^{l+1}_T = relu(W^l_T a^l_T + H^l a^l_S + b^l_T)                     (CoNet §4.2, the cross
  a^{l+1}_S = relu(W^l_S a^l_S + H^l a^l_T + b^l_S)                      connections unit)
  logit_T = h_T^T a^L_T + c_T,  logit_S = h_S^T a^L_S + c_S             (the output layers)

for l < `cross_layers`; the later layers are plain (no H^l term). Shapes: p_u, x <float>[batch,
dim]; a^l <float>[batch, k, w_l] (w_0 = 2 dim, w_l = mlp_units[l-1]); W^l and H^l
[w_l, w_{l+1}]. H^l is one matrix shared by both directions, as CoNet's (its public code,
njuhugn/CoNet `CoNet_mtl_cross_1223hid/model.py`, adds the same `shared_Hs[h]` in both towers).
It generalises the cross-stitch unit [[α_TT, α_TS], [α_ST, α_SS]] (Misra et al., CVPR 2016),
which mixes a^l_S into a^l_T with a scalar, to a learned matrix; with H^l = 0 the towers are two
independent MLPs (no transfer). CoNet's code crosses the first two of its three transitions
(64 -> 32 -> 16 -> 8, "1223hid"); `configs/adapt/conet.flags` does the same at d = 64
(128 -> 64 -> 32 -> 16). The source tower's layers past the last cross connection and its logit
layer are trained by the "source" loss alone (the target logit never reads them).

Losses (the contract of CMF: "bce" and "source", `--loss_weights=source=w`):
  bce     the labelled impressions (storytelling): BCE of logit_T with x_i the impression and
          x_s = the mean of the user's product history encodings (0 without history), the
          user's source-domain input at scoring time too
  source  the user's product history as implicit positives, as CMF: at every real position of
          the source sequence, BCE of logit_S with x_s the product (label 1) and with x_s a
          product drawn uniformly from the source domain (label 0), each pass with the target
          tower reading the row's impression (x_i), averaged over the positions (a user
          without product history contributes 0)
Negatives are drawn from the training step's seed (`layers.step_random`), from CMF's fixed seed
outside training (so CoNet and CMF validate against the same negatives).

Differences from CoNet, stated:
  * CoNet trains on two domains' implicit feedback (each a one-hot user and item, a negative
    sampled per positive) of shared users, pairing a source instance with a target instance in
    each joint pass (its code pairs them at random across users); here the target is the
    labelled storytelling impressions, the source instances are the same row's product history
    (positives) and sampled products, paired with the row's impression.
  * Items come from their features through the shared item encoder (no per-domain item id
    embedding), so a cold item is scored.
  * CoNet's code scores test items with the target network alone (no H term); here the target
    logit always includes the transfer, from the mean of the user's product history.
  * CoNet's output is a 2-way softmax (equivalent to the sigmoid of one logit); no SCoNet L1 on
    H (§4.3 eq. 9). `l2` and `dropout` (after every tower layer, and on p_u) as MF.
Not exportable (a serving request carries no user id: see `mf.py`).

SEMI's Table 1 CoNet (A.2: "utilize the average pooling of different domains' actions as the
user embedding"): `user_input="history"` replaces p_u by the mean item encoding of both
domains' histories (0 without any), `configs/semi/conet.flags`. Its product-domain loss then
reads a user vector that contains the products it predicts, as A.2 leaves it.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import tensorflow as tf
import tf_keras as keras

from tfrec.layers import step_random
from tfrec.models import registry
from tfrec.models.cmf import CMF, implicit_loss, pooled_mean

_HEADS = ("target", "source", "both")
USER_INPUTS = ("id", "history")


@keras.utils.register_keras_serializable(package="tfrec")
class CrossTowers(keras.layers.Layer):
  """Two ReLU towers joined by CoNet's cross connections (module docstring).

  Args:
    units: widths [w_1, ..., w_L] of both towers' layers.
    cross_layers: the transitions a^l -> a^{l+1}, l < cross_layers, that carry H^l; None: all
      L of them; 0: none (two independent towers).
    dropout: dropout after every tower layer.
    kernel_regularizer: regulariser of every kernel (W^l, H^l, h).

  Call args:
    target: <float>[batch, n, in_dim] a^0_T.
    source: <float>[batch, m, in_dim] a^0_S; n and m broadcast (equal, or one of them 1).
    heads: "target", "source" or "both": the logits to return (a tower's layers past the last
      cross connection are computed only for its own head).
    training: dropout switch.

  Returns:
    {head: <float32>[batch, k]}: k is n for the target head and m for the source head when
    nothing crosses into it, else the broadcast of n and m.
  """

  def __init__(self, units: Sequence[int], cross_layers: Optional[int] = None,
               dropout: float = 0.0, kernel_regularizer: Any = None, **kwargs):
    super().__init__(**kwargs)
    units = [int(u) for u in units]
    if not units or min(units) < 1:
      raise ValueError(f"units must be a non-empty list of positive widths, got {units}")
    if cross_layers is not None and not 0 <= int(cross_layers) <= len(units):
      raise ValueError(f"cross_layers must be in [0, {len(units)}] (the towers' layers) or "
                       f"None, got {cross_layers}")
    self.units = units
    self.cross_layers = None if cross_layers is None else int(cross_layers)
    self.num_cross = len(units) if cross_layers is None else int(cross_layers)
    self.dropout = float(dropout)
    self.kernel_regularizer = keras.regularizers.get(kernel_regularizer)
    policy = self.dtype_policy

    def dense(width, name, **kw):
      return keras.layers.Dense(width, kernel_regularizer=self.kernel_regularizer, name=name,
                                **{"dtype": policy, **kw})

    self.target_layers = [dense(w, f"target_{l}") for l, w in enumerate(units)]
    self.source_layers = [dense(w, f"source_{l}") for l, w in enumerate(units)]
    self.cross = [dense(w, f"cross_{l}", use_bias=False)
                  for l, w in enumerate(units[:self.num_cross])]
    # The logit layers stay float32 under mixed precision (as the base's logit layer).
    self.target_output = dense(1, "target_output", dtype="float32")
    self.source_output = dense(1, "source_output", dtype="float32")
    self.dropout_layer = step_random.Dropout(self.dropout, dtype=policy)

  def build(self, input_shape: tf.TensorShape) -> None:
    # Every weight now, whichever head the first call asks for: checkpoints hold all of them.
    def build(layer, width):
      with tf.name_scope(layer.name):  # weights named <towers>/<layer>/kernel, as when called
        layer.build(tf.TensorShape([None, width]))

    width = int(input_shape[-1])
    for l, w in enumerate(self.units):
      build(self.target_layers[l], width)
      build(self.source_layers[l], width)
      if l < self.num_cross:
        build(self.cross[l], width)
      width = w
    build(self.target_output, width)
    build(self.source_output, width)
    super().build(input_shape)

  def call(self, target: tf.Tensor, source: tf.Tensor, heads: str = "both",
           training: Optional[bool] = None) -> Dict[str, tf.Tensor]:
    if heads not in _HEADS:
      raise ValueError(f"heads must be one of {_HEADS}, got {heads!r}")
    want = {"target": heads in ("target", "both"), "source": heads in ("source", "both")}
    stacks = {"target": self.target_layers, "source": self.source_layers}
    a = {"target": tf.cast(target, self.compute_dtype),
         "source": tf.cast(source, self.compute_dtype)}
    for l in range(len(self.units)):
      crossed = l < self.num_cross
      nxt = {}
      for d, other in (("target", "source"), ("source", "target")):
        # a^{l+1}_d: for d's own head, or for the other tower's next cross connection H^{l+1}.
        if not (want[d] or l + 1 < self.num_cross):
          continue
        z = stacks[d][l](a[d])
        if crossed:
          z = z + self.cross[l](a[other])
        nxt[d] = self.dropout_layer(tf.nn.relu(z), training=training)
      a = nxt
    outputs = {"target": self.target_output, "source": self.source_output}
    return {d: tf.cast(outputs[d](tf.cast(a[d], tf.float32))[..., 0], tf.float32)
            for d in ("target", "source") if want[d]}

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), "units": list(self.units),
            "cross_layers": self.cross_layers, "dropout": self.dropout,
            "kernel_regularizer": keras.regularizers.serialize(self.kernel_regularizer)}


@keras.utils.register_keras_serializable(package="tfrec")
class CoNet(CMF):
  """CMF's shared user factor feeding two cross-connected towers (module docstring).

  Args:
    num_items: item ids are in [1, num_items].
    cross_layers: how many of the towers' layer transitions carry a cross connection H^l
      (the first ones, from the input [p_u; x] on); None: all of them.
    user_input: "id" (p_u, the trained user factor shared with CMF) or "history" (SEMI A.2:
      the average pooling of both domains' actions).
    mlp_units: widths of both towers (CoNet: halving, 64 -> 32 -> 16 -> 8 from a 64-wide
      input); the logit layers are added.
    **kwargs: `CMF` / `MF` (num_users, l2, item_features, dim, dropout ...); `domains` must
      include "source" (the product history).

  User state: {"user": <float>[batch, dim] p_u, "source": <float>[batch, dim] the mean item
  encoding of the product history (0 without one)}.

  Losses: "bce" (target impressions) and "source" (the product history).
  """

  def __init__(self, num_items: int, cross_layers: Optional[int] = None,
               mlp_units: Sequence[int] = (64, 32, 16), user_input: str = "id", **kwargs):
    super().__init__(num_items, mlp_units=mlp_units, **kwargs)
    if user_input not in USER_INPUTS:
      raise ValueError(f"user_input must be one of {USER_INPUTS}, got {user_input!r}")
    self.user_input = user_input
    if user_input == "history" and tuple(sorted(self.domains)) != ("source", "target"):
      raise ValueError(f"user_input='history' pools both domains' actions: domains must be "
                       f"('target', 'source'), got {self.domains}")
    if "source" not in self.domains:
      raise ValueError(f"CoNet reads the product history: domains must include 'source', got "
                       f"{self.domains}")
    self.towers = CrossTowers(self.mlp_units, cross_layers=cross_layers, dropout=self.dropout,
                              kernel_regularizer=self.regularizer(), name="towers")
    self.cross_layers = self.towers.cross_layers

  def encode_user(self, features: Dict[str, tf.Tensor],
                  training: Optional[bool] = None) -> Dict[str, tf.Tensor]:
    seqs = {d: self.domain_sequence(features, d) for d in self.domains}      # [b, L, d], mask
    source = pooled_mean(*zip(seqs["source"]))
    if self.user_input == "history":  # SEMI A.2: both domains' actions, averaged
      user = pooled_mean(*zip(*seqs.values()))
      return {"user": self.user_dropout(user, training=training), "source": source}
    return {**super().encode_user(features, training=training), "source": source}

  def pair(self, user: tf.Tensor, items: tf.Tensor) -> tf.Tensor:
    """<float>[batch, dim] p_u, <float>[batch, k, dim] x -> <float>[batch, k, 2 dim] [p_u; x]."""
    u = tf.broadcast_to(tf.cast(user, items.dtype)[:, None, :], tf.shape(items))
    return tf.concat([u, items], axis=-1)

  def score(self, user: Dict[str, tf.Tensor], candidate_ids: tf.Tensor,
            training: Optional[bool] = None) -> tf.Tensor:
    cand = self.candidates(candidate_ids)                                      # [b, n, d]
    source = tf.cast(user["source"], cand.dtype)[:, None, :]                   # [b, 1, d]
    return self.towers(self.pair(user["user"], cand), self.pair(user["user"], source),
                       heads="target", training=training)["target"]

  def compute_losses(self, batch: Dict[str, tf.Tensor],
                     training: Optional[bool] = None) -> Dict[str, tf.Tensor]:
    state = self.encode_user(batch, training=training)
    item = tf.cast(batch["item_id"], tf.int64)[:, None]                        # [b, 1]
    bce = self.task(batch["label"], self.score(state, item, training=training)[:, 0])
    seq = tf.cast(batch["source_item_ids"], tf.int64)                         # [b, L]
    negatives = self.source_negatives(seq, training)
    products = self.item_encoder(tf.concat([seq, negatives], axis=1))          # [b, 2L, d]
    logits = self.towers(self.pair(state["user"], self.candidates(item)),
                         self.pair(state["user"], products),
                         heads="source", training=training)["source"]         # [b, 2L]
    pos, neg = tf.split(logits, 2, axis=1)
    return {"bce": bce, "source": implicit_loss(pos, neg, batch["source_mask"])}

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), "cross_layers": self.cross_layers,
            "user_input": self.user_input}


registry.register("conet", CoNet, "CoNet: CMF made deep, the shared user factor and the item in "
                  "a ReLU tower per domain joined by cross connections (ADAPT Table IV)",
                  item_features=("visual", "category"))
