"""Run by tests/test_retrieval_task.py in a fresh process (logical CPUs must be set before
TensorFlow starts): a toy two-tower model trained with in-batch softmax (`tasks.Retrieval`) on
MirroredStrategy over 2 logical CPUs against one device, on an even (2 + 2 rows) and an uneven
(2 + 1 rows) global batch with an accidental hit; prints what the test compares as one JSON
line. Every row's loss depends on every replica's positives, so equality needs the candidates
gathered across replicas and the gradients sent back to the replica that computed them."""

import json

import tfrec  # noqa: F401
from tfrec import distribute

distribute.configure_cpu_replicas(2)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from replica_steps import compare_train_steps  # noqa: E402
import tf_keras as keras  # noqa: E402

from tfrec.models import core  # noqa: E402
from tfrec.tasks.retrieval import Retrieval  # noqa: E402

NUM_USERS, NUM_ITEMS, D = 6, 9, 4


class TwoTower(core.Model):
  RECORD_KIND = "matching"
  LOSSES = ("softmax",)

  def __init__(self, **kwargs):
    super().__init__(**kwargs)
    self.users = keras.layers.Embedding(NUM_USERS, D, name="users")
    self.items = keras.layers.Embedding(NUM_ITEMS + 1, D, name="items")
    self.task = Retrieval(temperature=0.5)

  def call(self, batch, training=None):
    return self.users(batch["user_id"]), self.items(batch["positive_item_id"])

  def compute_losses(self, batch, training=None):
    q, p = self(batch, training=training)
    log_q = tf.math.log(tf.cast(batch["positive_item_id"], tf.float32) / 50.0)
    return {"softmax": self.task(q, p, batch["positive_item_id"], log_q)}


def build(strategy):
  with strategy.scope():
    keras.utils.set_random_seed(1)
    m = TwoTower()
    m({"user_id": tf.zeros([1], tf.int64), "positive_item_id": tf.ones([1], tf.int64)})
    m.compile(optimizer=keras.optimizers.SGD(0.5))
  return m


batches = [{"user_id": np.array([0, 1, 2, 3]), "positive_item_id": np.array([1, 2, 3, 4])},
           {"user_id": np.array([4, 5, 0]), "positive_item_id": np.array([5, 6, 5])}]  # a hit
out = compare_train_steps(build, batches)
print("RESULT " + json.dumps(out))
