"""The retrieval SavedModel (tfrec/serving/retrieval.py): top-k equals the argsort of the
model's own scores, any k after reloading in a fresh process, cold items in the index, and
malformed requests refused by name before any lookup."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tfrec import runs, serving
from tfrec import train as train_lib

from conftest import make_config  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def exported(syn_dir, tmp_path_factory):
  base = tmp_path_factory.mktemp("retrieval_export")
  run = str(base / "run")
  train_lib.train(make_config(syn_dir, run, model="youtube_dnn", steps_per_epoch=2,
                              batch_size=32, validation_steps=1,
                              model_kwargs=dict(item_features=["category", "visual"])))
  path = serving.export_run(run, str(base / "serving" / "1"), checkpoint="final")
  return run, path


def _request(seq, k):
  seq = np.asarray(seq, np.int64)
  return {"timestamp": tf.constant(10**6, tf.int64), "k": tf.constant(k, tf.int32),
          "seq_item_ids": tf.constant(seq), "seq_domain_ids": tf.ones_like(seq),
          "seq_timestamps": tf.range(len(seq), dtype=tf.int64)}


def test_retrieve_is_the_argsort_of_the_models_scores_over_the_index(exported):
  run, path = exported
  model, _, _, store = runs.restore_model(run, "final")
  index = store.item_ids(domain=1)  # every target item, the cold ones too
  seq = index[:3]
  out = tf.saved_model.load(path).signatures["retrieve"](**_request(seq, 5))
  query = model({"seq_item_ids": tf.constant(seq[None]),
                 "seq_mask": tf.ones([1, 3], tf.bool)}, training=False).numpy()[0]
  scores = model.encode_items(tf.constant(index)).numpy() @ query
  scores[np.isin(index, seq)] = -np.inf  # the request's own items are left out
  order = np.argsort(-scores, kind="stable")[:5]
  np.testing.assert_array_equal(out["item_ids"].numpy(), index[order])
  np.testing.assert_allclose(out["scores"].numpy(), scores[order], rtol=1e-5)
  assert store.cold[index].any()  # cold items are in the index, scored from their features


def test_the_saved_model_answers_any_k_in_a_fresh_process(exported):
  _, path = exported
  code = ("import json, sys, tensorflow as tf; m = tf.saved_model.load(sys.argv[1]); "
          "f = m.signatures['retrieve']; out = {}\n"
          "for k in (1, 4):\n"
          "  r = f(timestamp=tf.constant(1, tf.int64), k=tf.constant(k), "
          "seq_item_ids=tf.constant([301], tf.int64), seq_domain_ids=tf.constant([1], tf.int64),"
          " seq_timestamps=tf.constant([0], tf.int64))\n"
          "  out[k] = r['item_ids'].numpy().tolist()\n"
          "print('RESULT ' + json.dumps(out))")
  proc = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True,
                        timeout=120, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
  assert proc.returncode == 0, proc.stderr[-2000:]
  out = json.loads([x for x in proc.stdout.splitlines() if x.startswith("RESULT ")][-1][7:])
  assert len(out["1"]) == 1 and len(out["4"]) == 4 and out["4"][0] == out["1"][0]


@pytest.mark.parametrize("change,message", [
    (dict(k=0), "k must be in \\[1, the index size\\]"),
    (dict(seq=[0]), "seq_item_ids: item ids must be in \\[1,"),
    (dict(seq=[10**6]), "unknown ids"),
])
def test_a_malformed_request_is_refused_by_name(exported, change, message):
  _, path = exported
  f = tf.saved_model.load(path).signatures["retrieve"]
  req = _request(change.get("seq", [301, 302]), change.get("k", 3))
  with pytest.raises(tf.errors.InvalidArgumentError, match=message):
    f(**req)


def test_unaligned_sequences_are_refused(exported):
  _, path = exported
  f = tf.saved_model.load(path).signatures["retrieve"]
  req = _request([301, 302], 3)
  req["seq_timestamps"] = tf.constant([0], tf.int64)
  with pytest.raises(tf.errors.InvalidArgumentError, match="seq_timestamps must have as many"):
    f(**req)


# ------------------------------------------------- dataset limits, new items, approximate index


def _saved_run(base, model, model_kwargs, info, seed):
  """A run of `model` over the tiny store (dataset `info`), weights saved untrained as its
  "final" checkpoint, exported; returns (run, export path, model)."""
  import tf_keras as keras
  from tfrec import config as config_lib
  from conftest import tiny_store
  data, run = str(base / "ds"), str(base / "run")
  info.save(data)
  tiny_store().save(data)
  cfg = config_lib.RunConfig(data=config_lib.DataConfig(data_dir=data, max_seq_len=5),
                             model=config_lib.ModelConfig(model, model_kwargs),
                             train=config_lib.TrainConfig(run_dir=run))
  cfg.save()
  keras.utils.set_random_seed(seed)
  built = runs.build_model(cfg, info, tiny_store())
  built.save_weights(config_lib.run_paths(run)["final"])
  return run, serving.export_run(run, str(base / "serving" / "1"), checkpoint="final"), built


@pytest.fixture(scope="module")
def long_run(tmp_path_factory):
  """A youtube_dnn run (no id embedding) over the tiny store whose dataset.json says
  max_seq_len = 120 (matching requests: max(100, 120) = 120), weights saved, not trained."""
  import dataclasses
  from conftest import tiny_info
  base = tmp_path_factory.mktemp("long")
  run, path, _ = _saved_run(base, "youtube_dnn", dict(dim=4, mlp_units=[4],
                                                      item_features=["category", "visual"]),
                            dataclasses.replace(tiny_info(), max_seq_len=120), seed=5)
  return run, path, base


def _cycle(n):
  return [6 + i % 5 for i in range(n)]


def test_requests_up_to_the_datasets_matching_maximum_are_accepted(long_run):
  _, path, _ = long_run
  f = tf.saved_model.load(path).signatures["retrieve"]
  assert len(f(**_request(_cycle(120), 2))["item_ids"]) == 2  # > 100, the contract's default
  with pytest.raises(tf.errors.InvalidArgumentError,
                     match="seq_item_ids holds at most 120 events"):
    f(**_request(_cycle(121), 2))


def test_encode_query_is_the_models_query(long_run):
  run, path, _ = long_run
  model, *_ = runs.restore_model(run, "final")
  req = _request([6, 7, 9], 1)
  del req["k"]
  query = tf.saved_model.load(path).signatures["encode_query"](**req)["query"].numpy()
  seq = np.array([[6, 7, 9, 0, 0]])
  expected = model({"seq_item_ids": tf.constant(seq), "seq_mask": tf.constant(seq > 0)},
                   training=False).numpy()[0]
  np.testing.assert_allclose(query, expected, rtol=1e-5)


def _best_new_item(run, path, seq):
  """ITEMS columns of item 11 whose visual vector points along the request's query (so it is
  the request's best item)."""
  model, *_ = runs.restore_model(run, "final")
  req = _request(seq, 1)
  del req["k"]
  query = tf.saved_model.load(path).signatures["encode_query"](**req)["query"].numpy()
  kernel = model.item_encoder._projection.kernel.numpy()  # [visual_dim, d]
  direction = kernel @ query
  return {"item_id": np.array([11]), "category": np.array([4]),
          "visual": (1e4 * direction / np.linalg.norm(direction))[None].astype(np.float32),
          "domain": np.array([1])}


def test_added_items_are_retrieved_and_old_results_are_unchanged(long_run):
  from tfrec.serving.add_items import add_items
  run, path, base = long_run
  items = _best_new_item(run, path, [6, 7])
  np.savez(base / "new.npz", **items)
  new = add_items(path, str(base / "new.npz"), str(base / "serving" / "2"))
  old_f = tf.saved_model.load(path).signatures["retrieve"]
  new_f = tf.saved_model.load(new).signatures["retrieve"]
  assert new_f(**_request([6, 7], 1))["item_ids"].numpy().tolist() == [11]
  for seq in ([6, 7], [8], [9, 10, 6]):
    k = 5 - len(seq)
    old = old_f(**_request(seq, k))
    out = new_f(**_request(seq, k + 1))
    ids = out["item_ids"].numpy()
    np.testing.assert_array_equal(ids[ids != 11], old["item_ids"].numpy())
    np.testing.assert_allclose(out["scores"].numpy()[ids != 11], old["scores"].numpy(),
                               rtol=1e-6)
  # The new item may now be in a history (read from the grown table); the old export refuses it.
  assert 11 not in new_f(**_request([11, 6], 3))["item_ids"].numpy()
  with pytest.raises(tf.errors.InvalidArgumentError, match="unknown ids"):
    old_f(**_request([11], 1))
  loaded = tf.saved_model.load(new)
  assert int(loaded.max_request_len.numpy()) == 120  # the dataset's limit carries over
  assert serving.read_export_info(new)["added_items"] == 1
  assert sorted(os.listdir(base / "serving")) == ["1", "2"]  # the old one untouched


@pytest.mark.parametrize("change,message", [
    (dict(item_id=[7]), "already in the index"),
    (dict(item_id=[3]), "items the model already has"),
    (dict(item_id=[12, 12]), "repeats ids \\[12\\]"),
    (dict(category=[99]), "category 99 outside the dataset's category ids \\[0, 4\\]"),
    (dict(tags=[[7, 0, 0, 0, 0, 0, 0, 0]]), "tags .* outside the dataset's tag ids"),
    (dict(visual=np.zeros([1, 2], np.float32)), "visual has shape \\(1, 2\\)"),
    (dict(visual=np.full([1, 3], np.nan, np.float32)), "visual is not finite"),
    (dict(domain=[0]), "domain 0; the index holds target-domain items"),
])
def test_new_items_outside_the_datasets_vocabularies_are_refused_by_name(long_run, change,
                                                                           message):
  from tfrec.serving.add_items import NewItemError, add_items
  _, path, base = long_run
  items = {"item_id": np.array([12]), "category": np.array([1]),
           "visual": np.ones([1, 3], np.float32)}
  items.update({k: np.asarray(v) for k, v in change.items()})
  if len(items["item_id"]) == 2:
    items.update(category=np.array([1, 1]), visual=np.ones([2, 3], np.float32))
  np.savez(base / "bad.npz", **items)
  out = str(base / "serving" / "bad")
  with pytest.raises(NewItemError, match=message):
    add_items(path, str(base / "bad.npz"), out)
  assert not os.path.exists(out)


def test_items_are_never_added_in_place_nor_to_a_model_with_id_embeddings(long_run, tmp_path):
  from tfrec import config as config_lib
  from tfrec.serving.add_items import NewItemError, add_items
  run, path, base = long_run
  np.savez(tmp_path / "one.npz", item_id=np.array([12]), category=np.array([1]),
           visual=np.ones([1, 3], np.float32))
  with pytest.raises(ValueError, match="never edited in place"):
    add_items(path, str(tmp_path / "one.npz"), path + "/")
  cfg = config_lib.RunConfig.load(run)
  id_run = str(tmp_path / "id_run")
  cfg = config_lib.RunConfig(data=cfg.data, model=config_lib.ModelConfig(
      "youtube_dnn", dict(dim=4, mlp_units=[4])), train=config_lib.TrainConfig(run_dir=id_run))
  cfg.save()
  from conftest import tiny_store
  from tfrec.data.info import DatasetInfo
  model = runs.build_model(cfg, DatasetInfo.load(cfg.data.data_dir), tiny_store())
  model.save_weights(config_lib.run_paths(id_run)["final"])
  id_export = serving.export_run(id_run, str(tmp_path / "s" / "1"), checkpoint="final")
  with pytest.raises(NewItemError, match="has an id embedding"):
    add_items(id_export, str(tmp_path / "one.npz"), str(tmp_path / "s" / "2"))


def test_add_items_command_line(long_run, tmp_path):
  _, path, base = long_run
  np.savez(tmp_path / "one.npz", item_id=np.array([15]), category=np.array([2]),
           visual=np.ones([1, 3], np.float32))
  out = str(tmp_path / "serving" / "2")
  cmd = [sys.executable, "-m", "tfrec.export", f"--add_items={tmp_path / 'one.npz'}",
         f"--from_export={path}", f"--export_dir={out}"]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert f"wrote {out}" in proc.stdout
  ids = tf.saved_model.load(out).index_ids.numpy()
  assert ids.tolist() == [6, 7, 8, 9, 10, 15]


def test_only_the_ann_module_imports_faiss():
  package = os.path.join(REPO, "tfrec")
  importers = []
  for root, _, files in os.walk(package):
    for name in files:
      if name.endswith(".py"):
        with open(os.path.join(root, name)) as f:
          if any(line.strip().startswith(("import faiss", "from faiss")) for line in f):
            importers.append(os.path.relpath(os.path.join(root, name), REPO))
  assert importers == [os.path.join("tfrec", "serving", "ann.py")]


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_the_approximate_index_answers_as_the_exact_one_on_a_tiny_index(long_run, kind,
                                                                        tmp_path):
  pytest.importorskip("faiss")
  from tfrec.serving import ann
  _, path, _ = long_run
  out = ann.build(path, kind=kind, nlist=1, nprobe=1, out_dir=str(tmp_path / "1.faiss"),
                  recall_k=3)
  meta = ann.load_meta(out)
  assert meta["recall"] == 1.0 and meta["recall_k"] == 3 and meta["size"] == 5
  index = ann.ApproximateIndex.load(out)
  loaded = tf.saved_model.load(path)
  for seq in ([6, 7], [8], [10]):
    req = _request(seq, 3)
    exact = loaded.signatures["retrieve"](**req)
    del req["k"]
    query = loaded.signatures["encode_query"](**req)["query"].numpy()
    ids, scores = index.search(query, 3, exclude=seq)
    np.testing.assert_array_equal(ids, exact["item_ids"].numpy())
    np.testing.assert_allclose(scores, exact["scores"].numpy(), rtol=1e-5)
  with pytest.raises(FileExistsError, match="exists"):
    ann.build(path, kind=kind, out_dir=out)


def test_recall_against_the_exact_top_k():
  pytest.importorskip("faiss")
  from tfrec.serving import ann
  rng = np.random.default_rng(0)
  vectors = rng.normal(size=[2000, 8]).astype(np.float32)
  queries = rng.normal(size=[20, 8]).astype(np.float32)
  exact = ann.exact_top_k(vectors, queries, 10)
  np.testing.assert_array_equal(exact[:, 0], np.argmax(queries @ vectors.T, axis=1))
  assert ann.recall_at_k(exact, exact) == 1.0
  assert ann.recall_at_k(exact[:, ::-1], exact) == 1.0  # order does not matter
  index = ann.make_index(vectors, "ivf", nlist=16, nprobe=16)  # every list: exact
  _, found = index.search(queries, 10)
  assert ann.recall_at_k(found, exact) == 1.0
  index.nprobe = 1
  _, found = index.search(queries, 10)
  assert ann.recall_at_k(found, exact) < 1.0


def test_a_profile_reading_query_tower_takes_user_features_in_the_request(tmp_path):
  """DSSM's query tower reads the user's profile: `retrieve` takes user_features, answers the
  argsort of the model's scores for that profile, and refuses ids outside a vocabulary."""
  from conftest import tiny_info, tiny_store
  info = tiny_info()
  _, path, model = _saved_run(tmp_path, "dssm", dict(dim=4, tower_units=[4],
                                                     item_features=["category", "visual"]),
                              info, seed=3)
  f = tf.saved_model.load(path).signatures["retrieve"]
  index = tiny_store().item_ids(domain=1)
  seq = np.array([6, 7])
  outs = []
  for profile in ([0, 1, 2, 3], [1, 5, 20, 9]):
    out = f(**_request(seq, 3), user_features=tf.constant(profile, tf.int64))
    query = model({"seq_item_ids": tf.constant([[6, 7, 0, 0, 0]]),
                   "seq_mask": tf.constant([[True, True, False, False, False]]),
                   "user_features": tf.constant([profile], tf.int64)}, training=False).numpy()[0]
    keep = ~np.isin(index, seq)
    scores = model.encode_items(tf.constant(index[keep])).numpy() @ query
    np.testing.assert_array_equal(out["item_ids"].numpy(),
                                  index[keep][np.argsort(-scores, kind="stable")[:3]])
    outs.append(out["scores"].numpy())
  assert not np.allclose(outs[0], outs[1])  # the profile changes the query
  bad = list(info.user_feature_sizes[:1]) + [0, 0, 0]  # gender id == its vocabulary size
  with pytest.raises(tf.errors.InvalidArgumentError, match="user_features must be in"):
    f(**_request(seq, 3), user_features=tf.constant(bad, tf.int64))
