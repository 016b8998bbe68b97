"""CCL: Cross-domain Contrastive Learning pre-training of SEMI's sequence encoders (Lei et al.,
KDD 2021, §3.3, Algorithm 1, eq. 4-9).

  q^vs = g(f_vs(V)),  k^vs = g(z_vs(V)),  q^ps = g(f_ps(P)),  k^ps = g(z_ps(P))       (eq. 4)
  g = max pooling over the real items; f = query encoders, z = momentum key encoders
  per step (Algorithm 1): keys of the batch -> ENQUEUE into D_vs, D_ps (lines 10-13), then
  L = CE(softmax(q^vs . D_ps^T / tau), i) + CE(softmax(q^ps . D_vs^T / tau), i)      (eq. 5-8)
  where row i of each dictionary holds the batch pair's own key (the positive); gradients go
  to the query encoders only, then theta_k <- m theta_k + (1 - m) theta_q            (eq. 9)

A query encoder f is what SEMI's intra-domain encoder is (§3.2.3): the item encoder plus the
1-hour time-block embedding shared by both domains, then one multi-head attention block per
domain. Its layers carry SEMI's attribute names (`item_encoder`, `time_blocks`,
`target_encoder`, `source_encoder`), so `--init_from=<CCL run>` loads them into SEMI. Key
encoders start as copies of the query encoders (MoCo; Algorithm 1 line 1 draws both at random,
which the first momentum steps would only average away).

Choices the paper leaves open, stated here:
  * Time blocks count back from the pair's request time: a pair selected from a ranking record
    (`tfrec.datasets.ccl_select`) keeps that record's `timestamp`, so block 0 is the hour
    before the request in pre-training as in SEMI (§3.2.3), and the transferred time-block
    table means the same thing in both; a pair without one (session pairs of the generators)
    counts back from its latest event (`reference_time`).
  * A pair's own earlier keys are not its negatives (`mask_own_keys`, default on): the queues
    keep each key's user id, and a query's softmax leaves out every dictionary key of its own
    user except the positive. Without it, a pair seen in an earlier epoch can sit in the
    dictionary as a near-copy "negative" (the paper's K is 0.14% of its pairs, where this
    rarely happens; at small scale it is common). `mask_own_keys=False` is eq. 5-6 as written.
  * The momentum may be fitted to the run's length (`momentum_rule="steps"`,
    `tfrec.moco.momentum.fit_momentum`: tau = 1 / (1 - m) = sqrt(S K / B), which gives the
    paper's 0.999 at its sizes); "fixed" uses `momentum` as given.
  * K must stay below the number of training pairs (an error at K >= pairs, a warning above
    half of them): the dictionary should hold other pairs' keys.
  * Keys are encoded without dropout (`training=False`); queries with it.
  * The dictionaries are filled with K keys of random training pairs before the first step
    (Algorithm 1 lines 2-4, `fill_step`), in the core's `before_training` hook.
  * `normalize=False` is the paper's eq. 5-6 (raw dot products); True L2-normalises q and k
    (MoCo's choice).
Under a tf.distribute strategy the keys of all replicas are gathered in replica order and
enqueued once per step (`tasks.queue.KeyQueue`), so the dictionaries equal a one-device run's.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

from absl import logging
import tensorflow as tf
import tf_keras as keras

from tfrec.data import schema
from tfrec.layers.attention import MultiHeadAttentionBlock
from tfrec.layers.item_encoder import ItemEncoder
from tfrec.layers.pooling import SequencePooling
from tfrec.layers.time_block import TimeBlockEmbedding
from tfrec.models import core
from tfrec.models import registry
from tfrec.models.base import sequence_input
from tfrec.moco import momentum as momentum_lib
from tfrec.moco.queue import KeyQueue
from tfrec.tasks.contrastive import Contrastive, info_nce

MOMENTUM_RULES = ("fixed", "steps")


def check_queue_size(queue_size: int, pairs: int) -> None:
  """K against the N training pairs: an error at K >= N (the dictionary would hold every pair,
  each query's own stale keys among its negatives), a warning above N / 2.

  Raises:
    ValueError: K >= N.
  """
  advice = ("lower --model_args=queue_size (the paper's 40,960 keys are 0.14% of its 28.3M "
            "pairs) or select more pairs")
  if queue_size >= pairs:
    raise ValueError(f"--model_args=queue_size={queue_size} is at least the {pairs} training "
                     f"pairs: the dictionary would hold every pair; {advice}")
  if 2 * queue_size > pairs:
    logging.warning("CCL dictionary K=%d holds more than half of the %d training pairs: few "
                    "distinct negatives per query; %s", queue_size, pairs, advice)


# Micro-video (target) queries look up the product (source) dictionary (eq. 5) and back (eq. 6).
_OTHER = {"target": "source", "source": "target"}


def reference_time(features: Dict[str, tf.Tensor]) -> tf.Tensor:
  """<int64>[batch]: each row's time reference for the time blocks: its request time
  `timestamp` where the record has one (>= 0; ranking records, pairs selected from them), else
  its latest real event time over both domains."""
  times = []
  for d in ("source", "target"):
    mask = tf.cast(features[f"{d}_mask"], tf.bool)
    ts = tf.cast(features[f"{d}_timestamps"], tf.int64)
    times.append(tf.where(mask, ts, tf.int64.min))
  latest = tf.maximum(tf.reduce_max(tf.concat(times, axis=1), axis=1), 0)
  if "timestamp" not in features:
    return latest
  request = tf.cast(tf.reshape(features["timestamp"], [-1]), tf.int64)
  return tf.where(request >= 0, request, latest)


@keras.utils.register_keras_serializable(package="tfrec")
class CCL(core.Model):
  """CCL pre-training model (Algorithm 1); trains with `fit` on `ccl_pair` records.

  Losses (the core's contract): "target_to_source" = eq. 5 (micro-video queries against the
  product dictionary D_ps) and "source_to_target" = eq. 6, per example; L = their sum (eq. 7-8).
  Metrics: top-1 accuracy of each direction ("top1_target", "top1_source").

  Args:
    num_items, dim, item_features, num_categories, visual_dim, max_seq_len, dropout,
      num_time_blocks: as SEMI's (`RankingModel`); they must match the SEMI run that will
      initialise from this one.
    num_heads, ff_dim: of both sequence encoders (A.1: 8, 128).
    queue_size: K, keys per dictionary (A.1: 40 x 1024); >= the global batch size and below
      the number of training pairs.
    momentum: m of eq. 9 (A.1: 0.999); with momentum_rule "steps", replaced before training.
    momentum_rule: "fixed" (use `momentum`) or "steps" (fit m to the run's steps, the queue
      and the batch: `tfrec.moco.momentum.fit_momentum`).
    mask_own_keys: leave a query's own user's other keys out of its negatives.
    temperature: tau of eq. 5-6 (A.1: 0.7).
    normalize: L2-normalise q and k (not in the paper; MoCo does).
    attention_dropout: dropout inside the sequence encoders; None: `dropout` (as SEMI's).
    pre_extracted_dim: width of the store's pre-extracted item vectors (the
      "pre_extracted" item feature; from the dataset).

  `call(features)` returns the queries {"target": q^vs, "source": q^ps}, <float>[batch, dim].
  """

  RECORD_KIND = "ccl_pair"
  LOSSES = ("target_to_source", "source_to_target")
  MONITOR = ("loss", "min")
  VALIDATES = False  # ccl_pair data has one split
  DOMAINS = ("target", "source")

  def __init__(self, num_items: int, dim: int = 128,
               item_features: Sequence[str] = ("id", "category", "visual"),
               num_categories: int = 0, visual_dim: int = 0,
               max_seq_len: int = schema.MAX_SEQ_LEN, num_heads: int = 8,
               ff_dim: Optional[int] = 128, dropout: float = 0.1, num_time_blocks: int = 168,
               queue_size: int = 40 * 1024, momentum: float = 0.999, temperature: float = 0.7,
               normalize: bool = False, momentum_rule: str = "fixed",
               mask_own_keys: bool = True, attention_dropout: Optional[float] = None,
               pre_extracted_dim: int = 0, **kwargs):
    super().__init__(**kwargs)
    if not 0.0 <= momentum <= 1.0:
      raise ValueError(f"momentum must be in [0, 1], got {momentum}")
    if momentum_rule not in MOMENTUM_RULES:
      raise ValueError(f"momentum_rule={momentum_rule!r} must be one of {list(MOMENTUM_RULES)}")
    if temperature <= 0:
      raise ValueError(f"temperature must be > 0, got {temperature}")
    self.num_items, self.dim = int(num_items), int(dim)
    self.item_features = tuple(item_features)
    self.num_categories, self.visual_dim = int(num_categories), int(visual_dim)
    self.max_seq_len, self.num_heads = int(max_seq_len), int(num_heads)
    self.ff_dim = None if ff_dim is None else int(ff_dim)
    self.dropout, self.num_time_blocks = float(dropout), int(num_time_blocks)
    self.queue_size, self.momentum = int(queue_size), float(momentum)
    self.temperature, self.normalize = float(temperature), bool(normalize)
    self.momentum_rule, self.mask_own_keys = momentum_rule, bool(mask_own_keys)
    self.attention_dropout = None if attention_dropout is None else float(attention_dropout)
    self.pre_extracted_dim = int(pre_extracted_dim)
    block_dropout = self.dropout if attention_dropout is None else self.attention_dropout
    self.pool = SequencePooling("max", name="max_pool")  # g(.) of eq. 4
    for prefix in ("", "key_"):  # query encoders f_*, then key encoders z_*
      trainable = not prefix
      setattr(self, f"{prefix}item_encoder", ItemEncoder(
          num_items, dim, item_features, num_categories=num_categories, visual_dim=visual_dim,
          pre_extracted_dim=self.pre_extracted_dim, name=f"{prefix}item_encoder",
          trainable=trainable))
      setattr(self, f"{prefix}time_blocks", TimeBlockEmbedding(
          dim, num_blocks=num_time_blocks, name=f"{prefix}time_blocks", trainable=trainable))
      for d in self.DOMAINS:
        setattr(self, f"{prefix}{d}_encoder", MultiHeadAttentionBlock(
            num_heads=self.num_heads, ff_dim=self.ff_dim, dropout=block_dropout,
            name=f"{prefix}{d}_encoder", trainable=trainable))
    self.target_queue = KeyQueue(self.queue_size, dim, with_ids=self.mask_own_keys,
                                 name="target_queue")  # D_vs
    self.source_queue = KeyQueue(self.queue_size, dim, with_ids=self.mask_own_keys,
                                 name="source_queue")  # D_ps
    self.tasks = {d: Contrastive(self.temperature, metric_name=f"top1_{d}", name=f"{d}_task")
                  for d in self.DOMAINS}  # d's queries against the other domain's keys

  # ------------------------------------------------------------------ encoders

  def _layers(self, key: bool):
    p = "key_" if key else ""
    return [getattr(self, f"{p}item_encoder"), getattr(self, f"{p}time_blocks")] + [
        getattr(self, f"{p}{d}_encoder") for d in self.DOMAINS]

  def queue(self, domain: str) -> KeyQueue:
    return getattr(self, f"{domain}_queue")

  def encode(self, features: Dict[str, tf.Tensor], domain: str, key: bool = False,
             training: Optional[bool] = None) -> tf.Tensor:
    """q = g(f_d(seq)) (key=False) or k = g(z_d(seq)) (key=True): <float>[batch, dim] (eq. 4)."""
    items, times, *_ = self._layers(key)
    block = getattr(self, f"{'key_' if key else ''}{domain}_encoder")
    feats = dict(features, timestamp=reference_time(features))
    x, mask = sequence_input(items, times, feats, domain)
    out = self.pool(block(x, query_mask=mask, training=training), mask=mask)
    return tf.math.l2_normalize(out, axis=-1) if self.normalize else out

  def call(self, features: Dict[str, tf.Tensor], training: Optional[bool] = None):
    return {d: self.encode(features, d, training=training) for d in self.DOMAINS}

  def keys(self, features: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """k^vs, k^ps of a batch from the key encoders (no gradient, no dropout)."""
    return {d: tf.stop_gradient(self.encode(features, d, key=True, training=False))
            for d in self.DOMAINS}

  # ------------------------------------------------------------------ building

  def dummy_features(self, batch: int = 1) -> Dict[str, tf.Tensor]:
    feats = {}
    for d in self.DOMAINS:
      feats[f"{d}_item_ids"] = tf.zeros([batch, self.max_seq_len], tf.int64)
      feats[f"{d}_timestamps"] = tf.zeros([batch, self.max_seq_len], tf.int64)
      feats[f"{d}_mask"] = tf.zeros([batch, self.max_seq_len], tf.bool)
    feats["user_id"] = tf.zeros([batch], tf.int64)
    return feats

  def build_and_fill(self, item_store: Any) -> "CCL":
    """Creates all weights, copies the query encoders into the key encoders (MoCo) and the
    item store into both item encoders."""
    feats = self.dummy_features()
    self(feats, training=False)
    with momentum_lib.first_replica_variables():
      for d in self.DOMAINS:
        self.encode(feats, d, key=True, training=False)
    self.target_queue.build()
    self.source_queue.build()
    for layer in (self.item_encoder, self.key_item_encoder):
      layer.set_item_features(item_store)
    momentum_lib.copy_weights(self.variable_pairs())
    return self

  def variable_pairs(self):
    """(query variable, key variable) for every trainable query variable. Not cached on the
    model: Keras would track a stored list of variables as more model weights."""
    return momentum_lib.variable_pairs(self._layers(False), self._layers(True))

  # ------------------------------------------------------------------ Algorithm 1

  def _owners(self, features: Dict[str, tf.Tensor]) -> Optional[tf.Tensor]:
    """<int64>[batch] the user ids written beside the keys (None without `mask_own_keys`)."""
    if not self.mask_own_keys:
      return None
    if "user_id" not in features:
      raise ValueError("mask_own_keys needs user_id in the batch (every ccl_pair record has "
                       "it); or pass --model_args=mask_own_keys=false")
    return tf.cast(tf.reshape(features["user_id"], [-1]), tf.int64)

  def fill_step(self, features: Dict[str, tf.Tensor]) -> tf.Tensor:
    """Lines 2-4: enqueue the key-encoded batch without training; returns the keys written."""
    keys, owners = self.keys(features), self._owners(features)
    for d in self.DOMAINS:
      self.queue(d).enqueue(keys[d], owners)
    return self.target_queue.count.read_value()

  def contrastive_losses(self, features: Dict[str, tf.Tensor],
                         training: Optional[bool] = None) -> Dict[str, tf.Tensor]:
    """Lines 10-18 for this replica's batch: enqueue the keys, then eq. 5 and eq. 6.

    Returns {"target": (loss, hits), "source": (loss, hits)}, each <float32>[batch]: "target"
    is eq. 5 (micro-video queries against the product dictionary D_ps), "source" eq. 6.
    """
    keys, owners = self.keys(features), self._owners(features)
    dictionaries, rows = {}, None
    for d in self.DOMAINS:
      # Same rows and ids: the queues move in lockstep.
      dictionaries[d], rows = self.queue(d).enqueue(keys[d], owners)
    exclude = None
    if owners is not None:  # the own user's keys other than the positive (info_nce keeps it)
      exclude = tf.equal(owners[:, None], self.target_queue.ids.read_value()[None, :])
    queries = self(features, training=training)
    return {d: self.tasks[d](queries[d], dictionaries[_OTHER[d]], rows, exclude)
            for d in self.DOMAINS}

  def compute_losses(self, batch: Dict[str, tf.Tensor],
                     training: Optional[bool] = None) -> Dict[str, tf.Tensor]:
    """The core's contract: eq. 5 and eq. 6 per example (their sum is eq. 7-8's L)."""
    out = self.contrastive_losses(batch, training=training)
    return {f"{d}_to_{_OTHER[d]}": out[d][0] for d in self.DOMAINS}

  def after_train_step(self) -> None:
    """Line 21, eq. 9: theta_k <- m theta_k + (1 - m) theta_q with the updated queries."""
    momentum_lib.momentum_update(self.variable_pairs(), self.momentum)

  def before_training(self, context: core.TrainingContext) -> None:
    """Lines 2-4: K keys of random training pairs (a stream of their own, `context.batches`)
    fill the dictionaries before the first step; a resumed run has them from its backup.

    Also checks K against the training pairs and fits the momentum (`momentum_rule="steps"`)
    to `context.total_steps`.

    Raises:
      ValueError: a global batch larger than K (a step enqueues the whole global batch); K at
        or above the number of training pairs; momentum_rule "steps" without a step count.
    """
    if context.global_batch_size > self.queue_size:
      raise ValueError(f"--batch_size={context.global_batch_size} exceeds --queue_size="
                       f"{self.queue_size}: a step enqueues the whole global batch")
    pairs = getattr(context.reader, "num_records", None)
    if pairs is not None:
      check_queue_size(self.queue_size, int(pairs))
    if self.momentum_rule == "steps":
      if not context.total_steps:
        raise ValueError("momentum_rule=steps needs the run's step count")
      self.momentum = momentum_lib.fit_momentum(context.total_steps, self.queue_size,
                                                context.global_batch_size)
      logging.info("CCL momentum fitted to %d steps, K=%d, B=%d: m = %.5f (tau = %.0f steps)",
                   context.total_steps, self.queue_size, context.global_batch_size,
                   self.momentum, 1.0 / max(1e-12, 1.0 - self.momentum))
    if context.resumed:
      return
    steps = -(-self.queue_size // context.global_batch_size)
    batches = context.batches(context.seed + 7919)
    step = tf.function(lambda batch: context.strategy.run(self.fill_step, args=(batch,)))
    for _ in range(steps):
      step(next(batches))
    logging.info("CCL dictionaries filled: %d keys each (K=%d)",
                 min(int(self.target_queue.count.numpy()), self.queue_size), self.queue_size)

  def get_config(self) -> Dict[str, Any]:
    return dict(num_items=self.num_items, dim=self.dim, item_features=list(self.item_features),
                num_categories=self.num_categories, visual_dim=self.visual_dim,
                max_seq_len=self.max_seq_len, num_heads=self.num_heads, ff_dim=self.ff_dim,
                dropout=self.dropout, num_time_blocks=self.num_time_blocks,
                queue_size=self.queue_size, momentum=self.momentum,
                temperature=self.temperature, normalize=self.normalize,
                momentum_rule=self.momentum_rule, mask_own_keys=self.mask_own_keys,
                attention_dropout=self.attention_dropout,
                pre_extracted_dim=self.pre_extracted_dim)

  @classmethod
  def from_config(cls, config, custom_objects=None):
    return cls(**config)


registry.register("ccl", CCL, "CCL pre-training of SEMI's sequence encoders (§3.3): MoCo-style "
                  "queues, momentum key encoders, bidirectional cross-domain InfoNCE; trains on "
                  "ccl_pair records; SEMI loads it with --init_from")


__all__ = ["CCL", "MOMENTUM_RULES", "check_queue_size", "info_nce", "reference_time"]
