"""DIEN (tfrec/models/dien.py) and its AUGRU (tfrec/layers/augru.py) against independent
expectations: the AUGRU recursion (DIEN eq. 1-3, 10-11) in numpy, the attention of eq. 7 summing
to one over real steps, the auxiliary loss of eq. 5 by hand, padding, configs, a tiny run."""

import inspect
import json

import numpy as np
import pytest

from conftest import make_config
import tfrec  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

from tfrec.layers import step_random  # noqa: E402
from tfrec.layers.augru import AUGRU  # noqa: E402
from tfrec.models.dien import _VALIDATION_SEED, DIEN, auxiliary_loss  # noqa: E402
from test_models import NUM_ITEMS, as_tf, build, logits_of, make_features, small_store  # noqa: E402


def sigmoid(x):
  return 1 / (1 + np.exp(-x))


def softplus(x):
  return np.log1p(np.exp(x))


# ----------------------------------------------------------------------------- AUGRU


def augru_numpy(layer, x, a, mask):
  """DIEN eq. 1-3, 10-11 step by step from h_0 = 0; padded steps keep the state."""
  w, u_mat, b = (v.numpy() for v in (layer.kernel, layer.recurrent_kernel, layer.bias))
  n = layer.units
  h = np.zeros([x.shape[0], n], np.float32)
  for t in range(x.shape[1]):
    xw = x[:, t] @ w + b
    hu = h @ u_mat
    u = sigmoid(xw[:, :n] + hu[:, :n])                                   # (1)
    r = sigmoid(xw[:, n:2 * n] + hu[:, n:2 * n])                         # (2)
    cand = np.tanh(xw[:, 2 * n:] + r * hu[:, 2 * n:])                    # (3)
    u = a[:, t:t + 1] * u                                                # (10)
    new = (1 - u) * h + u * cand                                         # (11)
    h = np.where(mask[:, t:t + 1], new, h)
  return h


def augru_case():
  rng = np.random.default_rng(0)
  x = rng.normal(size=[3, 4, 2]).astype(np.float32)
  a = rng.uniform(0.1, 1.0, size=[3, 4]).astype(np.float32)
  a[0, 1] = 0.0  # row 0: attention 0 at step 1
  mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 0, 0]], bool)
  keras.utils.set_random_seed(1)
  layer = AUGRU(3, bias_initializer="random_normal")
  layer(tf.constant(x), tf.constant(a), mask=tf.constant(mask))
  return layer, x, a, mask


def test_augru_matches_the_numpy_recursion_in_eager_and_graph_mode():
  layer, x, a, mask = augru_case()
  want = augru_numpy(layer, x, a, mask)
  got = layer(tf.constant(x), tf.constant(a), mask=tf.constant(mask)).numpy()
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  graph = tf.function(lambda x, a, m: layer(x, a, mask=m),
                      input_signature=[tf.TensorSpec([None, None, 2]),
                                       tf.TensorSpec([None, None]),
                                       tf.TensorSpec([None, None], tf.bool)])
  np.testing.assert_allclose(graph(x, a, mask).numpy(), want, rtol=1e-5, atol=1e-6)
  assert np.abs(want[:2]).min() > 0 and (want[2] == 0).all()  # no real step: h_0 = 0


def test_augru_padded_steps_and_zero_attention_leave_the_state_unchanged():
  layer, x, a, mask = augru_case()

  def call(x, a, m):
    return layer(tf.constant(x), tf.constant(a), mask=tf.constant(m)).numpy()

  out = call(x, a, mask)
  # Row 1 (2 real steps): anything at its padded steps changes nothing, and the result is the
  # state after its second step.
  noisy_x, noisy_a = x.copy(), a.copy()
  noisy_x[1, 2:] = 7.0
  noisy_a[1, 2:] = 1.0
  np.testing.assert_array_equal(call(noisy_x, noisy_a, mask)[1], out[1])
  np.testing.assert_allclose(call(x[1:2, :2], a[1:2, :2], mask[1:2, :2])[0], out[1],
                             rtol=1e-6, atol=1e-7)
  # Row 0: a_1 = 0, so step 1 is skipped whatever its input: the same as the sequence without it.
  np.testing.assert_allclose(call(x[:1, [0, 2, 3]], a[:1, [0, 2, 3]], mask[:1, [0, 2, 3]])[0],
                             out[0], rtol=1e-5, atol=1e-6)
  other = x.copy()
  other[0, 1] = -5.0
  np.testing.assert_allclose(call(other, a, mask)[0], out[0], rtol=1e-6, atol=1e-7)
  # With a_t = 1 everywhere it is a plain GRU: the attention matters.
  assert not np.allclose(call(x, np.ones_like(a), mask)[0], out[0])


def test_augru_config_round_trip():
  layer = AUGRU(5, kernel_initializer="he_normal", recurrent_initializer="glorot_uniform",
                bias_initializer="ones", name="evo")
  config = layer.get_config()
  params = set(inspect.signature(AUGRU.__init__).parameters) - {"self", "kwargs"}
  assert params <= set(config)
  assert config["units"] == 5 and config["bias_initializer"]["class_name"] == "Ones"
  again = AUGRU.from_config(json.loads(json.dumps(config)))
  assert again.get_config() == config
  x, a = tf.ones([2, 3, 4]), tf.fill([2, 3], 0.5)
  want = layer(x, a)
  again(x, a)
  again.set_weights(layer.get_weights())
  np.testing.assert_allclose(again(x, a).numpy(), want.numpy(), rtol=1e-6)
  serialized = keras.utils.serialize_keras_object(layer)
  assert serialized["registered_name"] == "tfrec>AUGRU"
  with pytest.raises(ValueError, match="units"):
    AUGRU(0)


# ----------------------------------------------------------------------------- the model


@pytest.fixture(scope="module")
def model():
  return build("dien")


def test_attention_weights_are_eq7_and_sum_to_one_over_real_steps(model):
  f = make_features(seed=1)  # row 1: empty target history; row 2: none
  user = model.encode_user(as_tf(f))
  cands = tf.constant([[6, 7, 9]] * len(f["item_id"]), tf.int64)
  weights = model.attention_weights(user, model.candidates(cands)).numpy()  # [b, 3, seq]
  mask = f["target_mask"]
  sums = weights.sum(-1)
  has = mask.any(1)
  np.testing.assert_allclose(sums[has], 1.0, rtol=1e-5)
  assert (sums[~has] == 0).all() and (weights * ~mask[:, None, :] == 0).all()
  # By hand: softmax over the real steps of h_t W e_a.
  h = user["states"].numpy()
  e = model.candidates(cands).numpy()
  w = model.attention_kernel.kernel.numpy()
  for r in np.nonzero(has)[0]:
    real = mask[r]
    logits = (e[r] @ w) @ h[r, real].T                              # [3, real]
    want = np.exp(logits - logits.max(-1, keepdims=True))
    np.testing.assert_allclose(weights[r][:, real], want / want.sum(-1, keepdims=True),
                               rtol=1e-5, atol=1e-6)


def test_auxiliary_loss_by_hand(model):
  f = make_features(seed=2)
  f["label"] = np.arange(len(f["item_id"])) % 2
  losses = model.compute_losses(as_tf(f), training=False)
  # Negatives: uniform over the storytelling (target) items, the fixed validation seed.
  pool = small_store().item_ids(domain=1)
  ids, mask = f["target_item_ids"], f["target_mask"]
  pick = tf.random.stateless_uniform(ids.shape, tf.constant([_VALIDATION_SEED, 1], tf.int64),
                                     minval=0, maxval=len(pool), dtype=tf.int64).numpy()
  neg = pool[pick]
  table = model.item_encoder(tf.range(NUM_ITEMS + 1)).numpy()
  h = model.encode_user(as_tf(f))["states"].numpy()
  for r in range(len(ids)):
    n = int(mask[r].sum())
    terms = [softplus(-h[r, t] @ table[ids[r, t + 1]]) + softplus(h[r, t] @ table[neg[r, t + 1]])
             for t in range(n - 1)]
    want = np.mean(terms) if terms else 0.0
    np.testing.assert_allclose(losses["auxiliary"].numpy()[r], want, rtol=1e-4, atol=1e-6)
  assert (losses["auxiliary"].numpy()[mask.sum(1) < 2] == 0).all()
  assert (losses["auxiliary"].numpy()[mask.sum(1) >= 2] > 0).all()
  # "bce" is the click-through BCE of the model's logits.
  logits = logits_of(model, f)
  y = f["label"]
  np.testing.assert_allclose(losses["bce"].numpy(),
                             softplus(logits) - y * logits, rtol=1e-5, atol=1e-6)
  # The helper alone on a 1-row, 3-step case: pairs (0, 1) only (step 2 is padding).
  h1 = np.array([[[1.0, 0.0], [0.5, 0.5], [9.0, 9.0]]], np.float32)
  pos = np.array([[[0.0, 0.0], [2.0, 1.0], [3.0, 3.0]]], np.float32)
  ng = np.array([[[0.0, 0.0], [-1.0, 4.0], [3.0, 3.0]]], np.float32)
  got = auxiliary_loss(h1, pos, ng, tf.constant([[True, True, False]])).numpy()
  np.testing.assert_allclose(got, [softplus(-2.0) + softplus(-1.0)], rtol=1e-6)


def test_training_negatives_follow_the_step_seed_and_stay_in_their_domain():
  model = build("dien", domains=("source", "target"))
  f = as_tf(make_features(seed=3))
  with step_random.training_step(5, tf.constant(7)):
    a = model.negative_features(f, training=True)
  with step_random.training_step(5, tf.constant(7)):
    b = model.negative_features(f, training=True)
  with step_random.training_step(5, tf.constant(8)):
    c = model.negative_features(f, training=True)
  store = small_store()
  for d, domain in (("source", 0), ("target", 1)):
    ids, mask = a[f"{d}_item_ids"].numpy(), f[f"{d}_mask"].numpy()
    np.testing.assert_array_equal(ids, b[f"{d}_item_ids"].numpy())
    assert (ids[~mask] == 0).all() and (store.domain[ids[mask]] == domain).all()
  assert any((a[f"{d}_item_ids"].numpy() != c[f"{d}_item_ids"].numpy()).any()
             for d in ("source", "target"))
  losses = model.compute_losses({**f, "label": tf.zeros([6], tf.int64)}, training=False)
  assert np.isfinite(losses["auxiliary"].numpy()).all()


def test_padding_changes_nothing(model):
  f = make_features(seed=4)
  f["label"] = np.arange(len(f["item_id"])) % 2
  rng = np.random.default_rng(5)
  noisy = {k: v.copy() for k, v in f.items()}
  pad = ~f["target_mask"]
  noisy["target_item_ids"][pad] = rng.integers(1, NUM_ITEMS + 1, size=pad.sum())
  noisy["target_timestamps"][pad] = rng.integers(0, 10 ** 5, size=pad.sum())
  assert (noisy["target_item_ids"] != f["target_item_ids"]).any()
  np.testing.assert_allclose(logits_of(model, noisy), logits_of(model, f), rtol=1e-6, atol=1e-6)
  a = model.compute_losses(as_tf(f), training=False)
  b = model.compute_losses(as_tf(noisy), training=False)
  for name in DIEN.LOSSES:
    np.testing.assert_allclose(b[name].numpy(), a[name].numpy(), rtol=1e-6, atol=1e-6)
  # The order of real behaviours matters (an evolving interest, not a set): the extractor's
  # last real state moves when row 0's history is reversed.
  order = {k: v.copy() for k, v in f.items()}
  n = int(f["target_mask"][0].sum())
  order["target_item_ids"][0, :n] = f["target_item_ids"][0, :n][::-1]
  assert (order["target_item_ids"][0] != f["target_item_ids"][0]).any()
  last = lambda g: model.encode_user(as_tf(g))["states"].numpy()[0, n - 1]  # noqa: E731
  assert np.abs(last(order) - last(f)).max() > 1e-3


def test_encode_once_and_score_many_equals_one_row_per_candidate(model):
  f = make_features(seed=6)
  candidates = np.array([6, 7, 8, 9, 10], np.int64)
  scored = model.score(model.encode_user(as_tf({k: v[:1] for k, v in f.items()})),
                       tf.constant(candidates[None]))
  repeated = {k: np.repeat(v[:1], len(candidates), axis=0) for k, v in f.items()}
  repeated["item_id"] = candidates
  np.testing.assert_allclose(scored.numpy()[0], logits_of(model, repeated), rtol=1e-5,
                             atol=1e-5)


def test_model_config_round_trip():
  args = dict(item_features=("id", "visual"), domains=("source", "target"), mlp_units=(6, 4),
              dropout=0.2, use_time_blocks=True, num_time_blocks=4)
  model = build("dien", **args)
  config = model.get_config()
  from tfrec.models import registry
  assert set(config) == set(registry.accepted_args(DIEN)) - {"name"}
  for key, value in args.items():
    assert config[key] == (list(value) if isinstance(value, tuple) else value), key
  config = json.loads(json.dumps(config))
  rebuilt = DIEN.from_config(config).build_and_fill(small_store())
  assert rebuilt.get_config() == config
  rebuilt.set_weights(model.get_weights())
  f = make_features(seed=9)
  np.testing.assert_allclose(logits_of(rebuilt, f), logits_of(model, f), rtol=1e-6, atol=1e-6)
  serialized = keras.utils.serialize_keras_object(model)
  assert serialized["registered_name"] == "tfrec>DIEN"
  again = keras.utils.deserialize_keras_object(json.loads(json.dumps(serialized)))
  assert type(again) is DIEN and again.get_config() == config


def test_tiny_training_run_logs_both_losses(syn_dir, tmp_path):
  from tfrec import train as train_lib
  cfg = make_config(syn_dir, str(tmp_path / "dien"), model="dien", steps_per_epoch=2,
                    loss_weights={"auxiliary": 0.5})
  result = train_lib.train(cfg)
  assert result.steps == 2
  for key in ("loss", "bce_loss", "auxiliary_loss"):
    assert np.isfinite(result.history[key]).all(), key
  assert result.history["auxiliary_weight"] == [0.5]
