"""Retrieval baselines on matching records: DSSM, GRU4Rec, SASRec (one file each in
tfrec/models/): the encode-once contract, masking, causality, and SASRec's objective by hand."""

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from tfrec.models import registry
from tfrec.models.sasrec import _VALIDATION_SEED

from conftest import NUM_ITEMS, tiny_store  # noqa: E402

NAMES = ("dssm", "gru4rec", "sasrec")


def build(name, **kwargs):
  # Seeded: an unseeded tiny tower can map an item to all-zero hidden ReLUs, whose bias-only
  # output (0 at init) has no direction to normalise (the DSSM test failed so once).
  keras.utils.set_random_seed(0)
  args = dict(num_items=NUM_ITEMS, dim=4, item_features=["id", "category"], num_categories=4,
              max_seq_len=4, **kwargs)
  if name == "dssm":
    args.setdefault("tower_units", [8])
  if name == "gru4rec":
    args.setdefault("hidden", 6)
  return registry.build(name, **args).build_and_fill(tiny_store())


def feats(seq, users=None):
  seq = np.asarray(seq, np.int64)
  n = len(seq)
  users = np.zeros((n, 4), np.int64) if users is None else np.asarray(users, np.int64)
  return {"seq_item_ids": tf.constant(seq), "seq_mask": tf.constant(seq > 0),
          "user_features": tf.constant(users), "positive_item_id": tf.constant([7] * n)}


@pytest.mark.parametrize("name", NAMES)
def test_scores_are_query_item_dot_products_and_padding_changes_nothing(name):
  m = build(name)
  f = feats([[1, 2, 0, 0], [6, 7, 8, 0]])
  cands = tf.constant([[3, 7], [9, 1]], tf.int64)
  scores = m.score(m.encode_user(f), cands).numpy()
  expect = np.einsum("bd,bnd->bn", m(f).numpy(), m.encode_items(cands).numpy())
  np.testing.assert_allclose(scores, expect, rtol=1e-5, atol=1e-6)
  # Different ids at padded positions (mask False) leave the query as it is.
  g = dict(f, seq_item_ids=tf.constant([[1, 2, 9, 9], [6, 7, 8, 5]], tf.int64))
  np.testing.assert_allclose(m(g).numpy(), m(f).numpy(), rtol=1e-5, atol=1e-6)
  config = m.get_config()
  assert type(m).from_config(config).get_config() == config


def test_dssm_vectors_are_unit_length():
  m = build("dssm")
  f = feats([[1, 2, 0, 0]], users=[[1, 3, 5, 2]])
  np.testing.assert_allclose(np.linalg.norm(m(f).numpy(), axis=1), 1.0, rtol=1e-5)
  np.testing.assert_allclose(np.linalg.norm(m.encode_items(tf.constant([3, 8])).numpy(), axis=1),
                             1.0, rtol=1e-5)


def test_gru4rec_query_is_the_gru_state_after_the_last_real_item():
  m = build("gru4rec")
  f = feats([[6, 7, 0, 0]])
  real = m.item_encoder(tf.constant([[6, 7]], tf.int64))
  expect = m.output_layer(m.gru(real)).numpy()  # the two real items alone, no padding
  np.testing.assert_allclose(m(f).numpy(), expect, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("norm_order", ["sasrec", "pre", "post"])
def test_sasrec_is_causal_and_its_query_is_the_newest_position(norm_order):
  m = build("sasrec", num_blocks=2, num_heads=1, norm_order=norm_order)
  assert (m.final_norm is None) == (norm_order == "post")  # pre-norm stacks end with a norm
  a, b = feats([[1, 2, 3, 0]]), feats([[1, 2, 9, 0]])
  ha, _, _ = m.sequence_outputs(a)
  hb, _, _ = m.sequence_outputs(b)
  np.testing.assert_allclose(ha[:, :2].numpy(), hb[:, :2].numpy(), rtol=1e-5, atol=1e-6)
  assert not np.allclose(ha[:, 2].numpy(), hb[:, 2].numpy())
  np.testing.assert_allclose(m(a).numpy(), ha[:, 2].numpy(), rtol=1e-6)


def test_sasrec_bce_objective_by_hand():
  m = build("sasrec")  # no dropout: training=True differs only in the positions counted
  f = feats([[1, 2, 3, 0], [6, 0, 0, 0]])
  loss = m.compute_losses(f, training=True)["next_item"].numpy()
  held_out = m.compute_losses(f, training=False)["next_item"].numpy()
  h, _, _ = m.sequence_outputs(f)
  h = h.numpy()
  neg = tf.random.stateless_uniform([2, 4], tf.constant(_VALIDATION_SEED, tf.int64), minval=1,
                                    maxval=NUM_ITEMS + 1, dtype=tf.int64).numpy()
  items = m.encode_items(tf.range(NUM_ITEMS + 1, dtype=tf.int64)).numpy()
  sp = lambda x: np.log1p(np.exp(x))  # noqa: E731
  nexts = {0: [2, 3, 7], 1: [7]}  # each position's next item; the last one's is the positive
  for row, targets in nexts.items():
    terms = [sp(-h[row, t] @ items[nx]) + sp(h[row, t] @ items[neg[row, t]])
             for t, nx in enumerate(targets)]
    assert loss[row] == pytest.approx(np.mean(terms), rel=1e-5)
    # Validation scores the held-out position only: the record's positive after the newest.
    assert held_out[row] == pytest.approx(terms[-1], rel=1e-5)
  # No top-1 accuracy is measured by this objective, so none is logged (not a 0 nothing read).
  assert "batch_top1" not in m._logs() and "loss" in m._logs()
  assert "batch_top1" in build("sasrec", objective="softmax")._logs()


def test_sasrec_training_negatives_are_redrawn_off_the_users_items():
  m = build("sasrec")
  ids = tf.constant([[1, 2, 3, 4], [5, 6, 7, 8]], tf.int64)
  positive = tf.constant([[9], [10]], tf.int64)
  seeds = [tf.constant([3, k], tf.int64) for k in range(4)]
  neg = m._negatives(ids, positive, seeds).numpy()
  # By hand: draw 0, then each entry still in its row's items is replaced from the next draw.
  draws = [tf.random.stateless_uniform([2, 4], s, minval=1, maxval=NUM_ITEMS + 1,
                                       dtype=tf.int64).numpy() for s in seeds]
  known = np.concatenate([ids.numpy(), positive.numpy()], axis=1)
  want = draws[0]
  for d in draws[1:]:
    hit = np.array([[x in known[r] for x in want[r]] for r in range(2)])
    want = np.where(hit, d, want)
  np.testing.assert_array_equal(neg, want)
  # Half the catalogue known: the hit rate falls from about 1/2 to about 1/16 with 3 redraws.
  half = NUM_ITEMS // 2  # items 1..half - 1 in the sequence, `half` the positive
  wide = tf.constant(np.tile(np.arange(1, half), (400, 1)), tf.int64)
  pos = tf.fill([400, 1], tf.constant(half, tf.int64))
  share = lambda n: np.isin(n, np.arange(1, half + 1)).mean()  # noqa: E731
  once = share(m._negatives(wide, pos, seeds[:1]).numpy())
  redrawn = share(m._negatives(wide, pos, seeds).numpy())
  assert once > 0.4 and redrawn < 0.15, (once, redrawn)


def test_comirec_scores_by_the_best_interest_and_trains_the_closest_one():
  m = build("comirec_sa", num_interests=3)
  f = feats([[1, 2, 3, 0], [6, 7, 0, 0]])
  interests = m(f).numpy()
  assert interests.shape == (2, 3, 4)
  g = dict(f, seq_item_ids=tf.constant([[1, 2, 3, 9], [6, 7, 5, 5]], tf.int64))
  np.testing.assert_allclose(m(g).numpy(), interests, rtol=1e-5, atol=1e-6)  # padding inert
  cands = tf.constant([[3, 7], [9, 1]], tf.int64)
  items = m.encode_items(cands).numpy()
  expect = np.einsum("bkd,bnd->bkn", interests, items).max(axis=1)
  np.testing.assert_allclose(m.score(m.encode_user(f), cands).numpy(), expect, rtol=1e-5)
  # Training uses, per row, the interest closest to the target (eq. 9).
  pos = m.encode_items(tf.constant([7, 7])).numpy()
  chosen = interests[np.arange(2), np.argmax(np.einsum("bkd,bd->bk", interests, pos), axis=1)]
  from tfrec.tasks.retrieval import Retrieval
  m_loss = m.compute_losses(f, training=False)["softmax"].numpy()
  task = Retrieval(temperature=m.temperature)
  expect_loss = task(tf.constant(chosen), tf.constant(pos), tf.constant([7, 7]),
                     tf.gather(m.item_log_q, [7, 7])).numpy()
  np.testing.assert_allclose(m_loss, expect_loss, rtol=1e-5)


def test_comirec_with_the_full_softmax_trains_the_closest_interest_over_the_catalogue():
  m = build("comirec_sa", num_interests=3, negatives="full")  # M5 §5.1.3's baselines
  f = feats([[1, 2, 3, 0], [6, 7, 0, 0]])
  interests = m(f).numpy()
  items = m.encode_items(tf.range(1, NUM_ITEMS + 1)).numpy()  # [n, d], ids 1..n
  pos = np.array([7, 2])
  chosen = interests[np.arange(2), np.argmax(
      np.einsum("bkd,bd->bk", interests, items[pos - 1]), axis=1)]
  logits = chosen @ items.T / m.temperature
  expect = np.log(np.exp(logits).sum(1)) - logits[np.arange(2), pos - 1]
  got = m.compute_losses(dict(f, positive_item_id=tf.constant(pos)), training=False)
  np.testing.assert_allclose(got["softmax"].numpy(), expect, rtol=1e-4)
  with pytest.raises(ValueError, match="not 'queue'"):
    build("comirec_sa", negatives="queue", queue_size=8)


def test_a_multi_interest_retrieve_merges_the_interests_by_score():
  from tfrec.serving.retrieval import RetrievalServingModule
  m = build("comirec_sa", num_interests=2)
  index = np.arange(6, NUM_ITEMS + 1)
  module = RetrievalServingModule(m, index)
  out = module.retrieve({"timestamp": tf.constant(0, tf.int64), "k": tf.constant(3),
                         "seq_item_ids": tf.constant([1, 2], tf.int64),
                         "seq_domain_ids": tf.constant([0, 0], tf.int64),
                         "seq_timestamps": tf.constant([0, 1], tf.int64)})
  q = m(feats([[1, 2, 0, 0]])).numpy()[0]  # [2, d]
  scores = (m.encode_items(tf.constant(index)).numpy() @ q.T).max(axis=1)
  np.testing.assert_array_equal(out["item_ids"].numpy(), index[np.argsort(-scores)[:3]])
