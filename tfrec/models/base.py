"""The ranking-model contract every tfrec ranking model follows, and the parts they share.

A ranking model scores (user, candidate item) pairs in two steps so that serving can encode a
user once per request and score many candidates against that encoding (SEMI App. A.4):

  user  = model.encode_user(features)              # dict of <float>[batch, ...] tensors
  logit = model.score(user, candidate_ids)         # <float32>[batch, num_candidates]

`call(features)` chains both for training: one candidate per row (`features["item_id"]`) and
returns <float32>[batch] logits; the loss is binary cross-entropy on them (SEMI eq. 10), the
`tasks.Ranking` task with its AUC, on the training core of `tfrec.models.core` (loss "bce";
the best checkpoint has the highest validation AUC).
Training uses `num_candidates = 1` with `batch` users; serving uses `batch = 1` with N
candidates. Nothing a model computes in `encode_user` may depend on the candidate.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence, Tuple

import tensorflow as tf
import tf_keras as keras

from tfrec.data import schema
from tfrec.layers.item_encoder import ItemEncoder
from tfrec.layers.mlp import MLP
from tfrec.layers.time_block import TimeBlockEmbedding
from tfrec.models import core
from tfrec.tasks.ranking import Ranking

DOMAINS = schema.DOMAIN_NAMES  # ("source", "target")


def sequence_input(item_encoder: ItemEncoder, time_blocks: Optional[TimeBlockEmbedding],
                   features: Dict[str, tf.Tensor], domain: str) -> Tuple[tf.Tensor, tf.Tensor]:
  """One domain's history as sequence-encoder inputs (SEMI §3.2.3): v_i^in = v_i^m + t_i^v.

  Reads `<domain>_item_ids`, `<domain>_mask` and, with `time_blocks`, `<domain>_timestamps`
  and the reference time `timestamp` <int>[batch] (blocks count back from it).

  Returns:
    (<float>[batch, seq, dim] item encodings [+ time-block embeddings], zero at padding;
     <bool>[batch, seq] mask).
  """
  mask = tf.cast(features[f"{domain}_mask"], tf.bool)
  x = item_encoder(features[f"{domain}_item_ids"])
  if time_blocks is not None:
    # No mask here: the sum is masked once below.
    x = x + tf.cast(time_blocks(features[f"{domain}_timestamps"], features["timestamp"]),
                    x.dtype)
  return x * tf.cast(mask, x.dtype)[..., None], mask


class RankingModel(core.Model):
  """Base class: item encoder, per-domain history inputs, the output MLP, the two-step scoring,
  the click-through task.

  Subclasses implement `encode_user` and `score`, and list in `get_config` what they add.

  Args:
    num_items: item ids are in [1, num_items] (0 = padding).
    dim: width d of item and sequence representations (SEMI A.1: 128).
    item_features: what the item encoder sums: "id", "category", "visual", "title".
    num_categories: category vocabulary (needed with "category").
    visual_dim: width of the item store's visual vectors (needed with "visual").
    num_tokens: title vocabulary (needed with "title"; `dataset.json`'s num_tokens).
    pre_extracted_dim, num_tags: the item store's pre-extracted width and the tag vocabulary
      (needed with "pre_extracted" / "tags"; from the dataset).
    domains: histories the model reads, a subset of ("source", "target").
    max_seq_len: length each history is padded/truncated to by the input pipeline.
    mlp_units: hidden widths of the output MLP (SEMI §3.4: [128]); a final width-1 logit layer
      is added.
    dropout: dropout of the output MLP and of attention blocks (SEMI A.1: 0.1).
    use_time_blocks: add the 1-hour time-block embedding to history items (SEMI §3.2.3).
    num_time_blocks: time blocks (the last collects everything older); 168 = one week.
    item_combine: how the item encoder joins its features: "sum" (each dim wide) or "concat"
      (each dim / len(item_features) wide, in the given order; THACIL's x = [f; c]).
  """

  RECORD_KIND = "ranking"
  LOSSES = ("bce",)
  MONITOR = ("auc", "max")
  EXPORTABLE = True

  def __init__(self,
               num_items: int,
               dim: int = 128,
               item_features: Sequence[str] = ("id", "category", "visual"),
               num_categories: int = 0,
               visual_dim: int = 0,
               num_tokens: int = 0,
               domains: Sequence[str] = ("target",),
               max_seq_len: int = schema.MAX_SEQ_LEN,
               mlp_units: Sequence[int] = (128,),
               dropout: float = 0.1,
               use_time_blocks: bool = False,
               num_time_blocks: int = 168,
               item_combine: str = "sum",
               pre_extracted_dim: int = 0,
               num_tags: int = 0,
               **kwargs):
    super().__init__(**kwargs)
    domains = tuple(domains)
    if not domains or set(domains) - set(DOMAINS) or len(set(domains)) != len(domains):
      raise ValueError(f"domains must be distinct names from {DOMAINS}, got {domains}")
    self.num_items = int(num_items)
    self.dim = int(dim)
    self.item_features = tuple(item_features)
    self.num_categories = int(num_categories)
    self.visual_dim = int(visual_dim)
    self.num_tokens = int(num_tokens)
    self.domains = domains
    self.max_seq_len = int(max_seq_len)
    self.mlp_units = tuple(int(u) for u in mlp_units)
    self.dropout = float(dropout)
    self.use_time_blocks = bool(use_time_blocks)
    self.num_time_blocks = int(num_time_blocks)
    self.item_combine = str(item_combine)
    self.pre_extracted_dim = int(pre_extracted_dim)
    self.num_tags = int(num_tags)
    self.item_encoder = ItemEncoder(num_items, dim, item_features, num_categories=num_categories,
                                    visual_dim=visual_dim, num_tokens=num_tokens,
                                    combine=self.item_combine,
                                    pre_extracted_dim=self.pre_extracted_dim,
                                    num_tags=self.num_tags, name="item_encoder")
    self.time_blocks = (TimeBlockEmbedding(dim, num_blocks=num_time_blocks, name="time_blocks")
                        if use_time_blocks else None)
    # The logit layer stays float32 under mixed precision (a numerically safe sigmoid/BCE).
    self.output_mlp = MLP(list(self.mlp_units) + [1], dropout=dropout, linear_output=True,
                          name="output_mlp", dtype="float32")
    self.task = Ranking(name="ranking_task")

  def compute_losses(self, batch: Dict[str, tf.Tensor],
                     training: Optional[bool] = None) -> Dict[str, tf.Tensor]:
    """{"bce": <float32>[batch]} binary cross-entropy of `call`'s logits against "label"."""
    return {"bce": self.task(batch["label"], self(batch, training=training))}

  # ------------------------------------------------------------------ the scoring contract

  def encode_user(self, features: Dict[str, tf.Tensor],
                  training: Optional[bool] = None) -> Dict[str, tf.Tensor]:
    """Candidate-independent user state; every value is batch-major [batch, ...]."""
    raise NotImplementedError

  def score(self, user: Dict[str, tf.Tensor], candidate_ids: tf.Tensor,
            training: Optional[bool] = None) -> tf.Tensor:
    """<int>[batch, n] candidates against `user` (batch rows) -> <float32>[batch, n] logits."""
    raise NotImplementedError

  def call(self, features: Dict[str, tf.Tensor], training: Optional[bool] = None) -> tf.Tensor:
    user = self.encode_user(features, training=training)
    return self.score(user, features["item_id"][:, None], training=training)[:, 0]

  # ------------------------------------------------------------------ inputs

  @property
  def user_input_names(self) -> Tuple[str, ...]:
    """Features `encode_user` reads (what a serving request carries for the user)."""
    names = ["timestamp"]
    for d in self.domains:
      names += [f"{d}_item_ids", f"{d}_timestamps", f"{d}_mask"]
    return tuple(names)

  def dummy_features(self, batch: int = 1) -> Dict[str, tf.Tensor]:
    """All-padding features of the right shapes, for building the model's weights."""
    feats = {"timestamp": tf.zeros([batch], tf.int64), "item_id": tf.ones([batch], tf.int64)}
    for d in self.domains:
      feats[f"{d}_item_ids"] = tf.zeros([batch, self.max_seq_len], tf.int64)
      feats[f"{d}_timestamps"] = tf.zeros([batch, self.max_seq_len], tf.int64)
      feats[f"{d}_mask"] = tf.zeros([batch, self.max_seq_len], tf.bool)
    return feats

  def build_and_fill(self, item_store: Any) -> "RankingModel":
    """Creates the weights (one call on dummy features) and copies the item store in."""
    self(self.dummy_features(), training=False)
    self.item_encoder.set_item_features(item_store)
    return self

  def domain_sequence(self, features: Dict[str, tf.Tensor], domain: str) -> Tuple[tf.Tensor, tf.Tensor]:
    """One domain's history as model inputs (SEMI §3.2.3); see `sequence_input`."""
    return sequence_input(self.item_encoder, self.time_blocks, features, domain)

  def merged_sequence(self, features: Dict[str, tf.Tensor],
                     domain_embeddings: Optional[tf.Variable] = None
                     ) -> Tuple[tf.Tensor, tf.Tensor]:
    """All of `self.domains` as one time-ordered sequence (Cross-BST, SEMI §4.2.1 (10)).

    Real items come first, oldest first (stable by domain order for equal times), padding
    last. `domain_embeddings` <float>[2, dim], when given, is added per item's domain.

    Returns:
      (<float>[batch, sum of seq, dim]; <bool>[batch, sum of seq]).
    """
    xs, masks, times = [], [], []
    for d in self.domains:
      x, m = self.domain_sequence(features, d)
      if domain_embeddings is not None:
        row = tf.cast(domain_embeddings[DOMAINS.index(d)], x.dtype)
        x = x + row * tf.cast(m, x.dtype)[..., None]
      xs.append(x)
      masks.append(m)
      times.append(tf.cast(features[f"{d}_timestamps"], tf.int64))
    x, mask, t = (tf.concat(v, axis=1) for v in (xs, masks, times))
    if len(self.domains) == 1:
      return x, mask
    key = tf.where(mask, t, tf.int64.max)
    order = tf.argsort(key, axis=1, stable=True)
    return tf.gather(x, order, batch_dims=1), tf.gather(mask, order, batch_dims=1)

  def candidates(self, candidate_ids: tf.Tensor) -> tf.Tensor:
    """<int>[batch, n] -> <float>[batch, n, dim] candidate item encodings."""
    return self.item_encoder(candidate_ids)

  def logits(self, parts: Sequence[tf.Tensor], training: Optional[bool] = None) -> tf.Tensor:
    """Concatenates [batch, n, *] parts (user parts broadcast over n) -> [batch, n] logits."""
    n = tf.shape(parts[-1])[1]
    expanded = []
    for p in parts:
      if p.shape.rank == 2:
        p = tf.repeat(p[:, None, :], n, axis=1)
      expanded.append(tf.cast(p, self.compute_dtype))
    logits = self.output_mlp(tf.concat(expanded, axis=-1), training=training)[..., 0]
    # MLP's inner Dense layers take the global policy, not its dtype="float32": under mixed
    # precision they return bfloat16/float16, so the contract's float32 is enforced here.
    return tf.cast(logits, tf.float32)

  def regularized(self, l2: float, head: bool = True) -> Any:
    """L2 weight decay as THACIL's public code (l2 * sum(w^2) / 2, tf.nn.l2_loss): rebuilds
    the item encoder (and, with `head`, the output network) with it and returns the
    regularizer for the model's own layers (None when l2 = 0). Call from `__init__`."""
    reg = keras.regularizers.L2(l2 / 2) if l2 > 0 else None
    self.item_encoder = ItemEncoder(self.num_items, self.dim, self.item_features,
                                    num_categories=self.num_categories,
                                    visual_dim=self.visual_dim, num_tokens=self.num_tokens,
                                    combine=self.item_combine, embeddings_regularizer=reg,
                                    pre_extracted_dim=self.pre_extracted_dim,
                                    num_tags=self.num_tags, name="item_encoder")
    if head:
      self.output_mlp = MLP(list(self.mlp_units) + [1], dropout=self.dropout,
                            linear_output=True, kernel_regularizer=reg, name="output_mlp",
                            dtype="float32")
    return reg

  # ------------------------------------------------------------------ config

  def get_config(self) -> Dict[str, Any]:
    return dict(num_items=self.num_items, dim=self.dim, item_features=list(self.item_features),
                num_categories=self.num_categories, visual_dim=self.visual_dim,
                num_tokens=self.num_tokens,
                domains=list(self.domains), max_seq_len=self.max_seq_len,
                mlp_units=list(self.mlp_units), dropout=self.dropout,
                use_time_blocks=self.use_time_blocks, num_time_blocks=self.num_time_blocks,
                item_combine=self.item_combine, pre_extracted_dim=self.pre_extracted_dim,
                num_tags=self.num_tags)

  @classmethod
  def from_config(cls, config: Dict[str, Any], custom_objects=None) -> "RankingModel":
    return cls(**config)

  def target_attention_logits(self, user: Dict[str, tf.Tensor], candidate_ids: tf.Tensor,
                              attention: Any, key: str,
                              training: Optional[bool] = None) -> tf.Tensor:
    """<float32>[batch, n] logits of [u_d for each domain; candidate]: the candidate (its item
    encoding + the time-block embedding of block 0, the request time) attends over each
    domain's sequence `user["<d>_<key>"]` (mask `user["<d>_mask"]`) through `attention(d)`
    (SEMI §3.4 with key "inter", ADAPT eq. 9-10 with key "history"). Needs `use_time_blocks`.
    """
    x = self.item_encoder(candidate_ids)
    cand = x + tf.cast(self.time_blocks.embeddings[0], x.dtype)
    parts = [attention(d)(cand, user[f"{d}_{key}"], user[f"{d}_mask"], training=training)
             for d in self.domains]
    return self.logits(parts + [cand], training=training)

__all__ = ["RankingModel", "DOMAINS", "sequence_input"]
