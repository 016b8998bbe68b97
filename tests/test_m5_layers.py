"""M5's multi-scenario and subsidiary layers (KDD 2023 §4.3.3-4.4): SMoE routes every row through
its own scenario's tower only (eq. 4), CGC / PLE likewise; eq. 5's disagreement against numpy;
the scenario indicator (§4.4.1) and SIN (eq. 3) by hand; the decoration of §4.3.1 from the
contract; config round trips with non-default arguments; a mixed_bfloat16 call."""

import inspect

import numpy as np
import pytest

import tfrec  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

from tfrec.layers.ple import CustomizedGateControl, ProgressiveLayeredExtraction  # noqa: E402
from tfrec.layers.scenario_indicator import ScenarioIndicator  # noqa: E402
from tfrec.layers.split_moe import SplitMixtureOfExperts, disagreement_loss  # noqa: E402
from tfrec.layers.subsidiary_intensity import (  # noqa: E402
    SubsidiaryIntensity, subsidiary_feature_names, subsidiary_features)

IDS = np.array([0, 1, 2, 0, 1, 2, 2], np.int64)


def inputs(d=5, seed=0):
  return tf.constant(np.random.default_rng(seed).normal(size=(len(IDS), d)), tf.float32)


def scramble(layer, seed):
  rng = np.random.default_rng(seed)
  for w in layer.weights:
    w.assign(rng.normal(size=w.shape).astype(np.float32))


def grads_of(loss_fn, variables):
  with tf.GradientTape() as tape:
    loss = loss_fn()
  return tape.gradient(loss, variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)


@pytest.mark.parametrize("routing", ["partition", "dense"])
def test_smoe_is_eq4_and_routes_each_row_through_its_own_tower_only(routing):
  keras.utils.set_random_seed(0)
  smoe = SplitMixtureOfExperts(3, 4, num_experts=3, hidden_dim=8, expert_dim=6, dropout=0.0,
                               routing=routing)
  x = inputs()
  out, info = smoe(x, tf.constant(IDS), return_experts=True)
  experts, gates = info["experts"].numpy(), info["gates"].numpy()
  assert out.shape == (7, 4) and experts.shape == (7, 3, 6) and gates.shape == (7, 3)
  np.testing.assert_allclose(gates.sum(-1), 1.0, rtol=1e-6)
  # Eq. 4: one gate, shared experts, then the row's own tower on the mixture.
  np.testing.assert_allclose(experts[:, 1], smoe.experts[1](x).numpy(), rtol=1e-6)
  mixed = np.einsum("bn,bnd->bd", gates, experts)
  for i, s in enumerate(IDS):
    np.testing.assert_allclose(out[i].numpy(), smoe.towers[s](mixed[i:i + 1]).numpy()[0],
                               rtol=1e-5, atol=1e-6)
  # Another scenario's tower changes nothing for a row, and takes none of its gradient.
  scramble(smoe.towers[1], 1)
  again = smoe(x, tf.constant(IDS)).numpy()
  other = IDS != 1
  np.testing.assert_array_equal(again[other], out.numpy()[other])
  assert np.abs(again[~other] - out.numpy()[~other]).min() > 0
  rows0 = tf.constant(IDS == 0)
  grads = grads_of(lambda: tf.reduce_sum(tf.boolean_mask(smoe(x, tf.constant(IDS)), rows0)),
                   smoe.towers[1].trainable_weights + smoe.towers[0].trainable_weights)
  n = len(smoe.towers[1].trainable_weights)
  assert all(np.all(g.numpy() == 0) for g in grads[:n])
  assert all(np.any(g.numpy() != 0) for g in grads[n:])
  with pytest.raises(tf.errors.InvalidArgumentError, match="scenario_id"):
    smoe(x, tf.constant([0, 1, 2, 3, 0, 0, 0]))


def test_partition_and_dense_routing_agree_and_an_absent_scenario_is_fine():
  keras.utils.set_random_seed(1)
  a = SplitMixtureOfExperts(3, 4, num_experts=2, hidden_dim=8, dropout=0.0)
  b = SplitMixtureOfExperts(3, 4, num_experts=2, hidden_dim=8, dropout=0.0, routing="dense")
  x, ids = inputs(), tf.constant(IDS)
  a(x, ids), b(x, ids)
  b.set_weights(a.get_weights())
  np.testing.assert_allclose(a(x, ids).numpy(), b(x, ids).numpy(), rtol=1e-5, atol=1e-6)
  only0 = tf.zeros([7], tf.int64)
  np.testing.assert_allclose(a(x, only0).numpy(), b(x, only0).numpy(), rtol=1e-5, atol=1e-6)
  fn = tf.function(lambda x, ids: a(x, ids))  # unknown batch in a graph
  got = fn.get_concrete_function(tf.TensorSpec([None, 5]), tf.TensorSpec([None], tf.int64))
  np.testing.assert_allclose(got(x, ids).numpy(), a(x, ids).numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("routing", ["partition", "dense"])
def test_cgc_is_per_scenario_gates_over_shared_and_own_experts(routing):
  keras.utils.set_random_seed(2)
  cgc = CustomizedGateControl(3, 4, num_shared_experts=2, num_specific_experts=1,
                              hidden_dim=8, dropout=0.0, routing=routing)
  x = inputs()
  out, info = cgc(x, tf.constant(IDS), return_experts=True)
  experts, gates = info["experts"].numpy(), info["gates"].numpy()
  assert experts.shape == (7, 3, 4) and gates.shape == (7, 3)
  for i, s in enumerate(IDS):
    xi = x[i:i + 1]
    e = [cgc.shared_experts[0][0](xi), cgc.shared_experts[0][1](xi),
         cgc.specific_experts[0][s][0](xi)]
    np.testing.assert_allclose(experts[i], np.concatenate([t.numpy() for t in e]), rtol=1e-5,
                               atol=1e-6)
    g = tf.nn.softmax(cgc.scenario_gates[0][s](xi)).numpy()[0]
    np.testing.assert_allclose(gates[i], g, rtol=1e-5)
    want = cgc.towers[s](np.einsum("n,nd->d", g, experts[i])[None]).numpy()[0]
    np.testing.assert_allclose(out[i].numpy(), want, rtol=1e-5, atol=1e-6)
  scramble(cgc.specific_experts[0][2][0], 3)
  scramble(cgc.scenario_gates[0][2], 4)
  scramble(cgc.towers[2], 5)
  again = cgc(x, tf.constant(IDS)).numpy()
  np.testing.assert_array_equal(again[IDS != 2], out.numpy()[IDS != 2])
  assert np.abs(again[IDS == 2] - out.numpy()[IDS == 2]).min() > 0
  with pytest.raises(ValueError, match="one level"):
    CustomizedGateControl(3, 4, num_levels=2)


def test_ple_stacks_levels_and_keeps_scenarios_apart():
  keras.utils.set_random_seed(3)
  ple = ProgressiveLayeredExtraction(3, 4, num_shared_experts=1, num_specific_experts=2,
                                     num_levels=2, hidden_dim=8, expert_dim=6, dropout=0.0)
  x = inputs()
  out, info = ple(x, tf.constant(IDS), return_experts=True)
  assert out.shape == (7, 4)
  assert [e.shape for e in info["experts"]] == [(7, 3, 6)] * 2
  assert len(ple.shared_gates) == 1
  loss = disagreement_loss(info["experts"]).numpy()
  np.testing.assert_allclose(
      loss, (disagreement_loss(info["experts"][0]) + disagreement_loss(info["experts"][1]))
      .numpy() / 2, rtol=1e-6)
  for l in range(2):  # scenario 1's level-l parts leave the other rows alone
    before = ple(x, tf.constant(IDS)).numpy()
    scramble(ple.specific_experts[l][1][1], 10 + l)
    scramble(ple.scenario_gates[l][1], 20 + l)
    after = ple(x, tf.constant(IDS)).numpy()
    np.testing.assert_array_equal(after[IDS != 1], before[IDS != 1])
    assert np.abs(after[IDS == 1] - before[IDS == 1]).min() > 0
  before = ple(x, tf.constant(IDS)).numpy()
  scramble(ple.shared_experts[0][0], 30)  # shared parts move every row
  assert np.abs(ple(x, tf.constant(IDS)).numpy() - before).min() > 0


def numpy_disagreement(e, diagonal=True):
  n = e.shape[1]
  out = []
  for row in e:
    total, pairs = 0.0, 0
    for k in range(n):
      for l in range(n):
        if k == l and not diagonal:
          continue
        total += abs(row[k] @ row[l]) / (np.linalg.norm(row[k]) * np.linalg.norm(row[l]))
        pairs += 1
    out.append(total / (n * n if diagonal else pairs))
  return np.array(out)


def test_disagreement_loss_is_eq5():
  e = np.random.default_rng(4).normal(size=(3, 4, 5)).astype(np.float32)
  np.testing.assert_allclose(disagreement_loss(tf.constant(e)).numpy(), numpy_disagreement(e),
                             rtol=1e-5)
  np.testing.assert_allclose(disagreement_loss(tf.constant(e), include_diagonal=False).numpy(),
                             numpy_disagreement(e, False), rtol=1e-5)
  same = np.ones([1, 3, 2], np.float32) * np.array([[[1.0], [-2.0], [3.0]]], np.float32)
  np.testing.assert_allclose(disagreement_loss(tf.constant(same)).numpy(), [1.0], rtol=1e-6)
  orthogonal = np.eye(3, dtype=np.float32)[None]
  np.testing.assert_allclose(disagreement_loss(tf.constant(orthogonal)).numpy(), [1 / 3],
                             rtol=1e-6)
  x = tf.Variable(e)
  g = grads_of(lambda: tf.reduce_sum(disagreement_loss(x)), [x])[0].numpy()
  assert np.all(np.isfinite(g)) and np.abs(g).max() > 0


def test_scenario_indicator_by_hand():
  ind = ScenarioIndicator(3, 2)
  fields = np.array([[[1.0, 2.0], [3.0, -1.0]], [[0.0, 1.0], [2.0, 2.0]]], np.float32)
  ind(tf.constant(fields), tf.constant([0, 2]))
  ind.embeddings.assign([[1.0, 0.0], [0.0, 1.0], [2.0, -1.0]])
  got = ind(tf.constant(fields), tf.constant([0, 2])).numpy()
  want = np.array([[1, 2, 3, -1, 1, 0, 1, 3],          # fields, z_0, z_0 . e_1, z_0 . e_2
                   [0, 1, 2, 2, 2, -1, -1, 2]], np.float32)
  np.testing.assert_array_equal(got, want)
  listed = ind([tf.constant(fields[:, 0]), tf.constant(fields[:, 1])], tf.constant([0, 2]))
  np.testing.assert_array_equal(listed.numpy(), want)
  np.testing.assert_array_equal(ind.indicator(tf.constant([1])).numpy(), [[0.0, 1.0]])
  with pytest.raises(tf.errors.InvalidArgumentError, match="scenario_id"):
    ind(tf.constant(fields), tf.constant([0, 3]))
  with pytest.raises(ValueError, match=r"\[batch, F, 2\]"):
    ind(tf.constant(np.zeros([2, 2, 3], np.float32)), tf.constant([0, 1]))


def sin_inputs():
  rng = np.random.default_rng(5)
  e = rng.normal(size=(2, 4, 3)).astype(np.float32)
  sub = rng.uniform(0.0, 2.0, size=(2, 4, 2)).astype(np.float32)
  mask = np.array([[True, True, True, False], [True, False, False, False]])
  return e, sub, mask


def test_sin_starts_at_intensity_one_keeps_padding_zero_and_learns():
  keras.utils.set_random_seed(6)
  sin = SubsidiaryIntensity(2, hidden_units=(8, 8))
  e, sub, mask = sin_inputs()
  out, intensity = sin(tf.constant(e), tf.constant(sub), tf.constant(mask),
                       return_intensity=True)
  np.testing.assert_array_equal(out.numpy(), np.where(mask[..., None], e, 0.0))
  np.testing.assert_array_equal(intensity.numpy(), mask.astype(np.float32))
  summed = SubsidiaryIntensity(2, hidden_units=(8,), reduction="sum")
  np.testing.assert_allclose(summed(tf.constant(e), tf.constant(sub), tf.constant(mask)).numpy(),
                             (e * mask[..., None]).sum(1), rtol=1e-6)
  # Gradient: the zero last layer learns first; once it moves, the hidden layers and E^SH do.
  target = tf.constant(np.random.default_rng(7).normal(size=e.shape), tf.float32)

  def loss():
    return tf.reduce_sum(sin(tf.constant(e), tf.constant(sub), tf.constant(mask)) * target)

  last = sin.output_layer.trainable_weights
  assert all(np.abs(g.numpy()).max() > 0 for g in grads_of(loss, last))
  sin.output_layer.kernel.assign(np.full([8, 1], 0.3, np.float32))
  grads = grads_of(loss, sin.hidden.trainable_weights + [sin.sub_scale])
  assert all(np.abs(g.numpy()).max() > 0 for g in grads)


def test_sin_is_eq3_by_hand_with_a_linear_layer_and_buckets():
  e, sub, mask = sin_inputs()
  sin = SubsidiaryIntensity(2, hidden_units=(), reduction="mean")  # the ID channel's linear SIN
  sin(tf.constant(e), tf.constant(sub), tf.constant(mask))
  rng = np.random.default_rng(8)
  w = rng.normal(size=(3 + 2 * 3 + 2, 1)).astype(np.float32) * 0.3
  sin.output_layer.kernel.assign(w)
  sin.output_layer.bias.assign([0.1])
  v, c = sin.sub_scale.numpy(), sin.sub_bias.numpy()
  esh = sub[..., None] * v + c                                               # [b, l, 2, d]
  x = np.concatenate([e, esh.reshape(2, 4, 6), np.einsum("bld,blnd->bln", e, esh)], -1)
  intensity = np.exp(x @ w + 0.1)[..., 0] * mask
  want = (e * (intensity / intensity.sum(1, keepdims=True))[..., None]).sum(1)
  got = sin(tf.constant(e), tf.constant(sub), tf.constant(mask)).numpy()
  np.testing.assert_allclose(got, want, rtol=1e-5)
  # Buckets: value < 1 -> row 0, [1, 2) -> 1, >= 2 -> 2 of field 0; field 1 starts at row 3.
  bucketed = SubsidiaryIntensity(2, hidden_units=(), boundaries=[[1.0, 2.0], [0.5]])
  bucketed(tf.constant(e), tf.constant(sub))
  table = bucketed.sub_table.numpy()
  got = bucketed.subsidiary_embeddings(tf.constant([[[0.5, 0.2], [1.0, 0.7], [5.0, 0.5]]]))
  np.testing.assert_array_equal(got.numpy()[0], table[[[0, 3], [1, 4], [2, 4]]])
  with pytest.raises(ValueError, match="one list per subsidiary field"):
    SubsidiaryIntensity(2, boundaries=[[1.0]])


def test_subsidiary_features_from_the_contract_by_hand():
  sub = np.array([[[2.0, 3.0], [1.0, 0.5], [4.0, 1.5], [9.0, 9.0]]], np.float32)
  mask = np.array([[True, True, True, False]])
  ts = np.array([[1000, 87400, 173800, 0]], np.int64)
  now = np.array([173800 + 86400], np.int64)
  got = subsidiary_features(tf.constant(sub), tf.constant(mask), tf.constant(ts),
                            tf.constant(now), log1p=False).numpy()[0]
  assert subsidiary_feature_names() == ("watch_count", "playback_hours", "normalized_playback",
                                        "engage_till_now", "position")
  want = np.array([[2, 3, 1.5, (now[0] - 1000) / 86400, 2],
                   [1, 0.5, 0.5, 2, 1],
                   [4, 1.5, 0.375, 1, 0],
                   [0, 0, 0, 0, 0]], np.float32)
  np.testing.assert_allclose(got, want, rtol=1e-6)
  share = subsidiary_features(tf.constant(sub), tf.constant(mask), normalization="share")
  assert share.shape == (1, 4, 4)
  np.testing.assert_allclose(np.expm1(share.numpy()[0, :, 2]), [0.6, 0.1, 0.3, 0.0], rtol=1e-5)
  with pytest.raises(ValueError, match="both"):
    subsidiary_features(tf.constant(sub), tf.constant(mask), seq_timestamps=tf.constant(ts))


LAYERS = [
    (SplitMixtureOfExperts, dict(num_scenarios=3, output_dim=4, num_experts=2, hidden_dim=8,
                                 expert_dim=6, dropout=0.2, activation="relu", routing="dense",
                                 kernel_initializer="he_normal")),
    (ProgressiveLayeredExtraction, dict(num_scenarios=3, output_dim=4, num_shared_experts=1,
                                        num_specific_experts=2, num_levels=3, hidden_dim=8,
                                        expert_dim=6, dropout=0.2, activation="relu",
                                        routing="dense", kernel_initializer="he_normal")),
    (CustomizedGateControl, dict(num_scenarios=2, output_dim=4, num_shared_experts=3,
                                 num_specific_experts=0, hidden_dim=8, expert_dim=6,
                                 dropout=0.2, activation="relu", routing="dense",
                                 kernel_initializer="he_normal")),
    (ScenarioIndicator, dict(num_scenarios=5, dim=3, embeddings_initializer="ones",
                             embeddings_regularizer="l2")),
    (SubsidiaryIntensity, dict(num_subsidiary=2, hidden_units=[5], activation="tanh",
                               boundaries=[[1.0], [0.5, 2.0]], reduction="mean",
                               kernel_initializer="he_normal")),
]


@pytest.mark.parametrize("cls,kwargs", LAYERS, ids=[c.__name__ for c, _ in LAYERS])
def test_config_round_trips_with_non_default_arguments(cls, kwargs):
  layer = cls(**kwargs)
  config = layer.get_config()
  params = set(inspect.signature(cls.__init__).parameters) - {"self", "kwargs"}
  if cls is CustomizedGateControl:
    params |= set(inspect.signature(ProgressiveLayeredExtraction.__init__).parameters) - {
        "self", "kwargs", "num_levels"}
  assert params <= set(config), params - set(config)
  again = keras.layers.deserialize(keras.layers.serialize(layer))
  assert type(again) is cls and again.get_config() == config


def test_mixed_bfloat16_calls():
  keras.mixed_precision.set_global_policy("mixed_bfloat16")
  try:
    ids = tf.constant(IDS)
    f = ScenarioIndicator(3, 5)(tf.reshape(inputs(10), [7, 2, 5]), ids)
    assert f.dtype == tf.bfloat16 and f.shape == (7, 17)
    for layer in (SplitMixtureOfExperts(3, 4, hidden_dim=8),
                  ProgressiveLayeredExtraction(3, 4, hidden_dim=8)):
      out, info = layer(f, ids, training=True, return_experts=True)
      assert out.dtype == tf.bfloat16 and np.all(np.isfinite(out.numpy().astype(np.float32)))
      loss = disagreement_loss(info["experts"])
      assert loss.dtype == tf.float32 and loss.shape == (7,)
    e, sub, mask = sin_inputs()
    for boundaries in (None, [[1.0], [0.5]]):
      out = SubsidiaryIntensity(2, hidden_units=(8,), boundaries=boundaries)(
          tf.constant(e), tf.constant(sub), tf.constant(mask))
      assert out.dtype == tf.bfloat16
      np.testing.assert_allclose(out.numpy().astype(np.float32),
                                 np.where(mask[..., None], e, 0), rtol=1e-2)
  finally:
    keras.mixed_precision.set_global_policy("float32")
