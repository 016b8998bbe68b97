"""`python -m tfrec.train --flagfile=configs/<paper>/<variant>.flags`: train a ranking model.

flags -> frozen `RunConfig` -> strategy -> readers -> model (in the strategy's scope) -> Keras
`fit` with TensorBoard, BackupAndRestore (input position restored too), best-checkpoint keeping,
early stopping, NaN guard -> final weights -> optional SavedModel.

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
from typing import List, Sequence

import tfrec  # noqa: F401  (Keras 2 switch before TensorFlow)

from absl import app
from absl import logging
import tensorflow as tf
import tf_keras as keras

from tfrec import callbacks as cb
from tfrec import config as config_lib
from tfrec import distribute
from tfrec import flags as tfrec_flags
from tfrec import runs
from tfrec.data.info import DatasetInfo
from tfrec.data.item_store import ItemStore


@dataclasses.dataclass
class TrainResult:
  """What a finished run produced."""

  run_dir: str
  final_checkpoint: str
  history: dict
  steps: int
  resumed_from_step: int
  export_dir: str = ""


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


# What the best checkpoint keeps per record kind: (training metric, mode); validation
# prefixes "val_".
_MONITOR = {"ranking": ("auc", "max"), "ccl_pair": ("loss", "min")}


def build_callbacks(cfg: config_lib.RunConfig, strategy: tf.distribute.Strategy,
                    validate: bool, extra: Sequence[keras.callbacks.Callback] = (),
                    kind: str = "ranking") -> List[keras.callbacks.Callback]:
  """NaN guard first (so no backup saves a diverged step), then backup, checkpoints, logs."""
  t = cfg.train
  paths = config_lib.run_paths(t.run_dir)
  metric, mode = _MONITOR[kind]
  monitor = f"val_{metric}" if validate else metric
  chief = distribute.is_chief(strategy)
  callbacks = [cb.NanGuard()]
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


def _distributed(strategy, reader_, batch_size: int, training: bool, skip_steps: int = 0,
                 labelled: bool = True):
  """A distributed dataset of (features, label) (features alone when not `labelled`);
  training streams repeat epoch after epoch."""
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
    return ds.map(runs.split_label) if labelled else ds

  return strategy.distribute_datasets_from_function(dataset_fn)


def fill_queues(model: keras.Model, strategy: tf.distribute.Strategy, reader_,
                batch_size: int) -> int:
  """CCL Algorithm 1 lines 2-4: fills the dictionaries with keys of random training pairs
  (`reader_`: a shuffled reader with its own seed) before the first step. Returns the keys
  written."""
  steps = math.ceil(model.queue_size / batch_size)
  ds = iter(_distributed(strategy, reader_, batch_size, True, labelled=False))
  step = tf.function(lambda batch: strategy.run(model.fill_step, args=(batch,)))
  for _ in range(steps):
    step(next(ds))
  written = int(model.target_queue.count.numpy())
  logging.info("CCL dictionaries filled: %d keys each (K=%d)", min(written, model.queue_size),
               model.queue_size)
  return written


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
  strategy = distribute.make_strategy(t.strategy, t.cpu_replicas)
  setup_runtime(cfg)
  chief = distribute.is_chief(strategy)
  _check_run_dir(cfg, chief)
  if t.export_dir and runs.record_kind(cfg) != "ranking":
    raise ValueError(f"--export_dir: {cfg.model.name} is a pre-training model; export the "
                     "ranking model that initialises from it")
  if t.export_dir and chief:
    from tfrec import serving as export_lib
    export_lib.check_export_dir(t.export_dir)  # fail before training, not after
  if chief:
    cfg.save()
    if flags_text:
      with open(os.path.join(t.run_dir, config_lib.FLAGS_FILE), "w") as f:
        f.write(flags_text)
  paths = config_lib.run_paths(t.run_dir)
  info = DatasetInfo.load(cfg.data.data_dir)
  store = ItemStore.load(cfg.data.data_dir)
  kind = runs.record_kind(cfg)
  train_reader = runs.reader(cfg, cfg.data.train_split, training=True, info=info,
                             with_provenance=True, kind=kind)
  pipelines = distribute.num_input_pipelines(strategy)
  per_replica = max(1, t.batch_size // strategy.num_replicas_in_sync)
  batches = math.ceil(train_reader.num_records / pipelines / per_replica)
  steps_per_epoch = t.steps_per_epoch or max(
      1, math.ceil(batches / max(1, strategy.num_replicas_in_sync // pipelines)))
  start_step = cb.backup_step(paths["backup"]) if chief or pipelines == 1 else 0
  ranking = kind == "ranking"
  validate = t.validation_steps != 0 and ranking  # ccl_pair data has one split
  with strategy.scope():
    model = runs.build_model(cfg, info, store)
    if t.init_from and start_step == 0:
      _init_from(model, t.init_from, store, t.init_layers)
    if ranking:
      model.compile(
          optimizer=keras.optimizers.Adam(t.learning_rate),
          loss=keras.losses.BinaryCrossentropy(from_logits=True),
          metrics=[keras.metrics.AUC(from_logits=True, name="auc")],
          jit_compile=t.jit_compile)
    else:  # the model's own train_step computes its objective (CCL: eq. 5-8)
      if t.batch_size > model.queue_size:
        raise ValueError(f"--batch_size={t.batch_size} exceeds --queue_size="
                         f"{model.queue_size}: a step enqueues the whole global batch")
      model.compile(optimizer=keras.optimizers.Adam(t.learning_rate), jit_compile=t.jit_compile)
  if not ranking and start_step == 0:
    fill_cfg = dataclasses.replace(cfg, train=dataclasses.replace(t, seed=t.seed + 7919))
    fill_queues(model, strategy, runs.reader(fill_cfg, cfg.data.train_split, training=True,
                                             info=info, kind=kind), t.batch_size)
  train_ds = _distributed(strategy, train_reader, t.batch_size, True, skip_steps=start_step,
                          labelled=ranking)
  val_ds = None
  if validate:
    val_reader = runs.reader(cfg, cfg.data.eval_split, training=False, info=info)
    val_ds = _distributed(strategy, val_reader, t.batch_size, False)
  logging.info("strategy %s with %d replica(s), %d input pipeline(s); %d steps per epoch",
               type(strategy).__name__, strategy.num_replicas_in_sync, pipelines,
               steps_per_epoch)
  if start_step:
    logging.info("resuming from the backup at step %d (epoch %d, step %d of %d)", start_step,
                 start_step // steps_per_epoch, start_step % steps_per_epoch, steps_per_epoch)
  history = model.fit(
      train_ds, epochs=t.epochs, steps_per_epoch=steps_per_epoch, validation_data=val_ds,
      validation_steps=t.validation_steps, verbose=t.verbose,
      callbacks=build_callbacks(cfg, strategy, validate, extra_callbacks, kind=kind))
  final = _write_path(paths["final"], chief)
  model.save_weights(final)
  if not chief:
    shutil.rmtree(os.path.dirname(final), ignore_errors=True)
  result = TrainResult(run_dir=t.run_dir, final_checkpoint=paths["final"],
                       history=dict(history.history),
                       steps=int(model.optimizer.iterations.numpy()),
                       resumed_from_step=start_step)
  if t.export_dir and chief:
    from tfrec import serving as export_lib
    result.export_dir = export_lib.export(model, t.export_dir)
  return result


def main(argv: Sequence[str]) -> None:
  del argv
  fl = tfrec_flags.FLAGS
  try:
    cfg = tfrec_flags.run_config(fl)
  except ValueError as e:
    sys.exit(f"tfrec.train: {e}")
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
  except (cb.CheckpointError, FileExistsError, FileNotFoundError, ValueError) as e:
    sys.exit(f"tfrec.train: {e}")
  last = {k: v[-1] for k, v in result.history.items() if v}
  print(f"tfrec.train: done, {result.steps} steps; "
        + ", ".join(f"{k}={v:.4f}" for k, v in sorted(last.items()))
        + f"; weights {result.final_checkpoint}"
        + (f"; SavedModel {result.export_dir}" if result.export_dir else ""))


def run() -> None:
  tfrec_flags.define_flags()
  app.run(main)


if __name__ == "__main__":
  run()
