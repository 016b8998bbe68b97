"""MiNet (SEMI Table 1 (9), tfrec/models/minet.py): the item-level attention against numpy (with
and without the transfer matrix), the whole target logit by hand (long-term mean, both
domains' item-level attention, exp interest-level weights, the head), masking and empty
histories, the source loss on the newest product by hand, which loss reaches which weights,
the step-seeded negatives, the scoring contract, configs and checkpoints, and the flagfile
training for two steps."""

import json
import os

import numpy as np
import pytest

from conftest import flagfile_config
import tfrec  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

import tfrec.models.minet  # noqa: E402,F401  (registers "minet")
from test_models import (as_tf, assert_loss_follows_the_step_seed, build,  # noqa: E402
                         logits_of, make_features, newest_product_task, np_dense, rows,
                         small_store)
from tfrec.models import registry  # noqa: E402
from tfrec.models.minet import InterestLevelAttention, ItemLevelAttention, MiNet  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def minet(**kwargs):
  return build("minet", **{"item_attention_units": 5, "interest_attention_units": 4, **kwargs})


def sp(x):
  return np.log1p(np.exp(x))


def relu(x):
  return np.maximum(x, 0)


def np_item_attention(layer, q, k, c, mask):
  """s_j = h^T ReLU(W [k_j; q; c; (M k_j) ⊙ q]), α = softmax over the real items (0 for a row
  without any), out = sum_j α_j k_j; q [b, n, d], k [b, L, d], c [b, d], mask [b, L]."""
  kernel, score = layer.kernel.numpy(), layer.score_kernel.numpy()[:, 0]
  mk = k
  for m in layer.transfer_kernels:
    mk = mk @ m.numpy()
  b, n, d = q.shape
  length = k.shape[1]
  feats = np.concatenate([np.broadcast_to(k[:, None], (b, n, length, d)),
                          np.broadcast_to(q[:, :, None], (b, n, length, d)),
                          np.broadcast_to(c[:, None, None], (b, n, length, d)),
                          mk[:, None] * q[:, :, None]], -1)
  s = relu(feats @ kernel) @ score                                          # [b, n, L]
  alpha = np.zeros_like(s)
  for r in range(b):
    real = mask[r].astype(bool)
    if real.any():
      e = np.exp(s[r][:, real] - s[r][:, real].max(-1, keepdims=True))
      alpha[r][:, real] = e / e.sum(-1, keepdims=True)
  return np.einsum("bnl,bld->bnd", alpha, k * mask[..., None]), alpha


def set_known_weights(layer, seed):
  rng = np.random.default_rng(seed)
  for w in layer.weights:
    w.assign(rng.normal(scale=0.5, size=w.shape).astype(np.float32))


@pytest.mark.parametrize("transfer,transfer_dim", [(False, None), (True, None), (True, 2)])
def test_item_level_attention_against_numpy(transfer, transfer_dim):
  rng = np.random.default_rng(0)
  b, n, length, d = 3, 2, 4, 5
  q = rng.normal(size=[b, n, d]).astype(np.float32)
  k = rng.normal(size=[b, length, d]).astype(np.float32)
  c = rng.normal(size=[b, d]).astype(np.float32)
  mask = np.array([[1, 1, 1, 1], [1, 1, 0, 0], [0, 0, 0, 0]], bool)
  layer = ItemLevelAttention(6, transfer=transfer, transfer_dim=transfer_dim)
  layer(q, k, c, mask)
  set_known_weights(layer, seed=1)
  want_shapes = {(False, None): [], (True, None): [(d, d)], (True, 2): [(d, 2), (2, d)]}
  assert [tuple(m.shape) for m in layer.transfer_kernels] == want_shapes[transfer, transfer_dim]
  out, alpha = layer(q, k, c, mask, return_attention_scores=True)
  want_out, want_alpha = np_item_attention(layer, q, k, c, mask)
  np.testing.assert_allclose(alpha.numpy(), want_alpha, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(out.numpy(), want_out, rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(alpha.numpy()[:2].sum(-1), 1.0, rtol=1e-6)
  assert (alpha.numpy()[1][:, 2:] == 0).all()
  assert (out.numpy()[2] == 0).all() and (alpha.numpy()[2] == 0).all()  # no real item
  # The weights depend on the candidate and on the user context (not a fixed pooling).
  other = layer(q, k, c + 1.0, mask, return_attention_scores=True)[1].numpy()
  assert not np.allclose(other[:2], alpha.numpy()[:2])
  # Values at padded positions cannot change anything.
  noisy = np.where(mask[..., None], k, 9.0).astype(np.float32)
  np.testing.assert_allclose(layer(q, noisy, c, mask).numpy(), out.numpy(), rtol=1e-6)


def test_interest_level_weights_are_exp_of_each_interests_mlp():
  layer = InterestLevelAttention(3)
  z = np.random.default_rng(2).normal(size=[2, 3, 8]).astype(np.float32)
  layer(z)
  # Zero kernels: w = exp(b), b initialised as MiNet's code (1 for the long-term interest).
  for w in layer.hidden_kernels + layer.score_kernels:
    w.assign(tf.zeros_like(w))
  np.testing.assert_allclose(layer(z).numpy(), np.broadcast_to(np.exp([1.0, 0.0, 0.0]),
                                                               (2, 3, 3)), rtol=1e-6)
  set_known_weights(layer, seed=3)
  want = np.stack([np.exp(relu(z @ g.numpy()) @ h.numpy()[:, 0] + b)
                   for g, h, b in zip(layer.hidden_kernels, layer.score_kernels,
                                      layer.bias.numpy())], -1)
  got = layer(z).numpy()
  np.testing.assert_allclose(got, want, rtol=1e-5)
  assert (got > 0).all() and not np.allclose(got.sum(-1), 1.0)  # not normalised


def np_forward(model, f):
  """The module docstring's target logit, by hand from the model's weights: p_u the mean of
  both histories' real items, a_T and a_S by `np_item_attention`, w by the exp MLPs, then the
  head on [w_u p_u; w_T a_T; w_S a_S; q]."""
  items = model.item_encoder(tf.range(model.num_items + 1)).numpy()
  hist = {}
  for d in ("target", "source"):
    mask = f[f"{d}_mask"].astype(np.float32)
    hist[d] = (items[f[f"{d}_item_ids"]] * mask[..., None], mask)
  total = hist["target"][0].sum(1) + hist["source"][0].sum(1)
  count = hist["target"][1].sum(1) + hist["source"][1].sum(1)
  p_u = total / np.maximum(count, 1)[:, None]
  q = items[f["item_id"]][:, None, :]
  a_t, _ = np_item_attention(model.target_attention, q, hist["target"][0], p_u,
                             hist["target"][1])
  a_s, _ = np_item_attention(model.source_attention, q, hist["source"][0], p_u,
                             hist["source"][1])
  ia = model.interest_attention
  z = np.concatenate([q, p_u[:, None], a_t, a_s], -1)
  w = np.stack([np.exp(relu(z @ g.numpy()) @ h.numpy()[:, 0] + b)
                for g, h, b in zip(ia.hidden_kernels, ia.score_kernels, ia.bias.numpy())], -1)
  x = np.concatenate([w[..., :1] * p_u[:, None], w[..., 1:2] * a_t, w[..., 2:] * a_s, q], -1)
  dense = [layer for layer in model.output_mlp._stack if isinstance(layer, keras.layers.Dense)]
  for layer in dense[:-1]:
    x = relu(np_dense(x, layer))
  return np_dense(x, dense[-1])[:, 0, 0], p_u, a_t, a_s


def test_target_logit_by_hand():
  model = minet(transfer_dim=3)
  for layer in (model.target_attention, model.source_attention, model.interest_attention):
    set_known_weights(layer, seed=4)
  f = make_features(seed=5)
  want, p_u, a_t, a_s = np_forward(model, f)
  np.testing.assert_allclose(logits_of(model, f), want, rtol=1e-4, atol=1e-5)
  got = model.interests(model.encode_user(as_tf(f)), model.candidates(f["item_id"][:, None]))
  np.testing.assert_allclose(got["long_term"].numpy(), p_u, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(got["target"].numpy(), a_t, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(got["source"].numpy(), a_s, rtol=1e-4, atol=1e-5)
  # Row 1 has no micro-video history (a_T = 0), row 2 no history at all (every interest 0).
  assert (a_t[1] == 0).all() and (got["target"].numpy()[1] == 0).all()
  for key in ("long_term", "target", "source"):
    assert (got[key].numpy()[2] == 0).all(), key


def test_padding_changes_nothing_and_empty_histories_are_finite():
  model = minet()
  f = make_features(seed=6)
  f["label"] = np.arange(6) % 2
  noisy = {k: v.copy() for k, v in f.items()}
  rng = np.random.default_rng(7)
  for d in ("source", "target"):
    pad = ~f[f"{d}_mask"]
    noisy[f"{d}_item_ids"][pad] = rng.integers(1, model.num_items + 1, size=pad.sum())
    noisy[f"{d}_timestamps"][pad] = rng.integers(0, 10 ** 5, size=pad.sum())
  np.testing.assert_allclose(logits_of(model, noisy), logits_of(model, f), rtol=1e-6, atol=1e-6)
  clean, dirty = model.compute_losses(as_tf(f)), model.compute_losses(as_tf(noisy))
  for name in MiNet.LOSSES:
    np.testing.assert_allclose(dirty[name].numpy(), clean[name].numpy(), rtol=1e-6, atol=1e-6)
  # Every row empty in both domains: finite logits, losses and gradients.
  empty = {k: (np.zeros_like(v) if k.endswith(("_item_ids", "_timestamps", "_mask")) else v)
           for k, v in f.items()}
  with tf.GradientTape() as tape:
    losses = model.compute_losses(as_tf(empty))
    loss = tf.add_n([tf.reduce_mean(x) for x in losses.values()])
  assert np.isfinite(logits_of(model, empty)).all()
  assert (losses["source"].numpy() == 0).all()
  grads = tape.gradient(loss, model.trainable_variables)
  assert all(np.isfinite(tf.convert_to_tensor(g).numpy()).all() for g in grads if g is not None)


def test_source_loss_on_the_newest_product_by_hand():
  model = minet()
  # By hand: the newest real product is the positive, the user is the mean of the micro-video
  # history and the products BEFORE it, the negative one product drawn with CMF's fixed seed.
  f, losses, negatives, items, head = newest_product_task(model)

  def y_s(u, r):
    return head(np.concatenate([u, r])[None])

  for row in range(6):
    n_src = int(f["source_mask"][row].sum())
    if not n_src:
      assert losses["source"].numpy()[row] == 0.0  # row 2: no product history
      continue
    newest = f["source_item_ids"][row, n_src - 1]
    before = list(f["source_item_ids"][row, :n_src - 1])
    before += list(f["target_item_ids"][row][f["target_mask"][row]])
    u = items[before].mean(0) if before else np.zeros(model.dim, np.float32)
    want = sp(-y_s(u, items[newest])) + sp(y_s(u, items[negatives[row]]))
    np.testing.assert_allclose(losses["source"].numpy()[row], want, rtol=1e-4, atol=1e-6)
  # The target loss is the BCE of the target logit.
  logits = logits_of(model, f)
  label = f["label"]
  np.testing.assert_allclose(losses["bce"].numpy(),
                             np.where(label == 1, sp(-logits), sp(logits)), rtol=1e-4, atol=1e-6)


def test_each_loss_reaches_its_head_and_both_reach_the_shared_item_encoder():
  model = minet()
  f = as_tf(make_features(seed=9))
  f["label"] = tf.constant(np.arange(6) % 2)
  shared = model.item_encoder
  target_only = [model.output_mlp, model.target_attention, model.source_attention,
                 model.interest_attention]
  for name, reached, unreached in (("bce", target_only + [shared], [model.source_mlp]),
                                   ("source", [model.source_mlp, shared], target_only)):
    variables = [v for layer in reached + unreached for v in layer.trainable_variables]
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(model.compute_losses(f, training=False)[name])
    grads = dict(zip([v.ref() for v in variables], tape.gradient(loss, variables)))
    for v in [v for layer in reached for v in layer.trainable_variables]:
      assert grads[v.ref()] is not None, (name, v.name)
      assert np.abs(tf.convert_to_tensor(grads[v.ref()]).numpy()).sum() > 0, (name, v.name)
    for v in [v for layer in unreached for v in layer.trainable_variables]:
      assert grads[v.ref()] is None, (name, v.name)
  assert any("transfer" in v.name for v in model.source_attention.trainable_variables)


def test_training_negatives_follow_the_step_seed():
  f = as_tf(make_features(seed=10))
  f["label"] = tf.zeros([6], tf.int64)
  assert_loss_follows_the_step_seed(minet(), f, "source")


def test_scoring_contract_dropout_and_mixed_precision():
  model = minet()
  features = make_features(seed=11)
  candidates = np.array([6, 7, 8, 9, 10, 1, 3], np.int64)
  for r in (0, 1, 2, 4):  # full history, no micro-video history, no history, random
    user = model.encode_user(as_tf(rows(features, [r])))
    scored = model.score(user, tf.constant(candidates[None, :]))
    assert scored.dtype == tf.float32 and scored.shape == (1, len(candidates))
    repeated = rows(features, [r] * len(candidates))
    repeated["item_id"] = candidates
    np.testing.assert_allclose(scored.numpy()[0], logits_of(model, repeated), rtol=1e-5,
                               atol=1e-5)
  f = as_tf(features)
  dropping = minet(dropout=0.5)
  np.testing.assert_array_equal(dropping(f, training=False), dropping(f, training=False))
  assert not np.allclose(dropping(f, training=True), dropping(f, training=False))
  try:
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    half = minet()
    out = [half(f, training=True)] + list(half.compute_losses({**f, "label": tf.ones([6])},
                                                               training=False).values())
  finally:
    keras.mixed_precision.set_global_policy("float32")
  for x in out:
    assert x.dtype == tf.float32 and np.isfinite(x.numpy()).all()


NON_DEFAULT = dict(item_attention_units=5, interest_attention_units=3, transfer_dim=2,
                   item_features=("id", "visual"), domains=("source", "target"),
                   mlp_units=(6, 4), dropout=0.2, use_time_blocks=True, num_time_blocks=4)


def test_config_round_trip_and_checkpoint(tmp_path):
  model = build("minet", **NON_DEFAULT)
  config = model.get_config()
  assert set(config) == set(registry.accepted_args(MiNet)) - {"name"}
  for key, value in NON_DEFAULT.items():
    assert config[key] == (list(value) if isinstance(value, tuple) else value), key
  config = json.loads(json.dumps(config))
  rebuilt = MiNet.from_config(config).build_and_fill(small_store())
  assert rebuilt.get_config() == config
  rebuilt.set_weights(model.get_weights())
  features = make_features(seed=12)
  np.testing.assert_allclose(logits_of(rebuilt, features), logits_of(model, features),
                             rtol=1e-6, atol=1e-6)
  serialized = keras.utils.serialize_keras_object(model)
  assert serialized["registered_name"] == "tfrec>MiNet"
  again = keras.utils.deserialize_keras_object(json.loads(json.dumps(serialized)))
  assert type(again) is MiNet and again.get_config() == config
  for layer in (ItemLevelAttention(4, transfer=True, transfer_dim=3, name="a"),
                InterestLevelAttention(2, initial_biases=(0.5, 0.0), name="b")):
    lc = json.loads(json.dumps(layer.get_config()))
    assert type(layer).from_config(lc).get_config() == lc
  # Every weight, the source head's included, exists after build_and_fill and is restored.
  assert model.source_mlp.weights
  prefix = str(tmp_path / "ckpt")
  model.save_weights(prefix)
  restored = build("minet", seed=11, **NON_DEFAULT)
  restored.load_weights(prefix).assert_consumed()
  for a, b in zip(restored.weights, model.weights):
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_errors():
  with pytest.raises(ValueError, match="both domains"):
    minet(domains=("target",))
  model = MiNet(10, dim=8, visual_dim=3, num_categories=4, max_seq_len=5)
  store = small_store()
  store.domain[:] = 1  # no product at all: nothing to sample negatives from
  with pytest.raises(ValueError, match="source-domain"):
    model.build_and_fill(store)


def test_flagfile_settings(syn_dir, tmp_path, monkeypatch):
  """configs/semi/minet.flags as written: what it sets
  (tests/test_train.py trains every flagfile two steps and checks that each named loss is
  logged and finite)."""
  monkeypatch.chdir(REPO)
  cfg = flagfile_config("configs/semi/minet.flags", syn_dir, f"{tmp_path}/r")
  assert cfg.model.name == "minet" and cfg.model.kwargs["mlp_units"] == [256, 128]
  assert cfg.train.loss_weights == {"source": 1.0}