"""Training callbacks and checkpoint checks for the failure modes measured on TF 2.21 + tf_keras.

* `NanGuard`: a NaN/inf loss raises `TrainingDiverged` at once. (`TerminateOnNaN` with
  `BackupAndRestore` returns normally, deletes the backup and leaves NaN weights; raising
  instead keeps the backup of the last good step and the best checkpoint, and `tfrec.train`
  exits non-zero without exporting.)
* `Throughput`: examples/s and the learning rate as TensorBoard scalars.
* `check_checkpoint_state`: a `checkpoint` state file that points at missing files makes
  `tf.train.latest_checkpoint` return None and training silently restart from step 0; this
  finds it and raises instead.
* `backup_step`: the global step stored in a BackupAndRestore backup, from which the input
  position is derived (Keras resumes at the right step but re-reads the dataset from its start).
"""

from __future__ import annotations

import math
import os
import time
from typing import Optional

import tensorflow as tf
import tf_keras as keras


class TrainingDiverged(RuntimeError):
  """The training loss became NaN or infinite."""


class CheckpointError(RuntimeError):
  """A checkpoint state file that cannot be honoured."""


class NanGuard(keras.callbacks.Callback):
  """Raises `TrainingDiverged` on the first batch whose loss is not finite.

  Put it first in the callback list so that no later callback (a backup) saves the step.
  """

  def on_train_batch_end(self, batch: int, logs: Optional[dict] = None) -> None:
    loss = (logs or {}).get("loss")
    if loss is not None and not math.isfinite(float(loss)):
      step = int(self.model.optimizer.iterations.numpy())
      raise TrainingDiverged(f"training loss is {float(loss)} at step {step} (batch {batch} of "
                             "the epoch): weights are no longer finite. The backup and the best "
                             "checkpoint of earlier steps are kept; lower --learning_rate or "
                             "check the data, then resume or restart.")


class Throughput(keras.callbacks.Callback):
  """Writes `examples_per_second` and `learning_rate` every `every` steps to `log_dir`.

  Args:
    log_dir: TensorBoard directory (the training writer's).
    global_batch_size: examples per step (all replicas).
    every: period in steps.
  """

  def __init__(self, log_dir: str, global_batch_size: int, every: int = 50):
    super().__init__()
    self.log_dir = log_dir
    self.global_batch_size = global_batch_size
    self.every = max(1, every)
    self._writer = None
    self._t0 = self._step0 = None

  def on_train_begin(self, logs=None):
    self._writer = tf.summary.create_file_writer(self.log_dir)
    self._step = int(self.model.optimizer.iterations.numpy())  # read once; counted after

  def on_train_batch_end(self, batch, logs=None):
    self._step += 1
    if self._t0 is None:  # the first step (tracing, warm-up) is not timed
      self._t0, self._step0 = time.perf_counter(), self._step
      return
    if self._step - self._step0 >= self.every:
      seconds = time.perf_counter() - self._t0
      rate = (self._step - self._step0) * self.global_batch_size / max(seconds, 1e-9)
      # record_if(True): Keras' TensorBoard callback installs its own update_freq condition.
      with self._writer.as_default(step=self._step), tf.summary.record_if(True):
        tf.summary.scalar("examples_per_second", rate)
        tf.summary.scalar("learning_rate", self._learning_rate())
      self._t0, self._step0 = time.perf_counter(), self._step

  def on_train_end(self, logs=None):
    if self._writer is not None:
      self._writer.flush()
      self._writer.close()

  def _learning_rate(self) -> float:
    lr = self.model.optimizer.learning_rate
    if isinstance(lr, keras.optimizers.schedules.LearningRateSchedule):
      lr = lr(self.model.optimizer.iterations)
    return float(keras.backend.get_value(lr))


def _state_files(directory: str):
  for root, _, files in os.walk(directory):
    if "checkpoint" in files:
      yield root


def check_checkpoint_state(directory: str) -> None:
  """Raises `CheckpointError` if a `checkpoint` state file under `directory` points at a
  checkpoint whose files are missing (or cannot be parsed)."""
  if not directory or not os.path.isdir(directory):
    return
  for root in _state_files(directory):
    state_file = os.path.join(root, "checkpoint")
    try:
      state = tf.train.get_checkpoint_state(root)
    except Exception as e:  # a damaged text proto
      raise CheckpointError(f"{state_file}: cannot parse the checkpoint state ({e})") from e
    if state is None or not state.model_checkpoint_path:
      raise CheckpointError(f"{state_file}: checkpoint state names no checkpoint")
    path = state.model_checkpoint_path
    if not os.path.isabs(path):
      path = os.path.join(root, path)
    if not tf.io.gfile.exists(path + ".index"):
      raise CheckpointError(
          f"{state_file} points at {path}, whose files are missing: resuming would silently "
          "restart from step 0. Restore the files, or delete the state file (and the backup "
          "directory) to start over deliberately.")


def backup_step(backup_dir: str) -> int:
  """The optimizer step saved in the BackupAndRestore backup under `backup_dir` (0: none)."""
  chief = os.path.join(backup_dir, "chief")
  if not os.path.isdir(chief):
    return 0
  check_checkpoint_state(chief)
  latest = tf.train.latest_checkpoint(chief)
  if latest is None:
    return 0
  reader = tf.train.load_checkpoint(latest)
  keys = [k for k in reader.get_variable_to_shape_map()
          if k.endswith("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE")]
  if len(keys) != 1:
    raise CheckpointError(f"{latest}: cannot find the optimizer step in the backup ({keys})")
  return int(reader.get_tensor(keys[0]))
