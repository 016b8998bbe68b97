"""M5: Multi-Modal Multi-Interest Multi-Scenario Matching (Zhao et al., KDD 2023, §4, eq. 1-9), on
the retrieval contract (`tfrec.models.retrieval`).

Two mirrored channels c in {ID, CG}, each a two-tower model (§4.1):

  E^ID(i)  the item encoder's id embedding (`item_features=("id",)`)                   §4.2.1
  E^CG(i)  a row of the CG table, initialised from GraphSAGE's node embeddings
           (`cg_init`: a dataset dir holding `cg_embeddings.npy`, or the file; checked by
           `graphsage.load_cg_embeddings`; assigned when training starts, `before_training`)
           and trained on (`cg_trainable`); without `cg_init` it starts random (glorot
           uniform) and the CG channel is a second, differently initialised id channel.
           `cg_source="raw"` (w/ Raw Metadata): x(i) W from the item store's metadata instead
           (`tfrec.layers.metadata_embedding`)
  buckets  each behaviour's item kind (the item store's `kind`; kind 0 "no kind", e.g. the
           source domain, is a bucket of its own): K = num_item_kinds + 1 interests    §4.3.1
  s_j      `subsidiary_features`: watch count, playback hours, hours per watch, days since,
           position (log1p)                                                           §4.3.1
  ID:  H = Transformer_L(E^ID(m_j) + P[pos_j] + s_j W_s), within buckets; v^ID_k =
       sum_{j in k} int^ID_j h_j, int^ID = SIN with a linear layer (eq. 3)             §4.3.2-3
  CG:  v^CG_k = sum_{j in k} int^CG_j E^CG(m_j), SIN with [384, 384, 1] on the raw CG
       embeddings ("without further rectification")                                  §4.3.3
  p        the user profile and context: an 8-wide embedding per user feature, of the hour of
           day and of the weekday of the request, and log1p(days since the newest behaviour)
  f^c_s    = ScenarioIndicator^c([v^c_0, ..., v^c_{K-1}, W^c p], s)                  §4.4.1
  u^c      = SMoE^c(f^c_s, s)                                                        eq. 4
  L_DIS    = the mean over the two channels of eq. 5 (per example)                   eq. 5
  w        = sigmoid(MLP([p, z_s]))   the dynamic weighting network (z_s: the ID channel's
           scenario indicator)                                                        §4.5
  f(u, i)  = w u^ID . E^ID(i) + (1 - w) u^CG . E^CG(i)                              eq. 6
           = [w u^ID, (1 - w) u^CG] . [E^ID(i); E^CG(i)]:  the query (`encode_query`,
           <float32>[batch, dim + cg_dim]) and the item vector (`encode_items`), so the plain
           dot product of the contract, `score`, evaluation and the exported `retrieve`
           compute eq. 6 (one query per user: the K bucket interests are fields of the
           SMoE's input, not K queries)
  L_Match  softmax cross-entropy of f over the corpus (eq. 7-8): `negatives="full"`, as the
           paper ("we do not perform any negative sampling": < 100K shows); "sampled"
           (log-q corrected) or "in_batch" where the corpus is too large
  L_MLM    eq. 2: 15% of each row's real behaviours (at least one) get the [MASK] vector as
           their main-id input, subsidiary embeddings kept; the final hidden states there ->
           softmax over every item's ID embedding; per example the mean over its masked
           positions (0 for a row without behaviours)
  L        = L_Match + 0.1 L_MLM + 0.1 L_DIS (eq. 9): the core's loss weights; M5's defaults
           are alpha = beta = 0.1 (`DEFAULT_LOSS_WEIGHTS`), `--loss_weights=name=x` overrides
           either

Reading choices, stated (beyond those of the layers, each in its docstring):
  * MLM runs on a second pass of the ID transformer over the masked sequence; the matching
    loss sees the unmasked sequence, as serving does (`mlm_shared_pass=True`: one masked pass
    for both). The mask rate is BERT's 15% (the paper gives none).
  * The profile enters each channel as one field (a linear map to the channel's width), so the
    indicator crosses it like the bucket interests; demographic and context embeddings are 8
    wide (§5.1.3's "8 for ... other demographic features").
  * The transformer's dropout is the model's `dropout` (0.1 in the preset; not in the paper);
    SMoE and the weighting network: hidden 768, 0.1 dropout on their inputs (§5.1.3); the
    paper gives no expert count (`num_experts` 4).
  * Served requests (`tfrec.serving.retrieval`: `USES_SCENARIO`, `USES_SUBSIDIARY`) carry
    `scenario_id` and `seq_subsidiary`; features without them (a caller of `encode_query` in
    Python) take `serving_scenario` and zero watch counts and hours.

Table 2's variants (model arguments): `multi_modal=False` (w/o MM: the ID channel alone, w = 1,
items E^ID); `cg_source="raw"` (w/ Raw Metadata, §5.3.1: E^CG(i) = [E_cat[category(i)]; mean
of i's tag embeddings; mean of its title-token embeddings] W, padding ids 0 left out of the
means: the paper's concatenation of genres, brands and texts, mapped linearly to cg_dim so the
same CG layers apply; its tables and W are trained, no `cg_init`; the model carries the
store's columns, so an export scores eq. 6 as before, and `cg_metadata.encode_features` gives an
item known by its columns alone its E^CG, though `serving.add_items` refuses M5: E^ID has no row
for a new id); `channels="single"` (w/
Single Channel, §5.3.1: no dynamic weight; query = MLP_u([u^ID, u^CG]), item = MLP_i([E^ID(i);
E^CG(i)]), both two-layer swish networks (hidden `mlp_hidden`, dropout `mlp_dropout` on their
inputs) `dim` wide, score = their dot product); `multi_interest=False` (w/o MI: sum pooling of
the whole ID and CG sequences, no buckets, decoration, self-attention, SIN or MLM);
`bucketing=False, subsidiary=False` (w/o Bucket & Sub); `self_attention="none"` (w/ SIN),
`"both", sin=False` (w/ SA), `"both"` (w/ SA-SIN); `mlm=False`; `num_layers`;
`multi_scenario=False` (w/o MS: no indicator, a two-layer MLP instead of SMoE);
`indicator=False` (w/o idx); `disagreement=False` (w/o dis); `mixing="cgc"` / `"ple"` (w/ CGC /
PLE).
"""

from __future__ import annotations

import os
from typing import Any, Dict, Mapping, Optional, Sequence

import numpy as np
import tensorflow as tf
import tf_keras as keras

from tfrec.data import schema
from tfrec.layers import step_random
from tfrec.layers.interest_extraction import REDUCTIONS, InterestExtraction
from tfrec.layers.metadata_embedding import MetadataEmbedding
from tfrec.layers.ple import CustomizedGateControl, ProgressiveLayeredExtraction
from tfrec.layers.scenario_indicator import ScenarioIndicator
from tfrec.layers.split_moe import SplitMixtureOfExperts, TwoLayerNetwork, disagreement_loss
from tfrec.layers.subsidiary_intensity import subsidiary_feature_names, subsidiary_features
from tfrec.layers.user_embedding import profile_sizes
from tfrec.models import registry
from tfrec.models.bert4sessrec import choose_masked_positions
from tfrec.models.graphsage import EMBEDDINGS_FILE, load_cg_embeddings
from tfrec.models.retrieval import SEQ, RetrievalModel

MIXINGS = ("smoe", "cgc", "ple")
SELF_ATTENTION = ("id", "both", "none")
CG_SOURCES = ("graph", "raw")   # E^CG: GraphSAGE's table (the paper) or raw metadata (§5.3.1)
CHANNELS = ("two", "single")    # eq. 6's two weighted channels, or one MLP-fused (§5.3.1)
NUM_SUBSIDIARY = len(subsidiary_feature_names(with_time=True))
_FIXED_MASK_SEED = (20230806, 0)  # MLM positions outside a training step (validation)


@keras.utils.register_keras_serializable(package="tfrec")
class M5(RetrievalModel):
  """M5 (module docstring).

  Args:
    num_scenarios: scenario ids are in [0, num_scenarios) (`DatasetInfo.num_scenarios`).
    num_item_kinds: item kinds are in [0, num_item_kinds] (`DatasetInfo.num_item_kinds`).
    user_feature_sizes: the vocabulary of each user-profile feature.
    cg_init: a dataset directory holding `cg_embeddings.npy` (+ .json), or that file; None:
      a random CG table.
    cg_dim: width of the CG channel (default: `dim`); must match `cg_init`'s table.
    cg_trainable: train the CG table (the paper: "initialized by" the graph's embeddings).
    cg_source: "graph" (the CG table above) or "raw" (w/ Raw Metadata: E^CG from the item
      store's category, tags and title, `MetadataEmbedding`; needs num_categories, num_tags
      or num_tokens; refuses cg_init and cg_trainable=False).
    channels: "two" (eq. 6) or "single" (w/ Single Channel: MLPs fuse the channels on both
      sides, no dynamic weight; module docstring).
    multi_modal, multi_interest, multi_scenario, bucketing, subsidiary, self_attention, sin,
      mlm, indicator, disagreement, mixing: Table 2's switches (module docstring).
    num_layers, num_heads, ff_dim: the transformer (§5.1.3: 3, 2, 512).
    mask_rate: share of each row's real behaviours masked for MLM.
    mlm_shared_pass: one masked pass for the matching and MLM losses (module docstring).
    num_experts, mlp_hidden, mlp_dropout: SMoE / CGC / PLE and the weighting network (4, 768,
      0.1); routing: "partition" or "dense" (`split_moe`).
    id_sin_units, cg_sin_units: SIN's hidden widths per channel ((), (384, 384)).
    pooling: "sum" (the paper's weighted sum) or "mean" within a bucket.
    profile_dim: width of each user-feature and context embedding.
    serving_scenario: the scenario of a request without `scenario_id` (module docstring).
    **kwargs: `RetrievalModel` (dim 128, item_features ("id",), negatives "full").

  Losses: "softmax" (eq. 7-8), "mlm" (eq. 2), "disagreement" (eq. 5), each per example.
  """

  LOSSES = ("softmax", "mlm", "disagreement")
  MONITOR = ("softmax_loss", "min")  # the matching objective picks the checkpoint
  USES_USER_FEATURES = True
  USES_SCENARIO = True     # `retrieve` requests carry scenario_id
  USES_SUBSIDIARY = True   # and seq_subsidiary (tfrec.serving.retrieval)
  DEFAULT_LOSS_WEIGHTS = {"mlm": 0.1, "disagreement": 0.1}  # eq. 9's alpha and beta

  def __init__(self, num_items: int, num_scenarios: int = 4, num_item_kinds: int = 0,
               user_feature_sizes: Sequence[int] = (2, 7, 21, 11),
               cg_init: Optional[str] = None, cg_dim: Optional[int] = None,
               cg_trainable: bool = True, cg_source: str = "graph", channels: str = "two",
               multi_modal: bool = True,
               multi_interest: bool = True, multi_scenario: bool = True,
               bucketing: bool = True, subsidiary: bool = True, self_attention: str = "id",
               sin: bool = True, mlm: bool = True, indicator: bool = True,
               disagreement: bool = True, mixing: str = "smoe", num_layers: int = 3,
               num_heads: int = 2, ff_dim: int = 512, mask_rate: float = 0.15,
               mlm_shared_pass: bool = False, num_experts: int = 4, mlp_hidden: int = 768,
               mlp_dropout: float = 0.1, routing: str = "partition",
               id_sin_units: Sequence[int] = (), cg_sin_units: Sequence[int] = (384, 384),
               pooling: str = "sum", profile_dim: int = 8, serving_scenario: int = 0,
               **kwargs):
    kwargs.setdefault("dim", 128)
    kwargs.setdefault("item_features", ("id",))
    kwargs.setdefault("negatives", "full")
    super().__init__(num_items, **kwargs)
    if self.negatives == "queue":
      raise ValueError("M5 trains with negatives 'full' (the paper), 'sampled' or 'in_batch': "
                       "the queue holds dim + 1 wide rows, M5's items are dim + cg_dim wide")
    if mixing not in MIXINGS:
      raise ValueError(f"mixing must be one of {MIXINGS}, got {mixing!r}")
    if self_attention not in SELF_ATTENTION:
      raise ValueError(f"self_attention must be one of {SELF_ATTENTION}, got "
                       f"{self_attention!r}")
    if cg_source not in CG_SOURCES:
      raise ValueError(f"cg_source must be one of {CG_SOURCES}, got {cg_source!r}")
    if channels not in CHANNELS:
      raise ValueError(f"channels must be one of {CHANNELS}, got {channels!r}")
    if not multi_modal and (cg_source != "graph" or channels != "two"):
      raise ValueError(f"cg_source={cg_source!r} and channels={channels!r} are about the CG "
                       "channel: multi_modal=False has none (leave them at 'graph', 'two')")
    if cg_source == "raw" and cg_init:
      raise ValueError(f"cg_init={cg_init!r} is GraphSAGE's table; cg_source='raw' builds the "
                       "CG embeddings from the item store's metadata: leave cg_init unset")
    if cg_source == "raw" and not cg_trainable:
      raise ValueError("cg_trainable=False freezes GraphSAGE's table; cg_source='raw' trains "
                       "its metadata embeddings (nothing pre-trained to keep)")
    if pooling not in REDUCTIONS:
      raise ValueError(f"pooling must be one of {REDUCTIONS}, got {pooling!r}")
    if not 0.0 < mask_rate <= 1.0:
      raise ValueError(f"mask_rate must be in (0, 1], got {mask_rate}")
    if num_scenarios < 1 or num_item_kinds < 0:
      raise ValueError(f"num_scenarios must be >= 1 and num_item_kinds >= 0, got "
                       f"{num_scenarios}, {num_item_kinds}")
    if not 0 <= serving_scenario < num_scenarios:
      raise ValueError(f"serving_scenario {serving_scenario} is not in [0, {num_scenarios})")
    self.user_feature_sizes = profile_sizes(user_feature_sizes)
    self.num_scenarios, self.num_item_kinds = int(num_scenarios), int(num_item_kinds)
    self.cg_init = cg_init or None
    self.cg_dim = int(cg_dim) if cg_dim else self.dim
    self.cg_trainable = bool(cg_trainable)
    self.cg_source, self.channels = cg_source, channels
    self.multi_modal, self.multi_interest = bool(multi_modal), bool(multi_interest)
    self.multi_scenario, self.bucketing = bool(multi_scenario), bool(bucketing)
    self.subsidiary, self.self_attention = bool(subsidiary), self_attention
    self.sin, self.mlm = bool(sin), bool(mlm)
    self.indicator, self.disagreement = bool(indicator), bool(disagreement)
    self.mixing, self.num_layers = mixing, int(num_layers)
    self.num_heads, self.ff_dim = int(num_heads), int(ff_dim)
    self.mask_rate, self.mlm_shared_pass = float(mask_rate), bool(mlm_shared_pass)
    self.num_experts, self.mlp_hidden = int(num_experts), int(mlp_hidden)
    self.mlp_dropout, self.routing = float(mlp_dropout), routing
    self.id_sin_units = tuple(int(u) for u in id_sin_units)
    self.cg_sin_units = tuple(int(u) for u in cg_sin_units)
    self.pooling, self.profile_dim = pooling, int(profile_dim)
    self.serving_scenario = int(serving_scenario)
    self._loss_weights.update(self.DEFAULT_LOSS_WEIGHTS)

    # What runs, after the switches that imply others (w/o MI drops the whole layer).
    mi = self.multi_interest
    self.uses_buckets = mi and self.bucketing
    self.uses_subsidiary = mi and self.subsidiary
    self.uses_mlm = mi and self.mlm and self_attention in ("id", "both")
    self.uses_indicator = self.multi_scenario and self.indicator
    self.uses_disagreement = self.multi_scenario and self.disagreement
    self.num_buckets = self.num_item_kinds + 1 if self.uses_buckets else 1

    self.item_kind = self.add_weight("item_kind", shape=[self.num_items + 1], dtype=tf.int32,
                                     initializer="zeros", trainable=False)
    self.cg_embeddings = self.cg_metadata = None
    if self.multi_modal and self.cg_source == "graph":
      self.cg_embeddings = self.add_weight(
          "cg_embeddings", shape=[self.num_items + 1, self.cg_dim],
          initializer="glorot_uniform", trainable=self.cg_trainable)
    elif self.multi_modal:  # w/ Raw Metadata
      self.cg_metadata = MetadataEmbedding(
          self.num_items, self.cg_dim, num_categories=self.num_categories,
          num_tags=self.num_tags, num_tokens=self.num_tokens, name="cg_metadata")
    self.id_extraction = self._extraction("id", self_attention in ("id", "both"),
                                          self.id_sin_units)
    self.cg_extraction = (self._extraction("cg", self_attention == "both", self.cg_sin_units)
                          if self.multi_modal else None)
    self.user_embeddings = [keras.layers.Embedding(n, self.profile_dim, name=f"user_{name}")
                            for n, name in zip(self.user_feature_sizes,
                                               schema.USER_FEATURE_NAMES)]
    self.hour_embeddings = keras.layers.Embedding(24, self.profile_dim, name="hour_of_day")
    self.weekday_embeddings = keras.layers.Embedding(7, self.profile_dim, name="day_of_week")
    channels = [("id", self.dim)] + ([("cg", self.cg_dim)] if self.multi_modal else [])
    self.profile_fields = {c: keras.layers.Dense(width, name=f"{c}_profile_field")
                           for c, width in channels}
    self.indicators = {c: ScenarioIndicator(self.num_scenarios, width, name=f"{c}_indicator")
                       for c, width in channels if self.uses_indicator}
    self.mixers = {c: self._mixer(c, width) for c, width in channels}
    two = self.multi_modal and self.channels == "two"
    self.weighting = self._mlp(1, "weighting") if two else None
    single = self.multi_modal and self.channels == "single"  # w/ Single Channel's two fusing MLPs
    self.single_query = self._mlp(self.dim, "single_query") if single else None
    self.single_item = self._mlp(self.dim, "single_item") if single else None

  def _mlp(self, width: int, name: str) -> TwoLayerNetwork:
    return TwoLayerNetwork(self.mlp_hidden, width, keras.activations.get("swish"),
                           self.mlp_dropout, "glorot_uniform", name=name)

  def _extraction(self, channel: str, attention: bool, sin_units) -> InterestExtraction:
    mi = self.multi_interest
    return InterestExtraction(
        self.num_buckets, self.max_seq_len, NUM_SUBSIDIARY, self_attention=mi and attention,
        sin=mi and self.sin, decorate=self.uses_subsidiary,
        mask_token=channel == "id" and self.uses_mlm, num_layers=self.num_layers,
        num_heads=self.num_heads, ff_dim=self.ff_dim, dropout=self.dropout,
        sin_hidden_units=sin_units, reduction=self.pooling, name=f"{channel}_extraction")

  def _mixer(self, channel: str, width: int) -> keras.layers.Layer:
    common = dict(hidden_dim=self.mlp_hidden, dropout=self.mlp_dropout, routing=self.routing,
                  name=f"{channel}_{self.mixing if self.multi_scenario else 'mlp'}")
    if not self.multi_scenario:  # w/o MS: "changes SMoE to an MLP"
      return TwoLayerNetwork(self.mlp_hidden, width, keras.activations.get("swish"),
                             self.mlp_dropout, "glorot_uniform", name=common["name"])
    if self.mixing == "smoe":
      return SplitMixtureOfExperts(self.num_scenarios, width, num_experts=self.num_experts,
                                   **common)
    if self.mixing == "cgc":
      return CustomizedGateControl(self.num_scenarios, width, **common)
    return ProgressiveLayeredExtraction(self.num_scenarios, width, **common)

  def cg_items(self, item_ids: tf.Tensor) -> tf.Tensor:
    """E^CG <float32>[..., cg_dim] of items <int>[...]: the CG table's rows, or with
    cg_source="raw" their metadata's `MetadataEmbedding`. Needs multi_modal."""
    ids = tf.cast(item_ids, tf.int32)
    if self.cg_metadata is not None:
      return tf.cast(self.cg_metadata(ids), tf.float32)
    return tf.cast(tf.gather(self.cg_embeddings, ids), tf.float32)

  # ------------------------------------------------------------------ the user tower

  def behaviours(self, features: Mapping[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """The behaviour sequence's parts: ids <int64>[b, l], mask <bool>[b, l], buckets
    <int32>[b, l], subsidiary <float32>[b, l, n] (zeros when `subsidiary` is off or the
    request carries no `seq_subsidiary`)."""
    ids = tf.cast(features[SEQ], tf.int64)
    mask = tf.cast(features["seq_mask"], tf.bool)
    if self.uses_buckets:
      buckets = tf.where(mask, tf.gather(self.item_kind, tf.cast(ids, tf.int32)), 0)
    else:
      buckets = tf.zeros_like(ids, tf.int32)
    shape = tf.concat([tf.shape(ids), [schema.NUM_SUBSIDIARY]], 0)
    raw = features.get("seq_subsidiary")
    raw = tf.zeros(shape, tf.float32) if raw is None else raw
    if self.uses_subsidiary:
      sub = subsidiary_features(raw, mask, features["seq_timestamps"], features["timestamp"])
    else:
      sub = tf.zeros(tf.concat([tf.shape(ids), [NUM_SUBSIDIARY]], 0), tf.float32)
    return {"ids": ids, "mask": mask, "buckets": buckets, "subsidiary": sub}

  def profile(self, features: Mapping[str, tf.Tensor], mask: tf.Tensor) -> tf.Tensor:
    """p <float32>[b, 4 profile_dim + 2 profile_dim + 1]: user features, hour, weekday and
    log1p(days since the newest behaviour) (0 without one)."""
    users = tf.cast(features["user_features"], tf.int32)
    parts = [emb(users[:, f]) for f, emb in enumerate(self.user_embeddings)]
    now = tf.cast(features["timestamp"], tf.int64)
    parts.append(self.hour_embeddings((now // 3600) % 24))
    parts.append(self.weekday_embeddings((now // 86400 + 3) % 7))  # 1970-01-01: a Thursday
    times = tf.where(mask, tf.cast(features["seq_timestamps"], tf.int64), 0)
    newest = tf.reduce_max(times, axis=1)
    days = tf.maximum(tf.cast(now - newest, tf.float32), 0.0) / 86400.0
    has = tf.cast(tf.reduce_any(mask, axis=1), tf.float32)
    parts.append((tf.math.log1p(days) * has)[:, None])
    return tf.concat([tf.cast(p, tf.float32) for p in parts], axis=-1)

  def scenarios(self, features: Mapping[str, tf.Tensor], batch: tf.Tensor) -> tf.Tensor:
    if "scenario_id" in features:
      return tf.cast(features["scenario_id"], tf.int32)
    return tf.fill([batch], self.serving_scenario)

  def _mix(self, channel: str, interests: tf.Tensor, profile: tf.Tensor, scenario: tf.Tensor,
           training: Optional[bool]):
    """(u^c <float32>[b, width], eq. 5 per example <float32>[b] or None)."""
    field = self.profile_fields[channel](profile)
    fields = tf.concat([interests, tf.cast(field, interests.dtype)[:, None]], axis=1)
    if self.uses_indicator:
      x = self.indicators[channel](fields, scenario)                      # §4.4.1
    else:
      x = tf.reshape(fields, [-1, fields.shape[1] * fields.shape[2]])
    mixer = self.mixers[channel]
    if not self.multi_scenario:
      return tf.cast(mixer(x, training=training), tf.float32), None
    u, parts = mixer(x, scenario, training=training, return_experts=True)  # eq. 4
    dis = disagreement_loss(parts["experts"]) if self.uses_disagreement else None
    return tf.cast(u, tf.float32), dis

  def user_parts(self, features: Mapping[str, tf.Tensor], training: Optional[bool] = None,
                 masked: Optional[tf.Tensor] = None) -> Dict[str, tf.Tensor]:
    """Everything the query is made of: "u_id" <[b, dim]>, "u_cg" <[b, cg_dim]> (multi-modal),
    "w" <[b, 1]> (1 without CG; absent with channels="single"), "query" (module docstring),
    "interests_id" <[b, K, dim]>, "interests_cg", "id_sequence" (the ID transformer's H),
    "disagreement" <[b]>.
    `masked` <bool>[b, l]: the ID inputs replaced by [MASK] (MLM's shared pass)."""
    seq = self.behaviours(features)
    mask, buckets, sub = seq["mask"], seq["buckets"], seq["subsidiary"]
    batch = tf.shape(mask)[0]
    scenario = self.scenarios(features, batch)
    profile = self.profile(features, mask)
    out = {}
    id_in = self.item_encoder(seq["ids"])
    out["interests_id"], out["id_sequence"] = self.id_extraction(
        id_in, buckets, mask, sub, masked=masked, training=training, return_sequence=True)
    out["u_id"], dis_id = self._mix("id", out["interests_id"], profile, scenario, training)
    losses = [d for d in (dis_id,) if d is not None]
    if not self.multi_modal:
      out["w"] = tf.ones([batch, 1], tf.float32)
      out["query"] = out["u_id"]
    else:
      cg_in = self.cg_items(seq["ids"])
      out["interests_cg"] = self.cg_extraction(cg_in, buckets, mask, sub, training=training)
      out["u_cg"], dis_cg = self._mix("cg", out["interests_cg"], profile, scenario, training)
      losses += [d for d in (dis_cg,) if d is not None]
    if self.single_query is not None:  # w/ Single Channel: one user vector, no w
      both = tf.concat([out["u_id"], out["u_cg"]], axis=-1)
      out["query"] = tf.cast(self.single_query(both, training=training), tf.float32)
    elif self.multi_modal:
      inputs = [profile]
      if self.uses_indicator:
        inputs.append(tf.cast(self.indicators["id"].indicator(scenario), tf.float32))
      w = tf.sigmoid(tf.cast(self.weighting(tf.concat(inputs, axis=-1), training=training),
                             tf.float32))                                  # §4.5
      out["w"] = w
      out["query"] = tf.concat([w * out["u_id"], (1.0 - w) * out["u_cg"]], axis=-1)
    out["disagreement"] = (tf.add_n(losses) / float(len(losses)) if losses
                           else tf.zeros([batch], tf.float32))
    return out

  def encode_query(self, features: Dict[str, tf.Tensor],
                   training: Optional[bool] = None) -> tf.Tensor:
    """<float32>[batch, dim + cg_dim] = [w u^ID, (1 - w) u^CG] (w/o MM: u^ID; channels="single":
    <[batch, dim]> MLP_u([u^ID, u^CG]))."""
    return self.user_parts(features, training=training)["query"]

  def encode_items(self, item_ids: tf.Tensor, training: Optional[bool] = None) -> tf.Tensor:
    """<float32>[..., dim + cg_dim] = [E^ID(i); E^CG(i)] (w/o MM: E^ID(i); channels="single":
    <[..., dim]> MLP_i([E^ID(i); E^CG(i)]))."""
    f_id = tf.cast(self.item_encoder(item_ids), tf.float32)
    if not self.multi_modal:
      return f_id
    both = tf.concat([f_id, self.cg_items(item_ids)], axis=-1)
    if self.single_item is None:
      return both
    return tf.cast(self.single_item(both, training=training), tf.float32)

  # ------------------------------------------------------------------ training

  def mlm_positions(self, features: Mapping[str, tf.Tensor],
                    training: Optional[bool] = None) -> tf.Tensor:
    """<bool>[b, l] the positions whose main id is masked: real behaviours only, the step's
    seed in training, a fixed seed outside."""
    seed = step_random.step_seed() if training else None
    seed = tf.constant(_FIXED_MASK_SEED, tf.int64) if seed is None else seed
    return choose_masked_positions(features["seq_mask"], self.mask_rate, seed)

  def mlm_loss(self, hidden: tf.Tensor, ids: tf.Tensor, masked: tf.Tensor) -> tf.Tensor:
    """Eq. 2 per example <float32>[b]: the mean over the row's masked positions of -log softmax
    over every item's ID embedding at the original id (0 for a row without any)."""
    where = tf.where(masked)                                                # [M, 2]
    h = tf.cast(tf.gather_nd(hidden, where), tf.float32)                    # [M, d]
    targets = tf.gather_nd(tf.cast(ids, tf.int64), where)                   # [M]
    table = tf.cast(self.item_encoder(tf.range(1, self.num_items + 1)), tf.float32)
    logits = tf.matmul(h, table, transpose_b=True)                          # [M, N]
    per_position = tf.nn.sparse_softmax_cross_entropy_with_logits(targets - 1, logits)
    rows = tf.cast(where[:, 0], tf.int32)
    batch = tf.shape(masked)[0]
    total = tf.math.unsorted_segment_sum(per_position, rows, batch)
    count = tf.math.unsorted_segment_sum(tf.ones_like(per_position), rows, batch)
    return total / tf.maximum(count, 1.0)

  def compute_losses(self, batch: Dict[str, tf.Tensor],
                     training: Optional[bool] = None) -> Dict[str, tf.Tensor]:
    masked = self.mlm_positions(batch, training) if self.uses_mlm else None
    shared = masked if self.mlm_shared_pass else None
    parts = self.user_parts(batch, training=training, masked=shared)
    losses = {"softmax": self.matching_loss(parts["query"], batch, training),
              "disagreement": parts["disagreement"]}
    if masked is None:
      losses["mlm"] = tf.zeros_like(losses["disagreement"])
      return losses
    if shared is not None:
      hidden = parts["id_sequence"]
    else:
      seq = self.behaviours(batch)
      _, hidden = self.id_extraction(self.item_encoder(seq["ids"]), seq["buckets"],
                                     seq["mask"], seq["subsidiary"], masked=masked,
                                     training=training, return_sequence=True)
    losses["mlm"] = self.mlm_loss(hidden, batch[SEQ], masked)
    return losses

  def before_training(self, context: Any) -> None:
    """Starts the CG table from `cg_init` (not on a resumed run: its backup holds the table),
    then the contract's popularity count, skipped for negatives="full" (the softmax over the
    whole corpus reads no item_log_q: a pass over the training split for nothing)."""
    if not context.resumed:
      self.initialise_cg()
    if self.negatives != "full":
      super().before_training(context)

  def initialise_cg(self) -> bool:
    """Assigns `cg_init`'s table to the CG embeddings (§4.2.1); True if it did. Done when
    training starts, not when the model is built, so restoring a run (evaluate, export) needs
    only its checkpoint.

    Raises:
      DataError: the table is missing, damaged or for another item store.
      ValueError: its width is not cg_dim.
    """
    if not (self.cg_embeddings is not None and self.cg_init):
      return False
    table = load_cg_table(self.cg_init, self.num_items)
    if table.shape[1] != self.cg_dim:
      raise ValueError(f"{self.cg_init}: the CG embeddings are {table.shape[1]} wide, the "
                       f"model's cg_dim is {self.cg_dim} (set cg_dim, or pre-train with "
                       f"python -m tfrec.models.graphsage --dim={self.cg_dim})")
    self.cg_embeddings.assign(table)
    return True

  def configure_training(self, seed: int = 0,
                         loss_weights: Optional[Mapping[str, float]] = None) -> None:
    """The core's, with eq. 9's alpha = beta = 0.1 as the defaults of "mlm" and
    "disagreement" (a weight given by name wins)."""
    super().configure_training(seed, {**self.DEFAULT_LOSS_WEIGHTS, **dict(loss_weights or {})})

  # ------------------------------------------------------------------ building

  def dummy_features(self, batch: int = 1) -> Dict[str, tf.Tensor]:
    feats = super().dummy_features(batch)
    feats["seq_subsidiary"] = tf.zeros([batch, self.max_seq_len, schema.NUM_SUBSIDIARY])
    return feats

  def build_and_fill(self, item_store: Any) -> "M5":
    """Builds and copies the item store in (ids, kinds; with cg_source="raw" the category,
    tags and title columns); the CG table starts from `cg_init` when training starts
    (`before_training`).

    Raises:
      ValueError: the store has a kind above num_item_kinds.
    """
    kinds = np.asarray(item_store.kind)
    if kinds.size and int(kinds.max()) > self.num_item_kinds:
      raise ValueError(f"the item store has kind {int(kinds.max())} > num_item_kinds "
                       f"{self.num_item_kinds} (dataset.json's num_item_kinds)")
    super().build_and_fill(item_store)
    self.item_kind.assign(kinds.astype(np.int32))
    if self.cg_metadata is not None:
      self.cg_metadata.set_item_features(item_store)
    return self

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), "num_scenarios": self.num_scenarios,
            "num_item_kinds": self.num_item_kinds,
            "user_feature_sizes": list(self.user_feature_sizes), "cg_init": self.cg_init,
            "cg_dim": self.cg_dim, "cg_trainable": self.cg_trainable,
            "cg_source": self.cg_source, "channels": self.channels,
            "multi_modal": self.multi_modal, "multi_interest": self.multi_interest,
            "multi_scenario": self.multi_scenario, "bucketing": self.bucketing,
            "subsidiary": self.subsidiary, "self_attention": self.self_attention,
            "sin": self.sin, "mlm": self.mlm, "indicator": self.indicator,
            "disagreement": self.disagreement, "mixing": self.mixing,
            "num_layers": self.num_layers, "num_heads": self.num_heads, "ff_dim": self.ff_dim,
            "mask_rate": self.mask_rate, "mlm_shared_pass": self.mlm_shared_pass,
            "num_experts": self.num_experts, "mlp_hidden": self.mlp_hidden,
            "mlp_dropout": self.mlp_dropout, "routing": self.routing,
            "id_sin_units": list(self.id_sin_units), "cg_sin_units": list(self.cg_sin_units),
            "pooling": self.pooling, "profile_dim": self.profile_dim,
            "serving_scenario": self.serving_scenario}


def load_cg_table(path: str, num_items: int) -> np.ndarray:
  """<float32>[num_items + 1, d] from a dataset directory holding `cg_embeddings.npy` or from
  that file (checked against its .json by `graphsage.load_cg_embeddings`)."""
  if os.path.basename(path) == EMBEDDINGS_FILE:
    return load_cg_embeddings(os.path.dirname(path) or ".", num_items)[0]
  if os.path.isfile(path):
    raise ValueError(f"cg_init={path!r}: a dataset directory holding {EMBEDDINGS_FILE}, or "
                     "that file (python -m tfrec.models.graphsage --data_dir=DIR writes it)")
  return load_cg_embeddings(path, num_items)[0]  # a directory (a missing one: DataError)


registry.register("m5", M5, "M5 (KDD 2023): ID and CG channels, behaviours bucketed by item "
                  "kind, MLM-augmented self-attention + SIN, scenario indicator + SMoE, "
                  "dynamically weighted hybrid score; full softmax (matching records)",
                  dim=128, item_features=("id",), negatives="full", dropout=0.1,
                  num_layers=3, num_heads=2, ff_dim=512, mlp_hidden=768, mlp_dropout=0.1)
