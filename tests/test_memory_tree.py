"""COUPLE's memory tree (§3.2.3, eq. 6-10): the tree's weights against numpy, Gumbel-softmax's
limits and its sampling distribution, the temperature schedule, SRIP's power iteration against
the exact spectral norm, and the group representation at inference and in training."""

import math

import numpy as np
import pytest

import tfrec  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

from tfrec.layers import step_random  # noqa: E402
from tfrec.layers.memory_tree import (MemoryTree, gumbel_softmax, gumbel_temperature,  # noqa: E402
                                      srip)


def softmax(x, axis=-1):
  z = np.exp(x - x.max(axis=axis, keepdims=True))
  return z / z.sum(axis=axis, keepdims=True)


def tree(**kwargs):
  keras.utils.set_random_seed(0)
  layer = MemoryTree(4, **{"branching": (3, 2), "top_k": 2, **kwargs})
  layer(tf.zeros([1, 4]))
  return layer


def test_tree_weights_are_eq6_each_layer_sums_to_one_and_children_to_their_parent():
  layer = tree()
  e = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
  w1, w2 = (w.numpy() for w in layer.node_weights(tf.constant(e)))
  s1, s2 = (s.numpy() for s in layer.slots)
  want1 = softmax(e @ s1.T)
  want2 = np.concatenate([want1[:, [j]] * softmax(e @ s2[2 * j:2 * j + 2].T)
                          for j in range(3)], axis=1)
  np.testing.assert_allclose(w1, want1, rtol=1e-5)
  np.testing.assert_allclose(w2, want2, rtol=1e-5)
  np.testing.assert_allclose(w1.sum(1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(w2.sum(1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(w2.reshape(5, 3, 2).sum(2), w1, rtol=1e-5)
  assert layer.layer_sizes == (3, 6) and MemoryTree(8).layer_sizes == (32, 512)


def test_inference_sums_the_top_k_leaves_by_weight_eq8():
  layer = tree()
  e = tf.constant(np.random.default_rng(1).normal(size=(4, 4)).astype(np.float32))
  leaves = layer.node_weights(e)[-1].numpy()
  slots = layer.slots[-1].numpy()
  want = []
  for row in leaves:
    top = np.argsort(-row)[:2]
    want.append((row[top, None] * slots[top]).sum(0))
  np.testing.assert_allclose(layer(e, training=False).numpy(), np.stack(want), rtol=1e-5,
                             atol=1e-6)


def test_training_samples_leaves_with_gumbel_noise_from_the_step_seed():
  layer = tree(top_k=3)
  e = tf.constant(np.random.default_rng(2).normal(size=(4, 4)).astype(np.float32))
  with step_random.training_step(5, tf.constant(10)):
    a = layer(e, temperature=2.0, training=True).numpy()
  with step_random.training_step(5, tf.constant(10)):
    b = layer(e, temperature=2.0, training=True).numpy()
  with step_random.training_step(5, tf.constant(11)):
    c = layer(e, temperature=2.0, training=True).numpy()
  np.testing.assert_array_equal(a, b)  # the same step draws the same noise
  assert not np.allclose(a, c) and not np.allclose(a, layer(e, training=False).numpy())
  # Gradients reach every layer's slots (through eq. 6) and the input.
  with tf.GradientTape() as tape:
    tape.watch(e)
    with step_random.training_step(5, tf.constant(10)):
      out = tf.reduce_sum(layer(e, temperature=2.0, training=True) ** 2)
  grads = tape.gradient(out, layer.slots + [e])
  assert all(g is not None and float(tf.norm(g)) > 0 for g in grads)


def test_gumbel_softmax_limits_and_sampling_distribution():
  w = np.array([0.6, 0.3, 0.1])
  log_w = tf.constant(np.log(w)[None].repeat(20000, 0), tf.float32)
  cold = gumbel_softmax(log_w, 1e-5, tf.constant([1, 2], tf.int64)).numpy()
  assert np.mean(cold.max(1) > 0.999) > 0.999  # one-hot as tau -> 0 (but for near ties)
  # The Gumbel-max trick: the one-hot's argmax falls on leaf k with probability w_k.
  freq = np.bincount(cold.argmax(1), minlength=3) / len(cold)
  np.testing.assert_allclose(freq, w, atol=0.015)
  hot = gumbel_softmax(log_w, 1e4, tf.constant([1, 2], tf.int64)).numpy()
  np.testing.assert_allclose(hot, 1 / 3, atol=1e-3)  # uniform as tau grows
  np.testing.assert_allclose(cold.sum(1), 1.0, rtol=1e-5)


def test_temperature_schedule():
  # tau = max(1, 20 exp(-1e-5 t)), t the step rounded down to 1,000.
  got = [float(gumbel_temperature(s)) for s in (0, 999, 1000, 150_000, 10**6)]
  want = [20.0, 20.0, 20 * math.exp(-0.01), 20 * math.exp(-1.5), 1.0]
  np.testing.assert_allclose(got, want, rtol=1e-6)


@pytest.mark.parametrize("shape", [(6, 3), (3, 6), (4, 4)])
def test_srip_power_iteration_matches_the_exact_spectral_norm(shape):
  w = np.random.default_rng(3).normal(size=shape).astype(np.float32) * 0.7
  small = min(shape)
  gram = w.T @ w if shape[0] >= shape[1] else w @ w.T  # the smaller side's Gram
  exact = np.linalg.norm(gram - np.eye(small), 2)
  np.testing.assert_allclose(float(srip(tf.constant(w), iterations=60)), exact, rtol=1e-3)
  two = float(srip(tf.constant(w), iterations=2))  # eq. 10's 2 iterations: a lower bound
  assert two <= exact * (1 + 1e-5) and two > 0.5 * exact
  q, _ = np.linalg.qr(np.random.default_rng(4).normal(size=(6, 3)))  # orthonormal columns
  assert float(srip(tf.constant(q, tf.float32), iterations=10)) < 1e-5


def test_srip_loss_is_lambda_times_the_layers_sum_and_config_round_trip():
  layer = tree(srip_weight=0.5)
  want = 0.5 * sum(float(srip(s, 2, seed=(7, i))) for i, s in enumerate(layer.slots))
  assert float(layer.srip_loss()) == pytest.approx(want, rel=1e-6)
  config = layer.get_config()
  again = MemoryTree.from_config(config)
  assert again.get_config() == config and again.branching == (3, 2)
  with pytest.raises(ValueError, match="top_k must be in"):
    MemoryTree(4, branching=(2, 2), top_k=5)
  with pytest.raises(ValueError, match="branching"):
    MemoryTree(4, branching=(2, 0))
