"""COUPLE's encoders (§3.2.1-3.2.2): items from tags (eq. 1, `ItemEncoder`'s "tags"), a cold
item encoded from its tags without an id embedding; weighted aggregation (eq. 3-4) by hand,
masked and permutation-equivariant; the frequency encoder (eq. 5) by hand, where a tag seen twice
weighs twice and padding never weighs."""

import numpy as np
import pytest

import tfrec  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

from conftest import NUM_ITEMS, tiny_store  # noqa: E402
from tfrec.data import schema  # noqa: E402
from tfrec.layers.couple_encoders import FrequencyEncoder, WeightedAggregation  # noqa: E402
from tfrec.layers.item_encoder import ItemEncoder  # noqa: E402


def softmax(x):
  z = np.exp(x - x.max(-1, keepdims=True))
  return z / z.sum(-1, keepdims=True)


def test_items_are_the_mean_of_their_tags_and_a_new_item_is_encoded_from_its_tags():
  keras.utils.set_random_seed(0)
  store = tiny_store()
  store.tags[3, 1:3] = [2, 5]  # item 3: tags [4, 2, 5]
  enc = ItemEncoder(NUM_ITEMS, 4, ("tags",), num_tags=6)
  enc(tf.constant([1]))
  enc.set_item_features(store)
  tags = enc.tag_embeddings.numpy()
  ids = np.array([3, 7, 0])
  want = np.stack([tags[[4, 2, 5]].mean(0), tags[store.tags[7, 0]], np.zeros(4)])
  np.testing.assert_allclose(enc(tf.constant(ids)).numpy(), want, rtol=1e-6)
  # A never-seen item from its tags alone encodes as a stored one with the same tags.
  new = np.zeros([1, schema.MAX_TAGS], np.int64)
  new[0, :3] = [5, 4, 2]
  np.testing.assert_allclose(enc.encode_features({"tags": new}).numpy()[0], want[0], rtol=1e-6)
  assert [w.name for w in enc.trainable_weights] == [enc.tag_embeddings.name]  # no id table
  store.tags[1, 0] = 9
  with pytest.raises(ValueError, match="tag 9 > num_tags 6"):
    enc.set_item_features(store)
  with pytest.raises(ValueError, match="'tags' feature needs num_tags"):
    ItemEncoder(NUM_ITEMS, 4, ("tags",))


def test_weighted_aggregation_is_eq4():
  keras.utils.set_random_seed(1)
  wa = WeightedAggregation(3)
  x = np.random.default_rng(0).normal(size=(2, 4, 3)).astype(np.float32)
  got = wa(tf.constant(x)).numpy()
  m = wa.m.numpy()
  for b in range(2):
    d = x[b] @ m @ x[b].mean(0)
    np.testing.assert_allclose(got[b], softmax(d) @ x[b], rtol=1e-5)
  # Permuting the m inputs leaves WA unchanged; a masked vector neither weighs nor moves e_m.
  perm = x[:, [2, 0, 3, 1]]
  np.testing.assert_allclose(wa(tf.constant(perm)).numpy(), got, rtol=1e-5)
  mask = np.array([[True, True, False, True]] * 2)
  masked = wa(tf.constant(x), tf.constant(mask)).numpy()
  np.testing.assert_allclose(masked, wa(tf.constant(x[:, [0, 1, 3]])).numpy(), rtol=1e-5)


def test_frequency_encoder_is_eq5_and_a_recurring_tag_weighs_per_occurrence():
  keras.utils.set_random_seed(2)
  fe = FrequencyEncoder(3)
  rng = np.random.default_rng(1)
  tags = rng.normal(size=(1, 4, 3)).astype(np.float32)
  user = rng.normal(size=(1, 3)).astype(np.float32)
  got = fe(tf.constant(tags), tf.constant(user)).numpy()
  w, b = (v.numpy() for v in fe.hidden.weights)
  a = softmax(np.tanh(tags[0] @ w + b) @ user[0])
  np.testing.assert_allclose(got[0], a @ tags[0], rtol=1e-5)
  # Tag 0 twice: its share of the weight doubles relative to the others'.
  twice = np.concatenate([tags, tags[:, :1]], axis=1)
  a2 = softmax(np.tanh(twice[0] @ w + b) @ user[0])
  assert a2[0] + a2[4] == pytest.approx(2 * a[0] / (1 + a[0]), rel=1e-5)
  # Padding never weighs: a padded fifth tag changes nothing; an all-padding row gives zeros.
  padded = np.concatenate([tags, rng.normal(size=(1, 1, 3)).astype(np.float32)], axis=1)
  mask = np.array([[True] * 4 + [False]])
  np.testing.assert_allclose(fe(tf.constant(padded), tf.constant(user), tf.constant(mask))
                             .numpy(), got, rtol=1e-5)
  empty = fe(tf.constant(padded), tf.constant(user), tf.constant(np.zeros([1, 5], bool)))
  np.testing.assert_array_equal(empty.numpy(), 0.0)


def test_configs_round_trip():
  for layer in (WeightedAggregation(5), FrequencyEncoder(5)):
    config = layer.get_config()
    assert type(layer).from_config(config).get_config() == config
