"""The retrieval contract (two-tower matching, issue 12 groundwork), on the training core.

A retrieval model trains on `matching` records (a mixed-domain behaviour sequence, the user and
the request context -> the next positive item) with two towers:

  query = model.encode_query(features)          <float32>[batch, dim]
  item  = model.encode_items(item_ids)           <float32>[..., dim], from the item store's
                                                 features (`ItemEncoder`): with "id" left out
                                                 of `item_features`, an item never seen in
                                                 training (a cold item) gets a vector from its
                                                 category / visual features alone
  score(user, candidate_ids) = <query, item>     <float32>[batch, n]

so `encode_user` + `score` follow the ranking models' encode-once contract and the sampled
protocols can evaluate a retrieval model through the same path. The loss (`negatives`):

  in_batch  the softmax of `tfrec.tasks.retrieval.Retrieval` over every replica's positives,
            with the log-q correction from each item's share of the training split's positives
            (counted once before training by `before_training`, kept as `item_log_q`) and
            accidental hits removed;
  queue     the same plus a FIFO queue of the item vectors (no gradient) and ids of the last
            `queue_size` positives of earlier steps (COUPLE's queue; `tfrec.moco.queue.KeyQueue`,
            one row = [vector, id], gathered across replicas), log-q corrected alike; validation
            (training falsy) leaves the queue out: its rows are training-time vectors;
  sampled   the in-batch softmax plus `num_sampled` negatives drawn each step from the training
            split's item popularity (the distribution `item_log_q` holds; with replacement,
            shared by every row and every replica: the draw is seeded by (seed, step) alone,
            `tfrec.layers.step_random`), each scored by the item tower with its own log Q
            subtracted (sampled softmax, Bengio & Senecal 2008; Yi et al. 2019) and dropped
            where it equals the row's positive (an accidental hit). Outside a training step
            (validation) the draw has a fixed seed, so validation losses compare across epochs;
  full      the softmax over every item of the catalogue (`tasks.retrieval.full_softmax`,
            M5 eq. 7-8), where the catalogue fits.

The best checkpoint has the lowest validation loss.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

from absl import logging
import numpy as np
import tensorflow as tf

from tfrec.data import schema
from tfrec.layers import step_random
from tfrec.layers.item_encoder import ItemEncoder
from tfrec.models import core
from tfrec.moco.queue import KeyQueue
from tfrec.tasks.retrieval import Retrieval, full_softmax_logits

SEQ = "seq_item_ids"
NEGATIVES = ("in_batch", "queue", "sampled", "full")
_EVAL_SEED = (12_345, 0)  # the "sampled" draw outside a training step (validation)


def shared_step_seed() -> tf.Tensor:
  """<int64>[2] the seed of a draw every replica makes alike: `step_random.step_seed()` (seed,
  step, draw) with its replica part taken off inside a training step; a fixed seed outside one
  (validation), so validation losses compare across epochs."""
  seed = step_random.step_seed()
  if seed is None:
    return tf.constant(_EVAL_SEED, tf.int64)
  ctx = tf.distribute.get_replica_context()
  replica = 0 if ctx is None else ctx.replica_id_in_sync_group
  return seed - tf.stack([tf.constant(0, tf.int64), tf.cast(replica, tf.int64)])


class RetrievalModel(core.Model):
  """Base class of two-tower models (module docstring); subclasses implement `encode_query`.

  Args:
    num_items: item ids are in [1, num_items] (0 = padding).
    dim: width d of both towers' vectors.
    item_features: what the item tower sums: "id", "category", "visual", "title" (no "id":
      cold items are scored from their features).
    num_categories, visual_dim, num_tokens, num_tags: the item store's category vocabulary,
      visual width, title vocabulary and tag vocabulary ("tags": COUPLE's tag-based items).
    max_seq_len: length the behaviour sequence is padded/truncated to.
    temperature: tau of the softmax.
    log_q_correction: subtract log Q(item) (its share of training positives) from in-batch
      and queued logits (Yi et al., RecSys 2019).
    dropout: dropout of the query tower.
    negatives: "in_batch", "queue", "sampled" or "full" (module docstring).
    queue_size: positives kept by the "queue" (>= the global batch size).
    num_sampled: popularity-sampled negatives per step with negatives="sampled".
  """

  RECORD_KIND = "matching"
  LOSSES = ("softmax",)
  MONITOR = ("loss", "min")
  EXPORTABLE = True  # tfrec.serving.retrieval: the `retrieve` signature
  USES_USER_FEATURES = False  # True: encode_query reads "user_features" (requests carry them)

  def __init__(self, num_items: int, dim: int = 64,
               item_features: Sequence[str] = ("id", "category", "visual"),
               num_categories: int = 0, visual_dim: int = 0, num_tokens: int = 0,
               num_tags: int = 0,
               max_seq_len: int = schema.MAX_SEQ_LEN, temperature: float = 1.0,
               log_q_correction: bool = True, dropout: float = 0.0,
               negatives: str = "in_batch", queue_size: int = 0, num_sampled: int = 0,
               **kwargs):
    super().__init__(**kwargs)
    if negatives not in NEGATIVES:
      raise ValueError(f"negatives must be one of {NEGATIVES}, got {negatives!r}")
    if negatives == "queue" and queue_size < 1:
      raise ValueError("negatives='queue' needs queue_size >= 1")
    if negatives == "sampled" and num_sampled < 1:
      raise ValueError("negatives='sampled' needs num_sampled >= 1")
    if num_items >= 2 ** 24:  # ids ride in the queue's float32 rows
      raise ValueError(f"num_items {num_items} >= 2^24: ids would not be exact in the queue")
    self.num_items, self.dim = int(num_items), int(dim)
    self.item_features = tuple(item_features)
    self.num_categories, self.visual_dim = int(num_categories), int(visual_dim)
    self.num_tokens, self.num_tags = int(num_tokens), int(num_tags)
    self.max_seq_len = int(max_seq_len)
    self.temperature, self.log_q_correction = float(temperature), bool(log_q_correction)
    self.dropout = float(dropout)
    self.negatives, self.queue_size = negatives, int(queue_size)
    self.num_sampled = int(num_sampled) if negatives == "sampled" else 0
    self.negative_queue = (KeyQueue(self.queue_size, self.dim + 1, name="negative_queue")
                           if negatives == "queue" else None)
    self.item_encoder = ItemEncoder(num_items, dim, item_features, num_categories=num_categories,
                                    visual_dim=visual_dim, num_tokens=num_tokens,
                                    num_tags=num_tags, name="item_encoder")
    self.task = Retrieval(temperature=temperature, name="retrieval_task",
                          metric_name="corpus_top1" if negatives == "full" else "batch_top1")
    self.item_log_q = self.add_weight("item_log_q", shape=[self.num_items + 1],
                                      initializer="zeros", trainable=False)

  # ------------------------------------------------------------------ towers

  def encode_query(self, features: Dict[str, tf.Tensor],
                   training: Optional[bool] = None) -> tf.Tensor:
    """<float32>[batch, dim] from the behaviour sequence, user and context."""
    raise NotImplementedError

  def encode_items(self, item_ids: tf.Tensor, training: Optional[bool] = None) -> tf.Tensor:
    """<int>[...] -> <float32>[..., dim] item-tower vectors (`training`: the loss's positives
    and sampled negatives; a tower may differ there, COUPLE's training-only domain embedding).
    """
    del training
    return tf.cast(self.item_encoder(item_ids), tf.float32)

  def encode_user(self, features: Dict[str, tf.Tensor],
                  training: Optional[bool] = None) -> Dict[str, tf.Tensor]:
    return {"query": tf.cast(self.encode_query(features, training=training), tf.float32)}

  def score(self, user: Dict[str, tf.Tensor], candidate_ids: tf.Tensor,
            training: Optional[bool] = None) -> tf.Tensor:
    """<int>[batch, n] candidates -> <float32>[batch, n] dot products with the query."""
    return tf.einsum("bd,bnd->bn", user["query"], self.encode_items(candidate_ids))

  def call(self, features: Dict[str, tf.Tensor], training: Optional[bool] = None) -> tf.Tensor:
    return self.encode_user(features, training=training)["query"]

  # ------------------------------------------------------------------ training

  def compute_losses(self, batch: Dict[str, tf.Tensor],
                     training: Optional[bool] = None) -> Dict[str, tf.Tensor]:
    return {"softmax": self.matching_loss(self(batch, training=training), batch, training)}

  def matching_loss(self, query: tf.Tensor, batch: Dict[str, tf.Tensor],
                    training: Optional[bool] = None) -> tf.Tensor:
    """<float32>[b] the loss of `negatives` (module docstring) for a given query <[b, d]>: what
    a subclass that computes its query together with other losses (M5) calls."""
    positive_ids = tf.cast(batch["positive_item_id"], tf.int64)
    if self.negatives == "full":
      ids = tf.range(1, self.num_items + 1, dtype=tf.int64)
      scores, labels = full_softmax_logits(query, positive_ids, self.encode_items(ids), ids,
                                           self.temperature)
      self.task.update_top1(scores, labels)
      return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=scores)
    positives = self.encode_items(positive_ids, training=training)
    log_q = self._log_q(positive_ids)
    extra = None
    # Validation leaves the queue out: it holds training-time vectors of earlier steps
    # (dropout, COUPLE's domain embedding) beside this pass's inference-time ones, so the
    # monitored loss is the in-batch softmax, the same for the queue and the batch-negative
    # variants of a model.
    if self.negative_queue is not None and training:
      stored = tf.identity(self.negative_queue.keys)  # earlier steps' positives (before the write)
      ids = tf.cast(tf.round(stored[:, -1]), tf.int64)
      extra = (stored[:, :-1], ids, self._log_q(ids))
    elif self.negatives == "sampled":
      ids = self.sample_negatives()
      extra = (self.encode_items(ids, training=training), ids,
               self.sampling_log_q(ids) if self.log_q_correction else None)
    loss = self.task(query, positives, positive_ids, log_q, extra=extra)
    if self.negative_queue is not None and training:
      self.negative_queue.enqueue(tf.concat(
          [tf.stop_gradient(positives), tf.cast(positive_ids, tf.float32)[:, None]], axis=1))
    return loss

  def _log_q(self, ids: tf.Tensor) -> Optional[tf.Tensor]:
    return tf.gather(self.item_log_q, ids) if self.log_q_correction else None

  def sampling_log_q(self, ids: tf.Tensor) -> tf.Tensor:
    """<float32>[...] log of the probability that one "sampled" draw is each of `ids`:
    `item_log_q` renormalised over items 1..num_items (= `item_log_q` itself when every item
    has a positive; items never positive keep their floor share, `log_q_table`)."""
    table = self.item_log_q[1:]
    return tf.gather(self.item_log_q, ids) - tf.reduce_logsumexp(table)

  def sample_negatives(self) -> tf.Tensor:
    """<int64>[num_sampled] item ids drawn with replacement from exp(`sampling_log_q`).

    Seeded by (seed, step, draw) inside a training step and the same on every replica (the
    replica part of `step_random.step_seed()` is taken off), so 2 replicas score the same
    negatives as one device; outside one, a fixed seed.
    """
    draws = tf.random.stateless_categorical(self.item_log_q[None, 1:], self.num_sampled,
                                            shared_step_seed(), dtype=tf.int64)
    return draws[0] + 1

  def before_training(self, context: core.TrainingContext) -> None:
    """Counts the training split's positives per item once (a resumed run has the table); the
    log-q correction and the "sampled" negatives read it.

    Raises:
      ValueError: a global batch larger than the queue (a step enqueues the whole batch).
    """
    if self.negative_queue is not None and context.global_batch_size > self.queue_size:
      raise ValueError(f"--batch_size={context.global_batch_size} exceeds queue_size="
                       f"{self.queue_size}: a step enqueues every positive of the global batch")
    needed = self.log_q_correction or self.negatives == "sampled"
    if not needed or context.resumed or context.reader is None:
      return
    counts = np.zeros(self.num_items + 1, np.float64)
    for batch in context.reader.dataset(4096):
      counts += np.bincount(batch["positive_item_id"].numpy(), minlength=self.num_items + 1)
    self.item_log_q.assign(log_q_table(counts))
    logging.info("log-q correction: %d items with positives in %d training records",
                 int(np.count_nonzero(counts)), int(counts.sum()))

  # ------------------------------------------------------------------ building

  def dummy_features(self, batch: int = 1) -> Dict[str, tf.Tensor]:
    n = self.max_seq_len
    return {"user_id": tf.zeros([batch], tf.int64), "timestamp": tf.zeros([batch], tf.int64),
            "scenario_id": tf.zeros([batch], tf.int64),
            "user_features": tf.zeros([batch, schema.NUM_USER_FEATURES], tf.int64),
            SEQ: tf.zeros([batch, n], tf.int64), "seq_domain_ids": tf.zeros([batch, n], tf.int64),
            "seq_timestamps": tf.zeros([batch, n], tf.int64),
            "seq_mask": tf.zeros([batch, n], tf.bool),
            "positive_item_id": tf.ones([batch], tf.int64)}

  def build_and_fill(self, item_store: Any) -> "RetrievalModel":
    feats = self.dummy_features()
    self(feats, training=False)
    self.encode_items(feats["positive_item_id"])
    if self.negative_queue is not None:
      self.negative_queue.build()
    self.item_encoder.set_item_features(item_store)
    return self

  def get_config(self) -> Dict[str, Any]:
    return dict(num_items=self.num_items, dim=self.dim, item_features=list(self.item_features),
                num_categories=self.num_categories, visual_dim=self.visual_dim,
                num_tokens=self.num_tokens, num_tags=self.num_tags,
                max_seq_len=self.max_seq_len,
                temperature=self.temperature,
                log_q_correction=self.log_q_correction, dropout=self.dropout,
                negatives=self.negatives, queue_size=self.queue_size,
                num_sampled=self.num_sampled)

  @classmethod
  def from_config(cls, config: Dict[str, Any], custom_objects=None) -> "RetrievalModel":
    return cls(**config)


def log_q_table(counts: np.ndarray) -> np.ndarray:
  """<float32> log of each item's share of the positives; items never positive (they are never
  in-batch candidates) get the log of half the smallest share, row 0 (padding) too."""
  counts = np.asarray(counts, np.float64)
  total = counts.sum()
  if total <= 0:
    return np.zeros_like(counts, np.float32)
  share = counts / total
  floor = share[share > 0].min() / 2
  return np.log(np.where(share > 0, share, floor)).astype(np.float32)


__all__ = ["RetrievalModel", "log_q_table", "shared_step_seed"]
