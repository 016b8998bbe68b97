"""Run by tests/test_core.py in a fresh process (logical CPUs must be set before TensorFlow
starts): steps of a ranking model with a per-example loss AND a scalar loss on MirroredStrategy
over 2 logical CPUs against the same steps on one device, on an even (2 + 2 rows) and an
uneven (2 + 1 rows) global batch; prints what the test compares as one JSON line."""

import json
import types

import tfrec  # noqa: F401
from tfrec import distribute

distribute.configure_cpu_replicas(2)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from replica_steps import compare_train_steps  # noqa: E402
import tf_keras as keras  # noqa: E402

from tfrec.models.youtubenet import YouTubeNet  # noqa: E402

NUM_ITEMS, L = 30, 5


class WithScalarLoss(YouTubeNet):
  """YouTubeNet plus a scalar loss of the weights (the same on every replica): 1e-2 * sum of
  the squared item embeddings."""

  LOSSES = ("bce", "l2")

  def compute_losses(self, batch, training=None):
    losses = super().compute_losses(batch, training=training)
    table = self.item_encoder.trainable_weights[0]
    return {**losses, "l2": 1e-2 * tf.reduce_sum(tf.square(table))}


def batch(n, seed):
  rng = np.random.default_rng(seed)
  lens = rng.integers(1, L + 1, size=n)
  mask = np.arange(L)[None, :] < lens[:, None]
  return {"target_item_ids": np.where(mask, rng.integers(1, NUM_ITEMS + 1, (n, L)), 0),
          "target_timestamps": np.zeros((n, L), np.int64), "target_mask": mask,
          "timestamp": np.zeros(n, np.int64), "item_id": rng.integers(1, NUM_ITEMS + 1, n),
          "label": rng.integers(0, 2, n)}


def build(strategy):
  with strategy.scope():
    keras.utils.set_random_seed(1)
    m = WithScalarLoss(NUM_ITEMS, dim=8, item_features=("id",), max_seq_len=L,
                       mlp_units=(8,), dropout=0.0)
    m.build_and_fill(types.SimpleNamespace(num_items=NUM_ITEMS))
    m.configure_training(seed=0, loss_weights={"l2": 0.5})
    m.compile(optimizer=keras.optimizers.SGD(0.5))  # scale-sensitive, unlike Adam
  return m


out = compare_train_steps(build, [batch(n, seed=step) for step, n in enumerate((4, 3))])
print("RESULT " + json.dumps(out))
