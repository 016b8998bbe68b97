"""tf.distribute set-up: logical CPU replicas, strategy by name, chief detection.

`--strategy=mirrored --cpu_replicas=2` splits the CPU into two logical devices so that the
MirroredStrategy path (per-replica batches, all-reduce, mirrored variables) runs without GPUs,
as in CI; on a GPU machine `mirrored` uses every GPU. `multi_worker` reads `TF_CONFIG`.
"""

from __future__ import annotations

import json
import os

import tensorflow as tf

from tfrec.config import STRATEGIES


def configure_cpu_replicas(n: int) -> None:
  """Splits the first physical CPU into `n` logical devices (n >= 2; 0/1: leave as is).

  Raises:
    RuntimeError: TensorFlow's devices are already initialised with another split (this must
      run before the first op; in tests, run training in a fresh process).
  """
  if n <= 1:
    return
  cpu = tf.config.list_physical_devices("CPU")[0]
  current = tf.config.get_logical_device_configuration(cpu)
  if current is not None and len(current) == n:
    return
  try:
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)])
  except RuntimeError as e:
    raise RuntimeError(f"--cpu_replicas={n}: TensorFlow's devices were already initialised "
                       f"({len(tf.config.list_logical_devices('CPU'))} logical CPUs); set it "
                       "before any TensorFlow op runs (a fresh process)") from e


def make_strategy(name: str, cpu_replicas: int = 0) -> tf.distribute.Strategy:
  """The strategy called `name` (see `tfrec.config.STRATEGIES`)."""
  if name not in STRATEGIES:
    raise ValueError(f"unknown strategy {name!r}; choose from {STRATEGIES}")
  if name == "multi_worker":  # before anything initialises the runtime (collectives)
    return _multi_worker()
  configure_cpu_replicas(cpu_replicas)
  gpus = tf.config.list_logical_devices("GPU")
  if name == "default":
    if cpu_replicas > 1:
      raise ValueError("--cpu_replicas needs --strategy=mirrored (or multi_worker)")
    return tf.distribute.get_strategy()
  if name == "one_device":
    return tf.distribute.OneDeviceStrategy("/gpu:0" if gpus else "/cpu:0")
  if name == "mirrored":
    if gpus:
      return tf.distribute.MirroredStrategy()
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(
        devices=devices, cross_device_ops=tf.distribute.ReductionToOneDevice())
  raise AssertionError(name)


def _multi_worker() -> tf.distribute.Strategy:
  if "TF_CONFIG" not in os.environ:
    raise ValueError("--strategy=multi_worker needs TF_CONFIG (cluster and task); see "
                     "https://www.tensorflow.org/guide/distributed_training")
  try:
    json.loads(os.environ["TF_CONFIG"])
  except json.JSONDecodeError as e:
    raise ValueError(f"TF_CONFIG is not valid JSON: {e}") from e
  options = tf.distribute.experimental.CommunicationOptions(
      implementation=tf.distribute.experimental.CommunicationImplementation.RING)
  return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
  """True on the worker that writes checkpoints, logs and exports."""
  return bool(strategy.extended.should_checkpoint)


def num_input_pipelines(strategy: tf.distribute.Strategy) -> int:
  """Input pipelines (one per worker) of a strategy."""
  resolver = getattr(strategy, "cluster_resolver", None)
  if resolver is None or not resolver.cluster_spec().as_dict():
    return 1
  spec = resolver.cluster_spec().as_dict()
  return len(spec.get("worker", [])) + len(spec.get("chief", []))
