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
