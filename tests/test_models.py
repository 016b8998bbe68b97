"""tfrec.models and the ItemEncoder: hand computations (the item encoder against numpy, YouTubeNet
as MLP([mean history, candidate]), Cross-BST's merged sequence, DIN's unnormalised eq. 3), the
scoring contract (encode once, score N), masking, permutation and empty-history properties,
dropout, configs, checkpoints, mixed precision, the registry, and a tiny model that learns."""

import inspect
import json

import numpy as np
import pytest

from conftest import NUM_ITEMS, VISUAL_DIM, tiny_store
import tfrec  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

from tfrec.data.item_store import ItemStore  # noqa: E402
from tfrec.layers.item_encoder import ItemEncoder, check_item_ids  # noqa: E402
from tfrec.models import BST, DIN, RankingModel, YouTubeNet, registry  # noqa: E402

DIM = 8
SEQ = 5
NUM_CATEGORIES = 4
NUM_BLOCKS = 6
HOUR = 3600
NOW = 10 * HOUR  # request time of every test example
SOURCE_ITEMS = (1, 6)  # [low, high) ids of the conftest store's source items
TARGET_ITEMS = (6, 11)
NUM_USERS = 6  # user ids of make_features: row r is user r % NUM_USERS (MF, BPR, NCF)

# Per-model arguments that keep every model tiny (dim 8, seq 5, 10 items).
EXTRA = {"bst": dict(num_heads=2, ff_dim=DIM), "cross_bst": dict(num_heads=2, ff_dim=DIM),
         "din": dict(attention_units=(DIM, 4)), "semi": dict(num_heads=2, ff_dim=DIM),
         "semi_micro_video": dict(num_heads=2, ff_dim=DIM),
         "semi_product": dict(num_heads=2, ff_dim=DIM), "thacil": dict(num_heads=2, block_size=2),
         "mf": dict(num_users=NUM_USERS), "bpr": dict(num_users=NUM_USERS),
         "ncf": dict(num_users=NUM_USERS), "atrank": dict(num_heads=2, ff_dim=DIM),
         "aden": dict(num_heads=2, num_tokens=9), "cmf": dict(num_users=NUM_USERS),
         "pinet": dict(gru_units=6), "pinet_source": dict(gru_units=6),
         "conet": dict(num_users=NUM_USERS),
         "minet": dict(item_attention_units=DIM, interest_attention_units=4),
         "bert4sessrec": dict(num_heads=2, ff_dim=DIM)}
# Built-in ranking models (test modules may register their own).
NAMES = [n for n in registry.names("ranking")
         if registry.get(n).cls.__module__.startswith("tfrec.")
         and issubclass(registry.get(n).cls, RankingModel)]  # not pre-training on ranking records


# ----------------------------------------------------------------------------- helpers


def small_store() -> ItemStore:
  """The conftest store with visual vectors scaled to O(1), so that logits stay O(1)."""
  store = tiny_store()
  store.visual = store.visual / 1000.0
  return store


def build(name, seed=0, store=None, **kwargs):
  """Registered model `name`, tiny, with its weights built and the item store copied in."""
  keras.utils.set_random_seed(seed)
  args = dict(num_items=NUM_ITEMS, dim=DIM, num_categories=NUM_CATEGORIES,
              visual_dim=VISUAL_DIM, max_seq_len=SEQ, mlp_units=(DIM,), dropout=0.0,
              num_time_blocks=NUM_BLOCKS, **EXTRA.get(name, {}))
  args.update(kwargs)
  return registry.build(name, **args).build_and_fill(store or small_store())


def assert_loss_follows_the_step_seed(model, features, loss):
  """`loss` (a named loss of `model.compute_losses`) is the same for the same training step,
  different for another step, and the same on every pass outside training (a fixed seed)."""
  from tfrec.layers import step_random

  def at(step):
    with step_random.training_step(seed=1, step=tf.constant(step)):
      return model.compute_losses(features, training=True)[loss].numpy()

  np.testing.assert_array_equal(at(3), at(3))
  assert not np.allclose(at(3), at(4))
  np.testing.assert_array_equal(model.compute_losses(features)[loss].numpy(),
                                model.compute_losses(features)[loss].numpy())


def make_features(seed, batch=6):
  """Random histories in both domains, oldest first, right-padded with 0.

  Row 0 has full histories, row 1 an empty target history, row 2 no history at all; the other
  rows have random lengths. Returns numpy arrays (see `as_tf`)."""
  rng = np.random.default_rng(seed)
  f = {"timestamp": np.full([batch], NOW, np.int64),
       "item_id": rng.integers(*TARGET_ITEMS, size=batch).astype(np.int64)}
  for domain, (low, high) in (("source", SOURCE_ITEMS), ("target", TARGET_ITEMS)):
    lengths = rng.integers(1, SEQ + 1, size=batch)
    lengths[0] = SEQ
    lengths[2] = 0
    if domain == "target":
      lengths[1] = 0
    mask = np.arange(SEQ)[None, :] < lengths[:, None]
    ids = rng.integers(low, high, size=[batch, SEQ])
    times = np.sort(rng.integers(0, NOW, size=[batch, SEQ]), axis=1)
    f[f"{domain}_item_ids"] = np.where(mask, ids, 0).astype(np.int64)
    f[f"{domain}_timestamps"] = np.where(mask, times, 0).astype(np.int64)
    f[f"{domain}_mask"] = mask
  f["user_id"] = np.arange(batch, dtype=np.int64) % NUM_USERS  # no draw: other values kept
  return f


def as_tf(features):
  return {k: tf.constant(v) for k, v in features.items()}


def logits_of(model, features, training=False):
  return model(as_tf(features), training=training).numpy()


def rows(features, index):
  """The rows `index` (a list) of every feature."""
  return {k: v[index] for k, v in features.items()}


def permute_real(features, domain, rng, with_times):
  """Shuffles each row's real history items of `domain` (and their timestamps if asked)."""
  f = {k: v.copy() for k, v in features.items()}
  for r in range(len(f["timestamp"])):
    n = int(f[f"{domain}_mask"][r].sum())
    perm = rng.permutation(n)
    f[f"{domain}_item_ids"][r, :n] = f[f"{domain}_item_ids"][r, perm]
    if with_times:
      f[f"{domain}_timestamps"][r, :n] = f[f"{domain}_timestamps"][r, perm]
  return f


def np_dense(x, layer):
  kernel, bias = (w.numpy() for w in layer.weights)
  return x @ kernel + bias


def newest_product_task(model, seed=8):
  """What a by-hand check of a product-domain task on the newest product (SEMI A.2: MiNet,
  π-Net) needs: (features, the losses outside training, each row's drawn negative product
  (CMF's fixed validation seed), every item's encoding, the numpy forward pass of the model's
  `source_mlp` on <[1, width]> inputs -> its logit)."""
  from tfrec.models.cmf import _VALIDATION_SEED
  f = make_features(seed=seed)
  f["label"] = np.arange(len(f["item_id"])) % 2
  losses = model.compute_losses(as_tf(f), training=False)
  products = small_store().item_ids(domain=0)
  pick = tf.random.stateless_uniform([len(f["item_id"]), 1],
                                     tf.constant(_VALIDATION_SEED, tf.int64), minval=0,
                                     maxval=len(products), dtype=tf.int64).numpy()[:, 0]
  items = model.item_encoder(tf.range(model.num_items + 1)).numpy()
  dense = [layer for layer in model.source_mlp._stack if isinstance(layer, keras.layers.Dense)]

  def head(x):
    for layer in dense[:-1]:
      x = np.maximum(np_dense(x, layer), 0.0)
    return np_dense(x, dense[-1])[0, 0]

  return f, losses, products[pick], items, head


def init_params(cls):
  """Keyword parameters of cls.__init__ (not self, *args, **kwargs)."""
  return {name for name, p in inspect.signature(cls.__init__).parameters.items()
          if name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}


# ----------------------------------------------------------------------------- ItemEncoder

IDS = np.array([[1, 0, 10], [7, 7, 3]], np.int64)


def encoder(features, store):
  keras.utils.set_random_seed(1)
  layer = ItemEncoder(NUM_ITEMS, DIM, features, num_categories=NUM_CATEGORIES,
                      visual_dim=VISUAL_DIM)
  layer(tf.constant(IDS))
  layer.set_item_features(store)
  return layer


def test_item_encoder_each_feature_matches_numpy(store):
  enc = encoder(("id",), store)
  np.testing.assert_array_equal(enc(IDS).numpy(), enc.id_embeddings.numpy()[IDS])

  enc = encoder(("category",), store)
  # conftest: items 1-2 are category 1, 3-4 category 2, 5-7 category 3, 8-10 category 4.
  want_categories = np.array([[1, 0, 4], [3, 3, 2]])
  np.testing.assert_array_equal(store.category[IDS], want_categories)
  np.testing.assert_array_equal(enc(IDS).numpy(),
                                enc.category_embeddings.numpy()[want_categories])

  enc = encoder(("visual",), store)
  visual = np.arange(NUM_ITEMS + 1)[:, None] * np.array([1.0, 10.0, 100.0])  # conftest
  np.testing.assert_allclose(enc(IDS).numpy(), np_dense(visual[IDS], enc._projection),
                             rtol=1e-5)

  enc = encoder(("id", "category", "visual"), store)
  want = (enc.id_embeddings.numpy()[IDS] + enc.category_embeddings.numpy()[want_categories]
          + np_dense(visual[IDS], enc._projection))
  np.testing.assert_allclose(enc(IDS).numpy(), want, rtol=1e-5)
  assert enc(IDS).shape == (2, 3, DIM)


def test_item_encoder_store_columns_are_non_trainable_weights_carried_by_checkpoints(
    store, tmp_path):
  model = build("youtubenet", store=store)
  names = lambda ws: {w.name.split("/")[-1].split(":")[0] for w in ws}  # noqa: E731
  assert {"item_category", "item_visual"} <= names(model.non_trainable_weights)
  assert not {"item_category", "item_visual"} & names(model.trainable_weights)
  assert {"item_category", "item_visual"} <= names(model.weights)
  enc = model.item_encoder
  np.testing.assert_array_equal(enc.item_category.numpy(), store.category)
  np.testing.assert_array_equal(enc.item_visual.numpy(), store.visual)

  prefix = str(tmp_path / "ckpt")
  model.save_weights(prefix)
  keras.utils.set_random_seed(5)
  fresh = registry.build("youtubenet", **model.get_config())
  fresh(fresh.dummy_features())  # built, but the store is not copied in: zeros
  assert not fresh.item_encoder.item_visual.numpy().any()
  fresh.load_weights(prefix).assert_consumed()
  np.testing.assert_array_equal(fresh.item_encoder.item_category.numpy(), store.category)
  np.testing.assert_array_equal(fresh.item_encoder.item_visual.numpy(), store.visual)


def test_item_encoder_errors(store):
  with pytest.raises(ValueError, match="visual_dim"):
    ItemEncoder(NUM_ITEMS, DIM, ("id", "visual"), visual_dim=0)
  with pytest.raises(ValueError, match="num_categories"):
    ItemEncoder(NUM_ITEMS, DIM, ("category",))
  with pytest.raises(ValueError, match="features"):
    ItemEncoder(NUM_ITEMS, DIM, ("id", "colour"))
  with pytest.raises(ValueError, match="features"):
    ItemEncoder(NUM_ITEMS, DIM, ())
  unbuilt = ItemEncoder(NUM_ITEMS, DIM, ("id",))
  with pytest.raises(RuntimeError, match="build"):
    unbuilt.set_item_features(store)
  small = ItemEncoder(NUM_ITEMS - 1, DIM, ("id",))
  small(tf.constant([1]))
  with pytest.raises(ValueError, match="10 items"):
    small.set_item_features(store)
  few_categories = ItemEncoder(NUM_ITEMS, DIM, ("category",), num_categories=3)
  few_categories(tf.constant([1]))
  with pytest.raises(ValueError, match="category 4"):
    few_categories.set_item_features(store)
  wide = ItemEncoder(NUM_ITEMS, DIM, ("visual",), visual_dim=VISUAL_DIM + 1)
  wide(tf.constant([1]))
  with pytest.raises(ValueError, match="visual_dim"):
    wide.set_item_features(store)


def test_item_encoder_config_round_trip():
  kwargs = dict(num_items=7, dim=10,
                features=["visual", "category", "title", "pre_extracted", "tags"],
                num_categories=3, visual_dim=2, num_tokens=5, embeddings_initializer="he_normal",
                embeddings_regularizer="l2", combine="concat", pre_extracted_dim=2, num_tags=4)
  params = inspect.signature(ItemEncoder.__init__).parameters
  assert set(kwargs) == init_params(ItemEncoder)
  for name, value in kwargs.items():
    assert value != params[name].default, name
  layer = ItemEncoder(**kwargs, name="enc")
  config = layer.get_config()
  assert set(config) - set(keras.layers.Layer().get_config()) == init_params(ItemEncoder)
  for name in ("num_items", "dim", "features", "num_categories", "visual_dim", "num_tokens",
               "pre_extracted_dim", "num_tags"):
    assert config[name] == kwargs[name], name
  json.dumps(config)
  restored = ItemEncoder.from_config(config)
  assert restored.get_config() == config
  serialized = keras.utils.serialize_keras_object(layer)
  assert serialized["registered_name"] == "tfrec>ItemEncoder"
  again = keras.utils.deserialize_keras_object(json.loads(json.dumps(serialized)))
  assert type(again) is ItemEncoder and again.get_config() == config
  # The restored layer builds the same weights.
  layer(tf.constant([1]))
  restored(tf.constant([1]))
  assert [w.shape for w in restored.weights] == [w.shape for w in layer.weights]


def test_check_item_ids():
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"candidates.*\[1, 10\][^\n]*\n0, 11"):
    check_item_ids(tf.constant([[1, 0, 11]], tf.int64), NUM_ITEMS, "candidates",
                   allow_padding=False)
  with pytest.raises(tf.errors.InvalidArgumentError, match=r"history.*\[0, 10\][^\n]*\n-1, 12"):
    check_item_ids(tf.constant([0, -1, 5, 12]), NUM_ITEMS, "history", allow_padding=True)
  ids = tf.constant([[0, 3], [10, 0]], tf.int64)
  out = check_item_ids(ids, NUM_ITEMS, "history", allow_padding=True)
  assert out.dtype == tf.int64
  np.testing.assert_array_equal(out.numpy(), ids.numpy())
  # Inside a tf.function too (serving): the check is a control dependency of the result.
  checked = tf.function(lambda x: check_item_ids(x, NUM_ITEMS, "candidates", False) + 0)
  np.testing.assert_array_equal(checked(tf.constant([1, 10])).numpy(), [1, 10])
  with pytest.raises(tf.errors.InvalidArgumentError, match="candidates"):
    checked(tf.constant([1, 11]))


# ----------------------------------------------------------------------------- every model


@pytest.fixture(scope="module")
def models():
  """One tiny model per registered name (tests must not change their weights)."""
  return {name: build(name) for name in NAMES}


@pytest.mark.parametrize("name", NAMES)
def test_encode_once_equals_one_row_per_candidate(name, models):
  model = models[name]
  features = make_features(seed=1)
  candidates = np.array([6, 7, 8, 9, 10, 1, 3], np.int64)
  n = len(candidates)
  for r in (0, 1, 2, 4):  # full, empty target history, no history, random
    user = model.encode_user(as_tf(rows(features, [r])))
    scored = model.score(user, tf.constant(candidates[None, :]))
    assert scored.dtype == tf.float32 and scored.shape == (1, n)
    repeated = rows(features, [r] * n)
    repeated["item_id"] = candidates
    np.testing.assert_allclose(scored.numpy()[0], logits_of(model, repeated), rtol=1e-5,
                               atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_padded_positions_cannot_change_logits(name, models):
  model = models[name]
  features = make_features(seed=2)
  want = logits_of(model, features)
  rng = np.random.default_rng(3)
  noisy = {k: v.copy() for k, v in features.items()}
  for domain in ("source", "target"):
    pad = ~features[f"{domain}_mask"]
    noisy[f"{domain}_item_ids"][pad] = rng.integers(1, NUM_ITEMS + 1, size=pad.sum())
    noisy[f"{domain}_timestamps"][pad] = rng.integers(0, 2 * NOW, size=pad.sum())
  assert (noisy["target_item_ids"] != features["target_item_ids"]).any()
  np.testing.assert_allclose(logits_of(model, noisy), want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["youtubenet", "din", "bst"])
def test_history_without_time_is_a_set(name):
  model = build(name, use_time_blocks=False)
  features = make_features(seed=4)
  want = logits_of(model, features)
  rng = np.random.default_rng(5)
  for domain in model.domains:
    permuted = permute_real(features, domain, rng, with_times=False)
    assert (permuted[f"{domain}_item_ids"] != features[f"{domain}_item_ids"]).any()
    np.testing.assert_allclose(logits_of(model, permuted), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["bst", "cross_bst"])
def test_bst_with_time_blocks_sees_when_each_item_happened(name, models):
  model = models[name]
  assert model.use_time_blocks  # the registered default
  features = make_features(seed=4)
  want = logits_of(model, features)
  rng = np.random.default_rng(6)
  # Moving items to other times changes the logits of rows with several distinct items...
  moved = permute_real(features, "target", rng, with_times=False)
  changed = ~np.isclose(logits_of(model, moved), want, rtol=1e-5, atol=1e-6)
  assert changed.any()
  assert not changed[[1, 2]].any()  # (no target history: nothing to move)
  # ...while reordering whole (item, time) events does not: no positions, only time blocks.
  for domain in model.domains:
    events = permute_real(features, domain, rng, with_times=True)
    np.testing.assert_allclose(logits_of(model, events), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_empty_histories_give_finite_logits_and_gradients(name, models):
  model = models[name]
  features = as_tf(make_features(seed=7))  # rows 1 and 2: empty target history / no history
  labels = tf.constant([1.0, 0.0, 1.0, 0.0, 1.0, 0.0])
  with tf.GradientTape() as tape:
    logits = model(features, training=False)
    # Every named loss (DIEN's auxiliary loss, CMF's and CoNet's source loss...), so that each
    # weight gets a gradient from the loss that trains it.
    losses = model.compute_losses({**features, "label": labels}, training=False)
    loss = tf.add_n([tf.reduce_mean(x) for x in losses.values()])
  assert logits.dtype == tf.float32 and logits.shape == (6,)
  assert np.isfinite(logits.numpy()).all()
  grads = tape.gradient(loss, model.trainable_variables)
  for v, g in zip(model.trainable_variables, grads):
    assert g is not None, v.name
    assert np.isfinite(tf.convert_to_tensor(g).numpy()).all(), v.name


@pytest.mark.parametrize("name", NAMES)
def test_dropout_only_acts_in_training_and_only_when_positive(name, models):
  features = as_tf(make_features(seed=8))
  plain = models[name]  # dropout 0
  np.testing.assert_array_equal(plain(features, training=True).numpy(),
                                plain(features, training=False).numpy())
  dropping = build(name, dropout=0.5)
  inference = dropping(features, training=False).numpy()
  np.testing.assert_array_equal(dropping(features, training=False).numpy(), inference)
  assert not np.allclose(dropping(features, training=True).numpy(), inference)


NON_DEFAULT = {
    "youtubenet": dict(item_features=("id", "visual"), domains=("source", "target"),
                       mlp_units=(6, 4), dropout=0.2, use_time_blocks=True, num_time_blocks=4),
    "din": dict(item_features=("category",), domains=("source", "target"), mlp_units=(6, 4),
                dropout=0.2, use_time_blocks=True, num_time_blocks=4, attention_units=(5,)),
    "bst": dict(item_features=("id", "category"), mlp_units=(6, 4), dropout=0.2,
                use_time_blocks=False, num_heads=4, ff_dim=4),
    "cross_bst": dict(item_features=("visual",), domains=("target", "source"),
                      mlp_units=(6, 4), dropout=0.2, num_time_blocks=4, num_heads=1, ff_dim=3),
    "semi": dict(item_features=("visual",), mlp_units=(6, 4), dropout=0.2, num_time_blocks=4,
                 num_heads=4, ff_dim=3, use_inter_domain=False),
    "semi_micro_video": dict(item_features=("id",), mlp_units=(5,), num_heads=1, ff_dim=5),
    "semi_product": dict(item_features=("category",), domains=("source", "target"),
                         num_heads=2, ff_dim=6),
    "thacil": dict(domains=("source", "target"), mlp_units=(6, 4), dropout=0.3, num_heads=4,
                   block_size=3, l2=1e-3),
    "mf": dict(num_users=7, l2=1e-3, item_features=("category",), item_combine="sum",
               dropout=0.2),
    "bpr": dict(num_users=7, l2=1e-3, item_bias=False, item_features=("id", "category"),
                dropout=0.2),
    "ncf": dict(num_users=7, l2=1e-3, item_features=("visual",), mlp_units=(6, 4),
                dropout=0.2),
    "lstm": dict(lstm_units=5, l2=1e-3, domains=("source", "target"), mlp_units=(6, 4),
                 dropout=0.2, use_time_blocks=True, num_time_blocks=4),
    "lstm_attention": dict(lstm_units=6, l2=1e-3, item_features=("id", "visual"),
                           item_combine="sum", mlp_units=(5,), dropout=0.2),
    "atrank": dict(num_heads=4, ff_dim=3, l2=1e-3, use_time_blocks=True, num_time_blocks=4,
                   mlp_units=(6, 4), dropout=0.2),
    "pinet": dict(gru_units=5, item_features=("id", "visual"), mlp_units=(6, 4),
                  dropout=0.2, use_time_blocks=True, num_time_blocks=4),
    "pinet_source": dict(gru_units=5, item_features=("id", "visual"), mlp_units=(6, 4),
                         dropout=0.2, use_time_blocks=True, num_time_blocks=4),
    "cmf": dict(num_users=7, l2=1e-3, item_features=("category",), item_combine="sum",
                dropout=0.2, domains=("target", "source")),
    "aden": dict(num_heads=4, num_tokens=9, item_features=("title",), mlp_units=(6, 4),
                 dropout=0.2, domains=("target",), num_time_blocks=4),
    "conet": dict(num_users=7, l2=1e-3, item_features=("category",), item_combine="sum",
                  dropout=0.2, domains=("target", "source"), mlp_units=(6, 4), cross_layers=1,
                  user_input="history"),
    "dien": dict(item_features=("id", "visual"), domains=("source", "target"), mlp_units=(6, 4),
                 dropout=0.2, use_time_blocks=True, num_time_blocks=4),
    "bert4sessrec": dict(item_features=("id", "visual"), domains=("source", "target"),
                         mlp_units=(6, 4), dropout=0.2, use_time_blocks=True, num_time_blocks=4,
                         num_blocks=1, num_heads=4, ff_dim=3),
    "minet": dict(item_attention_units=5, interest_attention_units=3, transfer_dim=2,
                  item_features=("id", "visual"), domains=("source", "target"),
                  mlp_units=(6, 4), dropout=0.2, use_time_blocks=True, num_time_blocks=4),
}


@pytest.mark.parametrize("name", NAMES)
def test_config_round_trip_rebuilds_the_same_model(name):
  model = build(name, **NON_DEFAULT[name])
  cls = type(model)
  config = model.get_config()
  # Every model argument is in the config ("name" is tf.Module's, not the model's).
  assert set(config) == set(registry.accepted_args(cls)) - {"name"}
  for key, value in NON_DEFAULT[name].items():
    want = list(value) if isinstance(value, tuple) else value
    assert config[key] == want, key
  config = json.loads(json.dumps(config))
  rebuilt = cls.from_config(config).build_and_fill(small_store())
  assert rebuilt.get_config() == config
  rebuilt.set_weights(model.get_weights())
  features = make_features(seed=9)
  np.testing.assert_allclose(logits_of(rebuilt, features), logits_of(model, features),
                             rtol=1e-6, atol=1e-6)
  serialized = keras.utils.serialize_keras_object(model)
  assert serialized["registered_name"] == f"tfrec>{cls.__name__}"
  again = keras.utils.deserialize_keras_object(json.loads(json.dumps(serialized)))
  assert type(again) is cls and again.get_config() == config


@pytest.mark.parametrize("name", NAMES)
def test_checkpoint_round_trip(name, models, tmp_path):
  model = models[name]
  prefix = str(tmp_path / "ckpt")
  model.save_weights(prefix)
  restored = build(name, seed=11)
  features = make_features(seed=10)
  before = logits_of(restored, features)
  assert not np.allclose(before, logits_of(model, features))  # another seed: other weights
  restored.load_weights(prefix).assert_consumed()
  np.testing.assert_array_equal(logits_of(restored, features), logits_of(model, features))


@pytest.mark.parametrize("name", NAMES)
def test_mixed_precision_gives_finite_float32_logits(name):
  try:
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    model = build(name)
    assert model.item_encoder.compute_dtype == "bfloat16"
    features = as_tf(make_features(seed=12))
    logits = model(features, training=True)
    scored = model.score(model.encode_user(features), tf.constant([[6, 7, 8]] * 6))
  finally:
    keras.mixed_precision.set_global_policy("float32")
  for out in (logits, scored):
    assert out.dtype == tf.float32
    assert np.isfinite(out.numpy()).all()
  # bfloat16 keeps ~3 significant digits: close to the float32 model with the same weights.
  reference = build(name)
  reference.set_weights(model.get_weights())
  np.testing.assert_allclose(logits.numpy(), reference(features).numpy(), atol=0.1, rtol=0.1)


# ----------------------------------------------------------------------------- YouTubeNet


def test_youtubenet_is_an_mlp_of_mean_history_and_candidate():
  model = build("youtubenet", item_features=("id",), mlp_units=(4,))
  rng = np.random.default_rng(13)
  mlp = [rng.normal(size=w.shape).astype(np.float32) for w in model.output_mlp.weights]
  model.output_mlp.set_weights(mlp)
  w1, b1, w2, b2 = mlp
  table = model.item_encoder.id_embeddings.numpy()
  features = make_features(seed=14)
  want = []
  for r in range(len(features["item_id"])):
    history = features["target_item_ids"][r][features["target_mask"][r]]
    user = table[history].mean(axis=0) if len(history) else np.zeros(DIM)  # SEMI §4.2.1 (4)
    x = np.concatenate([user, table[features["item_id"][r]]])
    want.append((np.maximum(x @ w1 + b1, 0.0) @ w2 + b2)[0])
  np.testing.assert_allclose(logits_of(model, features), want, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- Cross-BST


def test_cross_bst_merged_sequence_by_hand():
  model = build("cross_bst")
  assert model.domains == ("source", "target") and model.use_time_blocks
  t = NOW
  features = {  # row 0: both domains, a source/target tie at t - 1h; row 1: target only
      "timestamp": np.array([t, t]), "item_id": np.array([6, 6]),
      "source_item_ids": np.array([[1, 2, 0], [0, 0, 0]]),
      "source_timestamps": np.array([[t - 3 * HOUR, t - HOUR, 0], [0, 0, 0]]),
      "source_mask": np.array([[True, True, False], [False, False, False]]),
      "target_item_ids": np.array([[6, 7, 8], [9, 10, 0]]),
      "target_timestamps": np.array([[t - 4 * HOUR, t - HOUR, t - 10],
                                     [t - 2 * HOUR - 1, t - HOUR, 0]]),
      "target_mask": np.array([[True, True, True], [True, True, False]]),
  }
  x, mask = model.merged_sequence(as_tf(features), model.domain_embeddings)
  # (item, time block counted back from the request, domain 0 source / 1 target), oldest
  # first; the tie at t - 1h goes source first; padding last.
  merged = [[(6, 4, 1), (1, 3, 0), (2, 1, 0), (7, 1, 1), (8, 0, 1)],
            [(9, 2, 1), (10, 1, 1)]]
  encode = lambda i: model.item_encoder(tf.constant([i])).numpy()[0]  # noqa: E731
  blocks = model.time_blocks.embeddings.numpy()
  domains = model.domain_embeddings.numpy()
  assert x.shape == (2, 6, DIM) and mask.shape == (2, 6)
  for r, events in enumerate(merged):
    np.testing.assert_array_equal(mask.numpy()[r], np.arange(6) < len(events))
    for j, (item, block, domain) in enumerate(events):
      np.testing.assert_allclose(x.numpy()[r, j], encode(item) + blocks[block] + domains[domain],
                                 rtol=1e-5, atol=1e-6, err_msg=f"row {r} position {j}")
    np.testing.assert_array_equal(x.numpy()[r, len(events):], 0.0)
  # Plain BST reads the target history alone, in its own order, without domain embeddings.
  bst = build("bst")
  x, mask = bst.merged_sequence(as_tf(features))
  np.testing.assert_array_equal(mask.numpy(), features["target_mask"])
  blocks = bst.time_blocks.embeddings.numpy()
  for j, (item, block) in enumerate([(6, 4), (7, 1), (8, 0)]):
    np.testing.assert_allclose(x.numpy()[0, j], bst.item_encoder(tf.constant([item])).numpy()[0]
                               + blocks[block], rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- DIN


def test_din_weights_are_unnormalised_eq3():
  """u(v) = sum_j a(e_j, v) e_j (DIN eq. 3): the interest of a history is additive over its
  items, so repeating an item adds its term again; a softmax would average it away."""
  model = build("din")
  a, b = 6, 9
  histories = [[a, b], [a, b, b], [b], [b, b]]
  features = make_features(seed=15, batch=4)
  features["item_id"][:] = 7
  features["target_item_ids"][:] = 0
  features["target_mask"][:] = False
  for r, h in enumerate(histories):
    features["target_item_ids"][r, :len(h)] = h
    features["target_mask"][r, :len(h)] = True
  features["target_timestamps"][:] = NOW - HOUR
  f = as_tf(features)
  user = model.encode_user(f)
  cand = model.candidates(f["item_id"][:, None])
  interest = model.attention(cand, user["history"], user["mask"]).numpy()[:, 0]
  np.testing.assert_allclose(interest[1], interest[0] + interest[2], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(interest[3], 2 * interest[2], rtol=1e-5, atol=1e-6)
  assert not np.allclose(interest[3], interest[2], rtol=1e-3)
  # logit = MLP([u(v_t), v_t])
  want = model.output_mlp(tf.concat([interest, cand[:, 0]], axis=-1))[:, 0]
  np.testing.assert_allclose(model(f).numpy(), want.numpy(), rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- registry


def test_registry_names_and_errors(monkeypatch):
  assert {"youtubenet", "din", "bst", "cross_bst"} <= set(NAMES)
  with pytest.raises(KeyError) as err:
    registry.build("transformer_xl", num_items=NUM_ITEMS)
  for name in NAMES:
    assert name in str(err.value)
  with pytest.raises(TypeError, match="num_heads"):
    registry.build("youtubenet", num_items=NUM_ITEMS, num_heads=2)
  with pytest.raises(TypeError, match="attention_unit"):
    registry.build("din", num_items=NUM_ITEMS, attention_unit=(4,))  # misspelt
  assert registry.get("cross_bst").cls is BST
  assert tuple(registry.get("cross_bst").preset["domains"]) == ("source", "target")
  assert registry.get("bst").cls is BST and registry.get("din").cls is DIN
  assert registry.get("youtubenet").cls is YouTubeNet
  # class defaults < preset < arguments; None arguments are ignored.
  small = dict(num_items=NUM_ITEMS, dim=DIM, num_heads=2, item_features=("id",))
  model = registry.build("cross_bst", dropout=None, **small)
  assert model.domains == ("source", "target") and model.dropout == 0.1
  model = registry.build("cross_bst", domains=("target",), **small)
  assert model.domains == ("target",)
  assert set(registry.accepted_args(BST)) - {"name"} == (
      init_params(BST) | init_params(BST.__mro__[1]))
  for name in NAMES:
    assert name in registry.describe()
  # Registering a name twice is an error (on a copy of the registry, left as it was).
  monkeypatch.setattr(registry, "_ENTRIES", dict(registry._ENTRIES))
  with pytest.raises(ValueError, match="twice"):
    registry.register("din", DIN, "again")
  registry.register("din_softmax_test", DIN, "a second name for one class",
                    attention_units=(4,))
  with pytest.raises(ValueError, match="twice"):
    registry.register("din_softmax_test", DIN, "again")
  with pytest.raises(TypeError, match="num_heads"):
    registry.register("din_heads_test", DIN, "a preset DIN does not take", num_heads=2)


def test_bad_domains():
  with pytest.raises(ValueError, match="domains"):
    registry.build("youtubenet", num_items=NUM_ITEMS, domains=("target", "shop"))
  with pytest.raises(ValueError, match="domains"):
    registry.build("youtubenet", num_items=NUM_ITEMS, domains=())
  with pytest.raises(ValueError, match="domains"):
    registry.build("youtubenet", num_items=NUM_ITEMS, domains=("target", "target"))


# ----------------------------------------------------------------------------- learning


def test_tiny_model_learns_a_planted_task():
  """Label = the candidate is in the target history: Adam lowers the BCE well below chance."""
  rng = np.random.default_rng(16)
  batch = 256
  features = make_features(seed=17, batch=batch)
  history = features["target_item_ids"]
  positive = rng.random(batch) < 0.5
  candidates = []
  for r in range(batch):
    inside = set(history[r][features["target_mask"][r]].tolist())
    pool = sorted(inside) if positive[r] and inside else sorted(
        set(range(1, NUM_ITEMS + 1)) - inside)
    candidates.append(rng.choice(pool))
  features["item_id"] = np.array(candidates, np.int64)
  labels = tf.constant((history == features["item_id"][:, None]).any(axis=1), tf.float32)
  assert 0.3 < labels.numpy().mean() < 0.7
  model = build("youtubenet", item_features=("id",), mlp_units=(16,))
  f = as_tf(features)
  optimizer = keras.optimizers.Adam(0.03)

  @tf.function
  def step():
    with tf.GradientTape() as tape:
      loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(
          labels, model(f, training=True)))
    optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables),
                                  model.trainable_variables))
    return loss

  first = float(step())
  for _ in range(150):
    last = float(step())
  assert last < 0.35 and last < 0.5 * first, (first, last)
