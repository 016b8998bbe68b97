"""COUPLE on the retrieval contract (§3, eq. 1-12): the user vector composed in the paper's order,
tags-only items at inference and the training-only domain embedding, a never-seen item scored
from its tags, the named orthogonality loss, the ablations, the temperature at the training
step, padding, and the config round trip."""

import numpy as np
import pytest

import tfrec  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

from conftest import NUM_ITEMS, tiny_store  # noqa: E402
from tfrec.data import schema  # noqa: E402
from tfrec.layers import step_random  # noqa: E402
from tfrec.layers.memory_tree import gumbel_temperature  # noqa: E402
from tfrec.models import registry  # noqa: E402


def couple(**kwargs):
  keras.utils.set_random_seed(0)
  args = dict(num_items=NUM_ITEMS, dim=8, num_tags=6, max_seq_len=5, branching=(2, 3), top_k=2,
              queue_size=8, num_heads=2, ff_dim=8, dropout=0.0)
  args.update(kwargs)
  return registry.build("couple", **args).build_and_fill(tiny_store())


def feats():
  seq = tf.constant([[1, 2, 6, 0, 0], [3, 4, 5, 7, 8], [9, 0, 0, 0, 0], [6, 7, 0, 0, 0]],
                    tf.int64)
  return {"seq_item_ids": seq, "seq_mask": seq > 0,
          "seq_domain_ids": tf.cast(seq >= 6, tf.int64),
          "positive_item_id": tf.constant([6, 7, 8, 9], tf.int64)}


def test_user_vector_is_wa_of_history_content_and_group_in_the_papers_order():
  m = couple()
  f = feats()
  mask = f["seq_mask"]
  x = m.item_encoder(f["seq_item_ids"]) * tf.cast(mask, tf.float32)[..., None]
  e_h = m.history_wa(m.history_block(x, query_mask=mask), mask)             # eq. 2-4
  tags = tf.gather(m.item_encoder.item_tags, tf.cast(f["seq_item_ids"], tf.int32))
  real = tf.reshape(tf.logical_and(tags > 0, mask[..., None]), [4, -1])
  emb = tf.reshape(tf.gather(m.item_encoder.tag_embeddings, tags), [4, -1, 8])
  e_c = m.frequency(emb, e_h, real)                                         # eq. 5
  e_g = m.tree(e_h, training=False)                                         # eq. 6-8
  want = m.user_wa(tf.stack([e_h, e_c, e_g], axis=1))                       # eq. 11
  np.testing.assert_allclose(m(f).numpy(), want.numpy(), rtol=1e-5, atol=1e-6)
  # Padding: other ids at padded positions change nothing.
  g = dict(f, seq_item_ids=tf.where(mask, f["seq_item_ids"], 9))
  np.testing.assert_allclose(m(g).numpy(), m(f).numpy(), rtol=1e-5, atol=1e-6)


def test_items_are_tags_alone_at_inference_and_get_their_domain_in_training():
  m = couple()
  ids = tf.constant([2, 7, 10], tf.int64)
  tags_only = m.item_encoder(ids).numpy()
  np.testing.assert_allclose(m.encode_items(ids).numpy(), tags_only, rtol=1e-6)
  domains = tiny_store().domain[[2, 7, 10]]
  np.testing.assert_allclose(m.encode_items(ids, training=True).numpy(),
                             tags_only + m.domain_embeddings.numpy()[domains], rtol=1e-6)
  assert "id" not in m.item_features
  # A never-seen item, given only its tags, scores as a stored item with the same tags.
  new = np.zeros([1, schema.MAX_TAGS], np.int64)
  new[0, 0] = tiny_store().tags[7, 0]
  vec = m.item_encoder.encode_features({"tags": new}).numpy()
  np.testing.assert_allclose(vec[0], tags_only[1], rtol=1e-6)
  query = m(feats()).numpy()
  np.testing.assert_allclose(query @ vec[0], m.score(m.encode_user(feats()),
                                                     tf.constant([[7]] * 4)).numpy()[:, 0],
                             rtol=1e-5)


def test_losses_are_the_queue_softmax_and_the_trees_srip_penalty():
  m = couple(srip_weight=0.5)
  losses = m.compute_losses(feats(), training=False)
  assert set(losses) == {"softmax", "orthogonality"}
  np.testing.assert_allclose(losses["orthogonality"].numpy(),
                             np.full(4, float(m.tree.srip_loss())), rtol=1e-6)
  with tf.GradientTape() as tape:
    penalty = m.compute_losses(feats(), training=True)["orthogonality"]
  grads = dict(zip([v.name for v in m.trainable_variables],
                   tape.gradient(penalty, m.trainable_variables)))
  touched = {n for n, g in grads.items() if g is not None and float(tf.norm(g)) > 0}
  assert touched and all("memory_tree" in n for n in touched)


def test_ablations_drop_content_and_group():
  full = couple()
  assert full.frequency is not None and full.tree is not None
  plain = couple(content=False, group=False)
  assert plain.frequency is None and plain.tree is None
  f = feats()
  mask = f["seq_mask"]
  x = plain.item_encoder(f["seq_item_ids"]) * tf.cast(mask, tf.float32)[..., None]
  e_h = plain.history_wa(plain.history_block(x, query_mask=mask), mask)
  np.testing.assert_allclose(plain(f).numpy(),
                             plain.user_wa(e_h[:, None, :]).numpy(), rtol=1e-5, atol=1e-6)
  assert float(plain.compute_losses(f)["orthogonality"][0]) == 0.0


def test_the_gumbel_temperature_follows_the_training_step():
  m = couple()
  assert float(m.temperature_now()) == 1.0  # outside a training step: the floor
  with step_random.training_step(0, tf.constant(250_000)):
    assert float(m.temperature_now()) == pytest.approx(float(gumbel_temperature(250_000)))
    a = m(feats(), training=True).numpy()
  with step_random.training_step(0, tf.constant(250_000)):
    b = m(feats(), training=True).numpy()
  np.testing.assert_array_equal(a, b)  # the step's seed: the same Gumbel noise


def test_config_round_trip_and_registry_defaults():
  m = couple(content=False)
  config = m.get_config()
  assert (config["temperature"], config["negatives"], config["queue_size"]) == (0.03, "queue", 8)
  again = type(m).from_config(config).build_and_fill(tiny_store())
  assert again.get_config() == config
  again.set_weights(m.get_weights())
  np.testing.assert_allclose(again(feats()).numpy(), m(feats()).numpy(), rtol=1e-6)
  with pytest.raises(ValueError, match="top_k must be in"):
    couple(top_k=7)
  with pytest.raises(ValueError, match="must include 'tags'"):
    couple(item_features=("id",))


def test_couple_trains_through_train_py_on_matching_records(syn_dir, tmp_path):
  from tfrec import train as train_lib
  from conftest import make_config
  cfg = make_config(syn_dir, str(tmp_path / "couple"), model="couple",
                    model_kwargs=dict(num_heads=2, ff_dim=8, branching=[2, 4], top_k=2,
                                      queue_size=64),
                    steps_per_epoch=3, batch_size=16)
  result = train_lib.train(cfg)
  assert result.steps == 3
  for name in ("softmax_loss", "orthogonality_loss"):
    assert np.all(np.isfinite(result.history[name])), name


def test_the_fifo_queue_on_two_replicas_equals_one_device():
  from conftest import run_two_replica_script
  result = run_two_replica_script("couple_two_replicas.py")
  assert result["replicas"] == 2
  rows = [s["rows_per_replica"] for s in result["steps"]]
  assert rows == [[2, 2], [2, 2], [2, 1]]
  for step in result["steps"]:
    assert step["weights_moved"] > 1e-3
    assert step["weights_vs_single"] < 1e-5  # the queue's rows and ids included
    assert abs(step["loss_multi"] - step["loss_single"]) < 1e-5
