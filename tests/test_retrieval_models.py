"""The retrieval contract (tfrec/models/retrieval.py) and YouTube DNN on matching records."""


import numpy as np
import pytest
import tensorflow as tf

from tfrec import runs
from tfrec import train as train_lib
from tfrec.data.pipeline import Reader, ReadOptions
from tfrec.models import registry
from tfrec.models.retrieval import log_q_table
from tfrec.models.youtube_dnn import YouTubeDNN

from conftest import NUM_ITEMS, VISUAL_DIM, make_config, tiny_store  # noqa: E402


def test_log_q_is_each_items_share_of_the_positives():
  table = log_q_table([0, 2, 6, 0])
  np.testing.assert_allclose(table[1:3], np.log([0.25, 0.75]), rtol=1e-6)
  # never a positive (and padding): half the smallest share, a finite value
  np.testing.assert_allclose(table[[0, 3]], np.log(0.125), rtol=1e-6)
  assert np.all(log_q_table([0, 0]) == 0)


def _model(item_features=("id", "category", "visual")):
  m = YouTubeDNN(NUM_ITEMS, dim=4, item_features=item_features, num_categories=4,
                 visual_dim=VISUAL_DIM, max_seq_len=3, mlp_units=(8,))
  return m.build_and_fill(tiny_store())


def _features(seq, n=None):
  seq = np.asarray(seq, np.int64)
  return {"seq_item_ids": tf.constant(seq), "seq_mask": tf.constant(seq > 0)}


def test_scores_are_dot_products_of_the_two_towers_and_encode_once():
  m = _model()
  feats = _features([[1, 2, 0], [6, 0, 0]])
  user = m.encode_user(feats)
  cands = tf.constant([[3, 7, 9], [10, 1, 2]], tf.int64)
  scores = m.score(user, cands).numpy()
  q = m(feats).numpy()
  items = m.encode_items(cands).numpy()
  # float32 sums of terms as large as the largest score: an entry near zero carries their
  # rounding error (which weights the test draws depends on the tests run before it).
  atol = 1e-5 * np.abs(scores).max()
  np.testing.assert_allclose(scores, np.einsum("bd,bnd->bn", q, items), rtol=1e-5, atol=atol)
  # The query does not depend on the candidates: scoring them one by one agrees.
  for j in range(3):
    np.testing.assert_allclose(m.score(user, cands[:, j:j + 1]).numpy()[:, 0], scores[:, j],
                               rtol=1e-5, atol=atol)


def test_a_cold_item_is_scored_from_its_features_without_an_id_embedding():
  m = _model(item_features=("category", "visual"))
  assert not [w for w in m.item_encoder.weights if "id_embeddings" in w.name]
  store = tiny_store()
  vec = m.encode_items(tf.constant([10])).numpy()[0]  # item 10 is cold in the tiny store
  enc = m.item_encoder
  cat_table = [w for w in enc.weights if "category_embeddings" in w.name][0].numpy()
  proj = enc._projection
  expected = cat_table[store.category[10]] + proj(tf.constant(store.visual[10:11])).numpy()[0]
  np.testing.assert_allclose(vec, expected, rtol=1e-5)
  assert np.abs(vec).sum() > 0


def test_youtube_dnn_trains_on_matching_records_with_log_q_from_the_train_split(syn_dir, tmp_path):
  run = str(tmp_path / "run")
  cfg = make_config(syn_dir, run, model="youtube_dnn", model_kwargs=dict(mlp_units=[8]),
                    epochs=2, steps_per_epoch=3, batch_size=32, validation_steps=2)
  result = train_lib.train(cfg)
  assert result.steps == 6 and np.isfinite(result.history["loss"]).all()
  assert {"softmax_loss", "batch_top1", "val_loss"} <= set(result.history)
  assert result.best["monitor"] == "val_loss"
  model, *_ = runs.restore_model(run, "final")
  reader = Reader(syn_dir, "matching", "train", ReadOptions())
  counts = np.zeros(model.num_items + 1)
  for b in reader.dataset(1024):
    np.add.at(counts, b["positive_item_id"].numpy(), 1)
  np.testing.assert_allclose(model.item_log_q.numpy(), log_q_table(counts), rtol=1e-5)


def test_retrieval_runs_are_refused_by_the_ranking_evaluator(syn_dir, tmp_path):
  from tfrec import serving
  from tfrec.models.ccl import CCL
  assert registry.record_kind("youtube_dnn") == "matching"
  serving.check_exportable(YouTubeDNN, "youtube_dnn")  # retrieval: the `retrieve` signature
  with pytest.raises(ValueError, match="not an exportable"):
    serving.check_exportable(CCL, "ccl")
  run = str(tmp_path / "run")
  train_lib.train(make_config(syn_dir, run, model="youtube_dnn", steps_per_epoch=1,
                              batch_size=16))
  with pytest.raises(ValueError, match="not a ranking model"):
    runs.restore_model(run, "final", ranking_only=True)


def _ranked_batch(seq, positives):
  seq = np.asarray(seq, np.int64)
  return {"seq_item_ids": tf.constant(seq), "seq_mask": tf.constant(seq > 0),
          "positive_item_id": tf.constant(positives, tf.int64)}


def _nll(scores, labels):
  scores = scores - scores.max(axis=1, keepdims=True)
  return -(scores - np.log(np.exp(scores).sum(axis=1, keepdims=True)))[
      np.arange(len(labels)), labels]


def test_full_softmax_ranks_the_positive_against_the_whole_catalogue():
  m = YouTubeDNN(NUM_ITEMS, dim=4, item_features=("id",), max_seq_len=3, mlp_units=(8,),
                 negatives="full", temperature=0.5).build_and_fill(tiny_store())
  batch = _ranked_batch([[1, 2, 0], [6, 0, 0]], [7, 9])
  loss = m.compute_losses(batch, training=False)["softmax"].numpy()
  q = m(batch).numpy()
  items = m.encode_items(tf.range(1, NUM_ITEMS + 1)).numpy()
  np.testing.assert_allclose(loss, _nll(q @ items.T / 0.5, np.array([6, 8])), rtol=1e-5)
  # Its top-1 accuracy is over the whole catalogue, named for it, and measured (not 0 unread).
  assert m.task.top1.name == "corpus_top1"
  want = np.mean(np.argmax(q @ items.T, axis=1) == np.array([6, 8]))
  assert m.task.top1.result().numpy() == pytest.approx(want)
  m.task.top1.reset_state()
  best = np.argmax(q @ items.T, axis=1) + 1  # make every row's positive its argmax: 1.0
  m.compute_losses(_ranked_batch([[1, 2, 0], [6, 0, 0]], best), training=False)
  assert m.task.top1.result().numpy() == 1.0


def test_the_queue_adds_earlier_positives_as_negatives_and_masks_empty_slots_and_hits():
  import tf_keras as keras
  m = YouTubeDNN(NUM_ITEMS, dim=4, item_features=("id",), max_seq_len=3, mlp_units=(8,),
                 negatives="queue", queue_size=4, log_q_correction=False
                 ).build_and_fill(tiny_store())
  m.compile(optimizer=keras.optimizers.SGD(0.0))  # no update: vectors stay comparable
  first = _ranked_batch([[1, 2, 0], [3, 0, 0]], [7, 8])
  q1, p1 = m(first).numpy(), m.encode_items(tf.constant([7, 8])).numpy()
  loss1 = m.compute_losses(first, training=True)["softmax"].numpy()
  np.testing.assert_allclose(loss1, _nll(q1 @ p1.T, np.array([0, 1])), rtol=1e-5)  # empty
  stored = m.negative_queue.keys.numpy()
  np.testing.assert_allclose(stored[:2, :4], p1, rtol=1e-6)
  assert stored[:2, 4].tolist() == [7.0, 8.0] and int(m.negative_queue.count.numpy()) == 2
  second = _ranked_batch([[4, 0, 0], [5, 0, 0]], [8, 9])  # item 8 is also in the queue
  q2 = m(second).numpy()
  p2 = m.encode_items(tf.constant([8, 9])).numpy()
  # Validation leaves the queue out (its rows are training-time vectors) and enqueues nothing.
  val = m.compute_losses(second, training=False)["softmax"].numpy()
  np.testing.assert_allclose(val, _nll(q2 @ p2.T, np.array([0, 1])), rtol=1e-5)
  assert int(m.negative_queue.count.numpy()) == 2
  loss2 = m.compute_losses(second, training=True)["softmax"].numpy()  # no dropout: q2, p2
  scores = q2 @ np.concatenate([p2, p1]).T  # in-batch 8, 9, then queued 7, 8
  scores[0, 3] = -1e9  # row 0's positive 8 queued again: an accidental hit
  np.testing.assert_allclose(loss2, _nll(scores, np.array([0, 1])), rtol=1e-5)
  assert int(m.negative_queue.count.numpy()) == 4


# ------------------------------------------------------------------ popularity-sampled negatives


def _sampled_model(num_sampled, counts, log_q_correction=True):
  m = YouTubeDNN(NUM_ITEMS, dim=4, item_features=("id",), max_seq_len=3, mlp_units=(8,),
                 negatives="sampled", num_sampled=num_sampled,
                 log_q_correction=log_q_correction).build_and_fill(tiny_store())
  m.item_log_q.assign(log_q_table(np.r_[0, counts]))
  return m


def test_sampled_negatives_are_log_q_corrected_and_accidental_hits_masked_by_hand():
  counts = np.array([1, 1, 1, 1, 1, 1, 40, 1, 1, 1], np.float64)  # item 7 draws most
  m = _sampled_model(6, counts)
  batch = _ranked_batch([[1, 2, 0], [6, 0, 0]], [7, 9])
  loss = m.compute_losses(batch, training=False)["softmax"].numpy()
  neg = m.sample_negatives().numpy()  # outside a training step: the same fixed draw
  assert len(neg) == 6 and (neg == 7).any(), neg  # an accidental hit for row 0
  q = m(batch).numpy()
  cands = np.r_[[7, 9], neg]
  scores = q.astype(np.float64) @ m.encode_items(tf.constant(cands)).numpy().T
  share = counts / counts.sum()
  scores -= np.log(share[cands - 1])  # in-batch and sampled alike: log of each item's share
  scores[0, 2:][neg == 7] = -1e9  # row 0's positive drawn as a negative: removed
  scores[1, 2:][neg == 9] = -1e9
  np.testing.assert_allclose(loss, _nll(scores, np.array([0, 1])), rtol=1e-5)
  # Without the correction the logits are the plain dot products (hits still removed).
  plain = _sampled_model(6, counts, log_q_correction=False)
  plain.set_weights(m.get_weights())
  scores = q.astype(np.float64) @ m.encode_items(tf.constant(cands)).numpy().T
  scores[0, 2:][neg == 7] = scores[1, 2:][neg == 9] = -1e9
  np.testing.assert_allclose(plain.compute_losses(batch, training=False)["softmax"].numpy(),
                             _nll(scores, np.array([0, 1])), rtol=1e-5)


def test_sampled_negatives_follow_the_training_popularity():
  counts = np.arange(1, NUM_ITEMS + 1, dtype=np.float64)
  m = _sampled_model(20_000, counts)
  draws = m.sample_negatives().numpy()
  assert draws.min() >= 1 and draws.max() <= NUM_ITEMS  # never padding
  seen = np.bincount(draws, minlength=NUM_ITEMS + 1)[1:]
  expected = len(draws) * counts / counts.sum()
  chi2 = float(((seen - expected) ** 2 / expected).sum())
  assert chi2 < 27.9, (chi2, seen, expected)  # chi-square, 9 dof: p = 0.001
  # the correction is the log of the probability the sampler used
  np.testing.assert_allclose(m.sampling_log_q(tf.range(1, NUM_ITEMS + 1)).numpy(),
                             np.log(counts / counts.sum()), rtol=1e-5)


def test_sampled_negatives_are_fixed_by_seed_and_step():
  from tfrec.layers import step_random
  m = _sampled_model(32, np.ones(NUM_ITEMS))

  def draw(seed, step):
    with step_random.training_step(seed, tf.constant(step, tf.int64)):
      return m.sample_negatives().numpy()

  first = draw(3, 5)
  np.testing.assert_array_equal(draw(3, 5), first)
  assert not np.array_equal(draw(3, 6), first) and not np.array_equal(draw(4, 5), first)


def test_sampled_negatives_are_the_same_on_every_replica():
  import json
  import os
  import subprocess
  import sys
  code = """
import json, numpy as np
import tfrec
from tfrec import distribute
distribute.configure_cpu_replicas(2)
import tensorflow as tf
from tfrec.layers import step_random
from tfrec.models.youtube_dnn import YouTubeDNN
from conftest import NUM_ITEMS, tiny_store
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
  m = YouTubeDNN(NUM_ITEMS, dim=4, item_features=("id",), max_seq_len=3, mlp_units=(8,),
                 negatives="sampled", num_sampled=16).build_and_fill(tiny_store())
def draw():
  with step_random.training_step(7, tf.constant(2, tf.int64)):
    return m.sample_negatives()
per_replica = strategy.experimental_local_results(strategy.run(tf.function(draw)))
single = draw().numpy().tolist()
print("RESULT " + json.dumps({"replicas": [r.numpy().tolist() for r in per_replica],
                              "single": single}))
"""
  tests = os.path.dirname(os.path.abspath(__file__))
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                       cwd=os.path.dirname(tests),
                       env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2",
                                PYTHONPATH=tests + os.pathsep + os.path.dirname(tests)))
  assert out.returncode == 0, out.stderr[-3000:]
  result = json.loads([x for x in out.stdout.splitlines() if x.startswith("RESULT ")][-1][7:])
  first, second = result["replicas"]
  assert first == second == result["single"]


def test_sampled_negatives_train_and_count_popularity_without_the_correction(syn_dir, tmp_path):
  run = str(tmp_path / "run")
  result = train_lib.train(make_config(
      syn_dir, run, model="youtube_dnn", steps_per_epoch=2, batch_size=16,
      model_kwargs=dict(mlp_units=[8], negatives="sampled", num_sampled=8,
                        log_q_correction=False)))
  assert np.isfinite(result.history["loss"]).all()
  model, *_ = runs.restore_model(run, "final")
  assert model.num_sampled == 8 and np.ptp(model.item_log_q.numpy()) > 0  # the sampler's table
