"""MiNet (Ouyang et al., CIKM 2020, "MiNet: Mixed Interest Network for Cross-Domain Click-Through
Rate Prediction", arXiv:2008.02974) as SEMI's Table 1 baseline (9): "jointly models three types
of user interest" (SEMI §4.2.1), trained with the product domain's loss on "the latest clicked
product in the sequence" (SEMI App. A.2). Target domain = micro-videos (`target_*` features),
source domain = products (`source_*`). No equation numbers are cited here: the computation
below follows the paper's §4 in words and its public code (oywtece/minet, minet_para_tune.py),
whose variable names are given in brackets.

    python -m tfrec.train --flagfile=configs/semi/minet.flags

Shapes: e_j <float>[batch, seq, d] the target-domain history (micro-videos), r_j <float>[batch,
seq, d] the source-domain history (products), q <float>[batch, n, d] the n candidates, p_u
<float>[batch, d]; every item encoding comes from the shared item encoder (+ the time block of
the history item with `use_time_blocks`).

  p_u   = mean of the real items of BOTH histories      long-term interest (MiNet: the user's
                                                         feature embeddings, shared by both
                                                         domains; see the differences below)
  Item-level attention, per domain, conditioned on the candidate and the user:
  s_j   = h_T^T ReLU(W_T [e_j; q; p_u; e_j ⊙ q])        target domain [V_1, vv_1]
  s_j   = h_S^T ReLU(W_S [r_j; q; p_u; (M r_j) ⊙ q])    source domain [V_2, vv_2]; M the d x d
                                                         transfer matrix from the source item
                                                         space to the target's (`transfer_dim`
                                                         r: M = A B, A [d, r], B [r, d], the
                                                         code's [H_a, H_b])
  α_j   = softmax of s_j over the domain's real items;  a_T = sum_j α_j e_j,  a_S = sum_j α_j r_j
                                                         short-term interests <float>[batch, n, d]
  Interest-level attention (exp, not softmax: the three weights are not normalised, so an
  interest can be amplified or damped on its own):
  z     = [q; p_u; a_T; a_S]                             <float>[batch, n, 4d]
  w_m   = exp(g_m^T ReLU(G_m z) + b_m),  m in {u, T, S}  [dw_m, dh_m, db_m]; b_u starts at 1,
                                                         b_T and b_S at 0 (the code's *_b_ini)
  logit = MLP([w_u p_u; w_T a_T; w_S a_S; q])            the target CTR head (`mlp_units`, a
                                                         final width-1 layer), BCE ("bce")

Source-domain task (MiNet trains a second CTR network on the source domain's own impressions,
sharing the embeddings; here, as SEMI App. A.2, the latest clicked product is its positive):
  r_+   = the newest real item of the source history; p_u^- = p_u over the target history and
          the source history BEFORE r_+ (the positive is not in the user's input)
  r_-   = one product drawn uniformly from the item store's source items, from the training
          step's seed (`layers.step_random`) in training and CMF's fixed seed outside it
          (`cmf.draw_products`, so CMF, CoNet and MiNet validate against one draw)
  y_S(r) = MLP_S([p_u^-; r])                             the source CTR head [weight_dict_2]
  "source" = softplus(-y_S(r_+)) + softplus(y_S(r_-))    BCE of the positive (1) and the
                                                         negative (0) (`cmf.implicit_loss`),
                                                         0 for a user without product history
Loss = bce + beta * source: `--loss_weights=source=beta` (MiNet's β; its code uses 1).

Differences from MiNet, stated:
  * Long-term interest p_u: MiNet embeds the user's features (user id etc.), shared by both
    domains. SEMI's records carry only the histories for the user (App. A.2 does the same for
    CoNet: "the average pooling of different domains' actions as the user embedding"), so p_u
    is the mean of the item encodings of both histories (0 without any). This keeps the model
    exportable (a `rank` request carries no user id) and `encode_user` candidate-free.
  * MiNet's source-domain network is trained on a separate source-domain dataset of labelled
    impressions; here its positive is the newest product of the row's history and its negative
    one uniformly drawn product, as SEMI App. A.2 describes.
  * The item-level softmax is over the real items only (MiNet's code normalises over the
    padded slots too, whose embeddings are 0); a history without real items gives a_d = 0.
  * Items are encoded from their features by the shared item encoder in one space for both
    domains (MiNet: separate feature fields per domain, hence its transfer matrix, kept here).
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import tensorflow as tf
import tf_keras as keras

from tfrec.layers._utils import clone_initializer
from tfrec.layers.attention import masked_softmax
from tfrec.layers.mlp import MLP
from tfrec.models import registry
from tfrec.models.base import RankingModel
from tfrec.models.cmf import (draw_products, implicit_loss, newest_item, pooled_mean,
                              source_products)

INTERESTS = ("long_term", "target", "source")  # the order of the interest-level weights


@keras.utils.register_keras_serializable(package="tfrec")
class ItemLevelAttention(keras.layers.Layer):
  """MiNet's item-level attention over one domain's history (module docstring).

    s_j = h^T ReLU(W [k_j; q; c; (M k_j) ⊙ q]),  α = masked softmax(s),  out = sum_j α_j k_j

  with M the identity without `transfer`. No biases (MiNet's code has none; a score bias would
  cancel in the softmax anyway).

  Args:
    units: hidden width of the attention MLP (MiNet's code: 64).
    transfer: apply the transfer matrix M to the history items in the product term (the
      source domain).
    transfer_dim: None: M is a full [dim, dim] matrix; r: M = A B with A [dim, r], B [r, dim]
      (MiNet's code: r = 10).
    kernel_initializer: initialiser of every kernel.

  Call args:
    query: <float>[batch, n, dim] the candidates q.
    keys: <float>[batch, seq, dim] the history k_j (keys = values).
    context: <float>[batch, dim] the user c (p_u).
    mask: <bool>[batch, seq], True = real item.
    return_attention_scores: also return α.

  Returns:
    <float>[batch, n, dim]; with `return_attention_scores` also α <float>[batch, n, seq] (0 at
    padding; all 0 for a row without real items, whose output is 0).
  """

  def __init__(self, units: int = 64, transfer: bool = False,
               transfer_dim: Optional[int] = None, kernel_initializer: Any = "glorot_uniform",
               **kwargs):
    super().__init__(**kwargs)
    if int(units) < 1:
      raise ValueError(f"units must be positive, got {units}")
    if transfer_dim is not None and int(transfer_dim) < 1:
      raise ValueError(f"transfer_dim must be positive or None, got {transfer_dim}")
    self.units = int(units)
    self.transfer = bool(transfer)
    self.transfer_dim = None if transfer_dim is None else int(transfer_dim)
    self.kernel_initializer = keras.initializers.get(kernel_initializer)

  def build(self, query_shape: tf.TensorShape) -> None:
    dim = int(tf.TensorShape(query_shape)[-1])
    self._dim = dim

    def weight(name, shape):
      return self.add_weight(name, shape=shape,
                             initializer=clone_initializer(self.kernel_initializer))

    # Rows of `kernel`: [k_j; q; c; (M k_j) ⊙ q], dim each.
    self.kernel = weight("kernel", [4 * dim, self.units])
    self.score_kernel = weight("score_kernel", [self.units, 1])
    self.transfer_kernels = []
    if self.transfer:
      shapes = ([[dim, dim]] if self.transfer_dim is None
                else [[dim, self.transfer_dim], [self.transfer_dim, dim]])
      self.transfer_kernels = [weight(f"transfer_{i}", s) for i, s in enumerate(shapes)]
    super().build(query_shape)

  def call(self, query: tf.Tensor, keys: tf.Tensor, context: tf.Tensor, mask: tf.Tensor,
           return_attention_scores: bool = False):
    dtype = self.compute_dtype
    q, k, c = (tf.cast(t, dtype) for t in (query, keys, context))
    mask = tf.cast(mask, tf.bool)
    w = tf.cast(self.kernel, dtype)
    d = self._dim
    w_k, w_q, w_c, w_x = w[:d], w[d:2 * d], w[2 * d:3 * d], w[3 * d:]
    mk = k
    for m in self.transfer_kernels:
      mk = tf.matmul(mk, tf.cast(m, dtype))                                  # [b, L, d]
    # W [k; q; c; Mk ⊙ q] as the sum of its four blocks: the [b, n, L, 4d] concatenation is
    # never built, only the product term is per (candidate, item).
    hidden = (tf.matmul(k, w_k)[:, None, :, :]                               # [b, 1, L, H]
              + tf.matmul(q, w_q)[:, :, None, :]                             # [b, n, 1, H]
              + tf.matmul(c, w_c)[:, None, None, :]                          # [b, 1, 1, H]
              + tf.einsum("bnld,dh->bnlh", mk[:, None, :, :] * q[:, :, None, :], w_x))
    scores = tf.einsum("bnlh,h->bnl", tf.nn.relu(hidden),
                       tf.cast(self.score_kernel, dtype)[:, 0])              # [b, n, L]
    weights = masked_softmax(scores, mask[:, None, :], axis=-1)
    values = tf.where(mask[..., None], k, tf.zeros_like(k))
    out = tf.einsum("bnl,bld->bnd", weights, values)
    return (out, weights) if return_attention_scores else out

  def compute_mask(self, inputs, mask=None):
    return None

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), "units": self.units, "transfer": self.transfer,
            "transfer_dim": self.transfer_dim,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer)}


@keras.utils.register_keras_serializable(package="tfrec")
class InterestLevelAttention(keras.layers.Layer):
  """MiNet's interest-level attention: one unnormalised weight per interest (module docstring).

    w_m = exp(g_m^T ReLU(G_m z) + b_m),  m = 0 .. len(initial_biases) - 1

  Args:
    units: hidden width of each interest's MLP (MiNet's code: 64).
    initial_biases: b_m's initial values, one per interest (MiNet's code: 1 for the long-term
      interest, 0 for the two domains' interests).
    kernel_initializer: initialiser of G_m and g_m.

  Call args:
    z: <float>[batch, n, width] [q; p_u; a_T; a_S].

  Returns:
    <float32>[batch, n, interests] the weights w_m (> 0).
  """

  def __init__(self, units: int = 64, initial_biases: Sequence[float] = (1.0, 0.0, 0.0),
               kernel_initializer: Any = "glorot_uniform", **kwargs):
    super().__init__(**kwargs)
    if int(units) < 1 or not len(initial_biases):
      raise ValueError(f"units must be positive and initial_biases non-empty, got {units}, "
                       f"{initial_biases}")
    self.units = int(units)
    self.initial_biases = [float(b) for b in initial_biases]
    self.kernel_initializer = keras.initializers.get(kernel_initializer)

  def build(self, z_shape: tf.TensorShape) -> None:
    width = int(tf.TensorShape(z_shape)[-1])
    m = len(self.initial_biases)
    init = keras.initializers.get(self.kernel_initializer)
    self.hidden_kernels = [self.add_weight(f"hidden_kernel_{i}", shape=[width, self.units],
                                           initializer=clone_initializer(init))
                           for i in range(m)]
    self.score_kernels = [self.add_weight(f"score_kernel_{i}", shape=[self.units, 1],
                                          initializer=clone_initializer(init))
                          for i in range(m)]
    self.bias = self.add_weight("bias", shape=[m],
                                initializer=keras.initializers.Constant(self.initial_biases))
    super().build(z_shape)

  def call(self, z: tf.Tensor) -> tf.Tensor:
    dtype = self.compute_dtype
    z = tf.cast(z, dtype)
    logits = [tf.matmul(tf.nn.relu(tf.matmul(z, tf.cast(g, dtype))), tf.cast(s, dtype))
              for g, s in zip(self.hidden_kernels, self.score_kernels)]
    logits = tf.cast(tf.concat(logits, axis=-1), tf.float32)                 # [b, n, m]
    return tf.exp(logits + tf.cast(self.bias, tf.float32))

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), "units": self.units,
            "initial_biases": list(self.initial_biases),
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer)}


@keras.utils.register_keras_serializable(package="tfrec")
class MiNet(RankingModel):
  """MiNet's item- and interest-level attention and its source-domain task (module docstring).

  Args:
    num_items: item ids in [1, num_items].
    item_attention_units: hidden width of both item-level attention MLPs (MiNet: 64).
    interest_attention_units: hidden width of the interest-level attention MLPs (MiNet: 64).
    transfer_dim: rank of the source domain's transfer matrix M; None: a full [dim, dim] M.
    domains: both ("target", "source"), in either order.
    mlp_units: hidden widths of the target head and of the source head (MiNet's code:
      256 -> 128; a final width-1 layer is added to each).
    **kwargs: `RankingModel` (dim, item features, dropout of both heads, time blocks ...).

  User state: {"target_history", "source_history": <float>[batch, seq, dim] (0 at padding),
  "target_mask", "source_mask": <bool>[batch, seq], "long_term": <float>[batch, dim] p_u}; the
  item-level attention runs per candidate in `score` (it reads the candidate).
  Losses: "bce" (the target impressions) and "source" (the newest product), <float32>[batch].
  """

  LOSSES = ("bce", "source")

  def __init__(self, num_items: int, item_attention_units: int = 64,
               interest_attention_units: int = 64, transfer_dim: Optional[int] = None,
               domains: Sequence[str] = ("target", "source"),
               mlp_units: Sequence[int] = (256, 128), **kwargs):
    super().__init__(num_items, domains=domains, mlp_units=mlp_units, **kwargs)
    if tuple(sorted(self.domains)) != ("source", "target"):
      raise ValueError(f"MiNet reads both domains' histories; got domains {self.domains}")
    self.item_attention_units = int(item_attention_units)
    self.interest_attention_units = int(interest_attention_units)
    self.transfer_dim = None if transfer_dim is None else int(transfer_dim)
    self.target_attention = ItemLevelAttention(self.item_attention_units,
                                               name="target_item_attention")
    self.source_attention = ItemLevelAttention(self.item_attention_units, transfer=True,
                                               transfer_dim=self.transfer_dim,
                                               name="source_item_attention")
    self.interest_attention = InterestLevelAttention(self.interest_attention_units,
                                                     name="interest_attention")
    # The source CTR head; float32 logits as the target head's.
    self.source_mlp = MLP(list(self.mlp_units) + [1], dropout=self.dropout, linear_output=True,
                          name="source_mlp", dtype="float32")
    self._products = None  # the source-domain item ids, set by build_and_fill

  def build_and_fill(self, item_store: Any) -> "MiNet":
    super().build_and_fill(item_store)
    self._products = source_products(item_store, "MiNet")
    # The source head's weights exist from the start (checkpoints hold every weight).
    self.source_logits(tf.zeros([1, self.dim]), tf.zeros([1, 1, self.dim]))
    return self

  # ------------------------------------------------------------------ scoring

  @staticmethod
  def pooled(histories: Sequence[tf.Tensor], masks: Sequence[tf.Tensor]) -> tf.Tensor:
    """p_u: the mean of the real items of all `histories` (`cmf.pooled_mean`)."""
    return pooled_mean(histories, masks)

  def encode_user(self, features: Dict[str, tf.Tensor],
                  training: Optional[bool] = None) -> Dict[str, tf.Tensor]:
    user = {}
    for d in ("target", "source"):
      user[f"{d}_history"], user[f"{d}_mask"] = self.domain_sequence(features, d)
    user["long_term"] = self.pooled([user["target_history"], user["source_history"]],
                                    [user["target_mask"], user["source_mask"]])
    return user

  def interests(self, user: Dict[str, tf.Tensor], cand: tf.Tensor,
                return_attention_scores: bool = False) -> Dict[str, tf.Tensor]:
    """The three interests and their weights for candidates `cand` <float>[batch, n, dim]:
    {"long_term": p_u <float>[batch, dim], "target": a_T, "source": a_S <float>[batch, n, dim],
    "weights": w <float32>[batch, n, 3] (order `INTERESTS`)}; with `return_attention_scores`
    also "target_alpha", "source_alpha" <float>[batch, n, seq] (the item-level weights)."""
    p_u = tf.cast(user["long_term"], cand.dtype)
    out = {"long_term": p_u}
    for d, layer in (("target", self.target_attention), ("source", self.source_attention)):
      got = layer(cand, user[f"{d}_history"], p_u, user[f"{d}_mask"],
                  return_attention_scores=return_attention_scores)
      if return_attention_scores:
        got, out[f"{d}_alpha"] = got
      out[d] = tf.cast(got, cand.dtype)
    p_n = tf.broadcast_to(p_u[:, None, :], tf.shape(cand))
    out["weights"] = self.interest_attention(tf.concat([cand, p_n, out["target"],
                                                        out["source"]], axis=-1))
    return out

  def score(self, user: Dict[str, tf.Tensor], candidate_ids: tf.Tensor,
            training: Optional[bool] = None) -> tf.Tensor:
    cand = self.candidates(candidate_ids)                                    # [b, n, d]
    got = self.interests(user, cand)
    w = tf.cast(got["weights"], cand.dtype)                                  # [b, n, 3]
    p_n = tf.broadcast_to(got["long_term"][:, None, :], tf.shape(cand))
    parts = [w[..., 0:1] * p_n, w[..., 1:2] * got["target"], w[..., 2:3] * got["source"]]
    return self.logits(parts + [cand], training=training)

  # ------------------------------------------------------------------ the source task

  def source_logits(self, user: tf.Tensor, items: tf.Tensor,
                    training: Optional[bool] = None) -> tf.Tensor:
    """y_S = MLP_S([p_u; r]): <float>[batch, dim] p_u, <float>[batch, k, dim] r ->
    <float32>[batch, k] source-domain logits."""
    items = tf.cast(items, tf.float32)
    u = tf.broadcast_to(tf.cast(user, tf.float32)[:, None, :], tf.shape(items))
    return tf.cast(self.source_mlp(tf.concat([u, items], axis=-1), training=training)[..., 0],
                   tf.float32)

  def compute_losses(self, batch: Dict[str, tf.Tensor],
                     training: Optional[bool] = None) -> Dict[str, tf.Tensor]:
    user = self.encode_user(batch, training=training)
    item = tf.cast(batch["item_id"], tf.int64)[:, None]                      # [b, 1]
    bce = self.task(batch["label"], self.score(user, item, training=training)[:, 0])
    positive, before, has = newest_item(batch["source_item_ids"], user["source_mask"])
    p_before = self.pooled([user["target_history"], user["source_history"]],
                           [user["target_mask"], before])
    negative = draw_products(self._products, positive, training)                     # [b, 1]
    logits = self.source_logits(p_before, self.item_encoder(tf.concat([positive, negative], 1)),
                                training=training)                           # [b, 2]
    source = implicit_loss(logits[:, :1], logits[:, 1:], has)
    return {"bce": bce, "source": source}

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), "item_attention_units": self.item_attention_units,
            "interest_attention_units": self.interest_attention_units,
            "transfer_dim": self.transfer_dim}


registry.register("minet", MiNet, "MiNet (SEMI Table 1): item-level attention per domain on "
                  "the candidate and the user, exp interest-level attention over long-term, "
                  "micro-video and product interests; source task on the newest product")
