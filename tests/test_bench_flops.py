"""FLOP counting of traced graphs (tfrec.bench.flops) on hand-computed cases, and the train
bench's helpers and command line at toy sizes."""

import contextlib
import importlib
import io
import sys

import tfrec  # noqa: F401  (Keras 2 switch before TensorFlow)

from absl import flags
from absl.testing import flagsaver
import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

import tfrec.bench
from tfrec.bench import flops
from tfrec.layers.attention import MultiHeadAttentionBlock


def spec(*shape):
  return tf.TensorSpec(shape, tf.float32)


# ------------------------------------------------------------------ formulas


def test_formulas_by_hand():
  assert flops.matmul_flops([2, 3], [3, 5]) == 2 * 2 * 3 * 5
  assert flops.matmul_flops([3, 2], [5, 3], transpose_a=True, transpose_b=True) == 60
  assert flops.matmul_flops([4, 1, 2, 3], [6, 3, 5]) == 2 * 4 * 6 * 2 * 3 * 5  # broadcast
  attention = flops.einsum_flops("bqhe,bkhe->bhqk", [[2, 3, 4, 5], [2, 7, 4, 5]])
  assert attention == 2 * 2 * 3 * 4 * 5 * 7
  assert flops.einsum_flops("...ij,jk->...ik", [[6, 2, 3], [3, 5]]) == 2 * 6 * 2 * 3 * 5
  assert flops.einsum_flops("i...j,jk->i...k", [[2, 6, 7, 3], [3, 5]]) == 2 * 2 * 6 * 7 * 3 * 5
  assert flops.einsum_flops("bij->bji", [[2, 3, 4]]) == 0  # a transpose is no matmul
  assert flops.conv_flops([1, 8, 8, 16], [3, 3, 4, 16]) == 2 * 8 * 8 * 16 * 3 * 3 * 4
  assert flops.conv_flops([1, 8, 8, 8], [3, 3, 4, 2], depthwise=True) == 2 * 8 * 8 * 8 * 9
  with pytest.raises(ValueError, match="contraction"):
    flops.matmul_flops([2, 3], [4, 5])


# ------------------------------------------------------------------ traced graphs


def test_dense_forward_is_2_b_in_out():
  layer = keras.layers.Dense(7)
  assert flops.function_flops(layer, spec(4, 5)).total == 2 * 4 * 5 * 7
  # A 3-D input goes through Tensordot: one [b*s, in] x [in, out] matmul.
  count = flops.function_flops(keras.layers.Dense(7), spec(4, 3, 5))
  assert count.total == 2 * 4 * 3 * 5 * 7 and count.ops == {"MatMul": 1}
  assert count.unknown == ()


def test_matmul_transposes_and_batch_matmul_in_graph():
  def fn(a, b, c, d):
    return (tf.matmul(a, b, transpose_a=True, transpose_b=True),  # [3,2]^T x [5,3]^T
            tf.matmul(c, d, adjoint_b=True))                       # [4,1,2,3] x [6,5,3]^T
  count = flops.function_flops(fn, spec(3, 2), spec(5, 3), spec(4, 1, 2, 3), spec(6, 5, 3))
  assert count.by_op["MatMul"] == 2 * 2 * 3 * 5
  assert count.by_op["BatchMatMulV2"] == 2 * 4 * 6 * 2 * 3 * 5


def test_einsum_in_graph():
  count = flops.function_flops(lambda q, k: tf.einsum("bqhe,bkhe->bhqk", q, k),
                               spec(2, 3, 4, 5), spec(2, 7, 4, 5))
  assert count.by_op == {"Einsum": 2 * 2 * 3 * 7 * 4 * 5}


def test_attention_block_forward_by_hand():
  b, q, k, d, h, f = 2, 3, 5, 8, 2, 6
  e = d // h
  block = MultiHeadAttentionBlock(num_heads=h, ff_dim=f)
  block(tf.zeros([b, q, d]), tf.zeros([b, k, d]))  # build
  expected = (2 * b * q * d * h * e          # Q projection
              + 2 * (2 * b * k * d * h * e)  # K and V projections
              + 2 * b * h * q * k * e        # Q K^T
              + 2 * b * h * q * k * e        # weights x V
              + 2 * b * q * h * e * d        # output projection W^O
              + 2 * b * q * d * f            # feed-forward in
              + 2 * b * q * f * d)           # feed-forward out
  count = flops.function_flops(lambda x, y: block(x, y, training=False),
                               spec(b, q, d), spec(b, k, d))
  assert count.total == expected and count.unknown == ()


def test_dense_forward_plus_backward_is_3x_forward():
  layer = keras.layers.Dense(7)
  layer.build([None, 5])

  def forward_backward(x):
    with tf.GradientTape() as tape:
      tape.watch(x)
      y = tf.reduce_sum(layer(x))
    return tape.gradient(y, [x, layer.kernel])

  forward = flops.function_flops(layer, spec(4, 5)).total
  assert flops.function_flops(forward_backward, spec(4, 5)).total == 3 * forward


def test_nested_function_calls_are_followed_once_per_call():
  @tf.function
  def inner(x, w):
    return tf.matmul(x, w, transpose_b=True)

  @tf.function
  def outer(x, w):
    return inner(x, w) + inner(x, w)

  def step(x, w):
    with tf.GradientTape() as tape:
      tape.watch([x, w])
      y = tf.reduce_sum(outer(x, w))
    return tape.gradient(y, [x, w])

  one = 2 * 4 * 3 * 5
  assert flops.function_flops(outer, spec(4, 3), spec(5, 3)).total == 2 * one
  count = flops.function_flops(step, spec(4, 3), spec(5, 3))
  assert count.total == 2 * 3 * one and count.unknown == ()


def test_inside_a_function_body_a_later_output_argument_is_resolved():
  @tf.function
  def inner(x, w):
    _, r = tf.linalg.qr(x)  # "qr:r:0" in the body: Qr's second output, [3, 3]
    return tf.matmul(r, w)

  count = flops.function_flops(lambda x, w: inner(x, w), spec(4, 3), spec(3, 5))
  assert count.total == 2 * 3 * 3 * 5  # not 2 * 4 * 3 * 5, the first output's


def test_conv2d_forward():
  layer = keras.layers.Conv2D(6, 3, padding="same")
  count = flops.function_flops(layer, spec(2, 8, 8, 4))
  assert count.by_op == {"Conv2D": 2 * 2 * 8 * 8 * 6 * 3 * 3 * 4}


def test_unknown_shapes_are_listed_not_guessed():
  count = flops.function_flops(lambda a, b: tf.matmul(a, b), spec(None, 3), spec(3, 5))
  assert count.total == 0 and len(count.unknown) == 1 and "MatMul" in count.unknown[0]


def test_train_step_of_a_compiled_model():
  b, n_in, hidden = 8, 16, 32
  model = keras.Sequential([keras.layers.Dense(hidden, activation="relu"), keras.layers.Dense(1)])
  model.build([None, n_in])
  model.compile(keras.optimizers.Adam(1e-3), keras.losses.BinaryCrossentropy(from_logits=True))
  count = flops.train_step_flops(model, (tf.zeros([b, n_in]), tf.zeros([b, 1])))
  first, second = 2 * b * n_in * hidden, 2 * b * hidden
  # Forward; backward: the first layer's kernel gradient only (its input is data), the
  # second layer's kernel and input gradients. Adam's update is elementwise: not counted.
  assert count.total == 2 * first + 3 * second and count.unknown == ()
  assert model.optimizer.iterations.numpy() == 0  # traced, never run


# ------------------------------------------------------------------ the train bench


@pytest.fixture
def train():
  """`tfrec.bench.train`, its flags defined for this test only.

  A bench defines its flags in absl's process-wide FLAGS when imported, and
  `tfrec.flags.define_flags` defines nothing once a flag named `model` exists: so the module is
  imported here, not at collection, and the flags it added are removed afterwards.
  """
  before = set(flags.FLAGS)
  module = importlib.import_module("tfrec.bench.train")
  if not flags.FLAGS.is_parsed():
    flags.FLAGS.mark_as_parsed()
  yield module
  for name in set(flags.FLAGS) - before:
    delattr(flags.FLAGS, name)
  sys.modules.pop("tfrec.bench.train", None)
  if hasattr(tfrec.bench, "train"):
    delattr(tfrec.bench, "train")


def test_ratios_are_paired_per_turn(train):
  assert train.quartiles([3.0]) == (3.0, 3.0, 3.0)
  median, low, high = train.paired_ratio([1.0, 2.0, 1.0], [2.0, 4.0, 3.0])  # a is 2-3x faster
  assert (median, low, high) == (2.0, 2.0, 2.5)


def test_vs_deepctr_without_deepctr_names_the_install_command(train, monkeypatch):
  monkeypatch.setitem(sys.modules, "deepctr", None)  # import fails as if not installed
  with flagsaver.flagsaver(vs="deepctr"), pytest.raises(SystemExit) as exit_info:
    train.main([])
  assert 'pip install -e ".[bench]"' in str(exit_info.value.code)


def test_deepctr_inputs_are_the_target_domain_of_the_same_batch(train):
  x, y = train.features(batch=4, seq=3, num_items=20, seed=0)
  assert (x["target_timestamps"][:, 1:] >= x["target_timestamps"][:, :-1]).all()
  assert (x["target_timestamps"] < x["timestamp"][:, None]).all()
  dx, dy = train.deepctr_inputs(x, y)
  assert (dx["hist_item_id"] == x["target_item_ids"]).all()
  assert dx["item_id"].shape == (4, 1) and (dx["seq_length"] == 3).all()
  assert dy.shape == (4, 1)


def test_bench_train_runs_at_toy_sizes(train):
  out = io.StringIO()
  with flagsaver.flagsaver(model="bst", steps=2, warmup=1, batch=16, seq=4, dim=16, heads=2,
                           ff_dim=16, items=50, categories=5, matmul_size=64), \
       contextlib.redirect_stdout(out):
    train.main([])
  text = out.getvalue()
  row = next(line for line in text.splitlines() if line.strip().startswith("bst"))
  assert "%" in row and "matmul 64x64 float32" in text


def test_bench_train_also_trains_more_models_on_the_same_tensors(train):
  # THACIL takes its own item features (visual, category) while BST takes id too: the default
  # --item_features leaves each model its own.
  out = io.StringIO()
  with flagsaver.flagsaver(model="thacil", also=["bst"], steps=2, warmup=1, batch=8, seq=40,
                           dim=16, heads=2, ff_dim=16, items=50, categories=5,
                           matmul_size=64), contextlib.redirect_stdout(out):
    train.main([])
  text = out.getvalue()
  assert any(line.strip().startswith("thacil") for line in text.splitlines())
  assert any(line.strip().startswith("bst") for line in text.splitlines())
  assert "ours thacil / ours bst:" in text and "each model default" in text
  assert "per instance (ADAPT Table V): thacil train" in text and "inference" in text


def test_bench_builds_semi_as_the_paper_configures_it():
  """--model_args reaches the model: SEMI's paper inputs (frozen pre-extracted vectors, dropout
  after the MLP only) read the store's pre-extracted column, and no block drops out."""
  from tfrec.bench import common
  store = common.random_item_store(30, 4, 16, seed=0)
  np.testing.assert_array_equal(store.pre_extracted[0], 0.0)
  assert store.pre_extracted.shape == (31, 16) and np.abs(store.pre_extracted[1:]).sum() > 0
  model = common.build_model("semi", store, 4, 5, 16, 2, 16, dropout=0.1,
                             model_args=["item_features=[pre_extracted],attention_dropout=0"])
  assert model.dropout == 0.1 and model.block_dropout == 0.0
  assert model.inter_block.dropout == 0.0
  assert list(model.item_encoder.features) == ["pre_extracted"]
  with pytest.raises(ValueError, match="no_such_arg"):
    common.build_model("semi", store, 4, 5, 16, 2, 16, model_args=["no_such_arg=1"])


def test_a_deduplicating_extractor_is_counted_per_position_with_the_same_values():
  """ADAPT's extractor computes each distinct item once (dynamic shapes); FLOP counting traces
  it per position: every position's visual projection and eq. 2-4 counted, none unknown."""
  from tfrec.bench import common
  from tfrec.data import schema
  from tfrec.layers._utils import per_position_items
  from tfrec.layers.adapt_extractor import ContentExtractor
  store = common.random_item_store(30, 4, 16, seed=0)
  assert (store.title[1:] > 0).sum(axis=1).min() >= 4 and (store.title[0] == 0).all()
  ext = ContentExtractor(30, 8, visual_dim=16, num_tokens=common.NUM_TOKENS)
  ext(tf.constant([1]))
  ext.set_item_features(store)
  ids = tf.constant([[3, 3, 20, 0], [20, 7, 3, 28]])
  count = flops.function_flops(lambda x: ext(x), ids)
  n, words = 8, schema.MAX_TITLE_LEN
  # E_v: [n, 16] x [16, 8]; eq. 2 W_1 and W_a: [n * L, 8] x [8, 8] each (every position).
  assert count.unknown == ()
  assert count.total == 2 * n * 16 * 8 + 2 * (2 * n * words * 8 * 8)
  deduplicated = ext(ids)
  with per_position_items():
    every = tf.function(lambda x: ext(x))(ids)
  for part in ("visual", "title"):
    np.testing.assert_allclose(every[part].numpy(), deduplicated[part].numpy(), rtol=1e-5,
                               atol=1e-6)
