"""COUPLE's Table 4 baselines on the retrieval contract, items from tags: DeepCoNN (two parallel
tag CNNs, tfrec/models/deepconn.py, tfrec/layers/tag_cnn.py) and ICAN (contextual and internal
attention over per-domain fields, tfrec/models/ican.py, tfrec/layers/contextual_attention.py).
Each tower against numpy, padding inert, a cold item from its tags, config round trips, a few
steps that lower the loss, the serving index and items added from their tags, and the
registered presets beside COUPLE's."""

import dataclasses
import json
import os

import numpy as np
import pytest

import tfrec  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

from conftest import NUM_ITEMS, tiny_store  # noqa: E402
from tfrec.data import schema  # noqa: E402
from tfrec.layers.contextual_attention import ContextualAttention  # noqa: E402
from tfrec.layers.tag_cnn import TagCNN, TagCNNItemEncoder  # noqa: E402
from tfrec.models import registry  # noqa: E402

NAMES = ("deepconn", "ican")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Each item's tags as the store holds them (0 = padding, also between tags: item 9); the cold
# item 10 has item 4's tags.
TAGS = {1: [1, 2, 3], 2: [2, 4], 3: [3], 4: [5, 1, 6, 2], 5: [6, 5], 6: [1, 4, 2],
        7: [2, 3, 5, 6, 1], 8: [4], 9: [6, 0, 0, 3], 10: [5, 1, 6, 2]}


def tag_store():
  tags = np.zeros([NUM_ITEMS + 1, schema.MAX_TAGS], np.int64)
  for item, row in TAGS.items():
    tags[item, :len(row)] = row
  return dataclasses.replace(tiny_store(), tags=tags)


def build(name, store=None, **kwargs):
  keras.utils.set_random_seed(0)
  args = dict(num_items=NUM_ITEMS, dim=8, num_tags=6, max_seq_len=5, queue_size=8, dropout=0.0)
  args.update(dict(num_filters=5) if name == "deepconn" else
              dict(num_heads=2, attention_units=[6, 4], mlp_units=[6]))
  args.update(kwargs)
  return registry.build(name, **args).build_and_fill(store or tag_store())


def feats():
  seq = tf.constant([[1, 2, 6, 0, 0], [3, 4, 5, 7, 9], [9, 0, 0, 0, 0], [6, 7, 0, 0, 0]],
                    tf.int64)
  return {"seq_item_ids": seq, "seq_mask": seq > 0, "seq_domain_ids": tf.cast(seq >= 6, tf.int64),
          "positive_item_id": tf.constant([6, 7, 8, 9], tf.int64)}


def real_tags(item):
  return [t for t in TAGS[item] if t]


def dense_weights(layer):
  return [w.numpy() for w in layer.weights]


def tag_cnn_numpy(layer, x):
  """TagCNN by hand over the real tags' embeddings x <[m, e]> in their order."""
  kernel, bias = layer.kernel.numpy(), layer.bias.numpy()
  w, b = dense_weights(layer.output_dense)
  if len(x) == 0:
    return np.zeros(w.shape[1], np.float32)
  k = kernel.shape[0]
  padded = np.concatenate([x, np.zeros([k - 1, x.shape[1]], np.float32)])
  z = np.stack([np.maximum(0, bias + sum(padded[j + s] @ kernel[s] for s in range(k)))
                for j in range(len(x))])
  return z.max(axis=0) @ w + b


# --------------------------------------------------------------------------- the layers

def test_tag_cnn_by_hand_and_padding_is_inert_wherever_it_sits():
  keras.utils.set_random_seed(1)
  layer = TagCNN(4, num_filters=6, kernel_width=3)
  rng = np.random.default_rng(0)
  x = rng.normal(size=[3, 7, 5]).astype(np.float32)
  mask = np.array([[1, 1, 1, 1, 1, 0, 0], [1, 0, 1, 0, 0, 1, 0], [0] * 7], bool)
  out = layer(tf.constant(x), tf.constant(mask)).numpy()
  assert out.shape == (3, 4)
  for row in range(3):
    np.testing.assert_allclose(out[row], tag_cnn_numpy(layer, x[row][mask[row]]), rtol=1e-5,
                               atol=1e-6)
  assert np.all(out[2] == 0)  # no real tag: zeros, not the bias
  # Whatever the padded positions hold, and however long the padding, nothing changes.
  y = np.where(mask[..., None], x, 9.0).astype(np.float32)
  np.testing.assert_allclose(layer(tf.constant(y), tf.constant(mask)).numpy(), out, rtol=1e-6)
  longer = np.concatenate([x, rng.normal(size=[3, 4, 5]).astype(np.float32)], axis=1)
  long_mask = np.concatenate([mask, np.zeros([3, 4], bool)], axis=1)
  np.testing.assert_allclose(layer(tf.constant(longer), tf.constant(long_mask)).numpy(), out,
                             rtol=1e-6)
  # The order of the real tags matters (a convolution, not a bag).
  swapped = x.copy()
  swapped[0, [0, 3]] = swapped[0, [3, 0]]
  assert not np.allclose(layer(tf.constant(swapped), tf.constant(mask)).numpy()[0], out[0])
  # Any leading shape: [2, 3, n, e] gives [2, 3, dim].
  stacked = layer(tf.constant(np.stack([x, y])), tf.constant(np.stack([mask, mask]))).numpy()
  np.testing.assert_allclose(stacked, np.stack([out, out]), rtol=1e-6)


def test_contextual_attention_by_hand():
  keras.utils.set_random_seed(2)
  layer = ContextualAttention(units=[5, 3])
  rng = np.random.default_rng(1)
  g = rng.normal(size=[2, 4, 6]).astype(np.float32)
  c = rng.normal(size=[2, 6]).astype(np.float32)
  out, a = layer(tf.constant(g), tf.constant(c), return_weights=True)
  dense = [layer_ for layer_ in layer.score._stack if isinstance(layer_, keras.layers.Dense)]
  h = np.concatenate([np.broadcast_to(c[:, None], g.shape), g, g - c[:, None], g * c[:, None]],
                     axis=-1)
  for d in dense:  # tanh after every layer, the 1-wide score included (ICAN)
    w, b = dense_weights(d)
    h = np.tanh(h @ w + b)
  s = h[..., 0]
  want = np.exp(s) / np.exp(s).sum(axis=1, keepdims=True)
  np.testing.assert_allclose(a.numpy(), want, rtol=1e-5)
  np.testing.assert_allclose(out.numpy(), g * want[..., None], rtol=1e-5, atol=1e-6)
  # A masked field takes no weight.
  _, masked = layer(tf.constant(g), tf.constant(c), tf.constant([[True, True, False, True]] * 2),
                    return_weights=True)
  assert np.all(masked.numpy()[:, 2] == 0)
  np.testing.assert_allclose(masked.numpy().sum(axis=1), 1.0, rtol=1e-6)


def _own_keys(config):
  return set(config) - set(keras.layers.Layer().get_config())


def test_layer_configs_round_trip_with_non_default_arguments():
  cnn = TagCNN(5, num_filters=3, kernel_width=2, dropout=0.25, kernel_initializer="he_normal")
  config = cnn.get_config()
  assert _own_keys(config) == {"dim", "num_filters", "kernel_width", "dropout",
                               "kernel_initializer"}
  again = TagCNN.from_config(json.loads(json.dumps(config)))
  assert again.get_config() == config
  x, mask = tf.ones([2, 4, 3]), tf.constant([[1, 1, 0, 0], [1, 1, 1, 1]]) > 0
  cnn(x, mask)
  again(x, mask)
  again.set_weights(cnn.get_weights())
  np.testing.assert_allclose(again(x, mask).numpy(), cnn(x, mask).numpy(), rtol=1e-6)

  attention = ContextualAttention(units=[7, 2])
  config = attention.get_config()
  assert _own_keys(config) == {"units"} and config["units"] == [7, 2]
  assert ContextualAttention.from_config(config).get_config() == config

  enc = TagCNNItemEncoder(NUM_ITEMS, 6, num_tags=6, num_filters=4, kernel_width=2)
  config = enc.get_config()
  assert (config["num_filters"], config["kernel_width"], config["features"]) == (4, 2, ["tags"])
  again = TagCNNItemEncoder.from_config(json.loads(json.dumps(config)))
  assert again.get_config() == config
  ids = tf.constant([[1, 9], [10, 4]])
  for e in (enc, again):
    e(ids)
    e.set_item_features(tag_store())
  again.set_weights(enc.get_weights())
  np.testing.assert_allclose(again(ids).numpy(), enc(ids).numpy(), rtol=1e-6)
  with pytest.raises(ValueError, match="from their tags alone"):
    TagCNNItemEncoder(NUM_ITEMS, 6, features=("id", "tags"), num_tags=6)
  serialized = keras.utils.serialize_keras_object(enc)
  assert serialized["registered_name"] == "tfrec>TagCNNItemEncoder"


# --------------------------------------------------------------------------- the models

@pytest.mark.parametrize("name", NAMES)
def test_scores_are_dot_products_encoded_once_and_padding_changes_nothing(name):
  m = build(name)
  f = feats()
  query = m(f).numpy()
  assert query.shape == (4, 8)
  cands = tf.constant([[3, 7, 10], [10, 1, 2], [6, 6, 9], [8, 5, 4]], tf.int64)
  items = m.encode_items(cands).numpy()
  assert items.shape == (4, 3, 8)
  scores = m.score(m.encode_user(f), cands).numpy()
  np.testing.assert_allclose(scores, np.einsum("bd,bnd->bn", query, items), rtol=1e-5,
                             atol=1e-6)
  for j in range(3):  # one candidate at a time: the query never sees the candidates
    np.testing.assert_allclose(m.score(m.encode_user(f), cands[:, j:j + 1]).numpy()[:, 0],
                               scores[:, j], rtol=1e-5, atol=1e-6)
  # Other items (hence other tags) and domains at padded positions change nothing.
  mask = f["seq_mask"]
  g = dict(f, seq_item_ids=tf.where(mask, f["seq_item_ids"], 7),
           seq_domain_ids=tf.where(mask, f["seq_domain_ids"], 0))
  np.testing.assert_allclose(m(g).numpy(), query, rtol=1e-6, atol=1e-7)
  assert "id" not in m.item_features
  assert not [w for w in m.weights if "id_embeddings" in w.name]


def test_deepconn_user_tower_is_the_cnn_of_the_historys_tag_document():
  m = build("deepconn")
  table = m.item_encoder.tag_embeddings.numpy()
  query = m(feats()).numpy()
  for row, seq in enumerate(feats()["seq_item_ids"].numpy()):
    document = [t for item in seq if item for t in real_tags(item)]  # oldest item first
    np.testing.assert_allclose(query[row], tag_cnn_numpy(m.user_cnn, table[document]),
                               rtol=1e-5, atol=1e-6)
  # The item tower is a separate CNN over the item's own tags, on the same tag table.
  items = m.encode_items(tf.constant([1, 9, 4])).numpy()
  for vec, item in zip(items, (1, 9, 4)):
    np.testing.assert_allclose(vec, tag_cnn_numpy(m.item_encoder.cnn, table[real_tags(item)]),
                               rtol=1e-5, atol=1e-6)
  assert m.user_cnn.kernel is not m.item_encoder.cnn.kernel


def test_ican_fields_contextual_then_internal_attention_then_the_mlp():
  m = build("ican")
  f = feats()
  tags = m.item_encoder.tag_embeddings.numpy()
  field_tags = m.tag_field_embeddings.numpy()
  fields = m.fields(f).numpy()
  assert fields.shape == (4, 4, 8)  # (source items, source tags, target items, target tags)
  for row, seq in enumerate(f["seq_item_ids"].numpy()):
    for domain in (0, 1):
      items = [i for i in seq if i and (i >= 6) == domain]
      item_vecs = [tags[real_tags(i)].mean(axis=0) for i in items]
      tag_vecs = [field_tags[t] for i in items for t in real_tags(i)]
      want_items = np.mean(item_vecs, axis=0) if items else np.zeros(8)
      want_tags = np.mean(tag_vecs, axis=0) if items else np.zeros(8)
      np.testing.assert_allclose(fields[row, 2 * domain], want_items, rtol=1e-5, atol=1e-6)
      np.testing.assert_allclose(fields[row, 2 * domain + 1], want_tags, rtol=1e-5, atol=1e-6)
  context = np.tile(m.channel_embeddings.numpy()[schema.TARGET], (4, 1))
  weighted = m.contextual(tf.constant(fields), tf.constant(context))
  want = m.query_mlp(tf.reshape(m.internal(weighted), [4, -1])).numpy()
  np.testing.assert_allclose(m(f).numpy(), want, rtol=1e-5, atol=1e-6)
  # The item tower is the mean of the item's tag embeddings (COUPLE eq. 1's items).
  np.testing.assert_allclose(m.encode_items(tf.constant([9])).numpy()[0],
                             tags[[6, 3]].mean(axis=0), rtol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_a_cold_item_is_encoded_from_its_tags_alone(name):
  m = build(name)
  store = tag_store()
  assert store.cold[10] and not store.cold[4]
  cold, twin = m.encode_items(tf.constant([10, 4])).numpy()
  assert np.linalg.norm(cold) > 1e-3  # not degenerate
  np.testing.assert_allclose(cold, twin, rtol=1e-6)  # the same tags, another id: the same vector
  new = m.item_encoder.encode_features({"tags": store.tags[[10]]}).numpy()[0]
  np.testing.assert_allclose(new, cold, rtol=1e-6)  # no id at all
  other = m.encode_items(tf.constant([9])).numpy()[0]
  assert not np.allclose(other, cold)


@pytest.mark.parametrize("name", NAMES)
def test_a_few_training_steps_lower_the_loss(name):
  m = build(name, negatives="in_batch", temperature=0.1)
  m.compile(optimizer=keras.optimizers.Adam(0.03))
  batch = feats()
  before = float(np.mean(m.compute_losses(batch, training=False)["softmax"]))
  m.fit(tf.data.Dataset.from_tensors(batch).repeat(), steps_per_epoch=12, epochs=1, verbose=0)
  after = float(np.mean(m.compute_losses(batch, training=False)["softmax"]))
  assert np.isfinite(after) and after < 0.7 * before, (before, after)


@pytest.mark.parametrize("name", NAMES)
def test_config_round_trip_and_the_presets_follow_couples(name):
  m = build(name, temperature=0.05, dropout=0.1)
  cls = type(m)
  config = m.get_config()
  assert set(config) == set(registry.accepted_args(cls)) - {"name"}
  config = json.loads(json.dumps(config))
  again = cls.from_config(config).build_and_fill(tag_store())
  assert again.get_config() == config
  again.set_weights(m.get_weights())
  np.testing.assert_allclose(again(feats()).numpy(), m(feats()).numpy(), rtol=1e-6)
  serialized = keras.utils.serialize_keras_object(m)
  assert serialized["registered_name"] == f"tfrec>{cls.__name__}"
  # Registered in COUPLE's setting (d = 64, items from tags) with the in-batch softmax of the
  # other baselines; the FIFO queue stays COUPLE's own (Table 5).
  preset = registry.get(name).preset
  assert preset["item_features"] == registry.get("couple").preset["item_features"] == ("tags",)
  assert (preset["negatives"], preset["temperature"]) == ("in_batch", 0.1)
  assert registry.record_kind(name) == "matching"
  assert registry.build(name, num_items=NUM_ITEMS, num_tags=6).dim == 64


def test_bad_arguments_are_refused_by_name():
  with pytest.raises(ValueError, match="item_features must be \\['tags'\\]"):
    build("deepconn", item_features=("id", "tags"))
  with pytest.raises(ValueError, match="must include 'tags'"):
    build("ican", item_features=("id",))
  with pytest.raises(ValueError, match="not divisible by num_heads"):
    build("ican", num_heads=3)
  with pytest.raises(ValueError, match="needs num_tags"):
    registry.build("deepconn", num_items=NUM_ITEMS)


# --------------------------------------------------------------------------- serving

def _request(seq, k=3):
  seq = np.asarray(seq, np.int64)
  out = {"timestamp": tf.constant(0, tf.int64),
         "seq_item_ids": tf.constant(seq), "seq_domain_ids": tf.cast(tf.constant(seq) >= 6,
                                                                      tf.int64),
         "seq_timestamps": tf.range(len(seq), dtype=tf.int64)}
  if k is not None:  # encode_query takes no k
    out["k"] = tf.constant(k, tf.int32)
  return out


@pytest.mark.parametrize("name", NAMES)
def test_the_serving_index_and_items_added_from_their_tags(name, tmp_path):
  from tfrec.serving import check_exportable
  from tfrec.serving.add_items import check_new_items, encode_features, NewItemError
  from tfrec.serving.retrieval import RetrievalServingModule
  from conftest import tiny_info
  m = build(name)
  check_exportable(type(m), name)
  index = np.arange(6, NUM_ITEMS + 1)  # the target items, the cold one too
  module = RetrievalServingModule(m, index, max_len=5)
  ids = np.arange(NUM_ITEMS + 1)
  np.testing.assert_allclose(module.item_table.numpy()[1:], m.encode_items(ids[1:]).numpy(),
                             rtol=1e-5, atol=1e-6)  # the table holds the item tower's vectors
  seq = [1, 2, 6]
  out = module.retrieve(_request(seq))
  padded = tf.constant([seq + [0, 0]], tf.int64)
  query = m({"seq_item_ids": padded, "seq_mask": padded > 0,
             "seq_domain_ids": tf.cast(padded >= 6, tf.int64)}).numpy()[0]
  scores = m.encode_items(index).numpy() @ query
  scores[index == 6] = -np.inf  # the request's own item
  np.testing.assert_array_equal(out["item_ids"].numpy(), index[np.argsort(-scores)[:3]])
  # add_items' path: new items encoded from their tags (11 has item 4's, 12 new ones).
  new_tags = np.zeros([2, schema.MAX_TAGS], np.int64)
  new_tags[0, :4], new_tags[1, :2] = TAGS[4], [3, 6]
  items = {"item_id": np.array([11, 12]), "tags": new_tags}
  known = np.arange(NUM_ITEMS + 1) > 0
  check_new_items(items, m, tiny_info(), known, index)
  with pytest.raises(NewItemError, match="ITEMS needs a tags column"):
    check_new_items({"item_id": np.array([11])}, m, tiny_info(), known, index)
  vectors = encode_features(m, items)
  np.testing.assert_allclose(vectors[0], m.encode_items(tf.constant([4])).numpy()[0], rtol=1e-5)
  table = np.concatenate([module.item_table.numpy(), vectors])
  with pytest.raises(ValueError, match="pass the added items' tags"):
    RetrievalServingModule(m, np.concatenate([index, [11, 12]]), max_len=5, item_table=table,
                           item_known=np.arange(13) > 0)
  tags = np.concatenate([module.item_tags.numpy(), new_tags.astype(np.int32)])
  grown = RetrievalServingModule(m, np.concatenate([index, [11, 12]]), max_len=5,
                                 item_table=table, item_known=np.arange(13) > 0, item_tags=tags)
  out = grown.retrieve(_request(seq, k=7))
  got = dict(zip(out["item_ids"].numpy(), out["scores"].numpy()))
  np.testing.assert_allclose(got[11], vectors[0] @ query, rtol=1e-5)
  np.testing.assert_allclose(got[12], vectors[1] @ query, rtol=1e-5)
  # The query tower reads history items' tags from the export's grown table: item 11 (item
  # 4's tags) in a history reads as item 4 does (both sent as target-domain behaviours).
  def as_target(seq):
    req = _request(seq, k=None)
    req["seq_domain_ids"] = tf.constant([0, 1], tf.int64)
    return req
  np.testing.assert_allclose(grown.encode_query(as_target([1, 11]))["query"].numpy(),
                             grown.encode_query(as_target([1, 4]))["query"].numpy(),
                             rtol=1e-5, atol=1e-6)
  # Without a tags table an added item in a history is refused, never read as zeros.
  with m.item_encoder.lookup_table(grown.item_table):
    with pytest.raises(tf.errors.InvalidArgumentError, match="added to the export after"):
      m.item_encoder.stored_tags(tf.constant([1, 11]))
  if name == "deepconn":  # its own item encoder: the SavedModel answers alike (one model: time)
    tf.saved_model.save(grown, str(tmp_path / "1"), signatures=grown.signatures())
    loaded = tf.saved_model.load(str(tmp_path / "1")).signatures["retrieve"]
    again = loaded(**_request(seq, k=7))
    np.testing.assert_array_equal(again["item_ids"].numpy(), out["item_ids"].numpy())
    np.testing.assert_allclose(again["scores"].numpy(), out["scores"].numpy(), rtol=1e-5)
    # The saved tags table travels with it: item 11 in a history reads as item 4.
    encode = tf.saved_model.load(str(tmp_path / "1")).signatures["encode_query"]
    np.testing.assert_allclose(encode(**as_target([1, 11]))["query"].numpy(),
                               encode(**as_target([1, 4]))["query"].numpy(),
                               rtol=1e-5, atol=1e-6)


def _flagfile_config(path):
  from absl import flags
  from tfrec import flags as tfrec_flags
  fl = flags.FlagValues()
  tfrec_flags.define_flags(fl)
  fl(["prog", f"--flagfile={path}"])
  return tfrec_flags.run_config(fl)


@pytest.mark.parametrize("name", NAMES)
def test_the_couple_flagfiles_train_as_the_other_table4_baselines(name, monkeypatch):
  monkeypatch.chdir(REPO)  # flagfiles include each other by repository-relative paths
  cfg = _flagfile_config(f"configs/couple/{name}.flags")
  assert cfg.model.name == name
  assert (cfg.data.max_seq_len, cfg.train.batch_size) == (8, 256)  # COUPLE's l and batch
  m = registry.build(name, num_items=NUM_ITEMS, num_tags=6, **cfg.model.kwargs)
  assert (m.dim, m.item_features, m.negatives, m.temperature) == (64, ("tags",), "in_batch", 0.1)
  sibling = "configs/couple/youtube_dnn.flags"
  if not os.path.exists(sibling):
    pytest.skip(f"{sibling} is not in this checkout")
  other = _flagfile_config(sibling)
  yt = registry.build("youtube_dnn", num_items=NUM_ITEMS, num_tags=6, **other.model.kwargs)
  assert (cfg.data.data_dir, cfg.data.max_seq_len) == (other.data.data_dir,
                                                      other.data.max_seq_len)
  assert (cfg.train.batch_size, cfg.train.learning_rate) == (other.train.batch_size,
                                                             other.train.learning_rate)
  for key in ("dim", "item_features", "negatives", "temperature", "dropout", "log_q_correction"):
    assert getattr(m, key) == getattr(yt, key), key
