"""COUPLE served (issue 16): the exported `retrieve` of a trained COUPLE run answers a cold user
(source-domain history only) with the top-k of the model's own scores, and an item added from
its tags alone (no retraining) is retrieved where an item with the same tags is."""

import numpy as np
import pytest
import tensorflow as tf

from tfrec import runs, serving
from tfrec import train as train_lib

from conftest import make_config  # noqa: E402


@pytest.fixture(scope="module")
def couple_export(syn_dir, tmp_path_factory):
  base = tmp_path_factory.mktemp("couple_export")
  run = str(base / "run")
  train_lib.train(make_config(syn_dir, run, model="couple", steps_per_epoch=3, batch_size=32,
                              validation_steps=1,
                              model_kwargs=dict(dim=8, ff_dim=8, queue_size=64,
                                                branching=[4, 4], top_k=2)))
  return run, serving.export_run(run, str(base / "serving" / "1"), checkpoint="final"), base


def _request(seq, domains, k):
  seq = np.asarray(seq, np.int64)
  return {"timestamp": tf.constant(10**6, tf.int64), "k": tf.constant(k, tf.int32),
          "seq_item_ids": tf.constant(seq), "seq_domain_ids": tf.constant(domains, tf.int64),
          "seq_timestamps": tf.range(len(seq), dtype=tf.int64)}


def _model_top_k(model, store, seq, k):
  index = store.item_ids(domain=1)  # every target item, the cold ones too
  seq = np.asarray(seq, np.int64)
  q = model({"seq_item_ids": tf.constant(seq[None]), "seq_mask": tf.constant(seq[None] > 0),
             "seq_domain_ids": tf.zeros([1, len(seq)], tf.int64)}, training=False).numpy()[0]
  scores = model.encode_items(tf.constant(index)).numpy() @ q
  keep = ~np.isin(index, seq)
  order = np.argsort(-scores[keep], kind="stable")[:k]
  return index[keep][order], scores[keep][order]


def test_a_cold_user_is_answered_from_the_source_history_alone(couple_export):
  run, path, _ = couple_export
  model, _, _, store = runs.restore_model(run, "final")
  source = store.item_ids(domain=0)[:4]  # a cold user: no target-domain behaviour
  out = tf.saved_model.load(path).signatures["retrieve"](**_request(source, [0] * 4, 10))
  ids, scores = _model_top_k(model, store, source, 10)
  np.testing.assert_allclose(out["scores"].numpy(), scores, rtol=1e-4, atol=1e-5)
  assert out["item_ids"].numpy().tolist() == ids.tolist()


def test_an_item_added_from_its_tags_is_retrieved_without_retraining(couple_export):
  from tfrec.serving.add_items import add_items
  run, path, base = couple_export
  model, _, info, store = runs.restore_model(run, "final")
  source = store.item_ids(domain=0)[:4]
  (best,), _ = _model_top_k(model, store, source, 1)
  new_id = info.num_items + 1
  np.savez(base / "new.npz", item_id=np.array([new_id]), domain=np.array([1]),
           category=store.category[[best]], tags=store.tags[[best]],
           title=store.title[[best]], visual=store.visual[[best]])
  new = add_items(path, str(base / "new.npz"), str(base / "serving" / "2"))
  out = tf.saved_model.load(new).signatures["retrieve"](**_request(source, [0] * 4, 2))
  # The new item has the best item's tags, so the same vector: the two share the top 2.
  assert sorted(out["item_ids"].numpy().tolist()) == sorted([int(best), new_id])
  np.testing.assert_allclose(out["scores"].numpy()[0], out["scores"].numpy()[1], rtol=1e-5)
  # In a history the new item reads as its tags too (the query tower's item table and the
  # frequency encoder's tags grow with the index): the same query as with the best item.
  encode = tf.saved_model.load(new).signatures["encode_query"]
  with_new = _request(list(source) + [new_id], [0] * 4 + [1], 1)
  with_best = _request(list(source) + [int(best)], [0] * 4 + [1], 1)
  for req in (with_new, with_best):
    del req["k"]
  np.testing.assert_allclose(encode(**with_new)["query"].numpy(),
                             encode(**with_best)["query"].numpy(), rtol=1e-5, atol=1e-6)
