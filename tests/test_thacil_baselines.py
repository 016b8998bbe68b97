"""THACIL's Table 2 baselines (tfrec/models/{mf,bpr,ncf,lstm,atrank}.py) and the trained user
embedding (tfrec/layers/user_embedding.py): scores by hand, BPR-Opt by hand, what each sequence
model reads, attention weights, permutation (in)variance, user-id checks, num_users from the
dataset."""

import numpy as np
import pytest

from conftest import NUM_ITEMS, VISUAL_DIM, tiny_info, tiny_store
import tfrec  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

from tfrec import config as config_lib  # noqa: E402
from tfrec import runs  # noqa: E402
from tfrec.layers.user_embedding import UserEmbedding, check_user_ids  # noqa: E402
from tfrec.models import registry  # noqa: E402
from tfrec.models.bpr import bpr_in_batch_loss  # noqa: E402

DIM = 8
SEQ = 5
NUM_USERS = 4


def small_store():
  store = tiny_store()
  store.visual = store.visual / 1000.0  # O(1) features, O(1) logits
  return store


def build(name, seed=0, **kwargs):
  keras.utils.set_random_seed(seed)
  args = dict(num_items=NUM_ITEMS, dim=DIM, num_categories=4, visual_dim=VISUAL_DIM,
              max_seq_len=SEQ, mlp_units=(DIM,), dropout=0.0)
  if name in ("mf", "bpr", "ncf"):
    args["num_users"] = NUM_USERS
  if name == "atrank":
    args["num_heads"] = 2
  args.update(kwargs)
  return registry.build(name, **args).build_and_fill(small_store())


def features(histories, items, users=None):
  """Rows of right-padded target histories (lists of ids, oldest first) and candidates."""
  b = len(histories)
  ids = np.zeros([b, SEQ], np.int64)
  for r, h in enumerate(histories):
    ids[r, :len(h)] = h
  mask = ids > 0
  f = {"timestamp": np.full([b], 10_000, np.int64), "item_id": np.asarray(items, np.int64),
       "user_id": np.asarray(users if users is not None else [0] * b, np.int64),
       "target_item_ids": ids, "target_timestamps": np.where(mask, 100, 0).astype(np.int64),
       "target_mask": mask}
  return {k: tf.constant(v) for k, v in f.items()}


def logits(model, f):
  return model(f, training=False).numpy()


def encode(model, ids):
  return model.item_encoder(tf.constant(ids)).numpy()


# ----------------------------------------------------------------------------- MF, BPR, NCF


def test_items_are_visual_and_category_concatenated_by_default():
  for name in ("mf", "bpr", "ncf", "lstm", "lstm_attention", "atrank"):
    model = build(name)
    assert model.item_features == ("visual", "category") and model.item_combine == "concat"
    assert model.item_encoder.id_embeddings is None, name  # cold items from their features


def test_mf_score_is_the_dot_product_of_the_embeddings():
  model = build("mf")
  users, items = [0, 3, 1], [6, 10, 2]
  f = features([[6], [], [7, 8]], items, users)
  p = model.user_embedding.embeddings.numpy()[users]
  x = encode(model, items)
  np.testing.assert_allclose(logits(model, f), (p * x).sum(-1), rtol=1e-5, atol=1e-6)
  # Encode once, score several candidates: the same dot products.
  user = model.encode_user(f)
  cands = np.array([[6, 7, 10]] * 3)
  want = np.einsum("bd,bnd->bn", p, encode(model, cands))
  np.testing.assert_allclose(model.score(user, tf.constant(cands)).numpy(), want, rtol=1e-5,
                             atol=1e-6)


def test_bpr_score_is_the_dot_product_plus_the_feature_bias():
  model = build("bpr")
  users, items = [2, 0], [9, 10]
  f = features([[], [6]], items, users)
  p = model.user_embedding.embeddings.numpy()[users]
  x = encode(model, items)
  w = model.bias_layer.kernel.numpy()[:, 0]
  np.testing.assert_allclose(logits(model, f), (p * x).sum(-1) + x @ w, rtol=1e-5, atol=1e-6)
  plain = build("bpr", item_bias=False)
  p = plain.user_embedding.embeddings.numpy()[users]
  np.testing.assert_allclose(logits(plain, f), (p * encode(plain, items)).sum(-1), rtol=1e-5,
                             atol=1e-6)


def test_bpr_loss_by_hand():
  rng = np.random.default_rng(0)
  u = rng.normal(size=[4, 3]).astype(np.float32)
  x = rng.normal(size=[4, 3]).astype(np.float32)
  ids = np.array([5, 6, 7, 6])
  labels = np.array([1, 0, 1, 0])
  got = bpr_in_batch_loss(tf.constant(u), tf.constant(x), tf.constant(ids),
                          tf.constant(labels)).numpy()
  softplus = lambda z: np.log1p(np.exp(z))  # noqa: E731  -ln sigma(t) = softplus(-t)
  s = u @ x.T
  # Row 0 (item 5, clicked) against the negative impressions 1 and 3 (item 6).
  want0 = np.mean([softplus(-(s[0, 0] - s[0, 1])), softplus(-(s[0, 0] - s[0, 3]))])
  want2 = np.mean([softplus(-(s[2, 2] - s[2, 1])), softplus(-(s[2, 2] - s[2, 3]))])
  np.testing.assert_allclose(got, [want0, 0.0, want2, 0.0], rtol=1e-5)
  # A negative impression of the row's own item is not a pair; no pair: 0.
  got = bpr_in_batch_loss(tf.constant(u), tf.constant(x), tf.constant([6, 6, 7, 6]),
                          tf.constant([1, 0, 0, 0])).numpy()
  np.testing.assert_allclose(got, [softplus(-(s[0, 0] - s[0, 2])), 0, 0, 0], rtol=1e-5)
  assert bpr_in_batch_loss(tf.constant(u), tf.constant(x), tf.constant(ids),
                           tf.constant([1, 1, 1, 1])).numpy().tolist() == [0.0] * 4


def test_bpr_trains_on_its_pairwise_loss_and_reports_auc():
  model = build("bpr", l2=1e-3)
  assert model.LOSSES == ("bpr",)
  f = dict(features([[6], [7], [8], [6]], [6, 7, 8, 9], [0, 1, 2, 3]))
  f["label"] = tf.constant([1, 0, 1, 0])
  model.task.auc.reset_state()
  losses = model.compute_losses(f, training=True)
  assert set(losses) == {"bpr"} and losses["bpr"].shape == (4,)
  assert losses["bpr"].numpy()[[1, 3]].tolist() == [0.0, 0.0]
  auc = model.task.auc  # updated on the rows' own logits: two positives at every threshold
  np.testing.assert_array_equal((auc.true_positives + auc.false_negatives).numpy(), 2.0)
  assert model.losses  # the L2 (BPR's lambda) on the user table and the item side
  model.compile(optimizer=keras.optimizers.Adam(0.05))
  first = float(model.compute_losses(f)["bpr"].numpy().sum())
  for _ in range(30):
    model.train_step(f)
  assert float(model.compute_losses(f)["bpr"].numpy().sum()) < first


def test_ncf_gmf_tower_is_the_elementwise_product_and_the_logit_fuses_both_towers():
  model = build("ncf", mlp_units=(6,))
  users, items = [1, 3], [6, 2]
  f = features([[6, 7], []], items, users)
  user = model.encode_user(f)
  towers = model.towers(user, tf.constant(items)[:, None])
  p_g = model.user_embedding.embeddings.numpy()[users]
  p_m = model.mlp_user_embedding.embeddings.numpy()[users]
  x = encode(model, items)
  np.testing.assert_allclose(towers["gmf"].numpy()[:, 0], p_g * x, rtol=1e-5, atol=1e-6)
  w1, b1 = (w.numpy() for w in model.mlp_tower.weights)
  mlp = np.maximum(np.concatenate([p_m, x], -1) @ w1 + b1, 0.0)  # ReLU, NCF eq. 10
  np.testing.assert_allclose(towers["mlp"].numpy()[:, 0], mlp, rtol=1e-5, atol=1e-6)
  h, b = (w.numpy() for w in model.fusion.weights)
  want = np.concatenate([p_g * x, mlp], -1) @ h[:, 0] + b[0]            # eq. 11-12
  np.testing.assert_allclose(logits(model, f), want, rtol=1e-5, atol=1e-6)
  assert model.mlp_user_embedding is not model.user_embedding  # NeuMF: own user embeddings


@pytest.mark.parametrize("name", ["mf", "bpr", "ncf"])
def test_user_ids_out_of_range_are_refused_by_name(name):
  model = build(name)
  for bad in (NUM_USERS, -1):
    f = features([[6], [7]], [6, 7], [0, bad])
    with pytest.raises(tf.errors.InvalidArgumentError,
                       match=rf"user_id: user ids must be in \[0, {NUM_USERS}\)"):
      model(f, training=False)
  # Also inside a tf.function (the training and evaluation path).
  call = tf.function(lambda f: model(f, training=False))
  assert call(features([[6]], [6], [NUM_USERS - 1])).shape == (1,)
  with pytest.raises(tf.errors.InvalidArgumentError, match="user_id"):
    call(features([[6]], [6], [NUM_USERS]))


def test_user_embedding_layer_and_check():
  with pytest.raises(ValueError, match="num_users"):
    UserEmbedding(0, 4)
  layer = UserEmbedding(3, 4, name="users")
  out = layer(tf.constant([[0, 2]]))
  assert out.shape == (1, 2, 4)
  np.testing.assert_array_equal(out.numpy()[0], layer.embeddings.numpy()[[0, 2]])
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"\[0, 3\)[^\n]*\n3"):
    check_user_ids(tf.constant([0, 3, 1]), 3)
  again = UserEmbedding.from_config(layer.get_config())
  assert again.get_config() == layer.get_config()


def run_config(name):
  return config_lib.RunConfig(
      data=config_lib.DataConfig(data_dir="unused", max_seq_len=SEQ),
      model=config_lib.ModelConfig(name, {"dim": DIM, "mlp_units": [DIM]}),
      train=config_lib.TrainConfig(run_dir="unused"))


def test_build_model_passes_the_datasets_num_users():
  info = tiny_info()
  model = runs.build_model(run_config("ncf"), info, small_store())
  assert model.num_users == info.num_users == 5
  assert model.user_embedding.embeddings.shape == (5, DIM)
  assert model.mlp_user_embedding.embeddings.shape == (5, DIM)
  lstm = runs.build_model(run_config("lstm"), info, small_store())
  assert "num_users" not in lstm.get_config()  # only models that take it


# ----------------------------------------------------------------------------- LSTM


@pytest.mark.parametrize("name", ["lstm", "lstm_attention"])
def test_lstm_reads_only_real_items_and_in_order(name):
  model = build(name)
  base = features([[6, 7, 8], [9, 6], [6, 7, 8]], [10, 10, 9])
  want = logits(model, base)
  # Padded positions hold other ids (the mask says padding): nothing changes.
  noisy = dict(base)
  ids = base["target_item_ids"].numpy()
  ids[:, 3:] = 9
  ids[1, 2] = 7
  noisy["target_item_ids"] = tf.constant(ids)
  np.testing.assert_allclose(logits(model, noisy), want, rtol=1e-6, atol=1e-6)
  # The order of the real items matters (a recurrence).
  swapped = features([[8, 7, 6], [6, 9], [6, 8, 7]], [10, 10, 9])
  assert not np.isclose(logits(model, swapped), want, rtol=1e-4, atol=1e-6).any()


def test_lstm_logit_is_the_head_of_the_last_real_state_and_the_item():
  model = build("lstm")
  f = features([[6, 7, 8], [9]], [10, 6])
  lstm = keras.layers.LSTM(DIM)
  lstm(tf.zeros([1, 1, DIM]))
  lstm.set_weights(model.lstm.get_weights())
  last = [lstm(tf.constant(encode(model, [h]))).numpy()[0] for h in ([6, 7, 8], [9])]
  head = model.output_mlp(tf.constant(np.concatenate([np.stack(last), encode(model, [10, 6])],
                                                     -1)))[:, 0]
  np.testing.assert_allclose(logits(model, f), head.numpy(), rtol=1e-5, atol=1e-6)
  empty = features([[]], [6])  # no history: h = 0
  np.testing.assert_array_equal(model.encode_user(empty)["last"].numpy(), 0.0)


def test_lstm_attention_weights_sum_to_one_over_real_items():
  model = build("lstm_attention")
  f = features([[6, 7, 8], [9, 6], []], [10, 7, 6])
  user = model.encode_user(f)
  cand = model.candidates(f["item_id"][:, None])
  got = model.attend(user, cand).numpy()[:, 0]                          # [b, h]
  pool = model.state_attention
  states, mask = user["states"].numpy(), user["mask"].numpy()
  x_w, x_b = (w.numpy() for w in pool.x_proj.weights)
  (q_w,) = (w.numpy() for w in pool.q_proj.weights)
  s_w, s_b = (w.numpy() for w in pool.score.weights)
  for r in range(3):
    real = states[r][mask[r]]
    if not len(real):
      np.testing.assert_array_equal(got[r], 0.0)  # no real item: zeros
      continue
    # THACIL eq. 9: alpha_j = W_s relu(W_x h_j + W_q x + b_1) + b_2; softmax over the real j.
    scores = np.maximum(real @ x_w + x_b + cand.numpy()[r, 0] @ q_w, 0.0) @ s_w + s_b
    alpha = np.exp(scores - scores.max(0)) / np.exp(scores - scores.max(0)).sum(0)
    np.testing.assert_allclose(alpha.sum(0), 1.0, rtol=1e-6)
    np.testing.assert_allclose(got[r], (alpha * real).sum(0), rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- ATRank


def test_atrank_is_invariant_to_permutations_of_the_real_items_without_time():
  model = build("atrank")
  assert not model.use_time_blocks
  want = logits(model, features([[6, 7, 8, 9], [9, 6], [7]], [10, 6, 8]))
  got = logits(model, features([[9, 7, 6, 8], [6, 9], [7]], [10, 6, 8]))
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
  # ... and reads the items: another history gives another logit.
  other = logits(model, features([[6, 6, 6, 6], [9, 9], [8]], [10, 6, 8]))
  assert not np.isclose(other, want, rtol=1e-4).any()


def test_atrank_logit_is_the_head_of_the_vanilla_attention_over_the_self_attention():
  model = build("atrank")
  f = features([[6, 7, 8], [9, 6]], [10, 7])
  history, mask = model.merged_sequence(f)
  encoded = model.self_attention(history, query_mask=mask)
  cand = model.candidates(f["item_id"][:, None])
  u = model.vanilla_attention(cand, encoded, mask)
  want = model.output_mlp(tf.concat([u, cand], -1))[:, 0, 0]
  np.testing.assert_allclose(logits(model, f), want.numpy(), rtol=1e-5, atol=1e-6)
