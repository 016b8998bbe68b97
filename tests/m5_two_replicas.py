"""Run by tests/test_m5_baselines.py in a fresh process (logical CPUs must be set before
TensorFlow starts): the two losses of M5's baselines that sum over the whole batch, trained on
MirroredStrategy over 2 logical CPUs against one device, on an even (2 + 2 rows) and an uneven
(2 + 1 rows) global batch with an accidental hit: GRU4Rec+'s BPR-max over every replica's
positives plus the shared sampled negatives, and NT-Xent (CL4SRec's contrastive loss) over every
replica's views, here the query and its positive's item vector (CL4SRec's own augmentations are
drawn per replica, as its rows are, so its views differ from one device's by design). One model
carries both losses: `compare_train_steps` runs once per process (a second MirroredStrategy in
the same process failed its uneven step with a collective shape mismatch, measured).
Prints what the test compares as one JSON line."""

import json

import tfrec  # noqa: F401
from tfrec import distribute

distribute.configure_cpu_replicas(2)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402
from conftest import NUM_ITEMS, tiny_store  # noqa: E402
from replica_steps import compare_train_steps  # noqa: E402

from tfrec.models.gru4rec import GRU4RecPlus  # noqa: E402
from tfrec.tasks.nt_xent import nt_xent  # noqa: E402


class WithViews(GRU4RecPlus):
  """GRU4Rec+ plus NT-Xent between each row's query and its positive's item vector."""

  LOSSES = ("ranking_max", "contrastive")

  def compute_losses(self, batch, training=None):
    losses = super().compute_losses(batch, training=training)
    positives = self.encode_items(tf.cast(batch["positive_item_id"], tf.int64))
    losses["contrastive"] = nt_xent(self(batch, training=training), positives, temperature=0.5)
    return losses


def build(strategy):
  with strategy.scope():
    keras.utils.set_random_seed(1)
    m = WithViews(NUM_ITEMS, dim=4, hidden=5, item_features=("id",), max_seq_len=3,
                  negatives="sampled", num_sampled=4, log_q_correction=False)
    m.build_and_fill(tiny_store())
    m.item_log_q.assign(np.log(np.r_[1.0, np.arange(1, NUM_ITEMS + 1)] / 55.0).astype("f4"))
    m.compile(optimizer=keras.optimizers.SGD(0.5))
  return m


seq = np.array([[1, 2, 0], [6, 7, 8], [3, 0, 0], [9, 4, 0]])
batches = [{"seq_item_ids": seq, "seq_mask": seq > 0, "positive_item_id": np.array([7, 9, 2, 7])},
           {"seq_item_ids": seq[:3], "seq_mask": seq[:3] > 0,
            "positive_item_id": np.array([5, 6, 5])}]  # an accidental hit across replicas
print("RESULT " + json.dumps(compare_train_steps(build, batches)))
