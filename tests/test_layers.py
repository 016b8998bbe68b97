"""tfrec.layers: golden values (by hand and against numpy versions of SEMI eq. 2-3), masking and
permutation properties, time blocks, gradients, config round trips, serialisation, save/load."""

import inspect
import json

import numpy as np
import pytest

import tfrec  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
import tensorflow as tf  # noqa: E402
import tf_keras as keras  # noqa: E402

from tfrec.layers import (MLP, MultiHeadAttentionBlock, SequencePooling,  # noqa: E402
                          TargetAttention, TimeBlockEmbedding, masked_softmax, time_block_index)

from tfrec.layers.item_encoder import ItemEncoder  # noqa: E402
HOUR = 3600


# ----------------------------------------------------------------------------- numpy references


def np_softmax_masked(logits, mask):
  """Softmax over the last axis; masked entries 0, all-masked rows all 0."""
  logits = np.where(mask, logits, -np.inf)
  top = np.max(logits, axis=-1, keepdims=True)
  top = np.where(np.isfinite(top), top, 0.0)
  e = np.where(mask, np.exp(logits - top), 0.0)
  total = e.sum(-1, keepdims=True)
  return e / np.where(total > 0, total, 1.0)


def np_layer_norm(x, gamma, beta, eps):
  mean = x.mean(-1, keepdims=True)
  var = x.var(-1, keepdims=True)
  return (x - mean) / np.sqrt(var + eps) * gamma + beta


def block_weights(layer):
  """The block's variables by their name inside the layer, e.g. 'query_kernel', 'ff_norm/gamma'."""
  return {v.name.split(layer.name + "/", 1)[1].split(":")[0]: v.numpy() for v in layer.weights}


def np_attention_block(w, query, value, key_mask, num_heads, use_residual=True,
                       use_layer_norm=True, eps=1.001e-5, norm_order="post"):
  """SEMI eq. 2-3, head by head, + W^O, residuals and a ReLU feed-forward network; layer norms
  after each residual ("post"), before each sublayer ("pre": SASRec §III-B's
  x + Dropout(g(LN(x))), keys and values normalised too), or as SASRec's code ("sasrec": only
  the query normalised, the residual from the normalised input)."""
  head_dim = w["query_kernel"].shape[1] // num_heads
  bias = lambda n: w.get(f"{n}_bias", 0.0)  # noqa: E731
  if norm_order != "post":
    ln = lambda x, n: np_layer_norm(x, w[f"{n}_norm/gamma"], w[f"{n}_norm/beta"], eps)  # noqa
    q_in = ln(query, "attention")
    kv = ln(value, "attention") if norm_order == "pre" else value
    q = q_in @ w["query_kernel"] + bias("query")
    k, v = kv @ w["key_kernel"] + bias("key"), kv @ w["value_kernel"] + bias("value")
    heads = []
    for i in range(num_heads):
      cols = slice(i * head_dim, (i + 1) * head_dim)
      logits = q[..., cols] @ np.swapaxes(k[..., cols], -1, -2) / np.sqrt(head_dim)
      heads.append(np_softmax_masked(logits, key_mask[:, None, :]) @ v[..., cols])
    attended = np.concatenate(heads, axis=-1) @ w["output_kernel"] + bias("output")
    x = (query if norm_order == "pre" else q_in) + attended
    x_in = ln(x, "ff")
    hidden = np.maximum(x_in @ w["ff_hidden/kernel"] + w["ff_hidden/bias"], 0.0)
    y = hidden @ w["ff_output/kernel"] + w["ff_output/bias"]
    return (x if norm_order == "pre" else x_in) + y
  q = query @ w["query_kernel"] + bias("query")
  k = value @ w["key_kernel"] + bias("key")
  v = value @ w["value_kernel"] + bias("value")
  heads = []
  for i in range(num_heads):  # eq. 2: head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V)
    cols = slice(i * head_dim, (i + 1) * head_dim)
    logits = q[..., cols] @ np.swapaxes(k[..., cols], -1, -2) / np.sqrt(head_dim)  # eq. 3
    heads.append(np_softmax_masked(logits, key_mask[:, None, :]) @ v[..., cols])
  attended = np.concatenate(heads, axis=-1) @ w["output_kernel"] + bias("output")
  x = query + attended if use_residual else attended
  if use_layer_norm:
    x = np_layer_norm(x, w["attention_norm/gamma"], w["attention_norm/beta"], eps)
  if "ff_hidden/kernel" in w:
    hidden = np.maximum(x @ w["ff_hidden/kernel"] + w["ff_hidden/bias"], 0.0)
    y = hidden @ w["ff_output/kernel"] + w["ff_output/bias"]
    x = x + y if use_residual else y
    if use_layer_norm:
      x = np_layer_norm(x, w["ff_norm/gamma"], w["ff_norm/beta"], eps)
  return x


def random_mask(rng, batch, seq, all_padded_row=True):
  """Right-padded masks with random lengths; row 0 all padded when asked."""
  lengths = rng.integers(1, seq + 1, size=batch)
  if all_padded_row:
    lengths[0] = 0
  return np.arange(seq)[None, :] < lengths[:, None]


def normal(rng, *shape):
  return rng.normal(size=shape).astype(np.float32)


def _np(x):
  return x.numpy() if hasattr(x, "numpy") else np.asarray(x)


# ----------------------------------------------------------------------------- masked_softmax


def test_masked_softmax_golden_and_all_masked_row():
  logits = tf.constant([[1.0, 2.0, 3.0], [5.0, -7.0, 1e30]])
  mask = tf.constant([[True, True, False], [False, False, False]])
  e = np.e
  np.testing.assert_allclose(masked_softmax(logits, mask).numpy(),
                             [[1 / (1 + e), e / (1 + e), 0.0], [0.0, 0.0, 0.0]], atol=1e-6)
  np.testing.assert_allclose(masked_softmax(logits[:1]).numpy(),
                             np.exp([[1, 2, 3]]) / np.exp([1, 2, 3]).sum(), rtol=1e-6)
  with tf.GradientTape() as tape:
    tape.watch(logits)
    out = tf.reduce_sum(masked_softmax(logits, mask) * tf.constant([[1.0, 2.0, 3.0]]))
  grad = tape.gradient(out, logits).numpy()
  assert np.isfinite(grad).all()
  np.testing.assert_array_equal(grad[:, 2], 0.0)  # masked logits get no gradient
  np.testing.assert_array_equal(grad[1], 0.0)


# ----------------------------------------------------------------------------- attention block


def test_attention_golden_by_hand():
  # One head, dim 2, identity projections, zero biases: A = softmax(X X^T / sqrt(2)) X.
  # Rows of X are e1, e2, so the logits are I / sqrt(2) and each query puts
  # sigmoid(1/sqrt(2)) = 0.669762 on itself and 0.330238 on the other key.
  x = tf.constant([[[1.0, 0.0], [0.0, 1.0]]])
  bare = MultiHeadAttentionBlock(num_heads=1, ff_dim=0, use_layer_norm=False,
                                 use_residual=False, kernel_initializer="identity")
  np.testing.assert_allclose(bare(x).numpy(), [[[0.669762, 0.330238], [0.330238, 0.669762]]],
                             atol=1e-6)
  # Key 1 padded: every query puts all its weight on key 0.
  out, weights = bare(x, key_mask=tf.constant([[True, False]]), return_attention_scores=True)
  np.testing.assert_allclose(out.numpy(), [[[1.0, 0.0], [1.0, 0.0]]], atol=1e-6)
  np.testing.assert_allclose(weights.numpy(), [[[[1.0, 0.0], [1.0, 0.0]]]], atol=1e-6)
  # Post-norm: LayerNorm(X + A); X + A = [1.669762, 0.330238] has mean 1 and std 0.669762.
  normed = MultiHeadAttentionBlock(num_heads=1, ff_dim=0, kernel_initializer="identity")
  unit = 0.669762 / np.sqrt(0.669762 ** 2 + 1.001e-5)  # the layer norm's epsilon
  np.testing.assert_allclose(normed(x).numpy(), [[[unit, -unit], [-unit, unit]]], atol=1e-5)


@pytest.mark.parametrize("use_residual,use_layer_norm,ff_dim", [
    (True, True, 5), (False, False, 0), (True, False, None)])
def test_attention_matches_numpy_eq2_3(use_residual, use_layer_norm, ff_dim):
  rng = np.random.default_rng(0)
  query, value = normal(rng, 3, 4, 6), normal(rng, 3, 5, 6)
  key_mask = random_mask(rng, 3, 5)
  layer = MultiHeadAttentionBlock(num_heads=2, ff_dim=ff_dim, use_residual=use_residual,
                                  use_layer_norm=use_layer_norm)
  out = layer(query, value, key_mask=key_mask).numpy()
  # Random biases and norm parameters, so that they are checked too.
  layer.set_weights([normal(rng, *w.shape) for w in layer.get_weights()])
  out = layer(query, value, key_mask=key_mask).numpy()
  want = np_attention_block(block_weights(layer), query, value, key_mask, 2, use_residual,
                            use_layer_norm)
  np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("norm_order", ["pre", "sasrec"])
@pytest.mark.parametrize("self_attention", [True, False])
def test_attention_pre_norm_orders_match_numpy(norm_order, self_attention):
  rng = np.random.default_rng(1)
  query = normal(rng, 3, 4, 6)
  value = query if self_attention else normal(rng, 3, 5, 6)
  key_mask = random_mask(rng, 3, value.shape[1], all_padded_row=False)
  layer = MultiHeadAttentionBlock(num_heads=2, ff_dim=5, norm_order=norm_order)
  call = lambda: (layer(query, key_mask=key_mask) if self_attention  # noqa: E731
                  else layer(query, value, key_mask=key_mask)).numpy()
  call()
  layer.set_weights([normal(rng, *w.shape) for w in layer.get_weights()])
  want = np_attention_block(block_weights(layer), query, value, key_mask, 2,
                            norm_order=norm_order)
  np.testing.assert_allclose(call(), want, rtol=1e-4, atol=1e-4)
  # The orders differ (the test would pass for any order otherwise).
  other = np_attention_block(block_weights(layer), query, value, key_mask, 2,
                             norm_order="sasrec" if norm_order == "pre" else "pre")
  assert np.abs(call() - other).max() > 1e-2


def test_attention_unknown_norm_order_is_refused():
  with pytest.raises(ValueError, match="norm_order"):
    MultiHeadAttentionBlock(norm_order="middle")


def test_attention_head_dim_and_shapes():
  layer = MultiHeadAttentionBlock(num_heads=3, head_dim=5, ff_dim=7)
  out, weights = layer(tf.zeros([2, 4, 6]), tf.zeros([2, 9, 6]), return_attention_scores=True)
  assert out.shape == (2, 4, 6) and weights.shape == (2, 3, 4, 9)
  assert layer.weights[0].shape == (6, 15)


@pytest.mark.parametrize("seed", range(3))
def test_attention_padded_values_cannot_change_output(seed):
  rng = np.random.default_rng(seed)
  x = normal(rng, 4, 6, 8)
  mask = random_mask(rng, 4, 6)
  layer = MultiHeadAttentionBlock(num_heads=2, ff_dim=16)
  noisy = np.where(mask[..., None], x, 100.0 * normal(rng, 4, 6, 8))
  out, weights = layer(x, query_mask=mask, return_attention_scores=True)
  out_noisy = layer(noisy, query_mask=mask)
  np.testing.assert_allclose(out.numpy(), out_noisy.numpy(), atol=1e-5)
  np.testing.assert_array_equal(out.numpy()[~mask], 0.0)  # padded queries zeroed
  np.testing.assert_array_equal(weights.numpy()[np.broadcast_to(~mask[:, None, None, :],
                                                                weights.shape)], 0.0)
  # Cross-attention: padded keys' values, query unmasked.
  keys = normal(rng, 4, 6, 8)
  noisy_keys = np.where(mask[..., None], keys, -50.0 * normal(rng, 4, 6, 8))
  np.testing.assert_allclose(layer(x, keys, key_mask=mask).numpy(),
                             layer(x, noisy_keys, key_mask=mask).numpy(), atol=1e-5)


def test_attention_all_padded_rows_are_finite():
  layer = MultiHeadAttentionBlock(num_heads=2)
  x = tf.random.normal([2, 3, 4])
  mask = tf.zeros([2, 3], tf.bool)
  out, weights = layer(x, x, key_mask=mask, return_attention_scores=True)
  assert np.isfinite(out.numpy()).all()
  np.testing.assert_array_equal(weights.numpy(), 0.0)
  np.testing.assert_array_equal(layer(x, query_mask=mask).numpy(), 0.0)


def test_self_attention_skips_the_no_key_product_without_changing_values_or_gradients():
  """Self-attention over one mask skips the has-key product (only padded queries lack keys and
  the query mask zeroes them); an equal key mask passed as another tensor takes the general
  path: the same outputs and gradients, all-padded rows included."""
  rng = np.random.default_rng(4)
  x = tf.constant(normal(rng, 3, 5, 8))
  mask = random_mask(rng, 3, 5)  # has an all-padded row
  layer = MultiHeadAttentionBlock(num_heads=2, ff_dim=8)
  layer(x, query_mask=mask)
  outs, grads = [], []
  for key_mask in (None, tf.identity(tf.constant(mask))):
    with tf.GradientTape() as tape:
      tape.watch(x)
      out = layer(x, query_mask=mask, key_mask=key_mask)
      loss = tf.reduce_sum(out * tf.sin(tf.range(8, dtype=tf.float32)))
    outs.append(out.numpy())
    grads.append(tape.gradient(loss, [x] + layer.trainable_weights))
  np.testing.assert_allclose(outs[0], outs[1], atol=1e-6)
  for a, b in zip(*grads):
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)
  assert all(np.isfinite(g.numpy()).all() for g in grads[0])


def test_attention_scale_is_folded_into_the_query_projection():
  """eq. 3's 1/sqrt(d_h) on the scores, computed by hand from the layer's own weights."""
  rng = np.random.default_rng(5)
  x = normal(rng, 2, 3, 4)
  layer = MultiHeadAttentionBlock(num_heads=2, ff_dim=0, use_layer_norm=False,
                                  use_residual=False)
  layer(x)
  for w in layer.weights:  # non-zero biases: the scale must reach b^Q too
    w.assign(rng.normal(size=w.shape).astype(np.float32) * 0.5)
  _, weights = layer(x, return_attention_scores=True)
  wq, bq, wk, bk = (v.numpy() for v in layer.weights[:4])
  q = (x @ wq + bq).reshape(2, 3, 2, 2).transpose(0, 2, 1, 3)
  k = (x @ wk + bk).reshape(2, 3, 2, 2).transpose(0, 2, 1, 3)
  scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(2.0)
  expected = np.exp(scores - scores.max(-1, keepdims=True))
  np.testing.assert_allclose(weights.numpy(), expected / expected.sum(-1, keepdims=True),
                             atol=1e-6)


def test_self_attention_is_permutation_equivariant():
  rng = np.random.default_rng(1)
  x = normal(rng, 3, 5, 8)
  mask = random_mask(rng, 3, 5, all_padded_row=False)
  layer = MultiHeadAttentionBlock(num_heads=2)
  perm = rng.permutation(5)
  out = layer(x, query_mask=mask).numpy()
  out_perm = layer(x[:, perm], query_mask=mask[:, perm]).numpy()
  np.testing.assert_allclose(out[:, perm], out_perm, atol=1e-5)


def test_attention_mask_restricts_keys_forward():
  """A causal attention_mask (THACIL eq. 7 style): position i cannot see positions > i."""
  rng = np.random.default_rng(2)
  x = normal(rng, 2, 5, 4)
  causal = np.tril(np.ones([5, 5], bool))[None].repeat(2, 0)
  layer = MultiHeadAttentionBlock(num_heads=2)
  changed = x.copy()
  changed[:, 3:] = normal(rng, 2, 2, 4)
  np.testing.assert_allclose(layer(x, attention_mask=causal).numpy()[:, :3],
                             layer(changed, attention_mask=causal).numpy()[:, :3], atol=1e-5)


def test_attention_dropout_and_xla():
  layer = MultiHeadAttentionBlock(num_heads=2, dropout=0.5, attention_dropout=0.5)
  x = tf.random.normal([2, 4, 8])
  mask = tf.constant([[True, True, False, False], [False] * 4])
  eval_out = layer(x, query_mask=mask, training=False)
  np.testing.assert_array_equal(eval_out.numpy(), layer(x, query_mask=mask).numpy())
  assert not np.allclose(eval_out.numpy(), layer(x, query_mask=mask, training=True).numpy())
  compiled = tf.function(lambda a, m: layer(a, query_mask=m), jit_compile=True)
  np.testing.assert_allclose(compiled(x, mask).numpy(), eval_out.numpy(), atol=1e-5)


def test_attention_bad_arguments():
  with pytest.raises(ValueError, match="num_heads"):
    MultiHeadAttentionBlock(num_heads=0)
  with pytest.raises(ValueError, match="dropout"):
    MultiHeadAttentionBlock(dropout=1.0)
  with pytest.raises(ValueError, match="not divisible"):
    MultiHeadAttentionBlock(num_heads=3)(tf.zeros([1, 2, 4]))
  with pytest.raises(ValueError, match="differs from the query width"):
    MultiHeadAttentionBlock(num_heads=2)(tf.zeros([1, 2, 4]), tf.zeros([1, 3, 6]))
  with pytest.raises(ValueError, match="together with `key`"):
    MultiHeadAttentionBlock(num_heads=2)(tf.zeros([1, 2, 4]), key=tf.zeros([1, 3, 4]))


# ----------------------------------------------------------------------------- time blocks


def test_time_block_indices_by_hand():
  ref = 1_000_000
  ago = np.array([[0, 3599, 3600, 10 * HOUR, 10 * HOUR + 3599, 23 * HOUR - 1, 23 * HOUR,
                   500 * HOUR, -5]], np.int64)
  # 0 s and 3599 s ago: this hour (0); 3600 s: block 1; 10 h: 10; 22:59:59 ago: 22; 23 h and
  # 500 h ago: the "older" block 23 (num_blocks - 1); 5 s in the future: clipped to 0.
  got = time_block_index(tf.constant(ref - ago), tf.constant([ref], tf.int64), HOUR, 24)
  np.testing.assert_array_equal(got.numpy(), [[0, 0, 1, 10, 10, 22, 23, 23, 0]])
  got = time_block_index(tf.constant(ref - ago, tf.int32), tf.constant([[ref]]), HOUR, 24)
  np.testing.assert_array_equal(got.numpy(), [[0, 0, 1, 10, 10, 22, 23, 23, 0]])


def test_time_block_embedding_rows_padding_and_sharing():
  layer = TimeBlockEmbedding(output_dim=3, num_blocks=4)
  ref = np.array([10 * HOUR, 20 * HOUR], np.int64)
  # Source-domain and target-domain events with the same distance to the request.
  source = ref[:, None] - np.array([[0, 2 * HOUR, 9 * HOUR]], np.int64)
  target = ref[:, None] - np.array([[9 * HOUR, 2 * HOUR, 0]], np.int64)
  mask = np.array([[True, True, True], [True, True, False]])
  out_s = layer(source, ref, mask=mask).numpy()
  out_t = layer(target, ref).numpy()
  table = layer.embeddings.numpy()
  np.testing.assert_allclose(out_s[0], table[[0, 2, 3]])
  np.testing.assert_allclose(out_s[1, :2], table[[0, 2]])
  np.testing.assert_array_equal(out_s[1, 2], 0.0)  # padded
  np.testing.assert_allclose(out_t[:, ::-1], np.stack([table[[0, 2, 3]]] * 2))
  assert out_s.shape == (2, 3, 3) and out_s.dtype == np.float32
  with pytest.raises(ValueError, match="num_blocks"):
    TimeBlockEmbedding(output_dim=3, num_blocks=0)


# ----------------------------------------------------------------------------- target attention


def np_din(layer, query, keys, mask):
  """DIN activation unit: sigmoid MLP over [q, k, q - k, q * k], unnormalised masked sum."""
  w = [v.numpy() for v in layer.weights]
  q = np.broadcast_to(query[:, None, :], keys.shape)
  h = np.concatenate([q, keys, q - keys, q * keys], axis=-1)
  for i in range(0, len(w) - 2, 2):
    h = 1.0 / (1.0 + np.exp(-(h @ w[i] + w[i + 1])))
  scores = (h @ w[-2] + w[-1])[..., 0]
  return np.einsum("bs,bsd->bd", np.where(mask, scores, 0.0), keys)


def test_target_attention_matches_numpy_in_both_modes():
  rng = np.random.default_rng(3)
  target, keys = normal(rng, 3, 4), normal(rng, 3, 5, 4)
  mask = random_mask(rng, 3, 5)
  dot = TargetAttention(mode="dot", num_heads=2)
  out = dot(target, keys, mask).numpy()
  want = np_attention_block(block_weights(dot._block), target[:, None], keys, mask, 2)[:, 0]
  want[~mask.any(-1)] = 0.0
  np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5)
  din = TargetAttention(mode="din", din_units=[6, 3])
  np.testing.assert_allclose(din(target, keys, mask).numpy(), np_din(din, target, keys, mask),
                             rtol=1e-4, atol=1e-5)
  soft = TargetAttention(mode="din", din_units=[3], din_softmax=True)
  weights_sum = soft(target, np.ones_like(keys), mask).numpy()  # sum of weights per feature
  np.testing.assert_allclose(weights_sum, np.where(mask.any(-1), 1.0, 0.0)[:, None] *
                             np.ones([3, 4]), atol=1e-5)


@pytest.mark.parametrize("mode", ["dot", "din"])
def test_target_attention_masking_permutation_and_empty_rows(mode):
  rng = np.random.default_rng(4)
  target, keys = normal(rng, 4, 6), normal(rng, 4, 7, 6)
  mask = random_mask(rng, 4, 7)
  layer = TargetAttention(mode=mode, num_heads=2, din_units=[5])
  out = layer(target, keys, mask).numpy()
  noisy = np.where(mask[..., None], keys, 30.0 * normal(rng, 4, 7, 6))
  np.testing.assert_allclose(layer(target, noisy, mask).numpy(), out, atol=1e-5)
  perm = rng.permutation(7)
  np.testing.assert_allclose(layer(target, keys[:, perm], mask[:, perm]).numpy(), out,
                             atol=1e-5)
  np.testing.assert_array_equal(out[0], 0.0)  # row 0 has no real item
  assert np.isfinite(out).all() and out.shape == (4, 6)
  # Several targets against one sequence == one target at a time.
  targets = normal(rng, 4, 3, 6)
  many = layer(targets, keys, mask).numpy()
  assert many.shape == (4, 3, 6)
  for j in range(3):
    np.testing.assert_allclose(many[:, j], layer(targets[:, j], keys, mask).numpy(), atol=1e-5)


def test_target_attention_bad_mode():
  with pytest.raises(ValueError, match="mode"):
    TargetAttention(mode="additive")


# ----------------------------------------------------------------------------- MLP and pooling


def test_mlp_golden_with_ones():
  x = tf.constant([[1.0, 2.0]])
  mlp = MLP([2, 1], kernel_initializer="ones", linear_output=True)
  np.testing.assert_allclose(mlp(x).numpy(), [[6.0]])  # relu([3, 3]) . [1, 1]
  np.testing.assert_allclose(mlp(-x).numpy(), [[0.0]])  # relu([-3, -3]) = 0
  sig = MLP([1], activation="sigmoid", kernel_initializer="ones")
  np.testing.assert_allclose(sig(x).numpy(), [[1.0 / (1.0 + np.exp(-3.0))]], rtol=1e-6)
  bn = MLP([2], kernel_initializer="ones", use_batch_norm=True, activation="linear")
  np.testing.assert_allclose(bn(x, training=False).numpy(), [[3.0 / np.sqrt(1.001)] * 2],
                             rtol=1e-5)  # fresh moving stats: (x - 0) / sqrt(1 + 1e-3)
  drop = MLP([64, 64], dropout=0.5)
  x64 = tf.ones([2, 64])
  np.testing.assert_array_equal(drop(x64).numpy(), drop(x64, training=False).numpy())
  assert not np.allclose(drop(x64, training=True).numpy(), drop(x64).numpy())
  assert MLP([4, 3])(tf.zeros([2, 5, 7])).shape == (2, 5, 3)
  with pytest.raises(ValueError, match="units"):
    MLP([])


def test_pooling_golden_and_empty_rows():
  x = tf.constant([[[1.0, -4.0], [3.0, -2.0], [100.0, 100.0]],
                   [[9.0, 9.0], [9.0, 9.0], [9.0, 9.0]]])
  mask = tf.constant([[True, True, False], [False, False, False]])
  np.testing.assert_allclose(SequencePooling("mean")(x, mask).numpy(), [[2.0, -3.0], [0, 0]])
  np.testing.assert_allclose(SequencePooling("sum")(x, mask).numpy(), [[4.0, -6.0], [0, 0]])
  np.testing.assert_allclose(SequencePooling("max")(x, mask).numpy(), [[3.0, -2.0], [0, 0]])
  np.testing.assert_allclose(SequencePooling("max")(x).numpy(), [[100.0, 100.0], [9.0, 9.0]])
  with pytest.raises(ValueError, match="mode"):
    SequencePooling("median")


@pytest.mark.parametrize("mode", ["mean", "sum", "max"])
def test_pooling_masking_and_permutation(mode):
  rng = np.random.default_rng(5)
  x = normal(rng, 4, 6, 3)
  mask = random_mask(rng, 4, 6)
  layer = SequencePooling(mode)
  out = layer(x, mask).numpy()
  noisy = np.where(mask[..., None], x, 1e3 * normal(rng, 4, 6, 3))
  np.testing.assert_array_equal(layer(noisy, mask).numpy(), out)
  perm = rng.permutation(6)
  np.testing.assert_allclose(layer(x[:, perm], mask[:, perm]).numpy(), out, rtol=1e-6)
  np.testing.assert_array_equal(out[0], 0.0)


# ----------------------------------------------------------------------------- every layer
#
# One case per layer (two for TargetAttention): NON-default constructor arguments, inputs with an
# all-padded row, and how to call the layer. `keep_default` names arguments left at default;
# `masked` maps a float sequence input to its mask (padded positions must get zero gradient).

_RNG = np.random.default_rng(7)
_MASK = np.array([[False, False, False], [True, True, False]])
_SEQ = _RNG.normal(size=[2, 3, 4]).astype(np.float32)
_TARGET = _RNG.normal(size=[2, 4]).astype(np.float32)
_TA_ARGS = dict(num_heads=2, head_dim=3, ff_dim=5, dropout=0.1, use_layer_norm=False,
                use_residual=False, activation="tanh", din_units=[3], din_activation="relu",
                din_softmax=True, kernel_initializer="he_uniform")

CASES = {
    "attention": dict(
        cls=MultiHeadAttentionBlock,
        kwargs=dict(num_heads=2, head_dim=3, ff_dim=5, dropout=0.1, attention_dropout=0.2,
                    use_layer_norm=False, use_residual=False, activation="gelu", use_bias=False,
                    kernel_initializer="he_normal", kernel_regularizer="l2",
                    layer_norm_epsilon=1e-3, norm_order="pre"),
        inputs=dict(query=_SEQ[:, :2], value=_SEQ, query_mask=_MASK[:, :2], key_mask=_MASK),
        masked=dict(query="query_mask", value="key_mask"),
        call=lambda l, query, value, query_mask, key_mask: l(
            query, value, query_mask=query_mask, key_mask=key_mask)),
    "time_block": dict(
        cls=TimeBlockEmbedding,
        kwargs=dict(output_dim=4, num_blocks=6, block_seconds=60,
                    embeddings_initializer="glorot_uniform", embeddings_regularizer="l2"),
        inputs=dict(timestamps=np.array([[0, 0, 0], [700, 880, 0]], np.int64),
                    reference_time=np.array([1000, 1000], np.int64), mask=_MASK),
        call=lambda l, timestamps, reference_time, mask: l(timestamps, reference_time,
                                                           mask=mask)),
    "target_dot": dict(
        cls=TargetAttention, kwargs=_TA_ARGS, keep_default=("mode",),
        inputs=dict(query=_TARGET, keys=_SEQ, mask=_MASK), masked=dict(keys="mask"),
        call=lambda l, query, keys, mask: l(query, keys, mask=mask)),
    "target_din": dict(
        cls=TargetAttention, kwargs=dict(_TA_ARGS, mode="din"),
        inputs=dict(query=_TARGET, keys=_SEQ, mask=_MASK), masked=dict(keys="mask"),
        call=lambda l, query, keys, mask: l(query, keys, mask=mask)),
    "mlp": dict(
        cls=MLP,
        kwargs=dict(units=[5, 2], activation="tanh", dropout=0.1, use_batch_norm=True,
                    linear_output=True, kernel_initializer="he_normal", kernel_regularizer="l2"),
        inputs=dict(inputs=_TARGET),
        call=lambda l, inputs: l(inputs)),
    "pooling": dict(
        cls=SequencePooling, kwargs=dict(mode="max"),
        inputs=dict(inputs=_SEQ, mask=_MASK), masked=dict(inputs="mask"),
        call=lambda l, inputs, mask: l(inputs, mask=mask)),
}

_BASE_CONFIG_KEYS = set(keras.layers.Layer().get_config())


def assert_config_round_trip(cls, kwargs, keep_default=()):
  """Config keys == __init__'s parameters, every argument non-default, and the config (and the
  registered serialisation) rebuild an identical layer."""
  params = {name: p for name, p in inspect.signature(cls.__init__).parameters.items()
            if name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
  assert set(kwargs) | set(keep_default) == set(params), "test must set every argument"
  for name, value in kwargs.items():
    assert value != params[name].default, f"{name} is left at its default"
  layer = cls(**kwargs)
  config = layer.get_config()
  assert set(config) - _BASE_CONFIG_KEYS == set(params)
  for name, value in kwargs.items():
    if isinstance(value, (bool, int, float, list)) or isinstance(config[name], str):
      assert config[name] == value, name
  json.dumps(config)
  assert cls.from_config(config).get_config() == config
  serialized = keras.utils.serialize_keras_object(layer)
  assert serialized["registered_name"] == f"tfrec>{cls.__name__}"
  restored = keras.utils.deserialize_keras_object(json.loads(json.dumps(serialized)))
  assert type(restored) is cls and restored.get_config() == config


@pytest.mark.parametrize("case", sorted(CASES))
def test_config_round_trip_and_serialisation(case):
  c = CASES[case]
  assert_config_round_trip(c["cls"], c["kwargs"], c.get("keep_default", ()))


@pytest.mark.parametrize("case", sorted(CASES))
def test_gradients_flow_and_are_finite(case):
  c = CASES[case]
  layer = c["cls"](**c["kwargs"])
  inputs = {k: tf.constant(v) for k, v in c["inputs"].items()}
  floats = {k: v for k, v in inputs.items() if v.dtype.is_floating}
  with tf.GradientTape() as tape:
    tape.watch(list(floats.values()))
    out = c["call"](layer, **inputs)
    loss = tf.reduce_sum(out * tf.random.stateless_normal(tf.shape(out), seed=[1, 2]))
  assert np.isfinite(out.numpy()).all()
  sources = list(floats.values()) + layer.trainable_variables
  assert layer.trainable_variables or c["cls"] is SequencePooling
  grads = [_np(tf.convert_to_tensor(g)) for g in tape.gradient(loss, sources)]
  for g in grads:
    assert g is not None and np.isfinite(g).all()
  # Padded positions of a sequence input receive exactly zero gradient.
  input_grads = dict(zip(floats, grads))
  for name, mask_name in c.get("masked", {}).items():
    np.testing.assert_array_equal(input_grads[name][~c["inputs"][mask_name]], 0.0)


@pytest.mark.parametrize("case", sorted(CASES))
def test_save_and_load_in_functional_model(case, tmp_path):
  c = CASES[case]
  tensors = {k: keras.Input(shape=v.shape[1:], dtype=tf.as_dtype(v.dtype), name=k)
             for k, v in c["inputs"].items()}
  model = keras.Model(tensors, c["call"](c["cls"](**c["kwargs"]), **tensors))
  want = model(c["inputs"]).numpy()
  model.save(str(tmp_path / "model"), save_format="tf")
  loaded = keras.models.load_model(str(tmp_path / "model"))
  assert type(loaded.layers[-1]) is c["cls"]
  np.testing.assert_allclose(loaded(c["inputs"]).numpy(), want, rtol=1e-6, atol=1e-6)


def test_item_encoder_lookup_table_replaces_the_computation_inside_its_context():
  enc = ItemEncoder(4, 3, ("id",))
  ids = tf.constant([[1, 4], [0, 2]])
  computed = enc(ids).numpy()
  np.testing.assert_allclose(enc.encode_all().numpy()[[1, 4, 0, 2]], computed.reshape(4, 3))
  table = tf.Variable(np.arange(15, dtype=np.float32).reshape(5, 3))
  with enc.lookup_table(table):
    np.testing.assert_array_equal(enc(ids).numpy(), table.numpy()[[[1, 4], [0, 2]]])
  np.testing.assert_array_equal(enc(ids).numpy(), computed)  # restored on exit
  assert len(enc.weights) == 1  # the table is not tracked by the layer


def test_item_encoder_title_is_the_mean_of_the_real_tokens_embeddings():
  from tfrec.data import schema
  from tfrec.data.item_store import ItemStore
  n = 4
  title = np.zeros([n, schema.MAX_TITLE_LEN], np.int64)
  title[1, :3] = [1, 2, 3]
  title[2, :1] = [2]
  # item 3 has no title word: zeros
  store = ItemStore(domain=np.zeros(n), category=np.r_[0, 1, 2, 1],
                    tags=np.zeros([n, schema.MAX_TAGS]), title=title,
                    visual=np.zeros([n, 0], np.float32), cold=np.zeros(n))
  enc = ItemEncoder(3, 4, ("title", "category"), num_categories=2, num_tokens=3,
                    combine="concat")
  enc(tf.constant([1]))
  enc.set_item_features(store)
  words = enc.token_embeddings.numpy()
  cats = enc.category_embeddings.numpy()
  got = enc(tf.constant([1, 2, 3])).numpy()
  want_title = np.stack([words[[1, 2, 3]].mean(0), words[2], np.zeros(2)])
  np.testing.assert_allclose(got[:, :2], want_title, rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(got[:, 2:], cats[[1, 2, 1]], rtol=1e-6)
  # A new item given by its columns alone encodes as a stored one would.
  new = enc.encode_features({"title": title[[1]], "category": np.array([1])}).numpy()
  np.testing.assert_allclose(new, got[:1], rtol=1e-6)
  with pytest.raises(ValueError, match="num_tokens"):
    ItemEncoder(3, 4, ("title",))
  bad = ItemStore(domain=np.zeros(n), category=np.r_[0, 1, 2, 1],
                  tags=np.zeros([n, schema.MAX_TAGS]), title=title * 2,
                  visual=np.zeros([n, 0], np.float32), cold=np.zeros(n))
  with pytest.raises(ValueError, match="title token 6 > num_tokens 3"):
    enc.set_item_features(bad)
