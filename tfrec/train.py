"""`python -m tfrec.train --flagfile=configs/<paper>/<variant>.flags`: train any registered model.

flags -> frozen `RunConfig` -> strategy -> readers of the model's record kind -> model (in the
strategy's scope) -> its `before_training` hook -> Keras `fit` on the model's own train/test
steps (`tfrec.models.core`: named, weighted losses) with TensorBoard, BackupAndRestore (input
position and in-step randomness restored too), best-checkpoint keeping and early stopping on
the model's MONITOR, NaN guard -> final weights -> optional SavedModel.

This module knows no model and no record kind by name: everything model-specific is a class
attribute or a hook of the model (`RECORD_KIND`, `LOSSES`, `MONITOR`, `VALIDATES`,
`EXPORTABLE`, `before_training`, `after_train_step`).

Validation never touches a reported split by accident: `--valid_split` (default "valid") that
names a split evaluation reports (test, test_cold, ...) is refused unless
`--allow_test_validation` is given, and that choice is stored in config.json.

Exit status: 0 when the run completes; 1 when the loss diverges (the backup and the best
checkpoint are kept, nothing is exported), when a checkpoint state is broken, or on bad input.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import sys
import tempfile
from typing import List, Sequence, Tuple

import tfrec  # noqa: F401  (Keras 2 switch before TensorFlow)

from absl import logging
import tensorflow as tf
import tf_keras as keras

from tfrec import callbacks as cb
from tfrec import cli
from tfrec import config as config_lib
from tfrec import distribute
from tfrec import flags as tfrec_flags
from tfrec import runs
from tfrec.data.info import DatasetInfo
from tfrec.data.item_store import ItemStore
from tfrec.models import core
from tfrec.models import registry


@dataclasses.dataclass
class TrainResult:
  """What a finished run produced."""

  run_dir: str
  final_checkpoint: str
  history: dict
  steps: int
  resumed_from_step: int
  export_dir: str = ""
  # {"monitor": e.g. "val_auc", "mode": "max"|"min", "value": best value, "epoch": 1-based}
  best: dict = dataclasses.field(default_factory=dict)


def setup_runtime(cfg: config_lib.RunConfig) -> None:
  """Seeds, op determinism and the mixed-precision policy (before any model is built)."""
  keras.utils.set_random_seed(cfg.train.seed)
  if cfg.train.deterministic:
    tf.config.experimental.enable_op_determinism()
  keras.mixed_precision.set_global_policy(cfg.train.precision)


def _check_run_dir(cfg: config_lib.RunConfig, chief: bool) -> None:
  """Refuses a run directory that holds a different run; checks its checkpoint states."""
  paths = config_lib.run_paths(cfg.train.run_dir)
  for d in (paths["backup"], paths["checkpoints"]):
    cb.check_checkpoint_state(d)
  path = os.path.join(cfg.train.run_dir, config_lib.CONFIG_FILE)
  if os.path.exists(path):
    old = config_lib.RunConfig.load(cfg.train.run_dir)
    same = old.data == cfg.data and old.model == cfg.model and dataclasses.replace(
        old.train, epochs=0, verbose=0, export_dir="", profile_batch="") == dataclasses.replace(
            cfg.train, epochs=0, verbose=0, export_dir="", profile_batch="")
    if not same:
      raise ValueError(f"{path} holds a different run (data, model or training options "
                       "differ): use a new --run_dir, or delete this one to start over")
    if tf.io.gfile.exists(paths["final"] + ".index") and not os.path.isdir(
        os.path.join(paths["backup"], "chief")):
      raise ValueError(f"{cfg.train.run_dir} holds a finished run ({paths['final']}); use a "
                       "new --run_dir, or delete this one to train again")


def check_validation(cfg: config_lib.RunConfig, validates: bool) -> None:
  """Refuses to validate on a split that evaluation reports, unless explicitly allowed.

  Raises:
    ValueError: naming the flag, the split and the way out.
  """
  split = cfg.data.valid_split
  if (validates and config_lib.is_reported_split(split)
      and not cfg.train.allow_test_validation):
    raise ValueError(
        f"--valid_split={split}: evaluation reports this split, so early stopping and the "
        "best checkpoint would be chosen on the figures you report. Validate on "
        f"'{config_lib.VALID_SPLIT}' (every tfrec dataset has one), or pass "
        "--allow_test_validation to do it anyway (recorded in config.json and printed by "
        "every evaluation)")


def _write_path(path: str, chief: bool) -> str:
  """Non-chief workers write to a temporary twin (MultiWorker saves are collective)."""
  if chief:
    return path
  return os.path.join(tempfile.mkdtemp(prefix="tfrec_worker_"), os.path.basename(path))


def _init_from(model: keras.Model, source: str, store: ItemStore, layers: str = "") -> None:
  """Initialises layers from another run (`runs.init_from`); the item-store tables are then
  re-filled from this run's dataset, which they must describe."""
  restored, kept = runs.init_from(model, source,
                                  layers=tuple(x for x in layers.split(",") if x) or None)
  model.item_encoder.set_item_features(store)
  logging.info("initialised %s from %s; initial values kept for %s", ", ".join(restored),
               source, ", ".join(kept) or "nothing")


def monitor_of(model_cls: type, validate: bool) -> Tuple[str, str]:
  """(the logged metric that picks the best checkpoint, "max" | "min") of a model class."""
  metric, mode = model_cls.MONITOR
  return (f"val_{metric}" if validate else metric), mode


def build_callbacks(cfg: config_lib.RunConfig, strategy: tf.distribute.Strategy,
                    monitor: Tuple[str, str], extra: Sequence[keras.callbacks.Callback] = (),
                    validation: Sequence[keras.callbacks.Callback] = ()
                    ) -> List[keras.callbacks.Callback]:
  """NaN guard first (so no backup saves a diverged step), then `validation` (callbacks that
  add the monitored value to the epoch's logs), backup, checkpoints, logs; `monitor` = (logged
  metric, mode) picks the best checkpoint and stops early."""
  t = cfg.train
  paths = config_lib.run_paths(t.run_dir)
  monitor, mode = monitor
  chief = distribute.is_chief(strategy)
  callbacks = [cb.NanGuard()] + list(validation)
  callbacks.append(keras.callbacks.BackupAndRestore(
      paths["backup"], save_freq=t.backup_every_steps or "epoch", delete_checkpoint=True))
  callbacks.append(keras.callbacks.ModelCheckpoint(
      paths["best"], monitor=monitor, mode=mode, save_best_only=True, save_weights_only=True))
  profile = tuple(int(x) for x in t.profile_batch.split(",")) if t.profile_batch else 0
  callbacks.append(keras.callbacks.TensorBoard(
      paths["logs"], update_freq=t.log_every_steps, profile_batch=profile, write_graph=False))
  if chief:
    callbacks.append(cb.Throughput(os.path.join(paths["logs"], "train"), t.batch_size,
                                   every=t.log_every_steps))
  if t.early_stopping_patience:
    callbacks.append(keras.callbacks.EarlyStopping(monitor=monitor, mode=mode,
                                                   patience=t.early_stopping_patience))
  return callbacks + list(extra)


def _distributed(strategy, reader_, batch_size: int, training: bool, skip_steps: int = 0):
  """A distributed dataset of reader batches (dicts, labels included: the model's
  `compute_losses` reads what it needs); training streams repeat epoch after epoch."""
  replicas = strategy.num_replicas_in_sync
  pipelines = distribute.num_input_pipelines(strategy)

  def dataset_fn(ctx: tf.distribute.InputContext) -> tf.data.Dataset:
    ds = reader_.dataset(batch_size, input_context=ctx)
    if training:
      ds = ds.repeat()
      if skip_steps:
        # Resume at the input position of the restored step: each step consumes one
        # per-replica batch per local replica of this pipeline.
        ds = ds.skip(skip_steps * max(1, replicas // pipelines))
    return ds

  return strategy.distribute_datasets_from_function(dataset_fn)


def make_optimizer(t: config_lib.TrainConfig, total_steps: int = 0
                   ) -> keras.optimizers.Optimizer:
  """Adam at `t.learning_rate` (AdamW with `t.weight_decay` when > 0: ADAPT §IV-B), clipping
  gradients to the global norm `t.clip_norm` if > 0; with `t.lr_decay` "linear" the rate falls
  linearly to 0 over `total_steps` (a function of the optimizer's step, so a resumed run
  continues the schedule)."""
  rate = t.learning_rate
  if t.lr_decay == "linear":
    rate = keras.optimizers.schedules.PolynomialDecay(
        t.learning_rate, decay_steps=max(1, int(total_steps)), end_learning_rate=0.0, power=1.0)
  if t.weight_decay > 0:
    return keras.optimizers.AdamW(rate, weight_decay=t.weight_decay,
                                  global_clipnorm=t.clip_norm or None)
  return keras.optimizers.Adam(rate, global_clipnorm=t.clip_norm or None)


def train(cfg: config_lib.RunConfig,
          extra_callbacks: Sequence[keras.callbacks.Callback] = (),
          flags_text: str = "") -> TrainResult:
  """Trains `cfg` and returns what the run produced.

  Raises:
    callbacks.TrainingDiverged: a NaN/inf loss (backup and best checkpoint kept).
    callbacks.CheckpointError: a checkpoint state file pointing at missing files.
    DataError / ValueError: bad input or options, naming the file or flag.
  """
  t = cfg.train
  model_cls = registry.get(cfg.model.name).cls
  validate = t.validation_steps != 0 and model_cls.VALIDATES
  check_validation(cfg, validate)
  strategy = distribute.make_strategy(t.strategy, t.cpu_replicas)
  setup_runtime(cfg)
  chief = distribute.is_chief(strategy)
  _check_run_dir(cfg, chief)
  if t.export_dir and chief:
    from tfrec import serving
    serving.check_exportable(model_cls, cfg.model.name)
    serving.check_export_dir(t.export_dir)  # fail before training, not after
  if chief:
    cfg.save()
    if flags_text:
      with open(os.path.join(t.run_dir, config_lib.FLAGS_FILE), "w") as f:
        f.write(flags_text)
  paths = config_lib.run_paths(t.run_dir)
  info = DatasetInfo.load(cfg.data.data_dir)
  store = ItemStore.load(cfg.data.data_dir)
  kind = model_cls.RECORD_KIND
  if t.valid_retrieval and kind != "matching":
    raise ValueError(f"--valid_retrieval={t.valid_retrieval}: {cfg.model.name} is not a "
                     f"retrieval model (it reads {kind} records); it validates "
                     f"{model_cls.MONITOR[0]}")
  train_reader = runs.reader(cfg, cfg.data.train_split, training=True, info=info,
                             with_provenance=True, kind=kind)
  pipelines = distribute.num_input_pipelines(strategy)
  per_replica = max(1, t.batch_size // strategy.num_replicas_in_sync)
  batches = math.ceil(train_reader.num_records / pipelines / per_replica)
  steps_per_epoch = t.steps_per_epoch or max(
      1, math.ceil(batches / max(1, strategy.num_replicas_in_sync // pipelines)))
  start_step = cb.backup_step(paths["backup"]) if chief or pipelines == 1 else 0
  with strategy.scope():
    model = runs.build_model(cfg, info, store)
    model.configure_training(seed=t.seed, loss_weights=t.loss_weights)
    if t.init_from and start_step == 0:
      _init_from(model, t.init_from, store, t.init_layers)
    model.compile(optimizer=make_optimizer(t, t.epochs * steps_per_epoch),
                  jit_compile=t.jit_compile)

  def other_batches(seed: int):
    other = dataclasses.replace(cfg, train=dataclasses.replace(t, seed=seed))
    return iter(_distributed(strategy, runs.reader(other, cfg.data.train_split, training=True,
                                                   info=info, kind=kind), t.batch_size, True))

  model.before_training(core.TrainingContext(
      strategy=strategy, global_batch_size=t.batch_size, seed=t.seed,
      resumed=start_step > 0, batches=other_batches, reader=train_reader,
      total_steps=t.epochs * steps_per_epoch))
  train_ds = _distributed(strategy, train_reader, t.batch_size, True, skip_steps=start_step)
  val_ds, validation_steps = None, t.validation_steps
  if validate:
    val_reader = runs.reader(cfg, cfg.data.valid_split, training=False, info=info, kind=kind)
    val_ds = _distributed(strategy, val_reader, t.batch_size, False)
    # More steps than the split holds would run Keras out of validation data after the first
    # epoch, and every later epoch would silently skip validation (measured, tf_keras 2.21).
    val_batches = max(1, math.ceil(math.ceil(val_reader.num_records / pipelines / per_replica)
                                   / max(1, strategy.num_replicas_in_sync // pipelines)))
    if validation_steps and validation_steps > val_batches:
      logging.warning("--validation_steps=%d: the %s split holds %d batches; validating on "
                      "those", validation_steps, cfg.data.valid_split, val_batches)
      validation_steps = val_batches
    if validation_steps is None and strategy.num_replicas_in_sync > 1:
      # Keras needs the count for a distributed dataset of several replicas (it refuses
      # None: "you must specify the number of steps"); one pass is val_batches steps.
      validation_steps = val_batches
  logging.info("strategy %s with %d replica(s), %d input pipeline(s); %d steps per epoch; "
               "losses %s", type(strategy).__name__, strategy.num_replicas_in_sync, pipelines,
               steps_per_epoch, model.loss_weights)
  if start_step:
    logging.info("resuming from the backup at step %d (epoch %d, step %d of %d)", start_step,
                 start_step // steps_per_epoch, start_step % steps_per_epoch, steps_per_epoch)
  monitor = monitor_of(model_cls, validate)
  validation = []
  if t.valid_retrieval and validate:  # the epoch chosen by the reported metric (config doc)
    from tfrec.evaluation.retrieval import RetrievalValidation
    validation.append(RetrievalValidation(cfg, info, store, t.valid_retrieval))
    monitor = (validation[0].name, "max")
  history = model.fit(
      train_ds, epochs=t.epochs, steps_per_epoch=steps_per_epoch, validation_data=val_ds,
      validation_steps=validation_steps, verbose=t.verbose,
      callbacks=build_callbacks(cfg, strategy, monitor, extra_callbacks, validation))
  final = _write_path(paths["final"], chief)
  model.save_weights(final)
  if not chief:
    shutil.rmtree(os.path.dirname(final), ignore_errors=True)
  result = TrainResult(run_dir=t.run_dir, final_checkpoint=paths["final"],
                       history=dict(history.history),
                       steps=int(model.optimizer.iterations.numpy()),
                       resumed_from_step=start_step,
                       best=best_epoch(dict(history.history), *monitor))
  if t.export_dir and chief:
    # What `python -m tfrec.export` writes: the weights evaluate reports (the best epoch when
    # the run validated, else the final ones), request limits from the dataset, a retrieval
    # model's index of the target items.
    from tfrec import serving
    which = "best" if tf.io.gfile.exists(paths["best"] + ".index") else "final"
    result.export_dir = serving.export_run(t.run_dir, t.export_dir, checkpoint=which)
  return result


def best_epoch(history: dict, monitor: str, mode: str) -> dict:
  """The epoch (1-based) of `history` whose `monitor` is best, as ModelCheckpoint keeps it
  (the first of equal values); {} when the metric was not logged."""
  values = history.get(monitor) or []
  finite = [(v, i) for i, v in enumerate(values) if math.isfinite(v)]
  if not finite:
    return {}
  pick = max if mode == "max" else min
  value = pick(v for v, _ in finite)
  epoch = next(i for v, i in finite if v == value)
  return {"monitor": monitor, "mode": mode, "value": float(value), "epoch": epoch + 1}


def main(argv: Sequence[str]) -> None:
  del argv
  fl = tfrec_flags.FLAGS
  cfg = tfrec_flags.run_config(fl)
  flags_text = "\n".join(f.serialize() for f in fl.get_flags_for_module("tfrec.flags")
                         if f.value is not None and f.serialize() and f.name != "overwrite")
  if fl.overwrite and os.path.isdir(cfg.train.run_dir):
    logging.warning("--overwrite: deleting %s", cfg.train.run_dir)
    shutil.rmtree(cfg.train.run_dir)
  try:
    result = train(cfg, flags_text=flags_text + "\n")
  except cb.TrainingDiverged as e:
    logging.error("%s", e)
    sys.exit(f"tfrec.train: diverged: {e}")
  except cb.CheckpointError as e:
    sys.exit(f"tfrec.train: {e}")
  last = {k: v[-1] for k, v in result.history.items() if v}
  print(f"tfrec.train: done, {result.steps} steps; "
        + ", ".join(f"{k}={v:.4f}" for k, v in sorted(last.items()))
        + f"; weights {result.final_checkpoint}"
        + (f"; SavedModel {result.export_dir}" if result.export_dir else ""))


def run() -> None:
  cli.run(main, "tfrec.train", tfrec_flags.define_flags)


if __name__ == "__main__":
  run()
