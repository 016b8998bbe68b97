"""THACIL (tfrec/models/thacil.py, tfrec/layers/hierarchical_attention.py): the paper's equations
on tiny inputs, the directional mask, block splitting, masking and cold items."""

import numpy as np
import pytest
import tensorflow as tf

from tfrec.data.item_store import ItemStore
from tfrec.layers.hierarchical_attention import (TANH_SCALE, AdditiveAttentionPool,
                                                 ForwardBlockAttention,
                                                 TemporalHierarchicalAttention, forward_mask,
                                                 split_blocks)
from tfrec.models import registry
from tfrec.models.thacil import THACIL


def test_forward_mask_is_eq7():
  assert forward_mask(3).numpy().tolist() == [[False, False, False], [True, False, False],
                                              [True, True, False]]


def test_a_later_block_cannot_change_an_earlier_blocks_global_vector():
  layer = ForwardBlockAttention(num_heads=2)
  rng = np.random.default_rng(0)
  blocks = rng.normal(size=(2, 5, 8)).astype(np.float32)
  mask = np.ones((2, 5), bool)
  g = layer(blocks, mask).numpy()
  changed = blocks.copy()
  changed[:, 3] += 10.0
  g2 = layer(changed, mask).numpy()
  # Block i sees j < i only: blocks 0-2 are untouched; block 3 (its own query) and block 4
  # (block 3 is before it) move.
  np.testing.assert_allclose(g2[:, :3], g[:, :3], atol=1e-6)
  assert np.abs(g2[:, 3:] - g[:, 3:]).max() > 1e-3
  np.testing.assert_array_equal(g[:, 0], 0.0)  # the first block sees nothing before it.
  # A padded block is never attended to.
  pad = mask.copy()
  pad[:, 1] = False
  g3 = layer(blocks, pad).numpy()
  g4 = layer(np.where(pad[..., None], blocks, 99.0).astype(np.float32), pad).numpy()
  np.testing.assert_allclose(g3[:, 2:], g4[:, 2:], atol=1e-5)


def test_eq6_additive_score_against_numpy():
  layer = ForwardBlockAttention(num_heads=2)
  rng = np.random.default_rng(1)
  l = rng.normal(size=(1, 3, 4)).astype(np.float32)
  layer(l, np.ones((1, 3), bool))
  got = layer.scores(tf.constant(l)).numpy()  # [b, h, i, j, d / h]
  wq, wk, wp, bp = (w.numpy() for w in (layer.w_q, layer.w_k, layer.w_p, layer.b_p))
  q, k = l[0] @ wq, l[0] @ wk
  for p in range(2):
    qs, ks = q[:, 2 * p:2 * p + 2], k[:, 2 * p:2 * p + 2]
    for i in range(3):
      for j in range(3):
        act = TANH_SCALE * np.tanh((qs[i] + ks[j] + bp[p]) / TANH_SCALE)
        np.testing.assert_allclose(got[0, p, i, j], act @ wp[p], rtol=1e-5, atol=1e-6)


def test_split_blocks_pads_short_histories():
  x = tf.reshape(tf.range(2 * 7 * 1, dtype=tf.float32), [2, 7, 1])
  mask = tf.constant([[True] * 7, [True] * 2 + [False] * 5])
  blocks, item_mask, block_mask = split_blocks(x, mask, 3)
  assert blocks.shape == (2, 3, 3, 1)
  assert item_mask.numpy()[0].tolist() == [[True] * 3, [True] * 3, [True, False, False]]
  assert block_mask.numpy().tolist() == [[True, True, True], [True, False, False]]
  assert blocks.numpy()[0, 2, 0, 0] == 6.0 and blocks.numpy()[0, 2, 1, 0] == 0.0


def test_attention_weights_sum_to_one_over_real_items_only():
  pool = AdditiveAttentionPool()
  rng = np.random.default_rng(2)
  v = rng.normal(size=(1, 1, 4)).astype(np.float32)
  x = np.repeat(v, 5, axis=1)                        # every real item is v.
  x[0, 3:] = 1e3                                      # padding with huge values.
  query = rng.normal(size=(1, 5, 3)).astype(np.float32)
  mask = np.array([[True, True, True, False, False]])
  out = pool(x, query, mask).numpy()
  np.testing.assert_allclose(out, v[:, 0], rtol=1e-5)  # weights: sum 1, padding 0.
  assert np.all(pool(x, query, np.zeros_like(mask)).numpy() == 0.0)  # no real item.
  # One query for all items (eq. 9) broadcasts over them.
  assert pool(x, query[:, 0], mask).shape == (1, 4)


def _store(n=20, visual_dim=6, num_categories=4):
  rng = np.random.default_rng(3)
  store = ItemStore(domain=np.r_[0, np.ones(n, np.int64)],
                    category=np.r_[0, rng.integers(1, num_categories + 1, n)],
                    tags=np.zeros((n + 1, 8), np.int64), title=np.zeros((n + 1, 32), np.int64),
                    visual=np.r_[np.zeros((1, visual_dim)), rng.normal(size=(n, visual_dim))
                                 ].astype(np.float32),
                    cold=np.r_[0, np.zeros(n - 3, np.int64), np.ones(3, np.int64)])
  store.category[20] = store.category[7]
  store.visual[20] = store.visual[7]      # cold item 20: the features of warm item 7.
  return store


def _model(**kw):
  args = dict(num_items=20, dim=16, num_categories=4, visual_dim=6, max_seq_len=12,
              block_size=4, num_heads=2, dropout=0.0)
  args.update(kw)
  return registry.build("thacil", **args)


def _features(batch=2, n=12):
  rng = np.random.default_rng(4)
  ids = rng.integers(1, 18, (batch, n))
  mask = np.arange(n)[None] < np.array([[n], [5]])[:batch]
  return {"target_item_ids": tf.constant(np.where(mask, ids, 0)),
          "target_timestamps": tf.zeros((batch, n), tf.int64),
          "target_mask": tf.constant(mask), "timestamp": tf.zeros([batch], tf.int64),
          "item_id": tf.constant([7, 20][:batch], tf.int64)}


def test_a_cold_item_is_scored_from_its_features_without_an_id_embedding():
  model = _model().build_and_fill(_store())
  assert model.item_encoder.id_embeddings is None
  assert not any("id_embeddings" in w.name for w in model.weights)
  user = model.encode_user(_features())
  s = model.score(user, tf.constant([[7, 20, 3]] * 2)).numpy()
  np.testing.assert_allclose(s[:, 0], s[:, 1], rtol=1e-6)  # same features, same score.
  assert np.abs(s[:, 0] - s[:, 2]).max() > 1e-6


def test_without_visual_features_a_cold_item_is_scored_from_its_title_and_category():
  from tfrec.data import schema
  store = _store()
  store.title = np.zeros((21, schema.MAX_TITLE_LEN), np.int64)
  store.title[1:, :3] = np.random.default_rng(5).integers(1, 10, (20, 3))
  store.title[20] = store.title[7]          # cold item 20: item 7's title and category.
  model = _model(item_features=("title", "category"), visual_dim=0, num_tokens=9
                 ).build_and_fill(store)
  assert model.item_encoder.id_embeddings is None and model.item_encoder.item_visual is None
  s = model.score(model.encode_user(_features()), tf.constant([[7, 20, 3]] * 2)).numpy()
  np.testing.assert_allclose(s[:, 0], s[:, 1], rtol=1e-6)
  assert np.abs(s[:, 0] - s[:, 2]).max() > 1e-6
  store.title[20, 0] = store.title[7, 0] % 9 + 1  # another title word: another score
  model.item_encoder.set_item_features(store)
  s2 = model.score(model.encode_user(_features()), tf.constant([[7, 20]] * 2)).numpy()
  assert np.abs(s2[:, 0] - s2[:, 1]).max() > 1e-6


def test_thacil_model_contract_config_and_l2():
  model = _model().build_and_fill(_store())
  feats = _features()
  logits = model(feats).numpy()
  user = model.encode_user(feats)
  np.testing.assert_allclose(model.score(user, feats["item_id"][:, None]).numpy()[:, 0], logits,
                             rtol=1e-5)
  assert user["profile"].shape == (2, 3, 16) and user["mask"].numpy().tolist() == [
      [True] * 3, [True, True, False]]
  config = model.get_config()
  clone = THACIL.from_config(config)
  assert clone.get_config() == config and config["block_size"] == 4
  assert len(model.losses) > 0  # the public code's L2 on kernels and the category table.
  assert not _model(l2=0.0).build_and_fill(_store()).losses
  with pytest.raises(ValueError, match="x = \\[f; c\\]"):
    _model(item_features=("id", "category"))


def test_temporal_hierarchical_attention_ignores_padding_values():
  layer = TemporalHierarchicalAttention(visual_dim=4, block_size=3, num_heads=2)
  rng = np.random.default_rng(5)
  items = rng.normal(size=(1, 7, 8)).astype(np.float32)
  mask = np.arange(7)[None] < 5
  a, bm = layer(items, mask)
  b, _ = layer(np.where(mask[..., None], items, -7.0).astype(np.float32), mask)
  np.testing.assert_allclose(a.numpy()[bm.numpy()], b.numpy()[bm.numpy()], atol=1e-5)
