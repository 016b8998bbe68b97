"""CoNet (ADAPT Table IV, tfrec/models/conet.py): the cross connections against numpy, no transfer
with H = 0, the source loss by hand (as CMF's), the scoring contract, configs, and the
flagfile training for two steps."""

import json
import os

import numpy as np
import pytest

from conftest import flagfile_config
import tfrec  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

from test_models import (NUM_USERS, as_tf, assert_loss_follows_the_step_seed,  # noqa: E402
                         build, logits_of, make_features, rows, small_store)
from tfrec.models import registry  # noqa: E402
from tfrec.models.cmf import _VALIDATION_SEED  # noqa: E402
from tfrec.models.conet import CoNet, CrossTowers  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UNITS = (4, 3)


def conet(**kwargs):
  return build("conet", **{"num_users": NUM_USERS, "mlp_units": UNITS, **kwargs})


def set_known_weights(towers, seed):
  """Every tower weight := a small random matrix; returns them as numpy."""
  rng = np.random.default_rng(seed)
  for w in towers.weights:
    w.assign(rng.normal(scale=0.5, size=w.shape).astype(np.float32))
  return numpy_weights(towers)


def numpy_weights(towers):
  def kb(layer):
    return [w.numpy() for w in layer.weights]
  return dict(target=[kb(x) for x in towers.target_layers],
              source=[kb(x) for x in towers.source_layers],
              cross=[x.kernel.numpy() for x in towers.cross],
              target_output=kb(towers.target_output), source_output=kb(towers.source_output))


def np_conet(w, a_t, a_s):
  """The module docstring's equations: a^{l+1}_T = relu(W_T a_T + H a_S + b_T), a^{l+1}_S =
  relu(W_S a_S + H a_T + b_S) while H^l exists, plain layers after; linear logits."""
  for l, ((wt, bt), (ws, bs)) in enumerate(zip(w["target"], w["source"])):
    zt, zs = a_t @ wt + bt, a_s @ ws + bs
    if l < len(w["cross"]):
      zt, zs = zt + a_s @ w["cross"][l], zs + a_t @ w["cross"][l]
    a_t, a_s = np.maximum(zt, 0), np.maximum(zs, 0)
  (ht, ct), (hs, cs) = w["target_output"], w["source_output"]
  return (a_t @ ht + ct)[..., 0], (a_s @ hs + cs)[..., 0]


def inputs_by_hand(model, f):
  """(p_u [b, d], x_i [b, d], mean product-history encoding [b, d]) from the model's tables."""
  items = model.item_encoder(tf.range(model.num_items + 1)).numpy()
  u = model.user_embedding(f["user_id"]).numpy()
  mask = f["source_mask"].numpy().astype(np.float32)
  hist = (items[f["source_item_ids"].numpy()] * mask[..., None]).sum(1)
  hist /= np.maximum(mask.sum(1), 1)[:, None]
  return u, items[f["item_id"].numpy()], hist, items


def test_cross_connections_by_hand():
  # Two layers, H on the first only (cross_layers=1): crossed and plain transitions both.
  model = conet(cross_layers=1)
  w = set_known_weights(model.towers, seed=0)
  assert len(w["cross"]) == 1 and w["cross"][0].shape == (2 * 8, UNITS[0])
  f = as_tf(make_features(seed=1))
  u, x, hist, _ = inputs_by_hand(model, f)
  want, _ = np_conet(w, np.concatenate([u, x], -1), np.concatenate([u, hist], -1))
  np.testing.assert_allclose(model(f).numpy(), want, rtol=1e-5, atol=1e-5)
  # Both heads of the layer, H on every transition, broadcasting [b, 3] against [b, 1].
  towers = CrossTowers([5, 4, 2])
  rng = np.random.default_rng(1)
  a_t = rng.normal(size=[2, 3, 6]).astype(np.float32)
  a_s = rng.normal(size=[2, 1, 6]).astype(np.float32)
  towers(a_t, a_s)
  w = set_known_weights(towers, seed=2)
  assert [h.shape for h in w["cross"]] == [(6, 5), (5, 4), (4, 2)]
  got = towers(a_t, a_s, heads="both")
  want_t, want_s = np_conet(w, a_t, a_s)
  assert got["target"].shape == (2, 3) and got["source"].shape == (2, 3)
  np.testing.assert_allclose(got["target"].numpy(), want_t, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(got["source"].numpy(), want_s, rtol=1e-5, atol=1e-5)
  # Each head alone is the same as from "both".
  np.testing.assert_allclose(towers(a_t, a_s, heads="target")["target"].numpy(), want_t,
                             rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(towers(a_t, a_s, heads="source")["source"].numpy(), want_s,
                             rtol=1e-5, atol=1e-5)


def test_no_transfer_without_h_and_transfer_with_it():
  f = make_features(seed=3)
  g = {k: v.copy() for k, v in f.items()}  # another product history, same impressions
  other = make_features(seed=4)
  for k in ("source_item_ids", "source_timestamps", "source_mask"):
    g[k] = other[k]
  changed = (f["source_item_ids"] != g["source_item_ids"]).any(1)
  assert changed.sum() >= 4
  model = conet()
  for h in model.towers.cross:
    h.kernel.assign(tf.zeros_like(h.kernel))
  np.testing.assert_allclose(logits_of(model, f), logits_of(model, g), rtol=1e-6, atol=1e-6)
  for h in model.towers.cross:
    h.kernel.assign(tf.fill(h.kernel.shape, 0.3))
  moved = ~np.isclose(logits_of(model, f), logits_of(model, g), rtol=1e-5, atol=1e-6)
  assert moved[changed].all() and not moved[~changed].any()
  # cross_layers=0 has no H at all: two independent towers, in both directions.
  towers = CrossTowers([4, 3], cross_layers=0)
  rng = np.random.default_rng(5)
  a_t, a_s, b_s, b_t = (rng.normal(size=[2, 1, 6]).astype(np.float32) for _ in range(4))
  towers(a_t, a_s)
  assert not towers.cross
  np.testing.assert_array_equal(towers(a_t, a_s)["target"], towers(a_t, b_s)["target"])
  np.testing.assert_array_equal(towers(a_t, a_s)["source"], towers(b_t, a_s)["source"])


def test_source_loss_by_hand_and_which_losses_reach_which_weights():
  model = conet(cross_layers=1)
  w = set_known_weights(model.towers, seed=6)
  f = as_tf(make_features(seed=2))
  f["label"] = tf.constant(np.arange(len(f["item_id"])) % 2)
  losses = model.compute_losses(f, training=False)
  # By hand, as CMF's: BCE of the source logit of each real product of the history (label 1)
  # and of a product drawn with CMF's fixed validation seed (label 0), the target tower reading
  # the row's impression, averaged over the positions; BCE of the target logit for "bce".
  products = small_store().item_ids(domain=0)
  seq = f["source_item_ids"].numpy()
  mask = f["source_mask"].numpy()
  pick = tf.random.stateless_uniform(seq.shape, tf.constant(_VALIDATION_SEED, tf.int64),
                                     minval=0, maxval=len(products), dtype=tf.int64).numpy()
  u, x, hist, items = inputs_by_hand(model, f)
  sp = lambda z: np.log1p(np.exp(z))  # noqa: E731
  for row in range(len(seq)):
    a_t = np.concatenate([u[row], x[row]])[None]
    ids = np.concatenate([seq[row], products[pick[row]]])
    _, s = np_conet(w, a_t, np.concatenate([np.tile(u[row], (len(ids), 1)), items[ids]], -1))
    pos, neg = s[:seq.shape[1]], s[seq.shape[1]:]
    terms = [sp(-pos[t]) + sp(neg[t]) for t in range(seq.shape[1]) if mask[row, t]]
    want = np.mean(terms) if terms else 0.0
    np.testing.assert_allclose(losses["source"].numpy()[row], want, rtol=1e-4, atol=1e-6)
    logit, _ = np_conet(w, a_t, np.concatenate([u[row], hist[row]])[None])
    label = row % 2
    np.testing.assert_allclose(losses["bce"].numpy()[row],
                               sp(-logit[0]) if label else sp(logit[0]), rtol=1e-4, atol=1e-6)
  assert losses["source"].numpy()[2] == 0.0  # row 2 has no product history
  # The target head is trained by "bce" only, the source head by "source" only; the shared
  # user factor and the cross connection by both.
  towers = model.towers
  for name, reached, unreached in (
      ("bce", [towers.target_output, towers.cross[0]], [towers.source_output]),
      ("source", [towers.source_output, towers.cross[0]], [towers.target_output])):
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(model.compute_losses(f, training=False)[name])
    variables = ([model.user_embedding.embeddings] + [v for layer in reached + unreached
                                                       for v in layer.trainable_variables])
    grads = dict(zip([v.ref() for v in variables], tape.gradient(loss, variables)))
    for v in [model.user_embedding.embeddings] + [v for layer in reached
                                                  for v in layer.trainable_variables]:
      assert np.abs(tf.convert_to_tensor(grads[v.ref()]).numpy()).sum() > 0, (name, v.name)
    for v in [v for layer in unreached for v in layer.trainable_variables]:
      assert grads[v.ref()] is None, (name, v.name)


def test_training_negatives_follow_the_step_seed():
  f = as_tf(make_features(seed=7))
  f["label"] = tf.zeros([6], tf.int64)
  assert_loss_follows_the_step_seed(conet(), f, "source")


def test_scoring_contract():
  model = conet(dropout=0.0)
  features = make_features(seed=8)
  # Encode once, score N = one row per candidate.
  candidates = np.array([6, 7, 8, 9, 10, 1, 3], np.int64)
  for r in (0, 2, 4):  # full history, no history, random
    user = model.encode_user(as_tf(rows(features, [r])))
    scored = model.score(user, tf.constant(candidates[None, :]))
    assert scored.dtype == tf.float32 and scored.shape == (1, len(candidates))
    repeated = rows(features, [r] * len(candidates))
    repeated["item_id"] = candidates
    np.testing.assert_allclose(scored.numpy()[0], logits_of(model, repeated), rtol=1e-5,
                               atol=1e-5)
  # Padded positions cannot change the logits.
  noisy = {k: v.copy() for k, v in features.items()}
  pad = ~features["source_mask"]
  noisy["source_item_ids"][pad] = np.random.default_rng(9).integers(1, 11, size=pad.sum())
  np.testing.assert_allclose(logits_of(model, noisy), logits_of(model, features), rtol=1e-6,
                             atol=1e-6)
  # Dropout acts in training only.
  dropping = conet(dropout=0.5)
  f = as_tf(features)
  np.testing.assert_array_equal(dropping(f, training=False), dropping(f, training=False))
  assert not np.allclose(dropping(f, training=True), dropping(f, training=False))


def test_mixed_precision_gives_finite_float32_logits_and_losses():
  try:
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    model = conet()
    f = as_tf(make_features(seed=12))
    f["label"] = tf.ones([6], tf.int64)
    logits = model(f, training=True)
    losses = model.compute_losses(f, training=False)
  finally:
    keras.mixed_precision.set_global_policy("float32")
  assert model.towers.target_layers[0].compute_dtype == "bfloat16"
  for out in [logits] + list(losses.values()):
    assert out.dtype == tf.float32 and np.isfinite(out.numpy()).all()
  reference = conet()
  reference.set_weights(model.get_weights())
  np.testing.assert_allclose(logits.numpy(), reference(f).numpy(), atol=0.1, rtol=0.1)


NON_DEFAULT = dict(num_users=7, l2=1e-3, item_features=("category",), item_combine="sum",
                   dropout=0.2, domains=("target", "source"), mlp_units=(6, 4, 2),
                   cross_layers=2)


def test_config_round_trip_and_checkpoint(tmp_path):
  model = build("conet", **NON_DEFAULT)
  config = model.get_config()
  assert set(config) == set(registry.accepted_args(CoNet)) - {"name"}
  for key, value in NON_DEFAULT.items():
    assert config[key] == (list(value) if isinstance(value, tuple) else value), key
  assert len(model.towers.cross) == 2 and len(model.towers.target_layers) == 3
  config = json.loads(json.dumps(config))
  rebuilt = CoNet.from_config(config).build_and_fill(small_store())
  assert rebuilt.get_config() == config
  rebuilt.set_weights(model.get_weights())
  features = make_features(seed=9)
  np.testing.assert_allclose(logits_of(rebuilt, features), logits_of(model, features),
                             rtol=1e-6, atol=1e-6)
  serialized = keras.utils.serialize_keras_object(model)
  assert serialized["registered_name"] == "tfrec>CoNet"
  again = keras.utils.deserialize_keras_object(json.loads(json.dumps(serialized)))
  assert type(again) is CoNet and again.get_config() == config
  towers = CrossTowers([5, 3], cross_layers=1, dropout=0.3,
                       kernel_regularizer=keras.regularizers.L2(0.1), name="t")
  tc = json.loads(json.dumps(towers.get_config()))
  assert CrossTowers.from_config(tc).get_config() == tc and tc["cross_layers"] == 1
  # Every weight (the source head too, which the target logit never reads) is built by
  # build_and_fill and restored from a checkpoint.
  model = build("conet", num_users=NUM_USERS)
  assert {v.name.split("/")[2] for v in model.towers.weights} >= {"source_output", "source_0"}
  prefix = str(tmp_path / "ckpt")
  model.save_weights(prefix)
  restored = build("conet", seed=11, num_users=NUM_USERS)
  restored.load_weights(prefix).assert_consumed()
  for a, b in zip(restored.weights, model.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_errors():
  with pytest.raises(ValueError, match="domains must include 'source'"):
    conet(domains=("target",))
  with pytest.raises(ValueError, match=r"cross_layers must be in \[0, 2\]"):
    conet(cross_layers=3)
  with pytest.raises(ValueError, match="heads must be one of"):
    conet().towers(tf.zeros([1, 1, 16]), tf.zeros([1, 1, 16]), heads="both_domains")
  model = CoNet(10, num_users=NUM_USERS, dim=8, visual_dim=3, num_categories=4)
  store = small_store()
  store.domain[:] = 1  # no product at all: nothing to sample negatives from
  with pytest.raises(ValueError, match="source-domain"):
    model.build_and_fill(store)


def test_flagfile_settings(syn_dir, tmp_path, monkeypatch):
  """configs/adapt/conet.flags as written: what it sets
  (tests/test_train.py trains every flagfile two steps and checks that each named loss is
  logged and finite)."""
  monkeypatch.chdir(REPO)
  cfg = flagfile_config("configs/adapt/conet.flags", syn_dir, f"{tmp_path}/r")
  assert cfg.model.name == "conet" and cfg.model.kwargs["cross_layers"] == 2