"""Retrieval tasks (tfrec/tasks/retrieval.py): in-batch softmax with temperature, log-q
correction and accidental hits against numpy on hand-made inputs; full softmax; two logical CPUs
against one device."""

import numpy as np
import pytest
import tensorflow as tf

from tfrec.tasks.retrieval import Retrieval, full_softmax

from conftest import assert_two_replicas_equal_one_device, run_two_replica_script  # noqa: E402


def _nll(scores, labels):
  scores = scores - scores.max(axis=1, keepdims=True)
  logp = scores - np.log(np.exp(scores).sum(axis=1, keepdims=True))
  return -logp[np.arange(len(labels)), labels]


Q = np.array([[1.0, 0.0], [0.0, 1.0]], np.float32)
P = np.array([[1.0, 0.0], [0.0, 2.0]], np.float32)
EXTRA = np.array([[1.0, 1.0]], np.float32)


def test_in_batch_softmax_with_temperature_log_q_and_extra_negatives_by_hand():
  task = Retrieval(temperature=0.5)
  log_q = np.log([0.5, 0.25]).astype(np.float32)
  extra_log_q = np.log([0.1]).astype(np.float32)
  loss = task(tf.constant(Q), tf.constant(P), tf.constant([5, 7]), tf.constant(log_q),
              extra=(tf.constant(EXTRA), tf.constant([9]), tf.constant(extra_log_q)))
  # Candidates: the two positives, then the extra item; s = <q, c> / 0.5 - log Q(c).
  scores = np.array([[1, 0, 1], [0, 2, 1]], np.float64) / 0.5 - np.log([0.5, 0.25, 0.1])
  np.testing.assert_allclose(loss.numpy(), _nll(scores, np.array([0, 1])), rtol=1e-6)
  # Row 0: 2 + 0.693 vs 0 + 1.386 vs 2 + 2.303: the extra item wins, so top-1 misses.
  assert float(task.top1.result()) == pytest.approx(0.5)


def test_accidental_hits_are_removed_and_only_they():
  ids = tf.constant([5, 5])  # both rows' positive is item 5: each is the other's false negative
  masked = Retrieval()(tf.constant(Q), tf.constant(P), ids).numpy()
  kept = Retrieval(remove_accidental_hits=False)(tf.constant(Q), tf.constant(P), ids).numpy()
  scores = np.array([[1, 0], [0, 2]], np.float64)
  np.testing.assert_allclose(kept, _nll(scores, np.array([0, 1])), rtol=1e-6)
  np.testing.assert_allclose(masked, [0.0, 0.0], atol=1e-6)  # the positive alone remains
  distinct = Retrieval()(tf.constant(Q), tf.constant(P), tf.constant([5, 6])).numpy()
  np.testing.assert_allclose(distinct, kept, rtol=1e-6)  # no hit: nothing masked


def test_full_softmax_finds_each_positive_among_the_candidates():
  cands = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], np.float32)
  loss = full_softmax(tf.constant(Q), tf.constant([3, 1]), tf.constant(cands),
                      tf.constant([1, 2, 3]), temperature=2.0)
  scores = Q.astype(np.float64) @ cands.T / 2.0
  np.testing.assert_allclose(loss.numpy(), _nll(scores, np.array([2, 0])), rtol=1e-6)
  with pytest.raises(tf.errors.InvalidArgumentError, match="not among the candidates"):
    full_softmax(tf.constant(Q), tf.constant([4, 1]), tf.constant(cands),
                 tf.constant([1, 2, 3]))


def test_temperature_must_be_positive_and_config_round_trips():
  with pytest.raises(ValueError, match="temperature must be > 0"):
    Retrieval(temperature=0.0)
  task = Retrieval(temperature=0.2, remove_accidental_hits=False, metric_name="t1")
  again = Retrieval.from_config(task.get_config())
  assert (again.temperature, again.remove_accidental_hits, again.metric_name) == (0.2, False,
                                                                                  "t1")


def test_in_batch_softmax_on_two_logical_cpus_equals_one_device():
  assert_two_replicas_equal_one_device(run_two_replica_script("retrieval_two_replicas.py"))
