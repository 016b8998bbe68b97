"""ADAPT's building blocks (issue 14): the Gradient Reversal Layer, eq. 2-4's self-attentive title
pooling, and DUAL's eq. 5 constraints and eq. 6 adversarial loss against numpy."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from tfrec.layers.attentive_pooling import SelfAttentivePooling
from tfrec.layers.gradient_reversal import GradientReversal
from tfrec.tasks import dual


def test_gradient_reversal_is_the_identity_forward_and_flips_and_scales_the_gradient():
  x = tf.constant([[1.0, -2.0, 3.0]])
  w = tf.constant([[0.5, 2.0, -1.0]])
  for scale in (1.0, 0.3, 0.0):
    layer = GradientReversal(scale)
    with tf.GradientTape(persistent=True) as tape:
      tape.watch(x)
      y = layer(x)
      plain = tf.reduce_sum(w * x)
      reversed_ = tf.reduce_sum(w * y)
    np.testing.assert_array_equal(y.numpy(), x.numpy())
    np.testing.assert_allclose(tape.gradient(reversed_, x).numpy(),
                               -scale * tape.gradient(plain, x).numpy())
  assert GradientReversal.from_config(GradientReversal(0.3).get_config()).scale == 0.3
  with pytest.raises(ValueError, match="scale"):
    GradientReversal(-1.0)


def test_a_reversed_classifier_and_extractor_move_in_opposite_directions():
  # One SGD step on BCE through the GRL: the classifier lowers the loss, the extractor's
  # update raises it (eq. 7-8 in one optimisation).
  keras.utils.set_random_seed(0)
  extractor = keras.layers.Dense(4, name="extractor")
  classifier = keras.layers.Dense(1, name="classifier")
  grl = GradientReversal(1.0)
  x = tf.constant(np.random.default_rng(0).normal(size=(16, 3)), tf.float32)
  z = tf.constant([0.0, 1.0] * 8)

  def loss_of():
    return tf.reduce_mean(dual.domain_adversarial(classifier(grl(extractor(x)))[:, 0], z))

  with tf.GradientTape() as tape:
    loss = loss_of()
  ext, cls = extractor.trainable_variables, classifier.trainable_variables
  grads = tape.gradient(loss, ext + cls)
  before = float(loss)
  for v, g in zip(cls, grads[len(ext):]):
    v.assign_sub(0.1 * g)
  after_classifier = float(loss_of())
  for v, g in zip(ext, grads[:len(ext)]):
    v.assign_sub(0.1 * g)
  after_both = float(loss_of())
  assert after_classifier < before and after_both > after_classifier


def test_attentive_pooling_weights_sum_to_one_over_real_words_only():
  keras.utils.set_random_seed(1)
  pool = SelfAttentivePooling()
  x = tf.constant(np.random.default_rng(2).normal(size=(2, 5, 4)), tf.float32)
  mask = tf.constant([[True, True, True, False, False], [False] * 5])
  out = pool(x, mask).numpy()
  w = pool.weights_of(x, mask).numpy()
  np.testing.assert_allclose(w[0, :3].sum(axis=0), 1.0, rtol=1e-6)  # per dimension
  assert (w[0, 3:] == 0).all() and (w[1] == 0).all() and (out[1] == 0).all()
  # Eq. 2-4 by hand: W_a tanh(W_1 t + b_1), softmax over the real words per dimension.
  w1, b1 = pool.hidden.kernel.numpy(), pool.hidden.bias.numpy()
  wa = pool.score.kernel.numpy()
  scores = np.tanh(x.numpy()[0, :3] @ w1 + b1) @ wa
  weights = np.exp(scores) / np.exp(scores).sum(axis=0)
  np.testing.assert_allclose(out[0], (weights * x.numpy()[0, :3]).sum(axis=0), rtol=1e-5)
  # Padded words' values change nothing.
  x2 = tf.where(mask[..., None], x, 99.0)
  np.testing.assert_allclose(pool(x2, mask).numpy(), out, rtol=1e-6)


def test_dual_constraints_are_eq5_against_numpy():
  rng = np.random.default_rng(3)
  sp, pp, sn, pn = (rng.normal(size=(6, 5)).astype(np.float32) for _ in range(4))
  got = dual.dual_constraints(*(tf.constant(a) for a in (sp, pp, sn, pn))).numpy()
  d = lambda a, b: np.linalg.norm(a - b, axis=-1)  # noqa: E731
  h = lambda a, b: np.maximum(0.0, 1.0 + a - b)  # noqa: E731
  want = (h(d(sp, pp), d(sp, pn)) + h(d(sp, pp), d(sn, pp))
          + h(d(sn, pn), d(sp, pn)) + h(d(sn, pn), d(sn, pp)))
  np.testing.assert_allclose(got, want, rtol=1e-5)
  # Pairs far apart from each other and tight inside: every hinge is 0.
  far = dual.dual_constraints(tf.zeros([1, 2]), tf.zeros([1, 2]), tf.fill([1, 2], 5.0),
                              tf.fill([1, 2], 5.0)).numpy()
  assert far[0] == 0.0
  # One identical pair of vectors: the gradient is finite.
  a = tf.Variable(tf.zeros([1, 2]))
  with tf.GradientTape() as tape:
    loss = dual.dual_constraints(a, tf.zeros([1, 2]), tf.ones([1, 2]), tf.ones([1, 2]))
  assert np.isfinite(tape.gradient(loss, a).numpy()).all()


def test_domain_adversarial_is_binary_cross_entropy():
  logits = np.array([0.3, -1.2, 2.0], np.float32)
  z = np.array([0, 1, 1])
  p = 1 / (1 + np.exp(-logits))
  want = -(z * np.log(p) + (1 - z) * np.log(1 - p))
  np.testing.assert_allclose(dual.domain_adversarial(tf.constant(logits), tf.constant(z)).numpy(),
                             want, rtol=1e-5)


def test_content_extractor_pools_storytelling_titles_by_attention_and_products_by_average():
  from tfrec.data import schema
  from tfrec.data.item_store import ItemStore
  from tfrec.layers.adapt_extractor import ContentExtractor
  n = 5
  title = np.zeros([n, schema.MAX_TITLE_LEN], np.int64)
  title[1, :3] = [1, 2, 3]          # product (source domain)
  title[2, :3] = [1, 2, 3]          # storytelling (target domain), the same words
  title[3, :2] = [2, 9]             # storytelling with an unseen word (9 > num_tokens 4)
  store = ItemStore(domain=np.r_[0, 0, 1, 1, 1], category=np.zeros(n, np.int64),
                    tags=np.zeros([n, schema.MAX_TAGS]), title=title,
                    visual=np.arange(n * 2, dtype=np.float32).reshape(n, 2), cold=np.zeros(n))
  keras.utils.set_random_seed(4)
  ext = ContentExtractor(4, 3, visual_dim=2, num_tokens=4)
  ext(tf.constant([1]))
  ext.set_item_features(store)
  out = ext(tf.constant([[1, 2], [3, 4]]))
  words = ext.word_embeddings.numpy()
  np.testing.assert_allclose(out["title"].numpy()[0, 0], words[[1, 2, 3]].mean(0), rtol=1e-5)
  story = ext.attentive(tf.constant(words[None, [1, 2, 3]]), tf.ones([1, 3], tf.bool))
  np.testing.assert_allclose(out["title"].numpy()[0, 1], story.numpy()[0], rtol=1e-5)
  unseen = ext.attentive(tf.constant(words[None, [2, 5]]), tf.ones([1, 2], tf.bool))
  np.testing.assert_allclose(out["title"].numpy()[1, 0], unseen.numpy()[0], rtol=1e-5)
  assert (out["title"].numpy()[1, 1] == 0).all()       # no title word: zeros
  # One projection E_v for both domains, no bias.
  np.testing.assert_allclose(out["visual"].numpy()[0],
                             store.visual[[1, 2]] @ ext.projection.kernel.numpy(), rtol=1e-5)
  with pytest.raises(ValueError, match="visual_dim"):
    ContentExtractor(4, 3, parts=("visual",))


def test_content_extractor_on_repeated_ids_equals_one_item_at_a_time_values_and_gradients():
  """Each distinct item is extracted once and gathered back: outputs and gradients must be those
  of extracting every position on its own (also under XLA)."""
  from tfrec.data import schema
  from tfrec.data.item_store import ItemStore
  from tfrec.layers.adapt_extractor import ContentExtractor
  n = 6
  rng = np.random.default_rng(0)
  title = rng.integers(0, 6, [n, schema.MAX_TITLE_LEN])      # token 5 > num_tokens 4: unseen
  store = ItemStore(domain=np.r_[0, 0, 1, 1, 0, 1], category=np.zeros(n, np.int64),
                    tags=np.zeros([n, schema.MAX_TAGS]), title=title,
                    visual=rng.normal(size=[n, 2]).astype(np.float32), cold=np.zeros(n))
  keras.utils.set_random_seed(1)
  ext = ContentExtractor(5, 3, visual_dim=2, num_tokens=4)
  ext(tf.constant([1]))
  ext.set_item_features(store)
  ids = tf.constant([[2, 1, 2, 0], [3, 2, 1, 5]])
  weight = {p: tf.constant(rng.normal(size=[2, 4, 3]), tf.float32) for p in ("visual", "title")}

  def loss_of(out):
    return tf.add_n([tf.reduce_sum(out[p] * weight[p]) for p in out])

  with tf.GradientTape() as tape:
    out = ext(ids)
    loss = loss_of(out)
  grads = [tf.convert_to_tensor(g) for g in tape.gradient(loss, ext.trainable_weights)]
  with tf.GradientTape() as tape:
    one = {p: tf.stack([tf.stack([ext(ids[i, j:j + 1])[p][0] for j in range(4)])
                        for i in range(2)]) for p in out}
    loss_one = loss_of(one)
  grads_one = [tf.convert_to_tensor(g) for g in tape.gradient(loss_one, ext.trainable_weights)]
  for p in out:
    np.testing.assert_allclose(out[p].numpy(), one[p].numpy(), rtol=1e-5, atol=1e-6)
  for g, g1 in zip(grads, grads_one):
    np.testing.assert_allclose(g.numpy(), g1.numpy(), rtol=1e-4, atol=1e-6)
  compiled = tf.function(lambda x: ext(x), jit_compile=True)(ids)
  for p in out:
    np.testing.assert_allclose(compiled[p].numpy(), out[p].numpy(), rtol=1e-5, atol=1e-6)
