"""Run by tests/test_couple.py in a fresh process (logical CPUs must be set before TensorFlow
starts): COUPLE's contrastive loss against its FIFO queue (eq. 12) trained on MirroredStrategy
over 2 logical CPUs against one device, three steps, an even (2 + 2) then an uneven (2 + 1)
global batch, so the later steps score every replica's earlier positives from the queue; prints
what the test compares (losses, weights, and the queue itself, which `get_weights` holds) as
one JSON line. No dropout and no memory tree: their randomness is per replica by design."""

import json

import tfrec  # noqa: F401
from tfrec import distribute

distribute.configure_cpu_replicas(2)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from replica_steps import compare_train_steps  # noqa: E402
import tf_keras as keras  # noqa: E402

from conftest import NUM_ITEMS, tiny_store  # noqa: E402
from tfrec.models.couple import COUPLE  # noqa: E402


def build(strategy):
  with strategy.scope():
    keras.utils.set_random_seed(1)
    m = COUPLE(NUM_ITEMS, dim=4, num_tags=6, ff_dim=4, group=False, dropout=0.0,
               negatives="queue", queue_size=8, temperature=0.5).build_and_fill(tiny_store())
    seq = tf.constant([[1, 6, 0]], tf.int64)
    m({"seq_item_ids": seq, "seq_mask": seq > 0, "seq_domain_ids": tf.zeros_like(seq)})
    m.compile(optimizer=keras.optimizers.SGD(0.5))
  return m


def batch(seqs, positives):
  seq = np.array(seqs, np.int64)
  return {"seq_item_ids": seq, "seq_mask": seq > 0, "seq_domain_ids": (seq > 5).astype(np.int64),
          "positive_item_id": np.array(positives, np.int64)}


batches = [batch([[1, 6, 0], [2, 0, 0], [3, 7, 8], [4, 9, 0]], [7, 8, 9, 10]),
           batch([[5, 0, 0], [1, 2, 0], [6, 0, 0], [7, 1, 0]], [6, 9, 7, 8]),
           batch([[2, 3, 0], [8, 0, 0], [9, 4, 0]], [10, 6, 7])]
out = compare_train_steps(build, batches)
print("RESULT " + json.dumps(out))
