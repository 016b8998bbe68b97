"""BERT4SessRec (SEMI Table 1 (5)): the masking (rate, real positions only, step seeds), the
bidirectional encoder, padding invariance, the "mlm" loss by hand, the pre-train -> init_from
flow through the trainer, and config round trips of both models."""

import json
import math
import os

import numpy as np
import pytest

from conftest import make_config
import tfrec  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

import tfrec.models.bert4sessrec as b4  # noqa: E402  (registers both models)
from tfrec import runs  # noqa: E402
from tfrec.data.info import DatasetInfo  # noqa: E402
from tfrec.data.item_store import ItemStore  # noqa: E402
from tfrec import train as train_lib  # noqa: E402
from tfrec.layers import step_random  # noqa: E402
from tfrec.models import registry  # noqa: E402
from test_models import (DIM, NUM_CATEGORIES, SEQ, as_tf, build,  # noqa: E402
                         make_features, small_store)
from conftest import NUM_ITEMS, VISUAL_DIM  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = dict(num_blocks=2, num_heads=2, ff_dim=DIM)


def ranker(seed=0, **kwargs):
  return build("bert4sessrec", seed=seed, **{**TINY, **kwargs})


def pretrainer(seed=0, **kwargs):
  keras.utils.set_random_seed(seed)
  args = dict(num_items=NUM_ITEMS, dim=DIM, num_categories=NUM_CATEGORIES,
              visual_dim=VISUAL_DIM, max_seq_len=SEQ, dropout=0.0, num_negatives=4, **TINY)
  args.update(kwargs)
  return registry.build("bert4sessrec_pretrain", **args).build_and_fill(small_store())


# --------------------------------------------------------------------------- masking

def test_mask_count_is_ten_percent_rounded_half_up_and_at_least_one():
  lengths = np.array([0, 1, 4, 5, 10, 14, 15, 25, 50])
  # round(0.1 n) half up, at least one for n > 0: by hand.
  want = [0, 1, 1, 1, 1, 1, 2, 3, 5]
  assert b4.num_masked(tf.constant(lengths), 0.1).numpy().tolist() == want
  assert b4.num_masked(tf.constant([3, 0]), 1.0).numpy().tolist() == [3, 0]


def test_only_real_positions_are_masked_uniformly_and_reproducibly():
  lengths = np.array([0, 1, 7, 25, 50])
  mask = np.arange(50)[None, :] < lengths[:, None]
  mask[3, :25] = False  # a row whose real items are not a prefix: still only real ones
  mask[3, 25:] = True
  hits = np.zeros(mask.shape)
  for s in range(200):
    chosen = b4.choose_masked_positions(tf.constant(mask), 0.1, tf.constant([s, 1])).numpy()
    assert not (chosen & ~mask).any()
    assert chosen.sum(axis=1).tolist() == [0, 1, 1, 3, 5]
    hits += chosen
  # Without replacement, uniform: each real position of row 2 is chosen 200/7 times on average.
  assert (hits[2, :7] > 10).all() and (hits[4] > 5).all()
  a = b4.choose_masked_positions(tf.constant(mask), 0.1, tf.constant([3, 4])).numpy()
  b = b4.choose_masked_positions(tf.constant(mask), 0.1, tf.constant([3, 4])).numpy()
  np.testing.assert_array_equal(a, b)


def test_training_draws_from_the_step_seed_and_a_fixed_seed_outside():
  model = pretrainer(mask_rate=0.5)
  f = as_tf(make_features(1, batch=16))

  def draw(training, step=None):
    if step is None:
      return model.masked_positions(f, training).numpy(), model.negatives(training).numpy()
    with step_random.training_step(7, tf.constant(step)):
      return model.masked_positions(f, training).numpy(), model.negatives(training).numpy()

  outside = draw(False)
  for x, y in zip(outside, draw(False)):
    np.testing.assert_array_equal(x, y)
  step3 = draw(True, 3)
  for x, y in zip(step3, draw(True, 3)):  # a resumed run redraws the same
    np.testing.assert_array_equal(x, y)
  assert not np.array_equal(step3[0], draw(True, 4)[0])
  assert not np.array_equal(step3[1], draw(True, 4)[1])
  assert set(step3[1]) <= set(range(6, 11))  # negatives: the store's micro-videos only


# --------------------------------------------------------------------------- the encoder

def _change_item(features, row, position, item):
  f = {k: v.copy() for k, v in features.items()}
  f["target_item_ids"][row, position] = item
  return f


def test_encoder_is_bidirectional_an_earlier_output_sees_a_later_item():
  model = ranker()
  features = make_features(2)  # row 0: a full target history of SEQ items
  last = SEQ - 1
  new_item = 6 if features["target_item_ids"][0, last] != 6 else 7
  changed = _change_item(features, 0, last, new_item)
  before = model.encode_user(as_tf(features))["encoded"].numpy()
  after = model.encode_user(as_tf(changed))["encoded"].numpy()
  assert np.abs(before[0, 0] - after[0, 0]).max() > 1e-4  # position 0 sees position SEQ - 1
  np.testing.assert_array_equal(before[1:], after[1:])  # other rows untouched
  # The pre-training encoder too (same layer class), with and without masking.
  pre = pretrainer()
  assert np.abs(pre(as_tf(features)).numpy()[0, 0] - pre(as_tf(changed)).numpy()[0, 0]).max() \
      > 1e-4


def test_padding_never_changes_outputs_or_the_mlm_loss():
  features = make_features(3)
  garbage = {k: v.copy() for k, v in features.items()}
  pad = ~garbage["target_mask"]
  rng = np.random.default_rng(0)
  garbage["target_item_ids"][pad] = rng.integers(6, 11, size=pad.sum())
  garbage["target_timestamps"][pad] = rng.integers(0, 1000, size=pad.sum())
  model = ranker()
  np.testing.assert_allclose(model(as_tf(garbage)).numpy(), model(as_tf(features)).numpy(),
                             rtol=1e-6, atol=1e-6)
  encoded = model.encode_user(as_tf(garbage))["encoded"].numpy()
  assert not encoded[pad].any()  # padded rows of H are zero
  pre = pretrainer()
  np.testing.assert_allclose(pre.compute_losses(as_tf(garbage))["mlm"].numpy(),
                             pre.compute_losses(as_tf(features))["mlm"].numpy(), rtol=1e-6)


# --------------------------------------------------------------------------- the loss

def test_masked_item_loss_on_a_hand_computed_input():
  pos = tf.constant([[2.0, 1.0, 0.5], [0.0, 0.0, 0.0]])
  neg = tf.constant([[[1.0, 0.0], [3.0, -1.0], [9.0, 9.0]], [[1.0, 1.0]] * 3])
  masked = tf.constant([[True, True, False], [False, False, False]])
  pos_ids = tf.constant([[5, 7, 8], [1, 1, 1]])
  neg_ids = tf.constant([7, 9])
  loss = b4.masked_item_loss(pos, neg, masked, pos_ids, neg_ids).numpy()
  e = math.exp
  t0 = -math.log(e(2) / (e(2) + e(1) + e(0)))  # item 5: both negatives count
  t1 = -math.log(e(1) / (e(1) + e(-1)))        # item 7: negative 7 is itself, left out
  np.testing.assert_allclose(loss, [(t0 + t1) / 2, 0.0], rtol=1e-6)


def test_mlm_loss_of_the_model_matches_numpy():
  model = pretrainer(mask_rate=0.5)
  f = as_tf(make_features(4))
  got = model.compute_losses(f, training=False)["mlm"].numpy()
  masked = model.masked_positions(f, False).numpy()
  negs = model.negatives(False).numpy()
  ids = f["target_item_ids"].numpy()
  mask = f["target_mask"].numpy()
  table = model.item_encoder(tf.range(NUM_ITEMS + 1)).numpy()  # e(i) of every item
  # The encoder's input built here: e(i) at real unmasked positions, [MASK] at masked ones.
  x = np.where(masked[..., None], model.mask_embedding.numpy()[None, None], table[ids])
  x = np.where(mask[..., None], x, 0.0).astype(np.float32)
  h = model.encoder(tf.constant(x), tf.constant(mask)).numpy()
  want = []
  for r in range(len(ids)):
    terms = []
    for t in np.nonzero(masked[r])[0]:
      logits = [h[r, t] @ table[ids[r, t]]] + [h[r, t] @ table[n] for n in negs
                                               if n != ids[r, t]]
      logits = np.array(logits, np.float64)
      terms.append(np.log(np.exp(logits - logits.max()).sum()) + logits.max() - logits[0])
    want.append(np.mean(terms) if terms else 0.0)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  assert masked.sum() > 0 and got[2] == 0.0  # make_features' row 2 has no history


def test_mlm_gradients_reach_mask_embedding_item_encoder_and_encoder():
  model = pretrainer()
  with tf.GradientTape() as tape:
    loss = tf.reduce_mean(model.compute_losses(as_tf(make_features(5)))["mlm"])
  grads = dict(zip([v.name for v in model.trainable_variables],
                   tape.gradient(loss, model.trainable_variables)))
  for part in ("mask_embedding", "item_encoder/id_embeddings", "encoder/positions",
               "encoder/block_1/query_kernel"):
    (g,) = [g for n, g in grads.items() if part in n]
    assert g is not None and float(tf.norm(tf.convert_to_tensor(g))) > 0, part


# --------------------------------------------------------------------------- init_from

def test_pretrain_trains_and_the_ranker_restores_exactly_the_named_layers(syn_dir, tmp_path):
  common = dict(dim=8, num_heads=2, ff_dim=8)
  pre_run = str(tmp_path / "pre")
  result = train_lib.train(make_config(syn_dir, pre_run, model="bert4sessrec_pretrain",
                                       model_kwargs=dict(common, num_negatives=16),
                                       epochs=1, steps_per_epoch=2, batch_size=16))
  assert result.steps == 2 and set(result.history) == {"loss", "mlm_loss", "mlm_weight"}
  assert np.isfinite(result.history["loss"]).all()
  pre, *_ = runs.restore_model(pre_run, "best")

  class Capture(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
      self.weights = {n: [w.numpy() for w in getattr(self.model, n).weights]
                      for n in ("item_encoder", "encoder", "target_attention")}
      self.iterations = int(self.model.optimizer.iterations.numpy())

  def fine_tune(name, layers):
    capture = Capture()
    out = train_lib.train(make_config(syn_dir, str(tmp_path / name), model="bert4sessrec",
                                      model_kwargs=common, epochs=1, steps_per_epoch=1,
                                      batch_size=16, init_from=pre_run, init_layers=layers),
                          extra_callbacks=[capture])
    assert capture.iterations == 0 and out.steps == 1  # the pre-training optimizer not restored
    return capture.weights

  def same(got, layer):
    want = [w.numpy() for w in layer.weights]
    return len(got) == len(want) and all(np.array_equal(g, w) for g, w in zip(got, want))

  both = fine_tune("both", "item_encoder,encoder")
  assert same(both["item_encoder"], pre.item_encoder) and same(both["encoder"], pre.encoder)
  # --init_layers=encoder alone (what the trainer calls, without a second training run): the
  # encoder is restored, the item encoder keeps its initial values.
  fresh = runs.build_model(make_config(syn_dir, str(tmp_path / "x"), model="bert4sessrec",
                                       model_kwargs=common), DatasetInfo.load(syn_dir),
                           ItemStore.load(syn_dir))
  initial = [w.numpy() for w in fresh.item_encoder.weights]
  restored, kept = runs.init_from(fresh, pre_run, layers=("encoder",))
  assert restored == ["encoder"] and kept == []
  assert same([w.numpy() for w in fresh.encoder.weights], pre.encoder)
  assert same(initial, fresh.item_encoder)
  assert not np.allclose(initial[0], pre.item_encoder.weights[0].numpy())


# --------------------------------------------------------------------------- configs

def test_ranking_flagfile_names_the_pretraining_run_and_its_layers():
  text = open(os.path.join(REPO, "configs", "semi", "bert4sessrec.flags")).read()
  assert "--init_from=runs/semi/bert4sessrec_pretrain\n" in text
  assert "--init_layers=item_encoder,encoder\n" in text
  pre = open(os.path.join(REPO, "configs", "semi", "bert4sessrec_pretrain.flags")).read()
  assert "--run_dir=runs/semi/bert4sessrec_pretrain\n" in pre and "mask_rate=0.1" in pre


@pytest.mark.parametrize("name,kwargs", [
    ("bert4sessrec", dict(num_blocks=1, num_heads=4, ff_dim=3, item_features=("id", "visual"),
                          mlp_units=(6, 4), dropout=0.2, use_time_blocks=True,
                          num_time_blocks=4)),
    ("bert4sessrec_pretrain", dict(num_blocks=3, num_heads=4, ff_dim=3, dropout=0.2,
                                   mask_rate=0.25, num_negatives=7, item_combine="sum",
                                   item_features=("id", "category"))),
])
def test_config_round_trip(name, kwargs):
  model = (ranker(**kwargs) if name == "bert4sessrec" else pretrainer(**kwargs))
  cls = type(model)
  config = model.get_config()
  assert set(config) == set(registry.accepted_args(cls)) - {"name"}
  for key, value in kwargs.items():
    assert config[key] == (list(value) if isinstance(value, tuple) else value), key
  config = json.loads(json.dumps(config))
  rebuilt = cls.from_config(config).build_and_fill(small_store())
  assert rebuilt.get_config() == config
  rebuilt.set_weights(model.get_weights())
  f = as_tf(make_features(6))
  if name == "bert4sessrec":
    np.testing.assert_allclose(rebuilt(f).numpy(), model(f).numpy(), rtol=1e-6, atol=1e-6)
  else:
    np.testing.assert_allclose(rebuilt.compute_losses(f)["mlm"].numpy(),
                               model.compute_losses(f)["mlm"].numpy(), rtol=1e-6)
  again = keras.utils.deserialize_keras_object(
      json.loads(json.dumps(keras.utils.serialize_keras_object(model))))
  assert type(again) is cls and again.get_config() == config


def test_bad_arguments_are_refused():
  with pytest.raises(ValueError, match="mask_rate"):
    pretrainer(mask_rate=0.0)
  with pytest.raises(ValueError, match="num_negatives"):
    pretrainer(num_negatives=0)
  with pytest.raises(ValueError, match="num_blocks"):
    ranker(num_blocks=0)
