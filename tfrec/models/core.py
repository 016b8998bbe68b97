"""The training contract of every tfrec model: what `python -m tfrec.train` relies on, and all it
relies on (it knows no model and no record kind by name).

A model declares, as class attributes:

  RECORD_KIND   the record kind it trains on ("ranking", "ccl_pair", ...; `tfrec.data.schema`).
  LOSSES        the names of the losses `compute_losses` returns, e.g. ("bce",).
  MONITOR       (metric, "max" | "min"): what picks its best checkpoint and stops early
                ("val_" + metric when it validates).
  VALIDATES     whether it has a validation pass (a pre-training task on a one-split kind has
                none).
  EXPORTABLE    whether `tfrec.serving` can export it.

and implements

  compute_losses(batch, training) -> {name: loss}
      each loss either <float32>[batch] per example (reduced over the GLOBAL batch: the sum
      over every replica's rows divided by their total count, so replicas holding different
      row counts, as in an epoch's last batch, still give one device's update) or a scalar
      that is the same on every replica (a regulariser of the weights: counted once).
      Metrics (AUC, top-1) are updated by the tasks it calls (`tfrec.tasks`).

and optionally the hooks

  before_training(context)   once before `fit` (CCL fills its dictionaries, Algorithm 1
                             lines 2-4); `context` gives the strategy, the global batch size
                             and a second shuffled stream of training batches.
  after_train_step()         after each optimizer step (CCL's momentum update, eq. 9).

The total loss is sum_name weight[name] * loss[name] (+ the layers' regularisation losses);
weights default to 1 and are set with `configure_training(loss_weights=...)` (the
`--loss_weights=name=value` flag). Every named loss ("<name>_loss") and its weight
("<name>_weight") is logged, so TensorBoard shows each as a scalar next to the total "loss".

Randomness inside a training step (dropout, and sampling to come) is derived from the run's
seed and the optimizer step (`tfrec.layers.step_random`), so a run resumed from its backup
draws exactly what the uninterrupted run drew.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Tuple

import tensorflow as tf
import tf_keras as keras

from tfrec.layers import step_random


@dataclasses.dataclass
class TrainingContext:
  """What `before_training` may use.

  Attributes:
    strategy: the run's tf.distribute strategy (the model was built in its scope).
    global_batch_size: rows per step over all replicas.
    seed: the run's seed.
    resumed: True when the run resumes from a backup (the model's state, queues included, is
      restored by Keras before the first step).
    batches: seed -> iterator over distributed batches of the training split, shuffled with
      that seed, repeating (for a pre-pass that must not consume the training stream).
    reader: the training split's `tfrec.data.pipeline.Reader` (one pass over it on the host,
      e.g. to count item popularity; `reader.num_records` its size), or None.
    total_steps: optimizer steps the run will take (epochs x steps per epoch; early stopping
      may end it sooner), or None when unknown.
  """

  strategy: tf.distribute.Strategy
  global_batch_size: int
  seed: int
  resumed: bool
  batches: Callable[[int], Iterator[Any]]
  reader: Any = None
  total_steps: Optional[int] = None


def global_rows(per_example: tf.Tensor) -> tf.Tensor:
  """Rows of the global batch: the sum over replicas of this replica's rows."""
  n = tf.shape(per_example)[0]
  ctx = tf.distribute.get_replica_context()
  if ctx is None or ctx.num_replicas_in_sync == 1:
    return n
  return ctx.all_reduce(tf.distribute.ReduceOp.SUM, n)


def _as_batch(data: Any) -> Mapping[str, tf.Tensor]:
  """A reader batch (a dict, labels included), or Keras' (features, label) pair merged."""
  if isinstance(data, tuple):
    batch = dict(data[0])
    if len(data) > 1 and data[1] is not None:
      batch["label"] = data[1]
    return batch
  return data


def _num_replicas() -> int:
  ctx = tf.distribute.get_replica_context()
  return 1 if ctx is None else ctx.num_replicas_in_sync


class LossTrackers(keras.layers.Layer):
  """The total loss ("loss") and each named loss ("<name>_loss") as epoch means.

  A layer of its own: metrics assigned to a Keras Model directly become part of
  `model.weights` (and of `get_weights`, weight comparisons and SavedModels); a sublayer's
  metrics do not (measured, tf_keras 2.21).
  """

  def __init__(self, names, **kwargs):
    super().__init__(**kwargs)
    self.total = keras.metrics.Mean("loss")
    self.named = {name: keras.metrics.Mean(f"{name}_loss") for name in names}


class Model(keras.Model):
  """Base class of every tfrec model (module docstring): named losses, their weights and
  trackers, the generic train/test steps, hooks.

  Subclasses set the class attributes and implement `compute_losses`; they create their
  layers and tasks in `__init__` as usual.
  """

  RECORD_KIND: str = "ranking"
  LOSSES: Tuple[str, ...] = ()
  MONITOR: Tuple[str, str] = ("loss", "min")
  VALIDATES: bool = True
  EXPORTABLE: bool = False

  def __init__(self, *args, **kwargs):
    super().__init__(*args, **kwargs)
    if not self.LOSSES:
      raise TypeError(f"{type(self).__name__} declares no LOSSES")
    self._train_seed = 0
    self._loss_weights = {name: 1.0 for name in self.LOSSES}
    self.loss_logs = LossTrackers(self.LOSSES, name="loss_logs")

  # ------------------------------------------------------------------ the contract

  def compute_losses(self, batch: Mapping[str, tf.Tensor],
                     training: Optional[bool] = None) -> Dict[str, tf.Tensor]:
    """{name: <float32>[batch] per-example loss or <float32>[] scalar} for every LOSSES name."""
    raise NotImplementedError

  def before_training(self, context: TrainingContext) -> None:
    """Runs once before training starts (or resumes)."""

  def after_train_step(self) -> None:
    """Runs after each optimizer step, inside the step's graph."""
    return None  # (a docstring-only body is one AutoGraph cannot convert)

  # ------------------------------------------------------------------ configuration

  @property
  def loss_weights(self) -> Dict[str, float]:
    return dict(self._loss_weights)

  def configure_training(self, seed: int = 0,
                         loss_weights: Optional[Mapping[str, float]] = None) -> None:
    """Sets the seed of in-step randomness and the loss weights (before `fit`).

    Raises:
      ValueError: a weight for a loss the model does not have (naming the ones it has).
    """
    self._train_seed = int(seed)
    weights = dict(loss_weights or {})
    unknown = sorted(set(weights) - set(self.LOSSES))
    if unknown:
      raise ValueError(f"--loss_weights: {type(self).__name__} has no losses {unknown}; its "
                       f"losses are {list(self.LOSSES)}")
    self._loss_weights = {name: float(weights.get(name, 1.0)) for name in self.LOSSES}

  # ------------------------------------------------------------------ steps

  def _total(self, losses: Mapping[str, tf.Tensor]) -> Tuple[tf.Tensor, tf.Tensor]:
    """(this replica's share of the weighted total loss, the per-example total for logging)."""
    missing = sorted(set(self.LOSSES) - set(losses))
    extra = sorted(set(losses) - set(self.LOSSES))
    if missing or extra:
      raise ValueError(f"{type(self).__name__}.compute_losses returned {sorted(losses)}; "
                       f"LOSSES declares {list(self.LOSSES)}")
    share, per_example, scalars = [], [], []
    for name in self.LOSSES:
      loss = tf.cast(losses[name], tf.float32)
      weight = self._loss_weights[name]
      if loss.shape.rank == 1:
        share.append(weight * tf.nn.compute_average_loss(
            loss, global_batch_size=global_rows(loss)))
        per_example.append(weight * loss)
      elif loss.shape.rank == 0:
        share.append(weight * loss / _num_replicas())
        scalars.append(weight * loss)
      else:
        raise ValueError(f"loss {name!r} has shape {loss.shape}: per-example [batch] or a "
                         "scalar")
    if self.losses:  # layers' regularisation losses, once per step
      reg = tf.add_n([tf.cast(x, tf.float32) for x in self.losses])
      share.append(tf.nn.scale_regularization_loss(reg))
      scalars.append(reg)
    logged = tf.add_n(per_example) if per_example else tf.zeros([1])
    if scalars:
      logged = logged + tf.add_n(scalars)
    return tf.add_n(share), logged

  def _update_trackers(self, losses: Mapping[str, tf.Tensor], logged: tf.Tensor) -> None:
    self.loss_logs.total.update_state(logged)
    for name in self.LOSSES:
      self.loss_logs.named[name].update_state(tf.cast(losses[name], tf.float32))

  def unmeasured_metrics(self) -> Tuple[str, ...]:
    """Names of metrics this configuration never updates (a task's metric when the loss does
    not go through the task): left out of the logs rather than logged as 0."""
    return ()

  def _logs(self) -> Dict[str, tf.Tensor]:
    skip = set(self.unmeasured_metrics())
    logs = {m.name: m.result() for m in self.metrics if m.name not in skip}
    for name, weight in self._loss_weights.items():
      # Keras sums a per-replica log over the replicas (fit's "auto" reduction off TPUs; the
      # metrics' results are already cross-replica values and pass through): each replica
      # logs its share so the epoch log shows the weight, not replicas x weight.
      logs[f"{name}_weight"] = tf.constant(weight, tf.float32) / _num_replicas()
    return logs

  def train_step(self, data):
    batch = _as_batch(data)
    seeds = step_random.training_step(self._train_seed, self.optimizer.iterations)
    with seeds:
      with tf.GradientTape() as tape:
        losses = self.compute_losses(batch, training=True)
        total, logged = self._total(losses)
    self.optimizer.minimize(total, self.trainable_variables, tape=tape)
    self.after_train_step()
    self._update_trackers(losses, logged)
    return self._logs()

  def test_step(self, data):
    if not self.VALIDATES:
      raise NotImplementedError(f"{type(self).__name__} has no validation pass")
    losses = self.compute_losses(_as_batch(data), training=False)
    _, logged = self._total(losses)
    self._update_trackers(losses, logged)
    return self._logs()


__all__ = ["Model", "TrainingContext", "global_rows"]
