"""ADAPT Fig. 6: the attention weights TargetAttention returns (the ones it sums with), ADEN's
per-domain weights (a distribution over the real history, permuted with it), the heat map by
hand, and `tfrec.evaluate --attention_examples` writing TensorBoard images of a trained run."""

import glob
import os

import numpy as np
import pytest

from conftest import make_config
import tfrec  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
import tensorflow as tf  # noqa: E402

from tfrec import train as train_lib  # noqa: E402
from tfrec.evaluation import attention  # noqa: E402
from tfrec.layers import TargetAttention  # noqa: E402
from test_models import as_tf, build, make_features, small_store  # noqa: E402


def test_target_attention_returns_the_weights_it_sums_with():
  rng = np.random.default_rng(0)
  keys = tf.constant(rng.normal(size=(3, 5, 4)), tf.float32)
  query = tf.constant(rng.normal(size=(3, 4)), tf.float32)
  mask = tf.constant([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]]) > 0
  # The bare attention (no residual, norm or feed-forward): u = W_o (sum_j a_j W_v k_j).
  layer = TargetAttention("dot", num_heads=1, ff_dim=0, use_layer_norm=False,
                          use_residual=False)
  out, weights = layer(query, keys, mask, return_attention_scores=True)
  np.testing.assert_allclose(layer(query, keys, mask).numpy(), out.numpy(), rtol=1e-6)
  w = weights.numpy()
  assert w.shape == (3, 1, 5)
  np.testing.assert_allclose(w[:2].sum(-1), 1.0, rtol=1e-6)  # a distribution over real keys
  assert (w[0, :, 3:] == 0).all() and (w[2] == 0).all()      # padding and no history: 0
  block = layer._block
  values = tf.matmul(keys, block._kernels["value"]) + block._biases["value"]
  want = tf.matmul(tf.einsum("bs,bsd->bd", w[:, 0], values), block._kernels["output"])
  want += block._biases["output"]
  np.testing.assert_allclose(out.numpy()[:2], want.numpy()[:2], rtol=1e-5, atol=1e-6)
  # DIN mode: one "head", the activation unit's (unnormalised) scores as they weigh the sum.
  din = TargetAttention("din", din_units=(4,))
  out, weights = din(query, keys, mask, return_attention_scores=True)
  np.testing.assert_allclose(out.numpy(), tf.einsum("bs,bsd->bd", weights[:, 0], keys).numpy(),
                             rtol=1e-5, atol=1e-6)


def test_aden_weights_are_a_distribution_over_each_domains_history_and_follow_it():
  model = build("aden", num_heads=2, num_tokens=9)
  features = as_tf(make_features(seed=3))  # row 1: no target history; row 2: no history
  weights = {d: w.numpy() for d, w in model.attention_weights(features).items()}
  assert set(weights) == set(model.domains)
  for d, w in weights.items():
    real = features[f"{d}_item_ids"].numpy() > 0
    assert w.shape == (6, 2, real.shape[1])
    has = real.any(axis=1)
    np.testing.assert_allclose(w[has].sum(-1), 1.0, rtol=1e-5)
    assert (w[~has] == 0).all() and (w.transpose(1, 0, 2)[:, ~real] == 0).all()
  # Swapping two real history items (with their times) swaps their weights.
  d = "source"
  ids = features[f"{d}_item_ids"].numpy().copy()
  times = features[f"{d}_timestamps"].numpy().copy()
  assert (ids[0, :2] > 0).all()
  ids[0, [0, 1]], times[0, [0, 1]] = ids[0, [1, 0]], times[0, [1, 0]]
  swapped = dict(features, **{f"{d}_item_ids": tf.constant(ids),
                              f"{d}_timestamps": tf.constant(times)})
  again = model.attention_weights(swapped)[d].numpy()
  np.testing.assert_allclose(again[0][:, [1, 0]], weights[d][0][:, :2], rtol=1e-5, atol=1e-7)


def test_heatmap_by_hand():
  rows = np.array([[0.0, 0.25, 0.5, 0.9], [0.2, 0.2, 0.0, 0.0]])
  real = np.array([True, True, True, False])
  image = attention.heatmap(rows, real, cell=2)
  assert image.shape == (4, 8, 3) and image.dtype == np.uint8
  # Row 0: its maximum over real positions is 0.5 (0.9 sits on padding): 0 -> white, 0.5 ->
  # dark blue, 0.25 -> halfway; padding grey.
  np.testing.assert_array_equal(image[0, 0], [255, 255, 255])
  np.testing.assert_array_equal(image[1, 5], [8, 48, 107])
  np.testing.assert_array_equal(image[0, 2], np.round([255 - 247 / 2, 255 - 207 / 2,
                                                       255 - 148 / 2]).astype(np.uint8))
  np.testing.assert_array_equal(image[3, 7], [attention.PAD_GREY] * 3)
  np.testing.assert_array_equal(image[2, 0], [8, 48, 107])  # row 1: both 0.2 are its maximum
  with pytest.raises(ValueError, match="disagree"):
    attention.heatmap(rows, real[:3])


def test_evaluate_writes_attention_images_of_a_trained_aden_run(syn_dir, tmp_path, capsys):
  from tfrec import evaluate
  run_dir = str(tmp_path / "aden")
  train_lib.train(make_config(syn_dir, run_dir, model="aden", steps_per_epoch=2, epochs=1,
                              model_kwargs=dict(num_heads=2)))
  evaluate.define_flags()
  from absl import flags
  fl = flags.FLAGS
  fl.unparse_flags()
  fl(["prog", f"--run_dir={run_dir}", "--attention_examples=3", "--splits=test",
      "--checkpoint=final"])
  try:
    evaluate.main(["prog"])
  finally:
    fl.unparse_flags()
  printed = capsys.readouterr().out
  assert printed.count("### test example") == 3 and "| position | item |" in printed
  events = glob.glob(os.path.join(run_dir, "logs", "attention", "test", "events.*"))
  assert len(events) == 1
  images, texts = 0, 0
  for raw in tf.data.TFRecordDataset(events):
    event = tf.compat.v1.Event.FromString(raw.numpy())
    for value in event.summary.value:
      if value.metadata.plugin_data.plugin_name == "images":
        tensor = tf.make_ndarray(value.tensor)  # [width, height, png...]
        png = tf.io.decode_png(tensor[2]).numpy()
        # Two domains x (2 heads + mean) rows of 12 px, a 6 px band between them.
        assert png.shape[0] == 2 * 3 * attention.CELL + attention.CELL // 2
        images += 1
      elif value.metadata.plugin_data.plugin_name == "text":
        texts += 1
  assert images == 3 and texts == 3


def test_a_model_without_attention_weights_is_refused():
  model = build("mf", num_users=6)
  with pytest.raises(ValueError, match="does not expose attention"):
    attention.case_studies(model, {"item_id": tf.constant([1])}, small_store(), 1)
