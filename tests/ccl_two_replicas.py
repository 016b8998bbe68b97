"""Run by tests/test_ccl.py in a fresh process (logical CPUs must be set before TensorFlow
starts): one CCL step on MirroredStrategy over 2 logical CPUs against the same step on one
device, printing what the test compares as one JSON line."""

import json
import types

import tfrec  # noqa: F401
from tfrec import distribute

distribute.configure_cpu_replicas(2)

import numpy as np  # noqa: E402
from ccl_data import pair_features  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

from tfrec.models.ccl import CCL  # noqa: E402

NUM_ITEMS, L, K = 40, 6, 12


def features(n, seed):
  return pair_features(n, seed, NUM_ITEMS, L)


def build(strategy):
  with strategy.scope():
    keras.utils.set_random_seed(1)
    m = CCL(NUM_ITEMS, dim=8, item_features=("id",), max_seq_len=L, num_heads=2, ff_dim=8,
            dropout=0.0, num_time_blocks=8, queue_size=K, momentum=0.9, temperature=0.7)
    m.build_and_fill(types.SimpleNamespace(num_items=NUM_ITEMS))
    m.compile(optimizer=keras.optimizers.Adam(0.01))
  return m


mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
one = tf.distribute.get_strategy()
single, multi = build(one), build(mirrored)
multi.set_weights(single.get_weights())

# Dictionaries filled alike (Algorithm 1 lines 2-4), then two steps: an even global batch of 4
# (2 + 2 rows) and an uneven one of 3 (2 + 1 rows).
def distribute_batch(batch, n):
  """The global batch split over the replicas as Keras' fit would (first rows to replica 0)."""
  dist = mirrored.experimental_distribute_dataset(
      tf.data.Dataset.from_tensors(batch).unbatch().batch(n))
  return next(iter(dist))


fill = features(K, seed=0)
single.fill_step(fill)
mirrored.run(tf.function(multi.fill_step), args=(distribute_batch(fill, K),))
out = {"replicas": multi.distribute_strategy.num_replicas_in_sync, "steps": []}
for step, n in enumerate((4, 3)):
  batch = features(n, seed=10 + step)
  expected_keys = {d: single.keys(batch)[d].numpy() for d in ("target", "source")}
  ptr, count = int(multi.target_queue.pointer.numpy()), int(multi.target_queue.count.numpy())
  before = multi.target_queue.keys.numpy()
  single_logs = single.train_step(batch)
  shards = distribute_batch(batch, n)
  per_replica = [int(t.shape[0]) for t in
                 mirrored.experimental_local_results(shards["target_mask"])]
  multi_logs = mirrored.run(tf.function(multi.train_step), args=(shards,))
  rows = [(ptr + i) % K for i in range(n)]
  untouched = [r for r in range(K) if r not in rows]
  after = {d: multi.queue(d).keys.numpy() for d in ("target", "source")}
  out["steps"].append({
      "rows_per_replica": per_replica,
      "pointer_advance": (int(multi.target_queue.pointer.numpy()) - ptr) % K,
      "count_advance": int(multi.target_queue.count.numpy()) - count,
      "written_in_order": max(float(np.abs(after[d][rows] - expected_keys[d]).max())
                              for d in after),
      "others_untouched": float(np.abs(after["target"][untouched] - before[untouched]).max()),
      "queue_vs_single": max(float(np.abs(after[d] - single.queue(d).keys.numpy()).max())
                             for d in after),
      "loss_single": float(single_logs["loss"]),
      "loss_multi": float(mirrored.experimental_local_results(multi_logs["loss"])[0]),
      "weights_vs_single": max(float(np.abs(a - b).max()) for a, b in
                               zip(multi.get_weights(), single.get_weights())),
  })
print("RESULT " + json.dumps(out))
