"""Shared by the two-replica scripts (tests/*_two_replicas.py), imported after they split the CPU
into logical devices: the same training steps on one device and on MirroredStrategy over two
logical CPUs, and what the tests compare."""

import numpy as np
import tensorflow as tf


def compare_train_steps(build, batches):
  """`build(strategy)` -> a compiled core model; `batches`: dicts of numpy arrays (global
  batches, split over the replicas as Keras' fit splits them: first rows to replica 0).

  Returns {"replicas", "steps": [{"rows_per_replica", "loss_single", "loss_multi",
  "weights_vs_single", "weights_moved"}]} (max abs differences of the weights).
  """
  mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
  single, multi = build(tf.distribute.get_strategy()), build(mirrored)
  multi.set_weights(single.get_weights())
  initial = single.get_weights()
  out = {"replicas": mirrored.num_replicas_in_sync, "steps": []}
  for b in batches:
    n = len(next(iter(b.values())))
    shards = next(iter(mirrored.experimental_distribute_dataset(
        tf.data.Dataset.from_tensors(b).unbatch().batch(n))))
    first = next(iter(shards.values()))
    rows = [int(t.shape[0]) for t in mirrored.experimental_local_results(first)]
    single_logs = single.train_step({k: tf.constant(v) for k, v in b.items()})
    multi_logs = mirrored.run(tf.function(multi.train_step), args=(shards,))
    out["steps"].append({
        "rows_per_replica": rows,
        "loss_single": float(single_logs["loss"]),
        "loss_multi": float(mirrored.experimental_local_results(multi_logs["loss"])[0]),
        "weights_vs_single": max(float(np.abs(a - c).max()) for a, c in
                                 zip(multi.get_weights(), single.get_weights())),
        "weights_moved": max(float(np.abs(a - c).max()) for a, c in
                             zip(single.get_weights(), initial)),
    })
  return out
